"""Look inside: feature maps, kernels and class-activation maps of a model on one image, and what a
convolution's channels respond to."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image
from streamlit_image_coordinates import streamlit_image_coordinates
from torch import Tensor, nn

from app import features_view, xray_view
from app.common import image_picker, model_picker, show_error
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
from cnnlab.sources import ModelSource

Point = tuple[str, tuple[int, ...], str]  # a layer call of the forward pass: name, output shape, type


def intro() -> None:
    """The page's title and what it is for."""
    st.title("Look inside")
    st.write("Feed one image to a network and watch what each layer makes of it: every channel of "
             "a layer as a picture, the learned kernels, where the network looks when it decides, and what "
             "a convolution's channels respond to. "
             "Choose **Draw** to sketch the image yourself: the maps change with every stroke.")


def pick() -> tuple[ModelSource, Image.Image]:
    """The model and the image; the page ends here until both are chosen."""
    source = model_picker("inside")
    if source is None:
        st.stop()
    image = image_picker("inside", source)
    if image is None:
        st.stop()
    return source, image


def forward(source: ModelSource, image: Image.Image) -> tuple[Tensor, list[Point]]:
    """The image as the model's input and every layer call of one forward pass; an image the model
    cannot take ends the page with a message."""
    try:
        x = source.to_input(image)
        return x, activation_points(source.model, x)
    except CnnlabError as err:
        show_error(err)
        st.stop()


def show_input(source: ModelSource, x: Tensor, points: list[Point]) -> np.ndarray:
    """The input as the model sees it, beside the model's name; returns that picture."""
    shown = denormalize(x, source.mean, source.std)
    col_img, col_info = st.columns([1, 3])
    col_img.image(shown, caption=f"Input as the model sees it: {' x '.join(map(str, source.input_shape))}",
                  width=220)
    col_info.markdown(f"**{source.label}**  \n{len(points)} layer calls in one forward pass; "
                      f"{len(source.classes)} classes.")
    return shown


def feature_maps(source: ModelSource, x: Tensor, points: list[Point]) -> None:
    """Every channel of one layer as a picture, with the layer's statistics; a click opens one channel."""
    spatial = [p for p in points if len(p[1]) == 3]
    options = [p[0] for p in spatial] or [p[0] for p in points]
    labels = {p[0]: f"{p[0]} · {p[2]} · {' x '.join(map(str, p[1]))}" for p in points}
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox("Layer", options, format_func=labels.get, key="inside-layer")
    limit = c2.slider("Channels shown", 4, 256, 64, step=4, key="inside-limit")
    cmap = st.radio("Colormap", ["viridis", "RdBu_r", "gray", "magma"], horizontal=True, key="inside-cmap")
    try:
        act = capture_activations(source.model, x, [layer])[layer]
        grid, stats = feature_grid(act, max_channels=limit, cmap=cmap)
    except CnnlabError as err:
        show_error(err)
        return
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Shape", " x ".join(map(str, stats.shape)))
    m2.metric("Mean", f"{stats.mean:.3f}")
    m3.metric("Std", f"{stats.std:.3f}")
    m4.metric("Zeros", f"{stats.zero_fraction:.1%}",
              help="Fraction of exact zeros: after a ReLU, the units that did not fire.")
    caption = f"{layer}: {min(limit, stats.shape[0])} of {stats.shape[0]} channels, each scaled to its own range."
    if stats.strongest_channel is not None:
        caption += f" Outlined in red: channel {stats.strongest_channel}, the strongest mean response."
    spatial_map = len(stats.shape) == 3
    if spatial_map:
        caption += " Click a channel to see it large below."
    click = streamlit_image_coordinates(grid, key=f"inside-click-{layer}", cursor="pointer" if spatial_map else "auto",
                                        width="stretch" if grid.size[0] > 600 else "content")
    st.caption(caption)
    if spatial_map:  # one channel, large, with its numbers (seed 000 enlarges one filter)
        one_channel(act, stats, layer, cmap, clicked_channel(click, grid, layer, min(limit, stats.shape[0])))


def channel_key(layer: str) -> str:
    """The channel number's widget key, per layer: a channel number from another layer may not exist here."""
    return f"inside-channel-{layer}"


def clicked_channel(click: dict | None, grid: Image.Image, layer: str, shown: int) -> int | None:
    """The channel a new click on the grid landed on, or None. A click counts once, so the number
    stays free to change afterwards."""
    key = channel_key(layer)
    if not (click and click.get("width") and click.get("unix_time") != st.session_state.get(f"{key}-clicked")):
        return None
    st.session_state[f"{key}-clicked"] = click.get("unix_time")
    scale = grid.size[0] / click["width"]
    return grid_channel_at(grid.size, shown, click["x"] * scale, click["y"] * scale)


def one_channel(act: Tensor, stats: LayerStats, layer: str, cmap: str, picked: int | None) -> None:
    """One channel large, with the numbers the next layer receives: the clicked one, else the strongest."""
    st.markdown("**One channel, large**")
    n_ch = stats.shape[0]
    default = stats.strongest_channel if stats.strongest_channel is not None else 0
    key = channel_key(layer)
    if picked is not None:
        st.session_state[key] = picked
    c1, c2 = st.columns([1, 2])
    st.session_state.setdefault(key, int(default))  # set here, not as the widget's value: a click sets it too
    ch = c1.number_input(f"Channel (0 to {n_ch - 1})", 0, n_ch - 1, key=key)
    big, values, (top, left) = channel_view(act, int(ch), cmap=cmap)
    c1.image(big, caption=f"{layer}, channel {ch}: {stats.shape[1]} x {stats.shape[2]}", width=300)
    whole = values.shape == tuple(stats.shape[1:])
    c2.caption("Its values" + ("" if whole else f" (the central {values.shape[0]} x {values.shape[1]} window, "
                               f"from row {top}, column {left})") + ": the numbers the next layer receives.")
    c2.dataframe(pd.DataFrame(values.round(2), index=[str(top + i) for i in range(values.shape[0])],
                              columns=[str(left + j) for j in range(values.shape[1])]), height=300)


def training_kernels(source: ModelSource) -> None:
    """A run's first convolution epoch by epoch (its training X-ray's kernel snapshots), when it has them."""
    if source.kind != "run":
        return
    run_id = source.ref.split(":", 1)[1]
    record = xray_view.stored(run_id)
    if record is None or not record.kernels:
        return
    st.markdown("**While it trained**: the first convolution's kernels, epoch by epoch")
    xray_view.kernel_slider(record.kernels, key=f"inside-kernels-{run_id}")
    st.divider()
    st.markdown("**The run's best weights**: the kernels of any convolution")


def kernels(source: ModelSource) -> None:
    """The learned filters of one convolution as tiles."""
    convs = [n for n, m in source.model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        st.info("This model has no convolution.")
        return
    conv_name = st.selectbox("Convolution", convs, key="inside-conv")
    conv = dict(source.model.named_modules())[conv_name]
    c1, c2 = st.columns(2)
    nf = (c1.slider("Filters", 1, min(128, conv.out_channels), min(32, conv.out_channels), key="inside-nf")
          if conv.out_channels > 1 else 1)
    if conv.in_channels in (1, 3):  # one grey tile, or one RGB tile: nothing to choose
        ni = conv.in_channels
        c2.caption(f"Each filter has {conv.in_channels} input channel{'s' if conv.in_channels > 1 else ''}: "
                   + ("shown as one RGB tile." if conv.in_channels == 3 else "one grey tile."))
    else:
        ni = c2.slider("Input channels per filter", 1, min(16, conv.in_channels), min(8, conv.in_channels),
                       key="inside-ni")
    st.image(kernel_grid(conv, max_filters=nf, max_in=ni),
             caption=(f"{conv_name}: {conv.out_channels} filters of {conv.in_channels} x "
                      f"{conv.kernel_size[0]} x {conv.kernel_size[1]}. "
                      + ("Each filter as an RGB tile." if conv.in_channels == 3 else
                         "One row per filter, one grey tile per input channel.")),
             width="content")
    if source.kind == "zoo":
        st.caption("This model is untrained: its kernels are random. Train it (or pick a run) to see "
                   "edge and colour detectors appear.")


def class_activation(source: ModelSource, x: Tensor, points: list[Point], shown: np.ndarray) -> None:
    """Where the network looks when it decides (Grad-CAM or saliency), beside its top-5 prediction."""
    c1, c2, c3 = st.columns(3)
    method = c1.radio("Method", ["Grad-CAM", "Saliency"], horizontal=True, key="inside-method")
    classes = source.classes
    target_opt = c2.selectbox("Explain class", ["(predicted)", *classes], key="inside-target")
    repeated = {p[0].split("#")[0] for p in points if "#" in p[0]}  # modules run several times
    cam_layer = c3.selectbox("Grad-CAM layer", ["(auto: end of the convolutional part)",
                                                *[p[0] for p in points if len(p[1]) == 3 and p[0] not in repeated
                                                  and "#" not in p[0]]],
                             key="inside-cam-layer", disabled=method != "Grad-CAM")
    target = None if target_opt == "(predicted)" else classes.index(target_opt)
    try:
        if method == "Grad-CAM":
            layer_arg = None if cam_layer.startswith("(auto") else cam_layer
            cam = grad_cam(source.model, x, target=target, layer=layer_arg)
        else:
            cam = saliency(source.model, x, target=target)
    except (CnnlabError, RuntimeError, ValueError) as err:  # captum/torch complaints: a message, not a trace
        show_error(err)
        return
    a, b = st.columns(2)
    a.image(overlay(shown, cam.heatmap), width="stretch",
            caption=f"{method} for '{classes[cam.target]}'" + (f" at layer {cam.layer}" if cam.layer else ""))
    b.markdown("**Top-5 prediction**")
    b.altair_chart(top5_chart(cam, classes), width="stretch")
    if source.kind == "zoo":
        b.caption(":material/warning: This model is untrained: its prediction is a guess and the heatmap "
                  "shows where random weights respond, not what the network learnt. Pick a trained run.")


def top5_chart(cam: CamResult, classes: list[str]) -> alt.Chart:
    """The five most probable classes, most probable first (not alphabetical)."""
    top = cam.probabilities.argsort()[::-1][:5]
    frame = pd.DataFrame({"class": [classes[i] for i in top], "probability": [float(cam.probabilities[i]) for i in top]})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("probability:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]), title="probability"),
        y=alt.Y("class:N", sort=None, title=None), tooltip=["class", alt.Tooltip("probability:Q", format=".1%")])


intro()
source, image = pick()
x, points = forward(source, image)
shown = show_input(source, x, points)
tab_maps, tab_kernels, tab_cam, tab_channel = st.tabs(["Feature maps", "Kernels", "Class-activation map",
                                                      "What a channel responds to"])
with tab_maps:
    feature_maps(source, x, points)
with tab_kernels:
    training_kernels(source)
    kernels(source)
with tab_cam:
    class_activation(source, x, points, shown)
with tab_channel:
    features_view.channel_tab(source)
