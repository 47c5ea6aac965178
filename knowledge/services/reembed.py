"""Changing a collection's embedding model without ever serving mixed-model results."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F

from core.errors import Conflict, ObjectNotFound
from core.jobs import BROKER_ERRORS
from knowledge import chunking
from knowledge.embeddings import check_embedding_model, get_embedder
from knowledge.models import Chunk, Collection, Document

logger = logging.getLogger(__name__)


class CollectionNotFound(ObjectNotFound):
    """No such collection."""


class ReembedInProgress(Conflict):
    """The collection is already being re-embedded."""


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
            transaction.on_commit(lambda: _send_reembed(locked.pk))
    return locked


def _send_reembed(collection_id: int) -> None:
    from knowledge.tasks import reembed_collection

    try:
        reembed_collection.delay(collection_id)
    except BROKER_ERRORS as exc:
        # Said where staff look (the collection's re-embed status); asking again with the same model resends it.
        logger.warning("the re-embed of collection %s could not be queued: %s", collection_id, exc)
        Collection.objects.filter(pk=collection_id).update(
            reembed_error="The task queue was unreachable, so the re-embed did not start; start it again."
        )


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
