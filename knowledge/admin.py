"""Staff manage the knowledge base here: collections, uploads of many files, pages added from the web, indexing
status, re-ingest and re-embed, the chunks of each document, and a page to try the search."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.errors import DomainError
from knowledge import search, services
from knowledge.embeddings import HASHING, MINILM
from knowledge.models import Chunk, Collection, Document, WebPage, WebSource

CHUNKS_SHOWN = 300


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        # An empty file is refused by the service, by name, without refusing the files chosen with it.
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


class UploadForm(forms.Form):
    documents = MultipleFileField(
        help_text="Choose one or many files (PDF, HTML, Markdown, text, Word, Excel, CSV, PowerPoint, EPUB)."
    )


class WebSourceForm(forms.Form):
    collection = forms.ModelChoiceField(queryset=Collection.objects.order_by("name"))
    url = forms.URLField(
        max_length=1000, assume_scheme="https", help_text="The page, the sitemap, or where the crawl starts."
    )
    mode = forms.ChoiceField(choices=WebSource.Mode.choices, initial=WebSource.Mode.PAGE)
    max_pages = forms.IntegerField(min_value=1, max_value=100_000, initial=100)
    max_depth = forms.IntegerField(min_value=0, max_value=20, initial=2, help_text="Crawl only.")
    max_page_bytes = forms.IntegerField(min_value=1, initial=5 * 1024 * 1024)
    max_total_bytes = forms.IntegerField(min_value=1, initial=100 * 1024 * 1024)
    requests_per_second = forms.FloatField(min_value=0.01, max_value=100, initial=1.0)
    sync_interval_minutes = forms.IntegerField(
        min_value=0, initial=24 * 60, help_text="How often it is fetched again; 0: only on demand."
    )


class ReembedForm(forms.Form):
    model = forms.CharField(
        initial=lambda: settings.KNOWLEDGE_EMBEDDING_MODEL,  # read when the form is shown, not at import
        help_text=f"{MINILM!r}, {HASHING!r}, or the path of a local sentence-transformers model folder.",
    )


class SearchForm(forms.Form):
    query = forms.CharField(widget=forms.TextInput(attrs={"size": 80, "autofocus": True}))
    collections = forms.ModelMultipleChoiceField(
        queryset=Collection.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None chosen: all collections.",
    )
    mode = forms.ChoiceField(choices=[(m, m) for m in search.MODES], initial="hybrid")
    fusion = forms.ChoiceField(
        choices=[("rrf", "reciprocal rank fusion"), ("weighted", "weighted sum")], initial="rrf"
    )
    rerank = forms.BooleanField(required=False, help_text="Needs KNOWLEDGE_RERANKER_MODEL.")
    limit = forms.IntegerField(min_value=1, max_value=100, initial=10)


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin[Collection]):
    list_display = [
        "name",
        "slug",
        "visibility",
        "ocr",
        "embedding_model",
        "documents",
        "reembed_state",
        "updated_at",
    ]
    list_filter = ["visibility", "ocr", "embedding_model"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ["allowed_users", "allowed_groups"]
    readonly_fields = [
        "embedding_model",
        "reembed_target_model",
        "reembed_progress",
        "reembed_error",
        "created_at",
        "updated_at",
    ]
    actions = ["reembed_action"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Collection]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                ready=Count("documents", filter=Q(documents__status=Document.Status.READY)),
                failed=Count("documents", filter=Q(documents__status=Document.Status.FAILED)),
                waiting=Count(
                    "documents",
                    filter=Q(documents__status__in=[Document.Status.PENDING, Document.Status.PROCESSING]),
                ),
            )
        )

    @admin.display(description="documents")
    def documents(self, collection: Any) -> str:
        url = reverse("admin:knowledge_document_changelist") + f"?collection__id__exact={collection.pk}"
        return format_html(
            '<a href="{}">{} ready</a>{}{}',
            url,
            collection.ready,
            format_html(", {} indexing", collection.waiting) if collection.waiting else "",
            format_html(', <span style="color:#ba2121">{} failed</span>', collection.failed)
            if collection.failed
            else "",
        )

    @admin.display(description="re-embedding")
    def reembed_state(self, collection: Collection) -> str:
        if collection.reembed_error:
            return format_html('<span style="color:#ba2121">stopped: {}</span>', collection.reembed_error)
        if collection.reembed_target_model:
            return format_html(
                "to {}: {}%", collection.reembed_target_model, round(collection.reembed_progress * 100)
            )
        return "—"

    def get_urls(self) -> list[Any]:
        custom = [
            path(
                "<int:collection_id>/upload/",
                self.admin_site.admin_view(self.upload_view),
                name="knowledge_collection_upload",
            ),
            path("search/", self.admin_site.admin_view(self.search_view), name="knowledge_search"),
        ]
        return custom + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "upload_url": reverse("admin:knowledge_collection_upload", args=[object_id]),
            "web_url": reverse("admin:knowledge_websource_add") + f"?collection={object_id}",
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "search_url": reverse("admin:knowledge_search")}
        return super().changelist_view(request, extra_context)

    def upload_view(self, request: HttpRequest, collection_id: int) -> HttpResponse:
        collection = get_object_or_404(Collection, pk=collection_id)
        if not self.has_change_permission(request, collection):
            return HttpResponseRedirect(reverse("admin:index"))
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            counts = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
            for item in services.documents_import(
                collection=collection,
                files=[
                    (upload.name, services.file_reader(upload)) for upload in form.cleaned_data["documents"]
                ],
                index_now=False,
                created_by=request.user,
            ):
                counts[item.outcome] += 1
                if item.outcome == "rejected":
                    messages.error(request, f"Not added: {item.message}")
                elif item.outcome != "created" or (item.document is not None and item.document.unqueued):
                    messages.info(request, item.message)
            messages.success(
                request,
                f"{counts['created']} added, {counts['updated']} updated, {counts['unchanged']} unchanged"
                + (f", {counts['rejected']} not added (named above)" if counts["rejected"] else "")
                + "; indexing runs in the background.",
            )
            return HttpResponseRedirect(
                reverse("admin:knowledge_document_changelist") + f"?collection__id__exact={collection.pk}"
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Upload documents into {collection}",
            "collection": collection,
            "form": form,
            "opts": self.model._meta,
            "max_upload_mb": settings.KNOWLEDGE_MAX_UPLOAD_BYTES / 1e6,
        }
        return TemplateResponse(request, "admin/knowledge/upload.html", context)

    def search_view(self, request: HttpRequest) -> HttpResponse:
        form = SearchForm(request.GET or None)
        result = None
        error = ""
        if form.is_bound and form.is_valid():
            collections = list(form.cleaned_data["collections"]) or list(Collection.objects.all())
            try:
                result = search.search(
                    query=form.cleaned_data["query"],
                    collections=collections,
                    limit=form.cleaned_data["limit"],
                    mode=form.cleaned_data["mode"],
                    params=search.SearchParams(
                        fusion=form.cleaned_data["fusion"], rerank=form.cleaned_data["rerank"]
                    ),
                )
            except DomainError as exc:
                error = exc.message
            if form.cleaned_data["rerank"] and result is not None and not result.reranked:
                error = "No reranker is configured (KNOWLEDGE_RERANKER_MODEL); showing the fused ranking."
        context = {
            **self.admin_site.each_context(request),
            "title": "Test search",
            "form": form,
            "result": result,
            "error": error,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/knowledge/search.html", context)

    @admin.action(description="Re-embed with another model (in the background)")
    def reembed_action(self, request: HttpRequest, queryset: QuerySet[Collection]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = ReembedForm(request.POST)
            if form.is_valid():
                for collection in queryset:
                    try:
                        services.collection_reembed(
                            collection=collection, model_name=form.cleaned_data["model"]
                        )
                    except DomainError as exc:
                        self.message_user(request, f"{collection}: {exc.message}", messages.ERROR)
                    else:
                        self.message_user(
                            request,
                            f"{collection}: re-embedding with {form.cleaned_data['model']}; search keeps using "
                            f"{collection.embedding_model} until every chunk has its new vector.",
                        )
                return None
        else:
            form = ReembedForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Re-embed collections",
            "collections": queryset,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/knowledge/reembed.html", context)


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin[Document]):
    list_display = [
        "title",
        "collection",
        "status_badge",
        "chunk_count",
        "page_count",
        "version",
        "size",
        "updated_at",
    ]
    list_filter = ["status", "collection", "media_type", "embedding_model"]
    search_fields = ["title", "source_name", "content_hash"]
    list_select_related = ["collection"]
    date_hierarchy = "created_at"
    actions = ["reingest_action", "delete_selected"]
    readonly_fields = [
        "collection",
        "source_name",
        "original_file",
        "media_type",
        "size_bytes",
        "content_hash",
        "version",
        "status_badge",
        "error",
        "page_count",
        "chunk_count",
        "token_count",
        "embedding_model",
        "attempts",
        "processing_started_at",
        "indexed_at",
        "created_by",
        "created_at",
        "updated_at",
        "chunk_table",
    ]
    fieldsets = [
        (None, {"fields": ["title", "collection", "source_name", "original_file", "status_badge", "error"]}),
        (
            "Indexing",
            {
                "fields": [
                    "media_type",
                    "size_bytes",
                    "content_hash",
                    "version",
                    "page_count",
                    "chunk_count",
                    "token_count",
                    "embedding_model",
                    "attempts",
                    "processing_started_at",
                    "indexed_at",
                ]
            },
        ),
        ("History", {"fields": ["created_by", "created_at", "updated_at"], "classes": ["collapse"]}),
        ("Chunks", {"fields": ["chunk_table"]}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # documents are added by uploading files into a collection

    @admin.display(description="original file")
    def original_file(self, document: Document) -> str:
        # Through the permission-checked download, never the storage's own URL: files are not served at /media/.
        return format_html(
            '<a href="{}">{}</a> ({} bytes)',
            reverse("document-download", args=[document.pk]),
            document.source_name.rsplit("/", 1)[-1],
            document.size_bytes,
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, document: Document) -> str:
        colours = {"READY": "#2e7d32", "FAILED": "#ba2121", "PROCESSING": "#1565c0", "PENDING": "#757575"}
        percent = round(document.progress * 100)
        bar = ""
        if document.status in (Document.Status.PENDING, Document.Status.PROCESSING):
            bar = format_html(
                '<progress value="{}" max="100" style="width:90px" title="{}%"></progress> {}%',
                percent,
                percent,
                percent,
            )
        badge = format_html(
            '<strong style="color:{}">{}</strong>',
            colours.get(document.status, "#000"),
            document.get_status_display(),
        )
        error = (
            format_html('<br><span style="color:#ba2121">{}</span>', document.error[:300])
            if document.error
            else ""
        )
        return format_html("{} {}{}", badge, bar, error)

    @admin.display(description="size", ordering="size_bytes")
    def size(self, document: Document) -> str:
        return (
            f"{document.size_bytes / 1024:.0f} KB"
            if document.size_bytes < 1024 * 1024
            else f"{document.size_bytes / 1e6:.1f} MB"
        )

    @admin.display(description="chunks")
    def chunk_table(self, document: Document) -> str:
        chunks = (
            Chunk.objects.filter(document=document)
            .order_by("position")
            .only("position", "section", "page_number", "text", "token_count")[:CHUNKS_SHOWN]
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    chunk.position,
                    chunk.section,
                    chunk.page_number or "",
                    chunk.token_count,
                    chunk.text[:300] + ("…" if len(chunk.text) > 300 else ""),
                )
                for chunk in chunks
            ),
        )
        more = (
            format_html("<p>Showing the first {} of {} chunks.</p>", CHUNKS_SHOWN, document.chunk_count)
            if document.chunk_count > CHUNKS_SHOWN
            else ""
        )
        return format_html(
            "<table><thead><tr><th>#</th><th>section</th><th>page</th><th>tokens</th><th>text</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        indexing = Document.objects.filter(
            status__in=[Document.Status.PENDING, Document.Status.PROCESSING]
        ).exists()
        extra_context = {**(extra_context or {}), "auto_refresh": indexing}
        return super().changelist_view(request, extra_context)

    @admin.action(description="Re-ingest the selected documents")
    def reingest_action(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            services.document_reingest(document=document)
        self.message_user(request, f"{queryset.count()} documents queued for indexing.")

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            services.document_delete(document=document)


class WebPageInline(admin.TabularInline[WebPage, WebSource]):
    model = WebPage
    fields = ["url", "document", "status_code", "error", "fetched_at"]
    readonly_fields = ["url", "document", "status_code", "error", "fetched_at"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebSource)
class WebSourceAdmin(admin.ModelAdmin[WebSource]):
    list_display = ["url", "collection", "mode", "sync_state", "page_count", "last_synced_at", "next_sync_at"]
    list_filter = ["sync_status", "mode", "collection"]
    search_fields = ["url"]
    list_select_related = ["collection"]
    actions = ["resync_action", "delete_selected"]
    inlines = [WebPageInline]
    # A source is added through "Add from the web" (the service checks the URL and its addresses); to change its
    # URL or limits, delete it and add it again.
    readonly_fields = [
        "collection",
        "url",
        "mode",
        "max_pages",
        "max_depth",
        "max_page_bytes",
        "max_total_bytes",
        "requests_per_second",
        "sync_interval_minutes",
        "sync_state",
        "last_synced_at",
        "next_sync_at",
        "page_count",
        "created_by",
        "created_at",
        "updated_at",
    ]
    exclude = ["sync_status", "last_error"]

    @admin.display(description="sync", ordering="sync_status")
    def sync_state(self, source: WebSource) -> str:
        colours = {"synced": "#2e7d32", "partial": "#b26a00", "failed": "#ba2121"}
        error = (
            format_html('<br><span style="color:#ba2121">{}</span>', source.last_error[:500])
            if source.last_error
            else ""
        )
        return format_html(
            '<strong style="color:{}">{}</strong>{}',
            colours.get(source.sync_status, "#757575"),
            source.get_sync_status_display(),
            error,
        )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = WebSourceForm(request.POST or None, initial={"collection": request.GET.get("collection")})
        if request.method == "POST" and form.is_valid():
            data = dict(form.cleaned_data)
            collection = data.pop("collection")
            try:
                source = services.web_source_create(collection=collection, created_by=request.user, **data)
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(
                    request, f"{source.url}: added to {collection}; its pages are fetched in the background."
                )
                return HttpResponseRedirect(reverse("admin:knowledge_websource_change", args=[source.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Add from the web",
            "form": form,
            "opts": self.model._meta,
            "allow_private": settings.KNOWLEDGE_WEB_ALLOW_PRIVATE,
        }
        return TemplateResponse(request, "admin/knowledge/web_source_add.html", context)

    @admin.action(description="Sync the selected web sources now")
    def resync_action(self, request: HttpRequest, queryset: QuerySet[WebSource]) -> None:
        for source in queryset:
            services.web_source_request_sync(source=source)
        self.message_user(request, f"{queryset.count()} web sources queued for a sync.")

    def delete_model(self, request: HttpRequest, obj: WebSource) -> None:
        services.web_source_delete(source=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebSource]) -> None:
        for source in queryset:
            services.web_source_delete(source=source)
