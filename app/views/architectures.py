"""Architectures: every zoo model layer by layer — shapes, parameters, MACs, receptive field."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.common import remember, show_error, short_bytes, short_number
from app.language import translated_tabs
from app.share import setting_shown
from cnnlab.diagram import MAX_DEPTH, model_graph, node_count
from cnnlab.errors import CnnlabError
from cnnlab.i18n import N_, _, fmt, language
from cnnlab.inspect import ModelSummary, summarize
from cnnlab.models import ModelSpec, get_spec, list_models

STORE = "arch-form"
SHAPE_KEYS = ("arch-c", "arch-h", "arch-w", "arch-k")
LARGE_GRAPH = 400  # nodes; beyond this the browser takes long to lay the drawing out
# the layer table's and the comparison's column headings: English data keys, headings shown translated
COLUMN_LABELS = {"layer": N_("layer"), "type": N_("type"), "depth": N_("depth"), "output shape": N_("output shape"),
                 "params": N_("params"), "trainable": N_("trainable"), "MACs": N_("MACs"),
                 "receptive field": N_("receptive field"), "params =": N_("params ="), "size =": N_("size =")}
COMPARE_LABELS = {"model": N_("model"), "input": N_("input"), "parameters": N_("parameters"),
                  "MACs (M)": N_("MACs (M)"), "weight layers": N_("weight layers"), "year": N_("year")}
# each tab's name, shown translated (the tabs are told apart by their order)
TABS = (N_("Layer table"), N_("Shape flow"), N_("Formulas"), N_("Diagram"), N_("Compare models"))


# cached per language (``lang``): a summary's parameter words and receptive fields are text; the spinners are
# shown by the callers, as a decorator's text is fixed at import


@st.cache_data(show_spinner=False, max_entries=64)
def _summary(name: str, shape: tuple[int, int, int], classes: int, lang: str) -> ModelSummary:
    return summarize(name, shape, classes)


def cached_summary(name: str, shape: tuple[int, int, int], classes: int) -> ModelSummary:
    with st.spinner(_("Inspecting…")):
        return _summary(name, shape, classes, language())


@st.cache_data(show_spinner=False, max_entries=64)
def _graph(name: str, shape: tuple[int, int, int], classes: int, depth: int) -> str:
    return model_graph(name, shape, depth=depth, num_classes=classes)


def cached_graph(name: str, shape: tuple[int, int, int], classes: int, depth: int) -> str:
    with st.spinner(_("Drawing…")):
        return _graph(name, shape, classes, depth)


def intro() -> bool:
    """The page's title and purpose; returns the sidebar switch that also offers the _adaptive twins."""
    st.title(_("Architectures"))
    st.caption(_("Pick a network from the course and its input: what every layer does to the tensor. Nothing is "
                 "computed for real (PyTorch's *meta* device), so even VGG-16 appears at once."))
    return st.sidebar.toggle(_("Show _adaptive variants"), value=False, key="arch-adaptive",
                             help=_("Twins of fixed-input models that accept any input size."))


def _model_changed() -> None:
    """A new model starts from its own input shape and class count."""
    sp = get_spec(st.session_state["arch-model"])
    for key, value in zip(SHAPE_KEYS, (*sp.input_shape, sp.num_classes)):
        st.session_state[key] = st.session_state.setdefault(STORE, {})[key] = value


def pick(show_adaptive: bool, where=st) -> tuple[str, list[str]]:
    """The model picker (in ``where``); returns the model's name and the names offered (Compare offers the same)."""
    all_names = list_models()
    model_key = remember(STORE, "arch-model", "lenet" if "lenet" in all_names else all_names[0], options=all_names)
    names = [n for n in all_names if show_adaptive or not get_spec(n).adaptive or n == st.session_state[model_key]]
    if setting_shown(model_key):
        where.selectbox(_("Model"), names, key=model_key, on_change=_model_changed,
                     format_func=lambda n: f"{get_spec(n).display_name}  ·  {n}")
    return st.session_state[model_key], names


def input_fields(spec: ModelSpec, cols: list) -> tuple[tuple[int, int, int], int]:
    """Channels, height, width and classes (one per column of ``cols``), starting from the model's own;
    returns (shape, classes)."""
    limits = ((1, 64), (1, 2048), (1, 2048), (1, 100_000))
    labels = (_("Channels"), _("Height"), _("Width"), _("Classes"))
    values = []
    for col, key, label, (lo, hi), default in zip(cols, SHAPE_KEYS, labels, limits, (*spec.input_shape, spec.num_classes)):
        remember(STORE, key, default, bounds=(lo, hi))
        if setting_shown(key):
            col.number_input(label, lo, hi, key=key)
        values.append(int(st.session_state[key]))
    channels, height, width, classes = values
    return (channels, height, width), classes


def card(spec: ModelSpec) -> None:
    """Where the model comes from: family, year, paper, seed, default input (one caption: the tabs stay high)."""
    text = _("**{name}** — {family}, {year}. *{paper}*. From lecture {seed}; default input {shape}, "
             "{classes} classes.").format(name=spec.display_name, family=spec.family, year=spec.year,
                                           paper=spec.paper, seed=spec.seed, shape="x".join(map(str, spec.input_shape)),
                                           classes=spec.num_classes)
    notes = spec.notes_text()
    st.caption(f"{text} {notes}" if notes else text)


def controls(show_adaptive: bool) -> tuple[str, list[str], tuple[int, int, int], int]:
    """The model and its input in one row, its card under them; returns (name, names, shape, classes)."""
    cols = st.columns([3, 1, 1, 1, 1])
    name, names = pick(show_adaptive, cols[0])
    spec = get_spec(name)
    shape, classes = input_fields(spec, cols[1:])
    card(spec)
    return name, names, shape, classes


def summary(name: str, shape: tuple[int, int, int], classes: int) -> ModelSummary:
    """The model's per-layer summary; an input the model cannot take ends the page with a message."""
    try:
        return cached_summary(name, shape, classes)
    except CnnlabError as err:
        show_error(err)
        st.stop()


def headline(s: ModelSummary) -> None:
    """The five totals."""
    m1, m2, m3, m4, m5 = st.columns(5)
    # short units, so no value is cut off on a projector at 1280x720; the exact number is in each help
    m1.metric(_("Parameters"), short_number(s.total_params),
              help=_("{n} parameters").format(n=fmt(s.total_params, ",")))
    m2.metric(_("Trainable"), short_number(s.trainable_params),
              help=_("{n} trainable parameters").format(n=fmt(s.trainable_params, ",")))
    m3.metric(_("MACs / image"), short_number(s.total_macs),
              help=_("{n} multiply-accumulates per image").format(n=fmt(s.total_macs, ",")))
    m4.metric(_("Activations / image"), short_bytes(s.activation_bytes),
              help=_("{n} bytes").format(n=fmt(s.activation_bytes, ",")))
    m5.metric(_("Parameter memory"), short_bytes(s.param_bytes), help=_("{n} bytes").format(n=fmt(s.param_bytes, ",")))


@st.cache_data(show_spinner=False, max_entries=64)
def layer_table(name: str, shape: tuple[int, int, int], classes: int, leaves: bool,
                lang: str) -> tuple[pd.DataFrame, dict]:
    """The table and its column widths, made once per model, input and language (a page load only reads them)."""
    records = _summary(name, shape, classes, lang).to_records(leaves_only=leaves)
    return pd.DataFrame(records), _fitted_columns(records)


def table(name: str, shape: tuple[int, int, int], classes: int, s: ModelSummary) -> None:
    """Every layer: shape, parameters, MACs, receptive field, and the arithmetic behind them."""
    leaves = st.toggle(_("Only layers without children"), value=True, key="arch-leaves")
    frame, columns = layer_table(name, shape, classes, leaves, language())
    st.dataframe(frame, hide_index=True, width="stretch", height=min(38 + 35 * len(s.rows), 600),
                 column_config=columns)
    st.caption(_("MACs count weight multiply-accumulates of convolutions and fully connected layers. "
                 "Receptive field: how many input pixels one output value can see; jump: the "
                 "distance in input pixels between neighbouring outputs. *params =* is the count as "
                 "the product it comes from (filters x kernel height x kernel width x input channels "
                 "+ biases; outputs x inputs + biases); *size =* is the output-size formula with the "
                 "layer's numbers."))


NUMBER_COLUMNS = ("params", "trainable", "MACs")


def _fitted_columns(records: list[dict]) -> dict:
    """Every column as wide as its longest value (numbers with their thousands separators), so that no
    number loses its leading digits and no formula its end on a 1280-pixel screen (the table scrolls)."""
    config = {}
    for key in records[0] if records else ():
        longest = max(len(f"{r[key]:,}" if key in NUMBER_COLUMNS and isinstance(r[key], int) else str(r[key]))
                      for r in records)
        label = _(COLUMN_LABELS[key]) if key in COLUMN_LABELS else key
        width = max(len(label), longest) * 9 + 28  # about 9 px a character at the table's font size
        config[key] = (st.column_config.NumberColumn(label, format="localized", width=width)
                       if key in NUMBER_COLUMNS else st.column_config.TextColumn(label, width=width))
    return config


def line_spec(field: str, title: str) -> dict:
    """A Vega-Lite line of ``field`` (its axis titled ``title``) along the layers, written out: Altair's and
    st.line_chart's schema checks cost more than the drawing."""
    layer = _("layer")
    return {"mark": {"type": "line", "point": True},
            "encoding": {"x": {"field": "layer", "type": "ordinal", "sort": None, "title": layer},
                         "y": {"field": field, "type": "quantitative", "title": title},
                         "tooltip": [{"field": "layer", "title": layer},
                                     {"field": field, "type": "quantitative", "title": title}]}}


def shape_flow(s: ModelSummary) -> None:
    """Spatial size against channels, layer after layer."""
    spatial = [r for r in s.leaf_rows if len(r.output_shape) == 3]
    if not spatial:
        st.info(_("This model has no spatial layers to plot."))
        return
    flow = pd.DataFrame({
        "layer": [f"{i:02d} {r.name}" for i, r in enumerate(spatial)],
        "spatial size (H)": [r.output_shape[1] for r in spatial],
        "channels": [r.output_shape[0] for r in spatial],
    })
    a, b = st.columns(2)
    a.markdown(_("**Spatial size** shrinks…"))
    a.vega_lite_chart(flow, line_spec("spatial size (H)", _("spatial size (H)")), width="stretch")
    b.markdown(_("…while **channels** grow"))
    b.vega_lite_chart(flow, line_spec("channels", _("channels")), width="stretch")


def formulas(s: ModelSummary) -> None:
    """One layer's output-size and parameter formulas with its numbers."""
    taught = [r for r in s.rows if r.formula or r.param_formula]
    if not taught:
        st.info(_("No layer with a kernel or parameters in this model."))
        return
    layer = st.selectbox(_("Layer"), [r.name for r in taught], key="arch-formula-layer",
                         format_func=lambda n: f"{n} ({s.row(n).type})")
    r = s.row(layer)
    size_col, param_col = st.columns(2)
    with size_col:
        st.markdown(_("**Output size**"))
        if r.formula:
            st.latex(r"W_{out} = \left\lfloor \frac{W - F + 2P}{S} \right\rfloor + 1")
            st.code(r.formula, language=None)
            st.caption(_("F = kernel {kernel}, S = stride {stride}, P = padding {padding}; output {shape}.").format(
                kernel=r.kernel, stride=r.stride, padding=r.padding, shape=" x ".join(map(str, r.output_shape))))
        else:
            st.caption(_("{type} has no kernel sliding over the image: its output is {shape}.").format(
                type=r.type, shape=" x ".join(map(str, r.output_shape))))
    with param_col:
        st.markdown(_("**Parameters**"))
        if r.param_formula:
            st.code(r.param_formula, language=None)
            st.caption(f"{r.param_words[0].upper()}{r.param_words[1:]}.")
        else:
            st.caption(_("{type} learns nothing: 0 parameters.").format(type=r.type))
    st.caption(_("The layer table shows both for every layer, in its last two columns."))


def diagram(name: str, shape: tuple[int, int, int], classes: int) -> None:
    """The model as a graph, opened to the chosen depth of nested modules."""
    # depth 3 opens ResNet's blocks, so their shortcuts (the add nodes) show without a click
    depth_key = remember(STORE, "diagram-depth", 3, bounds=(0, MAX_DEPTH))
    if setting_shown(depth_key):
        st.slider(_("Block depth"), 0, MAX_DEPTH, key=depth_key,
                  help=_("How many levels of nested modules to open: 1 shows stages, "
                         "deeper levels open blocks into their layers."))
    depth = st.session_state[depth_key]
    try:
        dot = cached_graph(name, shape, classes, int(depth))
    except CnnlabError as err:
        show_error(err)
        return
    n_nodes = node_count(dot)
    if n_nodes > LARGE_GRAPH:
        st.caption(_("{n} nodes: a large drawing takes a while to appear; a lower block depth gives a shorter "
                     "overview.").format(n=n_nodes))
    st.graphviz_chart(dot, width="content")  # natural size: a stretched narrow graph had giant boxes
    st.caption(_("Edges carry the tensor's shape (channels x height x width); residual additions "
                 "(add) and branch concatenations (cat) are where several edges meet. "
                 "`{command}` writes it to a file.").format(
        command=f"python -m cnnlab graph {name} --depth {depth} --out {name}.dot"))


def compare(name: str, names: list[str]) -> None:
    """The model beside others, each at its own default input: parameters, MACs, depth, year."""
    options = [n for n in names if n != name]
    # kept in the page's store: the tab is drawn only while open, and Streamlit forgets an undrawn widget's value
    key = remember(STORE, "arch-compare", [n for n in ("alexnet", "vgg16", "cifar_resnet") if n != name][:2])
    st.session_state[key] = [n for n in st.session_state[key] if n in options]  # the model or the list changed
    others = st.multiselect(_("Compare with"), options, key=key)
    rows = []
    for n in [name, *others]:
        sp = get_spec(n)
        try:
            ss = cached_summary(n, sp.input_shape, sp.num_classes)
        except CnnlabError as err:
            show_error(err)
            continue
        rows.append({"model": n, "input": "x".join(map(str, sp.input_shape)),
                     "parameters": ss.total_params, "MACs (M)": round(ss.total_macs / 1e6, 1),
                     "weight layers": ss.depth(), "year": sp.year})
    frame = pd.DataFrame(rows)
    headings = {key: st.column_config.Column(_(label)) for key, label in COMPARE_LABELS.items()}
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        **headings, "parameters": st.column_config.NumberColumn(_("parameters"), format="localized")})
    if len(rows) > 1:  # a log scale: the CIFAR ResNet's 0.3 M stays visible beside VGG-16's 138 M
        st.vega_lite_chart(frame, {
            "mark": "bar", "height": 44 * len(rows) + 30,
            "encoding": {"x": {"field": "parameters", "type": "quantitative", "scale": {"type": "log"},
                               "title": _("parameters (log scale)")},
                         "y": {"field": "model", "type": "nominal", "sort": None, "title": None},
                         "tooltip": [{"field": "model", "title": _("model")},
                                     {"field": "parameters", "type": "quantitative", "format": ",",
                                      "title": _("parameters")}]},
        }, width="stretch")
        st.caption(_("Each step on the axis is ten times more parameters."))


name, names, shape, classes = controls(intro())
s = summary(name, shape, classes)
headline(s)
# the charts, the diagram and the comparison are drawn when their tab is opened (a rerun): drawn hidden, they
# cost every load of the page about half a second of CPU (browser and server together, measured against the page
# drawing them all); the table and the formulas are text
tab_table, tab_flow, tab_formula, tab_diagram, tab_compare = translated_tabs(TABS, key="arch-tab")
with tab_table:
    table(name, shape, classes, s)
if tab_flow.open:
    with tab_flow:
        shape_flow(s)
with tab_formula:
    formulas(s)
if tab_diagram.open:
    with tab_diagram:
        diagram(name, shape, classes)
if tab_compare.open:
    with tab_compare:
        compare(name, names)
