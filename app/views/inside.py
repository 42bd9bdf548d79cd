"""Look inside: feature maps, kernels and class-activation maps of a model on one image."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates
from torch import nn

from app.common import image_picker, model_picker, show_error
from cnnlab.activations import (
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

st.title("Look inside")
st.write("Feed one image to a network and watch what each layer makes of it: every channel of "
         "a layer as a picture, the learned kernels, and where the network looks when it decides. "
         "Choose **Draw** to sketch the image yourself: the maps change with every stroke.")

source = model_picker("inside")
if source is None:
    st.stop()
image = image_picker("inside", source)
if image is None:
    st.stop()

try:
    x = source.to_input(image)
    points = activation_points(source.model, x)
except CnnlabError as err:
    show_error(err)
    st.stop()

shown = denormalize(x, source.mean, source.std)
col_img, col_info = st.columns([1, 3])
col_img.image(shown, caption=f"Input as the model sees it: {' x '.join(map(str, source.input_shape))}",
              width=220)
col_info.markdown(f"**{source.label}**  \n{len(points)} layer calls in one forward pass; "
                  f"{len(source.classes)} classes.")

tab_maps, tab_kernels, tab_cam = st.tabs(["Feature maps", "Kernels", "Class-activation map"])

with tab_maps:
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
    else:
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
            st.markdown("**One channel, large**")
            n_ch = stats.shape[0]
            default = stats.strongest_channel if stats.strongest_channel is not None else 0
            key = f"inside-channel-{layer}"  # per layer: a channel number from another layer may not exist here
            if click and click.get("width") and click.get("unix_time") != st.session_state.get(f"{key}-clicked"):
                st.session_state[f"{key}-clicked"] = click.get("unix_time")  # a new click, once: the number stays free
                scale = grid.size[0] / click["width"]
                picked = grid_channel_at(grid.size, min(limit, n_ch), click["x"] * scale, click["y"] * scale)
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

with tab_kernels:
    convs = [n for n, m in source.model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        st.info("This model has no convolution.")
    else:
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

with tab_cam:
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
    else:
        a, b = st.columns(2)
        a.image(overlay(shown, cam.heatmap), width="stretch",
                caption=f"{method} for '{classes[cam.target]}'" + (f" at layer {cam.layer}" if cam.layer else ""))
        top = cam.probabilities.argsort()[::-1][:5]
        b.markdown("**Top-5 prediction**")
        frame = pd.DataFrame({"class": [classes[i] for i in top], "probability": [float(cam.probabilities[i]) for i in top]})
        b.altair_chart(alt.Chart(frame).mark_bar().encode(  # most probable first, not alphabetical
            x=alt.X("probability:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]), title="probability"),
            y=alt.Y("class:N", sort=None, title=None), tooltip=["class", alt.Tooltip("probability:Q", format=".1%")]),
            width="stretch")
        if source.kind == "zoo":
            b.caption(":material/warning: This model is untrained: its prediction is a guess and the heatmap "
                      "shows where random weights respond, not what the network learnt. Pick a trained run.")
