"""The predictions of the active versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import numpy as np
from django.conf import settings

from core.errors import InvalidInput
from mlmodels import images, selectors
from mlmodels.datasets import MNIST_PIXELS
from mlmodels.models import Kind, ModelVersion


class PassengerInvalid(InvalidInput):
    """The passenger's fields are not valid."""


class PixelsInvalid(InvalidInput):
    """The pixels are not a 28x28 picture in the stated scale."""


@dataclass(frozen=True)
class SurvivalPrediction:
    version: ModelVersion
    survived: bool
    probability: float
    contributions: dict[str, float]
    intercept: float
    passenger: dict[str, Any]
    features: dict[str, float]  # the passenger's own feature values, before scaling


def titanic_predict(*, passenger: Mapping[str, Any]) -> SurvivalPrediction:
    """The survival probability of one passenger from the active Titanic model, with each feature's share of the
    log-odds. Raises PassengerInvalid (every bad field in `details`), NoActiveModel, ArtifactUnreadable."""
    from mlmodels.core.exceptions import InvalidFields
    from mlmodels.core.titanic import predict_passenger, validate_passenger

    try:
        clean = validate_passenger(passenger)
    except InvalidFields as exc:
        raise PassengerInvalid(f"{exc.field}: {exc.message}", errors=exc.errors) from exc
    version, model = selectors.active_model(kind=Kind.TITANIC)
    prediction = predict_passenger(model, clean)
    return SurvivalPrediction(
        version=version,
        survived=prediction.survived,
        probability=prediction.probability,
        contributions=prediction.contributions,
        intercept=prediction.intercept,
        passenger=clean,
        features=prediction.features,
    )


@dataclass(frozen=True)
class DigitPrediction:
    version: ModelVersion
    digit: int
    probabilities: list[float]
    prepared: images.PreparedDigit


def mnist_predict_pixels(
    *, pixels: Sequence[float], scale: Literal[1, 255] = 255, recenter: bool = False
) -> DigitPrediction:
    """The digit in 784 pixel values (row by row, white ink on black, each in [0, `scale`]) by the active MNIST
    model. With `recenter` they are first centred like an MNIST digit (as an uploaded picture is).
    Raises PixelsInvalid, NoActiveModel, ArtifactUnreadable."""
    if scale not in (1, 255):
        raise PixelsInvalid("scale is 255 (values 0 to 255) or 1 (values 0 to 1).", field="scale")
    if len(pixels) != MNIST_PIXELS:
        raise PixelsInvalid(
            f"Expected {MNIST_PIXELS} pixel values (28 rows of 28, row by row); got {len(pixels)}.",
            field="pixels",
        )
    values = np.asarray(pixels, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > scale))
    if bad.size:
        first = int(bad[0])
        raise PixelsInvalid(
            f"With scale {scale} every pixel is between 0 and {scale}; pixel {first} is {values[first]:g} "
            f"({bad.size} out of range).",
            field="pixels",
            index=first,
        )
    prepared = images.prepare_array((values * (255.0 / scale)).reshape(28, 28), recenter=recenter)
    return _predict_digit(prepared)


def mnist_predict_image(*, upload: IO[bytes] | bytes) -> DigitPrediction:
    """The digit in an uploaded picture (any size; dark ink on light paper or light on dark), prepared like an
    MNIST digit first. Raises ImageInvalid, ImageTooLarge, NoActiveModel, ArtifactUnreadable."""
    limit = int(settings.MLMODELS_MAX_IMAGE_BYTES)
    # One byte past the limit is enough to refuse it, without reading a huge upload into memory.
    data = upload if isinstance(upload, bytes) else upload.read(limit + 1)
    prepared = images.prepare_image(data, max_bytes=limit, max_side=settings.MLMODELS_MAX_IMAGE_SIDE)
    return _predict_digit(prepared)


def _predict_digit(prepared: images.PreparedDigit) -> DigitPrediction:
    version, model = selectors.active_model(kind=Kind.MNIST)
    proba = model.predict_proba(prepared.pixels.reshape(1, MNIST_PIXELS))[0]
    # A model trained on a subset may lack a class; every digit still gets its (zero) probability.
    probabilities = [0.0] * 10
    for label, value in zip(np.asarray(model.classes_).tolist(), proba.tolist(), strict=True):
        probabilities[int(label)] = float(value)
    return DigitPrediction(
        version=version,
        digit=int(np.argmax(probabilities)),
        probabilities=probabilities,
        prepared=prepared,
    )
