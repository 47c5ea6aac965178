"""Activation (and so rollback) and deletion of versions, serialized per kind."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from core.errors import Conflict
from mlmodels.models import ModelVersion
from mlmodels.selectors import ModelVersionNotFound


class VersionNotReady(Conflict):
    """Only a trained (ready) version can be activated."""


class VersionIsActive(Conflict):
    """The active version cannot be deleted; activate another one first."""


def lock_kind(kind: str) -> None:
    """Serialize changes to one kind's versions (numbering, activation) until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"mlmodels.kind.{kind}"])


def model_version_activate(*, version_id: int) -> ModelVersion:
    """Make a ready version the one that answers predictions for its kind; activating an older version is the
    rollback. Raises ModelVersionNotFound, VersionNotReady."""
    kind = ModelVersion.objects.filter(pk=version_id).values_list("kind", flat=True).first()
    if kind is None:
        raise ModelVersionNotFound(f"Model version {version_id} does not exist.")
    with transaction.atomic():
        lock_kind(kind)
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        if version.status != ModelVersion.Status.READY:
            raise VersionNotReady(
                f"{version} is {version.get_status_display().lower()}; only a ready version can be activated."
            )
        activate(version)
    return version


def activate(version: ModelVersion) -> None:
    """Within a transaction holding the kind's lock. The partial unique constraint is the backstop."""
    if version.is_active:
        return
    ModelVersion.objects.of_kind(version.kind).active().update(is_active=False, updated_at=timezone.now())
    version.is_active = True
    version.activated_at = timezone.now()
    version.save(update_fields=["is_active", "activated_at", "updated_at"])


def model_version_delete(*, version_id: int) -> None:
    """Delete a version and its file. Raises ModelVersionNotFound, VersionIsActive."""
    kind = ModelVersion.objects.filter(pk=version_id).values_list("kind", flat=True).first()
    if kind is None:
        raise ModelVersionNotFound(f"Model version {version_id} does not exist.")
    with transaction.atomic():
        lock_kind(kind)
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        if version.is_active:
            raise VersionIsActive(
                f"{version} is active; activate another version of {kind} before deleting it."
            )
        name, storage = version.artifact.name, version.artifact.storage
        version.delete()
        if name:
            transaction.on_commit(lambda: storage.delete(name))
