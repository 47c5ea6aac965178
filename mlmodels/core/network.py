"""A stack of layers whose parameters and gradients share two flat buffers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from mlmodels.core.base import Component
from mlmodels.core.layers import Array, Layer, Shape


class Sequential(Component):
    """Layers applied in order.

    After :meth:`build`, every parameter is a view into ``flat_params`` (and its gradient into
    ``flat_grads``), weights that take decay first, so optimizers and best-weight snapshots work on one
    vector. The first layer is told not to compute an input gradient nobody uses.
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = layers

    def build(self, input_shape: Shape, *, rng: np.random.Generator, dtype: DTypeLike = np.float32) -> Shape:
        shape = tuple(int(v) for v in input_shape)
        self.input_shape_ = shape
        for layer, child in zip(self.layers, rng.spawn(len(self.layers)), strict=True):
            shape = layer.build(shape, rng=child, dtype=dtype)
        self.output_shape_ = shape
        self._share_buffers(np.dtype(dtype))
        return shape

    def _share_buffers(self, dtype: np.dtype[Any]) -> None:
        entries = [(layer, name) for layer in self.layers for name in layer.params]
        entries.sort(key=lambda item: item[1] not in item[0].decayed)  # stable: decayed weights first
        total = sum(layer.params[name].size for layer, name in entries)
        self.n_decay_ = sum(layer.params[name].size for layer, name in entries if name in layer.decayed)
        self.flat_params = np.empty(total, dtype=dtype)
        self.flat_grads = np.zeros(total, dtype=dtype)
        offset = 0
        for layer, name in entries:
            value = layer.params[name]
            size = value.size
            view = self.flat_params[offset : offset + size].reshape(value.shape)
            view[...] = value
            layer.params[name] = view
            layer.grads[name] = self.flat_grads[offset : offset + size].reshape(value.shape)
            offset += size
        for index, layer in enumerate(self.layers):
            layer.needs_input_grad = index > 0

    @property
    def n_parameters(self) -> int:
        return int(self.flat_params.size)

    def forward(self, x: Array, *, training: bool) -> Array:
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad: Array) -> None:
        current: Array | None = grad
        for layer in reversed(self.layers):
            assert current is not None
            current = layer.backward(current)

    def buffers_snapshot(self) -> list[Array]:
        """Copies of the non-trainable state (batch-norm running statistics)."""
        return [value.copy() for layer in self.layers for value in layer.buffers.values()]

    def restore_buffers(self, snapshot: list[Array]) -> None:
        values = iter(snapshot)
        for layer in self.layers:
            for name in layer.buffers:
                layer.buffers[name][...] = next(values)

    def _get_state(self) -> dict[str, Any]:
        if not hasattr(self, "output_shape_"):
            return {}
        return {"input_shape_": list(self.input_shape_), "output_shape_": list(self.output_shape_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.input_shape_ = tuple(state["input_shape_"])
        self.output_shape_ = tuple(state["output_shape_"])
        dtype = np.dtype(self.layers[0].dtype_) if self.layers and hasattr(self.layers[0], "dtype_") else None
        self._share_buffers(dtype or np.dtype(np.float32))
