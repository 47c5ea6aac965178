"""Random image distortions for training, one vectorized resampling per mini-batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodels.core.base import Component
from mlmodels.core.layers import Array


class ImageAugmenter(Component):
    """Random affine (shift, rotation, scale) and optional elastic distortion with bilinear resampling.

    Accepts a batch of any shape whose rows hold ``image_shape`` (``(H, W)`` or ``(H, W, C)``) pixels,
    e.g. flat MNIST rows for an MLP, and returns the same shape and dtype. Pixels sampled from outside
    the image read as zero, which is MNIST's background. The elastic field is a random displacement on
    a coarse ``elastic_grid`` x ``elastic_grid`` lattice upsampled bilinearly: smooth like Simard et al.'s
    Gaussian-filtered field but with no per-image convolution.
    """

    def __init__(
        self,
        image_shape: tuple[int, ...] = (28, 28),
        *,
        max_shift: float = 2.0,
        max_rotation: float = 10.0,
        max_scale: float = 0.1,
        elastic_alpha: float = 0.0,
        elastic_grid: int = 4,
    ) -> None:
        self.image_shape = image_shape
        self.max_shift = max_shift
        self.max_rotation = max_rotation
        self.max_scale = max_scale
        self.elastic_alpha = elastic_alpha
        self.elastic_grid = elastic_grid

    def transform(self, batch: Array, *, rng: np.random.Generator) -> Array:
        shape = tuple(self.image_shape)
        height, width = int(shape[0]), int(shape[1])
        channels = int(shape[2]) if len(shape) == 3 else 1
        n = batch.shape[0]
        if batch[0].size != height * width * channels:
            raise ValueError(f"rows of {batch[0].size} values do not hold {shape} images")
        images = batch.reshape(n, height, width, channels)
        dtype = batch.dtype

        angle = rng.uniform(-1.0, 1.0, n) * math.radians(self.max_rotation)
        scale = 1.0 + rng.uniform(-1.0, 1.0, n) * self.max_scale
        shift = rng.uniform(-1.0, 1.0, (2, n)) * self.max_shift
        cos = (np.cos(angle) / scale).astype(dtype)[:, None, None]
        sin = (np.sin(angle) / scale).astype(dtype)[:, None, None]
        cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
        gy = (np.arange(height, dtype=dtype) - cy)[None, :, None]
        gx = (np.arange(width, dtype=dtype) - cx)[None, None, :]
        # Inverse mapping: each output pixel reads from the rotated, scaled and shifted source point.
        src_x = cos * gx + sin * gy + (cx - shift[0]).astype(dtype)[:, None, None]
        src_y = cos * gy - sin * gx + (cy - shift[1]).astype(dtype)[:, None, None]
        if self.elastic_alpha > 0:
            dx, dy = self._elastic_field(n, height, width, rng, dtype)
            src_x += dx
            src_y += dy
        return _bilinear(images, src_y, src_x).reshape(batch.shape)

    def _elastic_field(
        self, n: int, height: int, width: int, rng: np.random.Generator, dtype: np.dtype[Any]
    ) -> tuple[Array, Array]:
        grid = max(int(self.elastic_grid), 2)
        coarse = rng.uniform(-1.0, 1.0, (2, n, grid, grid)) * self.elastic_alpha
        rows = _interpolation_matrix(height, grid)
        cols = _interpolation_matrix(width, grid)
        field = np.einsum("hi,cnij,wj->cnhw", rows, coarse, cols).astype(dtype)
        return field[0], field[1]


def _interpolation_matrix(size: int, grid: int) -> NDArray[np.float64]:
    """Rows of weights that linearly interpolate ``grid`` evenly spaced knots onto ``size`` pixels."""
    position = np.linspace(0, grid - 1, size)
    low = np.minimum(np.floor(position).astype(np.intp), grid - 2)
    frac = position - low
    matrix = np.zeros((size, grid))
    matrix[np.arange(size), low] = 1 - frac
    matrix[np.arange(size), low + 1] = frac
    return matrix


def _bilinear(images: Array, src_y: Array, src_x: Array) -> Array:
    """Sample NHWC ``images`` at fractional coordinates ``(n, H, W)``; outside reads as zero."""
    n, height, width, channels = images.shape
    padded = np.zeros((n, height + 2, width + 2, channels), dtype=images.dtype)
    padded[:, 1:-1, 1:-1, :] = images
    flat = padded.reshape(-1, channels)
    y0f = np.floor(src_y)
    x0f = np.floor(src_x)
    wy = (src_y - y0f)[..., None]
    wx = (src_x - x0f)[..., None]
    # Clipping into the one-pixel zero border makes every far-outside sample read zero.
    y0 = np.clip(y0f.astype(np.intp) + 1, 0, height + 1)
    x0 = np.clip(x0f.astype(np.intp) + 1, 0, width + 1)
    y1 = np.clip(y0f.astype(np.intp) + 2, 0, height + 1)
    x1 = np.clip(x0f.astype(np.intp) + 2, 0, width + 1)
    base = (np.arange(n) * ((height + 2) * (width + 2)))[:, None, None]
    row0, row1 = base + y0 * (width + 2), base + y1 * (width + 2)
    top = flat[row0 + x0] * (1 - wx) + flat[row0 + x1] * wx
    bottom = flat[row1 + x0] * (1 - wx) + flat[row1 + x1] * wx
    sampled: Array = top * (1 - wy) + bottom * wy
    return sampled
