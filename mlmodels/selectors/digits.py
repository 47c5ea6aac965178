"""The MNIST test digits, and the ones a version gets wrong."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from django.core.paginator import Page, Paginator
from numpy.typing import NDArray

from core.errors import InvalidInput, ObjectNotFound
from mlmodels.models import Kind, ModelVersion
from mlmodels.selectors.versions import (
    NoActiveModel,
    model_version_active,
    model_version_get,
    no_active_message,
)

MNIST_TEST_SIZE = 10_000

Order = Literal["index", "confidence"]


class TestDigitNotFound(ObjectNotFound):
    """No such test digit."""


@functools.lru_cache(maxsize=1)
def mnist_test_set() -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The 10,000 MNIST test images (uint8, 28x28, white on black) and their labels, read once per process."""
    from mlmodels.datasets import load_mnist

    data = load_mnist()
    return data.test_images, data.test_labels


def mnist_digit_image(*, index: int) -> NDArray[np.uint8]:
    """One MNIST test digit; raises TestDigitNotFound outside 0..9999."""
    if not 0 <= index < MNIST_TEST_SIZE:
        raise TestDigitNotFound(
            f"There is no test digit {index}; they are numbered 0 to {MNIST_TEST_SIZE - 1}."
        )
    images, _ = mnist_test_set()
    image: NDArray[np.uint8] = images[index]
    return image


@dataclass(frozen=True)
class Mistake:
    index: int
    true: int
    predicted: int | None
    confidence: float | None


@dataclass(frozen=True)
class ConfusionCell:
    true: int
    predicted: int
    count: int
    share: float


@dataclass(frozen=True)
class MistakesPage:
    version: ModelVersion
    page: Page[Mistake]
    total_mistakes: int
    matching: int
    true_label: int | None
    predicted_label: int | None
    order: Order
    labels: list[int]
    confusion_rows: list[tuple[int, list[ConfusionCell]]]


def version_mistakes(
    *,
    version_id: int | None,
    page: int | str = 1,
    per_page: int = 60,
    true_label: int | None = None,
    predicted_label: int | None = None,
    order: Order = "index",
) -> MistakesPage:
    """The test digits an MNIST version gets wrong (the active one without `version_id`), filtered by true and
    predicted digit, by test-set position or most confident mistake first, one page at a time.

    Raises NoActiveModel, ModelVersionNotFound, InvalidInput (not an MNIST version, or not trained)."""
    if version_id is None:
        active = model_version_active(kind=Kind.MNIST)
        if active is None:
            raise NoActiveModel(no_active_message(Kind.MNIST), kind=Kind.MNIST)
        version = model_version_get(version_id=active.pk)
    else:
        version = model_version_get(version_id=version_id)
    if version.kind != Kind.MNIST or version.status != ModelVersion.Status.READY:
        raise InvalidInput(f"{version} is not a trained MNIST version.")
    _, labels = mnist_test_set()
    indices = [int(i) for i in version.misclassified_indices]
    predicted = list(version.misclassified_predicted) or [None] * len(indices)
    confidence = list(version.misclassified_confidence) or [None] * len(indices)
    mistakes = [
        Mistake(index=i, true=int(labels[i]), predicted=p, confidence=c)
        for i, p, c in zip(indices, predicted, confidence, strict=True)
        if (true_label is None or int(labels[i]) == true_label)
        and (predicted_label is None or p == predicted_label)
    ]
    if order == "confidence":
        mistakes.sort(key=lambda m: -(m.confidence or 0.0))
    paginator = Paginator(mistakes, per_page)
    return MistakesPage(
        version=version,
        page=paginator.get_page(page),
        total_mistakes=len(indices),
        matching=len(mistakes),
        true_label=true_label,
        predicted_label=predicted_label,
        order=order,
        labels=[int(label) for label in version.class_labels],
        confusion_rows=confusion_cells(version),
    )


def confusion_cells(version: ModelVersion) -> list[tuple[int, list[ConfusionCell]]]:
    """The confusion matrix as rows of cells with their share of the row (for tables with links)."""
    labels = [int(label) if isinstance(label, (int, float)) else label for label in version.class_labels]
    rows = []
    for true, counts in zip(labels, version.confusion_matrix, strict=False):
        total = sum(counts) or 1
        rows.append(
            (
                true,
                [
                    ConfusionCell(true=true, predicted=predicted, count=int(count), share=count / total)
                    for predicted, count in zip(labels, counts, strict=False)
                ],
            )
        )
    return rows
