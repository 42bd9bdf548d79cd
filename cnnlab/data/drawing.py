"""Drawings as dataset images: what a student sketches on a canvas, made to look like the images a
model was trained on, as the ConvNetJS and TensorFlow.js digit demos do.

A canvas gives an RGBA array at screen resolution: any pen colour on any background, the ink
anywhere and of any size. A network trained on MNIST has only seen white digits on black, 20
pixels high in a 28 x 28 frame and centred by their centre of mass; one trained on scikit-learn's
digits has seen blurry 8 x 8 digits that fill their frame; one trained on the shapes has seen a
filled shape about 70 % of the image wide. :func:`drawing_to_image` turns the canvas into that
picture (a PIL image, then prepared for the model like any other image by the input pipeline):

* ``"digits"`` (scikit-learn's 8 x 8 digits): ink as white on black, cropped to its bounding
  box, scaled to fill a 32 x 32 box (the height, or the width when wider), binarised, a thin
  stroke thickened to the dataset's pen, counted in 4 x 4 blocks (0 to 16, as the original
  bitmaps were), then upsampled like the dataset loader;
* ``"mnist"`` (MNIST, Fashion-MNIST and other grey sets): white on black, the ink's box scaled
  so that its longer side is 20 pixels (antialiased), placed in 28 x 28 with its centre of mass
  at the centre;
* ``"shapes"``: the strokes in their colours on the canvas background, the ink's box scaled to
  70 % of the image side and centred;
* ``"photo"`` (ImageNet, CIFAR, Caltech101, folders): the strokes on the background, cropped to
  the ink with a margin, square; the model's own resize and crop do the rest.

"Ink" is whatever differs from the canvas background, so black on white and white on black
give the same digit (the drawing is inverted when needed). A canvas with no ink raises
:class:`EmptyDrawingError`, whose message says to draw something, rather than a prediction of
nothing. Everything a browser sends is bounded (:data:`MAX_SIDE`, :data:`MAX_BYTES`) before
any pixel is allocated.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import DataError
from ..i18n import N_, _

#: The longest side a canvas array (or a drawing file) may have, in pixels.
MAX_SIDE = 2048
#: The largest drawing file :func:`decode_drawing` reads.
MAX_BYTES = 8 * 2**20
#: Ink below this strength (0 to 1, a fraction of the strongest ink) is ignored as noise.
INK_THRESHOLD = 0.15
#: Fewer ink pixels than this fraction of the canvas (and at least 4) count as an empty canvas.
MIN_INK_FRACTION = 5e-5
#: A drawn digit in scikit-learn's look covers at least this fraction of its 32 x 32 bitmap.
DIGITS_MIN_COVERAGE = 0.26


class EmptyDrawingError(DataError):
    """The canvas holds no ink (yet)."""


@dataclass(frozen=True)
class DrawingStyle:
    """How a drawing is made to look like a dataset's images, and a canvas that suits it."""

    name: str  # "digits" | "mnist" | "shapes" | "photo"
    grey: bool  # the result is an "L" image (white ink on black), else "RGB"
    size: int | None  # side of the result; None: the cropped drawing's own size ("photo")
    pen: str  # suggested pen colour (hex)
    background: str  # suggested canvas background (hex)
    stroke_width: int  # suggested pen width on a canvas about 280 pixels wide
    # English, marked for translation (shown through ``_()``):
    what: str  # a short description of the dataset's look, for captions
    subject: str  # "a digit" or "a shape", for instructions

    def describe(self) -> str:
        """What happens to a drawing, in one sentence for a caption (in the language in use)."""
        return _(_DESCRIPTIONS[self.name])


_DESCRIPTIONS = {
    "digits": N_("inverted to white on black, cropped to the ink, scaled to fill the frame and blurred to 8 x 8 like "
                 "scikit-learn's digits"),
    "mnist": N_("inverted to white on black, cropped to the ink, scaled to 20 pixels in a 28 x 28 frame and centred by "
                "its centre of mass, like MNIST"),
    "shapes": N_("cropped to the ink, scaled to 70% of the image and centred on the canvas colour, like the shapes "
                 "dataset"),
    "photo": N_("cropped to the ink with a margin and made square; the model then resizes it like a photo"),
}
# What to draw, when the canvas is empty: one whole sentence per style.
_EMPTY_CANVAS = {
    "digits": N_("the canvas is empty: draw a digit on it with the mouse (or a finger), then the network answers."),
    "mnist": N_("the canvas is empty: draw a digit on it with the mouse (or a finger), then the network answers."),
    "shapes": N_("the canvas is empty: draw a shape on it with the mouse (or a finger), then the network answers."),
    "photo": N_("the canvas is empty: draw something on it with the mouse (or a finger), then the network answers."),
}


GREY_SETS = {"digits": "digits", "mnist": "mnist", "fashion_mnist": "mnist"}
SHAPES_SETS = {"shapes"}


def style_for(dataset: str | None, input_shape: tuple[int, int, int] | None = None) -> DrawingStyle:
    """The drawing style of a model trained on ``dataset`` (a registry key; None for an untrained
    or unknown model, decided by ``input_shape``'s channels: one channel, MNIST's look; three,
    the shapes' look). ``input_shape`` (C, H, W) sets the result's size where the dataset's
    images have the model's size (scikit-learn's digits and the shapes are generated at it)."""
    side = int(input_shape[1]) if input_shape else None
    name = (dataset or "").lower()
    if name not in GREY_SETS and name not in SHAPES_SETS:
        if name in ("", "zoo"):
            name = "mnist" if input_shape is not None and input_shape[0] == 1 else "shapes"
        elif input_shape is not None and input_shape[0] == 1:
            name = "mnist"  # a grey folder of images: white-on-black is the safer guess
        else:
            name = "photo"
    kind = GREY_SETS.get(name, name)
    if kind == "digits":
        return DrawingStyle("digits", True, side or 28, "#000000", "#ffffff", 26,
                            N_("scikit-learn's 8 x 8 digits"), N_("a digit"))
    if kind == "mnist":
        return DrawingStyle("mnist", True, 28, "#000000", "#ffffff", 20, N_("MNIST's 28 x 28 digits"), N_("a digit"))
    if kind == "shapes":
        return DrawingStyle("shapes", False, side or 32, "#e31a1c", "#c6dbef", 8,
                            N_("the shapes (one filled shape on a coloured background)"), N_("a shape"))
    return DrawingStyle("photo", False, None, "#1f3fbf", "#ffffff", 10, N_("photos"), N_("something"))


def parse_colour(colour: str | tuple[int, ...] | None, default=(255, 255, 255)) -> tuple[int, int, int]:
    """``"#rrggbb"``, ``"#rgb"``, ``"rgb(r, g, b)"``/``"rgba(...)"`` or a tuple, as three 0-255 ints."""
    if colour is None or colour == "":
        return tuple(default)  # type: ignore[return-value]
    if isinstance(colour, (tuple, list)) and len(colour) >= 3:
        return tuple(int(np.clip(v, 0, 255)) for v in colour[:3])  # type: ignore[return-value]
    text = str(colour).strip().lower()
    m = re.fullmatch(r"#([0-9a-f]{3}|[0-9a-f]{6})", text)
    if m:
        h = m.group(1)
        h = "".join(c * 2 for c in h) if len(h) == 3 else h
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    m = re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(,\s*[\d.]+\s*)?\)", text)
    if m:
        return tuple(min(255, int(v)) for v in m.groups()[:3])  # type: ignore[return-value]
    raise DataError(_("{colour!r} is not a colour: give it as #rrggbb.").format(colour=colour))


def check_canvas(array) -> np.ndarray:
    """``array`` as a ``H x W x 4`` uint8 RGBA array (``H x W`` grey and ``H x W x 3`` RGB are
    accepted and made opaque), its sides bounded by :data:`MAX_SIDE` before anything is copied."""
    if not isinstance(array, np.ndarray):
        raise DataError(_("the drawing is not an image array; draw on the canvas again."))
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise DataError(_("a drawing must be H x W x 4 (RGBA), H x W x 3 or H x W, not {shape}.").format(
            shape=array.shape))
    h, w = array.shape[:2]
    if h < 1 or w < 1 or max(h, w) > MAX_SIDE:
        raise DataError(_("a drawing must be between 1 and {most} pixels on each side, not {w} x {h}.").format(
            most=MAX_SIDE, w=w, h=h))
    if array.dtype == np.uint8:
        a = array
    elif np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
        a = (np.nan_to_num(array) * 255).round().clip(0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating):
        a = np.nan_to_num(array).clip(0, 255).astype(np.uint8)
    else:
        raise DataError(_("a drawing must hold numbers, not {dtype}.").format(dtype=array.dtype))
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return a


def decode_drawing(data: bytes) -> np.ndarray:
    """A drawing sent as a PNG or WebP file (a canvas export, Gradio's sketchpad) as RGBA, the size
    checked from the header before any pixel is decoded."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise EmptyDrawingError(_("the drawing is empty: draw on the canvas first."))
    if len(data) > MAX_BYTES:
        raise DataError(_("the drawing file is larger than {mb} MB; draw on a smaller canvas.").format(
            mb=MAX_BYTES // 2**20))
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=["PNG", "WEBP"]) as img:
            w, h = img.size
            if max(w, h) > MAX_SIDE or min(w, h) < 1:
                raise DataError(_("a drawing must be at most {most} pixels on each side, not {w} x {h}.").format(
                    most=MAX_SIDE, w=w, h=h))
            img.load()
            return np.asarray(img.convert("RGBA"))
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - PIL's many failure types: one sentence for the user
        raise DataError(_("the drawing could not be read as a PNG or WebP image; draw on the canvas again.")) from None


def ink_of(rgba: np.ndarray, background) -> tuple[np.ndarray, np.ndarray]:
    """The canvas composited over ``background`` (H x W x 3 float, 0-255) and its ink strength
    (H x W float, 0 to 1: the largest channel difference from the background, relative to the
    strongest ink on the canvas)."""
    a = check_canvas(rgba)
    bg = np.asarray(parse_colour(background), np.float32)
    alpha = a[..., 3:4].astype(np.float32) / 255.0
    rgb = a[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
    diff = np.abs(rgb - bg).max(axis=2) / 255.0
    top = float(diff.max()) if diff.size else 0.0
    ink = diff / top if top > 0.05 else np.zeros_like(diff)
    return rgb, ink


def ink_box(ink: np.ndarray, threshold: float = INK_THRESHOLD) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the ink (exclusive ends), or None for an empty canvas."""
    mask = ink > threshold
    if int(mask.sum()) < max(4, int(MIN_INK_FRACTION * mask.size)):
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def drawing_to_image(rgba, style: DrawingStyle | str, background=None) -> Image.Image:
    """The canvas ``rgba`` (H x W x 4 uint8; see :func:`check_canvas`) drawn on ``background`` (the
    canvas colour; the style's by default) as an image of the dataset ``style`` describes (a
    :class:`DrawingStyle` or a dataset name). Raises :class:`EmptyDrawingError` when there is no ink."""
    if isinstance(style, str):
        style = style_for(style)
    rgb, ink = ink_of(rgba, background if background is not None else style.background)
    box = ink_box(ink)
    if box is None:
        raise EmptyDrawingError(_(_EMPTY_CANVAS[style.name]))
    top, left, bottom, right = box
    if style.name == "digits":
        return _digits_look(ink[top:bottom, left:right], style.size or 28)
    if style.name == "mnist":
        return _mnist_look(ink[top:bottom, left:right], style.size or 28)
    bg = parse_colour(background if background is not None else style.background)
    return _colour_look(rgb, box, bg, style)


def _resize_float(a: np.ndarray, w: int, h: int) -> np.ndarray:
    """A float map resized with antialiasing (box filter when shrinking, bilinear when enlarging)."""
    shrink = w < a.shape[1] or h < a.shape[0]
    out = Image.fromarray(a.astype(np.float32), "F").resize((max(1, w), max(1, h)),
                                                             Image.BOX if shrink else Image.BILINEAR)
    return np.asarray(out, dtype=np.float32)


def _digits_look(crop: np.ndarray, size: int) -> Image.Image:
    """scikit-learn's digits: a 32 x 32 bitmap normalised to fill its box, counted in 4 x 4 blocks
    (0..16), then upsampled to ``size`` exactly as :mod:`cnnlab.data.registry` loads them."""
    h, w = crop.shape
    scale = min(32 / h, 32 / w)
    nh, nw = max(1, min(32, round(h * scale))), max(1, min(32, round(w * scale)))
    small = _resize_float(crop, nw, nh)
    bitmap = np.zeros((32, 32), np.float32)
    y0, x0 = (32 - nh) // 2, (32 - nw) // 2
    bitmap[y0:y0 + nh, x0:x0 + nw] = small > 0.5
    # The scanned forms behind the dataset were written with a thick pen: a thin stroke is thickened
    # (one pixel all round at a time, at most four times) until it covers about as much of the frame
    # as the dataset's digits do (their mean intensity is 0.25 to 0.36 for 90% of them).
    for _step in range(4):
        if bitmap.mean() >= DIGITS_MIN_COVERAGE:
            break
        padded = np.pad(bitmap, 1)
        bitmap = np.maximum.reduce([padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1],
                                    padded[1:-1, :-2], padded[1:-1, 2:]])
    counts = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))  # 0..16, as in the UCI optdigits set
    x = torch.from_numpy(counts * (255.0 / 16.0)).view(1, 1, 8, 8)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return Image.fromarray(x.round_().clamp_(0, 255).to(torch.uint8)[0, 0].numpy(), "L")


def _mnist_look(crop: np.ndarray, size: int) -> Image.Image:
    """MNIST: the ink's box scaled so its longer side is 20 (of 28), antialiased, and placed with
    its centre of mass at the centre of the frame."""
    box = round(size * 20 / 28)
    h, w = crop.shape
    scale = box / max(h, w)
    small = np.clip(_resize_float(crop, round(w * scale), round(h * scale)), 0, 1)
    sh, sw = small.shape
    total = float(small.sum())
    ys, xs = np.indices(small.shape)
    cy, cx = ((ys * small).sum() / total, (xs * small).sum() / total) if total > 0 else ((sh - 1) / 2, (sw - 1) / 2)
    centre = (size - 1) / 2
    y0 = int(np.clip(round(centre - cy), 0, size - sh))
    x0 = int(np.clip(round(centre - cx), 0, size - sw))
    out = np.zeros((size, size), np.float32)
    out[y0:y0 + sh, x0:x0 + sw] = small
    return Image.fromarray((out * 255).round().astype(np.uint8), "L")


def _colour_look(rgb: np.ndarray, box, bg: tuple[int, int, int], style: DrawingStyle) -> Image.Image:
    """The strokes on the background: the ink's box made square, scaled to 70 % of ``style.size``
    and centred (shapes), or cropped with a 12.5 % margin at its own resolution (photos)."""
    top, left, bottom, right = box
    h, w = bottom - top, right - left
    side = max(h, w)
    pad = round(side * 0.125) if style.size is None else 0
    square = side + 2 * pad
    canvas = Image.new("RGB", (square, square), bg)
    crop = Image.fromarray(rgb[top:bottom, left:right].round().clip(0, 255).astype(np.uint8), "RGB")
    canvas.paste(crop, ((square - w) // 2, (square - h) // 2))
    if style.size is None:
        return canvas
    inner = max(1, round(style.size * 0.7))
    out = Image.new("RGB", (style.size, style.size), bg)
    shrink = inner < square
    small = canvas.resize((inner, inner), Image.BOX if shrink else Image.BILINEAR)
    out.paste(small, ((style.size - inner) // 2, (style.size - inner) // 2))
    return out
