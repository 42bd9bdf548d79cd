"""Convolution: how one output number of a layer comes from its input, number by number (issue 24).

Two parts. **The sandbox**: a small input (a digit, a photo patch, typed numbers), a kernel or a
pooling window and its settings; the padded input as a grid of numbers with the window on it, the
kernel and the output grid (click a cell, or Play / Pause / Next / Previous through them all), and
for the chosen cell every product, each input channel's sum, the bias and the result. **On a real
layer**: the same for any convolution or pooling layer of a model on an image, with its learnt
weights, beside the value its feature map holds, and the receptive field on the image.
Everything is computed by :mod:`cnnlab.convolution`; this page reads widgets and draws.
"""

from __future__ import annotations

import hashlib
import math
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw
from streamlit.delta_generator import DeltaGenerator
from streamlit_image_coordinates import streamlit_image_coordinates
from torch import Tensor, nn

from app.common import image_picker, model_picker, remember, show_error
from cnnlab.activations import denormalize
from cnnlab.convolution import (
    DIGITS,
    MAX_CHANNELS,
    MAX_DILATION,
    MAX_KERNEL,
    MAX_PADDING,
    MAX_SIDE,
    MAX_STRIDE,
    PRESETS,
    Explanation,
    LayerCapture,
    ReceptiveField,
    Sandbox,
    SizeFormula,
    Window,
    capture_layer,
    conv_sandbox,
    digit_input,
    explain_softmax,
    explainable_layers,
    parse_matrix,
    photo_input,
    pool_sandbox,
    read_kernel,
)
from cnnlab.data.images import bundled_photos
from cnnlab.errors import CnnlabError
from cnnlab.fonts import font as text_font
from cnnlab.i18n import N_, _, fmt
from cnnlab.sources import ModelSource

STORE = "conv-form"  # where remember() keeps this page's settings across page switches
# the pickers' choices: stable English keys, their names shown translated
OPS = {"conv": N_("Convolution"), "max": N_("Max pool"), "avg": N_("Average pool"), "softmax": N_("Softmax")}
INPUTS = {"digit": N_("Digit"), "photo": N_("Photo patch"), "typed": N_("Typed numbers")}
TYPED = "typed numbers"
NUMBERS = "0,1,2,3,0;1,2,3,0,1;2,3,0,1,2;3,0,1,2,3;0,1,2,3,0"  # the typed input's example: 5x5 diagonals
KERNELS = [*PRESETS, TYPED]
KERNEL_NAMES = {"identity": N_("identity"), "box_blur": N_("box blur"), "sharpen": N_("sharpen"),
                "vertical_edges": N_("vertical edges"), "horizontal_edges": N_("horizontal edges"),
                TYPED: N_("typed numbers")}
SPEEDS = [0.5, 1.0, 2.0]  # seconds per step while playing
AT, PLAYING, CLICKED, SPEED, TICK = "conv-at", "conv-playing", "conv-clicked", "conv-speed", "conv-tick"
SHOWN_CHANNELS = 8  # input channels whose window is shown in full on a real layer, at most
PAGE_PX = 820  # the main column's width at 1280x720 with the sidebar open: pictures wider are shrunk

# the drawn grids: numbers of 18 px, readable on a projector
FONT_PX = 18
INK, LINE, BOX = (20, 20, 20), (150, 150, 150), (220, 30, 30)
FILLS = {"input": (255, 255, 255), "padding": (222, 222, 222), "window": (255, 196, 120),
         "winner": (240, 120, 120), "kernel": (190, 220, 255), "current": (255, 230, 80)}


def intro() -> None:
    """The page's title and the question it answers."""
    st.title(_("Convolution"))
    st.write(_("How does one output number of a layer come from its input? Set up a small input and a "
               "kernel, then follow the window: every product, each input channel's sum, the bias and the "
               "result, and the output-size formula with your numbers. **On a real layer** does the same "
               "for any convolution or pooling of a model, with its learnt weights."))


# --- numbers and grids -----------------------------------------------------------------------


def num(v: float) -> str:
    """A number short enough for a grid cell or a table: whole numbers whole, others to 4 digits."""
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def long_num(v: float) -> str:
    """A result shown once, with the digits that tell two values apart."""
    return str(int(v)) if v == int(v) and abs(v) < 1e12 else f"{v:.7g}"


@st.cache_data(show_spinner=False, max_entries=256)
def grid_picture(values: list[list[float]], fills: list[list[str]]) -> tuple[Image.Image, tuple[int, int]]:
    """A grid of numbers as a picture (cells as wide as the widest number), and its cell size. Kept: writing the
    numbers cell by cell takes tens of milliseconds a grid, and the same grids come back (every load of the page,
    every round of the steps)."""
    texts = [[num(v) for v in row] for row in values]
    font = text_font(FONT_PX)  # numbers only: the base font, loaded once for the server by cnnlab.fonts
    width = max(40, int(max(font.getlength(t) for row in texts for t in row)) + 14)
    height = FONT_PX + 16
    image = Image.new("RGB", (len(texts[0]) * width + 1, len(texts) * height + 1), "white")
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(texts):
        for c, text in enumerate(row):
            x, y = c * width, r * height
            draw.rectangle((x, y, x + width, y + height), fill=FILLS[fills[r][c]], outline=LINE)
            draw.text((x + width / 2, y + height / 2), text, fill=INK, font=font, anchor="mm")
    return image, (width, height)


def input_picture(sb: Sandbox, e: Explanation, channel: int) -> Image.Image:
    """One input channel, padded (padding grey), the window's taps orange (max pooling's winner red)."""
    padded = sb.padded_input()[channel]
    (ph, pw), (height, width) = sb.padding, sb.input.shape[1:]
    fills = [["input" if ph <= r < ph + height and pw <= c < pw + width else "padding"
              for c in range(len(row))] for r, row in enumerate(padded)]
    for i, r in enumerate(e.rows):
        for j, c in enumerate(e.cols):
            if e.cells[i][j] != "outside":
                fills[r][c] = "winner" if e.winner == (i, j) else "window"
    return grid_picture(padded, fills)[0]


def table(grid: list[list[float]], rows: list[int], cols: list[int], marked: tuple[int, int] | None = None,
          mark: str = "") -> pd.DataFrame:
    """A grid of numbers as a table, rows and columns named by their input coordinates."""
    texts = [[num(v) + (mark if (i, j) == marked else "") for j, v in enumerate(row)]
             for i, row in enumerate(grid)]
    return pd.DataFrame(texts, index=[str(r) for r in rows], columns=[str(c) for c in cols])


# --- the sandbox: settings -------------------------------------------------------------------


def number(container: DeltaGenerator, label: str, key: str, default: float, lo: float, hi: float,
           **kwargs) -> float:
    """A number input whose value is remembered across pages and shareable by link."""
    return container.number_input(label, lo, hi, key=remember(STORE, key, default, bounds=(lo, hi)), **kwargs)


@st.cache_data(show_spinner=False, max_entries=64)
def sandbox_input(kind: str, *args) -> Tensor:
    """A digit (``index``) or a photo's centre (``name, size``), kept: each reads its file (scikit-learn's digits,
    the photo) again otherwise."""
    return digit_input(*args) if kind == "digit" else photo_input(*args)


def read_sandbox_input(kind_column: DeltaGenerator, c1: DeltaGenerator, c2: DeltaGenerator) -> Tensor | None:
    """The sandbox's input: a digit, a photo patch or typed numbers; None (with the reason) if unusable."""
    kind_key = remember(STORE, "conv-input", "digit", options=list(INPUTS))
    kind = kind_column.radio(_("Input"), list(INPUTS), format_func=lambda k: _(INPUTS[k]), horizontal=True,
                             key=kind_key)
    try:
        if kind == "digit":
            index = number(c1, _("Digit (0 to {last})").format(last=DIGITS - 1), "conv-digit", 3, 0, DIGITS - 1,
                           help=_("One of scikit-learn's 8x8 handwritten digits: values 0 to 16."))
            return sandbox_input("digit", int(index))
        if kind == "photo":
            photos = bundled_photos() or ["chelsea"]
            default = "chelsea" if "chelsea" in photos else photos[0]
            name = c1.selectbox(_("Photo (in colour: three channels)"), photos,
                                key=remember(STORE, "conv-photo", default, options=photos))
            size = c2.slider(_("Its centre, shrunk to (cells a side)"), 3, MAX_SIDE,
                             key=remember(STORE, "conv-photo-size", 8, bounds=(3, MAX_SIDE)))
            return sandbox_input("photo", name, int(size))
        text = c1.text_area(_("Numbers: rows separated by ';', channels by '|' (at most {channels} channels of "
                              "{side}x{side})").format(channels=MAX_CHANNELS, side=MAX_SIDE),
                            key=remember(STORE, "conv-numbers", NUMBERS))
        return parse_matrix(text, "input")
    except CnnlabError as err:
        show_error(err, context=_("This input cannot be used"))
        return None


def convolution_settings(x: Tensor, relu: bool) -> Sandbox:
    """The kernel, bias, padding, stride, dilation and groups; raises ConfigError for impossible ones."""
    c1, c2, c3, c4, c5, c6 = st.columns([2, 1, 1, 1, 1, 1])
    preset = c1.selectbox(_("Kernel"), KERNELS, format_func=lambda k: _(KERNEL_NAMES[k]) if k in KERNEL_NAMES
                          else k.replace("_", " "),
                          key=remember(STORE, "conv-kernel", "vertical_edges", options=KERNELS))
    bias = number(c2, _("Bias"), "conv-bias", 0.0, -1000.0, 1000.0, step=0.5)
    padding = number(c3, _("Padding"), "conv-padding", 1, 0, MAX_PADDING)
    stride = number(c4, _("Stride"), "conv-stride", 1, 0, MAX_STRIDE, help=_("0 shows why the window must move."))
    dilation = number(c5, _("Dilation"), "conv-dilation", 1, 1, MAX_DILATION)
    groups = 1
    if x.shape[0] > 1:
        groups = number(c6, _("Groups"), "conv-groups", 1, 1, MAX_CHANNELS,
                        help=_("Input channels split into groups, one filter each (AlexNet uses 2)."))
    if preset in PRESETS:
        kernel = read_kernel(preset)
    else:
        text = st.text_area(_("Kernel numbers: rows separated by ';', one channel, or one per input channel "
                              "separated by '|' (at most {side}x{side})").format(side=MAX_KERNEL),
                            key=remember(STORE, "conv-weights", "1,0,-1;1,0,-1;1,0,-1"))
        kernel = parse_matrix(text, "kernel", max_side=MAX_KERNEL)
    return conv_sandbox(x, kernel, float(bias), int(stride), int(padding), int(dilation), int(groups), relu)


def pooling_settings(x: Tensor, kind: str, relu: bool) -> Sandbox:
    """The pooling window, stride, padding, dilation and ceil_mode; raises ConfigError for impossible ones."""
    c1, c2, c3, c4, c5 = st.columns(5)
    window = number(c1, _("Window"), "conv-window", 2, 1, MAX_KERNEL)
    stride = number(c2, _("Stride"), "conv-pool-stride", 2, 0, MAX_STRIDE,
                    help=_("PyTorch's default: the window's size."))
    padding = number(c3, _("Padding"), "conv-pool-padding", 0, 0, MAX_PADDING, help=_("At most half the window."))
    dilation = number(c4, _("Dilation"), "conv-pool-dilation", 1, 1, MAX_DILATION)
    ceil = c5.checkbox(_("ceil_mode"), key=remember(STORE, "conv-ceil", False),
                       help=_("Round the output size up: a last, partial window."))
    count_pad = True
    if kind == "avg":
        count_pad = st.checkbox(_("count_include_pad (padding cells count in the divisor)"),
                                key=remember(STORE, "conv-count-pad", True))
    return pool_sandbox(x, kind, int(window), int(stride), int(padding), int(dilation), ceil, count_pad, relu)


def sandbox_settings(op: str, kind_column: DeltaGenerator) -> Sandbox | None:
    """The sandbox from its widgets; an impossible setting shows its reason and gives None."""
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    relu = c3.checkbox(_("ReLU after"), key=remember(STORE, "conv-relu", False),
                       help=_("Each output goes through max(0, v)."))
    x = read_sandbox_input(kind_column, c1, c2)
    if x is None:
        return None
    try:
        return convolution_settings(x, relu) if op == "conv" else pooling_settings(x, op, relu)
    except CnnlabError as err:
        show_error(err, context=_("These settings cannot be used"))
        return None


def show_formulas(formulas: list[SizeFormula]) -> None:
    """The output-size formula per axis, with the numbers."""
    for f in formulas:
        st.markdown((_("**Rows:** `{formula}`") if f.axis == "H" else _("**Columns:** `{formula}`")).format(
            formula=f.text))
        if f.note:
            st.caption(f.note)


def bounded_number(container: DeltaGenerator, label: str, key: str, hi: int, default: int) -> int:
    """A number input from 0 to ``hi`` whose kept value is first brought within the bounds (they change
    with the layer or the settings)."""
    st.session_state[key] = min(max(int(st.session_state.get(key, default)), 0), hi)
    return int(container.number_input(label, 0, hi, step=1, key=key))


# --- the sandbox: the window, stepped or clicked ----------------------------------------------


def position(sb: Sandbox) -> tuple[int, int]:
    """The chosen output position, kept within the output (its size changes with the settings)."""
    rows, cols = sb.output_size
    r, c = st.session_state.get(AT, (0, 0))
    at = (min(r, rows - 1), min(c, cols - 1))
    st.session_state[AT] = at
    return at


def move(sb: Sandbox, step: int) -> None:
    """The window ``step`` positions on, in row order, round to the start after the last."""
    positions = sb.positions()
    st.session_state[AT] = positions[(positions.index(position(sb)) + step) % len(positions)]


def stepper(sb: Sandbox, channel: int) -> None:
    """The window and its computation; while playing, a fragment that moves on every tick."""
    every = st.session_state.get(SPEED, 1.0) if st.session_state.get(PLAYING, False) else None
    st.session_state[TICK] = every
    st.fragment(run_every=every)(window_view)(sb, channel)


def controls(sb: Sandbox) -> None:
    """Previous, Play/Pause, Next and the speed. Play (or a new speed while playing) reruns the page so
    that the fragment ticks at that speed; a manual move pauses; a tick (no button pressed) moves the
    window one position on."""
    playing = st.session_state.get(PLAYING, False)
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
    back = c1.button(_("Previous"), key="conv-prev", icon=":material/skip_previous:", width="stretch")
    toggle = c2.button(_("Pause") if playing else _("Play"), key="conv-play", type="primary", width="stretch",
                       icon=":material/pause:" if playing else ":material/play_arrow:")
    forward = c3.button(_("Next"), key="conv-next", icon=":material/skip_next:", width="stretch")
    speed = c4.select_slider(_("Seconds per step"), SPEEDS, value=1.0, key=SPEED)
    if toggle or (playing and speed != st.session_state.get(TICK)):
        st.session_state[PLAYING] = playing != toggle
        st.rerun()
    if back or forward:
        move(sb, -1 if back else 1)
        if playing:
            st.session_state[PLAYING] = False
            st.rerun()
    elif playing:
        move(sb, 1)
    r, c = position(sb)
    st.markdown(_("**Output row {row}, col {col}** ({index} of {count})").format(
        row=r, col=c, index=sb.positions().index((r, c)) + 1, count=len(sb.positions())))


def clicked_cell(click: dict | None, picture: Image.Image, cell: tuple[int, int]) -> tuple[int, int] | None:
    """The output cell a new click landed on, or None; a click counts once."""
    if not (click and click.get("width") and click.get("unix_time") != st.session_state.get(CLICKED)):
        return None
    st.session_state[CLICKED] = click.get("unix_time")
    scale = picture.width / click["width"]
    cols, rows = (picture.width - 1) // cell[0], (picture.height - 1) // cell[1]
    row, col = int(click["y"] * scale // cell[1]), int(click["x"] * scale // cell[0])
    return min(row, rows - 1), min(col, cols - 1)


def output_picture(sb: Sandbox, e: Explanation) -> tuple[Image.Image, tuple[int, int]]:
    """The output grid, the chosen cell yellow, and its cell size."""
    values = sb.output[e.channel].tolist()
    fills = [["input"] * len(row) for row in values]
    fills[e.row][e.col] = "current"
    return grid_picture(values, fills)


def output_grid(sb: Sandbox, e: Explanation, picture: Image.Image, cell: tuple[int, int]) -> None:
    """The output grid, clickable: a click on a cell moves the window there (and pauses)."""
    st.markdown((_("**Output channel {channel}** (after ReLU) · click a cell") if sb.relu
                 else _("**Output channel {channel}** · click a cell")).format(channel=e.channel))
    # compressed: the component's default is an uncompressed PNG, 350 KB sent (base64) on every load and step
    click = streamlit_image_coordinates(picture, key="conv-click", cursor="pointer", width="content",
                                        png_compression_level=6)
    picked = clicked_cell(click, picture, cell)
    if picked is not None and picked != (e.row, e.col):
        st.session_state[AT] = picked
        st.session_state[PLAYING] = False
        st.rerun()


def pictures(sb: Sandbox, e: Explanation) -> None:
    """Each input channel the window reads; beside them the kernel and the output grid, or the output
    below when it does not fit beside them at full size."""
    inputs = {w.channel: input_picture(sb, e, w.channel) for w in e.windows}
    kernels = {w.channel: grid_picture(w.weights, [["kernel"] * len(r) for r in w.weights])[0]
               for w in e.windows if w.weights is not None}
    output, cell = output_picture(sb, e)
    left = max(p.width for p in inputs.values())
    right = max((p.width for p in kernels.values()), default=0)
    together = left + max(right, output.width) + 24 <= PAGE_PX
    first, side = st.columns([left, max(right, output.width) if together else max(right, PAGE_PX - left)])
    heading = _("**Input channel {channel}** (padding {padding}, grey)") if any(sb.padding) \
        else _("**Input channel {channel}**")
    for ch, picture in inputs.items():
        first.markdown(heading.format(channel=ch, padding=sb.padding[0]))
        first.image(picture, width="content")
    for ch, picture in kernels.items():
        side.markdown(_("**Kernel, channel {channel}**").format(channel=ch) if len(kernels) > 1
                      else _("**Kernel**"))
        side.image(picture, width="content")
    if any(kind == "outside" for row in e.cells for kind in row):
        st.caption(_("Part of this window lies past the padding (ceil_mode): those taps are left out."))
    with side if together else st.container():
        output_grid(sb, e, output, cell)


def window_view(sb: Sandbox, channel: int) -> None:
    """The fragment: controls, the pictures, and how the chosen output is computed."""
    controls(sb)
    r, c = position(sb)
    e = sb.explain(channel, r, c)
    pictures(sb, e)
    show_explanation(e)


# --- how one output is computed --------------------------------------------------------------


def window_tables(e: Explanation, w: Window) -> None:
    """One input channel: the window's values x the kernel = the products, and their sum (pooling: the
    window's values)."""
    rows = [r - e.padding[0] for r in e.rows]
    cols = [c - e.padding[1] for c in e.cols]
    if w.weights is None:
        mark = " " + _("(max)") if e.op.endswith("max") else ""
        st.table(table(w.values, rows, cols, e.winner, mark))
        return
    k = range(len(w.weights[0]))
    grids = [(_("Input values"), table(w.values, rows, cols)),
             (_("x kernel"), table(w.weights, list(range(len(w.weights))), list(k))),
             (_("= products"), table(w.products, rows, cols))]
    parts = st.columns([1, 1, 1.3, 0.5]) if len(w.weights[0]) <= 5 else [st.container() for _part in range(4)]
    for part, (title, frame) in zip(parts, grids):
        part.markdown(f"**{title}**")
        part.table(frame)
    parts[3].markdown(_("**sum**  \n{total}").format(total=num(w.total)))


def show_windows(e: Explanation, limit: int) -> None:
    """Every input channel of the window (the first ``limit``), with a caption on the coordinates."""
    if e.groups > 1:
        first, last = e.windows[0].channel, e.windows[-1].channel
        st.info(_("Grouped convolution: output channel {channel} is in group {group} of {groups}, which "
                  "sees input channels {first} to {last} only.").format(
            channel=e.channel, group=e.group, groups=e.groups, first=first, last=last))
    for w in e.windows[:limit]:
        st.markdown(_("**Input channel {channel}**").format(channel=w.channel))
        window_tables(e, w)
    st.caption(_("Rows and columns are numbered as in the input: below 0, or past its last row or column, "
                 "is padding."))


def show_sums(e: Explanation) -> None:
    """How the channels' sums, the bias and the ReLU make the one output number."""
    if e.op == "conv" and len(e.windows) <= 4:
        cells = st.columns(len(e.windows) + 2)
        for cell, w in zip(cells, e.windows):
            cell.metric(_("Channel {channel}").format(channel=w.channel), num(w.total))
        cells[-2].metric(_("Bias"), num(e.bias))
        cells[-1].metric(_("Output after ReLU") if e.relu else _("Output"), num(e.result))
    if e.op == "conv":
        sums = " + ".join(f"({num(w.total)})" if w.total < 0 else num(w.total) for w in e.windows[:12])
        how = (_("{sums} + ... ({n} channels) + bias {bias} = {value}") if len(e.windows) > 12
               else _("{sums} + bias {bias} = {value}")).format(
            sums=sums, n=len(e.windows), bias=num(e.bias), value=long_num(e.value))
    elif e.op.endswith("max"):
        how = _("the largest value in the window = {value}").format(value=long_num(e.value))
    else:
        how = f"{num(e.total)} / {e.divisor} = {long_num(e.value)}"
    if e.relu:
        how += f"; {e.relu.line}"
    st.markdown(f"#### {how}")


def show_explanation(e: Explanation, limit: int = MAX_CHANNELS) -> None:
    """The chosen output's computation: tables, sums, and the whole of it in words."""
    show_windows(e, limit)
    show_sums(e)
    st.code("\n".join(e.lines()), language=None, wrap_lines=True)


def softmax_part() -> None:
    """Softmax of typed logits: the largest subtracted, the exponentials, their sum, the probabilities."""
    text = st.text_input(_("Logits (numbers separated by commas)"),
                         key=remember(STORE, "conv-logits", "2, 1, 0.1"))
    try:
        s = explain_softmax(text)
    except CnnlabError as err:
        show_error(err, context=_("These logits cannot be used"))
        return
    # st.table takes no column labels: the headings are the frame's keys, translated
    st.table(pd.DataFrame({_("logit"): [num(v) for v in s.logits],
                           _("logit - largest"): [num(v) for v in s.shifted],
                           "exp": [f"{v:.4g}" for v in s.exponentials],
                           _("probability"): [f"{p:.4f}" for p in s.probabilities]}))
    st.markdown(_("#### sum of the exponentials = {total}; each probability is its exponential / {total}").format(
        total=fmt(s.total, ".6g")))
    st.code("\n".join(s.lines()), language=None, wrap_lines=True)


def sandbox() -> None:
    """The sandbox part: settings, formula, then the stepped window."""
    c1, c2 = st.columns(2)
    op = c1.radio(_("Operation"), list(OPS), format_func=lambda k: _(OPS[k]), horizontal=True,
                  key=remember(STORE, "conv-op", "conv", options=list(OPS)))
    if op == "softmax":
        softmax_part()
        return
    sb = sandbox_settings(op, c2)
    if sb is None:
        return
    shape = "x".join(map(str, sb.input.shape))
    st.markdown(_("Input **{input}** -> output **{output}**").format(
        input=shape, output="x".join(map(str, sb.output.shape))))
    show_formulas(sb.formulas())
    channel = 0
    if sb.output.shape[0] > 1:
        last = sb.output.shape[0] - 1
        channel = bounded_number(st.columns(3)[0], _("Output channel (0 to {last})").format(last=last),
                                 "conv-channel", sb.output.shape[0] - 1, 0)
    stepper(sb, channel)


# --- a real layer ------------------------------------------------------------------------------


def picture_id(image: Image.Image) -> str:
    """A key for an image's content: the cached capture is reused while it stays the same."""
    return f"{image.mode}{image.size}" + hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


@st.cache_resource(show_spinner=False, max_entries=6)
def layer_names(ref: str, model_id: int, picture: str, _model: nn.Module, _x: Tensor) -> list[str]:
    """The model's convolution and pooling layers in the order they run (one forward pass, kept)."""
    return explainable_layers(_model, _x)


@st.cache_resource(show_spinner=False, max_entries=6)
def layer_capture(ref: str, model_id: int, picture: str, layer: str, _model: nn.Module,
                  _x: Tensor) -> LayerCapture:
    """One layer's real input and output for this image, kept while the window moves."""
    return capture_layer(_model, layer, _x)


def pick_layer(source: ModelSource, image: Image.Image) -> tuple[Tensor, LayerCapture] | None:
    """The model's input for the image and the chosen layer's capture; None (with the reason) when
    impossible."""
    try:
        x = source.to_input(image)
        picture = picture_id(image)
        # the spinners' texts are here, not in the decorators: a decorator's text is fixed at import
        with st.spinner(_("Running the model once…")):
            names = layer_names(source.ref, id(source.model), picture, source.model, x)
        if not names:
            st.info(_("{model} has no convolution or pooling layer to explain.").format(model=source.label))
            return None
        key = "conv-real-layer"
        if st.session_state.get(key) not in names:  # a layer of the model picked before
            st.session_state.pop(key, None)
        layer = st.selectbox(_("Layer (convolutions and poolings, in the order they run)"), names, key=key)
        with st.spinner(_("Capturing the layer…")):
            return x, layer_capture(source.ref, id(source.model), picture, layer, source.model, x)
    except CnnlabError as err:
        show_error(err)
        return None


def pick_output(cap: LayerCapture) -> tuple[int, int, int]:
    """The output channel and position, bounded by the feature map (the centre at first)."""
    k, rows, cols = cap.output.shape
    c1, c2, c3 = st.columns(3)
    channel = bounded_number(c1, _("Output channel (0 to {last})").format(last=k - 1), "conv-real-channel", k - 1, 0)
    row = bounded_number(c2, _("Row (0 to {last})").format(last=rows - 1), "conv-real-row", rows - 1, rows // 2)
    col = bounded_number(c3, _("Column (0 to {last})").format(last=cols - 1), "conv-real-col", cols - 1, cols // 2)
    return channel, row, col


def field_picture(shown: np.ndarray, rf: ReceptiveField) -> Image.Image:
    """The image the model saw, enlarged, with the receptive field's box."""
    image = Image.fromarray(shown)
    scale = max(1, 320 // max(image.size))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    ImageDraw.Draw(image).rectangle((rf.left * scale, rf.top * scale, (rf.right + 1) * scale - 1,
                                     (rf.bottom + 1) * scale - 1), outline=BOX, width=3)
    return image


def show_field(source: ModelSource, x: Tensor, rf: ReceptiveField) -> None:
    """The receptive field on the image, and how it grew layer by layer."""
    st.subheader(_("Its receptive field"))
    c1, c2 = st.columns([1, 2])
    size = f"{rf.size[0]}x{rf.size[1]}"
    c1.image(field_picture(denormalize(x, source.mean, source.std), rf), width="content",
             caption=_("The {size} pixels output ({row}, {col}) depends on (red), on the image the model "
                       "saw.").format(size=size, row=rf.row, col=rf.col))
    top, left, bottom, right = rf.unclipped
    if (top, left, bottom, right) != (rf.top, rf.left, rf.bottom, rf.right) and not rf.whole_input:
        c2.caption(_("The field reaches past the image (rows {top}..{bottom}, cols {left}..{right}): that part "
                     "is padding.").format(top=top, bottom=bottom, left=left, right=right))
    c2.code("\n".join(rf.lines()), language=None, wrap_lines=True)


def real_layer() -> None:
    """The real-layer part: model, image, layer, output position; the value worked out and checked."""
    st.write(_("A model and an image, as on **Look inside**; then any convolution or pooling layer and one "
               "output number of its feature map, worked out from the layer's real input and learnt weights."))
    source = model_picker("conv-real")
    if source is None:
        return
    image = image_picker("conv-real", source)
    if image is None:
        return
    picked = pick_layer(source, image)
    if picked is None:
        return
    x, cap = picked
    st.markdown(_("**{layer}**: `{module}` · input {input} -> output {output}").format(
        layer=cap.layer, module=cap.describe(), input="x".join(map(str, cap.input.shape)),
        output="x".join(map(str, cap.output.shape))))
    show_formulas(cap.formulas())
    if not cap.formulas():
        st.caption(_("Adaptive pooling: the output size is fixed, and each output pools its own bin of the "
                     "input."))
    channel, row, col = pick_output(cap)
    try:
        found = cap.explain(channel, row, col)
    except CnnlabError as err:
        show_error(err)
        return
    e = found.explanation
    agree = st.success if found.agrees else st.warning
    agree((_("Explained value {explained} = feature map value {feature_map} (difference {difference})")
           if found.agrees else _("Explained value {explained} = feature map value {feature_map} (difference "
                                  "{difference}): beyond float32's tolerance")).format(
        explained=long_num(e.value), feature_map=long_num(found.feature_map_value),
        difference=f"{found.difference:.1e}"))
    limit = 1
    if len(e.windows) > 1:
        top, key = min(SHOWN_CHANNELS, len(e.windows)), "conv-real-shown"
        st.session_state[key] = min(st.session_state.get(key, 3), top)  # the layer's channels may be fewer
        limit = st.slider(_("Input channels shown in full"), 1, top, key=key)
    show_explanation(e, limit)
    if e.op == "conv" and len(e.windows) > 4:
        st.dataframe(pd.DataFrame({"input channel": [w.channel for w in e.windows],
                                   "sum of its products": [w.total for w in e.windows]}),
                     hide_index=True, height=240,
                     column_config={"input channel": st.column_config.Column(_("input channel")),
                                    "sum of its products": st.column_config.Column(_("sum of its products"))})
    show_field(source, x, found.receptive_field)


intro()
tab_sandbox, tab_real = st.tabs([_("The sandbox"), _("On a real layer")])
with tab_sandbox:
    sandbox()
with tab_real:
    real_layer()
