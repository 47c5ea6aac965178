"""Staff train, watch, compare and activate model versions here. Training runs on the workers; the list shows each
version's status, progress and heartbeat, and refreshes itself while something trains. Activating an older version
is the rollback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from core.errors import DomainError
from mlmodels import presentation, selectors, services
from mlmodels.models import Architecture, Kind, ModelVersion, ModelVersionQuerySet

STATUS_COLOURS = {"READY": "#2e7d32", "FAILED": "#ba2121", "TRAINING": "#1565c0", "PENDING": "#757575"}


class TrainForm(forms.Form):
    kind = forms.ChoiceField(choices=Kind.choices, initial=Kind.MNIST)
    architecture = forms.ChoiceField(
        choices=[(Architecture.MLP, "Multi-layer perceptron"), (Architecture.CNN, "Convolutional network")],
        initial=lambda: settings.MLMODELS_MNIST_DEFAULT_ARCH,  # read when the form is shown, not at import
        help_text="MNIST only (Titanic is always logistic regression).",
    )
    epochs = forms.IntegerField(
        min_value=1,
        max_value=500,
        required=False,
        help_text="MNIST only. Blank: the architecture's default (MLP 20, CNN 12; with augmentation 60 and 15).",
    )
    augment = forms.BooleanField(
        required=False, help_text="MNIST only: random shifts, rotations and scaling of the training digits."
    )
    C = forms.FloatField(
        min_value=1e-6,
        required=False,
        help_text="Titanic only: inverse regularization strength. Blank: chosen by cross-validation.",
    )
    penalty = forms.ChoiceField(
        choices=[("l2", "L2"), ("l1", "L1"), ("elasticnet", "Elastic net"), ("none", "None")],
        initial="l2",
        help_text="Titanic only.",
    )
    seed = forms.IntegerField(min_value=0, max_value=2**32 - 1, initial=0)
    activate = forms.BooleanField(
        required=False,
        help_text="Make it the active version once trained. Without this, it becomes active only if there is "
        "no active version of its kind, or in place of a first start's quick-start model if it validates at "
        "least as well.",
    )

    def request_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data["kind"] == Kind.TITANIC:
            return {
                "kind": Kind.TITANIC,
                "architecture": Architecture.LOGREG,
                "options": {"C": data["C"] or "auto", "penalty": data["penalty"]},
            }
        return {
            "kind": Kind.MNIST,
            "architecture": data["architecture"],
            "options": {"epochs": data["epochs"], "augment": data["augment"]},
        }


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin[ModelVersion]):
    list_display = ["__str__", "status_badge", "key_metric_column", "active", "created_at", "created_by"]
    list_filter = ["kind", "status", "architecture", "is_active", "quick_start"]
    list_select_related = ["created_by"]
    search_fields = ["artifact_sha256", "error"]
    ordering = ["kind", "-version"]
    actions = ["activate_action", "delete_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "kind",
                    "version",
                    "architecture",
                    "status_badge",
                    "is_active",
                    "activated_at",
                    "activate_when_ready",
                    "quick_start",
                ]
            },
        ),
        ("Results", {"fields": ["metrics_table", "plots"]}),
        (
            "Training",
            {
                "fields": [
                    "options_table",
                    "seed",
                    "dataset_table",
                    "hyperparameters_table",
                    "train_seconds",
                    "attempts",
                    "task_id",
                    "queued_at",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                ]
            },
        ),
        ("Model file", {"fields": ["artifact", "artifact_sha256", "artifact_size"]}),
        ("History", {"fields": ["created_by", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    # A version is a record of a training run: every field on its page is read-only.
    readonly_fields = [
        name for _, options in fieldsets for name in options["fields"] if isinstance(name, str)
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        queryset = cast(ModelVersionQuerySet, super().get_queryset(request))
        # The list never shows the large result columns; the change page needs them.
        if request.resolver_match and "object_id" in request.resolver_match.kwargs:
            return queryset
        return queryset.without_results()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions are made by training: "Train a new version"

    def has_change_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        # Versions are a record of what was trained: nothing on them is edited by hand (viewing still is allowed).
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    # --- Columns ------------------------------------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, version: ModelVersion) -> str:
        badge = format_html(
            '<strong style="color:{}">{}</strong>',
            STATUS_COLOURS.get(version.status, "#000"),
            version.get_status_display(),
        )
        detail: Any = ""
        if version.status == ModelVersion.Status.TRAINING:
            percent = round(version.progress * 100)
            step = "step" if version.kind == Kind.TITANIC else "epoch"
            stale = version.heartbeat_at is not None and version.heartbeat_at < timezone.now() - timedelta(
                seconds=settings.MLMODELS_TRAIN_STALE_SECONDS
            )
            detail = format_html(
                ' <progress value="{}" max="100" style="width:90px" title="{}%"></progress> {}%{}{}',
                percent,
                percent,
                percent,
                format_html(" · {} {} of {}", step, version.current_epoch, version.total_epochs)
                if version.total_epochs
                else "",
                format_html(
                    '<br><span style="color:{}">last heartbeat {} ago{}</span>',
                    "#ba2121" if stale else "#757575",
                    timesince(version.heartbeat_at),
                    " — stalled? it is retried automatically, then failed, if it stays silent"
                    if stale
                    else "",
                )
                if version.heartbeat_at
                else "",
            )
        elif version.status == ModelVersion.Status.PENDING and version.queued_at:
            detail = format_html(
                '<br><span style="color:#757575">waiting for a worker for {}</span>',
                timesince(version.queued_at),
            )
        error = (
            format_html('<br><span style="color:#ba2121">{}</span>', version.error[:300])
            if version.error
            else ""
        )
        return format_html("{}{}{}", badge, detail, error)

    @admin.display(description="active", boolean=True, ordering="is_active")
    def active(self, version: ModelVersion) -> bool:
        return version.is_active

    @admin.display(description="key metric")
    def key_metric_column(self, version: ModelVersion) -> str:
        if version.key_metric is None:
            return "—"
        return format_html("{} <small>{}</small>", version.key_metric_display, version.key_metric_label)

    @admin.display(description="metrics")
    def metrics_table(self, version: ModelVersion) -> str:
        rows = presentation.metric_rows(version.metrics or {})
        if not rows:
            return "—"
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((r.label, r.display) for r in rows)),
        )

    @admin.display(description="pictures")
    def plots(self, version: ModelVersion) -> str:
        names = selectors.available_plots(version)
        if not names:
            return "—"
        return format_html_join(
            " ",
            '<a href="{0}"><img src="{0}" alt="{1}" style="max-width:560px;width:100%;border:1px solid #ccc"></a>',
            ((reverse("mlmodels:version_plot", args=[version.pk, name]), name) for name in names),
        )

    def _pairs(self, pairs: list[tuple[str, str]]) -> str:
        if not pairs:
            return "—"
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td><code>{}</code></td></tr>", ((k, v) for k, v in pairs)),
        )

    @admin.display(description="training options")
    def options_table(self, version: ModelVersion) -> str:
        return self._pairs(presentation.flatten_parameters(version.training_options or {}))

    @admin.display(description="data set and split")
    def dataset_table(self, version: ModelVersion) -> str:
        return self._pairs(presentation.flatten_parameters(version.dataset or {}))

    @admin.display(description="hyperparameters")
    def hyperparameters_table(self, version: ModelVersion) -> str:
        return self._pairs(presentation.flatten_parameters(version.hyperparameters or {}))

    # --- Pages and actions --------------------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        custom = [
            path("train/", self.admin_site.admin_view(self.train_view), name="mlmodels_modelversion_train"),
            path(
                "<int:version_id>/activate/",
                self.admin_site.admin_view(require_POST(self.activate_view)),
                name="mlmodels_modelversion_activate",
            ),
        ]
        return custom + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        training = ModelVersion.objects.in_progress().exists()
        extra_context = {
            **(extra_context or {}),
            "auto_refresh": training,
            "train_url": reverse("admin:mlmodels_modelversion_train"),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        version = ModelVersion.objects.filter(pk=object_id).only("status", "is_active").first()
        extra_context = {
            **(extra_context or {}),
            "can_activate": version is not None
            and version.status == ModelVersion.Status.READY
            and not version.is_active
            and self._may_manage(request),
            "activate_url": reverse("admin:mlmodels_modelversion_activate", args=[object_id]),
            "page_url": reverse("mlmodels:version", args=[object_id]),
            "auto_refresh": version is not None and not version.is_finished,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _may_manage(self, request: HttpRequest) -> bool:
        return request.user.has_perm("mlmodels.change_modelversion")

    def train_view(self, request: HttpRequest) -> HttpResponse:
        if not self._may_manage(request):
            messages.error(request, "You may not train models.")
            return HttpResponseRedirect(reverse("admin:mlmodels_modelversion_changelist"))
        form = TrainForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                version = services.model_version_request(
                    **form.request_arguments(),
                    seed=form.cleaned_data["seed"],
                    activate=form.cleaned_data["activate"],
                    created_by=request.user,
                )
            except DomainError as exc:
                field = exc.details.get("field")
                form.add_error(
                    field if isinstance(field, str) and field in form.fields else None, exc.message
                )
            else:
                messages.success(
                    request, f"{version} is queued; a worker trains it, and its progress shows in this list."
                )
                return HttpResponseRedirect(reverse("admin:mlmodels_modelversion_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Train a new model version",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/mlmodels/train.html", context)

    def activate_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        get_object_or_404(ModelVersion, pk=version_id)
        if self._may_manage(request):
            self._activate(request, version_id)
        else:
            messages.error(request, "You may not activate models.")
        return HttpResponseRedirect(reverse("admin:mlmodels_modelversion_change", args=[version_id]))

    def _activate(self, request: HttpRequest, version_id: int) -> None:
        try:
            version = services.model_version_activate(version_id=version_id)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{version} is now the active {version.get_kind_display()} model.")

    @admin.action(description="Activate the selected version (roll back by choosing an older one)")
    def activate_action(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if not self._may_manage(request):
            messages.error(request, "You may not activate models.")
            return
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            messages.error(request, "Select exactly one version to activate.")
            return
        self._activate(request, ids[0])

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        services.model_version_delete(version_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version_id in queryset.values_list("pk", flat=True):
            try:
                services.model_version_delete(version_id=version_id)
            except DomainError as exc:
                messages.error(request, exc.message)
