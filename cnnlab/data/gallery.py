"""Looking at a dataset: class counts per split, a labelled grid of samples, one image's channels.

Seed 000 counts Caltech101's images per category (a bar chart, its min and max); seeds 001 and
004 show grids of labelled samples; seed 004 splits an image into its R, G and B channels and
prints pixel values. Everything here works on the uint8 ``C x H x W`` tensors of a
:class:`~cnnlab.data.DataBundle` and returns plain lists or PIL images, for a notebook or a page.

>>> from cnnlab.data import load_dataset
>>> from cnnlab.data.gallery import class_counts, count_summary, sample_grid
>>> bundle = load_dataset("digits")
>>> count_summary(class_counts(bundle))["total"]       # training images
1438
>>> sample_grid(bundle.train, bundle.info.classes, per_class=4, size=32).size[1]   # 10 rows of 32 + 4 px
360
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image, ImageDraw

from ..errors import ConfigError
from ..fonts import font as text_font
from ..i18n import _
from ._types import DataBundle, TensorSplit

SPLITS = ("train", "val", "test")
#: Bounds on what a grid or a patch may ask for (a grid stays a few megapixels at most).
MAX_GRID_CLASSES = 20
MAX_PER_CLASS = 16
MIN_CELL, MAX_CELL = 16, 256
MAX_PATCH = 16
LABEL_WIDTH = (48, 200)  # the label column's width in pixels: at least, at most
_PAD = 4
_BACKGROUND = (255, 255, 255)
_EMPTY = (225, 225, 225)  # a cell with no image (a class with fewer samples than asked)
_TINTS = {"R": (1, 0, 0), "G": (0, 1, 0), "B": (0, 0, 1)}


# --------------------------------------------------------------------------------------
# Class counts
# --------------------------------------------------------------------------------------


def class_counts(bundle: DataBundle) -> list[dict[str, Any]]:
    """Per class, in class order: ``{"class", "index", "train", "val", "test"}`` image counts
    (``test`` is 0 when the dataset has no test split). The counts are those of the splits the
    trainer uses (for Caltech101 the balanced 50/25/25 split, not the raw folder sizes)."""
    classes = list(bundle.info.classes)
    n = len(classes)
    per_split = {
        name: (split.class_counts(n)[:n] if split is not None and len(split) else [0] * n)
        for name, split in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))
    }
    return [
        {"class": name, "index": i, **{s: int(per_split[s][i]) for s in SPLITS}}
        for i, name in enumerate(classes)
    ]


def _column(counts: Sequence[dict[str, Any]], split: str) -> list[int]:
    if split not in SPLITS:
        raise ConfigError(_("Unknown split {split!r}; choose one of {splits}.").format(
            split=split, splits=", ".join(SPLITS)))
    return [int(row[split]) for row in counts]


def count_summary(counts: Sequence[dict[str, Any]], split: str = "train") -> dict[str, Any]:
    """``total``, ``min`` and ``max`` per class in ``split``, the classes that have the min and
    the max, and whether the split is ``balanced`` (every class the same count)."""
    col = _column(counts, split)
    lo, hi = min(col, default=0), max(col, default=0)
    return {
        "split": split, "total": sum(col), "min": lo, "max": hi, "balanced": lo == hi,
        "min_classes": [row["class"] for row, c in zip(counts, col) if c == lo],
        "max_classes": [row["class"] for row, c in zip(counts, col) if c == hi],
    }


# --------------------------------------------------------------------------------------
# A labelled grid of samples
# --------------------------------------------------------------------------------------


def _check_image(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.dtype != torch.uint8:
        got = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ConfigError(_("Expected one uint8 C x H x W image (a dataset sample), got {got}.").format(got=got))
    if image.shape[0] not in (1, 3):
        raise ConfigError(_("Expected an image with 1 (grey) or 3 (RGB) channels, got {n}.").format(n=image.shape[0]))
    return image.cpu()


def to_pil(image: torch.Tensor) -> Image.Image:
    """A uint8 ``C x H x W`` tensor (1 or 3 channels) as a PIL ``"L"`` or ``"RGB"`` image."""
    arr = _check_image(image).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text``, shortened with "..." so that it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def grid_classes(num_classes: int, first: int = 0, max_classes: int = MAX_GRID_CLASSES) -> range:
    """The class indices a grid shows: at most ``max_classes`` from ``first`` on."""
    if not 0 <= int(first) < max(1, num_classes):
        raise ConfigError(_("The first class shown must be between 0 and {last}, got {first}.").format(
            last=num_classes - 1, first=first))
    if not 1 <= int(max_classes) <= MAX_GRID_CLASSES:
        raise ConfigError(_("A grid shows 1 to {most} classes at a time, got {n}.").format(
            most=MAX_GRID_CLASSES, n=max_classes))
    return range(int(first), min(num_classes, int(first) + int(max_classes)))


def sample_grid(
    split: TensorSplit,
    classes: Sequence[str],
    per_class: int = 6,
    size: int = 64,
    seed: int = 0,
    first: int = 0,
    max_classes: int = MAX_GRID_CLASSES,
) -> Image.Image:
    """A labelled grid: one row per class (the class name at the left), ``per_class`` samples
    of it chosen at random from ``seed``, each shown ``size`` x ``size`` pixels.

    At most ``max_classes`` rows (:data:`MAX_GRID_CLASSES`), starting at class ``first``: page
    through a 102-class dataset with ``first=0, 20, 40, ...`` (see :func:`grid_classes`). A class
    with fewer samples than ``per_class`` leaves its remaining cells grey. Image size:
    label column + ``per_class`` cells wide, one cell per row high (``size + 4`` pixels each).
    """
    if not 1 <= int(per_class) <= MAX_PER_CLASS:
        raise ConfigError(_("Samples per class must be between 1 and {most}, got {n}.").format(
            most=MAX_PER_CLASS, n=per_class))
    if not MIN_CELL <= int(size) <= MAX_CELL:
        raise ConfigError(_("The grid's cell size must be between {least} and {most} pixels, got {size}.").format(
            least=MIN_CELL, most=MAX_CELL, size=size))
    if len(classes) == 0:
        raise ConfigError(_("The dataset has no classes to show."))
    if len(split) and int(split.labels.max()) >= len(classes):
        raise ConfigError(_("The split has label {label} but only {n} class names.").format(
            label=int(split.labels.max()), n=len(classes)))
    per_class, size = int(per_class), int(size)
    rows = grid_classes(len(classes), first, max_classes)
    font = text_font(max(10, min(14, size // 4)), "".join(str(classes[c]) for c in rows))  # a class may be '猫'
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(probe.textlength(str(classes[c]), font=font) for c in rows) + 2 * _PAD
    label_w = int(min(max(label_w, LABEL_WIDTH[0]), LABEL_WIDTH[1]))
    cell = size + _PAD
    grid = Image.new("RGB", (label_w + per_class * cell, len(rows) * cell), _BACKGROUND)
    draw = ImageDraw.Draw(grid)
    g = torch.Generator().manual_seed(int(seed))
    for r, c in enumerate(rows):
        top = r * cell
        name = _fit(draw, str(classes[c]), font, label_w - 2 * _PAD)
        draw.text((_PAD, top + cell // 2), name, fill=(0, 0, 0), font=font, anchor="lm")
        idx = torch.nonzero(split.labels == c, as_tuple=False).flatten()
        chosen = idx[torch.randperm(len(idx), generator=g)[:per_class]].tolist()
        for k in range(per_class):
            left = label_w + k * cell + _PAD // 2
            if k < len(chosen):
                img = to_pil(split.images[chosen[k]]).convert("RGB")
                resample = Image.NEAREST if img.width <= size else Image.BILINEAR
                grid.paste(img.resize((size, size), resample), (left, top + _PAD // 2))
            else:
                draw.rectangle([left, top + _PAD // 2, left + size - 1, top + _PAD // 2 + size - 1], fill=_EMPTY)
    return grid


# --------------------------------------------------------------------------------------
# One image: its channels and its pixel values
# --------------------------------------------------------------------------------------


def channel_views(image: torch.Tensor, tint: bool = True) -> list[tuple[str, Image.Image]]:
    """The channels of a uint8 ``C x H x W`` image, one picture each: ``[("R", ...), ("G", ...),
    ("B", ...)]`` for a colour image (each tinted in its colour, or grey with ``tint=False``),
    ``[("grey", ...)]`` for a 1-channel one."""
    x = _check_image(image)
    if x.shape[0] == 1:
        return [("grey", to_pil(x))]
    out = []
    for name, plane in zip("RGB", x):
        if tint:
            rgb = torch.stack([plane * k for k in _TINTS[name]]).to(torch.uint8)
            out.append((name, to_pil(rgb)))
        else:
            out.append((name, to_pil(plane[None])))
    return out


def _check_patch(x: torch.Tensor, left: int, top: int, size: int) -> None:
    h, w = int(x.shape[1]), int(x.shape[2])
    if not 1 <= int(size) <= min(MAX_PATCH, h, w):
        raise ConfigError(_("The patch size must be between 1 and {most} pixels for a {w}x{h} image, got {size}.")
                          .format(most=min(MAX_PATCH, h, w), w=w, h=h, size=size))
    if not (0 <= int(left) <= w - size and 0 <= int(top) <= h - size):
        raise ConfigError(_("A {size}x{size} patch at x={left}, y={top} does not fit in the {w}x{h} image: x must be "
                            "between 0 and {x_max}, y between 0 and {y_max}.").format(
            size=size, left=left, top=top, w=w, h=h, x_max=w - size, y_max=h - size))


def channel_patch(image: torch.Tensor, x: int, y: int, size: int = 8) -> list[tuple[str, list[list[int]]]]:
    """The pixel values (0-255) of the ``size`` x ``size`` patch whose top-left corner is column ``x``,
    row ``y``, one channel at a time: ``[(name, rows of ints), ...]`` with the names of
    :func:`channel_views` ("R", "G", "B" or "grey"). ``size`` is at most :data:`MAX_PATCH`; the
    patch must lie inside the image."""
    t = _check_image(image)
    _check_patch(t, x, y, size)
    patch = t[:, int(y):int(y) + int(size), int(x):int(x) + int(size)]
    names = ["grey"] if t.shape[0] == 1 else ["R", "G", "B"]
    return [(n, p.tolist()) for n, p in zip(names, patch)]


def zoom_patch(image: torch.Tensor, x: int, y: int, size: int = 8, scale: int = 16) -> Image.Image:
    """The patch of :func:`channel_patch` enlarged ``scale`` times (nearest neighbour: one
    square per pixel)."""
    t = _check_image(image)
    _check_patch(t, x, y, size)
    scale = max(1, min(int(scale), 64))
    crop = to_pil(t[:, int(y):int(y) + int(size), int(x):int(x) + int(size)])
    return crop.resize((int(size) * scale, int(size) * scale), Image.NEAREST)


def mark_patch(image: torch.Tensor, x: int, y: int, size: int = 8, scale: int = 4) -> Image.Image:
    """The whole image enlarged ``scale`` times with a red frame around the patch."""
    t = _check_image(image)
    _check_patch(t, x, y, size)
    scale = max(1, min(int(scale), 16))
    img = to_pil(t).convert("RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    draw.rectangle([x * scale, y * scale, (x + size) * scale - 1, (y + size) * scale - 1], outline=(255, 0, 0),
                   width=max(1, scale // 2))
    return img
