"""Every change to collections, documents and chunks goes through these functions."""

from knowledge.services.collections import collection_create, collection_get_or_create
from knowledge.services.documents import (
    DocumentAdded,
    Imported,
    Outcome,
    document_add,
    document_delete,
    document_files_sweep,
    document_import,
    document_reingest,
    documents_import,
    file_reader,
)
from knowledge.services.errors import DocumentNotFound, DocumentTooLarge, DocumentUnreadable, EmptyDocument
from knowledge.services.indexing import (
    RETRY_QUEUES,
    document_ingest,
    documents_index,
    documents_recover_stalled,
    documents_refresh_outdated,
    documents_wait,
)
from knowledge.services.reembed import (
    CollectionNotFound,
    ReembedInProgress,
    collection_reembed,
    collection_reembed_fail,
    collection_reembed_run,
)
from knowledge.services.statistics import chunk_statistics_refresh
from knowledge.services.web_sources import (
    SyncReport,
    WebSourceNotFound,
    web_source_create,
    web_source_delete,
    web_source_ingest,
    web_source_request_sync,
    web_source_sync,
    web_sources_queue_due,
)

__all__ = [
    "RETRY_QUEUES",
    "CollectionNotFound",
    "DocumentAdded",
    "DocumentNotFound",
    "DocumentTooLarge",
    "DocumentUnreadable",
    "EmptyDocument",
    "Imported",
    "Outcome",
    "ReembedInProgress",
    "SyncReport",
    "WebSourceNotFound",
    "chunk_statistics_refresh",
    "collection_create",
    "collection_get_or_create",
    "collection_reembed",
    "collection_reembed_fail",
    "collection_reembed_run",
    "document_add",
    "document_delete",
    "document_files_sweep",
    "document_import",
    "document_ingest",
    "document_reingest",
    "documents_import",
    "documents_index",
    "documents_recover_stalled",
    "documents_refresh_outdated",
    "documents_wait",
    "file_reader",
    "web_source_create",
    "web_source_delete",
    "web_source_ingest",
    "web_source_request_sync",
    "web_source_sync",
    "web_sources_queue_due",
]
