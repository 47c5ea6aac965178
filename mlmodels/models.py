"""The registry of trained models: every training run is a numbered version of its kind, with what it was trained
on, how well it does, and its weights as one .npz file. At most one version per kind is active (serves predictions);
activating an older one is the rollback."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q


class Kind(models.TextChoices):
    TITANIC = "titanic", "Titanic survival"
    MNIST = "mnist", "MNIST digits"


class Architecture(models.TextChoices):
    LOGREG = "logreg", "Logistic regression"
    MLP = "mlp", "Multi-layer perceptron"
    CNN = "cnn", "Convolutional network"


ARCHITECTURES_BY_KIND: dict[str, tuple[str, ...]] = {
    Kind.TITANIC: (Architecture.LOGREG,),
    Kind.MNIST: (Architecture.MLP, Architecture.CNN),
}

# The one number that says how good a version is, per kind: (metric, label).
KEY_METRICS: dict[str, tuple[str, str]] = {
    Kind.TITANIC: ("cv_accuracy_mean", "CV accuracy"),
    Kind.MNIST: ("test_accuracy", "test accuracy"),
}


class ModelVersionQuerySet(models.QuerySet["ModelVersion"]):
    def of_kind(self, kind: str) -> ModelVersionQuerySet:
        return self.filter(kind=kind)

    def active(self) -> ModelVersionQuerySet:
        return self.filter(is_active=True)

    def ready(self) -> ModelVersionQuerySet:
        return self.filter(status=ModelVersion.Status.READY)

    def in_progress(self) -> ModelVersionQuerySet:
        return self.filter(status__in=[ModelVersion.Status.PENDING, ModelVersion.Status.TRAINING])

    def without_results(self) -> ModelVersionQuerySet:
        """Leaves out the large JSON columns that lists never show."""
        return self.defer(
            "history",
            "confusion_matrix",
            "misclassified_indices",
            "misclassified_predicted",
            "misclassified_confidence",
            "extra",
        )


def artifact_upload_to(version: ModelVersion, filename: str) -> str:
    return f"mlmodels/{version.kind}/{filename}"


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Waiting for a worker"
        TRAINING = "TRAINING", "Training"
        READY = "READY", "Ready"
        FAILED = "FAILED", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    version = models.PositiveIntegerField()
    architecture = models.CharField(max_length=20, choices=Architecture.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    activate_when_ready = models.BooleanField(
        default=False, help_text="Become the active version once trained, even if another one is active."
    )
    quick_start = models.BooleanField(
        default=False,
        db_default=False,  # a replica still on the previous release inserts versions without the column
        help_text="A small model the first start trains in seconds so that predictions work at once; the full "
        "model queued behind it replaces it.",
    )

    # What was asked for (the arguments of the training entry point) and what it became.
    training_options = models.JSONField(default=dict, blank=True)
    seed = models.IntegerField(default=0)
    hyperparameters = models.JSONField(default=dict, blank=True)
    dataset = models.JSONField(default=dict, blank=True, help_text="Data set, files, checksums and split.")
    metrics = models.JSONField(default=dict, blank=True)
    history = models.JSONField(
        default=list, blank=True, help_text="One row per epoch (Titanic: per CV fold)."
    )
    confusion_matrix = models.JSONField(default=list, blank=True, help_text="True classes on rows.")
    class_labels = models.JSONField(default=list, blank=True)
    misclassified_indices = models.JSONField(
        default=list, blank=True, help_text="Positions in the evaluation set (MNIST: the 10,000 test digits)."
    )
    # Parallel to misclassified_indices (MNIST only): what the model answered, and how sure it was.
    misclassified_predicted = models.JSONField(default=list, blank=True)
    misclassified_confidence = models.JSONField(default=list, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    train_seconds = models.FloatField(null=True, blank=True)

    artifact = models.FileField(upload_to=artifact_upload_to, max_length=300, blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    artifact_size = models.BigIntegerField(null=True, blank=True)

    progress = models.FloatField(default=0.0)
    current_epoch = models.PositiveIntegerField(default=0)
    total_epochs = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The task (or process) training the version; a retry or re-delivery of that same task may take it over.
    task_id = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="modelversion_unique_version"),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(is_active=True), name="modelversion_one_active_per_kind"
            ),
            models.CheckConstraint(
                condition=Q(kind=Kind.TITANIC, architecture=Architecture.LOGREG)
                | Q(kind=Kind.MNIST, architecture__in=[Architecture.MLP, Architecture.CNN]),
                name="modelversion_architecture_fits_kind",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="modelversion_progress_0_1"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="modelversion_version_from_1"),
            models.CheckConstraint(
                condition=Q(is_active=False) | Q(status="READY"), name="modelversion_active_is_ready"
            ),
            models.CheckConstraint(
                condition=~Q(status="READY") | ~Q(artifact_sha256=""), name="modelversion_ready_has_artifact"
            ),
            models.CheckConstraint(
                condition=~Q(status="FAILED") | ~Q(error=""), name="modelversion_failed_has_error"
            ),
        ]
        indexes = [
            models.Index(fields=["kind", "status"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]

    def __str__(self) -> str:
        quick = ", quick start" if self.quick_start else ""
        return f"{self.kind} v{self.version} ({self.get_architecture_display()}{quick})"

    @property
    def key_metric_label(self) -> str:
        return KEY_METRICS[self.kind][1]

    @property
    def key_metric(self) -> float | None:
        value: Any = (self.metrics or {}).get(KEY_METRICS[self.kind][0])
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def key_metric_display(self) -> str:
        # Both key metrics are accuracies.
        value = self.key_metric
        return "—" if value is None else f"{100 * value:.2f} %"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.READY, self.Status.FAILED)
