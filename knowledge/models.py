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
    index_version = models.PositiveSmallIntegerField(
        default=0, help_text="The indexing version its chunks were made by (older ones are indexed again)."
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


class WebSource(models.Model):
    """Pages fetched from the web into a collection: one page, the pages a sitemap lists, or a crawl of one site."""

    class Mode(models.TextChoices):
        PAGE = "page", "One page"
        SITEMAP = "sitemap", "The pages of a sitemap"
        CRAWL = "crawl", "Follow same-site links"

    class SyncStatus(models.TextChoices):
        NEW = "new", "Not synced yet"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Syncing"
        SYNCED = "synced", "Synced"
        PARTIAL = "partial", "Synced, some pages failed"
        FAILED = "failed", "Failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="web_sources")
    url = models.URLField(max_length=1000, help_text="The page, the sitemap, or where the crawl starts.")
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.PAGE)
    max_pages = models.PositiveIntegerField(default=100)
    max_depth = models.PositiveIntegerField(
        default=2, help_text="Links followed from the start (crawl only)."
    )
    max_page_bytes = models.PositiveBigIntegerField(default=5 * 1024 * 1024)
    max_total_bytes = models.PositiveBigIntegerField(default=100 * 1024 * 1024)
    requests_per_second = models.FloatField(default=1.0)
    sync_interval_minutes = models.PositiveIntegerField(
        default=24 * 60, help_text="How often it is fetched again; 0: only on demand."
    )
    sync_status = models.CharField(max_length=20, choices=SyncStatus.choices, default=SyncStatus.NEW)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_sync_at = models.DateTimeField(null=True, blank=True)
    page_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "url"], name="websource_unique_url"),
            models.CheckConstraint(condition=Q(requests_per_second__gt=0), name="websource_rate_positive"),
            models.CheckConstraint(condition=Q(max_pages__gte=1), name="websource_max_pages_positive"),
        ]
        indexes = [models.Index(fields=["sync_status", "next_sync_at"])]

    def __str__(self) -> str:
        return self.url


class WebPage(models.Model):
    """One page of a web source as last fetched: what a conditional GET sends, and the document it became."""

    source = models.ForeignKey(WebSource, on_delete=models.CASCADE, related_name="pages")
    url = models.CharField(max_length=1000)
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.SET_NULL, related_name="web_pages"
    )
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the page's bytes.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "url"], name="webpage_unique_url")]

    def __str__(self) -> str:
        return self.url
