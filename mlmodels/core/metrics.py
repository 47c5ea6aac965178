"""Classification metrics with scikit-learn's definitions and argument order ``(y_true, y_pred)``."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Average = Literal["binary", "macro", "micro", "weighted"]


def _labels_1d(y: ArrayLike, name: str) -> NDArray[Any]:
    array = np.asarray(y)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    true = _labels_1d(y_true, "y_true")
    pred = _labels_1d(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {true.shape[0]} != {pred.shape[0]}")
    if true.size == 0:
        raise ValueError("metrics need at least one sample")
    return true, pred


def accuracy_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    true, pred = _pair(y_true, y_pred)
    return float(np.mean(true == pred))


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, *, labels: ArrayLike | None = None
) -> NDArray[np.int64]:
    """Counts with true labels on rows and predicted labels on columns, labels sorted unless given."""
    true, pred = _pair(y_true, y_pred)
    classes = np.unique(np.concatenate([true, pred])) if labels is None else np.asarray(labels)
    k = classes.shape[0]
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]

    def codes(values: NDArray[Any]) -> NDArray[np.intp]:
        pos = np.searchsorted(sorted_classes, values)
        pos = np.clip(pos, 0, k - 1)
        found = sorted_classes[pos] == values
        return np.where(found, order[pos], -1)

    t, p = codes(true), codes(pred)
    keep = (t >= 0) & (p >= 0)
    return np.bincount(t[keep] * k + p[keep], minlength=k * k).reshape(k, k).astype(np.int64)


def precision_recall_fscore_support(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    average: Average | None = None,
    pos_label: Any = 1,
    labels: ArrayLike | None = None,
) -> tuple[Any, Any, Any, Any]:
    """Per-class precision, recall, F1 and support, or their average.

    A ratio with a zero denominator is reported as 0.0 (scikit-learn's ``zero_division=0``).
    """
    true, pred = _pair(y_true, y_pred)
    if average == "binary":
        present = np.unique(np.concatenate([true, pred]))
        if present.size > 2:
            raise ValueError(
                f"average='binary' needs two classes, got {present.size}; choose another average"
            )
        labels = [pos_label]
    classes = np.unique(np.concatenate([true, pred])) if labels is None else np.asarray(labels)
    tp = np.array([np.sum((pred == c) & (true == c)) for c in classes], dtype=np.float64)
    predicted = np.array([np.sum(pred == c) for c in classes], dtype=np.float64)
    support = np.array([np.sum(true == c) for c in classes], dtype=np.int64)

    if average == "micro":
        tp, predicted, actual = (
            tp.sum(keepdims=True),
            predicted.sum(keepdims=True),
            support.sum(keepdims=True),
        )
    else:
        actual = support.astype(np.float64)
    precision = _safe_ratio(tp, predicted)
    recall = _safe_ratio(tp, np.asarray(actual, dtype=np.float64))
    f1 = _safe_ratio(2 * precision * recall, precision + recall)

    if average is None:
        return precision, recall, f1, support
    if average in ("binary", "micro"):
        return float(precision[0]), float(recall[0]), float(f1[0]), None
    if average == "macro":
        return float(precision.mean()), float(recall.mean()), float(f1.mean()), None
    if average == "weighted":
        weights = support / max(int(support.sum()), 1)
        return (
            float(np.sum(precision * weights)),
            float(np.sum(recall * weights)),
            float(np.sum(f1 * weights)),
            None,
        )
    raise ValueError(f"unknown average {average!r}")


def _safe_ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, average: Average = "binary", pos_label: Any = 1
) -> float:
    return float(precision_recall_fscore_support(y_true, y_pred, average=average, pos_label=pos_label)[0])


def recall_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, average: Average = "binary", pos_label: Any = 1
) -> float:
    return float(precision_recall_fscore_support(y_true, y_pred, average=average, pos_label=pos_label)[1])


def f1_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, average: Average = "binary", pos_label: Any = 1
) -> float:
    return float(precision_recall_fscore_support(y_true, y_pred, average=average, pos_label=pos_label)[2])


def _binary_targets(y_true: ArrayLike, pos_label: Any) -> NDArray[np.bool_]:
    true = _labels_1d(y_true, "y_true")
    if np.unique(true).size > 2:
        raise ValueError("ROC needs binary y_true")
    positive: NDArray[np.bool_] = np.asarray(true == pos_label, dtype=bool)
    return positive


def roc_auc_score(y_true: ArrayLike, y_score: ArrayLike, *, pos_label: Any = 1) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (ties count one half)."""
    positive = _binary_targets(y_true, pos_label)
    score = np.asarray(y_score, dtype=np.float64)
    if score.ndim == 2 and score.shape[1] == 2:
        score = score[:, 1]
    if score.shape != positive.shape:
        raise ValueError("y_score must have one score per sample")
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC is undefined when y_true has a single class")
    ranks = _average_ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    mean_rank = (starts + ends + 1) / 2.0  # 1-based ranks averaged over each tie group
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_curve(
    y_true: ArrayLike, y_score: ArrayLike, *, pos_label: Any = 1
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """False-positive rate, true-positive rate and the decreasing thresholds they occur at."""
    positive = _binary_targets(y_true, pos_label)
    score = np.asarray(y_score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    distinct = np.flatnonzero(np.diff(score)) if score.size > 1 else np.array([], dtype=np.intp)
    idx = np.concatenate([distinct, [score.size - 1]])
    tps = np.cumsum(positive)[idx].astype(np.float64)
    fps = (idx + 1 - tps).astype(np.float64)
    tps = np.concatenate([[0.0], tps])
    fps = np.concatenate([[0.0], fps])
    thresholds = np.concatenate([[np.inf], score[idx]])
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, thresholds


def log_loss(y_true: ArrayLike, y_proba: ArrayLike, *, labels: ArrayLike | None = None) -> float:
    """Mean negative log-likelihood; ``y_proba`` is P(positive) (1-D) or one column per sorted label."""
    true = _labels_1d(y_true, "y_true")
    proba = np.asarray(y_proba, dtype=np.float64)
    classes = np.unique(true) if labels is None else np.asarray(labels)
    if proba.ndim == 1:
        if classes.size > 2:
            raise ValueError("a 1-D y_proba needs binary labels")
        proba = np.column_stack([1.0 - proba, proba])
    if proba.shape != (true.shape[0], max(classes.size, 2)):
        raise ValueError(f"y_proba has shape {proba.shape}, expected ({true.shape[0]}, {classes.size})")
    eps = np.finfo(np.float64).eps
    proba = np.clip(proba, eps, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    column = np.searchsorted(classes, true)
    if np.any(column >= classes.size) or np.any(classes[np.minimum(column, classes.size - 1)] != true):
        raise ValueError("y_true contains a label missing from labels")
    return float(-np.mean(np.log(proba[np.arange(true.shape[0]), column])))


def brier_score_loss(y_true: ArrayLike, y_proba: ArrayLike, *, pos_label: Any = 1) -> float:
    """Mean squared difference between the predicted probability of ``pos_label`` and the outcome (0 best)."""
    truth = _binary_targets(y_true, pos_label).astype(np.float64)
    proba = np.asarray(y_proba, dtype=np.float64)
    if proba.shape != truth.shape:
        raise ValueError(f"y_proba has shape {proba.shape}, expected {truth.shape}")
    return float(np.mean((proba - truth) ** 2))


def calibration_curve(
    y_true: ArrayLike, y_proba: ArrayLike, *, n_bins: int = 10, pos_label: Any = 1
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Reliability diagram in ``n_bins`` equal-width probability bins, empty bins left out.

    Returns the observed fraction of positives, the mean predicted probability and the count of each
    bin (the first two as scikit-learn's ``calibration_curve(strategy="uniform")`` returns them).
    """
    truth = _binary_targets(y_true, pos_label).astype(np.float64)
    proba = np.asarray(y_proba, dtype=np.float64)
    if proba.shape != truth.shape or np.any((proba < 0) | (proba > 1)):
        raise ValueError("y_proba must be one probability in [0, 1] per sample")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], proba)
    counts = np.bincount(bins, minlength=n_bins)
    positives = np.bincount(bins, weights=truth, minlength=n_bins)
    predicted = np.bincount(bins, weights=proba, minlength=n_bins)
    kept = counts > 0
    return positives[kept] / counts[kept], predicted[kept] / counts[kept], counts[kept].astype(np.int64)
