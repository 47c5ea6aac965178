"""SGD with momentum and Adam, updating one flat parameter vector in place; learning-rate schedules.

:class:`~mlmodels.core.network.Sequential` keeps every parameter as a view into one contiguous buffer,
weights first, so an optimizer step is a handful of vector operations over the whole model and weight
decay applies to the leading ``n_decay`` entries (weights, not biases or normalization parameters).
The update runs over cache-sized chunks so its several passes hit L2 instead of main memory.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from mlmodels.core.base import Component
from mlmodels.core.layers import Array

_CHUNK = 1 << 15  # elements per chunk: 128 KiB of float32, so a chunk's arrays stay in L2 together


class Optimizer(Component):
    def setup(self, params: Array, n_decay: int) -> None:
        self._n_decay = n_decay
        self._steps = 0

    def step(self, params: Array, grads: Array, learning_rate: float) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum and coupled L2 weight decay, as PyTorch's."""

    def __init__(self, *, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay

    def setup(self, params: Array, n_decay: int) -> None:
        super().setup(params, n_decay)
        self._velocity = np.zeros_like(params)

    def step(self, params: Array, grads: Array, learning_rate: float) -> None:
        if self.weight_decay:
            grads[: self._n_decay] += self.weight_decay * params[: self._n_decay]
        mu = self.momentum
        first = self._steps == 0
        self._steps += 1
        for start in range(0, params.shape[0], _CHUNK):
            sl = slice(start, start + _CHUNK)
            p, g, v = params[sl], grads[sl], self._velocity[sl]
            if mu == 0:
                p -= learning_rate * g
                continue
            if first:
                v[...] = g
            else:
                v *= mu
                v += g
            if self.nesterov:
                g += mu * v
                p -= learning_rate * g
            else:
                p -= learning_rate * v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015). ``weight_decay`` is L2 added to the gradient, like PyTorch's ``Adam``;
    with ``decoupled=True`` it is applied to the weights directly, like ``AdamW``."""

    def __init__(
        self,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay
        self.decoupled = decoupled

    def setup(self, params: Array, n_decay: int) -> None:
        super().setup(params, n_decay)
        self._m = np.zeros_like(params)
        self._v = np.zeros_like(params)
        self._scratch = np.empty(min(_CHUNK, params.shape[0]), dtype=params.dtype)

    def step(self, params: Array, grads: Array, learning_rate: float) -> None:
        self._steps += 1
        t = self._steps
        b1, b2 = self.beta1, self.beta2
        if self.weight_decay:
            head = slice(0, self._n_decay)
            if self.decoupled:
                params[head] *= 1.0 - learning_rate * self.weight_decay
            else:
                grads[head] += self.weight_decay * params[head]
        sqrt_bias2 = math.sqrt(1.0 - b2**t)
        # lr * m_hat / (sqrt(v_hat) + eps) with the bias corrections folded into two scalars.
        step_size = learning_rate * sqrt_bias2 / (1.0 - b1**t)
        eps = self.eps * sqrt_bias2
        for start in range(0, params.shape[0], _CHUNK):
            sl = slice(start, start + _CHUNK)
            p, g, m, v = params[sl], grads[sl], self._m[sl], self._v[sl]
            tmp = self._scratch[: p.shape[0]]
            m *= b1
            np.multiply(g, 1.0 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp


ScheduleName = Literal["constant", "cosine", "step"]


def scheduled_learning_rate(
    base: float,
    progress: float,
    *,
    schedule: ScheduleName,
    total_epochs: int,
    warmup_epochs: float = 0.0,
    step_epochs: int = 10,
    gamma: float = 0.1,
    min_factor: float = 0.0,
) -> float:
    """Learning rate after ``progress`` epochs (fractional), with optional linear warm-up.

    ``cosine`` anneals from ``base`` to ``base * min_factor`` over ``total_epochs``; ``step`` multiplies
    by ``gamma`` every ``step_epochs``.
    """
    if warmup_epochs > 0 and progress < warmup_epochs:
        return base * (progress + 1e-3) / warmup_epochs
    if schedule == "constant":
        return base
    if schedule == "cosine":
        span = max(total_epochs - warmup_epochs, 1e-12)
        fraction = min(max((progress - warmup_epochs) / span, 0.0), 1.0)
        return base * (min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * fraction)))
    if schedule == "step":
        return base * gamma ** int(progress // step_epochs)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def make_optimizer(name: str, **options: Any) -> Optimizer:
    if name == "adam":
        return Adam(**options)
    if name == "sgd":
        return SGD(**options)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")
