"""The pictures of a version and of the test digits, as PNG."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.core.cache import cache

from core.errors import ObjectNotFound
from mlmodels import plots
from mlmodels.models import Kind, ModelVersion
from mlmodels.selectors.digits import mnist_digit_image
from mlmodels.selectors.versions import model_version_get


@dataclass(frozen=True)
class Picture:
    png: bytes
    etag: str
    final: bool


def version_plot(*, version_id: int, name: str) -> Picture:
    """A picture of a version as PNG. A finished version's pictures never change, so they are rendered once and
    kept in the cache; a training version's curves are drawn afresh. Raises ModelVersionNotFound, and
    ObjectNotFound for a picture the version does not have."""
    version = model_version_get(version_id=version_id)
    if name not in available_plots(version):
        raise ObjectNotFound(f"{version} has no {name!r} picture.")
    final = version.status == ModelVersion.Status.READY
    fingerprint = version.artifact_sha256 if final else f"{version.status}-{version.updated_at.timestamp()}"
    etag = hashlib.sha256(f"{version.pk}:{name}:{fingerprint}".encode()).hexdigest()[:32]
    key = f"mlmodels:plot:{etag}"
    png = cache.get(key) if final else None
    if png is None:
        png = _render(version, name)
        if final:
            cache.set(key, png, timeout=24 * 3600)
    return Picture(png=png, etag=etag, final=final)


def _render(version: ModelVersion, name: str) -> bytes:
    if name == "curves":
        best = (version.metrics or {}).get("best_epoch")
        return plots.training_curves_png(
            kind=version.kind, history=version.history, best_epoch=int(best) if best else None
        )
    if name == "confusion":
        return plots.confusion_matrix_png(
            matrix=version.confusion_matrix,
            # Titanic's classes are 0 and 1; people read them better as what they mean.
            labels=["died", "survived"] if version.kind == Kind.TITANIC else version.class_labels,
            title=f"{version}\n{version.key_metric_label} {version.key_metric_display}",
        )
    if name == "calibration":
        return plots.calibration_png(
            calibration=(version.extra or {}).get("calibration", {}),
            brier=(version.metrics or {}).get("oof_brier"),
        )
    return plots.coefficients_png(coefficients=(version.extra or {}).get("coefficients", {}))


def mnist_digit_png(*, index: int, scale: int = 1) -> bytes:
    """One MNIST test digit as PNG; raises TestDigitNotFound."""
    return plots.digit_png(mnist_digit_image(index=index), scale=scale)


def available_plots(version: ModelVersion) -> list[str]:
    names = []
    if version.history or version.status == ModelVersion.Status.TRAINING:
        names.append("curves")
    if version.confusion_matrix:
        names.append("confusion")
    if (version.extra or {}).get("coefficients"):
        names.append("coefficients")
    if (version.extra or {}).get("calibration"):
        names.append("calibration")
    return names
