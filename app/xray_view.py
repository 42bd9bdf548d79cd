"""The training X-ray drawn (issue 25), shared by the Train page (live), the Runs page, Look inside and the
Lessons page: the gradient heat map, the update-to-weight ratios, the dead and saturated shares, the
diagnoses in words, and the slider through the first convolution's kernels epoch by epoch.

The samples are :mod:`cnnlab.xray`'s dicts (a job's ``xray`` events, a run's ``xray.jsonl``); every
chart is built from them here and only when a new sample arrived (the live view polls every 1.5 s)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import altair as alt
import pandas as pd
import streamlit as st
from PIL import Image

from app.common import show_error
from cnnlab.activations import kernel_image
from cnnlab.errors import CnnlabError
from cnnlab.i18n import N_, _, fmt, language, ngettext
from cnnlab.runs import load_run, run_xray
from cnnlab.xray import RULE_OF_THUMB, XrayRecord, diagnose, kernels_array, layer_label

MAX_COLUMNS = 200  # samples drawn in the heat map and the ratio lines (evenly picked, the newest always)
KERNELS_WIDTH = 480  # pixels a kernel grid is drawn at, in whole-pixel (nearest) steps
KIND_LABELS = {"relu": N_("dead (ReLU)"), "tanh": N_("saturated (tanh)"), "sigmoid": N_("saturated (sigmoid)")}
KIND_COLOURS = ["#e45756", "#4c78a8", "#f58518"]
RULE = f"{RULE_OF_THUMB:.0e}".replace("e-0", "e-")  # "1e-3", as the rule of thumb is written
PROBLEM_ICON = ":material/warning:"  # before a line the X-ray files could not give (the problem says it in words)
LIVE = "xray-live"  # session state: the live view's charts, kept until a new sample arrives


@dataclass
class XrayCharts:
    """What the X-ray section draws for one series of samples."""

    heat: alt.LayerChart
    ratios: alt.LayerChart
    shares: alt.LayerChart | None  # None: the network has no ReLU, tanh or sigmoid module
    heat_height: int  # pixels: Streamlit sizes a chart with a discrete axis itself unless told
    shares_height: int
    latest_step: int
    diagnoses: list[str]


# ---- the numbers as tables ----------------------------------------------------------------------------


def thinned(samples: Sequence[dict[str, Any]], limit: int = MAX_COLUMNS) -> list[dict[str, Any]]:
    """At most ``limit`` samples, evenly spread over the training, the first and the newest always in."""
    if len(samples) <= limit:
        return list(samples)
    picked = {round(i * (len(samples) - 1) / (limit - 1)) for i in range(limit)}
    return [samples[i] for i in sorted(picked)]


def layer_order(samples: Sequence[dict[str, Any]]) -> list[str]:
    """The weighted layers in forward (registration) order, as the samples list them."""
    order: dict[str, None] = {}
    for s in samples:
        order.update((e["name"], None) for e in s.get("layers", []))
    return list(order)


def layer_frame(samples: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per layer and sample: the step range the cell covers, the gradient norm and the update ratio."""
    rows, start = [], 0
    for s in samples:
        for e in s.get("layers", []):
            rows.append({"layer": e["name"], "start": start, "step": s["step"], "grad_norm": _float(e.get("grad_norm")),
                         "update_ratio": _float(e.get("update_ratio")), "weight_norm": _float(e.get("weight_norm"))})
        start = s["step"]
    return pd.DataFrame(rows, columns=["layer", "start", "step", "grad_norm", "update_ratio", "weight_norm"])


def _float(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def share_frame(sample: dict[str, Any]) -> pd.DataFrame:
    """One row per activation call of ``sample``: "after S2", what is measured (dead or saturated), the share."""
    rows = []
    for e in sample.get("activations", []):
        kind = e.get("kind")
        if kind not in KIND_LABELS:
            continue
        where = _("after {layer}").format(layer=layer_label(e["after"])) if e.get("after") else layer_label(e["name"])
        rows.append({"where": where, "name": e["name"], "measure": _(KIND_LABELS[kind]),
                     "share": _float(e.get("dead" if kind == "relu" else "saturated"))})
    frame = pd.DataFrame(rows, columns=["where", "name", "measure", "share"])
    twice = frame["where"].duplicated(keep=False)  # the same layer feeding two calls: their own names tell them apart
    frame.loc[twice, "where"] = frame.loc[twice, "where"] + " (" + frame.loc[twice, "name"] + ")"
    return frame


# ---- the charts ---------------------------------------------------------------------------------------


AXIS_ROOM = 80  # pixels of a chart's height that its x axis and its title take
STEPS = alt.Axis(format=",d", tickMinStep=1)  # training steps are whole numbers


def rows_height(n: int, per_row: int, high: int = 600) -> int:
    """A chart's height for ``n`` rows of a discrete axis, at most ``high`` pixels."""
    return min(high, per_row * max(n, 1) + AXIS_ROOM)


def readable(chart: alt.LayerChart) -> alt.LayerChart:
    """Axis and legend text large enough for a projector at 1280x720."""
    return chart.configure_axis(labelFontSize=13, titleFontSize=14).configure_legend(labelFontSize=13,
                                                                                     titleFontSize=14)


def heat_map(frame: pd.DataFrame, order: list[str]) -> alt.LayerChart:
    """Layers (forward order, top to bottom) by training step, coloured by the gradient norm on a log scale;
    grey where there is no gradient (zero, or not a number)."""
    x = alt.X("start:Q", title=_("training step"), scale=alt.Scale(nice=False, zero=False), axis=STEPS)
    y = alt.Y("layer:N", sort=order, title=None, axis=alt.Axis(labelLimit=220, labelOverlap="greedy"))
    tooltip = [alt.Tooltip("layer:N", title=_("layer")), alt.Tooltip("step:Q", title=_("step")),
               alt.Tooltip("grad_norm:Q", title=_("gradient norm"), format=".3e")]
    flowing = frame["grad_norm"] > 0
    cells = alt.Chart(frame[flowing]).mark_rect().encode(
        x, alt.X2("step:Q"), y,
        alt.Color("grad_norm:Q", title=_("gradient norm"), scale=alt.Scale(type="log", scheme="viridis"),
                  legend=alt.Legend(format=".0e", orient="right")), tooltip=tooltip)
    none = alt.Chart(frame[~flowing]).mark_rect(color="#c8c8c8").encode(x, alt.X2("step:Q"), y, tooltip=tooltip)
    return readable(alt.layer(cells, none))


def ratio_chart(frame: pd.DataFrame, order: list[str]) -> alt.LayerChart:
    """Each layer's update-to-weight ratio over the steps (log scale) against the 1e-3 rule of thumb."""
    y = alt.Y("update_ratio:Q", title=_("update / weight (log)"), scale=alt.Scale(type="log"),
              axis=alt.Axis(format=".0e"))
    lines = alt.Chart(frame[frame["update_ratio"] > 0]).mark_line(point=alt.OverlayMarkDef(size=40)).encode(
        alt.X("step:Q", title=_("training step"), axis=STEPS), y,
        alt.Color("layer:N", sort=order, title=None,
                  scale=alt.Scale(scheme="tableau10" if len(order) <= 10 else "tableau20"),  # distinct hues first
                  legend=alt.Legend(orient="right", labelLimit=200, symbolLimit=40)),
        tooltip=[alt.Tooltip("layer:N", title=_("layer")), alt.Tooltip("step:Q", title=_("step")),
                 alt.Tooltip("update_ratio:Q", title=_("update / weight"), format=".2e")])
    rule = pd.DataFrame({"update_ratio": [RULE_OF_THUMB]})
    line = alt.Chart(rule).mark_rule(color="#333333", strokeDash=[6, 4], strokeWidth=2).encode(y)
    words = alt.Chart(rule).mark_text(text=_("rule of thumb {value}").format(value=RULE), align="left",
                                      baseline="bottom", dx=4, dy=-3, fontSize=14,
                                      color="#333333").encode(y, x=alt.value(0))
    return readable(alt.layer(lines, line, words).properties(height=300))


def share_bars(frame: pd.DataFrame) -> alt.LayerChart:
    """One bar per activation call, 0-100%: the share of dead ReLU units or of saturated tanh/sigmoid values."""
    base = alt.Chart(frame).encode(
        alt.Y("where:N", sort=list(frame["where"]), title=None, axis=alt.Axis(labelLimit=260)),
        alt.X("share:Q", title=_("share of the units"), scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")))
    measures = [_(m) for m in KIND_LABELS.values()]  # as share_frame wrote them
    present = [(m, c) for m, c in zip(measures, KIND_COLOURS) if m in set(frame["measure"])]
    bars = base.mark_bar().encode(  # a legend of the measures shown only, each in its own colour on every page
        alt.Color("measure:N", title=None,
                  scale=alt.Scale(domain=[m for m, _ in present], range=[c for _, c in present]),
                  legend=alt.Legend(orient="bottom", columns=1)),
        tooltip=[alt.Tooltip("where:N", title=_("where")), alt.Tooltip("measure:N", title=_("measure")),
                 alt.Tooltip("share:Q", title=_("share"), format=".1%")])
    values = base.mark_text(align="left", dx=4, fontSize=14).encode(alt.Text("share:Q", format=".0%"))
    return readable(alt.layer(bars, values))


def charts_of(samples: Sequence[dict[str, Any]]) -> XrayCharts:
    """Every chart of the X-ray section, and the diagnoses, for a series of samples (at least one)."""
    shown = thinned(samples)
    order = layer_order(shown)
    frame = layer_frame(shown)
    shares = share_frame(samples[-1])
    return XrayCharts(heat_map(frame, order), ratio_chart(frame, order), share_bars(shares) if len(shares) else None,
                      rows_height(len(order), 28), rows_height(len(shares), 34) + 30,
                      int(samples[-1]["step"]), diagnose(samples))


# ---- drawing ------------------------------------------------------------------------------------------


def plain(sentence: str) -> str:
    """A sentence shown literally in markdown (layer names may hold underscores or brackets)."""
    return re.sub(r"([\\`*_\[\]$~|#<>])", r"\\\1", str(sentence))


def diagnoses(sentences: Sequence[str]) -> None:
    """The diagnoses as warnings; one quiet line when there is none."""
    if not sentences:
        st.caption(_(":material/check: Nothing stands out in the last samples: no vanishing gradients, no "
                     "saturated or dead units, steps of a sensible size."))
    for sentence in sentences:
        st.warning(plain(sentence), icon=":material/troubleshoot:")


def draw(charts: XrayCharts, count: int) -> None:
    """The X-ray section: diagnoses first (what a class asks), then the three charts with their captions."""
    diagnoses(charts.diagnoses)
    st.markdown(_("**Gradient norm per layer** (log colour scale)"))
    st.altair_chart(charts.heat, width="stretch", height=charts.heat_height)
    st.caption(ngettext("Each row is a layer with weights, the first at the top; each column a sampled step "
                        "({n} sample): the brighter the cell, the larger that layer's gradient, and grey means no "
                        "gradient reached it.",
                        "Each row is a layer with weights, the first at the top; each column a sampled step "
                        "({n} samples): the brighter the cell, the larger that layer's gradient, and grey means no "
                        "gradient reached it.", count).format(n=count))
    a, b = st.columns([3, 2])
    a.markdown(_("**Update-to-weight ratio per layer**"))
    a.altair_chart(charts.ratios, width="stretch")
    a.caption(_("How much one step changes each layer's weights, relative to their size (log scale): lines near the "
                "dashed rule of thumb ({rule}) learn at a healthy pace, far below they hardly move, far "
                "above they jump (a layer whose weights did not move at all has no line).").format(rule=RULE))
    b.markdown(_("**Dead and saturated units** at step {step}").format(step=fmt(charts.latest_step, ",")))
    if charts.shares is None:
        b.caption(_("This network has no ReLU, tanh or sigmoid module, so there is no dead or saturated share to "
                    "show."))
        return
    b.altair_chart(charts.shares, width="stretch", height=charts.shares_height)
    b.caption(_("One bar per activation, named after the layer it follows: the share of ReLU units that gave zero "
                "for every image of the batch, or of tanh/sigmoid outputs stuck at their limits; near 0% is "
                "healthy."))


def live(job_id: int, samples: Sequence[dict[str, Any]], enabled: bool) -> None:
    """The Train page's live X-ray of a job: the charts are built again only when a new sample arrived."""
    if not enabled:
        st.caption(_("The training X-ray is off for this training (the **Training X-ray** setting under "
                     "Advanced)."))
        return
    if not samples:
        st.caption(_("The X-ray appears after the first sampled step."))
        return
    kept = st.session_state.get(LIVE)
    key = (job_id, len(samples), samples[-1]["step"], language())  # the charts' words are in the session's language
    if kept is None or kept[0] != key:
        kept = (key, charts_of(samples))
        st.session_state[LIVE] = kept
    draw(kept[1], len(samples))


# ---- a finished (or running) run ----------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=16)
def _record(run_id: str, stamp: tuple) -> XrayRecord:
    """``stamp`` (the X-ray files' sizes and times) is only part of the cache key: a running run's files grow."""
    return run_xray(run_id)


def stored(run_id: str) -> XrayRecord | None:
    """A run's X-ray, read once per change of its files; a run that cannot be read says why (None)."""
    try:
        folder = load_run(run_id).path
        stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else None
                      for p in (folder / "xray.jsonl", folder / "kernels.jsonl"))
        with st.spinner(_("Reading the run's X-ray…")):  # not the cache's own spinner: its text is fixed at import
            return _record(run_id, stamp)
    except (CnnlabError, OSError) as err:
        show_error(err, context=_("The X-ray of this run cannot be read"))
        return None


@st.cache_resource(max_entries=4, show_spinner=False)
def _charts_of_run(run_id: str, count: int, lang: str, _samples: tuple) -> XrayCharts:
    """A run's charts, built once per number of samples and language (``_samples`` is not hashed: ``count``
    stands for it)."""
    return charts_of(_samples)


def run_section(run_id: str, key: str) -> None:
    """A run's X-ray as the Train page shows it live, its problems as a caption, then the kernel slider."""
    record = stored(run_id)
    if record is None:
        return
    for problem in record.problems:
        st.caption(f"{PROBLEM_ICON} {problem}")
    if not record.samples:
        st.info(_("This run has no X-ray: it was trained before the X-ray was recorded, or with the **Training "
                  "X-ray** setting off."), icon=":material/visibility_off:")
    else:
        draw(_charts_of_run(run_id, len(record.samples), language(), tuple(record.samples)), len(record.samples))
    if record.kernels:
        st.markdown(_("**The first convolution's kernels, epoch by epoch**"))
        kernel_slider(record.kernels, key)


def when_label(epoch: int) -> str:
    """An epoch of the kernel snapshots as the slider names it (0: before training)."""
    return _("before training") if epoch == 0 else _("after epoch {epoch}").format(epoch=epoch)


def _tiles(channels: int) -> str:
    """How a kernel grid draws a filter of ``channels`` input channels (:func:`kernel_picture`)."""
    return "rgb" if channels == 3 else "grey" if channels == 1 else "rows"


# (how the tiles are drawn, whether a slider moves through epochs) -> the caption under the kernel grid
KERNEL_CAPTIONS = {
    ("rgb", False): N_("{layer} {when}: {filters} filters of {c} x {h} x {w}, each tile is a filter, its three input "
                       "channels as red, green and blue, each tile scaled to its own range."),
    ("grey", False): N_("{layer} {when}: {filters} filters of {c} x {h} x {w}, each tile is a filter, black at its "
                        "smallest weight and white at its largest, each tile scaled to its own range."),
    ("rows", False): N_("{layer} {when}: {filters} filters of {c} x {h} x {w}, each row is a filter, one grey tile "
                        "per input channel, each tile scaled to its own range."),
    ("rgb", True): N_("{layer} {when}: {filters} filters of {c} x {h} x {w}, each tile is a filter, its three input "
                      "channels as red, green and blue, each tile scaled to its own range; slide through the epochs "
                      "to see random noise turn into edge, blob and colour detectors."),
    ("grey", True): N_("{layer} {when}: {filters} filters of {c} x {h} x {w}, each tile is a filter, black at its "
                       "smallest weight and white at its largest, each tile scaled to its own range; slide through "
                       "the epochs to see random noise turn into edge, blob and colour detectors."),
    ("rows", True): N_("{layer} {when}: {filters} filters of {c} x {h} x {w}, each row is a filter, one grey tile "
                       "per input channel, each tile scaled to its own range; slide through the epochs to see random "
                       "noise turn into edge, blob and colour detectors."),
}


def kernel_slider(kernels: Sequence[dict[str, Any]], key: str) -> None:
    """A slider over the epochs of the kernel snapshots (0: before training) and the kernels at that epoch."""
    by_epoch = {int(k["epoch"]): k for k in kernels}
    epochs = sorted(by_epoch)
    epoch = epochs[0]
    if len(epochs) > 1:
        epoch = st.select_slider(_("Kernels at"), epochs, value=epochs[0], format_func=when_label, key=key,
                                 help=_("Move it (or use the arrow keys) to watch the filters change while the "
                                        "network learns."))
    snapshot = by_epoch[epoch]
    try:
        weights = kernels_array(snapshot)
    except ValueError as err:  # read_xray checked it; a message rather than a trace all the same
        show_error(str(err), context=_("This kernels snapshot cannot be drawn"))
        return
    st.image(kernel_picture(weights), output_format="PNG", width="content")
    f, c, h, w = weights.shape
    caption = _(KERNEL_CAPTIONS[_tiles(c), len(epochs) > 1])
    st.caption(caption.format(layer=snapshot["layer"], when=when_label(epoch), filters=f, c=c, h=h, w=w))


def kernel_picture(weights: Any) -> Image.Image:
    """The kernels as a grid about :data:`KERNELS_WIDTH` pixels wide, every weight a sharp square."""
    f, c = weights.shape[:2]
    columns = c if c not in (1, 3) else max(1, math.ceil(math.sqrt(f)))
    tile = max(24, min(120, KERNELS_WIDTH // columns))
    return kernel_image(weights, max_filters=f, max_in=c, tile_size=tile, gap=max(2, tile // 10))
