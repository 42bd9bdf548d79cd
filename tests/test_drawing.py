"""cnnlab.data.drawing: a canvas array becomes the image the dataset's images would give."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnlab.data.drawing import (
    MAX_SIDE,
    EmptyDrawingError,
    decode_drawing,
    drawing_to_image,
    style_for,
)
from cnnlab.errors import DataError

SIDE = 280


def canvas(draw, background=(255, 255, 255, 255)) -> np.ndarray:
    """A 280 x 280 RGBA canvas as streamlit-drawable-canvas sends it, drawn with PIL."""
    img = Image.new("RGBA", (SIDE, SIDE), background)
    draw(ImageDraw.Draw(img))
    return np.asarray(img)


def one(d, colour=(0, 0, 0, 255), x=150, width=26):
    d.line([(x, 40), (x, 240)], fill=colour, width=width)


def zero(d, colour=(0, 0, 0, 255)):
    d.ellipse([80, 40, 200, 240], outline=colour, width=26)


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(a.shape)
    return float((ys * a).sum() / a.sum()), float((xs * a).sum() / a.sum())


@pytest.fixture(scope="module")
def digits_val():
    from cnnlab.data import load_dataset

    return load_dataset("digits").val


def test_digits_style_gives_an_image_like_the_digits(digits_val):
    real = digits_val.images.float().numpy()[:, 0] / 255
    real_means = real.mean(axis=(1, 2))
    low, high = np.percentile(real_means, [2, 98])
    style = style_for("digits", (1, 28, 28))
    for draw in (one, zero):
        img = drawing_to_image(canvas(draw), style)  # black ink on white paper
        assert img.mode == "L" and img.size == (28, 28)
        a = np.asarray(img)
        assert a.dtype == np.uint8
        x = a / 255
        assert low <= x.mean() <= high, (draw.__name__, x.mean(), (low, high))  # as much ink as the digits
        assert x[0].max() < 0.5 or x[:, 0].max() < 0.5  # inverted: the paper became black
        cy, cx = centre_of_mass(x)
        assert abs(cy - 13.5) < 1.5 and abs(cx - 13.5) < 2.5, (cy, cx)
        rows = np.flatnonzero((x > 0.2).any(axis=1))
        assert rows[0] <= 1 and rows[-1] >= 26  # fills the frame's height, as the digits do
        assert a.max() >= 200 and a.min() == 0


def test_a_digit_drawn_anywhere_and_in_any_size_gives_the_same_input():
    style = style_for("digits", (1, 28, 28))
    big = np.asarray(drawing_to_image(canvas(one), style))
    small_left = canvas(lambda d: d.line([(40, 100), (40, 160)], fill=(0, 0, 0, 255), width=8))
    assert np.abs(np.asarray(drawing_to_image(small_left, style)).astype(int) - big).max() <= 60
    # white on black, as a blackboard, is the same digit
    white = canvas(lambda d: one(d, (255, 255, 255, 255)), background=(0, 0, 0, 255))
    assert np.array_equal(np.asarray(drawing_to_image(white, style, background="#000000")), big)
    # a transparent canvas (the component's default) drawn on in black
    clear = canvas(one, background=(0, 0, 0, 0))
    assert np.array_equal(np.asarray(drawing_to_image(clear, style, background="#ffffff")), big)


def test_mnist_style_is_20_in_28_centred_by_mass():
    img = drawing_to_image(canvas(zero), style_for("mnist", (1, 28, 28)))
    a = np.asarray(img) / 255
    assert img.mode == "L" and img.size == (28, 28)
    rows, cols = np.flatnonzero((a > 0.05).any(axis=1)), np.flatnonzero((a > 0.05).any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20  # the longer side is 20 pixels
    assert cols[-1] - cols[0] + 1 < 20
    cy, cx = centre_of_mass(a)
    assert abs(cy - 13.5) <= 0.6 and abs(cx - 13.5) <= 0.6
    # a stroke drawn in a corner is moved to the centre
    corner = drawing_to_image(canvas(lambda d: one(d, x=20)), "mnist")
    assert abs(centre_of_mass(np.asarray(corner) / 255)[1] - 13.5) <= 0.6


def test_shapes_style_keeps_colours_on_the_background():
    disc = canvas(lambda d: d.ellipse([30, 30, 130, 130], fill=(220, 20, 20, 255)), background=(0, 0, 0, 0))
    img = drawing_to_image(disc, style_for("shapes", (3, 32, 32)), background="#c6dbef")
    a = np.asarray(img)
    assert img.mode == "RGB" and a.shape == (32, 32, 3)
    assert tuple(a[16, 16]) == (220, 20, 20)  # the shape, centred
    assert tuple(a[0, 0]) == (198, 219, 239)  # on the canvas colour
    inside = (np.abs(a.astype(int) - [220, 20, 20]).max(axis=2) < 60)
    rows = np.flatnonzero(inside.any(axis=1))
    assert 19 <= rows[-1] - rows[0] + 1 <= 24  # 70% of the side, as the shapes' sizes
    photo = drawing_to_image(disc, style_for("imagenet", (3, 224, 224)), background="#ffffff")
    assert photo.mode == "RGB" and photo.width == photo.height > 100


def test_style_follows_the_dataset_and_the_channels():
    assert style_for("digits", (1, 32, 32)).size == 32
    assert style_for("fashion_mnist").name == "mnist"
    assert style_for(None, (1, 28, 28)).name == "mnist"
    assert style_for(None, (3, 32, 32)).name == "shapes"
    assert style_for("cifar10", (3, 32, 32)).name == "photo"
    assert style_for("imagenet").name == "photo"


def test_a_blank_canvas_says_to_draw():
    for blank in (canvas(lambda d: None), canvas(lambda d: None, background=(0, 0, 0, 0)),
                  canvas(lambda d: d.point((5, 5), fill=(0, 0, 0, 255)))):  # one stray pixel is no drawing
        with pytest.raises(EmptyDrawingError, match="canvas is empty: draw a digit"):
            drawing_to_image(blank, "digits")
    with pytest.raises(EmptyDrawingError, match="draw a shape"):
        drawing_to_image(canvas(lambda d: None, background=(198, 219, 239, 255)), style_for("shapes"),
                         background="#c6dbef")
    with pytest.raises(EmptyDrawingError):
        decode_drawing(b"")


def test_sizes_and_types_are_bounded_before_use():
    with pytest.raises(DataError, match=f"at most {MAX_SIDE}|between 1 and {MAX_SIDE}"):
        drawing_to_image(np.zeros((MAX_SIDE + 1, 4, 4), np.uint8), "digits")
    with pytest.raises(DataError, match="H x W x 4"):
        drawing_to_image(np.zeros((10, 10, 7), np.uint8), "digits")
    with pytest.raises(DataError):
        drawing_to_image([[1, 2], [3, 4]], "digits")
    # a PNG header announcing a huge canvas is refused before its pixels are decoded
    buf = io.BytesIO()
    Image.new("L", (MAX_SIDE + 1, 8)).save(buf, "PNG")
    with pytest.raises(DataError, match=f"at most {MAX_SIDE}"):
        decode_drawing(buf.getvalue())
    with pytest.raises(DataError, match="PNG or WebP"):
        decode_drawing(b"GIF89a not a drawing")
    buf = io.BytesIO()
    Image.fromarray(canvas(one)).save(buf, "PNG")
    assert decode_drawing(buf.getvalue()).shape == (SIDE, SIDE, 4)
