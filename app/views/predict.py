"""Predict: the top-k classes of one image for a trained run or a pretrained model."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.common import image_picker, model_picker, show_error
from cnnlab.activations import denormalize
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import predict_topk
from cnnlab.i18n import _, fmt

st.title(_("Predict"))
st.write(_("Give one image to a trained network and see the classes it finds most probable, as in "
           "lecture 000's per-image top-k plot. Upload your own picture, take a bundled photo or an "
           "image of a dataset, or **draw** a digit or a shape and watch the answer follow your pen."))

source = model_picker("predict", allow_zoo=False)
if source is None:
    st.stop()
image = image_picker("predict", source)
if image is None:
    st.stop()

n_classes = len(source.classes)
k = st.slider(_("Top-k"), 1, min(10, n_classes), min(5, n_classes), key="predict-k") if n_classes > 1 else 1
try:
    top = predict_topk(source.model, image, source, k)
    shown = denormalize(source.to_input(image), source.mean, source.std)
except CnnlabError as err:
    show_error(err)
    st.stop()

col_img, col_chart = st.columns([1, 2])
col_img.image(shown, width=220, caption=_("As the model sees it: {shape} (original {width} x {height})").format(
    shape=" x ".join(map(str, source.input_shape)), width=image.size[0], height=image.size[1]))
best, p = top[0]
col_chart.markdown(_("**{model}** says **{label}** with probability **{p}**.").format(
    model=source.label, label=best, p=fmt(p, ".1%")))
df = pd.DataFrame(top, columns=["class", "probability"])
bars = alt.Chart(df).mark_bar().encode(
    alt.X("probability:Q", title=_("probability"), axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
    alt.Y("class:N", sort=None, title=None),
    tooltip=[alt.Tooltip("class:N", title=_("class")),
             alt.Tooltip("probability:Q", title=_("probability"), format=".2%")],
)
text = bars.mark_text(align="left", dx=3).encode(alt.Text("probability:Q", format=".1%"))
col_chart.altair_chart((bars + text).properties(height=alt.Step(28)), width="stretch")
if source.kind == "run":
    grey = image.mode == "RGB" and source.input_shape[0] == 1
    caption = (_("The image is converted to grey and resized to {height} x {width} as in training. A network only "
                 "knows its own classes: on an image unlike its training data its answer means little.") if grey else
               _("The image is resized to {height} x {width} as in training. A network only knows its own classes: "
                 "on an image unlike its training data its answer means little."))
    col_chart.caption(caption.format(height=source.input_shape[1], width=source.input_shape[2]))
