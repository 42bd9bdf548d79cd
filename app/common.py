"""Helpers shared by the pages: cached calls into cnnlab, the sidebar, model and image pickers."""

from __future__ import annotations

import base64
import contextlib
import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import pandas as pd
import streamlit as st
from PIL import Image

from app import share
from cnnlab.data import dataset_status, list_datasets, load_dataset, maker
from cnnlab.data.drawing import MAX_BYTES, EmptyDrawingError, decode_drawing, drawing_to_image, style_for
from cnnlab.data.gallery import to_pil
from cnnlab.data.images import bundled_photos, decode_image, load_bundled_photo
from cnnlab.device import describe_device
from cnnlab.errors import CnnlabError
from cnnlab.i18n import N_, _, fmt, language, ngettext, pgettext, set_language
from cnnlab.inspect import format_bytes
from cnnlab.jobs import get_manager
from cnnlab.mistakes import RunMistakes
from cnnlab.models import get_spec, list_models
from cnnlab.models.pretrained import PRETRAINED, weights_status
from cnnlab.runs import list_runs, load_run, load_run_data, run_label
from cnnlab.sources import load_source


@st.cache_data(show_spinner=False)
def device_text(lang: str) -> str:
    """The device in words, in the language ``lang`` (a cache key: one session's language never leaks)."""
    return describe_device()


def sidebar_status() -> None:
    with st.sidebar:
        st.caption(_("Device: **{device}**").format(device=device_text(language())))
        devices = get_manager().devices
        if len(devices) > 1:  # a server with several GPUs: one training on each at once
            st.caption(_("{n} devices ({names}): one training on each at once, the others wait in their "
                         "device's queue.").format(n=len(devices), names=", ".join(devices)))
        job_status()


@st.fragment(run_every=3.0)
def job_status() -> None:
    """The training jobs running or waiting on this server, refreshed every few seconds."""
    manager = get_manager()
    active = manager.active()
    if not active:
        st.caption(_("No training running."))
        return
    # which job is on which device, when there is more than one (one queue per GPU)
    several = len(manager.devices) > 1 or len({job.device for job in active}) > 1
    for job in active:
        said = {"id": job.id, "model": job.config.model, "dataset": job.config.dataset, "device": job.device}
        if job.state == "queued" and several:
            st.caption(_(":material/schedule: #{id} {model} on {dataset}: queued for {device} ({position})")
                       .format(position=job.position, **said))
        elif job.state == "queued":
            st.caption(_(":material/schedule: #{id} {model} on {dataset}: queued ({position})").format(
                position=job.position, **said))
        elif several:
            st.progress(job.progress, text=_("#{id} {model} on {dataset} · {device}").format(**said))
        else:
            st.progress(job.progress, text=_("#{id} {model} on {dataset}").format(**said))


def show_error(err: BaseException | str, context: str | None = None) -> None:
    """The one place that decides how a page shows what went wrong: a red box with, first, what
    could not be done (``context``, when the page knows it) in bold, then the library's message,
    which says what was wrong and what to do. Never a traceback. Every page shows a
    :class:`~cnnlab.errors.CnnlabError` through this."""
    message = str(err).strip() or type(err).__name__
    if context:
        message = _("**{context}:** {message}").format(context=context.rstrip(". "), message=message)
    st.error(message, icon=":material/error:")


def confirm_delete(prefix: str, item_id: str, *, label: str, help: str, warning: str,
                   delete: Callable[[str], object], failed: str | None = None, disabled: bool = False) -> bool:
    """A delete button that only asks: the deletion waits for "I am sure" and a second button, so nothing
    is lost to one click. Widget keys: ``{prefix}-delete``, ``{prefix}-sure-{item_id}``,
    ``{prefix}-delete-confirm``, ``{prefix}-delete-cancel``; ``{prefix}-confirm`` holds the id awaiting
    confirmation. Returns True once ``delete(item_id)`` succeeded: the caller notes it and reruns. A
    failure is shown, with ``failed`` (what was not done) as its context."""
    confirm = f"{prefix}-confirm"
    st.divider()
    if st.button(label, key=f"{prefix}-delete", icon=":material/delete:", disabled=disabled, help=help):
        st.session_state[confirm] = item_id
    if st.session_state.get(confirm) != item_id:
        return False
    with st.container(border=True):
        st.warning(warning)
        sure = st.checkbox(_("I am sure"), key=f"{prefix}-sure-{item_id}")
        c1, c2, _space = st.columns([1, 1, 4])
        if c1.button(_("Delete for good"), type="primary", disabled=not sure, key=f"{prefix}-delete-confirm"):
            try:
                delete(item_id)
            except CnnlabError as err:
                show_error(err, context=failed)
            else:
                st.session_state.pop(confirm, None)
                return True
        if c2.button(_("Cancel"), key=f"{prefix}-delete-cancel"):
            st.session_state.pop(confirm, None)
            st.rerun()
    return False


# The loaders below are cached per language (``lang``): what they return carries text in the language in
# use (a model's label and class names, a dataset's description and notes), which must not leak from one
# session into another. Their spinners are shown by the callers: a decorator's text is fixed at import.


@st.cache_resource(show_spinner=False, max_entries=8)
def _source(ref: str, lang: str):
    return load_source(ref)


def cached_source(ref: str):
    with st.spinner(_("Loading model…")):
        return _source(ref, language())


@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(name: str, lang: str):
    return load_dataset(name, download=False)


def cached_dataset(name: str):
    with st.spinner(_("Loading dataset…")):
        return _dataset(name, language())


@st.cache_resource(show_spinner=False, max_entries=2)
def _made(name: str, stamp: tuple, image_size: int | None, lang: str):
    return load_dataset(name, image_size=image_size, download=False, progress=False)


def cached_made(name: str, stamp: tuple, image_size: int | None = None):
    """A dataset made from your own images, as the trainer sees it (at ``image_size``, default its
    own), loaded again when images are added or removed: ``stamp`` is
    :func:`cnnlab.data.maker.fingerprint`."""
    with st.spinner(_("Loading your images…")):
        return _made(name, stamp, image_size, language())


@st.cache_resource(show_spinner=False, max_entries=4)
def run_data(run_id: str, lang: str):
    """:func:`cached_run_data` without its spinner, for a thread that has no page to draw on."""
    return load_run_data(load_run(run_id))


def cached_run_data(run_id: str):
    """The data a run was trained on, split as it was (its seed, fractions, subset, classes)."""
    with st.spinner(_("Loading the run's data…")):
        return run_data(run_id, language())


# ---- a run's mistakes (the Runs page's drill-down), prepared in the background ----------------------

@st.cache_resource(show_spinner=False)
def preparer() -> ThreadPoolExecutor:
    """One background thread for the server: it prepares the mistakes of the run whose evaluation is on
    screen, one run at a time, so the first click on the matrix does not wait for them."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-mistakes")


def prepare_mistakes(run_id: str, lang: str) -> RunMistakes:
    """Everything a click on the matrix needs: the predictions of every validation image and the training
    images' features for the nearest examples (a few seconds for a CIFAR ResNet on a 2-core CPU). Run in a
    context of its own, in ``lang``: a message it raises is in the page's language."""
    return contextvars.Context().run(_prepare_mistakes, run_id, lang)


def _prepare_mistakes(run_id: str, lang: str) -> RunMistakes:
    set_language(lang)
    found = RunMistakes(run_id, data=run_data(run_id, lang), device="cpu")
    # an error here is said where the nearest examples are asked for: found.embedding() raises it again there
    with contextlib.suppress(CnnlabError):
        found.embedding()
    return found


@st.cache_resource(show_spinner=False, max_entries=2)
def mistakes_started(run_id: str, checkpoint_stamp: float, lang: str) -> Future:
    """The preparation of a run's mistakes, started once per run and checkpoint (shared by every session).
    ``checkpoint_stamp`` is only part of the key; ``lang`` names the class names' language."""
    return preparer().submit(prepare_mistakes, run_id, lang)


def mistakes_of(run_id: str, checkpoint_stamp: float) -> RunMistakes:
    """The run's prepared mistakes, waiting for the preparation if it is still going. An error of the
    preparation is raised here, where the page says it."""
    key = (run_id, checkpoint_stamp, language())
    try:
        return mistakes_started(*key).result()
    except Exception:
        mistakes_started.clear(*key)  # a failed preparation is tried again at the next click, not kept
        raise


MODEL_KINDS = {"zoo": N_("Zoo model (untrained)"), "run": N_("Trained run"),
               "pretrained": N_("Pretrained (ImageNet)")}  # shown through _()


def model_picker(key: str, allow_zoo: bool = True):
    """Pick a zoo model, a trained run or a pretrained model; returns a ModelSource or None.

    The choice is kept across page switches and is in the page's link (:mod:`app.share`), except the
    run: it starts at the newest one (the one just trained) unless a link names another."""
    store = f"{key}-model-form"
    kinds = (["zoo"] if allow_zoo else []) + ["run", "pretrained"]
    runs = [r for r in list_runs() if r.has_checkpoint and not r.damaged]
    kind_key = remember(store, f"{key}-kind", "run" if runs else kinds[0], options=kinds)
    if share.setting_shown(kind_key):
        st.radio(_("Model"), kinds, format_func=lambda k: _(MODEL_KINDS[k]), horizontal=True, key=kind_key)
    kind = st.session_state[kind_key]
    ref = None
    if kind == "run":
        if not runs:
            st.info(_("No trained run yet. Train one on the **Train** page (a LeNet on the digits takes "
                      "seconds), or pick another kind of model."))
            return None
        run_key = f"{key}-run"
        linked = share.from_link(run_key, "")  # a link may name a run of this server; else the newest
        default = linked if linked in {r.run_id for r in runs} else runs[0].run_id
        shown = share.setting_shown(run_key)
        run_id = run_select(st, pgettext("noun", "Run"), runs, run_key, default=default) if shown else default
        share.publish(run_key, run_id, runs[0].run_id)
        ref = f"run:{run_id}"
    elif kind == "pretrained":
        pre_key = remember(store, f"{key}-pre", next(iter(PRETRAINED)), options=list(PRETRAINED))
        if share.setting_shown(pre_key):
            st.selectbox(_("Pretrained model"), list(PRETRAINED), key=pre_key,
                         format_func=lambda n: PRETRAINED[n].display_name)
        name = st.session_state[pre_key]
        state, message = weights_status(name)
        if state != "present":
            st.warning(message)
            return None
        ref = f"pretrained:{name}"
    else:
        names = [n for n in list_models() if not get_spec(n).adaptive]
        zoo_key = remember(store, f"{key}-zoo", "cifar_resnet", options=names)
        if share.setting_shown(zoo_key):
            st.selectbox(_("Architecture"), names, key=zoo_key,
                         format_func=lambda n: f"{get_spec(n).display_name} · {n}")
        ref = st.session_state[zoo_key]
    try:
        return cached_source(ref)
    except CnnlabError as err:
        show_error(err)
        return None


# A run's or a training job's status in words (cnnlab.runs.STATUSES, the states a run folder can be found
# in, cnnlab.jobs.JOB_STATES): the code keeps the English key
def run_select(where, title: str, runs: list, key: str, *, default=None, multi: bool = False, **kwargs):
    """A selectbox (``multi``: a multiselect) of ``runs`` named by :func:`run_label`; returns the chosen run
    id (ids). ``default``: the choice before the user makes one (an id, or a list of ids).

    Streamlit sends a choice back as its label, and a run's label changes when the run ends: a plain
    selectbox would then fall back to its first run. So the choice is also kept by id (``{key}-ids``) and
    handed to the widget on every run. Like Streamlit's own widget state it is forgotten when another page
    is shown, so a page opens on its default (the newest run, the one just trained)."""
    labels = {r.run_id: run_label(r) for r in runs}
    kept = f"{key}-ids"
    if key not in st.session_state:  # first run here, or back from another page
        st.session_state.pop(kept, None)
    chosen = st.session_state.get(kept, default)
    if multi:
        st.session_state[key] = [i for i in chosen or () if i in labels]
    elif chosen in labels:
        st.session_state[key] = chosen
    else:  # a deleted run, or no default: the widget starts at the newest run
        st.session_state.pop(key, None)

    def keep() -> None:
        """A choice the user made (not a label gone stale): remember it by id."""
        value = st.session_state.get(key)
        if (all(v in labels for v in value) if multi else value in labels):
            st.session_state[kept] = value

    widget = where.multiselect if multi else where.selectbox
    return widget(title, list(labels), format_func=labels.get, key=key, on_change=keep, **kwargs)


# the image picker's choices: stable keys (a widget's value), shown translated
IMAGE_KINDS = {"Bundled photo": N_("Bundled photo"), "Dataset sample": N_("Dataset sample"),
               "Upload": N_("Upload"), "Draw": N_("Draw")}


def image_picker(key: str, source=None) -> Image.Image | None:
    """A bundled photo, a dataset sample, an upload or a drawing, decoded safely; None if unusable."""
    kind = st.radio(_("Image"), list(IMAGE_KINDS), format_func=lambda k: _(IMAGE_KINDS[k]), horizontal=True,
                    key=f"{key}-img")
    if kind == "Draw":
        return drawing_picker(key, source)
    if kind == "Upload":
        up = st.file_uploader(_("An image (PNG, JPEG, BMP, GIF, TIFF, WebP)"), key=f"{key}-upload",
                              type=["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"])
        if up is None:
            st.info(_("Upload an image to continue."))
            return None
        try:
            return decode_image(up.getvalue())
        except CnnlabError as err:
            show_error(err)
            return None
    if kind == "Dataset sample":
        run_id = source.ref.split(":", 1)[1] if source is not None and source.kind == "run" else None
        options = (["run"] if run_id else []) + ["shapes", "digits"]
        default = "run" if run_id else "shapes" if source is not None and source.input_shape[0] == 3 else "digits"
        ds_name = st.selectbox(_("Dataset"), options, index=options.index(default), key=f"{key}-ds",
                               format_func=lambda n: _("this run's validation images") if n == "run" else n)
        try:
            # a run's own data, rebuilt from its config: its seed, its split, its classes
            bundle = cached_run_data(run_id) if ds_name == "run" else cached_dataset(ds_name)
        except CnnlabError as err:
            show_error(err)
            return None
        split = bundle.val
        idx = st.slider(_("Sample"), 0, len(split) - 1, 0, key=f"{key}-idx")
        said = {"label": bundle.info.classes[int(split.labels[idx])], "i": idx + 1, "n": len(split)}
        if ds_name == "run":
            st.caption(_("Label: **{label}** · validation image {i} of {n}, not used for training")
                       .format(**said))
        else:
            st.caption(_("Label: **{label}** · validation image {i} of {n}").format(**said))
        return to_pil(split.images[idx])
    photos = bundled_photos()
    name = st.selectbox(_("Photo (bundled with scikit-image)"), photos,
                        index=photos.index("chelsea") if "chelsea" in photos else 0, key=f"{key}-photo")
    return load_bundled_photo(name)


CANVAS_SIDE = 280  # pixels on screen: ten times MNIST's 28, as in the TF.js digit demos
CANVAS_TOOLS = {"freedraw": N_("pen"), "circle": N_("ellipse"), "rect": N_("rectangle"),
                "polygon": N_("polygon"), "line": N_("line")}  # shown through _()


def drawing_style(source):
    """The drawing style (:mod:`cnnlab.data.drawing`) of the images ``source``'s model learned from."""
    if source is None:
        return style_for("digits", (1, 28, 28))
    return style_for(source.dataset, source.input_shape)


def drawing_picker(key: str, source=None) -> Image.Image | None:
    """A canvas (streamlit-drawable-canvas) whose drawing becomes an image like the dataset's
    (:func:`cnnlab.data.drawing.drawing_to_image`); every stroke reruns the page, so the top-k,
    the feature maps and the Grad-CAM follow the drawing. None while the canvas is empty."""
    style = drawing_style(source)
    try:
        # here, not at the top: it raises outside a running app, and a broken one must cost only Draw
        from streamlit_drawable_canvas import st_canvas
    except Exception as err:  # noqa: BLE001 - a missing or broken component: say so, keep the page
        show_error(f"{type(err).__name__}: {err}".strip(), context=_(
            "The drawing canvas could not be loaded (install it with `pip install -r requirements.txt`); "
            "pick another kind of image"))
        return None
    opts = st.columns([2, 2, 1, 1] if not style.grey else [2, 3])
    tool, pen, background = "freedraw", style.pen, style.background
    if not style.grey:  # the shapes are filled: ellipses, rectangles and polygons draw them
        tool = opts[0].selectbox(_("Tool"), list(CANVAS_TOOLS), format_func=lambda t: _(CANVAS_TOOLS[t]),
                                 key=f"{key}-tool")
        pen = opts[2].color_picker(_("Pen"), style.pen, key=f"{key}-pen")
        background = opts[3].color_picker(_("Canvas"), style.background, key=f"{key}-bg")
    width = opts[1].slider(_("Pen width"), 2, 40, style.stroke_width, key=f"{key}-width")
    left, right = st.columns([3, 2])
    canvas_key = _canvas_key(key, style.name)
    with left:
        result = st_canvas(fill_color=pen, stroke_width=width, stroke_color=pen, background_color=background,
                           height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode=tool, return_image_data=True,
                           update_streamlit=True, key=canvas_key)
        # always in sight: the canvas's own toolbar shows only while the pointer is over the canvas
        st.button(_("Clear the drawing"), icon=":material/delete:", key=f"{key}-clear",
                  on_click=_clear_canvas, args=(key, canvas_key))
    hint = _(CANVAS_HINT).format(subject=_(style.subject))
    try:
        image = drawing_to_image(decode_drawing(_canvas_png(result)), style, background=background)
    except EmptyDrawingError:
        right.info(hint)
        return None
    except CnnlabError as err:
        with right:
            show_error(err, context=_("The drawing could not be used"))
        return None
    preview = image.resize((CANVAS_SIDE // 2, CANVAS_SIDE // 2) if image.width < 140 else image.size,
                           Image.NEAREST)
    right.image(preview, width=CANVAS_SIDE * 2 // 3, caption=_("Your drawing as {what} look: {how}.").format(
        what=_(style.what), how=style.describe()))
    right.caption(hint)
    return image


CANVAS_HINT = N_("Draw {subject} on the canvas: the answer follows every stroke. **Clear the drawing** "
                 "starts again; with the pointer over the canvas, its toolbar's arrows undo and redo a "
                 "stroke.")


def _canvas_key(key: str, style: str) -> str:
    """The canvas's widget key: a new one after each Clear, so Streamlit draws an empty canvas."""
    cleared = st.session_state.get(f"{key}-cleared", 0)
    return f"{key}-canvas-{style}" + (f"-{cleared}" if cleared else "")


def _clear_canvas(key: str, canvas_key: str) -> None:
    st.session_state[f"{key}-cleared"] = st.session_state.get(f"{key}-cleared", 0) + 1
    st.session_state.pop(canvas_key, None)  # the old drawing is not needed any more


def _canvas_png(result) -> bytes | None:
    """The PNG a canvas sent, its size bounded before the base64 text is decoded."""
    url = getattr(result, "_image_data_url", None)  # streamlit-drawable-canvas 0.13: a data: URL or None
    if not isinstance(url, str) or ";base64," not in url:
        return None
    if len(url) > MAX_BYTES * 4 // 3 + 256:
        raise CnnlabError(_("the drawing is too large; clear the canvas and draw again."))
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=False)
    except ValueError:
        raise CnnlabError(_("the canvas sent an unreadable drawing; clear it and draw again.")) from None


@st.cache_data(ttl=20, show_spinner=False)
def _statuses(made: tuple = (), lang: str = "en") -> dict:
    """Every dataset's status. ``made`` is :func:`cnnlab.data.maker.fingerprint`: a dataset made or grown
    on the Your images page (or the command line) a moment ago is listed at once, not after the 20 s.
    ``lang``: the statuses' messages are in the language in use, cached per language."""
    out = {}
    for spec in list_datasets():
        try:
            out[spec.name] = dataset_status(spec.name)
        except CnnlabError:  # a made dataset removed from disk meanwhile: not listed
            continue
    return out


def dataset_choices() -> tuple[list[str], dict]:
    """Dataset names and their status (present, downloadable or missing): what can be loaded now
    first, the digits (the default) first of all, then the datasets made from your own images."""
    statuses = _statuses(maker.fingerprint(), language())
    yours = {n for n in statuses if maker.is_made(n)}  # one stat each: no image folder is listed
    order = {"present": 0, "downloadable": 1, "missing": 2}
    names = sorted(statuses, key=lambda n: (order.get(statuses[n].state, 3), n != "digits", n not in yours, n))
    return names, statuses


def job_label(job) -> str:
    if job is None:
        return "?"
    c = job.config  # no state in the label: a widget's options must not change while it lives
    return ngettext("#{id} {model} on {dataset}, {n} epoch", "#{id} {model} on {dataset}, {n} epochs",
                    c.epochs).format(id=job.id, model=c.model, dataset=c.dataset, n=c.epochs)


def curve_charts(events: list[dict]):
    """The live view's (loss chart, accuracy chart, log scale?) from trainer events (train per step
    window, validation per epoch), or None before the first step."""
    # altair (0.2 s to import) loads with the Train page's first live chart, not with every page
    import altair as alt

    start = next((e for e in events if e["kind"] == "start"), None)
    per_epoch = max(1, start["steps_per_epoch"]) if start else 1
    rows = []
    running, epoch, validation = (_(s) for s in CURVE_SERIES)  # the legend's words
    for e in events:
        if e["kind"] == "step":
            x = e["step"] / per_epoch
            rows.append(("loss", running, x, e["loss"]))
            rows.append(("accuracy", running, x, e["top1"]))
        elif e["kind"] == "epoch":
            x = float(e["epoch"])
            rows += [("loss", epoch, x, e["train_loss"]), ("loss", validation, x, e["val_loss"]),
                     ("accuracy", epoch, x, e["train_top1"]), ("accuracy", validation, x, e["val_top1"])]
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=["metric", "series", "epoch", "value"])
    # one colour per split, the same in both charts; real axis titles, accuracy in percent, a log scale
    # for the loss when its values span more than 10x (one blown-up step would flatten the rest)
    colour = alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=300),
                       scale=alt.Scale(domain=[running, epoch, validation], range=CURVE_COLOURS))
    x = alt.X("epoch:Q", title=_("epoch"))
    series = alt.Tooltip("series:N", title=_("series"))
    at_epoch = alt.Tooltip("epoch:Q", title=_("epoch"), format=".2f")
    loss = df[(df.metric == "loss") & (df.value > 0)].value
    log = bool(len(loss) > 0 and float(loss.max()) > 10 * float(loss.min()))
    loss_chart = alt.Chart(df[df.metric == "loss"]).mark_line().encode(
        x, alt.Y("value:Q", title=_("cross-entropy loss"), scale=alt.Scale(type="log" if log else "linear")),
        colour, tooltip=[series, at_epoch, alt.Tooltip("value:Q", title=_("loss"), format=".4f")],
    ).properties(height=260)
    acc_chart = alt.Chart(df[df.metric == "accuracy"]).mark_line().encode(
        x, alt.Y("value:Q", title=_("top-1 accuracy"), axis=alt.Axis(format="%"),
                 scale=alt.Scale(domain=[0, 1])),
        colour, tooltip=[series, at_epoch, alt.Tooltip("value:Q", title=_("accuracy"), format=".1%")],
    ).properties(height=260)
    return loss_chart, acc_chart, log


def training_charts(events: list[dict]) -> None:
    """The live view's loss and accuracy curves (see :func:`curve_charts`)."""
    charts = curve_charts(events)
    if charts is None:
        st.caption(_("Curves appear after the first steps."))
        return
    loss_chart, acc_chart, log = charts
    a, b = st.columns(2)
    a.markdown(_("**Loss** (log scale: the values span more than 10x)") if log else _("**Loss**"))
    a.altair_chart(loss_chart, width="stretch")
    b.markdown(_("**Accuracy**"))
    b.altair_chart(acc_chart, width="stretch")


CURVE_SERIES = [N_("train (running)"), N_("train (epoch)"), N_("validation")]  # shown through _()
CURVE_COLOURS = ["#9ecae1", "#1f77b4", "#ff7f0e"]  # light and dark blue for training, orange for validation


def remember(store: str, key: str, default, *, options=None, bounds: tuple | None = None):
    """Keep a widget's value for the session across page switches; returns ``key``.

    Streamlit drops the state of a page's widgets once another page is shown. Call this just
    before creating the widget with ``key=key`` and no value/index argument: the first time it
    puts ``default`` in ``st.session_state[key]`` (or the value a shared link gives it, see
    :mod:`app.share`), after a page switch the value kept in the plain (non-widget) dict
    ``st.session_state[store]``; each run copies the current value there and, for a shareable
    widget, into the page's URL. ``options`` (a selectbox's choices) or ``bounds`` (a number
    input's min and max) check a value before the widget sees it: one a link or an older session
    gives that the widget cannot take falls back to ``default`` with a notice.
    """
    kept = st.session_state.setdefault(store, {})
    if key not in st.session_state:
        linked = share.from_link(key, default) if key not in kept else None
        st.session_state[key] = linked if linked is not None else kept.get(key, default)
    value = st.session_state[key]
    if not _fits(value, default, options, bounds):
        name = share.link_name(key) or key
        st.toast(_("The value {value!r} for '{name}' is not available here; using {default!r}.").format(
            value=str(value)[:40], name=name, default=default), icon=":material/link_off:")
        st.session_state[key] = value = default
    kept[key] = value
    share.seen(key, store, default)
    share.publish(key, value, default)
    return key


def _fits(value, default, options, bounds) -> bool:
    if options is not None and value not in list(options):
        return False
    if bounds is not None:
        lo, hi = bounds
        if not isinstance(value, (int, float)) or isinstance(value, bool) != isinstance(default, bool):
            return False
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return False
    return True


def short_number(value: float, unit: str = "") -> str:
    """A headline number that fits a metric box at 1280x720: 44,426 · 138.4 M · 15.5 G (the exact value
    goes in the metric's help)."""
    v = float(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(v) >= limit:
            return f"{fmt(v / limit, '.1f')} {suffix}{unit}"
    return fmt(v, ",.0f") + (f" {unit}" if unit else "")


def short_bytes(n: float) -> str:
    """Bytes as KB, MB or GB with one decimal (cnnlab.inspect's format, shared with `summary`)."""
    return format_bytes(int(n))
