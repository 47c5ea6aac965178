"""Reads of the knowledge base, always scoped to what the asking user may see."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Count, F, Q, QuerySet

from core.errors import ObjectNotFound
from knowledge import search
from knowledge.chunking import split_sentences
from knowledge.models import Chunk, Collection, Document, WebSource

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    User = AbstractBaseUser | AnonymousUser


class CollectionNotReadable(ObjectNotFound):
    """No such collection, or you may not read it."""


def collection_list(*, user: User) -> QuerySet[Collection]:
    """The collections `user` may read."""
    return Collection.objects.readable_by(user)


def collection_get(*, user: User, slug: str) -> Collection:
    """One readable collection by slug; raises CollectionNotReadable."""
    collection = Collection.objects.readable_by(user).filter(slug=slug).first()
    if collection is None:
        raise CollectionNotReadable(f"No collection {slug!r} that you may read.")
    return collection


def collections_for_search(
    *, user: User, ids: Sequence[int] | None = None, slugs: Sequence[str] | None = None
) -> list[Collection]:
    """The readable collections among `ids`/`slugs` (all readable ones when neither is given).

    Raises CollectionNotReadable naming the first requested collection the user may not read (or that does not
    exist), so that asking about a forbidden collection is an error, not a silently narrower search."""
    readable = Collection.objects.readable_by(user)
    if not ids and not slugs:
        return list(readable)
    found = list(readable.filter(pk__in=list(ids or [])) | readable.filter(slug__in=list(slugs or [])))
    missing_ids = set(ids or []) - {collection.pk for collection in found}
    missing_slugs = set(slugs or []) - {collection.slug for collection in found}
    if missing_ids or missing_slugs:
        name = sorted(map(str, missing_ids))[0] if missing_ids else sorted(missing_slugs)[0]
        raise CollectionNotReadable(f"No collection {name!r} that you may read.", collection=name)
    return found


def chunk_search(
    *,
    user: User,
    query: str,
    collection_ids: Sequence[int] | None = None,
    collection_slugs: Sequence[str] | None = None,
    limit: int = 10,
    mode: search.Mode = "hybrid",
    params: search.SearchParams | None = None,
) -> search.SearchResult:
    """The chunks most relevant to `query` among the collections `user` may read (or the requested subset of
    them). Raises CollectionNotReadable and search.InvalidSearch."""
    collections = collections_for_search(user=user, ids=collection_ids, slugs=collection_slugs)
    return search.search(query=query, collections=collections, limit=limit, mode=mode, params=params)


def web_source_list(*, user: User) -> QuerySet[WebSource]:
    """The web sources `user` may manage: all of them for active staff, none for anyone else."""
    if not (user.is_authenticated and user.is_active and getattr(user, "is_staff", False)):
        return WebSource.objects.none()
    return WebSource.objects.select_related("collection")


def document_list(*, user: User) -> QuerySet[Document]:
    return Document.objects.readable_by(user).select_related("collection")


def document_get(*, user: User, document_id: int) -> Document:
    """One readable document; raises ObjectNotFound."""
    document = document_list(user=user).filter(pk=document_id).first()
    if document is None:
        raise ObjectNotFound("No such document that you may read.")
    return document


def chunk_get(*, user: User, chunk_id: int) -> Chunk:
    """One readable chunk with its document; raises ObjectNotFound."""
    chunk = (
        Chunk.objects.readable_by(user)
        .select_related("document", "document__collection")
        .filter(pk=chunk_id)
        .first()
    )
    if chunk is None:
        raise ObjectNotFound("No such passage that you may read.")
    return chunk


def chunk_context(*, chunk: Chunk, characters: int = 600) -> tuple[str, str, str]:
    """The text around a chunk in its document: (before, passage, after), from the extracted text."""
    return passage_context(
        document_id=chunk.document_id,
        start_offset=chunk.start_offset,
        end_offset=chunk.end_offset,
        text=chunk.text,
        characters=characters,
    )


def passage_context(
    *, document_id: int, start_offset: int, end_offset: int, text: str, characters: int = 600
) -> tuple[str, str, str]:
    """The text around a span of a document: (before, passage, after), from the extracted text; `text` stands
    for the passage when the document has no extracted text."""
    content = document_texts(document_ids=[document_id]).get(document_id, "")
    if not content:
        return "", text, ""
    start = max(0, start_offset - characters)
    end = min(len(content), end_offset + characters)
    before = content[start:start_offset]
    after = content[end_offset:end]
    return (
        ("…" if start > 0 else "") + before,
        content[start_offset:end_offset],
        after + ("…" if end < len(content) else ""),
    )


def document_texts(*, document_ids: Iterable[int]) -> dict[int, str]:
    """The extracted text of each of the documents that has one, by document id (not scoped: the caller holds
    ids it was allowed to read, such as the documents of chunks just retrieved for the reader)."""
    from knowledge.models import DocumentText

    return dict(
        DocumentText.objects.filter(document_id__in=set(document_ids)).values_list("document_id", "text")
    )


def text_sentences(*, text: str) -> list[str]:
    """The sentences of a text, cut by the chunker's rules: for a reader that quotes sentences of chunks (the
    extractive answerer), so that it and the chunks agree on where a sentence ends."""
    return split_sentences(text)


def chunk_ids_existing(*, ids: Iterable[int]) -> set[int]:
    """Which of these chunks still exist (one may be deleted while an answer citing it is made)."""
    return set(Chunk.objects.filter(pk__in=set(ids)).values_list("pk", flat=True))


def document_ids_existing(*, ids: Iterable[int]) -> set[int]:
    """Which of these documents still exist."""
    return set(Document.objects.filter(pk__in=set(ids)).values_list("pk", flat=True))


def documents_unreadable(*, user: User) -> QuerySet[Document]:
    """The documents of the collections the user may not read (to filter by, as in an Exists subquery)."""
    return Document.objects.exclude(collection__in=collection_list(user=user))


@dataclass(frozen=True)
class Indexing:
    """A readable collection whose documents are not all settled (READY or FAILED) yet."""

    collection: Collection
    settled: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.settled / self.total) if self.total else 100


def collections_indexing(*, user: User) -> list[Indexing]:
    """The readable collections still being indexed, with how many of their documents are done."""
    settled = Q(documents__status__in=[Document.Status.READY, Document.Status.FAILED])
    rows = (
        collection_list(user=user)
        .annotate(total=Count("documents"), settled=Count("documents", filter=settled))
        .filter(total__gt=F("settled"))
        .order_by("name")
    )
    return [Indexing(collection=row, settled=row.settled, total=row.total) for row in rows]


def example_questions(*, user: User, limit: int = 4) -> list[str]:
    """Questions staff suggest for the collections the user may read (Collection.example_questions)."""
    questions: list[str] = []
    for text in (
        collection_list(user=user)
        .exclude(example_questions="")
        .order_by("name")
        .values_list("example_questions", flat=True)
    ):
        questions += [line.strip() for line in text.splitlines() if line.strip()]
    return questions[:limit]
