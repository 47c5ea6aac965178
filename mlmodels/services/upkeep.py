"""Keeping the registry healthy: retrying or failing trainings whose worker died, queueing again the ones whose
message was lost, and making sure every kind has an active version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import jobs
from mlmodels.models import Kind, ModelVersion
from mlmodels.services import registry
from mlmodels.services.options import (
    QUICK_START_ARCHITECTURE,
    QUICK_START_OPTIONS,
    default_architecture,
    default_options,
)
from mlmodels.services.training import enqueue_training, model_version_request


def model_versions_recover_stalled() -> list[int]:
    """Versions whose training process stopped reporting (killed, out of memory) are queued again, until they have
    had MLMODELS_TRAIN_MAX_ATTEMPTS tries, then failed with the reason; those that waited for a worker too long (a
    lost message) are queued again. Returns their ids."""
    now = timezone.now()

    def recover(version: ModelVersion) -> None:
        silent = (
            f"The training process stopped reporting at {version.heartbeat_at:%Y-%m-%d %H:%M:%S %Z} (after "
            f"epoch {version.current_epoch} of {version.total_epochs}): its worker was killed, ran out of memory "
            "or lost its machine."
        )
        if version.attempts < settings.MLMODELS_TRAIN_MAX_ATTEMPTS:
            version.status = ModelVersion.Status.PENDING
            version.error = f"{silent} Queued again (attempt {version.attempts + 1})."
            version.queued_at = now
            enqueue_training(version.pk)
        else:
            version.status = ModelVersion.Status.FAILED
            version.error = f"{silent} It has had {version.attempts} tries; train a new version to try again."
            version.finished_at = now
        version.save(update_fields=["status", "error", "queued_at", "finished_at", "updated_at"])

    touched = jobs.jobs_recover_stalled(
        ModelVersion.objects.all(),
        running=ModelVersion.Status.TRAINING,
        stale_seconds=settings.MLMODELS_TRAIN_STALE_SECONDS,
        now=now,
        recover=recover,
    )
    waited = now - timedelta(seconds=settings.MLMODELS_TRAIN_REQUEUE_SECONDS)
    for version_id in ModelVersion.objects.filter(
        status=ModelVersion.Status.PENDING, queued_at__lt=waited
    ).values_list("pk", flat=True):
        with transaction.atomic():
            if ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.PENDING).update(
                queued_at=now
            ):
                enqueue_training(version_id)
                touched.append(version_id)
    return touched


def _request_default(kind: str) -> ModelVersion:
    """The full model of `kind` that `ensure_models` trains (MNIST with MLMODELS_MNIST_DEFAULT_ARCH), queued."""
    return model_version_request(
        kind=kind, architecture=default_architecture(kind), options=default_options(kind)
    )


@dataclass(frozen=True)
class Ensured:
    kind: str
    outcome: Literal["active", "in-progress", "activated", "queued", "quick-start-queued"]
    version: ModelVersion
    message: str


def models_ensure() -> list[Ensured]:
    """Make sure every kind will have an active version, without waiting: a kind with none gets its latest ready
    version activated, or else a training queued (MNIST with MLMODELS_MNIST_DEFAULT_ARCH), unless one is already
    waiting or training. Stalled trainings are failed first, so that they do not count as running.

    MNIST with no version at all (a first start) gets a quick-start model queued first (QUICK_START_OPTIONS, under
    a minute), then the full one, which replaces it when ready (MLMODELS_MNIST_QUICK_START=0: the full one only)."""
    model_versions_recover_stalled()
    ensured = []
    for kind in Kind.values:
        with transaction.atomic():
            registry.lock_kind(kind)
            versions = ModelVersion.objects.of_kind(kind).without_results().order_by("-version")
            active = versions.active().first()
            running = versions.in_progress().first()
            ready = versions.ready().first()
            if (
                active is not None
                and active.quick_start
                and not versions.filter(quick_start=False).exclude(status=ModelVersion.Status.FAILED).exists()
            ):
                # The full model queued behind the quick-start one failed or was deleted: queue it again.
                full = _request_default(kind)
                ensured.append(
                    Ensured(
                        kind,
                        "queued",
                        full,
                        f"{active} is active; {full} is queued for training and replaces it when ready if it "
                        "validates at least as well.",
                    )
                )
            elif active is not None:
                ensured.append(Ensured(kind, "active", active, f"{active} is active."))
            elif running is not None:
                ensured.append(
                    Ensured(
                        kind, "in-progress", running, f"{running} is {running.get_status_display().lower()}."
                    )
                )
            elif ready is not None:
                registry.activate(ready)
                ensured.append(Ensured(kind, "activated", ready, f"{ready} was ready and is now active."))
            elif kind == Kind.MNIST and settings.MLMODELS_MNIST_QUICK_START and not versions.exists():
                quick = model_version_request(
                    kind=kind,
                    architecture=QUICK_START_ARCHITECTURE,
                    options=QUICK_START_OPTIONS,
                    quick_start=True,
                )
                full = _request_default(kind)
                ensured.append(
                    Ensured(
                        kind,
                        "quick-start-queued",
                        quick,
                        f"{quick} is queued for training (under a minute) and becomes active when ready; {full} is "
                        "queued behind it and replaces it when ready if it validates at least as well.",
                    )
                )
            else:
                version = _request_default(kind)
                ensured.append(
                    Ensured(
                        kind,
                        "queued",
                        version,
                        f"{version} is queued for training; it becomes active when ready.",
                    )
                )
    return ensured
