"""Neural-network layers with explicit forward and backward passes.

Conventions shared by every layer:

* ``build(input_shape, rng=..., dtype=...)`` allocates parameters for one example's shape (no batch axis)
  and returns the output shape; ``forward(x, training=...)`` caches what ``backward`` needs.
* ``backward(grad)`` writes parameter gradients into ``self.grads`` (arrays that :class:`Sequential`
  may have replaced by views into one flat buffer, so layers always write *into* them) and returns the
  gradient with respect to the input, or ``None`` when ``needs_input_grad`` is false (first layer).
* A layer may overwrite the gradient it receives, never its forward input.
* ``forward(..., training=False)`` writes no state on the layer, so one fitted model can serve
  predictions from several threads at once.
* Images are NHWC: ``(batch, height, width, channels)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from mlmodels.core.base import Component

Array = NDArray[np.floating[Any]]
Shape = tuple[int, ...]
Init = Literal["he", "glorot"]


class Layer(Component):
    """Base class: no parameters, identity shape."""

    needs_input_grad: bool = True

    def __init__(self) -> None:
        pass

    def build(self, input_shape: Shape, *, rng: np.random.Generator, dtype: DTypeLike = np.float32) -> Shape:
        self.input_shape_ = tuple(int(v) for v in input_shape)
        self.dtype_ = np.dtype(dtype).name
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.output_shape_ = self._build(self.input_shape_, rng, np.dtype(dtype))
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        return self.output_shape_

    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> Shape:
        return input_shape

    @property
    def decayed(self) -> frozenset[str]:
        """Names of parameters that weight decay applies to (weights, not biases or norm scales)."""
        return frozenset()

    def forward(self, x: Array, *, training: bool) -> Array:
        raise NotImplementedError

    def backward(self, grad: Array) -> Array | None:
        raise NotImplementedError

    def _get_state(self) -> dict[str, Any]:
        if not hasattr(self, "output_shape_"):
            return {}
        return {
            "input_shape_": list(self.input_shape_),
            "output_shape_": list(self.output_shape_),
            "dtype_": self.dtype_,
            "params": {k: np.ascontiguousarray(v) for k, v in self.params.items()},
            "buffers": {k: np.ascontiguousarray(v) for k, v in self.buffers.items()},
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.input_shape_ = tuple(state["input_shape_"])
        self.output_shape_ = tuple(state["output_shape_"])
        self.dtype_ = state["dtype_"]
        self.params = {k: np.array(v, dtype=self.dtype_) for k, v in state["params"].items()}
        self.buffers = {k: np.array(v, dtype=self.dtype_) for k, v in state["buffers"].items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._after_restore()

    def _after_restore(self) -> None:
        """Hook for layers that keep derived values (e.g. a random generator)."""


def init_weights(
    rng: np.random.Generator, shape: Shape, *, fan_in: int, fan_out: int, init: Init, dtype: np.dtype[Any]
) -> Array:
    """He normal (for ReLU-like units) or Glorot uniform (for tanh) initialization."""
    if init == "he":
        std = math.sqrt(2.0 / fan_in)
        return (rng.standard_normal(shape, dtype=np.float64) * std).astype(dtype)
    if init == "glorot":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype(dtype)
    raise ValueError(f"unknown init {init!r}; use 'he' or 'glorot'")


class Dense(Layer):
    """Fully connected layer ``y = x @ W + b`` on inputs of shape ``(batch, features)``."""

    def __init__(self, units: int, *, init: Init = "he", use_bias: bool = True) -> None:
        self.units = units
        self.init = init
        self.use_bias = use_bias

    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(f"Dense expects flat inputs, got shape {input_shape}; add a Flatten layer")
        fan_in = input_shape[0]
        self.params["W"] = init_weights(
            rng, (fan_in, self.units), fan_in=fan_in, fan_out=self.units, init=self.init, dtype=dtype
        )
        if self.use_bias:
            self.params["b"] = np.zeros(self.units, dtype=dtype)
        return (self.units,)

    @property
    def decayed(self) -> frozenset[str]:
        return frozenset({"W"})

    def forward(self, x: Array, *, training: bool) -> Array:
        if training:
            self._x = x
        out = x @ self.params["W"]
        if self.use_bias:
            out += self.params["b"]
        return out

    def backward(self, grad: Array) -> Array | None:
        np.matmul(self._x.T, grad, out=self.grads["W"])
        if self.use_bias:
            np.sum(grad, axis=0, out=self.grads["b"])
        self._x = None  # type: ignore[assignment]
        if not self.needs_input_grad:
            return None
        return grad @ self.params["W"].T


class ReLU(Layer):
    def forward(self, x: Array, *, training: bool) -> Array:
        out = np.maximum(x, 0)
        if training:
            self._mask = out > 0
        return out

    def backward(self, grad: Array) -> Array | None:
        np.multiply(grad, self._mask, out=grad)
        return grad


class Tanh(Layer):
    def forward(self, x: Array, *, training: bool) -> Array:
        out = np.tanh(x)
        if training:
            self._out = out
        return out

    def backward(self, grad: Array) -> Array | None:
        grad *= 1 - self._out * self._out
        return grad


class GELU(Layer):
    """Gaussian error linear unit, tanh approximation (as in BERT and GPT-2)."""

    _C = math.sqrt(2.0 / math.pi)

    def forward(self, x: Array, *, training: bool) -> Array:
        t = np.tanh(self._C * (x + 0.044715 * x**3))
        if training:
            self._x, self._t = x, t
        out: Array = 0.5 * x * (1 + t)
        return out

    def backward(self, grad: Array) -> Array | None:
        x, t = self._x, self._t
        dinner = self._C * (1 + 3 * 0.044715 * x * x)
        grad *= 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner
        return grad


class Dropout(Layer):
    """Inverted dropout: zero each unit with probability ``rate`` in training, identity at inference."""

    def __init__(self, rate: float = 0.5) -> None:
        self.rate = rate

    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> Shape:
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {self.rate}")
        self._rng = rng
        return input_shape

    def _after_restore(self) -> None:
        self._rng = np.random.default_rng()

    def forward(self, x: Array, *, training: bool) -> Array:
        if not training or self.rate == 0.0:
            if training:
                self._mask = None
            return x
        keep = 1.0 - self.rate
        mask = self._rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
        # Turn the uniform draws into the scaled keep mask in place: 1/keep where kept, else 0.
        np.less(mask, keep, out=mask, casting="unsafe")
        mask *= 1.0 / keep
        self._mask = mask
        return x * mask

    def backward(self, grad: Array) -> Array | None:
        if self._mask is not None:
            grad *= self._mask
        return grad


class Flatten(Layer):
    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, x: Array, *, training: bool) -> Array:
        if training:
            self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad: Array) -> Array | None:
        return grad.reshape(self._shape)


class _BatchNorm(Layer):
    """Batch normalization over every axis but the last (features or channels).

    Running statistics follow PyTorch: ``running = (1 - momentum) * running + momentum * batch`` with the
    unbiased batch variance; training normalizes with the biased one.
    """

    def __init__(self, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.momentum = momentum
        self.eps = eps

    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> Shape:
        channels = input_shape[-1]
        self.params["gamma"] = np.ones(channels, dtype=dtype)
        self.params["beta"] = np.zeros(channels, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(channels, dtype=dtype)
        self.buffers["running_var"] = np.ones(channels, dtype=dtype)
        return input_shape

    def forward(self, x: Array, *, training: bool) -> Array:
        channels = x.shape[-1]
        flat = x.reshape(-1, channels)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            scale = gamma / np.sqrt(self.buffers["running_var"] + self.eps)
            shift = beta - self.buffers["running_mean"] * scale
            out: Array = flat * scale
            out += shift
            return out.reshape(x.shape)
        count = flat.shape[0]
        mean = flat.mean(axis=0)
        centered = flat - mean
        var = np.einsum("ij,ij->j", centered, centered) / count
        inv_std = 1.0 / np.sqrt(var + self.eps)
        # Keep the centred input, not x-hat: the output and the backward pass each fold the scaling into
        # one per-channel factor, saving a full pass over the activations each way.
        self._centered, self._inv_std = centered, inv_std
        m = self.momentum
        self.buffers["running_mean"] *= 1 - m
        self.buffers["running_mean"] += m * mean
        self.buffers["running_var"] *= 1 - m
        self.buffers["running_var"] += (m * count / max(count - 1, 1)) * var
        out = centered * (gamma * inv_std)
        out += beta
        return out.reshape(x.shape)

    def backward(self, grad: Array) -> Array | None:
        shape = grad.shape
        g = grad.reshape(-1, shape[-1])
        centered, inv_std = self._centered, self._inv_std
        self._centered = None
        count = g.shape[0]
        dbeta = g.sum(axis=0)
        g_dot_centered = np.einsum("ij,ij->j", g, centered)
        self.grads["beta"][...] = dbeta
        self.grads["gamma"][...] = g_dot_centered * inv_std
        if not self.needs_input_grad:
            return None
        # dx = gamma / std * (g - mean(g) - xhat * mean(g * xhat)) with xhat = centered / std, as
        # dx = a * g + b * centered + c with per-channel a, b, c; written into g to save buffers.
        a = self.params["gamma"] * inv_std
        b = -a * inv_std * inv_std * (g_dot_centered / count)
        c = -a * (dbeta / count)
        g *= a
        centered *= b
        g += centered
        g += c
        return g.reshape(shape)


class BatchNorm1D(_BatchNorm):
    """Batch normalization for dense features ``(batch, features)``."""


class BatchNorm2D(_BatchNorm):
    """Batch normalization per channel for NHWC feature maps."""
