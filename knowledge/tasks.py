"""Background work of the knowledge base. Each task takes ids, looks the rows up and calls one service."""

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from core.jobs import retrying_task
from knowledge import services


@shared_task(
    **retrying_task(
        backoff=5,
        backoff_max=300,
        max_retries=8,
        soft_time_limit="KNOWLEDGE_INGEST_SOFT_TIME_LIMIT",
        time_limit="KNOWLEDGE_INGEST_TIME_LIMIT",
        retry_queues=services.RETRY_QUEUES,  # ahead of the uploads queued since, on the same side
    )
)
def ingest_document(self: Task, document_id: int) -> str:
    try:
        document = services.document_ingest(document_id=document_id, task_id=self.request.id or "")
    except services.DocumentNotFound:
        return "deleted"
    return str(document.status)


@shared_task(
    **retrying_task(
        backoff=5, backoff_max=300, max_retries=8, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300
    )
)
def reembed_collection(self: Task, collection_id: int) -> str:
    try:
        collection = services.collection_reembed_run(collection_id=collection_id)
    except services.CollectionNotFound:
        return "deleted"
    except SoftTimeLimitExceeded:
        services.collection_reembed_fail(
            collection_id=collection_id, reason="Re-embedding hit its time limit; start it again to resume."
        )
        raise
    return collection.embedding_model


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90)
def recover_stalled_documents() -> int:
    return len(services.documents_recover_stalled())


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90)
def refresh_outdated_documents() -> int:
    return len(services.documents_refresh_outdated())


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def sweep_orphan_files() -> int:
    return len(services.document_files_sweep())


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=300, time_limit=330)
def refresh_chunk_statistics() -> bool:
    return services.chunk_statistics_refresh()


@shared_task(
    **retrying_task(backoff=30, backoff_max=600, max_retries=3, soft_time_limit=3600, time_limit=3660)
)
def sync_web_source(self: Task, source_id: int) -> str:
    try:
        report = services.web_source_sync(source_id=source_id)
    except services.WebSourceNotFound:
        return "deleted"
    return report.summary()


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90)
def sync_due_web_sources() -> int:
    return len(services.web_sources_queue_due())
