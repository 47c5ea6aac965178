"""Convolution and max pooling on NHWC batches, vectorized with im2col.

Only loops over kernel offsets (``kh * kw`` iterations) remain in Python; every copy inside them moves a
whole batch. The column buffer holds one mini-batch at a time and is reused between calls of the same
shape, so memory is bounded by the batch size, never by the data set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlmodels.core.layers import Array, Init, Layer, Shape, init_weights


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class Conv2D(Layer):
    """2-D cross-correlation (what deep-learning libraries call convolution), NHWC in and out.

    ``padding`` is a pixel count per side or ``"same"`` (odd kernels, stride 1). Weights have shape
    ``(kh, kw, in_channels, filters)``, the order of the im2col columns.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        init: Init = "he",
        use_bias: bool = True,
    ) -> None:
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.init = init
        self.use_bias = use_bias

    def _geometry(self) -> tuple[int, int, int, int, int, int]:
        kh, kw = _pair(self.kernel_size)
        sh, sw = _pair(self.stride)
        if self.padding == "same":
            if kh % 2 == 0 or kw % 2 == 0 or (sh, sw) != (1, 1):
                raise ValueError("padding='same' needs an odd kernel and stride 1")
            ph, pw = kh // 2, kw // 2
        elif isinstance(self.padding, str):
            raise ValueError(f"unknown padding {self.padding!r}")
        else:
            ph, pw = _pair(self.padding)
        return kh, kw, sh, sw, ph, pw

    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D expects (height, width, channels) inputs, got {input_shape}")
        height, width, channels = input_shape
        kh, kw, sh, sw, ph, pw = self._geometry()
        out_h, out_w = _output_size(height, kh, sh, ph), _output_size(width, kw, sw, pw)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"a {kh}x{kw} kernel does not fit a {height}x{width} input with this padding")
        fan_in, fan_out = kh * kw * channels, kh * kw * self.filters
        self.params["W"] = init_weights(
            rng, (kh, kw, channels, self.filters), fan_in=fan_in, fan_out=fan_out, init=self.init, dtype=dtype
        )
        if self.use_bias:
            self.params["b"] = np.zeros(self.filters, dtype=dtype)
        return (out_h, out_w, self.filters)

    @property
    def decayed(self) -> frozenset[str]:
        return frozenset({"W"})

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any], zero: bool) -> Array:
        """A scratch array reused across batches of the same shape (avoids page-faulting new memory)."""
        cache: dict[str, Array] = self.__dict__.setdefault("_scratch", {})
        buffer = cache.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = np.zeros(shape, dtype=dtype) if zero else np.empty(shape, dtype=dtype)
            cache[name] = buffer
        return buffer

    def forward(self, x: Array, *, training: bool) -> Array:
        kh, kw, sh, sw, ph, pw = self._geometry()
        n, height, width, channels = x.shape
        out_h, out_w = _output_size(height, kh, sh, ph), _output_size(width, kw, sw, pw)
        # Training reuses scratch buffers (their padding border stays zero between calls); inference
        # allocates its own, so concurrent predictions never share memory.
        padded_shape = (n, height + 2 * ph, width + 2 * pw, channels)
        cols_shape = (n, out_h, out_w, kh, kw, channels)
        if training:
            padded = self._buffer("padded", padded_shape, x.dtype, zero=True) if ph or pw else x
            cols = self._buffer("cols", cols_shape, x.dtype, zero=False)
        else:
            padded = np.zeros(padded_shape, dtype=x.dtype) if ph or pw else x
            cols = np.empty(cols_shape, dtype=x.dtype)
        if ph or pw:
            padded[:, ph : ph + height, pw : pw + width, :] = x
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i, j, :] = padded[:, i : i + sh * out_h : sh, j : j + sw * out_w : sw, :]
        weights = self.params["W"].reshape(kh * kw * channels, self.filters)
        out = cols.reshape(n * out_h * out_w, -1) @ weights
        if self.use_bias:
            out += self.params["b"]
        if training:
            self._cols, self._x_shape = cols, x.shape
        return out.reshape(n, out_h, out_w, self.filters)

    def backward(self, grad: Array) -> Array | None:
        kh, kw, sh, sw, ph, pw = self._geometry()
        n, height, width, channels = self._x_shape
        out_h, out_w = grad.shape[1], grad.shape[2]
        g = grad.reshape(-1, self.filters)
        cols = self._cols.reshape(g.shape[0], -1)
        np.matmul(cols.T, g, out=self.grads["W"].reshape(kh * kw * channels, self.filters))
        if self.use_bias:
            np.sum(g, axis=0, out=self.grads["b"])
        self._cols = None  # type: ignore[assignment]
        if not self.needs_input_grad:
            return None
        dcols = (g @ self.params["W"].reshape(-1, self.filters).T).reshape(n, out_h, out_w, kh, kw, channels)
        dpadded = np.zeros((n, height + 2 * ph, width + 2 * pw, channels), dtype=grad.dtype)
        for i in range(kh):
            for j in range(kw):
                dpadded[:, i : i + sh * out_h : sh, j : j + sw * out_w : sw, :] += dcols[:, :, :, i, j, :]
        return dpadded[:, ph : ph + height, pw : pw + width, :]


class MaxPool2D(Layer):
    """Max pooling on NHWC maps; the gradient goes to the first maximum of each window (as in PyTorch)."""

    def __init__(
        self, pool_size: int | tuple[int, int] = 2, *, stride: int | tuple[int, int] | None = None
    ) -> None:
        self.pool_size = pool_size
        self.stride = stride

    def _geometry(self) -> tuple[int, int, int, int]:
        ph, pw = _pair(self.pool_size)
        sh, sw = _pair(self.stride) if self.stride is not None else (ph, pw)
        return ph, pw, sh, sw

    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"MaxPool2D expects (height, width, channels) inputs, got {input_shape}")
        ph, pw, sh, sw = self._geometry()
        height, width, channels = input_shape
        out_h, out_w = _output_size(height, ph, sh, 0), _output_size(width, pw, sw, 0)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"pool {ph}x{pw} does not fit a {height}x{width} input")
        return (out_h, out_w, channels)

    def _windows(self, x: Array, out_h: int, out_w: int) -> list[Array]:
        """Strided views, one per offset inside the window, in row-major window order."""
        ph, pw, sh, sw = self._geometry()
        return [
            x[:, i : i + sh * out_h : sh, j : j + sw * out_w : sw, :] for i in range(ph) for j in range(pw)
        ]

    def forward(self, x: Array, *, training: bool) -> Array:
        ph, pw, sh, sw = self._geometry()
        _n, height, width, _channels = x.shape
        out_h, out_w = _output_size(height, ph, sh, 0), _output_size(width, pw, sw, 0)
        windows = self._windows(x, out_h, out_w)
        if not training:
            best = np.maximum(windows[0], windows[1]) if len(windows) > 1 else windows[0].copy()
            for window in windows[2:]:
                np.maximum(best, window, out=best)
            return best
        if len(windows) == 4:
            # A tournament: a vs b, c vs d, then the winners; ">" keeps the earlier offset on ties, so
            # the first maximum in row-major order wins, as in PyTorch.
            a, b, c, d = windows
            top, bottom = np.maximum(a, b), np.maximum(c, d)
            winner = np.greater(b, a).view(np.uint8)
            lower = np.greater(d, c).view(np.uint8)
            lower += 2
            np.copyto(winner, lower, where=np.greater(bottom, top))
            np.maximum(top, bottom, out=top)
            self._winner, self._x_shape = winner, x.shape
            return top
        best = windows[0].copy()
        winner = np.zeros(best.shape, dtype=np.uint8)
        for offset, window in enumerate(windows[1:], start=1):
            larger = np.greater(window, best)
            np.copyto(best, window, where=larger)
            np.copyto(winner, offset, where=larger)
        self._winner, self._x_shape = winner, x.shape
        return best

    def backward(self, grad: Array) -> Array | None:
        ph, pw, sh, sw = self._geometry()
        _n, height, width, _channels = self._x_shape
        out_h, out_w = grad.shape[1], grad.shape[2]
        winner = self._winner
        self._winner = None  # type: ignore[assignment]
        tiles_exactly = (sh, sw) == (ph, pw) and height == ph * out_h and width == pw * out_w
        # Non-overlapping windows that tile the input write every input position exactly once.
        dx = (
            np.empty(self._x_shape, dtype=grad.dtype)
            if tiles_exactly
            else np.zeros(self._x_shape, dtype=grad.dtype)
        )
        for offset, target in enumerate(self._windows(dx, out_h, out_w)):
            if tiles_exactly:
                np.multiply(grad, winner == offset, out=target)
            else:
                # Overlapping windows can send several gradients to one input: accumulate.
                np.add(target, np.where(winner == offset, grad, 0), out=target)
        return dx
