"""Adding, replacing and deleting documents."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Literal

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core.errors import DomainError, InvalidInput
from core.validators import has_invisible, shown
from knowledge import parsing
from knowledge.models import Collection, Document
from knowledge.services.errors import DocumentTooLarge, DocumentUnreadable, EmptyDocument
from knowledge.services.indexing import document_enqueue, documents_index_pipelined

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)


Outcome = Literal["created", "updated", "unchanged"]

NOT_QUEUED_NOTE = (
    "; stored, but the task queue is unreachable: it will be indexed as soon as the queue is back"
)


@dataclass(frozen=True)
class DocumentAdded:
    document: Document
    outcome: Outcome
    message: str


# The key space of the advisory locks that serialize adds per collection (the second key is the collection's id).
_ADD_LOCK_SPACE = 0x4B42  # "KB"


def _serialize_adds(collection: Collection) -> None:
    """One add at a time per collection, until the transaction ends (same-bytes and same-name checks need it).
    An advisory lock, not the collection row: writing a large document's chunks holds that row (shared) for
    minutes, and uploads must not wait for it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)", [_ADD_LOCK_SPACE, collection.pk])


def _too_large(name: str, size: int, limit: int) -> str:
    """ "name is x MB; the limit is y MB", in bytes where one decimal would show the two as equal. One byte over
    the limit is all that a limited read (`_read_limited`, `file_reader`) takes of a larger file, whose size is
    then not known: it is told as over the limit, not as that size."""
    if size == limit + 1:
        amount = f"{limit / 1e6:.1f} MB" if limit >= 1_000_000 else f"{limit:,} bytes"
        return f"{name} is larger than the limit of {amount}."
    if f"{size / 1e6:.1f}" == f"{limit / 1e6:.1f}":
        return f"{name} is {size:,} bytes; the limit is {limit:,} bytes."
    return f"{name} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB."


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
    When the broker cannot be reached the document is stored all the same, marked `unqueued`, and the message
    says it will be indexed once the queue is back. Raises DocumentTooLarge above KNOWLEDGE_MAX_UPLOAD_BYTES,
    EmptyDocument for an empty file and InvalidInput for an empty name or one with control characters.
    """
    name = document_name_clean(name)
    data = content if isinstance(content, bytes) else _read_limited(content)
    if len(data) > settings.KNOWLEDGE_MAX_UPLOAD_BYTES:
        raise DocumentTooLarge(
            _too_large(name, len(data), settings.KNOWLEDGE_MAX_UPLOAD_BYTES),
            limit_bytes=settings.KNOWLEDGE_MAX_UPLOAD_BYTES,
        )
    if not data:
        raise EmptyDocument(f"{name} is empty (0 bytes): there is nothing to index.", file=name)
    content_hash = hashlib.sha256(data).hexdigest()
    written: list[str] = []  # files this call wrote, removed again if its transaction rolls back
    committed: list[bool] = []
    try:
        with transaction.atomic():
            # Runs first of this block's on-commit hooks: once it has, the files belong to committed rows.
            transaction.on_commit(lambda: committed.append(True))
            added = _add_locked(
                collection=collection,
                name=name,
                data=data,
                content_hash=content_hash,
                created_by=created_by,
                title=title,
                enqueue=enqueue,
                written=written,
            )
    except BaseException:
        if not committed:
            for file_name in written:
                default_storage.delete(file_name)
        raise
    # The task was sent on commit, just now (unless a caller's transaction is still open): say so when it could
    # not be.
    if (
        added.queued
        and not transaction.get_connection().in_atomic_block
        and Document.objects.filter(pk=added.document.pk, unqueued=True).exists()
    ):
        added.document.unqueued = True
        return DocumentAdded(added.document, added.outcome, added.message + NOT_QUEUED_NOTE)
    return DocumentAdded(added.document, added.outcome, added.message)


@dataclass(frozen=True)
class _Added:
    document: Document
    outcome: Outcome
    message: str
    queued: bool


def _add_locked(
    *,
    collection: Collection,
    name: str,
    data: bytes,
    content_hash: str,
    created_by: AbstractBaseUser | AnonymousUser | None,
    title: str,
    enqueue: bool,
    written: list[str],
) -> _Added:
    _serialize_adds(collection)
    same_bytes = Document.objects.filter(collection=collection, content_hash=content_hash).first()
    if same_bytes is not None:
        message = (
            f"{name}: unchanged (already in {collection.slug})"
            if same_bytes.source_name == name
            else f"{name}: same content as {same_bytes.source_name}, not added again"
        )
        # Its task never reached the broker: sending it again is what uploading it again is for.
        resend = enqueue and same_bytes.unqueued and same_bytes.status == Document.Status.PENDING
        if resend:
            document_enqueue(document_id=same_bytes.pk)
        return _Added(same_bytes, "unchanged", message, queued=resend)

    file_name = storage_file_name(name)
    previous = Document.objects.select_for_update().filter(collection=collection, source_name=name).first()
    outcome: Outcome
    if previous is not None:
        old_file = previous.file.name
        previous.content_hash = content_hash
        previous.size_bytes = len(data)
        previous.version = F("version") + 1
        previous.title = title or previous.title
        previous.file.save(file_name, ContentFile(data), save=False)
        written.append(previous.file.name)
        _reset_for_indexing(previous)
        previous.save()
        previous.refresh_from_db()
        transaction.on_commit(lambda: _delete_file(previous, old_file), robust=True)
        document, message, outcome = previous, f"{name}: new version {previous.version}", "updated"
    else:
        document = Document(
            collection=collection,
            title=title or parsing.title_from_filename(name),
            source_name=name,
            size_bytes=len(data),
            content_hash=content_hash,
            created_by_id=created_by.pk if created_by is not None and created_by.is_authenticated else None,
        )
        document.file.save(file_name, ContentFile(data), save=False)
        written.append(document.file.name)
        document.save()
        outcome, message = "created", f"{name}: added"
    if enqueue:
        document_enqueue(document_id=document.pk)
    return _Added(document, outcome, message, queued=enqueue)


def document_name_clean(name: str) -> str:
    """A document's source name as given, without leading slashes; raises InvalidInput for an empty name or
    one holding control or bidirectional-override characters (shown to staff in lists and commands)."""
    cleaned = name.strip().lstrip("/")
    if not cleaned:
        raise InvalidInput("A document needs a file name.")
    if has_invisible(cleaned):
        raise InvalidInput(
            f"The file name {shown(cleaned)!r} holds control or text-direction characters; rename the file.",
            file=shown(cleaned),
        )
    return cleaned


def storage_file_name(name: str) -> str:
    """The name the file is stored under: the last part of its source name in characters any file system
    takes, or "document" when none of them is left (a file named "@@@"); the source name itself is kept as given."""
    base = name.rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    safe_stem = re.sub(r"[^\w.-]+", "_", stem, flags=re.ASCII).strip("._")[:180] or "document"
    safe_suffix = re.sub(r"[^\w]+", "", suffix, flags=re.ASCII)[:16]
    return f"{safe_stem}.{safe_suffix}" if safe_suffix else safe_stem


@dataclass(frozen=True)
class Imported:
    name: str
    outcome: Outcome | Literal["rejected"]
    message: str
    document: Document | None
    error: DomainError | None = None  # why a rejected file was refused: set on every rejected one


def documents_import(
    *,
    collection: Collection,
    files: Sequence[tuple[str, Callable[[], bytes]]],
    index_now: bool,
    created_by: AbstractBaseUser | AnonymousUser | None = None,
    title: str = "",
    group_size: int = 16,
) -> Iterator[Imported]:
    """Add many files (name, reader) to `collection`, yielding each file's outcome once it is settled.

    The one policy for many files, whichever way they come in (admin upload, API upload, `manage.py ingest`,
    `manage.py load_demo`): each file settles on its own. A file that cannot be read or is
    refused (empty, over KNOWLEDGE_MAX_UPLOAD_BYTES, a name with control characters) comes back "rejected" with
    its name and the reason, and is not stored; the others are stored (`document_add`) and nothing stops them.
    Not all-or-nothing: a folder of thousands of files must not be turned away for one bad file, and holding
    every file of a batch in one transaction would hold the collection's add lock (every other upload) for all
    of them. Sending the same files again after fixing the refused ones is safe: the ones already stored come
    back "unchanged". Each interface shows the same outcomes its own way (admin messages, the API's statuses,
    the command's FAILED lines and exit status).

    With `index_now`, the stored files are indexed in this process, `group_size` at a time, their chunks
    embedded together on a second thread while this one stores, parses and writes the others
    (`indexing.documents_index_pipelined`); a document that fails to index comes back with its FAILED status, and
    a refused file (or one indexed already) settles at once, before the group being indexed around it. Otherwise
    they are queued for the workers and every file settles in the order given.

    Raises InvalidInput, at the call and so before anything is stored, when a `title` is given with more than
    one file.
    """
    if title and len(files) > 1:
        raise InvalidInput("A title can only be given when one file is uploaded.")
    return _files_import(
        collection=collection,
        files=files,
        index_now=index_now,
        created_by=created_by,
        title=title,
        group_size=group_size,
    )


def _files_import(
    *,
    collection: Collection,
    files: Sequence[tuple[str, Callable[[], bytes]]],
    index_now: bool,
    created_by: AbstractBaseUser | AnonymousUser | None,
    title: str,
    group_size: int,
) -> Iterator[Imported]:
    stored = (
        _file_store(
            collection=collection,
            name=name,
            read=read,
            enqueue=not index_now,
            created_by=created_by,
            title=title,
        )
        for name, read in files
    )
    if not index_now:
        yield from stored
        return
    for item, document in documents_index_pipelined(_for_indexing(stored), group_size=group_size):
        # An indexed one comes back as it ended (None: deleted meanwhile); the others pass through as stored.
        yield replace(item, document=document) if _indexes_now(item) else item


def document_import(
    *,
    collection: Collection,
    name: str,
    content: IO[bytes] | bytes,
    index_now: bool,
    created_by: AbstractBaseUser | AnonymousUser | None = None,
    title: str = "",
) -> DocumentAdded:
    """One file through `documents_import`, its refusal raised: DocumentTooLarge, EmptyDocument, InvalidInput
    (a bad name) or DocumentUnreadable. For callers that add one file at a time (web pages as they are fetched)."""
    [item] = documents_import(
        collection=collection,
        files=[(name, lambda: content if isinstance(content, bytes) else _read_limited(content))],
        index_now=index_now,
        created_by=created_by,
        title=title,
    )
    if item.outcome == "rejected" or item.document is None:
        assert item.error is not None  # a rejected file always carries its refusal
        raise item.error
    return DocumentAdded(item.document, item.outcome, item.message)


def _file_store(
    *,
    collection: Collection,
    name: str,
    read: Callable[[], bytes],
    enqueue: bool,
    created_by: AbstractBaseUser | AnonymousUser | None,
    title: str,
) -> Imported:
    """One file of `documents_import`, stored, or refused with the reason."""
    # Only the reading is the file's fault: a storage that cannot write is the server's failure, and propagates.
    try:
        content = read()
    except OSError as exc:
        unreadable = DocumentUnreadable(f"{name} could not be read ({exc.strerror or exc}).", file=name)
        return Imported(name, "rejected", unreadable.message, None, unreadable)
    try:
        added = document_add(
            collection=collection,
            name=name,
            content=content,
            enqueue=enqueue,
            created_by=created_by,
            title=title,
        )
    except DomainError as exc:
        return Imported(name, "rejected", exc.message, None, exc)
    return Imported(name, added.outcome, added.message, added.document)


def _indexes_now(item: Imported) -> bool:
    """Whether the file `item` stands for is to be indexed in this process: not a refused file, nor one indexed
    already from the same bytes."""
    document = item.document
    return document is not None and not (
        item.outcome == "unchanged" and document.status == Document.Status.READY
    )


def _for_indexing(stored: Iterator[Imported]) -> Iterator[tuple[Imported, int | None]]:
    """Each stored file with the id of its document to index in this process, or None; a document that failed
    before is reset to be tried again."""
    for item in stored:
        if item.document is None or not _indexes_now(item):
            yield item, None
            continue
        if item.document.status == Document.Status.FAILED:
            document_reingest(document=item.document, enqueue=False)
        yield item, item.document.pk


def file_reader(stream: IO[bytes]) -> Callable[[], bytes]:
    """A reader for `documents_import` of an open file (an upload), that never reads more than one byte past
    KNOWLEDGE_MAX_UPLOAD_BYTES (the service refuses what is over it)."""
    return lambda: _read_limited(stream)


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


def document_reingest(*, document: Document, enqueue: bool = True) -> Document:
    """Index `document` again from its original file, replacing its chunks once the new ones are ready."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        _reset_for_indexing(document)
        document.indexed_hash = ""
        document.save()
        if enqueue:
            document_enqueue(document_id=document.pk)
    return document


def document_delete(*, document: Document) -> None:
    """Delete a document, its chunks and its file."""
    file_name = document.file.name
    storage = document.file.storage
    with transaction.atomic():
        # Locked first, so that the rows that refer to it (chunks, citations being stored) are collected after
        # any concurrent writer has committed; the database nulls a citation that still slips in between.
        if not Document.objects.select_for_update().filter(pk=document.pk).exists():
            return
        document.delete()
        transaction.on_commit(lambda: storage.delete(file_name) if file_name else None)


# A file younger than this may belong to an upload whose transaction has not committed yet.
ORPHAN_FILE_AGE = timedelta(hours=1)
DOCUMENTS_FOLDER = "documents"


def document_files_sweep(*, older_than: timedelta = ORPHAN_FILE_AGE) -> list[str]:
    """Delete stored files that no document refers to (left by a process killed in the middle of an upload,
    before its transaction committed) once they are `older_than`; returns their names."""
    storage = default_storage
    cutoff = timezone.now() - older_than
    referenced = set(Document.objects.values_list("file", flat=True))
    removed: list[str] = []
    pending = [DOCUMENTS_FOLDER]
    while pending:
        folder = pending.pop()
        try:
            folders, files = storage.listdir(folder)
        except FileNotFoundError:
            continue
        pending.extend(f"{folder}/{name}" for name in folders)
        for name in files:
            path = f"{folder}/{name}"
            if path in referenced:
                continue
            try:
                if storage.get_modified_time(path) >= cutoff:
                    continue
                storage.delete(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    if removed:
        logger.warning("removed %d stored files no document refers to: %s", len(removed), removed[:10])
    return removed
