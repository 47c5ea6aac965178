"""The model API (django-ninja, mounted at /api/ml/): the registry of versions and the predictions of the active
Titanic and MNIST models. Every endpoint takes an API token or a signed-in session; domain errors become their
HTTP statuses in core/api_errors.py (invalid input 422, no active model 503)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import ConfigDict, ValidationError

from core.errors import DomainError, InvalidInput
from mlmodels import predictions, selectors
from mlmodels.datasets import MNIST_PIXELS
from mlmodels.models import ModelVersion

router = Router(tags=["models"])

TOP_CONTRIBUTIONS = 10


# --- Schemas ------------------------------------------------------------------------------------------------------


class ModelRefOut(Schema):
    id: int
    kind: str
    version: int
    architecture: str


class VersionOut(ModelRefOut):
    status: str
    is_active: bool
    quick_start: bool
    progress: float
    current_epoch: int
    total_epochs: int
    key_metric: str
    key_metric_value: float | None
    metrics: dict[str, float | None]
    seed: int
    train_seconds: float | None
    error: str = Field("", description="Why training failed (FAILED versions).")
    created_at: datetime
    activated_at: datetime | None


class VersionDetailOut(VersionOut):
    training_options: dict[str, Any]
    hyperparameters: dict[str, Any]
    dataset: dict[str, Any]
    history: list[dict[str, Any]]
    confusion_matrix: list[list[int]]
    class_labels: list[Any]
    misclassified_count: int
    artifact_sha256: str
    artifact_size: int | None


class ModelsOut(Schema):
    active: dict[str, int | None] = Field(
        ..., description="The active version's id per kind (null: none yet)."
    )
    versions: list[VersionOut]


class VersionFilter(Schema):
    kind: Literal["titanic", "mnist"] | None = None
    status: Literal["PENDING", "TRAINING", "READY", "FAILED"] | None = None


class PassengerIn(Schema):
    """One passenger, as in the Kaggle data. Unknown age, fare or port: leave them out or send null."""

    model_config = ConfigDict(extra="forbid")

    # The ranges are documented here (json_schema_extra) and enforced by the core's validate_passenger, which
    # names every bad field at once; pydantic would stop at the first with a message of its own.
    pclass: int = Field(
        ..., description="Ticket class: 1, 2 or 3.", examples=[3], json_schema_extra={"enum": [1, 2, 3]}
    )
    sex: str = Field(
        ...,
        description="'male' or 'female'.",
        examples=["female"],
        json_schema_extra={"enum": ["male", "female"]},
    )
    age: float | None = Field(
        None,
        description="Years (0 to 120); null when unknown.",
        examples=[29],
        json_schema_extra={"minimum": 0, "maximum": 120},
    )
    sibsp: int = Field(
        ...,
        description="Siblings and spouses aboard.",
        examples=[0],
        json_schema_extra={"minimum": 0, "maximum": 20},
    )
    parch: int = Field(
        ...,
        description="Parents and children aboard.",
        examples=[0],
        json_schema_extra={"minimum": 0, "maximum": 20},
    )
    fare: float | None = Field(
        None,
        description="Ticket fare in pounds; null when unknown.",
        examples=[7.25],
        json_schema_extra={"minimum": 0, "maximum": 10000},
    )
    embarked: str | None = Field(None, description="C, Q or S (or the port's name); null when unknown.")
    name: str | None = Field(
        None,
        description="'Surname, Title. Given names' (the title is a feature).",
        json_schema_extra={"maxLength": 200},
    )
    cabin: str | None = Field(
        None, description="Cabin, e.g. 'C85' (its deck is a feature).", json_schema_extra={"maxLength": 50}
    )
    ticket: str | None = Field(
        None,
        description="Ticket number (shared tickets make travel groups).",
        json_schema_extra={"maxLength": 50},
    )


class SurvivalOut(Schema):
    survived: bool
    predicted_class: int = Field(..., description="1: survived, 0: did not survive.")
    label: str
    probability: float = Field(..., description="Probability of survival.")
    model: ModelRefOut
    contributions: dict[str, float] = Field(
        ..., description="The features that weigh most, each with its share of the log-odds."
    )
    intercept: float


class PixelsIn(Schema):
    model_config = ConfigDict(extra="forbid")

    pixels: list[float] = Field(
        ...,
        description="784 values, 28 rows of 28 from the top left, white ink on a black background like MNIST.",
        # Documented; checked by the service, which names the first bad pixel.
        json_schema_extra={
            "minItems": MNIST_PIXELS,
            "maxItems": MNIST_PIXELS,
            "items": {"type": "number", "minimum": 0, "maximum": 255},
        },
    )
    scale: Literal[255, 1] = Field(
        255, description="255: values from 0 to 255 (as in an image); 1: values from 0 to 1."
    )
    recenter: bool = Field(
        False,
        description="Centre the digit like MNIST first (crop, fit into 20x20, centre of mass in the middle). "
        "Uploaded pictures always are.",
    )


class InputOut(Schema):
    source: Literal["pixels", "image"]
    inverted: bool = Field(
        ..., description="The picture was dark ink on a light background and was inverted."
    )
    ink_box: list[int] | None = Field(None, description="top, left, bottom, right of the ink in the picture.")
    center_of_mass: list[float] = Field(..., description="row, column of the ink in the 28x28 input.")
    pixels: list[int] = Field(..., description="The 784 values (0-255) the model read.")


class DigitOut(Schema):
    digit: int
    probability: float = Field(..., description="Probability of the predicted digit.")
    probabilities: list[float] = Field(..., description="Probability of each digit, 0 to 9.")
    architecture: str = Field(..., description="mlp or cnn: the network that answered.")
    model: ModelRefOut
    input: InputOut


# --- Registry -----------------------------------------------------------------------------------------------------


def _version_out(version: ModelVersion, *, staff: bool) -> dict[str, Any]:
    return {
        "id": version.pk,
        "kind": version.kind,
        "version": version.version,
        "architecture": version.architecture,
        "status": version.status,
        "is_active": version.is_active,
        "quick_start": version.quick_start,
        "progress": version.progress,
        "current_epoch": version.current_epoch,
        "total_epochs": version.total_epochs,
        "key_metric": version.key_metric_label,
        "key_metric_value": version.key_metric,
        "metrics": version.metrics or {},
        "seed": version.seed,
        "train_seconds": version.train_seconds,
        # A failure's reason can name files and internals: staff see it, others see that it failed.
        "error": version.error if staff else ("Training failed." if version.error else ""),
        "created_at": version.created_at,
        "activated_at": version.activated_at,
    }


def _is_staff(request: HttpRequest) -> bool:
    return bool(getattr(request.auth, "is_staff", False) or getattr(request.user, "is_staff", False))  # type: ignore[attr-defined]


@router.get("/models", response=ModelsOut, summary="Model versions, their metrics, and which are active")
def models_list(request: HttpRequest, filters: Query[VersionFilter]) -> dict[str, Any]:
    versions = selectors.model_versions_list(kind=filters.kind, status=filters.status)
    staff = _is_staff(request)
    return {
        "active": {
            kind: version.pk if version else None for kind, version in selectors.active_versions().items()
        },
        "versions": [_version_out(version, staff=staff) for version in versions],
    }


@router.get("/models/{version_id}", response=VersionDetailOut, summary="One model version in full")
def model_detail(request: HttpRequest, version_id: int) -> dict[str, Any]:
    version = selectors.model_version_get(version_id=version_id)
    return {
        **_version_out(version, staff=_is_staff(request)),
        "training_options": version.training_options,
        "hyperparameters": version.hyperparameters,
        "dataset": version.dataset,
        "history": version.history,
        "confusion_matrix": version.confusion_matrix,
        "class_labels": version.class_labels,
        "misclassified_count": len(version.misclassified_indices),
        "artifact_sha256": version.artifact_sha256,
        "artifact_size": version.artifact_size,
    }


# --- Predictions --------------------------------------------------------------------------------------------------


def _model_ref(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "kind": version.kind,
        "version": version.version,
        "architecture": version.architecture,
    }


@router.post(
    "/titanic/predict",
    response=SurvivalOut,
    summary="Would this passenger have survived?",
    description="The survival probability from the active Titanic model. A field out of range is a 422 naming "
    "every bad field in `details.errors`; no active model is a 503.",
)
def titanic_predict(request: HttpRequest, payload: PassengerIn) -> dict[str, Any]:
    prediction = predictions.titanic_predict(passenger=payload.model_dump())
    top = dict(list(prediction.contributions.items())[:TOP_CONTRIBUTIONS])
    return {
        "survived": prediction.survived,
        "predicted_class": int(prediction.survived),
        "label": "survived" if prediction.survived else "did not survive",
        "probability": prediction.probability,
        "model": _model_ref(prediction.version),
        "contributions": top,
        "intercept": prediction.intercept,
    }


_UPLOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "PNG, JPEG, GIF, BMP or WebP."}
    },
    "required": ["image"],
}


@router.post(
    "/mnist/predict",
    response=DigitOut,
    summary="Which digit is this?",
    description="Either JSON with 784 pixel values (`scale` 255 or 1), or a multipart upload of a picture in the "
    "field `image`, which is prepared like an MNIST digit: grayscale, inverted if the background is light, "
    "cropped to the ink, fitted into 20x20 and centred by centre of mass in 28x28. Bad pixels or a file that is "
    "not a picture: 422; no active model: 503.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": PixelsIn.model_json_schema()},
                "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            },
        }
    },
)
def mnist_predict(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "multipart/form-data":
        upload = request.FILES.get("image")
        if upload is None:
            raise InvalidInput("Send the picture in a multipart field named 'image'.", field="image")
        prediction = predictions.mnist_predict_image(upload=upload)
        source = "image"
    else:
        payload = _pixels_payload(request.body)
        prediction = predictions.mnist_predict_pixels(
            pixels=payload.pixels, scale=payload.scale, recenter=payload.recenter
        )
        source = "pixels"
    prepared = prediction.prepared
    return {
        "digit": prediction.digit,
        "probability": prediction.probabilities[prediction.digit],
        "probabilities": prediction.probabilities,
        "architecture": prediction.version.architecture,
        "model": _model_ref(prediction.version),
        "input": {
            "source": source,
            "inverted": prepared.inverted,
            "ink_box": list(prepared.ink_box) if prepared.ink_box else None,
            "center_of_mass": list(prepared.center_of_mass),
            "pixels": np.rint(prepared.pixels * 255).astype(int).tolist(),
        },
    }


class MalformedRequest(DomainError):
    """The request body cannot be read (400, as django-ninja answers for its own endpoints)."""


def _pixels_payload(body: bytes) -> PixelsIn:
    try:
        return PixelsIn.model_validate_json(body or b"{}")
    except ValidationError as error:
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            raise MalformedRequest(
                "The body is not JSON: send JSON with 784 'pixels', or a multipart upload of an 'image'."
            ) from None
        problems = {
            ".".join(str(part) for part in problem["loc"]) or "body": problem["msg"]
            for problem in error.errors()
        }
        first = next(iter(problems.items()))
        raise InvalidInput(
            f"{first[0]}: {first[1]} (send JSON with 784 'pixels', or a multipart upload of an 'image')",
            errors=problems,
        ) from None
