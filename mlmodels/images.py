"""An uploaded picture of a digit to the 784 pixels an MNIST model reads, prepared the way MNIST's digits were.

MNIST digits are white on black, their ink fitted into a 20x20 box keeping the aspect ratio, and placed in the
28x28 frame so that their centre of mass is the frame's centre. A model trained on them does badly on a digit that
is off-centre, small or black on white, so every picture is brought to the same form first: grayscale, inverted
when the background is light, the background level subtracted, cropped to the ink, fitted into 20x20 and pasted
centred by centre of mass.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import InvalidInput, PayloadTooLarge

SIDE = 28
BOX = 20
# Ink is what stands out from the background by this share of the darkest-to-brightest range.
INK_THRESHOLD = 0.2
# Below this contrast (of 255) the picture is taken to be blank.
MIN_CONTRAST = 24


class ImageInvalid(InvalidInput):
    """The upload is not a picture of a digit that can be read."""


class ImageTooLarge(PayloadTooLarge):
    """The picture is larger than allowed."""


@dataclass(frozen=True)
class PreparedDigit:
    """``pixels``: 784 float32 values in [0, 1], white ink on black, row by row.

    ``inverted``: the picture had a light background; ``ink_box``: (top, left, bottom, right) of the ink in the
    source picture (bottom and right exclusive), ``None`` when the input was already 28x28 pixels and not
    re-centred; ``center_of_mass``: (row, column) of the ink in the 28x28 result."""

    pixels: NDArray[np.float32]
    inverted: bool
    ink_box: tuple[int, int, int, int] | None
    center_of_mass: tuple[float, float]
    source_size: tuple[int, int]


def prepare_image(data: bytes, *, max_bytes: int, max_side: int) -> PreparedDigit:
    """Read an uploaded picture (PNG, JPEG, GIF, BMP, WebP…) and prepare it like an MNIST digit.

    Raises ImageTooLarge above `max_bytes` or `max_side`, ImageInvalid for anything that is not a picture or shows
    no ink."""
    if not data:
        raise ImageInvalid("The upload is empty: send a picture of a digit.")
    if len(data) > max_bytes:
        raise ImageTooLarge(
            f"The picture is {_size(len(data))}; the limit is {_size(max_bytes)}.",
            limit_bytes=max_bytes,
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max(width, height) > max_side:
                raise ImageTooLarge(
                    f"The picture is {width}x{height} pixels; the limit is {max_side} pixels per side.",
                    limit_pixels=max_side,
                )
            image.seek(0)  # the first frame of an animation
            # A phone photo is stored sideways with a note of how to turn it; turn it before reading the digit.
            gray = _grayscale(ImageOps.exif_transpose(image) or image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as error:
        raise ImageInvalid(
            "The upload is not a picture that can be read (send a PNG, JPEG, GIF, BMP or WebP)."
        ) from error
    return prepare_array(gray, recenter=True, source_size=(width, height))


def prepare_array(
    gray: NDArray[np.floating] | NDArray[np.integer],
    *,
    recenter: bool,
    source_size: tuple[int, int] | None = None,
) -> PreparedDigit:
    """Prepare a 2-D grayscale array (0 black .. 255 white). Without `recenter`, a 28x28 array is only scaled to
    [0, 1] (it is taken to be MNIST-like already); with it, it goes through the whole preparation.

    Raises ImageInvalid when there is no ink to see."""
    values = np.asarray(gray, dtype=np.float64)
    height, width = values.shape
    size = source_size or (width, height)
    if not recenter:
        pixels = np.clip(values / 255.0, 0.0, 1.0).astype(np.float32)
        return PreparedDigit(pixels.reshape(-1), False, None, _center_of_mass(pixels), size)

    inverted = _background_is_light(values)
    if inverted:
        values = 255.0 - values
    background = float(np.median(_border(values)))
    values = np.clip(values - background, 0.0, None)
    peak = float(values.max())
    if peak < MIN_CONTRAST:
        raise ImageInvalid("No digit found: the picture is blank or has too little contrast.")
    values /= peak
    rows = np.flatnonzero((values > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((values > INK_THRESHOLD).any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    ink = np.where(values >= INK_THRESHOLD / 2, values, 0.0)[top:bottom, left:right]

    fitted = _fit_into_box(ink)
    frame = _paste_centred(fitted)
    pixels = frame.astype(np.float32)
    return PreparedDigit(
        pixels.reshape(-1), inverted, (top, left, bottom, right), _center_of_mass(pixels), size
    )


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    return f"{count / 1e3:.0f} KB" if count < 1_000_000 else f"{count / 1e6:.1f} MB"


def _grayscale(image: Image.Image) -> NDArray[np.float64]:
    """Luminance 0..255. Transparent areas become the background: black behind light ink, white behind dark ink,
    so that a white digit on a transparent canvas and a black one both keep their ink."""
    image.load()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
        luminance = np.asarray(rgba.convert("L"), dtype=np.float64)
        if alpha.min() < 0.99:
            weight = alpha.sum()
            ink_is_light = weight > 0 and float((luminance * alpha).sum() / weight) >= 128
            backdrop = 0.0 if ink_is_light else 255.0
            return luminance * alpha + backdrop * (1.0 - alpha)
        return luminance
    return np.asarray(image.convert("L"), dtype=np.float64)


def _border(values: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


def _background_is_light(values: NDArray[np.float64]) -> bool:
    # The border is almost always background; a light one means dark ink on paper.
    return float(np.median(_border(values))) > 127.5


def _fit_into_box(ink: NDArray[np.float64]) -> NDArray[np.float64]:
    """Scale so that the longer side is BOX pixels, keeping the aspect ratio (MNIST's normalization)."""
    height, width = ink.shape
    scale = BOX / max(height, width)
    new_height = max(1, min(BOX, round(height * scale)))
    new_width = max(1, min(BOX, round(width * scale)))
    image = Image.fromarray(ink.astype(np.float32))  # float32: mode "F"
    resized = np.asarray(image.resize((new_width, new_height), Image.Resampling.LANCZOS), dtype=np.float64)
    resized = np.clip(resized, 0.0, None)
    peak = float(resized.max())
    # Downscaling a large picture thins its strokes; bring the strongest ink back to full white.
    return resized / peak if peak > 0 else resized


def _paste_centred(patch: NDArray[np.float64]) -> NDArray[np.float64]:
    frame = np.zeros((SIDE, SIDE), dtype=np.float64)
    height, width = patch.shape
    com_row, com_col = _center_of_mass(patch)
    # Place the patch so that its centre of mass lands on the frame's centre, clipped to stay inside the frame.
    top = min(max(round(SIDE / 2 - com_row), 0), SIDE - height)
    left = min(max(round(SIDE / 2 - com_col), 0), SIDE - width)
    frame[top : top + height, left : left + width] = patch
    return frame


def _center_of_mass(values: NDArray[np.floating] | NDArray[np.float32]) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass, pixel centres at i + 0.5; the middle when there is no ink."""
    grid = np.asarray(values, dtype=np.float64).reshape(-1, values.shape[-1])
    total = float(grid.sum())
    if total <= 0 or not math.isfinite(total):
        return (grid.shape[0] / 2, grid.shape[1] / 2)
    rows = np.arange(grid.shape[0]) + 0.5
    cols = np.arange(grid.shape[1]) + 0.5
    return (float((grid.sum(axis=1) * rows).sum() / total), float((grid.sum(axis=0) * cols).sum() / total))
