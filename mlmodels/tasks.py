"""Background work of the model registry. Each task takes ids, looks the rows up and calls one service."""

from celery import Task, shared_task

from core.jobs import retrying_task
from mlmodels import services


@shared_task(
    **retrying_task(
        backoff=30,
        backoff_max=600,
        max_retries=3,
        soft_time_limit="MLMODELS_TRAIN_SOFT_TIME_LIMIT",
        time_limit="MLMODELS_TRAIN_TIME_LIMIT",
    )
)
def train_model_version(self: Task, version_id: int) -> str:
    try:
        version = services.model_version_train(version_id=version_id, task_id=self.request.id or "")
    except services.ModelVersionNotFound:
        return "deleted"
    return str(version.status)


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90)
def recover_stalled_training() -> int:
    return len(services.model_versions_recover_stalled())
