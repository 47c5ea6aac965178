"""Creating collections."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from core.errors import Conflict, InvalidInput
from core.validators import has_invisible, shown
from knowledge.embeddings import check_embedding_model
from knowledge.models import Collection


def collection_create(
    *,
    name: str,
    slug: str = "",
    description: str = "",
    visibility: str = Collection.Visibility.RESTRICTED,
    embedding_model: str = "",
    ocr: bool = True,
) -> Collection:
    """Create a collection; raises Conflict when the name or slug is taken, InvalidInput for a bad model."""
    if has_invisible(name) or has_invisible(slug):
        raise InvalidInput(
            f"A collection's name and slug cannot hold control or text-direction characters: {shown(name)!r}."
        )
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
                ocr=ocr,
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
