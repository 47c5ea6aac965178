"""Pictures of a model version as PNG bytes: training curves, the confusion matrix, the Titanic coefficients, and
single MNIST digits.

Matplotlib is imported inside the functions (it takes a while to import and only these pictures need it) and
drawn on its Agg canvas directly, never through pyplot, whose global state is not safe across threads.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TRAIN_COLOUR = "#2456c9"
VALIDATION_COLOUR = "#d9480f"
MUTED = "#5f6672"


def training_curves_png(
    *, kind: str, history: Sequence[Mapping[str, Any]], best_epoch: int | None = None
) -> bytes:
    """Loss and accuracy per epoch, training and validation (MNIST); per cross-validation fold (Titanic)."""
    if kind == "titanic":
        return _folds_png(history)
    figure = _figure(9.0, 3.6)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    for axes, key, title in ((loss_axes, "loss", "Loss"), (accuracy_axes, "accuracy", "Accuracy")):
        train = [_number(row.get(key)) for row in history]
        validation = [_number(row.get(f"val_{key}")) for row in history]
        axes.plot(epochs, train, marker="o", markersize=3, color=TRAIN_COLOUR, label="training")
        if any(v is not None for v in validation):
            axes.plot(
                epochs, validation, marker="o", markersize=3, color=VALIDATION_COLOUR, label="validation"
            )
        if best_epoch:
            axes.axvline(
                best_epoch, color=MUTED, linestyle=":", linewidth=1, label=f"best epoch ({best_epoch})"
            )
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        if epochs:
            axes.set_xticks(_ticks(epochs))
    loss_axes.set_yscale("log" if _spans_decades(history, "loss") else "linear")
    accuracy_axes.legend(loc="lower right", fontsize=8)
    if not history:
        _empty_note(figure, "No epoch has finished yet.")
    return _png(figure)


def _folds_png(history: Sequence[Mapping[str, Any]]) -> bytes:
    figure = _figure(9.0, 3.6)
    score_axes, loss_axes = figure.subplots(1, 2)
    folds = [int(row.get("fold", row.get("epoch", i + 1))) for i, row in enumerate(history)]
    for key, colour, label in (
        ("accuracy", TRAIN_COLOUR, "accuracy"),
        ("roc_auc", VALIDATION_COLOUR, "ROC AUC"),
    ):
        values = [_number(row.get(key)) for row in history]
        score_axes.plot(folds, values, marker="o", color=colour, label=label)
        known = [v for v in values if v is not None]
        if known:
            score_axes.axhline(float(np.mean(known)), color=colour, linestyle=":", linewidth=1)
    score_axes.set_title("Held-out fold scores (dotted: mean)")
    score_axes.set_xlabel("fold")
    score_axes.legend(loc="lower right", fontsize=8)
    losses = [_number(row.get("log_loss")) for row in history]
    loss_axes.bar(folds, [v or 0.0 for v in losses], color=TRAIN_COLOUR, alpha=0.8)
    loss_axes.set_title("Held-out log loss per fold")
    loss_axes.set_xlabel("fold")
    for axes in (score_axes, loss_axes):
        axes.grid(alpha=0.3)
        if folds:
            axes.set_xticks(folds)
    if not history:
        _empty_note(figure, "No fold has finished yet.")
    return _png(figure)


def confusion_matrix_png(*, matrix: Sequence[Sequence[int]], labels: Sequence[Any], title: str = "") -> bytes:
    """Counts, true class on rows; each cell coloured by its share of the row (the class's recall on the diagonal)."""
    counts = (
        np.asarray(matrix, dtype=np.int64).reshape(len(labels), len(labels)) if labels else np.zeros((0, 0))
    )
    size = max(4.2, 2.6 + 0.42 * len(labels))
    figure = _figure(size, size * 0.9)
    axes = figure.subplots()
    if counts.size == 0:
        _empty_note(figure, "No confusion matrix yet.")
        axes.set_axis_off()
        return _png(figure)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, col), value in np.ndenumerate(counts):
        axes.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            fontsize=7 if len(labels) > 5 else 10,
            color="white" if shares[row, col] > 0.6 else "#1d1f23",
        )
    names = [str(label) for label in labels]
    axes.set_xticks(range(len(names)), names)
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title, fontsize=10)
    return _png(figure)


def coefficients_png(*, coefficients: Mapping[str, float], top: int = 20) -> bytes:
    """The largest logistic-regression weights (on standardized features): what pushes survival up or down."""
    ranked = sorted(coefficients.items(), key=lambda item: abs(item[1]), reverse=True)[:top][::-1]
    figure = _figure(7.5, 0.28 * max(len(ranked), 4) + 1.2)
    axes = figure.subplots()
    names = [name for name, _ in ranked]
    values = [value for _, value in ranked]
    axes.barh(names, values, color=[TRAIN_COLOUR if v >= 0 else VALIDATION_COLOUR for v in values])
    axes.axvline(0, color=MUTED, linewidth=0.8)
    axes.set_title("Coefficients (standardized features; blue raises survival odds)", fontsize=10)
    axes.tick_params(axis="y", labelsize=8)
    axes.grid(axis="x", alpha=0.3)
    if not ranked:
        _empty_note(figure, "No coefficients recorded.")
    return _png(figure)


def calibration_png(*, calibration: Mapping[str, Any], brier: float | None = None) -> bytes:
    """Reliability diagram: per probability bin, the share that survived against the mean predicted probability
    (on the diagonal when calibrated), with how many passengers each bin holds."""
    predicted = [float(v) for v in calibration.get("predicted", [])]
    observed = [float(v) for v in calibration.get("observed", [])]
    counts = [int(v) for v in calibration.get("count", [])]
    figure = _figure(4.8, 4.4)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color=MUTED, linestyle=":", linewidth=1, label="perfectly calibrated")
    if predicted:
        axes.plot(predicted, observed, marker="o", color=TRAIN_COLOUR, label="out-of-fold predictions")
        for x, y, count in zip(predicted, observed, counts, strict=False):
            axes.annotate(
                str(count), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color=MUTED
            )
    else:
        _empty_note(figure, "No calibration curve yet.")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("predicted probability of survival (bin mean)")
    axes.set_ylabel("share that survived")
    title = "Calibration (numbers: passengers per bin)"
    if brier is not None and np.isfinite(brier):
        title += f"\nBrier score {brier:.4f}"
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def digit_png(image: NDArray[np.uint8] | NDArray[np.floating], *, scale: int = 1) -> bytes:
    """One 28x28 digit (0 black, 255 white; floats in [0, 1] are scaled), enlarged `scale` times without blur."""
    values = np.asarray(image)
    if values.dtype.kind == "f":
        values = np.clip(np.rint(values * 255.0), 0, 255)
    picture = Image.fromarray(values.reshape(28, 28).astype(np.uint8))
    if scale > 1:
        picture = picture.resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" entry: the same figure gives the same bytes whatever the matplotlib version.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _empty_note(figure: Figure, text: str) -> None:
    figure.text(0.5, 0.5, text, ha="center", va="center", color=MUTED, fontsize=12)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and np.isfinite(value):
        return float(value)
    return None


def _ticks(epochs: Sequence[int]) -> list[int]:
    step = max(1, len(epochs) // 10)
    return list(epochs[::step])


def _spans_decades(history: Sequence[Mapping[str, Any]], key: str) -> bool:
    values = [
        v
        for row in history
        for v in (_number(row.get(key)), _number(row.get(f"val_{key}")))
        if v is not None and v > 0
    ]
    return bool(values) and max(values) / min(values) > 30
