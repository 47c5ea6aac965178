from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, Group
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Exists, OuterRef, Q
from pgvector.django import HnswIndex, VectorField

from core.validators import validate_visible

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, User

EMBEDDING_DIMENSIONS = 384


def default_embedding_model() -> str:
    return str(settings.KNOWLEDGE_EMBEDDING_MODEL)


class CollectionQuerySet(models.QuerySet["Collection"]):
    def readable_by(self, user: User | AbstractBaseUser | AnonymousUser) -> CollectionQuerySet:
        """Collections `user` may read: staff read all; others public ones and those shared with them."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if getattr(user, "is_staff", False):
            return self.all()
        shared_with_user = Collection.allowed_users.through.objects.filter(
            collection_id=OuterRef("pk"), user_id=user.pk
        )
        shared_with_group = Collection.allowed_groups.through.objects.filter(
            collection_id=OuterRef("pk"), group__user=user.pk
        )
        return self.filter(
            Q(visibility=Collection.Visibility.PUBLIC) | Exists(shared_with_user) | Exists(shared_with_group)
        )


class Collection(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Every signed-in user"
        RESTRICTED = "restricted", "Only the chosen users and groups"

    name = models.CharField(max_length=200, unique=True, validators=[validate_visible])
    slug = models.SlugField(max_length=100, unique=True, validators=[validate_visible])
    description = models.TextField(blank=True)
    example_questions = models.TextField(
        blank=True, help_text="One question per line, offered on the home page to people who may read it."
    )
    visibility = models.CharField(max_length=20, choices=Visibility.choices, default=Visibility.RESTRICTED)
    ocr = models.BooleanField(
        "OCR",
        default=True,
        help_text="Read images and scanned PDF pages with OCR (Tesseract). Off: images fail, and PDFs keep only "
        "their text layer.",
    )
    allowed_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="readable_collections"
    )
    allowed_groups = models.ManyToManyField(Group, blank=True, related_name="readable_collections")
    # Search reads only chunks embedded with this model; a re-embed switches it when every chunk has the new vector.
    embedding_model = models.CharField(max_length=200, default=default_embedding_model)
    reembed_target_model = models.CharField(max_length=200, blank=True)
    reembed_progress = models.FloatField(default=0.0)
    reembed_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CollectionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(reembed_progress__gte=0) & Q(reembed_progress__lte=1),
                name="collection_reembed_progress",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DocumentQuerySet(models.QuerySet["Document"]):
    def readable_by(self, user: User | AbstractBaseUser | AnonymousUser) -> DocumentQuerySet:
        return self.filter(collection__in=Collection.objects.readable_by(user))


def document_upload_to(document: Document, filename: str) -> str:
    # The hash keeps two versions of the same file name apart; the name stays readable for downloads.
    return f"documents/{document.collection_id}/{document.content_hash[:16]}/{filename}"


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        PROCESSING = "PROCESSING", "Processing"
        READY = "READY", "Ready"
        FAILED = "FAILED", "Failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500, validators=[validate_visible])
    file = models.FileField(upload_to=document_upload_to, max_length=500)
    source_name = models.CharField(
        max_length=1000, help_text="File name or path the document came from.", validators=[validate_visible]
    )
    media_type = models.CharField(max_length=100, blank=True, help_text="Detected from the content.")
    size_bytes = models.BigIntegerField()
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the original bytes.")
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    progress = models.FloatField(default=0.0)
    page_count = models.PositiveIntegerField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    token_count = models.PositiveIntegerField(default=0)
    embedding_model = models.CharField(max_length=200, blank=True)
    indexed_hash = models.CharField(
        max_length=64, blank=True, help_text="Hash of the bytes the chunks came from."
    )
    attempts = models.PositiveIntegerField(default=0)
    # The ingestion task that holds the document; a retry or re-delivery of that same task may take it over.
    task_id = models.CharField(max_length=255, blank=True)
    unqueued = models.BooleanField(
        default=False,
        help_text="Its indexing task could not be sent (the broker was unreachable); the recovery sweep sends it.",
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "source_name"], name="document_unique_source"),
            models.UniqueConstraint(fields=["collection", "content_hash"], name="document_unique_content"),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="document_progress_0_1"
            ),
            models.CheckConstraint(
                condition=~Q(status="FAILED") | ~Q(error=""), name="document_failed_has_error"
            ),
        ]
        indexes = [
            models.Index(fields=["collection", "status"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]

    def __str__(self) -> str:
        return self.title


class DocumentText(models.Model):
    """The text extracted from a document; chunk offsets point into it. Kept apart so lists never load it."""

    document = models.OneToOneField(
        Document, on_delete=models.CASCADE, primary_key=True, related_name="content"
    )
    text = models.TextField()

    def __str__(self) -> str:
        return f"text of {self.document_id}"


class ChunkQuerySet(models.QuerySet["Chunk"]):
    def readable_by(self, user: User | AbstractBaseUser | AnonymousUser) -> ChunkQuerySet:
        return self.filter(collection__in=Collection.objects.readable_by(user))


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Copied from the document so that search filters by collection without a join.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    text = models.TextField()
    section = models.TextField(blank=True, help_text="Heading path, outermost first, joined by ' › '.")
    page_number = models.PositiveIntegerField(null=True, blank=True)
    start_offset = models.PositiveIntegerField()
    end_offset = models.PositiveIntegerField()
    token_count = models.PositiveIntegerField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True)
    embedding_model = models.CharField(max_length=200)
    # Filled by a re-embed with another model while `embedding` keeps serving searches; swapped in one statement.
    pending_embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    pending_embedding_model = models.CharField(max_length=200, blank=True)
    search_vector = SearchVectorField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ChunkQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="chunk_unique_position"),
            models.CheckConstraint(
                condition=Q(end_offset__gte=models.F("start_offset")), name="chunk_offsets"
            ),
        ]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                # Denser than pgvector's defaults (16, 64): at a million clustered vectors those find 0.74 of the
                # true ten nearest at ef_search 100 and never pass 0.93; these find 0.999 at 200
                # (benchmarks/README.md). Each insert costs more, small beside embedding the chunk.
                m=32,
                ef_construction=128,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(fields=["search_vector"], name="chunk_search_vector_gin"),
            models.Index(fields=["collection", "embedding_model"], name="chunk_collection_model"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"
