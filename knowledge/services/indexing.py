"""Indexing: parse, chunk, embed, and replace a document's chunks in one transaction; recovery of stalled work.

A run goes through three private stages (`_prepare`: claim, parse, chunk; `_embed_prepared`; `_write_embedded`),
by a worker's task (`document_ingest`), for several documents at once (`documents_index`), or overlapped in this
process for an import (`documents_index_pipelined`)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, TypeVar

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.postgres.search import SearchVector
from django.db import DatabaseError, transaction
from django.db.models import F, Q, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Greatest
from django.utils import timezone
from numpy.typing import NDArray

from core import jobs
from core.jobs import BROKER_ERRORS, TRANSIENT_ERRORS
from knowledge import chunking, parsing
from knowledge.embeddings import Embedder, get_embedder
from knowledge.models import Chunk, Collection, Document, DocumentText
from knowledge.ocr import OcrOptions
from knowledge.services.errors import DocumentNotFound

logger = logging.getLogger(__name__)


# Ingestion queues (settings CELERY_TASK_QUEUES): a document of KNOWLEDGE_LARGE_DOCUMENT_BYTES or more goes to the
# large side, served by a worker of its own, so that one long PDF never holds the slots small uploads wait for. A
# task sent again (re-queued by the recovery sweep, or retried after a database error) goes to its side's retry
# queue, which the same workers serve beside the first, so that it does not wait behind the uploads queued since.
INGEST_QUEUE = "ingest"
RETRY_QUEUE = "ingest-retry"
LARGE_QUEUE = "ingest-large"
LARGE_RETRY_QUEUE = "ingest-large-retry"
# Where a retry of a task that came from each queue goes (core.jobs.retrying_task): it stays on its side.
RETRY_QUEUES = {
    INGEST_QUEUE: RETRY_QUEUE,
    RETRY_QUEUE: RETRY_QUEUE,
    LARGE_QUEUE: LARGE_RETRY_QUEUE,
    LARGE_RETRY_QUEUE: LARGE_RETRY_QUEUE,
}
# Chunks per INSERT when a document's chunks are written.
_WRITE_BATCH = 500
# What indexing makes of a file. Bump it whenever parsing, chunking or the text that is embedded changes what a
# document's chunks would be: the documents indexed before are then indexed again in the background
# (`documents_refresh_outdated`), each keeping its old chunks in search until its new ones replace them.
# 1: before it was recorded. 2: tables as Markdown rows with their header, spreadsheets, slides, e-books, OCR.
# 3: tables in PDF text layers as Markdown rows (knowledge/pdf_tables.py).
INDEX_VERSION = 3
# Outdated documents queued per sweep, and only while no other document waits or runs.
REFRESH_BATCH = 10


def document_enqueue(*, document_id: int, again: bool = False) -> None:
    """Send the document's indexing task (`document_send`) once the current transaction commits, at once outside
    one: a worker must not look for a row that is not committed yet."""
    transaction.on_commit(lambda: document_send(document_id=document_id, again=again))


def ingest_queue(*, size_bytes: int, again: bool = False) -> str:
    """The queue a document's indexing task is sent to: by the stored file's size, and to that side's retry queue
    when it is sent `again`."""
    side = LARGE_QUEUE if size_bytes >= settings.KNOWLEDGE_LARGE_DOCUMENT_BYTES else INGEST_QUEUE
    return RETRY_QUEUES[side] if again else side


def document_send(*, document_id: int, again: bool = False) -> bool:
    """Send the document's indexing task to the broker; False when the broker cannot be reached. The document is
    stored either way: one not sent is marked `unqueued`, and the recovery sweep sends it once the broker is back
    (uploading it again does too). A document of KNOWLEDGE_LARGE_DOCUMENT_BYTES or more goes to the large
    side; a task sent `again` (by the recovery sweep) to its side's retry queue, ahead of the uploads queued since."""
    from knowledge.tasks import ingest_document

    size = Document.objects.filter(pk=document_id).values_list("size_bytes", flat=True).first() or 0
    try:
        ingest_document.apply_async((document_id,), queue=ingest_queue(size_bytes=size, again=again))
    except BROKER_ERRORS as exc:
        logger.warning("document %s is stored but its task could not be sent: %s", document_id, exc)
        Document.objects.filter(pk=document_id).update(unqueued=True)
        return False
    Document.objects.filter(pk=document_id, unqueued=True).update(unqueued=False)
    return True


@dataclass(frozen=True)
class _Claim:
    document: Document
    collection: Collection


def document_ingest(*, document_id: int, task_id: str = "") -> Document:
    """Parse, chunk and embed a document, then replace its chunks in one transaction.

    Idempotent: a document already indexed from its current bytes with its collection's model is left alone, and
    one held by a live worker is left to it. Parse errors, an unknown model and the time limit end as FAILED with
    the reason; errors of the database connection propagate so that the task is retried.
    Raises DocumentNotFound.
    """
    # Beats from a thread whatever the run is doing (parsing one large file, embedding, waiting to write), six per
    # staleness limit, so that the sweep tells a slow run from a dead worker. An in-process run (no task) has none.
    heartbeat = jobs.Heartbeat(
        Document.objects.filter(pk=document_id, status=Document.Status.PROCESSING, task_id=task_id),
        interval=max(1.0, settings.KNOWLEDGE_INGEST_STALE_SECONDS / 6),
        name=f"document {document_id}",
    )
    with heartbeat if task_id else contextlib.nullcontext():
        documents_index(document_ids=[document_id], task_id=task_id)
    return Document.objects.get(pk=document_id)


def documents_index(*, document_ids: Sequence[int], task_id: str = "") -> None:
    """Index several documents as `document_ingest` does one, embedding their chunks together so that many small
    documents still make full batches for the model. Each document ends READY or FAILED on its own.
    Raises DocumentNotFound for the first id that does not exist."""
    _write_embedded(_embed_prepared(_prepare(document_ids, task_id), report=True))


_Item = TypeVar("_Item")


def documents_index_pipelined(
    items: Iterable[tuple[_Item, int | None]], *, group_size: int
) -> Iterator[tuple[_Item, Document | None]]:
    """Index in this process the documents of `items` (each an item and its document's id) as they come, in groups
    of `group_size` embedded together, and yield each item with its document once that is READY or FAILED; an
    item without an id passes straight through, with None. Raises DocumentNotFound, and the database's errors.

    A pipeline: while one group is embedded on a second thread (the model's runtime, ONNX Runtime or torch, leaves
    the interpreter while it computes), this thread writes the group before it and takes (from `items`, which may
    store files as they are asked for) and parses the group after it, so the encoder is not kept waiting for
    parsing and database writes. Stopped early (an error, or the caller stops reading), the groups not yet
    written go back to PENDING, so that the next import (or the recovery sweep) takes them up at once; this
    run's claim does not count as an interrupted attempt."""
    group: list[tuple[_Item, int]] = []
    in_flight: list[_InFlight[_Item]] = []  # launched, not yet written: at most two
    embedder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    def claimed_ids() -> list[int]:
        return [document_id for batch in in_flight for _, document_id in batch.group]

    def heartbeat() -> None:
        # The embedding thread touches no database: this thread tells the recovery sweep the documents are alive.
        Document.objects.filter(pk__in=claimed_ids(), status=Document.Status.PROCESSING).update(
            heartbeat_at=timezone.now()
        )

    def launch() -> None:
        heartbeat()
        # Counted in flight before it is claimed, so that a failure part-way is undone with the rest (finally).
        batch = _InFlight(list(group))
        in_flight.append(batch)
        group.clear()
        prepared = _prepare([document_id for _, document_id in batch.group], "")
        batch.embedding = embedder.submit(_embed_prepared, prepared, report=False)

    def settle_oldest() -> Iterator[tuple[_Item, Document | None]]:
        batch = in_flight[0]
        while True:
            try:
                embedded = batch.embedding.result(timeout=30)
                break
            except TimeoutError:
                heartbeat()
        _write_embedded(embedded)
        in_flight.pop(0)
        documents = Document.objects.in_bulk([document_id for _, document_id in batch.group])
        for item, document_id in batch.group:
            yield item, documents.get(document_id)

    try:
        for item, document_id in items:
            if document_id is None:
                yield item, None
                continue
            group.append((item, document_id))
            if len(group) >= group_size:
                launch()  # parse this group while the one before is still being embedded
                if len(in_flight) > 1:
                    yield from settle_oldest()  # write that one while this one is embedded
        if group:
            launch()
        while in_flight:
            yield from settle_oldest()
    finally:
        embedder.shutdown(wait=True, cancel_futures=True)
        if in_flight:
            try:
                Document.objects.filter(
                    pk__in=claimed_ids(), status=Document.Status.PROCESSING, task_id=""
                ).update(
                    status=Document.Status.PENDING,
                    progress=0.0,
                    heartbeat_at=None,
                    attempts=Greatest(F("attempts") - 1, 0),
                )
            except DatabaseError:
                logger.warning("could not put documents %s back to PENDING", claimed_ids(), exc_info=True)


@dataclass
class _Prepared:
    claim: _Claim
    parsed: parsing.ParsedDocument
    drafts: list[chunking.ChunkDraft]


@dataclass
class _Embedded:
    items: list[_Prepared]
    # One float32 row per chunk: a Python list of floats would take eight times the memory (hundreds of MB for a
    # document of tens of thousands of chunks).
    vectors: NDArray[np.float32]
    error: Exception | None = None


@dataclass
class _InFlight(Generic[_Item]):
    """A group of a pipelined import: claimed and parsed, being embedded on the second thread."""

    group: list[tuple[_Item, int]]
    embedding: Future[list[_Embedded]] = field(default_factory=Future)


def _prepare(document_ids: Sequence[int], task_id: str) -> list[_Prepared]:
    """Claim, parse and chunk the documents (the first stage); a document that cannot be parsed ends FAILED here
    and is left out. Raises DocumentNotFound."""
    prepared: list[_Prepared] = []
    for document_id in document_ids:
        claim = _claim(document_id, task_id)
        if claim is None:
            continue
        try:
            parsed, drafts = _parse_and_chunk(claim.document, claim.collection)
        except Exception as exc:  # noqa: BLE001 - _fail_for decides what ends the document and what propagates
            _fail_for([claim.document], exc)
        else:
            prepared.append(_Prepared(claim, parsed, drafts))
    return prepared


def _embed_prepared(prepared: list[_Prepared], *, report: bool) -> list[_Embedded]:
    """Embed the prepared documents' chunks, all of one model together (the second stage). With `report` off it
    touches no database, so that it can run in another thread while this one parses and writes. An error is
    kept with its documents for `_write_embedded` to settle."""
    by_model: dict[str, list[_Prepared]] = defaultdict(list)
    for item in prepared:
        by_model[item.claim.collection.embedding_model].append(item)
    embedded = []
    for model_name, items in by_model.items():
        documents = [item.claim.document for item in items] if report else []
        try:
            vectors = _embed(
                documents, [d for item in items for d in item.drafts], model_name, progress=(0.15, 0.95)
            )
        except Exception as exc:  # noqa: BLE001 - settled by _write_embedded with the documents it concerns
            embedded.append(_Embedded(items, np.zeros((0, 0), dtype=np.float32), exc))
        else:
            embedded.append(_Embedded(items, vectors))
    return embedded


def _write_embedded(embedded: list[_Embedded]) -> None:
    """Replace each embedded document's chunks (the last stage), or end it FAILED with its error."""
    for group in embedded:
        if group.error is not None:
            _fail_for([item.claim.document for item in group.items], group.error)
            continue
        offset = 0
        for item in group.items:
            embeddings = group.vectors[offset : offset + len(item.drafts)]
            offset += len(item.drafts)
            try:
                _write_chunks(item.claim.document, item.parsed, item.drafts, embeddings)
            except Exception as exc:  # noqa: BLE001 - as above
                _fail_for([item.claim.document], exc)


def _fail_for(documents: list[Document], exc: Exception) -> None:
    """End `documents` as FAILED with a reason that fits `exc`; database connection errors propagate instead,
    so that the task is retried."""
    if isinstance(exc, TRANSIENT_ERRORS):
        raise exc
    if isinstance(exc, parsing.ParseError):
        reason = exc.message
    elif isinstance(exc, SoftTimeLimitExceeded):
        reason = f"Indexing took longer than the {settings.KNOWLEDGE_INGEST_SOFT_TIME_LIMIT} s time limit."
    else:
        logger.error("indexing documents %s failed", [d.pk for d in documents], exc_info=exc)
        reason = f"Indexing failed with an internal error ({type(exc).__name__}: {exc})."
    for document in documents:
        _fail(document, reason)


def _claim(document_id: int, task_id: str) -> _Claim | None:
    """Take the document for this run, or say (None) that there is nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        document = (
            Document.objects.select_for_update().select_related("collection").filter(pk=document_id).first()
        )
        if document is None:
            raise DocumentNotFound(f"Document {document_id} does not exist (deleted before it was indexed?).")
        collection = document.collection
        status = document.status
        if status == Document.Status.FAILED or (
            status == Document.Status.READY
            and document.indexed_hash == document.content_hash
            and document.embedding_model == collection.embedding_model
            and document.index_version == INDEX_VERSION
        ):
            return None
        claim = jobs.job_claim(
            document,
            running=Document.Status.PROCESSING,
            owner=task_id,
            stale_seconds=settings.KNOWLEDGE_INGEST_STALE_SECONDS,
            max_attempts=settings.KNOWLEDGE_INGEST_MAX_ATTEMPTS,
            now=now,
        )
        if claim is jobs.Claim.HELD:
            return None
        if claim is jobs.Claim.EXHAUSTED:
            document.status = Document.Status.FAILED
            document.error = (
                f"Indexing was interrupted {document.attempts} times (a worker was killed, ran out of memory, "
                "or lost the database); re-ingest it to try again."
            )
            document.save(update_fields=["status", "error", "updated_at"])
            return None
        document.processing_started_at = now
        document.save(update_fields=[*jobs.CLAIM_FIELDS, "processing_started_at", "updated_at"])
    return _Claim(document, collection)


def _report(document: Document, progress: float) -> None:
    Document.objects.filter(pk=document.pk).update(
        progress=min(1.0, max(0.0, progress)), heartbeat_at=timezone.now()
    )


def ocr_options(*, collection: Collection) -> OcrOptions:
    """How the documents of `collection` are OCRed: the KNOWLEDGE_OCR_* settings, and the collection's switch."""
    return OcrOptions(
        enabled=collection.ocr,
        languages=settings.KNOWLEDGE_OCR_LANGUAGES,
        tesseract=settings.KNOWLEDGE_OCR_TESSERACT,
        page_seconds=settings.KNOWLEDGE_OCR_PAGE_SECONDS,
        max_pages=settings.KNOWLEDGE_OCR_MAX_PAGES,
        disabled_reason=f"OCR is turned off for the collection {collection.name!r} (staff can turn it on in admin).",
    )


def _parse_and_chunk(
    document: Document, collection: Collection
) -> tuple[parsing.ParsedDocument, list[chunking.ChunkDraft]]:
    with document.file.open("rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != document.content_hash:
        raise parsing.ParseError(
            "The stored file does not match its recorded hash (changed or damaged on disk)."
        )
    parsed = parsing.parse(
        data,
        filename=document.source_name,
        on_page=lambda done, total: _report(document, 0.10 * done / max(total, 1)),
        ocr_options=ocr_options(collection=collection),
    )
    # A title given by staff wins; one made from the file name gives way to the document's own.
    if document.title == parsing.title_from_filename(document.source_name) and parsed.title:
        document.title = parsed.title[:500]
    embedder = get_embedder(collection.embedding_model)
    drafts = chunking.chunk_document(
        parsed,
        tokenizer=embedder.tokenizer,
        max_model_tokens=embedder.max_tokens,
        title=document.title,
    )
    Document.objects.filter(pk=document.pk).update(
        title=document.title,
        media_type=parsed.media_type,
        page_count=parsed.page_count,
        progress=0.15,
        heartbeat_at=timezone.now(),
    )
    return parsed, drafts


def _embed(
    documents: list[Document],
    drafts: list[chunking.ChunkDraft],
    model_name: str,
    *,
    progress: tuple[float, float],
) -> NDArray[np.float32]:
    embedder: Embedder = get_embedder(model_name)
    batch = max(1, int(settings.KNOWLEDGE_EMBEDDING_BATCH_SIZE))
    # Several batches per progress report: fewer round trips, still a heartbeat every few seconds.
    step = batch * 8
    vectors = np.zeros((len(drafts), embedder.dimensions), dtype=np.float32)
    low, high = progress
    for start in range(0, len(drafts), step):
        texts = [draft.embed_text for draft in drafts[start : start + step]]
        vectors[start : start + len(texts)] = embedder.embed_documents(texts, batch_size=batch)
        for document in documents:
            _report(document, low + (high - low) * (start + len(texts)) / max(len(drafts), 1))
    return vectors


def _write_chunks(
    document: Document,
    parsed: parsing.ParsedDocument,
    drafts: list[chunking.ChunkDraft],
    embeddings: NDArray[np.float32],
) -> None:
    with transaction.atomic():
        collection = collection_share_lock(document.collection_id)
        locked = Document.objects.select_for_update().filter(pk=document.pk).first()
        if collection is None or locked is None:
            logger.info("document %s was deleted while it was being indexed", document.pk)
            return
        if locked.status != Document.Status.PROCESSING or locked.content_hash != document.content_hash:
            return  # re-ingested, replaced or taken over meanwhile: the newer run writes
        model_name = collection.embedding_model
        if model_name != document.collection.embedding_model:
            embeddings = _embed([], drafts, model_name, progress=(0, 0))
        pending: NDArray[np.float32] | None = None
        if collection.reembed_target_model:
            pending = _embed([], drafts, collection.reembed_target_model, progress=(0, 0))

        Chunk.objects.filter(document=document).delete()
        # The full-text vector is computed by the INSERT itself: filling it by an UPDATE afterwards would write
        # every row twice, with a second HNSW and GIN entry for each.
        pending_model = collection.reembed_target_model if pending is not None else ""
        title = locked.title
        # In batches, so that only one batch of model instances (and their full-text expressions) exists at a time.
        for first in range(0, len(drafts), _WRITE_BATCH):
            Chunk.objects.bulk_create(
                [
                    Chunk(
                        document=document,
                        collection_id=collection.pk,
                        position=position,
                        text=draft.text,
                        section=draft.section,
                        page_number=draft.page,
                        start_offset=draft.start,
                        end_offset=draft.end,
                        token_count=draft.token_count,
                        embedding=embeddings[position],
                        embedding_model=model_name,
                        pending_embedding=pending[position] if pending is not None else None,
                        pending_embedding_model=pending_model,
                        search_vector=_text_vector(title=title, section=draft.section, text=draft.text),
                    )
                    for position, draft in enumerate(drafts[first : first + _WRITE_BATCH], start=first)
                ]
            )
        DocumentText.objects.update_or_create(document=document, defaults={"text": parsed.text})
        locked.status = Document.Status.READY
        locked.progress = 1.0
        locked.error = ""
        locked.chunk_count = len(drafts)
        locked.token_count = sum(draft.token_count for draft in drafts)
        locked.page_count = parsed.page_count
        locked.media_type = parsed.media_type
        locked.embedding_model = model_name
        locked.indexed_hash = locked.content_hash
        locked.index_version = INDEX_VERSION
        locked.indexed_at = timezone.now()
        locked.heartbeat_at = locked.indexed_at
        locked.save()


def collection_share_lock(collection_id: int) -> Collection | None:
    """The collection, locked FOR SHARE until the transaction ends, or None if it is gone.

    What writing a document's chunks holds while it inserts them (minutes for a very large document): a re-embed's
    switch (FOR UPDATE) waits for it, so the model cannot change under the writer, and a deleted collection cannot
    vanish half-written; but other documents of the collection are added (an advisory lock, not this row) and
    written (FOR SHARE too) meanwhile."""
    table = Collection._meta.db_table
    found = list(Collection.objects.raw(f'SELECT * FROM "{table}" WHERE id = %s FOR SHARE', [collection_id]))  # noqa: S608 - the table name is the model's own
    return found[0] if found else None


def _text_vector(*, title: str, section: str, text: str) -> Combinable:
    """A chunk's full-text vector: title and section weigh more than the body."""
    config = settings.KNOWLEDGE_TEXT_SEARCH_CONFIG
    return (
        SearchVector(Value(title), weight="A", config=config)
        + SearchVector(Value(section), weight="A", config=config)
        + SearchVector(Value(text), weight="B", config=config)
    )


def _fail(document: Document, reason: str) -> None:
    """End a run as FAILED: no chunks are left behind, the reason is kept for staff."""
    with transaction.atomic():
        locked = Document.objects.select_for_update().filter(pk=document.pk).first()
        if locked is None or locked.content_hash != document.content_hash:
            return
        Chunk.objects.filter(document=locked).delete()
        DocumentText.objects.filter(document=locked).delete()
        locked.status = Document.Status.FAILED
        locked.error = reason[:4000]
        locked.chunk_count = 0
        locked.token_count = 0
        locked.indexed_hash = ""
        locked.heartbeat_at = timezone.now()
        locked.save()
    logger.warning("document %s (%s) failed: %s", document.pk, document.source_name, reason)


def documents_recover_stalled() -> list[int]:
    """Queue again the documents whose worker died, those whose message was lost and those whose message could not
    be sent; returns their ids."""
    now = timezone.now()
    # A stalled one is only sent again: its claim counts the attempts and fails it once it has had them all.
    stalled = jobs.jobs_recover_stalled(
        Document.objects.all(),
        running=Document.Status.PROCESSING,
        stale_seconds=settings.KNOWLEDGE_INGEST_STALE_SECONDS,
        now=now,
        recover=lambda document: document_enqueue(document_id=document.pk, again=True),
    )
    forgotten = now - timedelta(seconds=settings.KNOWLEDGE_INGEST_REQUEUE_SECONDS)
    waiting = list(
        Document.objects.filter(
            Q(updated_at__lt=forgotten) | Q(unqueued=True), status=Document.Status.PENDING
        ).values_list("pk", flat=True)
    )
    if waiting:
        # Touch them so that the next sweep does not queue them again before a worker gets to them.
        Document.objects.filter(pk__in=waiting, status=Document.Status.PENDING).update(updated_at=now)
    for document_id in waiting:
        document_enqueue(document_id=document_id, again=True)
    return stalled + waiting


def documents_refresh_outdated(*, limit: int = REFRESH_BATCH) -> list[int]:
    """Queue again up to `limit` READY documents that an older INDEX_VERSION indexed; returns their ids.

    Only while no document is waiting or being indexed, so that re-chunking a collection in the background never
    puts more than one small batch in front of an upload. Each stays in search with its old chunks, which its new
    ones replace in one transaction; one that no longer parses ends FAILED with the reason, as an upload would."""
    busy = Document.objects.filter(status__in=[Document.Status.PENDING, Document.Status.PROCESSING])
    if busy.exists():
        return []
    with transaction.atomic():
        outdated = list(
            Document.objects.select_for_update(skip_locked=True)
            .filter(status=Document.Status.READY, index_version__lt=INDEX_VERSION)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        Document.objects.filter(pk__in=outdated).update(
            status=Document.Status.PENDING,
            progress=0.0,
            attempts=0,
            task_id="",
            heartbeat_at=None,
            updated_at=timezone.now(),
        )
        for document_id in outdated:
            document_enqueue(document_id=document_id)
    if outdated:
        logger.info("indexing %s documents again with index version %s", len(outdated), INDEX_VERSION)
    return outdated


def documents_wait(
    *, ids: list[int], timeout: float, on_progress: Callable[[int, int], None] | None = None
) -> bool:
    """Wait until the documents are READY or FAILED; False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = Document.objects.filter(
            pk__in=ids, status__in=[Document.Status.READY, Document.Status.FAILED]
        ).count()
        if on_progress is not None:
            on_progress(done, len(ids))
        if done == len(ids):
            return True
        time.sleep(0.5)
    return False
