"""Look inside: feature maps, kernels and class-activation maps of a model on one image, and what a
convolution's channels respond to.

A stroke on the drawing canvas changes the image many times a minute, so everything below the model
picker is one fragment (a stroke reruns it, not the sidebar nor the model picker), each tab is a fragment
of its own (a setting in one tab reruns that tab only), and what a tab computes is cached per model,
image and setting (going back to a layer, a channel or a class is instant)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw
from streamlit_image_coordinates import streamlit_image_coordinates
from torch import Tensor, nn

from app import features_view, xray_view
from app.common import image_picker, model_picker, show_error
from app.language import translated_tabs
from cnnlab.activations import (
    CamResult,
    LayerStats,
    activation_points,
    capture_activations,
    channel_view,
    denormalize,
    feature_grid,
    grad_cam,
    grid_channel_at,
    kernel_grid,
    overlay,
    saliency,
)
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import predict_topk
from cnnlab.i18n import N_, _, fmt, language
from cnnlab.sources import ModelSource

Point = tuple[str, tuple[int, ...], str]  # a layer call of the forward pass: name, output shape, type
GRID_WIDTH = 800  # pixels a feature-map grid is drawn at: the page's column at 1280 wide (whole-pixel steps)
GRID_SHAPE = 1.6  # width : height of a grid's tiles, so a layer's channels fit a 1280x720 screen
PAD = 2  # the gap between a grid's tiles, as feature_grid draws them
PICKED, BACKGROUND = (230, 20, 20), (255, 255, 255)
PICTURE_SIDE = 320  # pixels the input and its class-activation map are drawn at
TOP_K = 5
HEAT_CMAP = "jet"  # cnnlab.activations.overlay's colour map
CMAPS = ("viridis", "RdBu_r", "gray", "magma")  # matplotlib's names, shown as they are in every language

ANSWER = N_("The network's answer: **{label}**, with probability {probability}.")
UNTRAINED_ANSWER = N_("The network's answer: **{label}**, with probability {probability}. Its weights are "
                      "random: the answer is a guess.")
AUTO_CHANNEL = N_("Outlined in red: channel {channel}, the strongest mean response, shown large below. Click "
                  "another channel to see it instead.")
PICKED_CHANNEL = N_("Outlined in red: channel {channel}, the one you picked, shown large below. The "
                    "strongest mean response is channel {strongest}.")
UNSHOWN_CHANNEL = N_("Channel {channel}, shown large below, is not among the {shown} drawn here: show more "
                     "channels to see it in the grid.")
GRAD_CAM_TEXT = N_(
    "**What the colours mean.** Red and yellow mark the parts of the picture that pushed the network most "
    "towards '{label}', blue the parts that did not push towards it. The map is computed at layer {layer}, "
    "whose grid is {rows} x {cols} positions, and stretched over the picture, so it is only as sharp as that "
    "grid. It shows where the evidence for '{label}' was found, not what the network saw there, not why, and "
    "not whether the answer is right: a map for a wrong class can look just as sure. Red on the background "
    "means the network uses the background, a shortcut worth discussing.")
SALIENCY_TEXT = N_(
    "**What the colours mean.** Each pixel's colour says how much a tiny change of that pixel would change the "
    "network's score for '{label}': red where the score is most sensitive, blue where a change does nothing. "
    "Sensitive is not the same as important: the map is noisy, it can light up edges whatever the class, and "
    "it says nothing about whether the answer is right. Grad-CAM gives a coarser but steadier picture.")
METHODS = {"Grad-CAM": "Grad-CAM", "Saliency": N_("Saliency")}  # key -> name shown (Grad-CAM is a name)
PREDICTED = N_("(predicted)")  # the class picker's first choice: its key, in English, shown translated
AUTO_LAYER = N_("(auto: end of the convolutional part)")  # the Grad-CAM layer picker's first choice, likewise


@dataclass
class Look:
    """One image through one model: what every tab starts from."""

    x: Tensor  # the model's input
    points: list[Point]  # every layer call of the forward pass
    top: list[tuple[str, float]]  # the most probable classes, most probable first
    shown: np.ndarray  # the input as the model sees it, H x W x 3 uint8
    digest: str  # the image's fingerprint: the caches' key


def intro() -> None:
    """The page's title and what it is for."""
    st.title(_("Look inside"))
    st.write(_("Feed one image to a network and watch what each layer makes of it: every channel of "
               "a layer as a picture, the learned kernels, where the network looks when it decides, and what "
               "a convolution's channels respond to. "
               "Choose **Draw** to sketch the image yourself: the maps change with every stroke."))


def fingerprint(image: Image.Image) -> str:
    return hashlib.sha1(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


@st.cache_resource(show_spinner=False, max_entries=16)
def looked(ref: str, model_id: int, digest: str, lang: str, _source: ModelSource,
           _image: Image.Image) -> Look:
    """The input, the layer calls and the top classes of one image; ``model_id`` tells apart two models
    loaded under one reference (an untrained zoo model loaded again has other weights), ``lang`` keeps the
    class names (an untrained model's are words) in the session's language."""
    x = _source.to_input(_image)
    return Look(x, layer_calls(ref, model_id, tuple(x.shape), _source, x),
                predict_topk(_source.model, _image, _source, min(TOP_K, len(_source.classes))),
                denormalize(x, _source.mean, _source.std), digest)


@st.cache_resource(show_spinner=False, max_entries=16)
def layer_calls(ref: str, model_id: int, shape: tuple[int, ...], _source: ModelSource, _x: Tensor) -> list[Point]:
    """The layer calls of a forward pass: the same for every image of one shape, so traced once per model
    and input shape, not at every stroke."""
    return activation_points(_source.model, _x)


@st.cache_resource(show_spinner=False, max_entries=8)
def layer_output(ref: str, model_id: int, digest: str, layer: str, _source: ModelSource, _x: Tensor) -> Tensor:
    return capture_activations(_source.model, _x, [layer])[layer]


@st.cache_resource(show_spinner=False, max_entries=16)
def class_map(ref: str, model_id: int, digest: str, method: str, target: int | None, layer: str | None,
              _source: ModelSource, _x: Tensor) -> CamResult:
    if method == "Grad-CAM":
        return grad_cam(_source.model, _x, target=target, layer=layer)
    return saliency(_source.model, _x, target=target)


@st.cache_resource(show_spinner=False, max_entries=16)
def kernel_tiles(ref: str, model_id: int, conv_name: str, filters: int, inputs: int, _conv: nn.Conv2d) -> Image.Image:
    return kernel_grid(_conv, max_filters=filters, max_in=inputs)


def look(source: ModelSource) -> None:
    """The image, the model's answer and the four tabs: rerun alone by a stroke on the canvas."""
    keep_tab_choices()  # here: a switch of tab reruns this fragment alone
    image = image_picker("inside", source)
    if image is None:
        return
    try:
        seen = looked(source.ref, id(source.model), fingerprint(image), language(), source, image)
    except CnnlabError as err:  # an image the model cannot take
        show_error(err)
        return
    show_input(source, seen)
    tabs = translated_tabs(list(TABS), key="inside-tab")  # only the open one runs
    for tab, draw in zip(tabs, TABS.values()):
        if tab.open:
            with tab:
                st.fragment(draw)(source, seen)


def show_input(source: ModelSource, seen: Look) -> None:
    """The input as the model sees it (whole pixels, not blurred), beside the model and its answer."""
    col_img, col_info = st.columns([1, 2], gap="medium")
    col_img.image(enlarged(seen.shown, PICTURE_SIDE * 2 // 3), width="stretch",
                  caption=_("Input as the model sees it: {shape}").format(
                      shape=" x ".join(map(str, source.input_shape))))
    col_info.markdown(_("**{model}**  \n{calls} layer calls in one forward pass; {classes} classes.").format(
        model=source.label, calls=len(seen.points), classes=len(source.classes)))
    label, probability = seen.top[0]
    answer = UNTRAINED_ANSWER if source.kind == "zoo" else ANSWER
    col_info.markdown(_(answer).format(label=label, probability=fmt(probability, ".1%")))


def enlarged(picture: np.ndarray | Image.Image, side: int) -> Image.Image:
    """A small picture enlarged by whole pixels (nearest neighbour) to about ``side`` pixels wide, so the
    browser does not blur it; a large one as it is."""
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    scale = side // max(img.size)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def feature_maps(source: ModelSource, seen: Look) -> None:
    """Every channel of one layer as a picture, with the layer's statistics; a click opens one channel."""
    spatial = [p for p in seen.points if len(p[1]) == 3]
    options = [p[0] for p in spatial] or [p[0] for p in seen.points]
    labels = {p[0]: f"{p[0]} · {p[2]} · {' x '.join(map(str, p[1]))}" for p in seen.points}
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox(_("Layer"), options, format_func=labels.get, key="inside-layer")
    limit = c2.slider(_("Channels shown"), 4, 256, 64, step=4, key="inside-limit")
    cmap = st.radio(_("Colormap"), CMAPS, horizontal=True, key="inside-cmap")
    try:
        act = layer_output(source.ref, id(source.model), seen.digest, layer, source, seen.x)
        shown = min(limit, act.shape[-3]) if act.dim() >= 3 else 1
        cols = grid_columns(shown)
        grid, stats = feature_grid(act, max_channels=limit, cmap=cmap, tile_size=GRID_WIDTH // cols - PAD, cols=cols)
    except CnnlabError as err:
        show_error(err)
        return
    m1, m2, m3, m4 = st.columns([2, 1, 1, 1])  # room for a shape like 64 x 112 x 112 at 1280 wide
    m1.metric(_("Shape"), " x ".join(map(str, stats.shape)))
    m2.metric(_("Mean"), fmt(stats.mean, ".3f"))
    m3.metric(_("Std"), fmt(stats.std, ".3f"))
    m4.metric(_("Zeros"), fmt(stats.zero_fraction, ".1%"),
              help=_("Fraction of exact zeros: after a ReLU, the units that did not fire."))
    caption = _("{layer}: {shown} of {total} channels, each scaled to its own range.").format(
        layer=layer, shown=shown, total=stats.shape[0])
    if len(stats.shape) != 3:  # a vector (after a flatten): one strip, nothing to click
        streamlit_image_coordinates(fitted(grid), key=f"inside-click-{layer}", width="stretch",
                                    png_compression_level=1)
        st.caption(caption)
        return
    channel = picked_channel(layer, stats, clicked_channel(layer, grid.size, shown, cols))
    streamlit_image_coordinates(fitted(outlined(grid, shown, cols, stats.strongest_channel, channel)),
                                key=f"inside-click-{layer}", cursor="pointer", width="stretch",
                                png_compression_level=1)
    st.caption(f"{caption} {channel_caption(layer, stats, channel, shown)}")
    one_channel(act, stats, layer, cmap)  # one channel, large, with its numbers (seed 000 enlarges one filter)


def fitted(grid: Image.Image) -> Image.Image:
    """A grid wider than the column made GRID_WIDTH wide before it is sent (64 maps of 112 x 112 are 1,254
    pixels: megabytes at every stroke). A click is read in the grid's own pixels all the same: it comes as
    a share of the width shown."""
    if grid.width <= GRID_WIDTH:
        return grid
    return grid.resize((GRID_WIDTH, round(grid.height * GRID_WIDTH / grid.width)), Image.BOX)


def grid_columns(channels: int) -> int:
    """Columns of a grid of ``channels`` tiles, wider than tall (GRID_SHAPE), so a layer fits one screen."""
    return max(1, math.ceil(math.sqrt(channels * GRID_SHAPE)))


def channel_key(layer: str) -> str:
    """The channel number's widget key, per layer: a channel number from another layer may not exist here.
    It is the one place the picked channel lives: the grid's outline, the caption, the number box and the
    large picture all read it."""
    return f"inside-channel-{layer}"


def clicked_channel(layer: str, grid_size: tuple[int, int], shown: int, cols: int) -> int | None:
    """The channel under a new click on the grid, read before the grid is drawn again (so its outline
    moves in the same rerun), or None. A click counts once: the number box stays free afterwards."""
    click, seen = st.session_state.get(f"inside-click-{layer}"), f"{channel_key(layer)}-click"
    if not (click and click.get("width")) or click.get("unix_time") == st.session_state.get(seen):
        return None
    st.session_state[seen] = click.get("unix_time")
    scale = grid_size[0] / click["width"]
    return grid_channel_at(grid_size, shown, click["x"] * scale, click["y"] * scale, cols=cols)


def picked_channel(layer: str, stats: LayerStats, clicked: int | None) -> int:
    """The channel shown large: the one clicked or typed, else the strongest (it follows the image until
    a channel is picked). Set before the number box is drawn, which then shows it."""
    key, strongest = channel_key(layer), int(stats.strongest_channel or 0)
    channel = st.session_state.get(key)
    if clicked is not None:
        channel = clicked
        st.session_state[f"{key}-picked"] = True
    elif channel is None or not st.session_state.get(f"{key}-picked"):
        channel = strongest
    channel = min(max(int(channel), 0), stats.shape[0] - 1)
    if st.session_state.get(key) != channel:  # written only when it changes: a write resends the box's value
        st.session_state[key] = channel
    return channel


def typed(layer: str) -> None:
    st.session_state[f"{channel_key(layer)}-picked"] = True


def tile_box(size: tuple[int, int], shown: int, cols: int, channel: int) -> tuple[int, int, int, int]:
    """The rectangle around one tile of a feature_grid picture, on the gap between tiles."""
    rows = math.ceil(shown / cols)
    tw, th = (size[0] - PAD) // cols - PAD, (size[1] - PAD) // rows - PAD
    r, k = divmod(channel, cols)
    x, y = PAD + k * (tw + PAD), PAD + r * (th + PAD)
    return x - 2, y - 2, x + tw + 1, y + th + 1


def outlined(grid: Image.Image, shown: int, cols: int, strongest: int | None, channel: int) -> Image.Image:
    """The grid with the picked channel outlined in red. feature_grid outlines the strongest channel; that
    outline lies on the white gap between tiles, so painting it white again takes it away."""
    img = grid.copy()
    draw = ImageDraw.Draw(img)
    for ch, colour in ((strongest, BACKGROUND), (channel, PICKED)):
        if ch is not None and ch < shown:
            draw.rectangle(tile_box(img.size, shown, cols, ch), outline=colour, width=2)
    return img


def channel_caption(layer: str, stats: LayerStats, channel: int, shown: int) -> str:
    if channel >= shown:
        return _(UNSHOWN_CHANNEL).format(channel=channel, shown=shown)
    if st.session_state.get(f"{channel_key(layer)}-picked"):
        return _(PICKED_CHANNEL).format(channel=channel, strongest=stats.strongest_channel)
    return _(AUTO_CHANNEL).format(channel=channel)


def one_channel(act: Tensor, stats: LayerStats, layer: str, cmap: str) -> None:
    """One channel large, with the numbers the next layer receives: the picked one, else the strongest."""
    st.markdown(_("**One channel, large**"))
    n_ch = stats.shape[0]
    ch = st.columns([1, 2])[0].number_input(_("Channel (0 to {last})").format(last=n_ch - 1), 0, n_ch - 1,
                                            key=channel_key(layer), on_change=typed, args=(layer,))
    big, values, (top, left) = channel_view(act, int(ch), cmap=cmap)
    c1, c2 = st.columns([2, 3], gap="medium")
    c1.caption(_("{layer}, channel {channel}: {rows} x {cols}").format(
        layer=layer, channel=ch, rows=stats.shape[1], cols=stats.shape[2]))
    c1.image(big, width="stretch")
    if values.shape == tuple(stats.shape[1:]):
        c2.caption(_("Its values: the numbers the next layer receives."))
    else:
        c2.caption(_("Its values (the central {rows} x {cols} window, from row {top}, column {left}): the "
                     "numbers the next layer receives.").format(rows=values.shape[0], cols=values.shape[1],
                                                                top=top, left=left))
    c2.dataframe(pd.DataFrame(values.round(2), index=[str(top + i) for i in range(values.shape[0])],
                              columns=[str(left + j) for j in range(values.shape[1])]), height=300)


def kernels_tab(source: ModelSource, seen: Look) -> None:
    training_kernels(source)
    kernels(source)


def channel_tab(source: ModelSource, seen: Look) -> None:
    features_view.channel_tab(source)


def training_kernels(source: ModelSource) -> None:
    """A run's first convolution epoch by epoch (its training X-ray's kernel snapshots), when it has them."""
    if source.kind != "run":
        return
    run_id = source.ref.split(":", 1)[1]
    record = xray_view.stored(run_id)
    if record is None or not record.kernels:
        return
    st.markdown(_("**While it trained**: the first convolution's kernels, epoch by epoch"))
    xray_view.kernel_slider(record.kernels, key=f"inside-kernels-{run_id}")
    st.divider()
    st.markdown(_("**The run's best weights**: the kernels of any convolution"))


def kernels(source: ModelSource) -> None:
    """The learned filters of one convolution as tiles."""
    convs = [n for n, m in source.model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        st.info(_("This model has no convolution."))
        return
    conv_name = st.selectbox(_("Convolution"), convs, key="inside-conv")
    conv = dict(source.model.named_modules())[conv_name]
    rgb = conv.in_channels == 3
    c1, c2 = st.columns(2)
    nf = (c1.slider(_("Filters"), 1, min(128, conv.out_channels), min(32, conv.out_channels), key="inside-nf")
          if conv.out_channels > 1 else 1)
    if conv.in_channels in (1, 3):  # one grey tile, or one RGB tile: nothing to choose
        ni = conv.in_channels
        c2.caption(_("Each filter has 3 input channels: shown as one RGB tile.") if rgb else
                   _("Each filter has 1 input channel: one grey tile."))
    else:
        ni = c2.slider(_("Input channels per filter"), 1, min(16, conv.in_channels), min(8, conv.in_channels),
                       key="inside-ni")
    caption = (_("{conv}: {filters} filters of {inputs} x {height} x {width}. Each filter as an RGB tile.")
               if rgb else _("{conv}: {filters} filters of {inputs} x {height} x {width}. One row per "
                             "filter, one grey tile per input channel."))
    st.image(kernel_tiles(source.ref, id(source.model), conv_name, nf, ni, conv),
             caption=caption.format(conv=conv_name, filters=conv.out_channels, inputs=conv.in_channels,
                                    height=conv.kernel_size[0], width=conv.kernel_size[1]),
             width="content")
    if source.kind == "zoo":
        st.caption(_("This model is untrained: its kernels are random. Train it (or pick a run) to see "
                     "edge and colour detectors appear."))


def class_activation(source: ModelSource, seen: Look) -> None:
    """Where the network looks when it decides (Grad-CAM or saliency) with its colour scale and what it
    means, beside the top-5 prediction."""
    c1, c2, c3 = st.columns(3)
    method = c1.radio(_("Method"), list(METHODS), format_func=lambda m: _(METHODS[m]), horizontal=True,
                      key="inside-method")
    classes = source.classes
    target_opt = c2.selectbox(_("Explain class"), [PREDICTED, *classes], key="inside-target",
                              format_func=lambda c: _(PREDICTED) if c == PREDICTED else c)
    repeated = {p[0].split("#")[0] for p in seen.points if "#" in p[0]}  # modules run several times
    cam_layers = [p[0] for p in seen.points if len(p[1]) == 3 and p[0] not in repeated and "#" not in p[0]]
    cam_layer = c3.selectbox(_("Grad-CAM layer"), [AUTO_LAYER, *cam_layers],
                             format_func=lambda n: _(AUTO_LAYER) if n == AUTO_LAYER else n,
                             key="inside-cam-layer", disabled=method != "Grad-CAM")
    target = None if target_opt == PREDICTED else classes.index(target_opt)
    layer = None if method != "Grad-CAM" or cam_layer == AUTO_LAYER else cam_layer
    try:
        cam = class_map(source.ref, id(source.model), seen.digest, method, target, layer, source, seen.x)
    except (CnnlabError, RuntimeError, ValueError) as err:  # captum/torch complaints: a message, not a trace
        show_error(err)
        return
    a, b = st.columns(2, gap="medium")
    caption = _("{method} for '{label}' at layer {layer}") if cam.layer else _("{method} for '{label}'")
    caption = caption.format(method=_(METHODS[method]), label=classes[cam.target], layer=cam.layer)
    a.image(overlay(enlarged(seen.shown, PICTURE_SIDE), cam.heatmap), width="stretch", caption=caption)
    with a:
        st.html(colour_bar())
    b.markdown(_("**Top-{k} prediction**").format(k=len(seen.top)))
    b.altair_chart(top_chart(seen.top), width="stretch")
    if source.kind == "zoo":
        b.caption(_(":material/warning: This model is untrained: its prediction is a guess and the heatmap "
                    "shows where random weights respond, not what the network learnt. Pick a trained run."))
    st.markdown(meaning(source, seen, cam))


def meaning(source: ModelSource, seen: Look, cam: CamResult) -> str:
    """What the map means and what it does not, in plain words."""
    label = source.classes[cam.target]
    if cam.method != "grad-cam":
        return _(SALIENCY_TEXT).format(label=label)
    shape = next((p[1] for p in seen.points if p[0] == cam.layer), ())
    rows, cols = shape[-2:] if len(shape) == 3 else ("?", "?")
    return _(GRAD_CAM_TEXT).format(label=label, layer=cam.layer, rows=rows, cols=cols)


COLOUR_BAR = ('<div style="height: 1.1rem; border-radius: 0.25rem; background: linear-gradient(to right, {stops})">'
              '</div><div style="display: flex; justify-content: space-between; font-size: 0.875rem">'
              '<span>{low}</span><span>{high}</span></div>')


def colour_bar() -> str:
    """The map's colour scale as HTML (text in rem: it grows with presentation mode), low (blue) to high (red)."""
    import matplotlib  # here: 0.2 s to import, and only this scale needs it on this page

    stops = ", ".join(matplotlib.colors.to_hex(c) for c in matplotlib.colormaps[HEAT_CMAP](np.linspace(0, 1, 11)))
    return COLOUR_BAR.format(stops=stops, low=_("low: counts little"), high=_("high: counts most"))


def top_chart(top: list[tuple[str, float]]) -> alt.LayerChart:
    """The most probable classes, most probable first (not alphabetical), each bar with its percentage."""
    frame = pd.DataFrame({"class": [name for name, p in top], "probability": [p for name, p in top],
                          "percent": [fmt(p, ".1%") for name, p in top]})
    base = alt.Chart(frame).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1.25]), title=_("probability"),
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1], labelFontSize=14, titleFontSize=14)),
        y=alt.Y("class:N", sort=None, title=None, axis=alt.Axis(labelFontSize=15, labelLimit=220)),
        tooltip=[alt.Tooltip("class:N", title=_("class")),
                 alt.Tooltip("probability:Q", format=".1%", title=_("probability"))])
    bars = base.mark_bar()
    numbers = base.mark_text(align="left", dx=5, fontSize=15).encode(text=alt.Text("percent:N"))
    return (bars + numbers).properties(height=44 * len(top))


TABS = {N_("Feature maps"): feature_maps, N_("Kernels"): kernels_tab,  # each tab's name, shown translated
        N_("Class-activation map"): class_activation, N_("What a channel responds to"): channel_tab}
# Only the open tab is drawn, and Streamlit forgets the value of a widget that is not drawn in a run: the
# tabs' choices (layer, colour map, kernels, Grad-CAM target, the channel tab's settings) are written back as
# session values at each run, so they survive a switch to another tab and back.
KEPT = ("inside-layer", "inside-limit", "inside-cmap", "inside-conv", "inside-nf", "inside-ni", "inside-method",
        "inside-target", "inside-cam-layer", "inside-feat-layer", "inside-feat-channels", "inside-feat-method",
        "inside-feat-images", "inside-feat-steps", "inside-channel-")


def keep_tab_choices() -> None:
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(KEPT)]:
        st.session_state[key] = st.session_state[key]


intro()
model = model_picker("inside")
if model is None:
    st.stop()
st.fragment(look)(model)
