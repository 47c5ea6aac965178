import io

import numpy as np
import pytest
from PIL import Image

from mlmodels import images
from tests.mlmodels.conftest import drawn_digit_png

LIMITS = {"max_bytes": 5_000_000, "max_side": 4096}


def ink_rows_and_columns(prepared):
    grid = prepared.pixels.reshape(28, 28)
    rows = np.flatnonzero(grid.max(axis=1) > 0.2)
    cols = np.flatnonzero(grid.max(axis=0) > 0.2)
    return rows, cols


def test_a_digit_drawn_in_a_corner_lands_centred_and_fitted_into_20_by_20():
    prepared = images.prepare_image(drawn_digit_png(box=(10, 10, 90, 120)), **LIMITS)

    rows, cols = ink_rows_and_columns(prepared)
    assert prepared.pixels.shape == (784,) and prepared.pixels.dtype == np.float32
    assert prepared.pixels.min() >= 0.0 and prepared.pixels.max() == pytest.approx(1.0)
    assert prepared.center_of_mass == pytest.approx((14.0, 14.0), abs=0.75)
    assert rows[-1] - rows[0] + 1 <= 21 and cols[-1] - cols[0] + 1 <= 21
    assert rows[-1] - rows[0] >= 17  # the taller side fills the box
    assert rows[0] >= 1 and rows[-1] <= 26 and cols[0] >= 1 and cols[-1] <= 26  # nothing cut off


def test_the_same_digit_anywhere_on_the_page_gives_nearly_the_same_input():
    corner = images.prepare_image(drawn_digit_png(box=(10, 10, 90, 120)), **LIMITS)
    middle = images.prepare_image(drawn_digit_png(box=(150, 140, 230, 250)), **LIMITS)

    assert np.abs(corner.pixels - middle.pixels).mean() < 0.02


def test_dark_ink_on_paper_is_inverted_and_light_ink_on_black_is_not():
    paper = images.prepare_image(drawn_digit_png(ink="black", paper="white"), **LIMITS)
    canvas = images.prepare_image(drawn_digit_png(ink="white", paper="black"), **LIMITS)

    assert paper.inverted and not canvas.inverted
    assert np.abs(paper.pixels - canvas.pixels).mean() < 0.02
    assert paper.pixels.reshape(28, 28)[0, 0] == 0.0  # the background is black, like MNIST


@pytest.mark.parametrize("ink", [(0, 0, 0, 255), (255, 255, 255, 255)])
def test_a_transparent_background_keeps_the_ink_whatever_its_colour(ink):
    png = drawn_digit_png(ink=ink, paper=(0, 0, 0, 0), mode="RGBA")

    prepared = images.prepare_image(png, **LIMITS)

    assert prepared.pixels.max() == pytest.approx(1.0)
    assert prepared.center_of_mass == pytest.approx((14.0, 14.0), abs=0.75)


def test_a_photo_with_a_grey_background_loses_the_background():
    png = drawn_digit_png(ink=(40, 40, 40), paper=(190, 190, 190))

    prepared = images.prepare_image(png, **LIMITS)

    grid = prepared.pixels.reshape(28, 28)
    assert grid[0].max() == 0.0 and grid[:, 0].max() == 0.0


def test_a_blank_picture_has_no_digit():
    blank = io.BytesIO()
    Image.new("L", (100, 100), 255).save(blank, format="PNG")

    with pytest.raises(images.ImageInvalid, match="No digit found"):
        images.prepare_image(blank.getvalue(), **LIMITS)


@pytest.mark.parametrize("data", [b"", b"GIF89a this is not really a picture", b"%PDF-1.7\n"])
def test_what_is_not_a_picture_is_refused(data):
    with pytest.raises(images.ImageInvalid):
        images.prepare_image(data, **LIMITS)


def test_a_picture_over_the_limits_is_refused():
    png = drawn_digit_png(size=300)

    with pytest.raises(images.ImageTooLarge, match="limit is 100 bytes"):
        images.prepare_image(png, max_bytes=100, max_side=4096)
    with pytest.raises(images.ImageTooLarge, match="200 pixels per side"):
        images.prepare_image(png, max_bytes=5_000_000, max_side=200)


def test_pixels_that_are_already_mnist_like_are_only_scaled():
    grid = np.zeros((28, 28))
    grid[5:9, 3:7] = 255

    prepared = images.prepare_array(grid, recenter=False)

    assert np.array_equal(prepared.pixels.reshape(28, 28), grid / 255)
    assert prepared.ink_box is None
    assert prepared.center_of_mass == pytest.approx((7.0, 5.0))


def test_a_photo_stored_sideways_is_turned_upright_first():
    upright = images.prepare_image(drawn_digit_png(), **LIMITS)
    sideways = Image.open(io.BytesIO(drawn_digit_png())).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90° clockwise to view (the pixels were turned anticlockwise)
    buffer = io.BytesIO()
    sideways.convert("RGB").save(buffer, format="JPEG", exif=exif, quality=95)

    turned = images.prepare_image(buffer.getvalue(), **LIMITS)

    assert np.abs(turned.pixels - upright.pixels).mean() < 0.05
