"""Runs: every training run on disk, their curves side by side, one run evaluated in detail."""

from __future__ import annotations


import altair as alt
import pandas as pd
import streamlit as st
from PIL import Image

from app import export_view, xray_view
from app.common import confirm_delete, mistakes_of, mistakes_started, run_select, show_error
from cnnlab.errors import CnnlabError, DataError
from cnnlab.evaluate import evaluate_run, row_shares
from cnnlab.i18n import N_, _, fmt, language, ngettext, pgettext
from cnnlab.mistakes import MAX_TRAIN_IMAGES, confusion_cells
from cnnlab.runs import curve_rows, delete_run, format_duration, list_runs, load_run, runs_table, status_word

st.title(_("Runs"))
st.write(_("Every training run saved on this machine: compare their curves, evaluate one on its "
           "validation split (per-class accuracy and confusion matrix), look at its mistakes (click a "
           "cell of the matrix) and delete the ones you no longer need."))

# A run deleted on the previous rerun: drop it from the widgets before they are created.
deleted = st.session_state.pop("runs-deleted", None)
if deleted:
    st.success(_("Run {run} deleted. The other runs were not touched.").format(run=deleted))

runs = list_runs()
if not runs:
    st.info(_("No run yet. Train one on the **Train** page (a LeNet on the digits takes seconds); "
              "each training is saved here when it ends, even a stopped or diverged one."))
    st.stop()

by_id = {r.run_id: r for r in runs}  # the pickers below drop a deleted run themselves (run_select)

# ---- the table ----------------------------------------------------------------------
table = pd.DataFrame([{
    "run": row["run"], "status": status_word(row["status"]), "model": row["model"], "dataset": row["dataset"],
    "best val top-1": None if row["best_val_top1"] is None else 100 * row["best_val_top1"],
    "epochs": f"{row['epochs_done']} / {row['epochs_planned'] or '?'}",
    "duration": format_duration(row["duration_s"]), "created": row["created"], "problem": row["problem"],
} for row in runs_table(runs)])
table["created"] = pd.to_datetime(table["created"], unit="s", utc=True)
# the columns keep English names (the data), their headings are in the reader's language
TABLE_HEADINGS = {"run": N_("run"), "status": N_("status"), "model": N_("model"), "dataset": N_("dataset"),
                  "epochs": N_("epochs"), "duration": N_("duration")}
st.dataframe(table, hide_index=True, width="stretch", height=min(38 + 35 * len(runs), 420),
             column_config={
                 **{c: st.column_config.Column(_(label)) for c, label in TABLE_HEADINGS.items()},
                 "best val top-1": st.column_config.NumberColumn(_("best val top-1"), format="%.1f%%"),
                 "created": st.column_config.DatetimeColumn(_("created"), format="YYYY-MM-DD HH:mm:ss"),
                 "problem": st.column_config.TextColumn(_("problem"),
                                                        help=_("what is wrong with a damaged run's files")),
             })
n_damaged = sum(r.damaged for r in runs)
if n_damaged:
    st.warning(ngettext("{n} run has damaged files (see the **problem** column): what could be read is "
                        "shown, the rest is left out. Pick one below to see why, or delete it.",
                        "{n} runs have damaged files (see the **problem** column): what could be read is "
                        "shown, the rest is left out. Pick one below to see why, or delete it.",
                        n_damaged).format(n=n_damaged), icon=":material/warning:")

# ---- curves of several runs -----------------------------------------------------------
st.subheader(_("Curves"))
compare = run_select(st, _("Runs to compare"), runs, "runs-compare", default=[r.run_id for r in runs[:3]],
                     multi=True)


SPLITS = {"train": N_("train"), "validation": N_("validation")}  # the curves' splits, shown through _()


def draw_curves(run_ids: list[str]) -> None:
    rows = []
    for run_id in run_ids:
        try:
            run = load_run(run_id)  # fresh from disk: a running run grows
        except CnnlabError:
            continue
        rows += [(run_id, c["epoch"], c["metric"], _(SPLITS.get(c["split"], c["split"])), c["value"])
                 for c in curve_rows(run)]
    if not rows:
        st.caption(_("No epoch finished yet in the selected runs: curves appear after the first validation."))
        return
    df = pd.DataFrame(rows, columns=["run", "epoch", "metric", "split", "value"])
    losses = df[(df.metric == "loss") & (df.value > 0)].value
    huge = len(losses) > 0 and losses.max() > 1000 * losses.min()  # e.g. a run that blew up
    log_loss = st.checkbox(_("Loss on a log scale"), value=bool(huge), key="runs-logloss")
    # tableau10: distinct hues per run (Streamlit's own palette starts with two near-identical blues)
    colour = alt.Color("run:N", title=_("run"), scale=alt.Scale(scheme="tableau10"),
                       legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0))
    dash = alt.StrokeDash("split:N", title=_("split"), sort=[_(SPLITS["validation"]), _(SPLITS["train"])],
                          legend=alt.Legend(orient="bottom", labelLimit=0, titleLimit=0))
    x = alt.X("epoch:Q", title=_("epoch"), axis=alt.Axis(tickMinStep=1, format="d"))
    tooltip = [alt.Tooltip("run:N", title=_("run")), alt.Tooltip("epoch:Q", title=_("epoch")),
               alt.Tooltip("split:N", title=_("split")),
               alt.Tooltip("value:Q", title=_("value"), format=".4f")]
    a, b = st.columns(2)
    acc = alt.Chart(df[df.metric == "accuracy"]).mark_line(point=True).encode(
        x, alt.Y("value:Q", title=_("top-1 accuracy"), axis=alt.Axis(format="%"),
                 scale=alt.Scale(domain=[0, 1])),
        colour, dash, tooltip=tooltip)
    loss = alt.Chart(df[df.metric == "loss"]).mark_line(point=True).encode(
        x, alt.Y("value:Q", title=_("loss"), scale=alt.Scale(type="log" if log_loss else "linear")),
        colour, dash, tooltip=tooltip)
    a.markdown(_("**Accuracy** (solid: validation, dashed: train)"))
    a.altair_chart(acc, width="stretch")
    b.markdown(_("**Loss**"))
    b.altair_chart(loss, width="stretch")


if not compare:
    st.caption(_("Pick one or more runs to see their curves."))
elif any(by_id[i].status == "running" for i in compare):
    st.fragment(draw_curves, run_every=2.0)(compare)  # refresh while they train
else:
    draw_curves(compare)

# ---- one run in detail --------------------------------------------------------------------
st.subheader(_("One run in detail"))
run_id = run_select(st, pgettext("noun", "Run"), runs, "runs-detail", default=runs[0].run_id)
run = by_id[run_id]
status, message = run.status, run.message or status_word(run.status)
{"finished": st.success, "running": st.info, "cancelled": st.warning, "interrupted": st.warning}.get(
    status, st.error)(_("**{status}**: {message}").format(status=status_word(status), message=message))
if run.damaged and status != "damaged":
    st.warning(_("Some of this run's files are damaged, and what they hold is left out: {damage}.").format(
        damage=run.damage), icon=":material/warning:")


def settings_text(run) -> str:
    """What a run was trained with, in one line: model, data, schedule, seed, device, folder."""
    cfg = run.config
    epochs = cfg.get("epochs", "?")
    said = {key: cfg.get(name, "?") for key, name in (("batch", "batch_size"), ("optimizer", "optimizer"),
                                                        ("lr", "lr"), ("scheduler", "scheduler"),
                                                        ("augment", "augment"), ("seed", "seed"))}
    said.update(model=run.meta.get("model", "?"), dataset=run.meta.get("dataset", "?"), epochs=epochs,
                subset=cfg.get("subset"), device=run.meta.get("device", "?"), folder=run.path)
    n = epochs if isinstance(epochs, int) else 2  # "?" epochs reads as a plural
    if cfg.get("subset"):
        return ngettext(
            "{model} on {dataset} · {epochs} epoch, batch {batch}, {optimizer} lr {lr}, schedule "
            "{scheduler}, augmentation {augment}, seed {seed}, {subset} training images · {device} · "
            "folder {folder}",
            "{model} on {dataset} · {epochs} epochs, batch {batch}, {optimizer} lr {lr}, schedule "
            "{scheduler}, augmentation {augment}, seed {seed}, {subset} training images · {device} · "
            "folder {folder}",
            n).format(**said)
    return ngettext(
        "{model} on {dataset} · {epochs} epoch, batch {batch}, {optimizer} lr {lr}, schedule {scheduler}, "
        "augmentation {augment}, seed {seed} · {device} · folder {folder}",
        "{model} on {dataset} · {epochs} epochs, batch {batch}, {optimizer} lr {lr}, schedule {scheduler}, "
        "augmentation {augment}, seed {seed} · {device} · folder {folder}",
        n).format(**said)


st.caption(settings_text(run))


# the cached computations below show their spinners where they are called (a decorator's text is fixed
# at import, in English)
@st.cache_data(show_spinner=False, max_entries=16)
def evaluation(run_id: str, checkpoint_stamp: float):
    """The run's best weights on its own validation split, loaded as the trainer loaded it.

    ``checkpoint_stamp`` (best.pt's mtime) is only part of the cache key.
    """
    return evaluate_run(run_id, split="val", device="cpu")  # its own split, rebuilt from its config


def draw_evaluation(res, best: float | None, chart_key: str):
    """The metrics, the per-class bars and the clickable confusion matrix; returns the matrix's
    selection event."""
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(_("Val top-1"), fmt(res.top1, ".1%"))
    m2.metric(_("Val top-5"), fmt(res.top5, ".1%"))
    m3.metric(_("Val loss"), fmt(res.loss, ".3f"))
    m4.metric(_("Images"), fmt(res.count, ","))
    if best is not None:
        st.caption(_("Best weights of the run (best.pt); during training its best validation top-1 was "
                     "{best}.").format(best=fmt(best, ".1%")))
    per = pd.DataFrame([(c.name, k, v, c.count) for c in res.per_class for k, v in (("top-1", c.top1), ("top-5", c.top5))],
                       columns=["class", "measure", "accuracy", "images"])
    n = len(res.classes)
    st.markdown(_("**Per-class accuracy**"))
    bars = alt.Chart(per).mark_bar().encode(
        alt.X("class:N", title=_("class"), sort=res.classes, axis=alt.Axis(labelAngle=-60 if n > 12 else 0)),
        alt.XOffset("measure:N"),
        alt.Y("accuracy:Q", title=_("accuracy"), axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        alt.Color("measure:N", title=_("measure"), legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("class:N", title=_("class")), alt.Tooltip("measure:N", title=_("measure")),
                 alt.Tooltip("accuracy:Q", title=_("accuracy"), format=".1%"),
                 alt.Tooltip("images:Q", title=_("images"))],
    ).properties(height=280)
    st.altair_chart(bars, width="stretch")

    st.markdown(_("**Confusion matrix** (rows: true class, columns: predicted; colour: share of the row). "
                  "Click a cell to see its images below."))
    conf, shares = res.confusion, row_shares(res.confusion)
    cells = pd.DataFrame([(res.classes[i], res.classes[j], i, j, int(conf[i, j]), float(shares[i, j]))
                          for i in range(n) for j in range(n)], columns=["true", "predicted", "t", "p", "images", "share"])
    step = max(6, min(56, 640 // n))  # pixels per cell
    pick = alt.selection_point(name="cell", fields=["t", "p"], on="click", clear="dblclick")
    # empty=False: before any click no cell counts as selected (else every cell had the outline)
    base = alt.Chart(cells).encode(alt.X("predicted:N", title=_("predicted"), sort=res.classes),
                                   alt.Y("true:N", title=_("true"), sort=res.classes))
    heat = base.mark_rect(cursor="pointer").encode(
        alt.Color("share:Q", title=_("share"), scale=alt.Scale(scheme="blues", domain=[0, 1]),
                  legend=alt.Legend(format="%")),
        stroke=alt.condition(pick, alt.value("#e4572e"), alt.value(None), empty=False),  # the clicked cell outlined
        strokeWidth=alt.condition(pick, alt.value(3), alt.value(0), empty=False),
        tooltip=[alt.Tooltip("true:N", title=_("true")), alt.Tooltip("predicted:N", title=_("predicted")),
                 alt.Tooltip("images:Q", title=_("images")),
                 alt.Tooltip("share:Q", title=_("share"), format=".1%")]).add_params(pick)
    chart = heat
    if step >= 28:  # counts readable in the cells, at 16 px or more on a projector
        chart = heat + base.mark_text(fontSize=max(16, min(20, step // 3))).encode(
            alt.Text("images:Q"), color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black")))
    chart = chart.configure_axis(labelFontSize=14, titleFontSize=14)
    event = st.altair_chart(chart.properties(width=alt.Step(step), height=alt.Step(step)), width="content",
                            on_select="rerun", selection_mode="cell", key=chart_key)
    with st.expander(_("Per-class table (as in lecture 000)")):
        st.code(res.table(), language=None)
    return event


# ---- the mistakes: a confusion cell or the top losses, with Grad-CAM and nearest examples ------


@st.cache_data(show_spinner=False, max_entries=64)
def explained(run_id: str, checkpoint_stamp: float, indices: tuple[int, ...], neighbours: int):
    """The examples, and what the nearest ones were searched among (layer, images compared, training
    images, capped) when asked for: cached together, so a cached answer never rebuilds the search."""
    found = mistakes_of(run_id, checkpoint_stamp)
    examples = found.explain(list(indices), n_neighbours=neighbours)
    if not neighbours:
        return examples, None
    emb = found.embedding()
    return examples, (emb.layer, len(emb.indices), emb.total, emb.capped)


def clicked_cell(event) -> tuple[int, int] | None:
    """The (true, predicted) class indices of the clicked cell in the matrix's selection event."""
    points = ((event or {}).get("selection") or {}).get("cell") or []
    if isinstance(points, list) and points and isinstance(points[0], dict):
        t, p = points[0].get("t"), points[0].get("p")
        if isinstance(t, (int, float)) and isinstance(p, (int, float)):
            return int(t), int(p)
    return None


def enlarged(picture, size: int = 112) -> Image.Image:
    """Small images (28 x 28 digits) made big enough to see on a projector, pixels kept sharp."""
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    scale = size / max(img.size)
    if scale > 1:
        return img.resize((round(img.width * scale), round(img.height * scale)), Image.NEAREST)
    return img


TOP = "top"


def draw_mistakes(run, res, event, stamp: float) -> None:
    st.subheader(_("Look at the mistakes"))
    st.caption(_("Each image with its true and predicted class, the three most probable classes, where the "
                 "network looked (Grad-CAM of the predicted class) and the training images it finds most "
                 "similar among those of the predicted class (cosine similarity of its penultimate features, "
                 "the input of its last layer). A heat map alone can mislead; the nearest examples show what "
                 "the network thinks it saw."))
    n, conf = len(res.classes), res.confusion
    choice_key, click_key = f"runs-mistakes-{run.run_id}", f"runs-mistakes-click-{run.run_id}"
    cell = clicked_cell(event)
    if cell is not None and not (0 <= cell[0] < n and 0 <= cell[1] < n):
        cell = None
    if cell != st.session_state.get(click_key):  # a new click chooses its cell below
        st.session_state[click_key] = cell
        if cell is not None:
            st.session_state[choice_key] = f"{cell[0]} {cell[1]}"
    options = [TOP] + [f"{i} {j}" for i, j in confusion_cells(conf)]  # the mistakes first, the most frequent first
    chosen = st.session_state.get(choice_key)
    if chosen is not None and chosen not in options:  # a clicked empty cell stays choosable
        options.append(chosen)

    def describe(option: str) -> str:
        if option == TOP:
            return _("Top losses: the images the network is most wrong about")
        i, j = map(int, option.split())
        k = int(conf[i, j])
        said = {"true": res.classes[i], "predicted": res.classes[j], "n": fmt(k, ",")}
        if i == j:
            return ngettext("true {true} → predicted {predicted} ({n} image, right)",
                            "true {true} → predicted {predicted} ({n} images, right)", k).format(**said)
        return ngettext("true {true} → predicted {predicted} ({n} image, mistaken)",
                        "true {true} → predicted {predicted} ({n} images, mistaken)", k).format(**said)

    c1, c2, c3 = st.columns([3, 1, 1])
    option = c1.selectbox(_("Show"), options, format_func=describe, index=None, key=choice_key,
                          placeholder=_("Click a cell of the matrix, or choose here (top losses, or a cell)"))
    count = c2.slider(_("Images"), 4, 24, 8, step=4, key="runs-mistakes-count")
    neighbours = c3.slider(_("Nearest examples"), 0, 6, 4, key="runs-mistakes-neighbours",
                           help=_("Training images of the predicted class shown next to each image."))
    if option is None:
        return
    try:
        with st.spinner(_("Predicting every validation image…")):
            found = mistakes_of(run.run_id, stamp)
    except DataError as err:
        show_error(err, _("The data of this run cannot be loaded, so its images cannot be shown"))
        return
    except (CnnlabError, OSError) as err:
        show_error(err, _("The images of this run cannot be shown"))
        return
    if option == TOP:
        indices = found.top_losses(count)
        st.markdown(_("**The {n} highest losses** of {total} validation images (cross-entropy, highest "
                      "first), right or wrong.").format(n=len(indices),
                                                         total=fmt(len(found.predictions), ",")))
    else:
        i, j = map(int, option.split())
        indices = found.cell(i, j)
        if len(indices) == 0:
            st.info(_("No validation image of class **{true}** was predicted as **{predicted}**: this cell "
                      "is empty. Click a cell with a number in it, or choose the top losses.").format(
                true=res.classes[i], predicted=res.classes[j]))
            return
        st.markdown(cell_heading(res.classes[i], res.classes[j], len(indices), count))
        indices = indices[:count]
    try:
        with st.spinner(_("Grad-CAM and the nearest training images…")):
            examples, searched = explained(run.run_id, stamp, tuple(int(k) for k in indices), neighbours)
    except DataError as err:
        show_error(err, _("The training images of this run cannot be loaded"))
        return
    except (CnnlabError, RuntimeError, ValueError) as err:  # captum/torch complaints: a message, not a trace
        show_error(err, _("These images cannot be explained"))
        return
    if searched is not None:
        st.caption(searched_text(*searched))
    for ex in examples:
        draw_example(ex, neighbours)


def cell_heading(true: str, predicted: str, k: int, shown: int) -> str:
    """The heading of one confusion cell's images: how many there are, and how many are shown."""
    said = {"true": true, "predicted": predicted, "n": fmt(k, ","), "shown": shown}
    if k > shown:
        return ngettext("**True {true}, predicted {predicted}**: {n} image, the {shown} with the highest "
                        "loss shown.",
                        "**True {true}, predicted {predicted}**: {n} images, the {shown} with the highest "
                        "loss shown.", k).format(**said)
    return ngettext("**True {true}, predicted {predicted}**: {n} image.",
                    "**True {true}, predicted {predicted}**: {n} images.", k).format(**said)


def searched_text(layer: str, compared: int, total: int, capped: bool) -> str:
    """What the nearest examples were searched among."""
    if capped:
        return _("Nearest examples: penultimate features (input of layer `{layer}`) of {compared} of the "
                 "{total} training images (a sample with every class; at most {most}, fewer for a large "
                 "network), cosine similarity.").format(
            layer=layer, compared=fmt(compared, ","), total=fmt(total, ","), most=fmt(MAX_TRAIN_IMAGES, ","))
    return _("Nearest examples: penultimate features (input of layer `{layer}`) of all {total} training "
             "images, cosine similarity.").format(layer=layer, total=fmt(total, ","))


def draw_example(ex, neighbours: int) -> None:
    """One image: itself, its Grad-CAM, the verdict with the top-3, and its nearest training images."""
    with st.container(border=True):
        a, b, c, d = st.columns([1, 1, 1.6, 3.6])
        a.image(enlarged(ex.image), caption=_("validation image #{index}").format(index=ex.index),
                output_format="PNG", width=100)
        b.image(enlarged(ex.overlay), caption=_("Grad-CAM of {predicted} · {layer}").format(
            predicted=ex.predicted, layer=ex.cam_layer), output_format="PNG", width=100)
        mark = _(":green[right]") if ex.correct else _(":red[wrong]")
        top = " · ".join(f"{name} {fmt(p, '.0%')}" for name, p in ex.top)
        c.markdown(_("**true:** {true}  \n**predicted:** {predicted} · {verdict}  \n**loss:** {loss}  \n"
                     "**top-3:** {top}").format(true=ex.true, predicted=ex.predicted, verdict=mark,
                                                loss=fmt(ex.loss, ".3f"), top=top))
        if ex.neighbours:
            d.caption(_("Nearest training images of class **{predicted}** (#position, cosine similarity)")
                      .format(predicted=ex.predicted))
            d.image([enlarged(nb.image, 84) for nb in ex.neighbours], output_format="PNG", width=84,
                    caption=[_("#{index}, {similarity}").format(index=nb.index,
                                                                similarity=fmt(nb.similarity, ".3f"))
                             for nb in ex.neighbours])
        elif neighbours:
            d.caption(_("No training image of class {predicted} among those compared.").format(
                predicted=ex.predicted))


def draw_xray(run) -> None:
    """The run's training X-ray (:mod:`app.xray_view`), and its first convolution's kernels epoch by epoch."""
    if run.is_link:  # never followed (the status box above says so)
        return
    st.subheader(_("Training X-ray"))
    st.caption(_("What happened inside the network while it trained: how strong each layer's gradient was, "
                 "how much each step moved its weights, which units died or saturated, and what that says."))
    xray_view.run_section(run.run_id, key=f"runs-kernels-{run.run_id}")


if status == "running":
    st.info(_("This run is still training: its curves are above and refresh by themselves; it is "
              "evaluated here once it ends (its best.pt so far is partial)."))
elif not run.has_checkpoint:
    st.info(_("This run has no checkpoint (it stopped before its first validation), so there is "
              "nothing to evaluate."))
else:
    if status in ("interrupted", "cancelled"):
        st.caption(_("The run did not complete its epochs: this evaluates the best weights saved until it "
                     "stopped."))
    try:
        stamp = (run.path / "best.pt").stat().st_mtime
        with st.spinner(_("Evaluating on the validation split…")):
            result = evaluation(run.run_id, stamp)
    except DataError as err:
        show_error(err, _("The dataset of this run cannot be loaded, so it cannot be evaluated (its curves "
                          "above are still shown)"))
    except (CnnlabError, OSError) as err:
        show_error(err, _("This run cannot be evaluated"))
    else:
        clicked = draw_evaluation(result, run.best_val_top1, chart_key=f"runs-confusion-{run.run_id}")
        mistakes_started(run.run_id, stamp, language())  # in the background, while the matrix is looked at
        draw_mistakes(run, result, clicked, stamp)

# ---- what happened inside while it trained, the way back to code, and delete -------------------------
draw_xray(run)
if run.has_checkpoint and status != "running" and not run.is_link:
    st.subheader(_("Export: a notebook, a script, the model"))
    export_view.run_exports(run.run_id, (run.path / "best.pt").stat().st_mtime)
if confirm_delete("runs", run.run_id, label=_("Delete this run…"), disabled=status == "running",
                  help=_("A run still training cannot be deleted; stop it on the Train page first."),
                  warning=_("Delete run **{run}**? Its folder (weights, metrics, configuration) is removed "
                            "for good. Other runs are not touched.").format(run=run.run_id),
                  delete=delete_run):
    st.session_state["runs-deleted"] = run.run_id
    st.rerun()
