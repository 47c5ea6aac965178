"""Requesting and running a training, in a worker or in this process, and recording its result."""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core import jobs
from core.jobs import BROKER_ERRORS, TRANSIENT_ERRORS
from mlmodels import selectors
from mlmodels.datasets import MNIST_PIXELS
from mlmodels.models import Kind, ModelVersion
from mlmodels.selectors import ModelVersionNotFound
from mlmodels.services import registry
from mlmodels.services.options import clean_request, default_architecture

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from mlmodels.core.training import TrainingResult

logger = logging.getLogger(__name__)


ProgressCallback = Callable[[int, int, Mapping[str, float]], None]


class TrainingFailed(Exception):
    """A training run produced something that must not be served."""


def model_version_request(
    *,
    kind: str,
    architecture: str | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    activate: bool = False,
    created_by: AbstractBaseUser | AnonymousUser | None = None,
    enqueue: bool = True,
    quick_start: bool = False,
) -> ModelVersion:
    """Record the next version of `kind`, waiting to be trained, and queue its training once committed.

    `options` are the arguments of the core's training entry point (see TITANIC_OPTIONS, MNIST_OPTIONS); with
    `activate` the version becomes active once trained even if another one is; a `quick_start` version (the small
    model of a first start) becomes active only where none is, and the next full one replaces it. Raises
    TrainingOptionsInvalid."""
    architecture, clean = clean_request(kind, architecture or default_architecture(kind), options or {}, seed)
    with transaction.atomic():
        registry.lock_kind(kind)
        last = ModelVersion.objects.of_kind(kind).aggregate(last=Max("version"))["last"] or 0
        version = ModelVersion.objects.create(
            kind=kind,
            version=last + 1,
            architecture=architecture,
            training_options=clean,
            seed=seed,
            activate_when_ready=activate,
            quick_start=quick_start,
            queued_at=timezone.now(),
            created_by_id=created_by.pk if created_by is not None and created_by.is_authenticated else None,
        )
        if enqueue:
            enqueue_training(version.pk)
    return version


def model_version_train_now(
    *,
    kind: str,
    architecture: str | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    activate: bool = False,
    quick_start: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ModelVersion:
    """Train a new version of `kind` in this process (for commands; no worker needed) and record it READY or
    FAILED. Raises TrainingOptionsInvalid."""
    version = model_version_request(
        kind=kind,
        architecture=architecture,
        options=options,
        seed=seed,
        activate=activate,
        enqueue=False,
        quick_start=quick_start,
    )
    return model_version_train(version_id=version.pk, on_progress=on_progress)


def enqueue_training(version_id: int) -> None:
    # Only after the row is committed, or the worker could look for a version that is not there yet.
    transaction.on_commit(lambda: _send_training(version_id))


def _send_training(version_id: int) -> None:
    from mlmodels.tasks import train_model_version

    try:
        train_model_version.delay(version_id)
    except BROKER_ERRORS as exc:
        # The version waits (PENDING) and the recovery sweep sends it again once the broker answers.
        logger.warning("the training of version %s could not be queued: %s", version_id, exc)


def model_version_train(
    *, version_id: int, task_id: str = "", on_progress: ProgressCallback | None = None
) -> ModelVersion:
    """Train a requested version and record it READY with its artifact (activating it when it was asked to be, when
    its kind has no active version, or in place of a first start's quick-start model: `_becomes_active`), or FAILED
    with the reason.

    Idempotent: a finished version, or one that a live worker holds, is left alone. Errors of the database
    connection propagate so that the task is retried. Raises ModelVersionNotFound."""
    owner = task_id or f"process-{os.getpid()}-{threading.get_ident()}"
    version = _claim(version_id, owner, queued=bool(task_id))
    if version is None:
        return selectors.model_version_get(version_id=version_id)
    try:
        with jobs.Heartbeat(
            ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.TRAINING, task_id=owner),
            interval=settings.MLMODELS_TRAIN_HEARTBEAT_SECONDS,
            name=f"model version {version.pk}",
        ):
            result = _run_training(version, _ProgressRecorder(version.pk, owner, on_progress))
            _record(version, owner, result)
    except TRANSIENT_ERRORS:
        raise
    except KeyboardInterrupt:
        _fail(version.pk, owner, "Training was interrupted (Ctrl-C) before it finished.")
        raise
    except Exception as exc:  # noqa: BLE001 - whatever stops a training run ends its version as FAILED, with the reason
        _fail(version.pk, owner, _failure_reason(exc))
    return selectors.model_version_get(version_id=version_id)


def _claim(version_id: int, owner: str, *, queued: bool) -> ModelVersion | None:
    """Take the version for this run, or say (None) that there is nothing to do. A queued quick-start version (only
    `models_ensure` queues them) that a full model has overtaken is failed instead: it could not become active."""
    now = timezone.now()
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None:
            raise ModelVersionNotFound(
                f"Model version {version_id} does not exist (deleted before it was trained?)."
            )
        if version.is_finished:
            return None
        if (
            queued
            and version.quick_start
            and not version.activate_when_ready
            and ModelVersion.objects.of_kind(version.kind).active().filter(quick_start=False).exists()
        ):
            # Queued again (a lost message, a killed worker) after a full model became active: it could not win.
            version.status = ModelVersion.Status.FAILED
            version.error = (
                "Not trained: a full model became active first, and a quick-start model never replaces it."
            )
            version.finished_at = now
            version.save(update_fields=["status", "error", "finished_at", "updated_at"])
            return None
        claim = jobs.job_claim(
            version,
            running=ModelVersion.Status.TRAINING,
            owner=owner,
            stale_seconds=settings.MLMODELS_TRAIN_STALE_SECONDS,
            max_attempts=settings.MLMODELS_TRAIN_MAX_ATTEMPTS,
            now=now,
        )
        if claim is jobs.Claim.HELD:
            return None
        if claim is jobs.Claim.EXHAUSTED:
            version.status = ModelVersion.Status.FAILED
            version.error = (
                f"Training was interrupted {version.attempts} times (a worker was killed, ran out of memory, or lost "
                "the database); train a new version to try again."
            )
            version.finished_at = now
            version.save(update_fields=["status", "error", "finished_at", "updated_at"])
            return None
        version.started_at = now
        version.current_epoch = 0
        version.total_epochs = 0
        version.history = []
        version.save()
    return version


class _ProgressRecorder:
    """Records each finished epoch (or fold) on the row, so admin shows progress and the curves grow live."""

    def __init__(self, version_id: int, owner: str, forward: ProgressCallback | None) -> None:
        self.version_id = version_id
        self.owner = owner
        self.forward = forward
        self.rows: list[dict[str, Any]] = []

    def __call__(self, epoch: int, total: int, row: Mapping[str, float]) -> None:
        if "final_fit" not in row:  # Titanic's last step is the refit on all rows, not a fold
            self.rows.append(_json_safe(dict(row)))
        ModelVersion.objects.filter(
            pk=self.version_id, status=ModelVersion.Status.TRAINING, task_id=self.owner
        ).update(
            progress=min(1.0, max(0.0, epoch / max(total, 1))) * 0.99,
            current_epoch=epoch,
            total_epochs=total,
            history=self.rows,
            heartbeat_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if self.forward is not None:
            self.forward(epoch, total, row)


def _run_training(version: ModelVersion, progress: ProgressCallback) -> TrainingResult:
    from mlmodels.core import training

    options = version.training_options
    if version.kind == Kind.TITANIC:
        penalty = options["penalty"]
        return training.train_titanic(
            seed=version.seed,
            C="auto" if options["C"] == "auto" else float(options["C"]),
            penalty=None if penalty == "none" else penalty,
            l1_ratio=float(options["l1_ratio"]),
            n_splits=int(options["n_splits"]),
            progress=progress,
        )
    overrides = {
        key: tuple(value) if isinstance(value, list) else value for key, value in options["overrides"].items()
    }
    return training.train_mnist(
        arch=version.architecture,  # type: ignore[arg-type]
        seed=version.seed,
        epochs=options["epochs"],
        augment=bool(options["augment"]),
        validation_size=int(options["validation_size"]),
        train_size=options["train_size"],
        overrides=overrides or None,
        progress=progress,
    )


def _record(version: ModelVersion, owner: str, result: TrainingResult) -> None:
    expected = "titanic-logreg" if version.kind == Kind.TITANIC else f"mnist-{version.architecture}"
    if result.kind != expected:
        raise TrainingFailed(f"The training produced a {result.kind} model; a {expected} model was expected.")
    buffer = io.BytesIO()
    result.save(buffer)
    data = buffer.getvalue()
    _check_round_trip(version.kind, result.model, data)
    predicted, confidence = _mistake_predictions(version.kind, result)
    digest = hashlib.sha256(data).hexdigest()
    summary = _json_safe(result.summary())
    with transaction.atomic():
        registry.lock_kind(version.kind)
        locked = ModelVersion.objects.select_for_update().filter(pk=version.pk).first()
        if locked is None or locked.status != ModelVersion.Status.TRAINING or locked.task_id != owner:
            return  # deleted, or failed and taken over meanwhile: this run's result is not wanted
        locked.artifact.save(
            f"{version.kind}-v{version.version}-{digest[:12]}.npz", ContentFile(data), save=False
        )
        saved_name = locked.artifact.name
        locked.artifact_sha256 = digest
        locked.artifact_size = len(data)
        locked.hyperparameters = summary["hyperparameters"]
        locked.dataset = summary["dataset"]
        locked.metrics = summary["metrics"]
        locked.history = summary["history"]
        locked.confusion_matrix = summary["confusion_matrix"]
        locked.class_labels = summary["class_labels"]
        locked.misclassified_indices = summary["misclassified_indices"]
        locked.misclassified_predicted = predicted
        locked.misclassified_confidence = confidence
        locked.extra = summary.get("extra", {})
        locked.train_seconds = float(result.train_seconds)
        locked.status = ModelVersion.Status.READY
        locked.progress = 1.0
        locked.finished_at = locked.heartbeat_at = timezone.now()
        try:
            locked.save()
            if _becomes_active(locked):
                registry.activate(locked)
        except Exception:
            locked.artifact.storage.delete(saved_name)
            raise


def _becomes_active(version: ModelVersion) -> bool:
    """A version just trained is activated when asked to, when its kind has no active version, or when the active
    one is the quick-start model of a first start and this full one is at least as accurate on the same validation
    digits (a full model that is worse stays ready for staff to look at). Unasked, a quick-start model never
    replaces an active one, and once a full model has been active (staff may roll back to the quick-start one) no
    full model replaces anything unasked."""
    if version.activate_when_ready:
        return True
    of_kind = ModelVersion.objects.of_kind(version.kind)
    active = of_kind.active().only("quick_start", "metrics", "dataset").first()
    if active is None:
        return True
    if version.quick_start or not active.quick_start:
        return False
    if of_kind.filter(quick_start=False, activated_at__isnull=False).exists():
        return False
    if version.dataset.get("n_validation") != active.dataset.get("n_validation"):
        return False  # accuracies on different validation sets do not compare
    mine, theirs = version.metrics.get("val_accuracy"), active.metrics.get("val_accuracy")
    return mine is not None and theirs is not None and mine >= theirs


def _check_round_trip(kind: str, model: Any, data: bytes) -> None:
    """The file must give the same answers as the model in memory before anyone is served from it."""
    from mlmodels.core.serialization import model_from_bytes

    loaded = model_from_bytes(data)
    if kind == Kind.TITANIC:
        from mlmodels.datasets import load_titanic

        probe: Any = load_titanic().records[:32]
    else:
        test_images, _ = selectors.mnist_test_set()
        probe = test_images[:32].reshape(-1, MNIST_PIXELS).astype(np.float32) / 255.0
    if not np.allclose(loaded.predict_proba(probe), model.predict_proba(probe), rtol=1e-5, atol=1e-7):
        raise TrainingFailed("The saved model file does not reproduce the trained model's predictions.")


def _mistake_predictions(kind: str, result: TrainingResult) -> tuple[list[int], list[float]]:
    """What an MNIST model answered for each test digit it gets wrong, and its probability."""
    indices = np.asarray(result.misclassified_indices, dtype=np.intp)
    if kind != Kind.MNIST or indices.size == 0:
        return [], []
    test_images, _ = selectors.mnist_test_set()
    proba = result.model.predict_proba(
        test_images[indices].reshape(-1, MNIST_PIXELS).astype(np.float32) / 255.0
    )
    best = np.argmax(proba, axis=1)
    predicted = [int(label) for label in np.asarray(result.model.classes_)[best]]
    confidence = [round(float(p), 4) for p in proba[np.arange(best.shape[0]), best]]
    return predicted, confidence


def _failure_reason(exc: Exception) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, SoftTimeLimitExceeded):
        return (
            f"Training took longer than the {settings.MLMODELS_TRAIN_SOFT_TIME_LIMIT} s time limit "
            "(MLMODELS_TRAIN_SOFT_TIME_LIMIT); train with fewer epochs or raise the limit."
        )
    if isinstance(exc, TrainingFailed):
        return str(exc)
    logger.error("training a model version failed", exc_info=exc)
    return f"Training failed: {type(exc).__name__}: {exc}"


def _fail(version_id: int, owner: str, reason: str) -> None:
    now = timezone.now()
    ModelVersion.objects.filter(pk=version_id, task_id=owner).exclude(
        status=ModelVersion.Status.READY
    ).update(
        status=ModelVersion.Status.FAILED,
        error=reason[:4000] or "Training failed.",
        finished_at=now,
        heartbeat_at=now,
        updated_at=now,
    )


def _json_safe(value: Any) -> Any:
    """JSON that PostgreSQL accepts: NaN and infinities (an undefined AUC, a missing validation score) become
    null, NumPy scalars and arrays plain values."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
