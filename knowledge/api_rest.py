"""The resource API (DRF): collections, documents and their chunks, and web sources.

Every queryset comes from a selector scoped to the caller, so a collection or document the caller may not read
is a 404. Staff write (create, upload, re-ingest, delete); everyone else reads.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import FileResponse
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import InvalidInput, PayloadTooLarge
from knowledge import selectors, services
from knowledge.models import Chunk, Collection, Document, WebSource


class IsStaffOrReadOnly(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or bool(request.user.is_staff)


class IsStaff(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


# --- Serializers: input and output apart ------------------------------------------------------------------------


class CollectionOut(serializers.ModelSerializer[Collection]):
    document_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Collection
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "visibility",
            "ocr",
            "embedding_model",
            "reembed_target_model",
            "reembed_progress",
            "document_count",
            "created_at",
            "updated_at",
        ]


class CollectionIn(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    visibility = serializers.ChoiceField(
        choices=Collection.Visibility.choices, default=Collection.Visibility.RESTRICTED
    )
    embedding_model = serializers.CharField(required=False, allow_blank=True, default="")
    ocr = serializers.BooleanField(
        required=False, default=True, help_text="Read images and scanned PDF pages with OCR (Tesseract)."
    )


class DocumentOut(serializers.ModelSerializer[Document]):
    collection: serializers.SlugRelatedField[Collection] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = [
            "id",
            "collection",
            "title",
            "source_name",
            "media_type",
            "size_bytes",
            "content_hash",
            "version",
            "status",
            "error",
            "progress",
            "page_count",
            "chunk_count",
            "token_count",
            "embedding_model",
            "created_at",
            "updated_at",
            "indexed_at",
            "download_url",
        ]

    def get_download_url(self, document: Document) -> str:
        request = self.context.get("request")
        path = f"/api/documents/{document.pk}/download/"
        return request.build_absolute_uri(path) if request is not None else path


class UploadIn(serializers.Serializer[Any]):
    collection = serializers.SlugField(help_text="Slug of the collection to add the files to.")
    files = serializers.ListField(
        # Empty files are refused by the service, by name, like every other refused file.
        child=serializers.FileField(allow_empty_file=True),
        allow_empty=False,
        min_length=1,
        help_text="One or many files.",
    )
    title = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Only with one file."
    )


class UploadResultOut(serializers.Serializer[Any]):
    name = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["created", "updated", "unchanged", "rejected"])
    message = serializers.CharField()
    document = DocumentOut(allow_null=True, help_text="The stored document; null for a rejected file.")


class ErrorOut(serializers.Serializer[Any]):
    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(required=False, help_text="The error's kind, for programs.")
    details = serializers.DictField(required=False, help_text="More about it (which files, which limit).")


ERROR_RESPONSE = OpenApiResponse(ErrorOut, description="An error, with a message for people.")


class UploadRefused(InvalidInput):
    """No file of the upload was accepted."""


def _refused(results: list[services.Imported]) -> InvalidInput | PayloadTooLarge:
    files = [{"name": item.name, "reason": item.message} for item in results]
    reasons = " ".join(item.message for item in results)
    if all(isinstance(item.error, PayloadTooLarge) for item in results):
        return services.DocumentTooLarge(
            f"Nothing was uploaded: {reasons}", files=files, limit_bytes=settings.KNOWLEDGE_MAX_UPLOAD_BYTES
        )
    return UploadRefused(f"Nothing was uploaded: {reasons}", files=files)


class ChunkOut(serializers.ModelSerializer[Chunk]):
    class Meta:
        model = Chunk
        fields = [
            "id",
            "position",
            "section",
            "page_number",
            "start_offset",
            "end_offset",
            "token_count",
            "embedding_model",
            "text",
        ]


class WebSourceOut(serializers.ModelSerializer[WebSource]):
    collection: serializers.SlugRelatedField[Collection] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )

    class Meta:
        model = WebSource
        fields = [
            "id",
            "collection",
            "url",
            "mode",
            "max_pages",
            "max_depth",
            "max_page_bytes",
            "max_total_bytes",
            "requests_per_second",
            "sync_interval_minutes",
            "sync_status",
            "last_synced_at",
            "last_error",
            "next_sync_at",
            "page_count",
            "created_at",
            "updated_at",
        ]


class WebSourceIn(serializers.Serializer[Any]):
    collection = serializers.SlugField(help_text="Slug of the collection the pages go into.")
    url = serializers.URLField(max_length=1000, help_text="The page, the sitemap, or where the crawl starts.")
    mode = serializers.ChoiceField(choices=WebSource.Mode.choices, default=WebSource.Mode.PAGE)
    max_pages = serializers.IntegerField(min_value=1, max_value=100_000, default=100)
    max_depth = serializers.IntegerField(min_value=0, max_value=20, default=2, help_text="Crawl only.")
    max_page_bytes = serializers.IntegerField(min_value=1, default=5 * 1024 * 1024)
    max_total_bytes = serializers.IntegerField(min_value=1, default=100 * 1024 * 1024)
    requests_per_second = serializers.FloatField(min_value=0.01, max_value=100, default=1.0)
    sync_interval_minutes = serializers.IntegerField(
        min_value=0, default=24 * 60, help_text="How often it is fetched again; 0: only on demand."
    )


# --- Views --------------------------------------------------------------------------------------------------------


class CollectionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Collection],
):
    permission_classes = [IsStaffOrReadOnly]
    lookup_field = "slug"
    serializer_class = CollectionOut

    def get_queryset(self) -> QuerySet[Collection]:
        from django.db.models import Count

        return (
            selectors.collection_list(user=self.request.user)
            .annotate(document_count=Count("documents"))
            .order_by("name")
        )

    @extend_schema(request=CollectionIn, responses={201: CollectionOut})
    def create(self, request: Request) -> Response:
        payload = CollectionIn(data=request.data)
        payload.is_valid(raise_exception=True)
        collection = services.collection_create(**payload.validated_data)
        collection.document_count = 0  # type: ignore[attr-defined]  # as the listing annotates it
        return Response(CollectionOut(collection).data, status=status.HTTP_201_CREATED)


class DocumentFilter(filters.FilterSet):
    collection = filters.CharFilter(field_name="collection__slug")
    status = filters.ChoiceFilter(choices=Document.Status.choices)
    q = filters.CharFilter(field_name="title", lookup_expr="icontains", label="Title contains")

    class Meta:
        model = Document
        fields = ["collection", "status", "media_type"]


class DocumentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Document],
):
    permission_classes = [IsStaffOrReadOnly]
    serializer_class = DocumentOut
    filterset_class = DocumentFilter
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self) -> QuerySet[Document]:
        return selectors.document_list(user=self.request.user).order_by("-created_at", "-pk")

    @extend_schema(
        request={"multipart/form-data": UploadIn},
        responses={
            201: UploadResultOut(many=True),
            200: OpenApiResponse(
                UploadResultOut(many=True),
                description="Every file was already in the collection (unchanged).",
            ),
            400: ERROR_RESPONSE,
            401: ERROR_RESPONSE,
            403: ERROR_RESPONSE,
            404: ERROR_RESPONSE,
            413: OpenApiResponse(
                ErrorOut, description="The request, or every file in it, is over the limit."
            ),
            422: OpenApiResponse(ErrorOut, description="Every file was refused; `details.files` names each."),
        },
        description="Upload one or many files into a collection. Each file settles on its own, as in admin and "
        "`manage.py ingest`: every acceptable file is stored and queued for indexing, every refused one (empty, "
        "over the per-file limit, a name with control characters) is listed with outcome `rejected` and the "
        "reason, by its name, and is not stored. 201 when a file was added or updated, 200 when the accepted "
        "files were all already there (the same bytes return the existing document, outcome `unchanged`), "
        "413/422 when no file was accepted, so a 4xx never leaves a file stored (a `title` with more "
        "than one file is a 422 before any is stored). New bytes under an existing file name "
        "make a new version (`updated`); sending the same files again after fixing a refused one is safe.",
    )
    def create(self, request: Request) -> Response:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.KNOWLEDGE_MAX_REQUEST_BYTES:
            raise PayloadTooLarge(
                f"The request is {length / 1e6:.1f} MB; at most {settings.KNOWLEDGE_MAX_REQUEST_BYTES / 1e6:.1f} MB "
                "may be uploaded at once."
            )
        data = {
            "collection": request.data.get("collection"),
            "files": request.FILES.getlist("files") or request.FILES.getlist("file"),
            "title": request.data.get("title", ""),
        }
        payload = UploadIn(data=data)
        payload.is_valid(raise_exception=True)
        collection = selectors.collection_get(user=request.user, slug=payload.validated_data["collection"])
        results = list(
            services.documents_import(
                collection=collection,
                files=[
                    (upload.name, services.file_reader(upload)) for upload in payload.validated_data["files"]
                ],
                index_now=False,
                created_by=request.user,
                title=payload.validated_data["title"],
            )
        )
        if all(item.outcome == "rejected" for item in results):
            raise _refused(results)
        body = [
            {
                "name": item.name,
                "outcome": item.outcome,
                "message": item.message,
                "document": None
                if item.document is None
                else DocumentOut(item.document, context={"request": request}).data,
            }
            for item in results
        ]
        added = any(item.outcome in ("created", "updated") for item in results)
        return Response(body, status=status.HTTP_201_CREATED if added else status.HTTP_200_OK)

    def perform_destroy(self, instance: Document) -> None:
        services.document_delete(document=instance)

    @extend_schema(request=None, responses={202: DocumentOut}, filters=False)
    @action(detail=True, methods=["post"])
    def reingest(self, request: Request, pk: str | None = None) -> Response:
        document = services.document_reingest(document=self.get_object())
        return Response(
            DocumentOut(document, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(responses={200: ChunkOut(many=True)}, filters=False)
    @action(detail=True, methods=["get"])
    def chunks(self, request: Request, pk: str | None = None) -> Response:
        document = self.get_object()
        paginator = self.paginator
        assert paginator is not None
        page = paginator.paginate_queryset(
            Chunk.objects.filter(document=document).order_by("position"), request, view=self
        )
        return paginator.get_paginated_response(ChunkOut(page, many=True).data)

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiResponse(description="The original file.")},
        filters=False,
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        document = self.get_object()
        return FileResponse(
            document.file.open("rb"),
            as_attachment=True,
            filename=document.source_name.rsplit("/", 1)[-1],
            content_type=document.media_type or "application/octet-stream",
        )


class WebSourceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[WebSource],
):
    """Pages added by URL (one page, a sitemap, a crawl of one site); staff only."""

    permission_classes = [IsStaff]
    serializer_class = WebSourceOut

    def get_queryset(self) -> QuerySet[WebSource]:
        return selectors.web_source_list(user=self.request.user).order_by("-created_at", "-pk")

    @extend_schema(
        request=WebSourceIn,
        responses={
            201: WebSourceOut,
            400: ERROR_RESPONSE,
            404: ERROR_RESPONSE,
            409: ERROR_RESPONSE,
            422: ERROR_RESPONSE,
        },
        description="Add a web source and queue its first sync. Only http(s); a URL whose host resolves to a private, "
        "loopback, link-local, multicast or reserved address is refused (422) unless the deployment allows them "
        "(KNOWLEDGE_WEB_ALLOW_PRIVATE). The same URL twice in a collection is a conflict (409).",
    )
    def create(self, request: Request) -> Response:
        payload = WebSourceIn(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        collection = selectors.collection_get(user=request.user, slug=data.pop("collection"))
        source = services.web_source_create(collection=collection, created_by=request.user, **data)
        return Response(WebSourceOut(source).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: WebSource) -> None:
        services.web_source_delete(source=instance)

    @extend_schema(request=None, responses={202: WebSourceOut})
    @action(detail=True, methods=["post"])
    def resync(self, request: Request, pk: str | None = None) -> Response:
        source = services.web_source_request_sync(source=self.get_object())
        source.refresh_from_db()
        return Response(WebSourceOut(source).data, status=status.HTTP_202_ACCEPTED)
