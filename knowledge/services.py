"""Every change to collections, documents and chunks goes through these functions."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Literal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.postgres.search import SearchVector
from django.core.files.base import ContentFile
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q, Value
from django.utils import timezone
from django.utils.text import slugify

from config.errors import Conflict, DomainError, InvalidInput, ObjectNotFound, PayloadTooLarge
from knowledge import chunking, parsing
from knowledge.embeddings import Embedder, check_embedding_model, get_embedder
from knowledge.models import Chunk, Collection, Document, DocumentText

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)

# Errors of the database connection are worth a retry; anything else about a document is final.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class DocumentNotFound(ObjectNotFound):
    """No such document."""


class CollectionNotFound(ObjectNotFound):
    """No such collection."""


class DocumentTooLarge(PayloadTooLarge):
    """The file is larger than the upload limit."""


class ReembedInProgress(Conflict):
    """The collection is already being re-embedded."""


# --- Collections ---------------------------------------------------------------------------------------------------


def collection_create(
    *,
    name: str,
    slug: str = "",
    description: str = "",
    visibility: str = Collection.Visibility.RESTRICTED,
    embedding_model: str = "",
) -> Collection:
    """Create a collection; raises Conflict when the name or slug is taken, InvalidInput for a bad model."""
    slug = slug or slugify(name)[:100]
    if not name.strip() or not slug:
        raise InvalidInput("A collection needs a name.")
    model_name = embedding_model or str(settings.KNOWLEDGE_EMBEDDING_MODEL)
    check_embedding_model(model_name)  # fails now, with the reason, rather than at the first document
    try:
        with transaction.atomic():
            return Collection.objects.create(
                name=name.strip(),
                slug=slug,
                description=description,
                visibility=visibility,
                embedding_model=model_name,
            )
    except IntegrityError as exc:
        raise Conflict(f"A collection named {name!r} or with slug {slug!r} already exists.") from exc


def collection_get_or_create(*, slug: str, name: str = "", visibility: str = "") -> Collection:
    """The collection with `slug`, created (public when no visibility is given) if it does not exist yet."""
    existing = Collection.objects.filter(slug=slug).first()
    if existing is not None:
        return existing
    return collection_create(
        name=name or slug.replace("-", " ").title(),
        slug=slug,
        visibility=visibility or Collection.Visibility.PUBLIC,
    )


# --- Adding documents ----------------------------------------------------------------------------------------------

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class DocumentAdded:
    document: Document
    outcome: Outcome
    message: str


def document_add(
    *,
    collection: Collection,
    name: str,
    content: IO[bytes] | bytes,
    created_by: AbstractBaseUser | AnonymousUser | None = None,
    title: str = "",
    enqueue: bool = True,
) -> DocumentAdded:
    """Store a file in `collection` and queue its indexing.

    The same bytes twice give back the existing document ("unchanged"); new bytes under a source name already in
    the collection make a new version of that document ("updated"), whose chunks replace the old ones once indexed.
    Raises DocumentTooLarge above KNOWLEDGE_MAX_UPLOAD_BYTES and InvalidInput for an empty name.
    """
    name = name.strip().lstrip("/")
    if not name:
        raise InvalidInput("A document needs a file name.")
    data = content if isinstance(content, bytes) else _read_limited(content)
    if len(data) > settings.KNOWLEDGE_MAX_UPLOAD_BYTES:
        raise DocumentTooLarge(
            f"{name} is {len(data) / 1e6:.1f} MB; the limit is {settings.KNOWLEDGE_MAX_UPLOAD_BYTES / 1e6:.1f} MB.",
            limit_bytes=settings.KNOWLEDGE_MAX_UPLOAD_BYTES,
        )
    content_hash = hashlib.sha256(data).hexdigest()
    file_name = name.rsplit("/", 1)[-1][:200]

    with transaction.atomic():
        Collection.objects.select_for_update().filter(
            pk=collection.pk
        ).first()  # serializes adds per collection
        same_bytes = Document.objects.filter(collection=collection, content_hash=content_hash).first()
        if same_bytes is not None:
            message = (
                f"{name}: unchanged (already in {collection.slug})"
                if same_bytes.source_name == name
                else f"{name}: same content as {same_bytes.source_name}, not added again"
            )
            return DocumentAdded(same_bytes, "unchanged", message)

        previous = (
            Document.objects.select_for_update().filter(collection=collection, source_name=name).first()
        )
        if previous is not None:
            old_file = previous.file.name
            previous.content_hash = content_hash
            previous.size_bytes = len(data)
            previous.version = F("version") + 1
            previous.title = title or previous.title
            previous.file.save(file_name, ContentFile(data), save=False)
            _reset_for_indexing(previous)
            previous.save()
            previous.refresh_from_db()
            transaction.on_commit(lambda: _delete_file(previous, old_file))
            document, message = previous, f"{name}: new version {previous.version}"
            outcome: Outcome = "updated"
        else:
            document = Document(
                collection=collection,
                title=title or parsing.title_from_filename(name),
                source_name=name,
                size_bytes=len(data),
                content_hash=content_hash,
                created_by_id=created_by.pk
                if created_by is not None and created_by.is_authenticated
                else None,
            )
            document.file.save(file_name, ContentFile(data), save=False)
            document.save()
            outcome, message = "created", f"{name}: added"
        if enqueue:
            _enqueue_ingest(document.pk)
    return DocumentAdded(document, outcome, message)


def document_import(
    *, collection: Collection, name: str, content: IO[bytes] | bytes, index_now: bool
) -> DocumentAdded:
    """Add a file as `document_add` does, then index it in this process (`index_now`) or leave it to a worker.

    Indexing in-process is for command-line imports that should not depend on a running worker.
    """
    added = document_add(collection=collection, name=name, content=content, enqueue=not index_now)
    document = added.document
    if index_now and not (document.status == Document.Status.READY and added.outcome == "unchanged"):
        if document.status == Document.Status.FAILED:
            document = document_reingest(document=document, enqueue=False)
        document = document_ingest(document_id=document.pk)
    return DocumentAdded(document, added.outcome, added.message)


@dataclass(frozen=True)
class Imported:
    name: str
    outcome: Outcome | Literal["rejected"]
    message: str
    document: Document | None


def documents_import(
    *,
    collection: Collection,
    files: Iterable[tuple[str, Callable[[], bytes]]],
    index_now: bool,
    group_size: int = 16,
) -> Iterator[Imported]:
    """Add many files (name, reader) to `collection`, yielding each file's outcome once it is settled.

    With `index_now`, files are indexed in this process in groups of `group_size`, their chunks embedded
    together (see documents_index); otherwise they are queued for the workers. A file that cannot be read or is
    refused comes back as "rejected" with the reason; nothing stops the rest."""
    group: list[tuple[str, DocumentAdded]] = []

    def settle() -> Iterator[Imported]:
        documents_index(document_ids=[added.document.pk for _, added in group])
        for name, added in group:
            document = Document.objects.get(pk=added.document.pk)
            yield Imported(name, added.outcome, added.message, document)
        group.clear()

    for name, read in files:
        try:
            added = document_add(collection=collection, name=name, content=read(), enqueue=not index_now)
        except (DomainError, OSError) as exc:
            yield Imported(name, "rejected", str(getattr(exc, "message", exc)), None)
            continue
        document = added.document
        if not index_now or (added.outcome == "unchanged" and document.status == Document.Status.READY):
            yield Imported(name, added.outcome, added.message, document)
            continue
        if document.status == Document.Status.FAILED:
            document_reingest(document=document, enqueue=False)
        group.append((name, added))
        if len(group) >= group_size:
            yield from settle()
    if group:
        yield from settle()


def _read_limited(stream: IO[bytes]) -> bytes:
    limit = settings.KNOWLEDGE_MAX_UPLOAD_BYTES
    data = stream.read(limit + 1)
    return data if isinstance(data, bytes) else bytes(data)


def _delete_file(document: Document, file_name: str) -> None:
    if file_name and file_name != document.file.name:
        document.file.storage.delete(file_name)


def _reset_for_indexing(document: Document) -> None:
    document.status = Document.Status.PENDING
    document.progress = 0.0
    document.error = ""
    document.attempts = 0
    document.task_id = ""
    document.heartbeat_at = None


def _enqueue_ingest(document_id: int) -> None:
    from knowledge.tasks import ingest_document

    # Only after the row is committed, or the worker could look for a document that is not there yet.
    transaction.on_commit(lambda: ingest_document.delay(document_id))


def document_reingest(*, document: Document, enqueue: bool = True) -> Document:
    """Index `document` again from its original file, replacing its chunks once the new ones are ready."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        _reset_for_indexing(document)
        document.indexed_hash = ""
        document.save()
        if enqueue:
            _enqueue_ingest(document.pk)
    return document


def document_delete(*, document: Document) -> None:
    """Delete a document, its chunks and its file."""
    file_name = document.file.name
    storage = document.file.storage
    with transaction.atomic():
        document.delete()
        transaction.on_commit(lambda: storage.delete(file_name) if file_name else None)


# --- Indexing ------------------------------------------------------------------------------------------------------


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
    documents_index(document_ids=[document_id], task_id=task_id)
    return Document.objects.get(pk=document_id)


@dataclass
class _Prepared:
    claim: _Claim
    parsed: parsing.ParsedDocument
    drafts: list[chunking.ChunkDraft]


def documents_index(*, document_ids: Sequence[int], task_id: str = "") -> None:
    """Index several documents as `document_ingest` does one, embedding their chunks together so that many small
    documents still make full batches for the model. Each document ends READY or FAILED on its own.
    Raises DocumentNotFound for the first id that does not exist."""
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

    by_model: dict[str, list[_Prepared]] = defaultdict(list)
    for item in prepared:
        by_model[item.claim.collection.embedding_model].append(item)
    for model_name, items in by_model.items():
        documents = [item.claim.document for item in items]
        try:
            vectors = _embed(
                documents, [d for item in items for d in item.drafts], model_name, progress=(0.15, 0.95)
            )
        except Exception as exc:  # noqa: BLE001 - as above
            _fail_for(documents, exc)
            continue
        offset = 0
        for item in items:
            embeddings = vectors[offset : offset + len(item.drafts)]
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
    stale = now - timedelta(seconds=settings.KNOWLEDGE_INGEST_STALE_SECONDS)
    with transaction.atomic():
        document = (
            Document.objects.select_for_update().select_related("collection").filter(pk=document_id).first()
        )
        if document is None:
            raise DocumentNotFound(f"Document {document_id} does not exist (deleted before it was indexed?).")
        collection = document.collection
        status = document.status
        if status == Document.Status.READY and (
            document.indexed_hash == document.content_hash
            and document.embedding_model == collection.embedding_model
        ):
            return None
        if status == Document.Status.PROCESSING:
            same_task = bool(task_id) and document.task_id == task_id
            if not same_task and document.heartbeat_at is not None and document.heartbeat_at > stale:
                return None  # a live worker holds it
        elif status == Document.Status.FAILED:
            return None
        if document.attempts >= settings.KNOWLEDGE_INGEST_MAX_ATTEMPTS:
            document.status = Document.Status.FAILED
            document.error = (
                f"Indexing was interrupted {document.attempts} times (a worker was killed, ran out of memory, "
                "or lost the database); re-ingest it to try again."
            )
            document.save(update_fields=["status", "error", "updated_at"])
            return None
        document.status = Document.Status.PROCESSING
        document.error = ""
        document.progress = 0.0
        document.attempts += 1
        document.task_id = task_id
        document.heartbeat_at = now
        document.processing_started_at = now
        document.save(
            update_fields=[
                "status",
                "error",
                "progress",
                "attempts",
                "task_id",
                "heartbeat_at",
                "processing_started_at",
                "updated_at",
            ]
        )
    return _Claim(document, collection)


def _report(document: Document, progress: float) -> None:
    Document.objects.filter(pk=document.pk).update(
        progress=min(1.0, max(0.0, progress)), heartbeat_at=timezone.now()
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
    )
    # A title given by staff wins; one made from the file name gives way to the document's own.
    if document.title == parsing.title_from_filename(document.source_name) and parsed.title:
        document.title = parsed.title[:500]
    embedder = get_embedder(collection.embedding_model)
    drafts = chunking.chunk_document(
        parsed,
        tokenizer=embedder.tokenizer,
        max_model_tokens=embedder.max_tokens,
        chunk_tokens=settings.KNOWLEDGE_CHUNK_TOKENS,
        overlap_tokens=settings.KNOWLEDGE_CHUNK_OVERLAP_TOKENS,
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
) -> list[list[float]]:
    embedder: Embedder = get_embedder(model_name)
    batch = max(1, int(settings.KNOWLEDGE_EMBEDDING_BATCH_SIZE))
    # Several batches per progress report: fewer round trips, still a heartbeat every few seconds.
    step = batch * 8
    vectors: list[list[float]] = []
    low, high = progress
    for start in range(0, len(drafts), step):
        texts = [draft.embed_text for draft in drafts[start : start + step]]
        vectors.extend(embedder.embed_documents(texts, batch_size=batch).tolist())
        for document in documents:
            _report(document, low + (high - low) * len(vectors) / max(len(drafts), 1))
    return vectors


def _write_chunks(
    document: Document,
    parsed: parsing.ParsedDocument,
    drafts: list[chunking.ChunkDraft],
    embeddings: list[list[float]],
) -> None:
    with transaction.atomic():
        # The collection row is the lock a re-embed's switch takes too, so the model cannot change under us.
        collection = Collection.objects.select_for_update().get(pk=document.collection_id)
        locked = Document.objects.select_for_update().get(pk=document.pk)
        if locked.status != Document.Status.PROCESSING or locked.content_hash != document.content_hash:
            return  # re-ingested, replaced or taken over meanwhile: the newer run writes
        model_name = collection.embedding_model
        if model_name != document.collection.embedding_model:
            embeddings = _embed([], drafts, model_name, progress=(0, 0))
        pending: list[list[float]] | None = None
        if collection.reembed_target_model:
            pending = _embed([], drafts, collection.reembed_target_model, progress=(0, 0))

        Chunk.objects.filter(document=document).delete()
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
                    pending_embedding_model=collection.reembed_target_model if pending is not None else "",
                )
                for position, draft in enumerate(drafts)
            ],
            batch_size=500,
        )
        _index_text(Chunk.objects.filter(document=document), title=locked.title)
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
        locked.indexed_at = timezone.now()
        locked.heartbeat_at = locked.indexed_at
        locked.save()


def _index_text(chunks: object, *, title: str) -> None:
    """Fill the full-text vectors: title and section weigh more than the body."""
    config = settings.KNOWLEDGE_TEXT_SEARCH_CONFIG
    chunks.update(  # type: ignore[attr-defined]
        search_vector=SearchVector(Value(title), weight="A", config=config)
        + SearchVector("section", weight="A", config=config)
        + SearchVector("text", weight="B", config=config)
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
    """Queue again the documents whose worker died and those whose message was lost; returns their ids."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.KNOWLEDGE_INGEST_STALE_SECONDS)
    forgotten = now - timedelta(seconds=settings.KNOWLEDGE_INGEST_REQUEUE_SECONDS)
    ids = list(
        Document.objects.filter(
            Q(status=Document.Status.PROCESSING, heartbeat_at__lt=stale)
            | Q(status=Document.Status.PENDING, updated_at__lt=forgotten)
        ).values_list("pk", flat=True)
    )
    if ids:
        # Touch them so that the next sweep does not queue them again before a worker gets to them.
        Document.objects.filter(pk__in=ids, status=Document.Status.PENDING).update(updated_at=now)
    for document_id in ids:
        _enqueue_ingest(document_id)
    return ids


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


# --- Changing the embedding model ----------------------------------------------------------------------------------


def collection_reembed(*, collection: Collection, model_name: str, enqueue: bool = True) -> Collection:
    """Start re-embedding `collection` with `model_name` in the background; search keeps the current model until
    every chunk has its new vector. Raises ReembedInProgress, InvalidInput for an unknown model."""
    check_embedding_model(model_name)
    with transaction.atomic():
        locked = Collection.objects.select_for_update().get(pk=collection.pk)
        if locked.reembed_target_model and locked.reembed_target_model != model_name:
            raise ReembedInProgress(f"{locked.slug} is being re-embedded with {locked.reembed_target_model}.")
        locked.reembed_target_model = model_name
        locked.reembed_progress = 0.0
        locked.reembed_error = ""
        locked.save(update_fields=["reembed_target_model", "reembed_progress", "reembed_error", "updated_at"])
        if enqueue:
            from knowledge.tasks import reembed_collection

            transaction.on_commit(lambda: reembed_collection.delay(locked.pk))
    return locked


def collection_reembed_run(*, collection_id: int, batch_size: int = 256) -> Collection:
    """Fill the pending vectors of every chunk with the target model, then switch the collection in one
    transaction. Safe to run again after an interruption: it resumes where the last run stopped."""
    collection = Collection.objects.filter(pk=collection_id).first()
    if collection is None:
        raise CollectionNotFound(f"Collection {collection_id} does not exist.")
    target = collection.reembed_target_model
    if not target:
        return collection
    if target == collection.embedding_model:
        Chunk.objects.filter(collection=collection).update(pending_embedding=None, pending_embedding_model="")
        Collection.objects.filter(pk=collection.pk).update(reembed_target_model="", reembed_progress=1.0)
        collection.refresh_from_db()
        return collection
    embedder = get_embedder(target)
    total = Chunk.objects.filter(collection=collection).count()
    while True:
        batch = list(
            Chunk.objects.filter(collection=collection)
            .exclude(pending_embedding_model=target)
            .select_related("document")
            .order_by("pk")[:batch_size]
        )
        if not batch:
            if _reembed_switch(collection.pk, target):
                break
            continue
        texts = [
            chunking.embedding_text(
                title=chunk.document.title,
                section=chunk.section,
                text=chunk.text,
                tokenizer=embedder.tokenizer,
            )
            for chunk in batch
        ]
        vectors = embedder.embed_documents(texts, batch_size=int(settings.KNOWLEDGE_EMBEDDING_BATCH_SIZE))
        for chunk, vector in zip(batch, vectors, strict=True):
            chunk.pending_embedding = vector.tolist()
            chunk.pending_embedding_model = target
        Chunk.objects.bulk_update(batch, ["pending_embedding", "pending_embedding_model"])
        done = Chunk.objects.filter(collection=collection, pending_embedding_model=target).count()
        Collection.objects.filter(pk=collection.pk).update(reembed_progress=min(1.0, done / max(total, 1)))
    collection.refresh_from_db()
    return collection


def _reembed_switch(collection_id: int, target: str) -> bool:
    with transaction.atomic():
        collection = Collection.objects.select_for_update().get(pk=collection_id)
        if Chunk.objects.filter(collection=collection).exclude(pending_embedding_model=target).exists():
            return False  # a document was indexed meanwhile; embed its chunks first
        Chunk.objects.filter(collection=collection).update(
            embedding=F("pending_embedding"),
            embedding_model=target,
            pending_embedding=None,
            pending_embedding_model="",
        )
        Document.objects.filter(collection=collection, status=Document.Status.READY).update(
            embedding_model=target
        )
        collection.embedding_model = target
        collection.reembed_target_model = ""
        collection.reembed_progress = 1.0
        collection.save(
            update_fields=["embedding_model", "reembed_target_model", "reembed_progress", "updated_at"]
        )
    return True


def collection_reembed_fail(*, collection_id: int, reason: str) -> None:
    """Record why a re-embed stopped; the collection keeps serving its current model."""
    Collection.objects.filter(pk=collection_id).update(reembed_error=reason[:4000])
