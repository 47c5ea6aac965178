import io

import numpy as np
import pytest
from PIL import Image

from mlmodels import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MNIST_HISTORY = [
    {"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": 0.5, "val_accuracy": 0.85},
    {"epoch": 2, "loss": 0.4, "accuracy": 0.88, "val_loss": 0.35, "val_accuracy": 0.9},
    {"epoch": 3, "loss": 0.3, "accuracy": 0.91, "val_loss": 0.33, "val_accuracy": 0.91},
]
TITANIC_FOLDS = [
    {"epoch": 1, "fold": 1, "accuracy": 0.81, "roc_auc": 0.86, "log_loss": 0.43},
    {"epoch": 2, "fold": 2, "accuracy": 0.84, "roc_auc": None, "log_loss": 0.41},
]


def size_of(png):
    return Image.open(io.BytesIO(png)).size


@pytest.mark.parametrize(
    ("kind", "history"),
    [("mnist", MNIST_HISTORY), ("titanic", TITANIC_FOLDS), ("mnist", []), ("titanic", [])],
)
def test_training_curves_are_png_images(kind, history):
    png = plots.training_curves_png(kind=kind, history=history, best_epoch=3 if history else None)

    assert png.startswith(PNG_SIGNATURE)
    assert size_of(png) == (900, 360)


def test_the_confusion_matrix_is_a_png_image_sized_to_its_classes():
    matrix = np.eye(10, dtype=int) * 90 + 1

    ten = plots.confusion_matrix_png(matrix=matrix.tolist(), labels=list(range(10)), title="mnist v1")
    two = plots.confusion_matrix_png(matrix=[[500, 49], [90, 252]], labels=[0, 1])

    assert ten.startswith(PNG_SIGNATURE) and two.startswith(PNG_SIGNATURE)
    assert size_of(ten)[0] > size_of(two)[0]


def test_an_empty_confusion_matrix_still_draws():
    assert plots.confusion_matrix_png(matrix=[], labels=[]).startswith(PNG_SIGNATURE)


def test_the_coefficients_are_a_png_image():
    png = plots.coefficients_png(coefficients={"female": 1.3, "class_3": -0.9, "age": -0.4})

    assert png.startswith(PNG_SIGNATURE)


def test_a_digit_is_drawn_pixel_for_pixel_and_enlarged_without_blur():
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[10:18, 13:15] = 255

    native = Image.open(io.BytesIO(plots.digit_png(digit)))
    large = Image.open(io.BytesIO(plots.digit_png(digit.astype(np.float32) / 255, scale=4)))

    assert np.array_equal(np.asarray(native), digit)
    assert large.size == (112, 112)
    assert set(np.unique(np.asarray(large)).tolist()) == {0, 255}
