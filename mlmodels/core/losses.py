"""Softmax cross-entropy, computed from logits in a numerically stable way."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodels.core.base import Component
from mlmodels.core.layers import Array


def log_softmax(logits: Array) -> Array:
    shifted: Array = logits - logits.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def softmax(logits: Array) -> Array:
    shifted: Array = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class SoftmaxCrossEntropy(Component):
    """Mean cross-entropy between ``softmax(logits)`` and integer targets, optionally label-smoothed.

    ``forward`` returns the loss and keeps the probabilities; ``backward`` returns d(loss)/d(logits),
    which for this pair is simply ``(probabilities - targets) / batch``.
    """

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def _targets(self, y: NDArray[np.intp], n_classes: int, dtype: np.dtype[Any]) -> Array:
        eps = self.label_smoothing
        targets = np.full((y.shape[0], n_classes), eps / n_classes, dtype=dtype)
        targets[np.arange(y.shape[0]), y] += 1.0 - eps
        return targets

    def forward(self, logits: Array, y: NDArray[np.intp]) -> float:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1)")
        log_p = log_softmax(logits)
        self._targets_cache = self._targets(y, logits.shape[1], logits.dtype)
        self._log_p = log_p
        return float(-np.sum(self._targets_cache * log_p, dtype=np.float64) / logits.shape[0])

    def backward(self) -> Array:
        grad = np.exp(self._log_p)
        grad -= self._targets_cache
        grad /= grad.shape[0]
        self._log_p = None  # type: ignore[assignment]
        return grad
