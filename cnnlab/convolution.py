"""What one layer computes: the convolution explorer's core (issue 24).

Seed 001 works the output-size formula ``(W - F + 2P) / S + 1`` by hand and asks how three colour
channels become one output number; CNN Explainer animates it on one fixed network. This module
explains any single output number of a convolution or a pooling, with PyTorch's own result beside it:

* **the sandbox**: :func:`read_input` (typed numbers, a scikit-learn digit, a bundled photo shrunk to
  12x12), :func:`read_kernel` (typed numbers or a :data:`PRESETS` name), then :func:`conv_sandbox` or
  :func:`pool_sandbox` give a :class:`Sandbox`: its ``output`` is ``torch.nn.functional``'s, its
  ``formulas`` the output-size formula per axis with the numbers, and ``explain(channel, row, col)``
  an :class:`Explanation` (every input value, weight and product of the window, each input channel's
  sum, the bias and the value). An impossible setting raises :class:`~cnnlab.errors.ConfigError`
  saying why;
* :func:`explain_relu` and :func:`explain_softmax` (exponentials of the logits minus their largest);
* **a real layer**: :func:`capture_layer` runs the model once with forward hooks and keeps the
  layer's real input and output (:class:`LayerCapture`); its ``explain(channel, row, col)`` works
  the value out from the layer's own weights (:class:`LayerExplanation`, with the feature map's value
  to compare) and ``receptive_field(row, col)`` gives the box on the input image and how it grew,
  layer by layer (:class:`ReceptiveField`). :func:`explain_layer` does both steps at once;
* :func:`draw_frame` and :func:`write_gif`: the sliding window for slides, one frame per output.

Everything returned is plain data (numbers, lists of numbers, coordinates, sentences) that a page or
a notebook can draw. Explanations are worked out in float64 from the layer's own numbers.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import GifImagePlugin, Image, ImageDraw
from torch import nn

from .activations import activation_points, resolve_layers, split_call
from .data.images import bundled_photos, load_bundled_photo, resize_shorter_then_center_crop
from .errors import ConfigError, LayerNotFoundError
from .fonts import font as text_font
from .i18n import N_, _, either
from .inspect import CarryMode
from .locks import model_lock
from .models import evaluating
from .models._input_checks import conv_output_size, device_of, layer_geometry

__all__ = [
    "MAX_CHANNELS", "MAX_DILATION", "MAX_KERNEL", "MAX_PADDING", "MAX_SIDE", "MAX_STRIDE", "PRESETS", "TOLERANCE",
    "Explanation", "FieldStep", "Geometry", "LayerCapture", "LayerExplanation", "Operation", "ReceptiveField",
    "ReluExplanation", "Sandbox", "SizeFormula", "SoftmaxExplanation", "Window", "capture_layer", "capture_layers",
    "check_position", "conv_sandbox", "digit_input", "draw_frame", "explain_layer", "explain_relu",
    "explain_softmax", "explainable_layers", "parse_matrix", "parse_numbers", "photo_input", "pool_sandbox",
    "read_input", "read_kernel", "size_formula", "write_gif",
]

#: The sandbox's limits (a grid of numbers a class can read): input sides and channels, kernel sides.
MAX_SIDE, MAX_CHANNELS, MAX_KERNEL = 12, 3, 7
MAX_PADDING, MAX_STRIDE, MAX_DILATION = 6, 12, 6
MAX_LOGITS = 1000
#: How far an explained value may be from the feature map's (relative above 1: float32 sums).
TOLERANCE = 1e-4
_MAX_TEXT = 20_000  # characters of a typed matrix: far more than 3 x 12 x 12 numbers need
DIGITS = 1797  # scikit-learn's digits

#: The kernel presets, 3x3: name -> rows.
PRESETS: dict[str, tuple[tuple[float, ...], ...]] = {
    "identity": ((0, 0, 0), (0, 1, 0), (0, 0, 0)),
    "box_blur": ((1 / 9,) * 3,) * 3,
    "sharpen": ((0, -1, 0), (-1, 5, -1), (0, -1, 0)),
    "vertical_edges": ((1, 0, -1), (2, 0, -2), (1, 0, -1)),  # Sobel: bright left, dark right
    "horizontal_edges": ((1, 2, 1), (0, 0, 0), (-1, -2, -1)),  # Sobel: bright top, dark bottom
}
_EXPLAINABLE = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_OPS = {nn.Conv2d: "conv", nn.MaxPool2d: "max", nn.AvgPool2d: "avg",
        nn.AdaptiveAvgPool2d: "adaptive_avg", nn.AdaptiveMaxPool2d: "adaptive_max"}
# what a typed matrix or list is, as messages name it: the key callers pass -> (with its article, alone)
_WHAT = {"input": (N_("the input"), N_("input")), "kernel": (N_("the kernel"), N_("kernel")),
         "logits": (N_("the logits"), N_("logits"))}


def _the(what: str) -> str:
    """``what`` with its article, translated ("the kernel")."""
    return _(_WHAT[what][0]) if what in _WHAT else _("the {what}").format(what=what)


def _alone(what: str) -> str:
    """``what`` without an article, translated ("logits")."""
    return _(_WHAT[what][1]) if what in _WHAT else what


# --- reading numbers -------------------------------------------------------------------------


def _number(token: str, where: str) -> float:
    """One typed number: a decimal (1, -0.5, 2e3) or a fraction (1/9); never nan or infinity."""
    try:
        if "/" in token:
            num, den = token.split("/")
            value = float(num) / float(den)
        else:
            value = float(token)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(_("{where}: {token!r} is not a number (write numbers such as 3, -0.5 or 1/9).").format(
            where=where, token=token)) from None
    if not math.isfinite(value):
        raise ConfigError(_("{where}: {token!r} is not a finite number; use ordinary numbers.").format(
            where=where, token=token))
    return value


def parse_numbers(text: str, what: str = "logits", limit: int = MAX_LOGITS) -> list[float]:
    """A list of numbers separated by commas or spaces ("2.0, 1.0, 0.1"), at most ``limit``; ``what``: what a
    message calls them ("logits", "input", "kernel", or a word of the caller's)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(_("{what} are empty: type numbers separated by commas, e.g. 2, 1, 0.1.").format(
            what=_the(what)))
    if len(text) > _MAX_TEXT:
        raise ConfigError(_("{what} are {count:,} characters long; at most {most:,}.").format(
            what=_the(what), count=len(text), most=_MAX_TEXT))
    tokens = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if len(tokens) > limit:
        raise ConfigError(_("{count:,} {what}: at most {most:,}.").format(count=len(tokens), what=_alone(what),
                                                                          most=limit))
    return [_number(t, _the(what)) for t in tokens]


def _split_rows(channel: str, what: str, c: int, max_side: int) -> list[list[str]]:
    rows = channel.strip().strip(";").split(";")
    if len(rows) > max_side:
        raise ConfigError(_("{what} has {rows} rows; at most {most}.").format(what=_the(what), rows=len(rows),
                                                                               most=max_side))
    cells = [[t for t in re.split(r"[,\s]+", row.strip()) if t] for row in rows]
    for r, row in enumerate(cells):
        if not row:
            raise ConfigError(_("row {row} of channel {channel} of {what} is empty: write numbers, rows separated by "
                                "';'.").format(row=r + 1, channel=c + 1, what=_the(what)))
        if len(row) > max_side:
            raise ConfigError(_("row {row} of {what} has {count} numbers; at most {most}.").format(
                row=r + 1, what=_the(what), count=len(row), most=max_side))
        if len(row) != len(cells[0]):
            raise ConfigError(_("row {row} of channel {channel} of {what} has {count} numbers but row 1 has {first}: "
                                "every row needs the same count.").format(
                row=r + 1, channel=c + 1, what=_the(what), count=len(row), first=len(cells[0])))
    return cells


def parse_matrix(text: str, what: str = "input", max_side: int = MAX_SIDE,
                 max_channels: int = MAX_CHANNELS) -> torch.Tensor:
    """Typed numbers as a ``C x H x W`` float64 tensor: rows separated by ``;``, channels by ``|``
    ("1,2,3;4,5,6|7,8,9;1,2,3" is 2 x 2 x 3). Every count is checked before anything is allocated."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(_("{what} is empty: type numbers, rows separated by ';' and channels by '|', e.g. "
                            "1,2;3,4.").format(what=_the(what)))
    if len(text) > _MAX_TEXT:
        raise ConfigError(_("{what} is {count:,} characters long; at most {most:,}.").format(
            what=_the(what), count=len(text), most=_MAX_TEXT))
    channels = text.strip().strip("|").split("|")
    if len(channels) > max_channels:
        raise ConfigError(_("{what} has {count} channels; at most {most}.").format(
            what=_the(what), count=len(channels), most=max_channels))
    grids = [_split_rows(ch, what, c, max_side) for c, ch in enumerate(channels)]
    for c, grid in enumerate(grids[1:], start=2):
        if (len(grid), len(grid[0])) != (len(grids[0]), len(grids[0][0])):
            raise ConfigError(_("channel {channel} of {what} is {size} but channel 1 is {first}: every channel needs "
                                "the same size.").format(channel=c, what=_the(what), size=f"{len(grid)}x{len(grid[0])}",
                                                         first=f"{len(grids[0])}x{len(grids[0][0])}"))
    where = _the(what)
    values = [[[_number(t, where) for t in row] for row in grid] for grid in grids]
    return torch.tensor(values, dtype=torch.float64)


def _whole(text: str, what: str, lo: int, hi: int) -> int:
    """A whole number typed by a person, within ``lo..hi``."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConfigError(_("{what} must be a whole number, got {text!r}.").format(what=what, text=text)) from None
    if not lo <= value <= hi:
        raise ConfigError(_("{what} must be between {low} and {high}, got {value}.").format(
            what=what, low=lo, high=hi, value=value))
    return value


def digit_input(index: int = 0) -> torch.Tensor:
    """One of scikit-learn's 1,797 handwritten 8x8 digits as a ``1 x 8 x 8`` tensor of 0..16 (bundled:
    no download), the numbers a class can read."""
    # here, not at the top: scikit-learn takes a second to import and only this input needs it
    from sklearn.datasets import load_digits

    if not 0 <= index < DIGITS:
        raise ConfigError(_("digit {index}: scikit-learn has digits 0 to {last}.").format(index=index, last=DIGITS - 1))
    return torch.tensor(load_digits().images[index], dtype=torch.float64).unsqueeze(0)


def photo_input(name: str = "chelsea", size: int = MAX_SIDE) -> torch.Tensor:
    """A photo bundled with scikit-image shrunk to ``size x size`` (its centre square), values 0..255:
    three channels for a colour photo, one for a grey one (camera, coins, moon...)."""
    if not 1 <= size <= MAX_SIDE:
        raise ConfigError(_("the photo's size must be between 1 and {most}, got {size}.").format(most=MAX_SIDE, size=size))
    small = resize_shorter_then_center_crop(load_bundled_photo(name), (size, size))
    pixels = np.asarray(small, dtype=np.float64)
    return torch.from_numpy(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy())


def read_input(spec: str) -> torch.Tensor:
    """The sandbox's input from one string: typed numbers, ``digit`` or ``digit:N``, ``photo`` or
    ``photo:NAME`` (:func:`cnnlab.data.images.bundled_photos`)."""
    text = (spec or "").strip()
    kind, _sep, arg = text.partition(":")
    if kind == "digit":
        return digit_input(_whole(arg or "0", _("the digit's number"), 0, DIGITS - 1))
    if kind == "photo":
        return photo_input(arg or "chelsea")
    if text[:1].isalpha():
        photos = ", ".join(bundled_photos())
        message = _("unknown input {spec!r}: type numbers (1,2;3,4), or give digit, digit:N, photo or photo:NAME "
                    "({photos}).") if photos else \
            _("unknown input {spec!r}: type numbers (1,2;3,4), or give digit, digit:N, photo or photo:NAME "
              "(scikit-image is not installed).")
        raise ConfigError(message.format(spec=spec, photos=photos))
    return parse_matrix(text, "input")


def read_kernel(spec: str) -> torch.Tensor:
    """A kernel as ``C x kh x kw`` float64: a :data:`PRESETS` name (1 channel) or typed numbers."""
    text = (spec or "").strip()
    name = text.lower().replace("-", "_").replace(" ", "_")
    if name in PRESETS:
        return torch.tensor(PRESETS[name], dtype=torch.float64).unsqueeze(0)
    if text[:1].isalpha():
        raise ConfigError(_("unknown kernel {spec!r}: type numbers (1,0,-1;1,0,-1) or a preset: {presets}.").format(
            spec=spec, presets=", ".join(PRESETS)))
    return parse_matrix(text, "kernel", max_side=MAX_KERNEL)


# --- the output-size formula -----------------------------------------------------------------


@dataclass(frozen=True)
class SizeFormula:
    """The output size along one axis, as seed 001 works it by hand, with the numbers filled in."""

    axis: str  # "H" (rows) or "W" (columns): the letter the formula uses for the input size
    size: int
    kernel: int
    padding: int
    stride: int
    dilation: int
    ceil_mode: bool
    result: int  # PyTorch's output size along this axis
    text: str  # "(W - F + 2P) / S + 1 = (7 - 3 + 2x1) / 1 + 1 = 7"
    note: str  # why a rounding or PyTorch's ceil_mode rule changed the count ("" when none did)


def size_formula(axis: str, size: int, kernel: int, padding: int, stride: int, dilation: int = 1,
                 ceil_mode: bool = False) -> SizeFormula:
    """The output size along one axis: the formula, its numbers and PyTorch's result (see
    :class:`SizeFormula`); dilation replaces ``F`` by the effective kernel ``D(F-1)+1``."""
    f_sym = "F" if dilation == 1 else "(D(F-1)+1)"
    f_num = f"{kernel}" if dilation == 1 else f"({dilation}x({kernel}-1)+1)"
    span = size - (dilation * (kernel - 1) + 1) + 2 * padding
    sym, num = f"({axis} - {f_sym} + 2P) / S", f"({size} - {f_num} + 2x{padding}) / {stride}"
    result = conv_output_size(size, kernel, padding, stride, dilation, ceil_mode)
    rounded = -(-span // stride) if ceil_mode else span // stride
    if span % stride == 0:
        text = f"{sym} + 1 = {num} + 1 = {span // stride + 1}"
    else:
        rnd = "ceil" if ceil_mode else "floor"
        text = f"{rnd}({sym}) + 1 = {rnd}({num}) + 1 = {rnd}({span / stride:.4g}) + 1 = {rounded + 1}"
    note = ""
    if span % stride and not ceil_mode and span >= 0:
        text_note = _("floor: the last {count} row(s) of the padded input are never under the window") \
            if axis == "H" else _("floor: the last {count} column(s) of the padded input are never under the window")
        note = text_note.format(count=span % stride)
    if result != rounded + 1:
        text += _(", less the last window = {result}").format(result=result)
        note = _("ceil_mode: the last window would start in the padding, so PyTorch drops it")
    return SizeFormula(axis, size, kernel, padding, stride, dilation, ceil_mode, result, text, note)


@dataclass(frozen=True)
class Geometry:
    """How a window slides: kernel, stride, padding and dilation as (rows, columns); pooling's ceil_mode."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False

    def formulas(self, size: tuple[int, int]) -> list[SizeFormula]:
        """The output-size formula for the rows (H) and the columns (W) of an input of ``size``."""
        return [size_formula(axis, size[a], self.kernel[a], self.padding[a], self.stride[a], self.dilation[a],
                             self.ceil_mode) for a, axis in enumerate("HW")]

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        first, second = self.formulas(size)
        return first.result, second.result

    def taps(self, index: int, size: int, axis: int) -> tuple[list[int], list[str]]:
        """The padded-input coordinates the window of output ``index`` reads along ``axis``, and what
        each one is: "input", "padding", or "outside" (past the padding: a ceil_mode window)."""
        pad = self.padding[axis]
        coords = [index * self.stride[axis] + i * self.dilation[axis] for i in range(self.kernel[axis])]
        return coords, [_cell_kind(c, size, pad) for c in coords]


def _cell_kind(coord: int, size: int, pad: int) -> str:
    if pad <= coord < pad + size:
        return "input"
    return "padding" if 0 <= coord < size + 2 * pad else "outside"


def _bin_taps(index: int, size: int, out: int) -> tuple[list[int], list[str]]:
    """Adaptive pooling's bin ``index`` of ``out`` over ``size`` cells: floor(i*size/out) to ceil((i+1)*size/out)."""
    start, end = index * size // out, -(-(index + 1) * size // out)
    return list(range(start, end)), ["input"] * (end - start)


def _module_geometry(module: nn.Module) -> Geometry:
    """A convolution's or pooling's :class:`Geometry`; padding "same" (odd effective kernels) and "valid"."""
    k, s, p, d, ceil = layer_geometry(module)
    if p is None:  # Conv2d(padding="same" | "valid")
        if module.padding == "valid":
            p = (0, 0)
        elif all(d[a] * (k[a] - 1) % 2 == 0 for a in (0, 1)):
            p = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        else:
            raise ConfigError(_("padding='same' with an even kernel pads one side more than the other; only even "
                                "padding is explained."))
    return Geometry(k, s, p, d, ceil)


# --- what one output is made of --------------------------------------------------------------


@dataclass
class Window:
    """What the window holds on one input channel."""

    channel: int  # the input channel
    values: list[list[float]]  # the number under each tap: padding is 0 (convolution, average) or -inf (max)
    weights: list[list[float]] | None  # the kernel's weights on this channel (convolution only)
    products: list[list[float]] | None  # value x weight (convolution only)
    total: float  # convolution: the sum of the products; average: the sum of the values; max: the largest


@dataclass
class ReluExplanation:
    value: float
    result: float
    line: str  # "ReLU(-3) = max(0, -3) = 0"


@dataclass
class Explanation:
    """How one output number is computed: ``windows`` holds each input channel the window reads."""

    op: str  # "conv", "max", "avg", "adaptive_avg" or "adaptive_max"
    channel: int  # the output channel
    row: int
    col: int
    rows: list[int]  # padded-input rows the window reads (an input row is this minus padding[0])
    cols: list[int]
    padding: tuple[int, int]
    cells: list[list[str]]  # each tap: "input", "padding" or "outside"
    windows: list[Window]
    total: float  # convolution: the sum over input channels; average: the sum; max: the largest value
    bias: float = 0.0
    divisor: int | None = None  # average: what the sum is divided by
    winner: tuple[int, int] | None = None  # max: (i, j) of the winning tap in the window
    value: float = 0.0
    group: int = 0  # convolution: the group of the output channel, of ``groups``
    groups: int = 1
    count_include_pad: bool = True
    relu: ReluExplanation | None = None  # when a ReLU follows (the sandbox's option)

    @property
    def result(self) -> float:
        """The final number: the value, after the ReLU when there is one."""
        return self.relu.result if self.relu else self.value

    @property
    def products(self) -> list[list[list[float]]]:
        """Convolution: every product, per input channel (``channel x kh x kw``)."""
        return [w.products or [] for w in self.windows]

    def lines(self, max_channels: int = 8) -> list[str]:
        """The computation in words and numbers, one line each (``max_channels`` channels in full)."""
        body = _conv_lines(self, max_channels) if self.op == "conv" else _pool_lines(self)
        return [_where(self), *body, *([self.relu.line] if self.relu else [])]


def _num(v: float) -> str:
    """A number as people write it: whole numbers whole, others to 6 significant digits."""
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def _signed(v: float) -> str:
    return f"({_num(v)})" if v < 0 else _num(v)


def _tap(value: float, kind: str) -> str:
    if kind == "input":
        return _signed(value)
    return (_("{value}(pad)") if kind == "padding" else _("{value}(out)")).format(value=_num(value))


# the first line of an explanation, per operation (other: adaptive pooling's bins) and padded input or not
_WHERE = {
    ("conv", False): N_("output channel {channel}, row {row}, col {col}: the {size} window at rows {top}..{bottom}, "
                        "cols {left}..{right} of the input"),
    ("conv", True): N_("output channel {channel}, row {row}, col {col}: the {size} window at rows {top}..{bottom}, "
                       "cols {left}..{right} of the padded input (padding {padding})"),
    ("max", False): N_("output channel {channel}, row {row}, col {col}: the largest of the {size} window at rows "
                       "{top}..{bottom}, cols {left}..{right} of the input"),
    ("max", True): N_("output channel {channel}, row {row}, col {col}: the largest of the {size} window at rows "
                      "{top}..{bottom}, cols {left}..{right} of the padded input (padding {padding})"),
    ("avg", False): N_("output channel {channel}, row {row}, col {col}: the average of the {size} window at rows "
                       "{top}..{bottom}, cols {left}..{right} of the input"),
    ("avg", True): N_("output channel {channel}, row {row}, col {col}: the average of the {size} window at rows "
                      "{top}..{bottom}, cols {left}..{right} of the padded input (padding {padding})"),
    ("bin", False): N_("output channel {channel}, row {row}, col {col}: the bin of the {size} window at rows "
                       "{top}..{bottom}, cols {left}..{right} of the input"),
    ("bin", True): N_("output channel {channel}, row {row}, col {col}: the bin of the {size} window at rows "
                      "{top}..{bottom}, cols {left}..{right} of the padded input (padding {padding})"),
}


def _where(e: Explanation) -> str:
    op = e.op if e.op in ("conv", "max", "avg") else "bin"
    return _(_WHERE[op, any(e.padding)]).format(
        channel=e.channel, row=e.row, col=e.col, size=f"{len(e.rows)}x{len(e.cols)}", top=e.rows[0],
        bottom=e.rows[-1], left=e.cols[0], right=e.cols[-1], padding=f"{e.padding[0]}x{e.padding[1]}")


def _conv_lines(e: Explanation, max_channels: int) -> list[str]:
    lines = []
    if e.groups > 1:
        lines.append(_("group {group} of {groups}: this filter sees input channels {first}..{last} only").format(
            group=e.group, groups=e.groups, first=e.windows[0].channel, last=e.windows[-1].channel))
    for w in e.windows[:max_channels]:
        terms = [f"{_tap(v, k)}x{_signed(wt)}" for vs, ws, ks in zip(w.values, w.weights or [], e.cells)
                 for v, wt, k in zip(vs, ws, ks)]
        lines.append(_channel_line(w.channel, terms, w.total))
    if len(e.windows) > max_channels:
        rest = e.windows[max_channels:]
        lines.append(_("... {count} more input channels, their sums adding up to {total}").format(
            count=len(rest), total=_num(sum(w.total for w in rest))))
    sums = " + ".join(_signed(w.total) for w in e.windows) if len(e.windows) <= max_channels else "..."
    lines.append(_("sum over {count} input channel(s): {sums} = {total}").format(
        count=len(e.windows), sums=sums, total=_num(e.total)))
    lines.append(_("plus the bias: {total} + {bias} = {value}").format(
        total=_num(e.total), bias=_signed(e.bias), value=_num(e.value)))
    return lines


def _channel_line(channel: int, terms: list[str], total: float) -> str:
    return _("input channel {channel}: {terms} = {total}").format(channel=channel, terms=" + ".join(terms),
                                                                  total=_num(total))


def _pool_lines(e: Explanation) -> list[str]:
    taps = [_tap(v, k) for vs, ks in zip(e.windows[0].values, e.cells) for v, k in zip(vs, ks)]
    if e.op.endswith("max"):
        i, j = e.winner or (0, 0)
        return [_("input channel {channel}: max({taps}) = {value}, at row {row}, col {col} (padding never wins: it "
                  "counts as -inf)").format(channel=e.windows[0].channel, taps=", ".join(taps), value=_num(e.value),
                                            row=e.rows[i], col=e.cols[j])]
    if e.op == "adaptive_avg":
        why = _("the cells of the bin")
    elif e.count_include_pad:
        why = _("the cells inside the padded input, padding counted")
    else:
        why = _("the input cells only (count_include_pad=False)")
    return [_channel_line(e.windows[0].channel, taps, e.total),
            _("divided by {divisor} ({why}): {total} / {divisor} = {value}").format(
                divisor=e.divisor, why=why, total=_num(e.total), value=_num(e.value))]


def _gather(x: torch.Tensor, rows: list[int], cols: list[int], padding: tuple[int, int], fill: float) -> torch.Tensor:
    """``x`` (C x H x W) under the taps (padded coordinates), as float64; ``fill`` where no input is."""
    height, width = x.shape[-2:]
    r = torch.tensor(rows) - padding[0]
    c = torch.tensor(cols) - padding[1]
    patch = x[:, r.clamp(0, height - 1)][:, :, c.clamp(0, width - 1)].detach().to("cpu", torch.float64)
    inside = ((r >= 0) & (r < height))[:, None] & ((c >= 0) & (c < width))[None, :]
    return torch.where(inside, patch, torch.tensor(fill, dtype=torch.float64))


def _cells(row_kinds: list[str], col_kinds: list[str]) -> list[list[str]]:
    order = ("input", "padding", "outside")
    return [[max(a, b, key=order.index) for b in col_kinds] for a in row_kinds]


# --- one operation: a sandbox's settings or a real layer -------------------------------------


@dataclass
class Operation:
    """One convolution or pooling as PyTorch runs it, from the sandbox's settings or a real layer."""

    op: str  # "conv", "max", "avg", "adaptive_avg", "adaptive_max"
    geometry: Geometry | None  # None: adaptive pooling
    weight: torch.Tensor | None = None  # convolution: out x in/groups x kh x kw
    bias: torch.Tensor | None = None
    groups: int = 1
    count_include_pad: bool = True
    divisor_override: int | None = None
    bins: tuple[int | None, int | None] | None = None  # adaptive pooling's output size (None: the input's)

    @classmethod
    def of_module(cls, module: nn.Module) -> "Operation":
        """The operation a Conv2d, MaxPool2d, AvgPool2d or adaptive pooling layer performs."""
        op = _OPS[type(module)] if type(module) in _OPS else _op_of_subclass(module)
        if op.startswith("adaptive"):
            size = module.output_size
            return cls(op, None, bins=tuple(size) if isinstance(size, (tuple, list)) else (size, size))
        geometry = _module_geometry(module)
        if op == "conv":
            if module.padding_mode != "zeros":
                raise ConfigError(_("this convolution pads with '{mode}', not zeros; only zero padding is "
                                    "explained.").format(mode=module.padding_mode))
            return cls(op, geometry, module.weight.detach(),
                       None if module.bias is None else module.bias.detach(), module.groups)
        if op == "avg":
            return cls(op, geometry, count_include_pad=module.count_include_pad,
                       divisor_override=module.divisor_override)
        return cls(op, geometry)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        if self.geometry is None:
            bins = self.bins or (None, None)
            return (size[0] if bins[0] is None else bins[0], size[1] if bins[1] is None else bins[1])
        return self.geometry.output_size(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """PyTorch's own result on a ``C x H x W`` input: the truth every explanation is checked against."""
        x = x.unsqueeze(0)
        g = self.geometry
        if self.op == "conv":
            return F.conv2d(x, self.weight, self.bias, g.stride, g.padding, g.dilation, self.groups)[0]
        if self.op == "max":
            return F.max_pool2d(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)[0]
        if self.op == "avg":
            return F.avg_pool2d(x, g.kernel, g.stride, g.padding, g.ceil_mode, self.count_include_pad,
                                self.divisor_override)[0]
        pool = F.adaptive_avg_pool2d if self.op == "adaptive_avg" else F.adaptive_max_pool2d
        return pool(x, self.output_size(tuple(x.shape[-2:])))[0]

    def explain(self, x: torch.Tensor, channel: int, row: int, col: int) -> Explanation:
        """How output ``(channel, row, col)`` comes from ``x`` (``C x H x W``); positions are not checked here."""
        height, width = x.shape[-2:]
        if self.geometry is None:
            out = self.output_size((height, width))
            (rows, rk), (cols, ck) = _bin_taps(row, height, out[0]), _bin_taps(col, width, out[1])
            padding = (0, 0)
        else:
            (rows, rk), (cols, ck) = self.geometry.taps(row, height, 0), self.geometry.taps(col, width, 1)
            padding = self.geometry.padding
        base = Explanation(self.op, channel, row, col, rows, cols, padding, _cells(rk, ck), [], 0.0)
        if self.op == "conv":
            return self._conv(x, base)
        return self._pool(x, base)

    def _conv(self, x: torch.Tensor, e: Explanation) -> Explanation:
        per_group = self.weight.shape[0] // self.groups
        in_group = self.weight.shape[1]
        e.group, e.groups = e.channel // per_group, self.groups
        first = e.group * in_group
        patch = _gather(x[first:first + in_group], e.rows, e.cols, e.padding, 0.0)
        weight = self.weight[e.channel].detach().to("cpu", torch.float64)
        products = patch * weight
        sums = products.sum(dim=(1, 2))
        e.windows = [Window(first + i, patch[i].tolist(), weight[i].tolist(), products[i].tolist(), float(sums[i]))
                     for i in range(in_group)]
        e.total = float(sums.sum())
        e.bias = 0.0 if self.bias is None else float(self.bias[e.channel])
        e.value = e.total + e.bias
        return e

    def _pool(self, x: torch.Tensor, e: Explanation) -> Explanation:
        is_max = self.op.endswith("max")
        patch = _gather(x[e.channel:e.channel + 1], e.rows, e.cols, e.padding, -math.inf if is_max else 0.0)[0]
        if is_max:
            e.winner = divmod(int(patch.argmax()), patch.shape[1])  # the first largest, as PyTorch picks it
            e.total = e.value = float(patch.max())
        else:
            e.total = float(patch.sum())
            e.divisor = self._divisor(e.cells)
            e.count_include_pad = self.count_include_pad
            e.value = e.total / e.divisor
        e.windows = [Window(e.channel, patch.tolist(), None, None, e.total)]
        return e

    def _divisor(self, cells: list[list[str]]) -> int:
        """PyTorch's divisor: the override, else the taps inside the padded input (count_include_pad) or
        inside the input only."""
        if self.divisor_override:
            return self.divisor_override
        counted = ("input", "padding") if self.count_include_pad and self.op == "avg" else ("input",)
        return sum(kind in counted for row in cells for kind in row)


def _op_of_subclass(module: nn.Module) -> str:
    for kind, op in _OPS.items():
        if isinstance(module, kind):
            return op
    raise ConfigError(_("a {kind} is not a convolution or pooling layer.").format(kind=type(module).__name__))


# --- the sandbox -----------------------------------------------------------------------------


@dataclass
class Sandbox:
    """A small input and one operation on it: ``output`` (``K x OH x OW``) is PyTorch's result."""

    input: torch.Tensor  # C x H x W, float64
    operation: Operation
    relu: bool = False  # a ReLU after the operation (the output and each explanation include it)
    output: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        out = self.operation.forward(self.input)
        self.output = torch.relu(out) if self.relu else out

    @property
    def op(self) -> str:
        return self.operation.op

    @property
    def padding(self) -> tuple[int, int]:
        return self.operation.geometry.padding if self.operation.geometry else (0, 0)

    @property
    def output_size(self) -> tuple[int, int]:
        return tuple(self.output.shape[-2:])  # type: ignore[return-value]

    def formulas(self) -> list[SizeFormula]:
        """The output-size formula per axis (rows, then columns) with this sandbox's numbers."""
        return self.operation.geometry.formulas(tuple(self.input.shape[-2:]))  # type: ignore[union-attr]

    def positions(self) -> list[tuple[int, int]]:
        """Every output position, row by row: the order of the animation."""
        rows, cols = self.output_size
        return [(r, c) for r in range(rows) for c in range(cols)]

    def padded_input(self) -> list[list[list[float]]]:
        """The input with its padding, as the window sees it (0, or -inf around a max pooling)."""
        ph, pw = self.padding
        fill = -math.inf if self.op == "max" else 0.0
        return F.pad(self.input, (pw, pw, ph, ph), value=fill).tolist()

    def explain(self, channel: int = 0, row: int = 0, col: int = 0) -> Explanation:
        """How output ``(channel, row, col)`` is computed (:class:`Explanation`); a position outside the
        output is a :class:`ConfigError` saying which positions exist."""
        check_position(tuple(self.output.shape), channel, row, col)
        e = self.operation.explain(self.input, channel, row, col)
        if self.relu:
            e.relu = explain_relu(e.value)
        return e


def check_position(shape: tuple[int, ...], channel: int, row: int, col: int) -> None:
    """A clear error for an output channel or position that is not in an output of ``shape`` (K x OH x OW)."""
    k, rows, cols = shape
    if not 0 <= channel < k:
        raise ConfigError(_("output channel {channel} does not exist: the output has channels 0 to {last}.").format(
            channel=channel, last=k - 1))
    if not (0 <= row < rows and 0 <= col < cols):
        raise ConfigError(_("position ({row}, {col}) is outside the {rows}x{cols} output: rows go from 0 to "
                            "{last_row} and columns from 0 to {last_col}.").format(
            row=row, col=col, rows=rows, cols=cols, last_row=rows - 1, last_col=cols - 1))


def _as_tensor(value: torch.Tensor | str | Sequence, what: str, read) -> torch.Tensor:
    """A tensor given directly, as typed text, or as nested lists (2-D lists are one channel)."""
    if isinstance(value, str):
        return read(value)
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.numel() == 0:
        raise ConfigError(_("{what} must be rows of numbers (one or more channels).").format(what=_the(what)))
    return t


def _check_sides(x: torch.Tensor, kernel: tuple[int, int]) -> None:
    c, h, w = x.shape
    if h > MAX_SIDE or w > MAX_SIDE or c > MAX_CHANNELS:
        raise ConfigError(_("the input is {size}; the sandbox takes at most {channels} channels of {side}.").format(
            size=f"{c}x{h}x{w}", channels=MAX_CHANNELS, side=f"{MAX_SIDE}x{MAX_SIDE}"))
    if max(kernel) > MAX_KERNEL or min(kernel) < 1:
        raise ConfigError(_("the kernel is {size}; it must be 1x1 to {most}.").format(
            size=f"{kernel[0]}x{kernel[1]}", most=f"{MAX_KERNEL}x{MAX_KERNEL}"))


def _check_steps(stride: int, padding: int, dilation: int) -> None:
    if stride < 1:
        raise ConfigError(_("stride {stride}: the window must move at least one cell each step; use 1 or "
                            "more.").format(stride=stride))
    if stride > MAX_STRIDE:
        raise ConfigError(_("stride {stride}: at most {most} in the sandbox.").format(stride=stride, most=MAX_STRIDE))
    if not 0 <= padding <= MAX_PADDING:
        raise ConfigError(_("padding {padding}: it must be between 0 and {most} rings of zeros.").format(
            padding=padding, most=MAX_PADDING))
    if not 1 <= dilation <= MAX_DILATION:
        raise ConfigError(_("dilation {dilation}: it must be between 1 (taps side by side) and {most}.").format(
            dilation=dilation, most=MAX_DILATION))


def _check_fits(x: torch.Tensor, geometry: Geometry) -> None:
    """The window (its effective size with dilation) must fit in the padded input along both axes."""
    for a in (0, 1):
        size, pad, k, d = x.shape[1 + a], geometry.padding[a], geometry.kernel[a], geometry.dilation[a]
        eff = d * (k - 1) + 1
        if eff > size + 2 * pad:
            text = _("the kernel spans {span} {axis} (D(F-1)+1 = {dilation}x({kernel}-1)+1 with dilation {dilation}) "
                     "but the padded input has only {size} + 2x{pad} = {padded}: add padding or use a smaller "
                     "kernel.") if d > 1 else \
                _("the kernel spans {span} {axis} but the padded input has only {size} + 2x{pad} = {padded}: add "
                  "padding or use a smaller kernel.")
            raise ConfigError(text.format(span=eff, axis=_("rows") if a == 0 else _("columns"), dilation=d, kernel=k,
                                          size=size, pad=pad, padded=size + 2 * pad))


def _filters(kernel: torch.Tensor, channels: int, groups: int) -> torch.Tensor:
    """One filter per group (``groups x channels/groups x kh x kw``): a one-channel kernel is used on
    every input channel; a kernel with one channel per input channel gives each group its own share."""
    if groups < 1 or channels % groups:
        divisors = [g for g in range(1, channels + 1) if channels % g == 0]
        raise ConfigError(_("groups={groups} does not divide the {channels} input channel(s): use {choices}.").format(
            groups=groups, channels=channels, choices=either(divisors)))
    if kernel.shape[0] not in (1, channels):
        raise ConfigError(_("the kernel has {count} channels but the input has {channels}: give 1 channel (used on "
                            "every input channel) or {channels}.").format(count=kernel.shape[0], channels=channels))
    full = kernel.expand(channels, -1, -1)
    return full.reshape(groups, channels // groups, *kernel.shape[1:]).clone()


def conv_sandbox(x: torch.Tensor | str | Sequence, kernel: torch.Tensor | str | Sequence, bias: float = 0.0,
                 stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1,
                 relu: bool = False) -> Sandbox:
    """A convolution of a small input (:func:`read_input` text, a tensor or lists) with one kernel
    (:func:`read_kernel` text or numbers): one output channel per group, each with ``bias``. Every
    impossible setting is a :class:`ConfigError` that says why."""
    x = _as_tensor(x, "input", read_input)
    kernel = _as_tensor(kernel, "kernel", read_kernel)
    _check_sides(x, tuple(kernel.shape[1:]))
    _check_steps(stride, padding, dilation)
    if not math.isfinite(bias):
        raise ConfigError(_("the bias must be a finite number, got {bias}.").format(bias=bias))
    weight = _filters(kernel, x.shape[0], groups)
    geometry = Geometry(tuple(kernel.shape[1:]), (stride, stride), (padding, padding), (dilation, dilation))
    _check_fits(x, geometry)
    op = Operation("conv", geometry, weight, torch.full((groups,), float(bias), dtype=torch.float64), groups)
    return Sandbox(x, op, relu)


def pool_sandbox(x: torch.Tensor | str | Sequence, kind: str = "max", kernel: int = 2, stride: int | None = None,
                 padding: int = 0, dilation: int = 1, ceil_mode: bool = False, count_include_pad: bool = True,
                 relu: bool = False) -> Sandbox:
    """Max or average pooling of a small input with a ``kernel x kernel`` window (stride: the window's
    size unless given, as in PyTorch); each channel is pooled on its own."""
    if kind not in ("max", "avg"):
        raise ConfigError(_("pooling {kind!r}: choose max or avg.").format(kind=kind))
    x = _as_tensor(x, "input", read_input)
    stride = kernel if stride is None else stride
    _check_sides(x, (kernel, kernel))
    _check_steps(stride, padding, dilation)
    if padding > kernel // 2:
        raise ConfigError(_("padding {padding} with a {window} window: PyTorch allows at most half the window "
                            "({kernel} // 2 = {half}).").format(padding=padding, window=f"{kernel}x{kernel}",
                                                                kernel=kernel, half=kernel // 2))
    if kind == "avg" and dilation != 1:
        raise ConfigError(_("average pooling has no dilation in PyTorch: use dilation 1, or max pooling."))
    geometry = Geometry((kernel, kernel), (stride, stride), (padding, padding), (dilation, dilation), ceil_mode)
    _check_fits(x, geometry)
    return Sandbox(x, Operation(kind, geometry, count_include_pad=count_include_pad), relu)


# --- ReLU and softmax ------------------------------------------------------------------------


def explain_relu(value: float) -> ReluExplanation:
    """ReLU of one number, in words: ``ReLU(-3) = max(0, -3) = 0``."""
    result = max(0.0, float(value))
    return ReluExplanation(float(value), result, f"ReLU({_num(value)}) = max(0, {_num(value)}) = {_num(result)}")


@dataclass
class SoftmaxExplanation:
    """Softmax worked out: exponentials of the logits minus the largest, their sum, each share."""

    logits: list[float]
    largest: float
    shifted: list[float]  # logit - largest: at most 0, so no exponential overflows
    exponentials: list[float]
    total: float
    probabilities: list[float]

    def lines(self) -> list[str]:
        exps = " + ".join(_num(e) for e in self.exponentials)
        return [
            _("subtract the largest logit, {largest}, from each (the probabilities do not change, and no exponential "
              "can overflow): {shifted}").format(largest=_num(self.largest),
                                                 shifted=", ".join(_num(s) for s in self.shifted)),
            _("exponentials: {terms}").format(terms=", ".join(f"exp({_num(s)}) = {_num(e)}"
                                                              for s, e in zip(self.shifted, self.exponentials))),
            _("their sum: {terms} = {total}").format(terms=exps, total=_num(self.total)),
            _("probabilities: {terms}").format(terms=", ".join(f"{_num(e)} / {_num(self.total)} = {p:.4f}"
                                                               for e, p in zip(self.exponentials, self.probabilities))),
        ]


def explain_softmax(logits: Sequence[float] | str) -> SoftmaxExplanation:
    """Softmax of a logit vector (typed "2, 1, 0.1" or numbers), numerically stable."""
    values = parse_numbers(logits) if isinstance(logits, str) else [float(v) for v in logits]
    if not values or len(values) > MAX_LOGITS or not all(math.isfinite(v) for v in values):
        raise ConfigError(_("softmax needs 1 to {most} finite logits.").format(most=MAX_LOGITS))
    largest = max(values)
    shifted = [v - largest for v in values]
    exps = [math.exp(s) for s in shifted]
    total = math.fsum(exps)
    return SoftmaxExplanation(values, largest, shifted, exps, total, [e / total for e in exps])


# --- receptive fields ------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldStep:
    """How one convolution or pooling grows the receptive field, per axis (rows, columns):
    ``size_out = size_in + (k-1) x d x jump_in``, ``jump_out = jump_in x s``, ``start_out = start_in - p x jump_in``."""

    layer: str
    kind: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    jump_in: tuple[int, int]
    jump_out: tuple[int, int]
    start_in: tuple[int, int]
    start_out: tuple[int, int]

    @property
    def square(self) -> bool:
        """The same numbers along both axes (one line of arithmetic says it all)."""
        return all(v[0] == v[1] for v in (self.kernel, self.stride, self.padding, self.dilation, self.size_in,
                                          self.jump_in, self.start_in))

    def text(self, axis: int = 0) -> str:
        """The layer and its arithmetic along one axis (0: rows, 1: columns)."""
        s, p, d = self.stride[axis], self.padding[axis], self.dilation[axis]
        text = _("{layer} ({kind} {kernel}, stride {stride}, padding {padding}, dilation {dilation}): {arithmetic}") \
            if d > 1 else _("{layer} ({kind} {kernel}, stride {stride}, padding {padding}): {arithmetic}")
        return text.format(layer=self.layer, kind=self.kind, kernel="x".join(map(str, self.kernel)), stride=s,
                           padding=p, dilation=d, arithmetic=self.arithmetic(axis))

    def arithmetic(self, axis: int = 0) -> str:
        """How size, jump and start grow along one axis (0: rows, 1: columns)."""
        a = axis
        k, s, p, d = self.kernel[a], self.stride[a], self.padding[a], self.dilation[a]
        return _("size {size_in} + ({kernel}-1)x{dilation}x{jump_in} = {size_out}, jump {jump_in}x{stride} = "
                 "{jump_out}, start {start_in} - {padding}x{jump_in} = {start_out}").format(
            size_in=self.size_in[a], kernel=k, dilation=d, jump_in=self.jump_in[a], size_out=self.size_out[a],
            stride=s, jump_out=self.jump_out[a], start_in=self.start_in[a], padding=p, start_out=self.start_out[a])


@dataclass(frozen=True)
class _Field:
    """A feature map's receptive-field geometry: output i sees input pixels start + i x jump, size of them."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]
    steps: tuple[FieldStep, ...] = ()

    def grow(self, layer: str, module: nn.Module, g: Geometry) -> "_Field":
        size = tuple(self.size[a] + (g.kernel[a] - 1) * g.dilation[a] * self.jump[a] for a in (0, 1))
        jump = tuple(self.jump[a] * g.stride[a] for a in (0, 1))
        start = tuple(self.start[a] - g.padding[a] * self.jump[a] for a in (0, 1))
        step = FieldStep(layer, type(module).__name__, g.kernel, g.stride, g.padding, g.dilation,
                         self.size, size, self.jump, jump, self.start, start)  # type: ignore[arg-type]
        return _Field(size, jump, start, self.steps + (step,))  # type: ignore[arg-type]


_IMAGE = _Field((1, 1), (1, 1), (0, 0))
_GLOBAL = "global"  # after flattening or global pooling: every output sees the whole input
_FIELD_ATTR = "_cnnlab_field"


def _merge(fields: list) -> Any:
    """Branches that meet (a residual addition, an Inception concatenation): the union of their fields,
    with the arithmetic of the widest."""
    if any(f == _GLOBAL for f in fields):
        return _GLOBAL
    start = tuple(min(f.start[a] for f in fields) for a in (0, 1))
    end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in (0, 1))
    jump = tuple(max(f.jump[a] for f in fields) for a in (0, 1))
    widest = max(fields, key=lambda f: (f.size[0] + f.size[1], len(f.steps)))
    return _Field(tuple(end[a] - start[a] for a in (0, 1)), jump, start, widest.steps)  # type: ignore[arg-type]


def _field_of(t: Any) -> Any:
    return getattr(t, _FIELD_ATTR, None) if isinstance(t, torch.Tensor) else None


def _set_field(t: torch.Tensor, value: Any) -> None:
    try:
        setattr(t, _FIELD_ATTR, value)
    except (AttributeError, RuntimeError):  # a tensor that takes no attributes keeps none
        pass


def _grow_hook(name: str):
    def hook(module: nn.Module, inputs, output) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        seen = _field_of(inputs[0]) if inputs else None
        if isinstance(seen, _Field) and not isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            _set_field(out, seen.grow(name, module, _module_geometry(module)))
        elif seen is not None:
            _set_field(out, _GLOBAL)
    return hook


@dataclass
class ReceptiveField:
    """The input pixels one output position depends on, and how the field grew layer by layer."""

    row: int
    col: int
    image_size: tuple[int, int]
    whole_input: bool  # after flattening or global pooling: the whole image
    top: int  # the box, clipped to the image (inclusive)
    left: int
    bottom: int
    right: int
    unclipped: tuple[int, int, int, int]  # top, left, bottom, right before clipping (padding reaches outside)
    size: tuple[int, int]  # rows x columns: the Architectures table's receptive-field column
    jump: tuple[int, int]
    steps: list[FieldStep]

    def lines(self) -> list[str]:
        h, w = self.image_size
        if self.whole_input:
            return [_("output ({row}, {col}) sees the whole {size} input (after flattening or global pooling)").format(
                row=self.row, col=self.col, size=f"{h}x{w}")]
        head = _("output ({row}, {col}) sees rows {top}..{bottom}, cols {left}..{right} of the {size} input (a field "
                 "of {field}, jump {jump})").format(
            row=self.row, col=self.col, top=self.top, bottom=self.bottom, left=self.left, right=self.right,
            size=f"{h}x{w}", field=f"{self.size[0]}x{self.size[1]}", jump=f"{self.jump[0]}x{self.jump[1]}")
        return [head, *("  " + (s.text(0) if s.square else _("{step}; columns: {arithmetic}").format(
            step=s.text(0), arithmetic=s.arithmetic(1))) for s in self.steps)]


def _box(f: _Field, row: int, col: int, last: tuple[list[int], list[int]] | None,
         image: tuple[int, int]) -> ReceptiveField:
    """The box of output (row, col) on a map of field ``f``; ``last`` are adaptive pooling's bin rows and cols."""
    if last is None:
        top, left = f.start[0] + row * f.jump[0], f.start[1] + col * f.jump[1]
        bottom, right = top + f.size[0] - 1, left + f.size[1] - 1
    else:
        rows, cols = last
        top, left = f.start[0] + rows[0] * f.jump[0], f.start[1] + cols[0] * f.jump[1]
        bottom = f.start[0] + rows[-1] * f.jump[0] + f.size[0] - 1
        right = f.start[1] + cols[-1] * f.jump[1] + f.size[1] - 1
    return ReceptiveField(row, col, image, False, max(top, 0), max(left, 0), min(bottom, image[0] - 1),
                          min(right, image[1] - 1), (top, left, bottom, right),
                          (bottom - top + 1, right - left + 1), f.jump, list(f.steps))


# --- a real layer ----------------------------------------------------------------------------


def explainable_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[str]:
    """Names of the model's convolution and pooling layers; with an input, in the order they run and
    with ``#k`` for a layer called several times (as Look inside names them)."""
    modules = dict(model.named_modules())
    if x is None:
        return [n for n, m in modules.items() if n and isinstance(m, _EXPLAINABLE)]
    return [name for name, _, _ in activation_points(model, x) if isinstance(modules[name.split("#")[0]], _EXPLAINABLE)]


@dataclass
class LayerExplanation:
    """One output of a real layer worked out from its weights, beside the value its feature map holds."""

    layer: str
    explanation: Explanation
    feature_map_value: float  # the layer's real output at that position (what Look inside shows)
    receptive_field: ReceptiveField

    @property
    def difference(self) -> float:
        return abs(self.explanation.value - self.feature_map_value)

    @property
    def agrees(self) -> bool:
        """Within :data:`TOLERANCE` (relative for values above 1: the layer sums in float32)."""
        return self.difference <= TOLERANCE * max(1.0, abs(self.feature_map_value))


@dataclass
class LayerCapture:
    """A layer's real input and output for one image, from one forward pass with hooks."""

    layer: str
    module: nn.Module
    input: torch.Tensor  # C x H x W, as the layer received it
    output: torch.Tensor  # K x OH x OW, as the layer returned it
    image_size: tuple[int, int]
    field: Any  # the receptive-field geometry of the layer's input (_Field, "global" or None)

    @property
    def operation(self) -> Operation:
        return Operation.of_module(self.module)

    def describe(self) -> str:
        """The layer in one line, e.g. ``Conv2d 6 -> 16, 5x5, stride 1, padding 0``."""
        m = self.module
        if isinstance(m, nn.Conv2d):
            text = _("Conv2d {inputs} -> {outputs}, {kernel}, stride {stride}, padding {padding}, groups {groups}") \
                if m.groups > 1 else _("Conv2d {inputs} -> {outputs}, {kernel}, stride {stride}, padding {padding}")
            return text.format(inputs=m.in_channels, outputs=m.out_channels,
                               kernel=f"{m.kernel_size[0]}x{m.kernel_size[1]}", stride=m.stride[0],
                               padding=m.padding if isinstance(m.padding, str) else m.padding[0], groups=m.groups)
        return repr(m)

    def formulas(self) -> list[SizeFormula]:
        """The output-size formula per axis with this layer's numbers (none for adaptive pooling)."""
        geometry = self.operation.geometry
        return geometry.formulas(tuple(self.input.shape[-2:])) if geometry else []

    def group_channels(self, channel: int) -> list[int]:
        """The input channels output ``channel`` sees: its group's share (all of them without groups)."""
        if not isinstance(self.module, nn.Conv2d):
            return [channel]
        m = self.module
        per_group, in_group = m.out_channels // m.groups, m.in_channels // m.groups
        first = channel // per_group * in_group
        return list(range(first, first + in_group))

    def explain(self, channel: int, row: int, col: int) -> LayerExplanation:
        """Output ``(channel, row, col)`` worked out from the layer's weights and its captured input."""
        check_position(tuple(self.output.shape), channel, row, col)
        e = self.operation.explain(self.input, channel, row, col)
        return LayerExplanation(self.layer, e, float(self.output[channel, row, col]), self.receptive_field(row, col))

    def receptive_field(self, row: int, col: int) -> ReceptiveField:
        """The input-image box output ``(row, col)`` depends on, and the arithmetic of every layer below."""
        check_position((1, *self.output.shape[-2:]), 0, row, col)
        f = self.field
        if not isinstance(f, _Field):
            h, w = self.image_size
            return ReceptiveField(row, col, self.image_size, True, 0, 0, h - 1, w - 1, (0, 0, h - 1, w - 1),
                                  (h, w), (0, 0), [])
        if isinstance(self.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            (oh, ow), (h, w) = self.output.shape[-2:], self.input.shape[-2:]
            return _box(f, row, col, (_bin_taps(row, h, oh)[0], _bin_taps(col, w, ow)[0]), self.image_size)
        return _box(f.grow(self.layer, self.module, _module_geometry(self.module)), row, col, None, self.image_size)


def _require_explainable(model: nn.Module, name: str, module: nn.Module) -> None:
    if not isinstance(module, _EXPLAINABLE):
        names = explainable_layers(model)
        text = _("layer {name!r} is a {kind}, not a convolution or pooling; these are: {names}.") if names else \
            _("layer {name!r} is a {kind}, not a convolution or pooling; these are: none (this model has no "
              "convolution).")
        raise ConfigError(text.format(name=name, kind=type(module).__name__, names=", ".join(names)))


@contextmanager
def _ieee_convolutions(on_gpu: bool) -> Iterator[None]:
    """Full float32 cuDNN convolutions while capturing on a GPU: by default PyTorch lets them use TF32 (a
    10-bit mantissa) on recent GPUs, and the feature map would then differ from the float64 explanation by
    about a thousandth of the value. The setting is global while it lasts, and restored."""
    if not on_gpu:
        yield
        return
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = before


@contextmanager
def _plain(model: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Eval mode, no gradients, no autocast and no TF32 (the feature map in float32, as the explanation
    computes it), the model's lock held."""
    kind = x.device.type if x.device.type in ("cuda", "cpu", "mps", "xpu") else None
    no_autocast = torch.autocast(kind, enabled=False) if kind else nullcontext()
    with model_lock(model), evaluating(model), torch.no_grad(), no_autocast, _ieee_convolutions(kind == "cuda"):
        yield


def _record(targets: dict[str, nn.Module], seen: dict[str, tuple]):
    wanted: dict[int, list[tuple[str, int]]] = {}
    for name, module in targets.items():
        wanted.setdefault(id(module), []).append((name, split_call(name)[1]))
    calls: dict[int, int] = {}

    def hook(module: nn.Module, inputs, output) -> None:
        call = calls[id(module)] = calls.get(id(module), -1) + 1
        out = output[0] if isinstance(output, (tuple, list)) else output
        for name, index in wanted.get(id(module), []):
            if index == call:  # copies: an in-place ReLU after the layer would change them
                seen[name] = (inputs[0][0].detach().clone(), out[0].detach().clone(), _field_of(inputs[0]))
    return hook


def capture_layers(model: nn.Module, layers: Sequence[str], x: torch.Tensor) -> dict[str, LayerCapture]:
    """Run ``model`` once on ``x`` (``1 x C x H x W``) and keep each named layer's real input and output
    (:class:`LayerCapture`), with the receptive-field geometry carried through every layer. A model on
    the meta device works too: only the receptive fields are known then."""
    targets = resolve_layers(model, list(layers))
    for name, module in targets.items():
        _require_explainable(model, name, module)
    seen: dict[str, tuple] = {}
    names = {id(m): n for n, m in model.named_modules()}
    x = x.detach().to(device_of(model)).clone()
    _set_field(x, _IMAGE)
    record, handles = _record(targets, seen), []
    with _plain(model, x), CarryMode(_FIELD_ATTR, _merge, _GLOBAL):
        try:
            for m in model.modules():
                if isinstance(m, _EXPLAINABLE):
                    handles.append(m.register_forward_hook(_grow_hook(names[id(m)])))
            handles += [m.register_forward_hook(record) for m in {id(m): m for m in targets.values()}.values()]
            model(x)
        finally:
            for h in handles:
                h.remove()
    missing = [n for n in targets if n not in seen]
    if missing:
        raise LayerNotFoundError(_("layer(s) {layers} did not run in the forward pass (a '#k' beyond the number of "
                                   "times the layer is used, or a layer outside the forward path).").format(
            layers=", ".join(missing)))
    keep = "meta" if x.device.type == "meta" else "cpu"
    return {n: LayerCapture(n, targets[n], seen[n][0].to(keep), seen[n][1].to(keep), tuple(x.shape[-2:]), seen[n][2])
            for n in targets}


def capture_layer(model: nn.Module, layer: str, x: torch.Tensor) -> LayerCapture:
    """:func:`capture_layers` for one layer: what the page keeps while the window moves."""
    return capture_layers(model, [layer], x)[layer]


def explain_layer(model: nn.Module, layer: str, x: torch.Tensor, channel: int, row: int, col: int) -> LayerExplanation:
    """Output ``(channel, row, col)`` of a real convolution or pooling layer for input ``x``: worked out
    from the layer's weights and its captured input, beside the captured feature-map value."""
    return capture_layer(model, layer, x).explain(channel, row, col)


# --- pictures: the sliding window ------------------------------------------------------------

# the GIF's colours, drawn straight into a palette image:
# white, ink, padding, window, kernel, filled, current, grid, winner; and the GIF's "unchanged" (never drawn)
_PALETTE = [255, 255, 255, 20, 20, 20, 225, 225, 225, 255, 196, 120, 190, 220, 255,
            200, 235, 200, 255, 235, 90, 150, 150, 150, 220, 40, 40, 255, 0, 255]
_WHITE, _INK, _PAD, _WINDOW, _KERNEL, _FILLED, _CURRENT, _GRID, _WINNER, _UNCHANGED = range(10)
_FONT_SIZE = 16
_GAP = 28


def _font(size: int = _FONT_SIZE):
    """The frames' font: numbers and the command line's English (cnnlab.fonts keeps it loaded)."""
    return text_font(size)


def _short(v: float) -> str:
    """A number short enough for a grid cell."""
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


@dataclass
class _Layout:
    """Where each grid of a frame goes: per input channel of the group, a row of grids (input, kernel,
    products); the output on the right; the text lines on top."""

    cell: tuple[int, int]  # width, height of a cell
    top: int  # first pixel row of the grids
    inputs: list[tuple[int, int]]  # top-left of each input channel's padded grid
    kernels: list[tuple[int, int]]
    products: list[tuple[int, int]]
    output: tuple[int, int]
    size: tuple[int, int]  # the frame's width, height


def _layout(sb: Sandbox, explanations: list[Explanation], header: list[list[str]]) -> _Layout:
    """Cells as wide as the widest number drawn; the frame as wide as the longest header line, 800 px at least."""
    font, lines = _font(), len(header[0])
    numbers = [v for e in explanations for w in e.windows for row in (w.products or w.values) for v in row]
    numbers += sb.input.flatten().tolist() + sb.output.flatten().tolist()
    width = max(font.getlength(_short(v)) for v in numbers) + 12
    cell = (int(max(width, 40)), _FONT_SIZE + 16)
    (ph, pw), (oh, ow) = sb.padding, sb.output_size
    rows, cols = sb.input.shape[1] + 2 * ph, sb.input.shape[2] + 2 * pw
    kh, kw = len(explanations[0].rows), len(explanations[0].cols)
    top = 12 + lines * (_FONT_SIZE + 8) + _GAP
    x_kernel = 12 + cols * cell[0] + _GAP
    x_products = x_kernel + kw * cell[0] + _GAP
    x_output = x_products + (kw * cell[0] + _GAP if sb.op == "conv" else 0)
    band = max(rows, kh + 2) * cell[1] + _GAP
    n = len(explanations[0].windows)
    inputs = [(12, top + i * band) for i in range(n)]
    height = max(top + n * band, top + oh * cell[1] + _GAP) + 12
    text = max(font.getlength(line) for frame in header for line in frame) + 24
    width = max(800, x_output + ow * cell[0] + 12, text)
    return _Layout(cell, top, inputs, [(x_kernel, y) for _, y in inputs], [(x_products, y) for _, y in inputs],
                   (x_output, top), (int(width), int(height)))


def _cell(draw: ImageDraw.ImageDraw, lay: _Layout, origin: tuple[int, int], r: int, c: int, text: str,
          fill: int) -> None:
    x, y = origin[0] + c * lay.cell[0], origin[1] + r * lay.cell[1]
    draw.rectangle((x, y, x + lay.cell[0], y + lay.cell[1]), fill=fill, outline=_GRID)
    if text:
        draw.text((x + lay.cell[0] / 2, y + lay.cell[1] / 2), text, fill=_INK, font=_font(), anchor="mm")


def _label(draw: ImageDraw.ImageDraw, origin: tuple[int, int], text: str) -> None:
    draw.text((origin[0], origin[1] - 4), text, fill=_INK, font=_font(13), anchor="ld")


def _draw_inputs(draw: ImageDraw.ImageDraw, lay: _Layout, sb: Sandbox, e: Explanation) -> None:
    """Each input channel the window reads, padded; padding cells grey."""
    padded, (ph, pw) = sb.padded_input(), sb.padding
    height, width = sb.input.shape[1:]
    for origin, w in zip(lay.inputs, e.windows):
        _label(draw, origin, f"input channel {w.channel}" + (f" (padding {ph})" if ph or pw else ""))
        for r, row in enumerate(padded[w.channel]):
            for c, v in enumerate(row):
                inside = ph <= r < ph + height and pw <= c < pw + width
                _cell(draw, lay, origin, r, c, _short(v), _WHITE if inside else _PAD)


def _mark_window(draw: ImageDraw.ImageDraw, lay: _Layout, sb: Sandbox, e: Explanation, on: bool) -> None:
    """Colour the window's taps on every input grid (``on``), or give them back their own colour."""
    (ph, pw), (height, width) = sb.padding, sb.input.shape[1:]
    for origin, w in zip(lay.inputs, e.windows):
        for i, r in enumerate(e.rows):
            for j, c in enumerate(e.cols):
                if e.cells[i][j] == "outside":
                    continue
                inside = ph <= r < ph + height and pw <= c < pw + width
                colour = (_WINNER if e.winner == (i, j) else _WINDOW) if on else (_WHITE if inside else _PAD)
                _cell(draw, lay, origin, r, c, _short(w.values[i][j]), colour)


def _draw_terms(draw: ImageDraw.ImageDraw, lay: _Layout, e: Explanation) -> None:
    """The kernel and the products beside each input channel (convolution), or the window's values (pooling)."""
    for origin, k_origin, p_origin, w in zip(lay.inputs, lay.kernels, lay.products, e.windows):
        grids = [(k_origin, "kernel", w.weights, _KERNEL), (p_origin, "products", w.products, _WHITE)]
        if w.weights is None:
            grids = [(k_origin, "window", w.values, _WINDOW)]
        for at, title, grid, colour in grids:
            _label(draw, at, title)
            for i, row in enumerate(grid):
                for j, v in enumerate(row):
                    won = e.winner == (i, j)
                    text = _short(v) if e.cells[i][j] != "outside" else ""
                    _cell(draw, lay, at, i, j, text, _WINNER if won else colour)
            y = at[1] + len(grid) * lay.cell[1] + 4
            draw.rectangle((at[0], y, at[0] + len(grid[0]) * lay.cell[0], y + _FONT_SIZE + 6), fill=_WHITE)
        draw.text((at[0], y), f"= {_short(w.total)}", fill=_INK, font=_font(), anchor="la")


def _draw_header(draw: ImageDraw.ImageDraw, lay: _Layout, lines: list[str]) -> None:
    draw.rectangle((0, 0, lay.size[0], lay.top - _GAP + 4), fill=_WHITE)
    for i, line in enumerate(lines):
        draw.text((12, 12 + i * (_FONT_SIZE + 8)), line, fill=_INK, font=_font(), anchor="la")


def _frame_lines(sb: Sandbox, e: Explanation) -> list[str]:
    formulas = sb.formulas()
    if sb.op == "conv":
        sums = " + ".join(_signed(w.total) for w in e.windows)
        how = f"{sums} + bias {_signed(e.bias)} = {_num(e.value)}"
    elif sb.op == "max":
        how = f"max of the window = {_num(e.value)}"
    else:
        how = f"{_num(e.total)} / {e.divisor} = {_num(e.value)}"
    if e.relu:
        how += f";  {e.relu.line}"
    return [f"output channel {e.channel}, row {e.row}, col {e.col}: {how}",
            f"rows: {formulas[0].text}", f"cols: {formulas[1].text}"]


def _canvas(sb: Sandbox, channel: int, explanations: list[Explanation]) -> tuple[Image.Image, _Layout]:
    """The frame before any output: the padded input channels and an empty output grid."""
    lay = _layout(sb, explanations, [_frame_lines(sb, e) for e in explanations])
    canvas = Image.new("P", lay.size, _WHITE)
    canvas.putpalette(_PALETTE)
    draw = ImageDraw.Draw(canvas)
    _label(draw, lay.output, f"output channel {channel}")
    rows, cols = sb.output_size
    for r in range(rows):
        for c in range(cols):
            _cell(draw, lay, lay.output, r, c, "", _WHITE)
    _draw_inputs(draw, lay, sb, explanations[0])
    return canvas, lay


def _step(canvas: Image.Image, lay: _Layout, sb: Sandbox, e: Explanation, previous: Explanation | None) -> None:
    """Move the window from ``previous`` (its output now filled in) to ``e``."""
    draw = ImageDraw.Draw(canvas)
    if previous is not None:
        _mark_window(draw, lay, sb, previous, on=False)
        _cell(draw, lay, lay.output, previous.row, previous.col, _short(previous.result), _FILLED)
    _mark_window(draw, lay, sb, e, on=True)
    _draw_terms(draw, lay, e)
    _cell(draw, lay, lay.output, e.row, e.col, _short(e.result), _CURRENT)
    _draw_header(draw, lay, _frame_lines(sb, e))


def _explained(sb: Sandbox, channel: int) -> list[Explanation]:
    check_position(tuple(sb.output.shape), channel, 0, 0)
    return [sb.explain(channel, r, c) for r, c in sb.positions()]


def _frames(sb: Sandbox, channel: int) -> Iterator[Image.Image]:
    """One frame per output position, drawn on one canvas (each yield is the canvas, changed in place)."""
    explanations = _explained(sb, channel)
    canvas, lay = _canvas(sb, channel, explanations)
    previous = None
    for e in explanations:
        _step(canvas, lay, sb, e, previous)
        previous = e
        yield canvas


def draw_frame(sb: Sandbox, channel: int = 0, row: int = 0, col: int = 0) -> Image.Image:
    """The picture of output ``(row, col)``: padded input with the window, kernel, products, and the
    output filled up to that position (at least 800 pixels wide; a palette image): the GIF's frame."""
    check_position(tuple(sb.output.shape), channel, row, col)
    explanations = _explained(sb, channel)
    canvas, lay = _canvas(sb, channel, explanations)
    index = sb.positions().index((row, col))
    draw = ImageDraw.Draw(canvas)
    for e in explanations[:index]:
        _cell(draw, lay, lay.output, e.row, e.col, _short(e.result), _FILLED)
    _step(canvas, lay, sb, explanations[index], None)
    return canvas


def _changes(before: np.ndarray | None, after: np.ndarray) -> tuple[Image.Image, tuple[int, int]]:
    """What a frame adds to the one before: the rectangle around every changed pixel, in which the
    pixels that did not change are transparent (long runs that compress to almost nothing)."""
    if before is None:
        return Image.fromarray(after, "P"), (0, 0)
    ys, xs = np.nonzero(before != after)
    if ys.size == 0:
        ys, xs = np.array([0]), np.array([0])
    top, left, bottom, right = int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
    now, then = after[top:bottom, left:right], before[top:bottom, left:right]
    return Image.fromarray(np.where(now == then, _UNCHANGED, now).astype(np.uint8), "P"), (left, top)


def write_gif(sb: Sandbox, path: str | Path, channel: int = 0, frame_ms: int = 700) -> int:
    """The sliding-window animation as a looping GIF, one frame per output position; returns the frame
    count. Frames are written one by one as they are drawn, each as what changed (little memory, a small
    file): PIL's own writer would keep every frame of up to 576 in memory."""
    count, before = 0, None
    with open(path, "wb") as fp:
        for frame in _frames(sb, channel):
            after = np.asarray(frame).copy()
            if before is None:
                header, _ = GifImagePlugin.getheader(frame, info={"loop": 0})
                fp.write(b"".join(header))
            part, offset = _changes(before, after)
            part.putpalette(_PALETTE)
            extra = {"transparency": _UNCHANGED} if before is not None else {}
            fp.write(b"".join(GifImagePlugin.getdata(part, offset=offset, duration=frame_ms, **extra)))
            before, count = after, count + 1
        fp.write(b";")
    return count
