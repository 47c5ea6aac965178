"""Versions, the active version of a kind, and its fitted model loaded once per process."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from core.errors import ObjectNotFound, ServiceUnavailable
from mlmodels.models import Kind, ModelVersion


class ModelVersionNotFound(ObjectNotFound):
    """No such model version."""


class NoActiveModel(ServiceUnavailable):
    """No model of this kind is active yet."""


class ArtifactUnreadable(ServiceUnavailable):
    """The active model's file is missing or damaged."""


def model_versions_list(*, kind: str | None = None, status: str | None = None) -> QuerySet[ModelVersion]:
    """Versions newest first within each kind, without the large result columns."""
    versions = ModelVersion.objects.without_results().select_related("created_by")
    if kind:
        versions = versions.filter(kind=kind)
    if status:
        versions = versions.filter(status=status)
    return versions.order_by("kind", "-version")


def model_version_get(*, version_id: int) -> ModelVersion:
    """One version with all its results; raises ModelVersionNotFound."""
    version = ModelVersion.objects.select_related("created_by").filter(pk=version_id).first()
    if version is None:
        raise ModelVersionNotFound(f"Model version {version_id} does not exist.")
    return version


def model_version_active(*, kind: str) -> ModelVersion | None:
    """The version of `kind` that answers predictions, if any."""
    return ModelVersion.objects.of_kind(kind).active().first()


def model_version_training(*, kind: str) -> ModelVersion | None:
    """The newest version of `kind` waiting for a worker or being trained, if any."""
    return ModelVersion.objects.of_kind(kind).in_progress().without_results().order_by("-version").first()


def active_versions() -> dict[str, ModelVersion | None]:
    """The active version of every kind (None where there is none)."""
    active = {version.kind: version for version in ModelVersion.objects.active().without_results()}
    return {kind: active.get(kind) for kind in Kind.values}


@dataclass(frozen=True)
class KindOverview:
    kind: str
    label: str
    active: ModelVersion | None
    versions: list[ModelVersion]
    in_progress: list[ModelVersion]


def models_overview() -> list[KindOverview]:
    """Every kind with its active version and its versions, newest first."""
    versions = list(model_versions_list())
    overview = []
    for kind, label in Kind.choices:
        of_kind = [version for version in versions if version.kind == kind]
        overview.append(
            KindOverview(
                kind=kind,
                label=str(label),
                active=next((v for v in of_kind if v.is_active), None),
                versions=of_kind,
                in_progress=[v for v in of_kind if v.status in (v.Status.PENDING, v.Status.TRAINING)],
            )
        )
    return overview


def active_model(*, kind: str) -> tuple[ModelVersion, Any]:
    """The active version of `kind` and its fitted model, read from its file once per process and version.

    Raises NoActiveModel (saying whether one is being trained) and ArtifactUnreadable."""
    version = model_version_active(kind=kind)
    if version is None:
        raise NoActiveModel(no_active_message(kind), kind=kind)
    return version, _loaded_model(version.pk, version.artifact.name, version.artifact_sha256)


def no_active_message(kind: str) -> str:
    label = Kind(kind).label
    running = ModelVersion.objects.of_kind(kind).in_progress().order_by("-version").first()
    if running is not None:
        state = (
            f"training, epoch {running.current_epoch} of {running.total_epochs}"
            if running.status == ModelVersion.Status.TRAINING and running.total_epochs
            else running.get_status_display().lower()
        )
        return f"No {label} model is active yet: version {running.version} is {state}. Try again when it is ready."
    return (
        f"No {label} model is active yet. Staff can train one in admin (Models › Model versions) "
        f"or with `manage.py train_{kind}`."
    )


# Keyed by the file's hash as well, so a version whose file changed is never answered from a stale copy.
@functools.lru_cache(maxsize=4)
def _loaded_model(version_id: int, name: str, sha256: str) -> Any:
    from django.core.files.storage import default_storage

    from mlmodels.core.exceptions import ModelFormatError
    from mlmodels.core.serialization import model_from_bytes

    try:
        with default_storage.open(name, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise ArtifactUnreadable(
            f"The file of model version {version_id} is missing ({name}); activate another version or train a new one."
        ) from error
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactUnreadable(
            f"The file of model version {version_id} does not match its recorded hash (changed or damaged on disk); "
            "activate another version or train a new one."
        )
    try:
        return model_from_bytes(data)
    except ModelFormatError as error:
        raise ArtifactUnreadable(f"The file of model version {version_id} cannot be read: {error}") from error
