"""Lessons: every comparison of the course in one click, concluded from the numbers it measured.

The page lists the lessons (``cnnlab.lessons``: the built-in TOML files, each with the time its
quick budget took when measured by ``python -m cnnlab lessons --measure``, or a teacher's own file
uploaded or given by path), runs one (every arm a background job on the shared queue, one live
chart overlaying the arms) and shows its result: the conclusion, the side-by-side table, the
overlaid curves and the plots the lesson asks for, and whether the run showed the effect the lecture
teaches. A lesson already run is shown from disk; a saved result can be deleted (after a confirmation).

Test and teacher hook: settings applied on top of every arm (e.g. ``{"epochs": 1, "max_steps": 3}``
for a tiny run) come from ``st.session_state["lesson_overrides"]`` (AppTest sets it) or, failing
that, from the environment variable ``CNNLAB_LESSON_OVERRIDES`` holding a JSON object (set by
whoever starts the server: the browser test, a teacher trying a new lesson file). The page says
when such settings are in force, and every result records them.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Mapping, Sequence

import altair as alt
import pandas as pd
import streamlit as st

from app.common import confirm_delete, remember, short_number, show_error
from app import export_view
from app.classroom_view import SESSION_KEY as CLASS_KEY, teacher_panel
from app.share import setting_shown
from cnnlab.errors import CnnlabError, LessonError
from cnnlab.i18n import N_, _, fmt
from cnnlab.lessons import (
    BUDGETS,
    COLUMN_LABELS,
    MAX_LESSON_BYTES,
    PLOTS,
    Lesson,
    LessonRun,
    StoredResult,
    about,
    budget_summary,
    delete_result,
    full_budget_state,
    lesson_at,
    lesson_runs,
    list_results,
    measured_label,
    own_lessons_run,
    read_builtin,
    read_measured,
    result_table,
    start_lesson,
    uploaded_lesson,
)

OVERRIDES_KEY = "lesson_overrides"  # session-state test hook (see the module docstring)
OVERRIDES_ENV = "CNNLAB_LESSON_OVERRIDES"  # the same, for a whole server
STORE = "lessons-form"  # widget values kept across page switches (app.common.remember)
LIVE = "lesson-live"  # the LessonRun.id this session follows
PICK = "lesson-result"  # the result shown (a result id)
ENDED = "lesson-ended"  # what a followed run ended with, shown once
DELETED = "lesson-deleted"  # a result deleted on the previous rerun, said once
BUILTIN, OWN = "builtin", "own"
# Tableau 10: distinct colours, one per arm (a lesson has at most 8), the same in every chart.
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d",
           "#ff9da6", "#bab0ac")
BUDGET_LABELS = {"quick": N_("Quick: embedded data, minutes on a CPU"),
                 "full": N_("Full: the seed's dataset and epochs, for a GPU")}
BUDGET_NAMES = {"quick": N_("quick"), "full": N_("full")}  # a budget's name inside a sentence
PERCENT_COLUMNS = {COLUMN_LABELS[c] for c in ("best_val_top1", "final_val_top1", "final_train_top1", "test_top1")}
COUNT_COLUMNS = {COLUMN_LABELS[c] for c in ("params", "trainable_params", "macs", "train_images")}
STATUS_ICONS = {"finished": ":material/check_circle:", "diverged": ":material/trending_up:",
                "failed": ":material/error:", "cancelled": ":material/cancel:", "skipped": ":material/block:",
                "queued": ":material/schedule:", "waiting": ":material/hourglass_empty:",
                "running": ":material/autorenew:"}
STATUS_WORDS = {"finished": N_("finished"), "diverged": N_("diverged"), "failed": N_("failed"),
                "cancelled": N_("cancelled"), "skipped": N_("skipped"), "queued": N_("queued"),
                "waiting": N_("waiting"), "running": N_("running")}  # an arm's state as the page says it


# ---- small helpers ----------------------------------------------------------------------------


def text(value: Any) -> str:
    """A lesson's own text (title, question, names, conclusion) shown literally in markdown."""
    return re.sub(r"([\\`*_\[\]$~|#<>])", r"\\\1", str(value))


def budget_name(budget: str) -> str:
    """A budget's name in the language in use ("quick", "rapido")."""
    return _(BUDGET_NAMES[budget]) if budget in BUDGET_NAMES else budget


def status_word(state: str) -> str:
    """An arm's state in the language in use ("finished", "terminato")."""
    return _(STATUS_WORDS[state]) if state in STATUS_WORDS else state


def cell(v: Any, column: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if column in PERCENT_COLUMNS:
        return fmt(v, ".1%")
    if column == COLUMN_LABELS["gap"]:
        shown = fmt(v, ".1%")  # percentage points, signed: training above validation is positive
        return shown if shown.startswith("-") else "+" + shown
    if column in COUNT_COLUMNS:
        return short_number(v)
    if column == COLUMN_LABELS["images_per_sec"]:
        return fmt(v, ",.0f")
    if column in (COLUMN_LABELS["epoch_seconds"], COLUMN_LABELS["train_epoch_seconds"]):
        return fmt(v, ".3f") if v < 1 else fmt(v, ".2f")
    if column == COLUMN_LABELS["status"]:
        return status_word(str(v))
    if isinstance(v, float):
        return fmt(v, ",.1f")
    return str(v)


def arm_labels(arms: Sequence[tuple[str, str]]) -> list[str]:
    """One label per arm (its name; its id added when two arms share a name)."""
    names = [name for _, name in arms]
    return [name if names.count(name) == 1 else f"{name} ({arm_id})" for arm_id, name in arms]


def run_labels(run: LessonRun) -> list[str]:
    """The arms' labels of a running lesson, in the language in use."""
    return arm_labels([(a.plan.arm.id, run.lesson.tr(a.plan.arm.name)) for a in run.arms])


def colour_scale(labels: Sequence[str]) -> alt.Scale:
    return alt.Scale(domain=list(labels), range=list(PALETTE[: len(labels)]))


def arm_colour(labels: Sequence[str], title: str | None = None) -> alt.Color:
    return alt.Color("arm:N", scale=colour_scale(labels), title=title,
                     legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=600, title=None))


TIP_TITLES = {"arm": N_("arm"), "epoch": N_("epoch"), "split": N_("split"), "value": N_("value"),
              "params": N_("params")}  # a tooltip line's name: the data's field in English


def tip(field: str, **kw: Any) -> alt.Tooltip:
    """A tooltip line named in the language in use (``field`` is "name:type")."""
    return alt.Tooltip(field, title=_(TIP_TITLES[field.split(":")[0]]), **kw)


def splits() -> tuple[str, str]:
    """The words for the two splits as the charts show them: (validation, training)."""
    return _("validation"), _("training")


def accuracy_scale(values: Sequence[float]) -> alt.Scale:
    """An accuracy axis zoomed on the values, at least 10 points wide (whole-percent ticks stay distinct)."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.0, 0.1 - (hi - lo)) / 2 + 0.01
    lo, hi = max(0.0, math.floor((lo - pad) * 20) / 20), min(1.0, math.ceil((hi + pad) * 20) / 20)
    return alt.Scale(domain=[lo, hi] if hi > lo else [0, 1])


def settings_text(settings: Mapping[str, Any]) -> str:
    """Training settings as a teacher writes them: "epochs=1, max_steps=3"."""
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def overrides() -> tuple[dict[str, Any], str]:
    """The settings for every arm from the test/teacher hook, and where they came from."""
    value = st.session_state.get(OVERRIDES_KEY)
    where = f"st.session_state['{OVERRIDES_KEY}']"
    if value is None and os.environ.get(OVERRIDES_ENV, "").strip():
        where = _("the environment variable {name}").format(name=OVERRIDES_ENV)
        try:
            value = json.loads(os.environ[OVERRIDES_ENV])
        except ValueError as e:
            raise LessonError(_("{where} is not JSON ({error}): write e.g. {{\"epochs\": 1}}.").format(
                where=where, error=e)) from None
    if value is None:
        return {}, ""
    if not isinstance(value, Mapping):
        raise LessonError(_("{where} must be a JSON object of training settings, e.g. {{\"epochs\": 1}}.").format(
            where=where))
    return dict(value), where


UPLOAD, PATH, SAVED = "upload", "path", "saved"
OPEN_LABELS = {UPLOAD: N_("Upload a file"), PATH: N_("A path on this server"),
               SAVED: N_("One run before on this machine")}
FORMAT_HINT = N_("A lesson is a small TOML file: a title, the question, a shared base config, two to eight arms and "
                 "a conclusion template; the built-in ones in `cnnlab/lessons/` are examples of the format.")


def own_lesson() -> Lesson | None:
    """A teacher's lesson: an uploaded .toml file, the path of one on this server, or one whose result
    is saved here (each result keeps the lesson's text, so it opens and runs again without the file)."""
    how = st.radio(_("Open"), list(OPEN_LABELS), format_func=lambda k: _(OPEN_LABELS[k]), horizontal=True,
                   key=remember(STORE, "lesson-open", UPLOAD), label_visibility="collapsed")
    try:
        if how == UPLOAD:
            up = st.file_uploader(_("A lesson file (.toml)"), type=["toml"], key="lesson-upload", max_upload_size=1,
                                  help=_("At most {kb} KB.").format(kb=MAX_LESSON_BYTES // 1024) + " "
                                  + _(FORMAT_HINT))
            if up is not None:
                return uploaded_lesson(up.name, up.getvalue())
        elif how == PATH:
            path = st.text_input(_("The path of a .toml lesson file on this server"),
                                 key=remember(STORE, "lesson-path", ""),
                                 placeholder=_("e.g. {path}").format(path="~/lessons/my_lesson.toml"))
            if path.strip():
                return lesson_at(path)
        else:
            saved = own_lessons_run()  # each lesson as it was last run
            if not saved:
                st.info(_("No lesson of your own has been run on this machine yet."), icon=":material/info:")
                return None
            name = st.selectbox(_("Your lessons run before"), list(saved), index=None, key="lesson-saved",
                                placeholder=_("Choose a lesson"),
                                format_func=lambda n: f"{saved[n].lesson.tr(saved[n].data['title'])} · {n}")
            if name is not None:
                return saved[name].lesson
            return None
    except CnnlabError as err:
        show_error(err, context=_("This lesson file cannot be used"))
        return None
    st.info((_("Upload a lesson file.") if how == UPLOAD else _("Type the path of a lesson file.")) + " "
            + _(FORMAT_HINT), icon=":material/upload_file:")
    return None


def find_run(run_id: Any):
    return next((r for r in lesson_runs() if r.id == run_id), None)


def same_lesson(a: Lesson, b: Lesson) -> bool:
    return a.name == b.name and a.builtin == b.builtin


def results_of(lesson: Lesson, budget: str) -> list:
    """Saved results of this lesson (built-in, or a teacher's file of the same name) in ``budget``."""
    return list_results(lesson.name, budget, builtin=lesson.builtin)


# ---- charts ---------------------------------------------------------------------------------------


def legend_space(n: int) -> int:
    """Pixels the colour legend under a chart takes (a chart's height includes its legend)."""
    return 40 + 22 * n


def bars_height(n: int, per_arm: int) -> int:
    return 70 + per_arm * n + legend_space(n)


def curves_chart(result_arms: Sequence[Mapping[str, Any]], labels: Sequence[str], metric: str) -> alt.Chart | None:
    """Validation (solid) and training (dashed) ``metric`` per epoch, the arms overlaid."""
    rows = []
    val, train = splits()
    for arm, label in zip(result_arms, labels):
        for e in arm.get("curves") or []:
            for split, key in ((val, f"val_{metric}"), (train, f"train_{metric}")):
                v = finite(e.get(key))
                if v is not None and isinstance(e.get("epoch"), (int, float)):
                    rows.append({"arm": label, "epoch": e["epoch"], "split": split, "value": v})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    acc = metric == "top1"
    y = alt.Y("value:Q", title=_("accuracy") if acc else _("loss"),
              scale=accuracy_scale(list(df.value)) if acc else alt.Scale(zero=False),
              axis=alt.Axis(format=".0%") if acc else alt.Axis())
    return alt.Chart(df).mark_line(point=True).encode(
        alt.X("epoch:Q", title=_("epoch"), axis=alt.Axis(tickMinStep=1, format="d")), y, arm_colour(labels),
        alt.StrokeDash("split:N", sort=[val, train], legend=None),  # said in the chart's title
        tooltip=[tip("arm:N"), tip("epoch:Q"), tip("split:N"), tip("value:Q", format=".1%" if acc else ".4f")],
    ).properties(height=280 + legend_space(len(labels)))


def gap_chart(result_arms, labels) -> alt.Chart | None:
    rows = []
    val, train = splits()
    for arm, label in zip(result_arms, labels):
        for split, key in ((train, "final_train_top1"), (val, "final_val_top1")):
            v = finite(arm.get(key))
            if v is not None:
                rows.append({"arm": label, "split": split, "value": v})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(
        alt.Y("arm:N", title=None, sort=list(labels), axis=alt.Axis(labelLimit=400)),
        alt.YOffset("split:N", sort=[train, val]),
        alt.X("value:Q", title=_("final accuracy"), scale=alt.Scale(domain=[0, 1.12]),
              axis=alt.Axis(format=".0%", values=[0, 0.2, 0.4, 0.6, 0.8, 1.0])),
    )
    bars = base.mark_bar().encode(
        arm_colour(labels),
        alt.Opacity("split:N", sort=[train, val], scale=alt.Scale(range=[0.45, 1.0]),
                    legend=alt.Legend(orient="bottom", title=_("light: training, dark: validation"))),
        tooltip=[tip("arm:N"), tip("split:N"), tip("value:Q", format=".1%")],
    )
    labels_ = base.mark_text(align="left", dx=4).encode(text=alt.Text("value:Q", format=".1%"))
    return (bars + labels_).properties(height=bars_height(len(labels), 56))


def time_chart(result_arms, labels) -> alt.Chart | None:
    # training only (validation excluded) when the result has it; older results: the whole epoch
    key = "train_epoch_seconds" if any(finite(a.get("train_epoch_seconds")) is not None for a in result_arms) \
        else "epoch_seconds"
    title = _("training seconds per epoch (validation excluded)") if key == "train_epoch_seconds" \
        else _("seconds per epoch")
    rows = [{"arm": label, "value": v} for arm, label in zip(result_arms, labels)
            if (v := finite(arm.get(key))) is not None]
    if not rows:
        return None
    base = alt.Chart(pd.DataFrame(rows)).encode(
        alt.Y("arm:N", title=None, sort=list(labels), axis=alt.Axis(labelLimit=400)),
        alt.X("value:Q", title=title, scale=alt.Scale(zero=True)),
    )
    bars = base.mark_bar().encode(arm_colour(labels), tooltip=[tip("arm:N"), tip("value:Q", format=".3f")])
    values = base.mark_text(align="left", dx=4).encode(text=alt.Text("value:Q", format=".3f"))
    return (bars + values).properties(height=bars_height(len(labels), 36))


def params_chart(result_arms, labels) -> alt.Chart | None:
    rows = [{"arm": label, "params": p, "value": v} for arm, label in zip(result_arms, labels)
            if (p := finite(arm.get("params"))) and (v := finite(arm.get("best_val_top1"))) is not None]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    spread = df.params.max() / max(df.params.min(), 1)
    base = alt.Chart(df).encode(
        alt.X("params:Q", title=_("parameters (log scale)") if spread > 20 else _("parameters"),
              scale=alt.Scale(type="log" if spread > 20 else "linear", zero=False, padding=30),
              axis=alt.Axis(format="~s")),
        alt.Y("value:Q", title=_("best validation accuracy"), axis=alt.Axis(format=".0%"),
              scale=accuracy_scale(list(df.value))),
    )
    points = base.mark_point(filled=True, size=160).encode(
        arm_colour(labels),
        tooltip=[tip("arm:N"), tip("params:Q", format=","), tip("value:Q", format=".1%")])
    return points.properties(height=280 + legend_space(len(labels)))


PLOT_CHARTS = {"gap": (N_("Training against validation accuracy"), gap_chart),
               "time": (N_("Time per epoch"), time_chart),
               "params": (N_("Parameters against accuracy"), params_chart)}  # plot: (its title, marked; its chart)


# ---- the live view --------------------------------------------------------------------------------


def live_rows(run) -> tuple[list[dict], list[dict]]:
    """(validation accuracy per epoch, running training loss per step) of every arm, read
    incrementally from its job's events (a cursor per arm in this session)."""
    cache = st.session_state.setdefault("lesson-live-cache", {})
    if cache.get("run") != run.id:
        cache.clear()
        cache["run"] = run.id
    labels = run_labels(run)
    epochs, steps = [], []
    for a, label in zip(run.arms, labels):
        if a.job is None:
            continue
        c = cache.setdefault(a.plan.arm.id, {"i": 0, "per_epoch": 0, "epochs": [], "steps": []})
        new, c["i"] = a.job.events_since(c["i"])
        for e in new:
            if e["kind"] == "start":
                c["per_epoch"] = max(1, int(e.get("steps_per_epoch") or 1))
            elif e["kind"] == "epoch" and finite(e.get("val_top1")) is not None:
                c["epochs"].append({"arm": label, "epoch": e["epoch"], "value": e["val_top1"]})
            elif e["kind"] == "step" and c["per_epoch"] and finite(e.get("loss")) is not None:
                c["steps"].append({"arm": label, "epoch": e["step"] / c["per_epoch"], "value": e["loss"]})
                if len(c["steps"]) > 600:  # a chart, not a log: keep every other point
                    c["steps"] = c["steps"][::2]
        epochs += c["epochs"]
        steps += c["steps"]
    return epochs, steps


def arm_line(run, a, label: str) -> str:
    state = run.arm_state(a)
    job = a.job
    epochs = a.plan.config.epochs
    parts = [status_word(state)]  # the state, then what it is doing: " · "-separated phrases
    if state == "queued" and job is not None and job.position:
        parts = [_("queued (position {position})").format(position=job.position)]
    elif state == "waiting":
        dep = a.plan.depends_on
        parts = [_("waits for the weights of arm {arm}").format(arm=dep) if dep else _("preparing its data")]
    elif state == "running" and job is not None:
        epoch = job.latest_epoch or {}
        step = job.latest_step or {}
        now = min(epochs, max(int(step.get("epoch", 1)), int(epoch.get("epoch", 0)) + 1))
        parts.append(_("epoch {now} of {epochs}").format(now=now, epochs=epochs))
        if "val_top1" in epoch:
            parts.append(_("validation accuracy {accuracy} after epoch {epoch}").format(
                accuracy=fmt(epoch["val_top1"], ".1%"), epoch=epoch["epoch"]))
        elif "loss" in step:
            parts.append(_("training loss {loss}").format(loss=fmt(step["loss"], ".3f")))
    elif state == "finished" and job is not None:
        best = job.result.best_val_top1 if job.result is not None else None
        if isinstance(best, float):
            parts.append(_("best validation accuracy {accuracy}").format(accuracy=fmt(best, ".1%")))
    return f"{STATUS_ICONS.get(state, '')} **{text(label)}** · " + " · ".join(parts)


@st.fragment(run_every=1.5)
def live_view(run_id: int) -> None:
    run = find_run(run_id)
    if run is None:
        return
    if run.done:
        st.rerun()  # the whole page: the result is on disk now
    labels = run_labels(run)
    top = st.columns([4, 1], vertical_alignment="center")
    progress = _("**All arms** · {budget} budget · {share} of the training steps done").format(
        budget=budget_name(run.budget), share=fmt(run.progress, ".0%"))
    top[0].progress(run.progress, text=progress)
    if top[1].button(_("Stop"), icon=":material/stop_circle:", key=f"lesson-stop-{run.id}", width="stretch",
                     help=_("Stop every arm; the arms measured so far are kept in the result.")):
        run.cancel()
        st.toast(_("Stopping the lesson: the arms measured so far are kept."), icon=":material/stop_circle:")
    for a, label in zip(run.arms, labels):
        st.progress(a.progress, text=arm_line(run, a, label))
        state = run.arm_state(a)
        message = a.job.message if a.job is not None else a.message
        if state in ("failed", "diverged", "skipped", "cancelled") and message:
            st.caption(f"{STATUS_ICONS.get(state, '')} {text(message)}")
    epochs, steps = live_rows(run)
    x = alt.X("epoch:Q", title=_("epoch"), axis=alt.Axis(tickMinStep=1, format="~g"))
    if epochs:
        chart = alt.Chart(pd.DataFrame(epochs)).mark_line(point=True).encode(
            x, alt.Y("value:Q", title=_("validation accuracy"), axis=alt.Axis(format=".0%"),
                     scale=accuracy_scale([e["value"] for e in epochs])),
            arm_colour(labels), tooltip=[tip("arm:N"), tip("epoch:Q"), tip("value:Q", format=".1%")])
        st.markdown(_("**Validation accuracy per epoch**, the arms overlaid"))
    elif steps:
        chart = alt.Chart(pd.DataFrame(steps)).mark_line().encode(
            x, alt.Y("value:Q", title=_("training loss (running mean)"), scale=alt.Scale(zero=False)),
            arm_colour(labels),
            tooltip=[tip("arm:N"), tip("epoch:Q", format=".2f"), tip("value:Q", format=".3f")])
        st.markdown(_("**Training loss** while the first epoch runs (validation accuracy follows after it)"))
    else:
        st.caption(_("The chart appears after the first training steps."))
        return
    st.altair_chart(chart.properties(height=260 + legend_space(len(labels))), width="stretch")


# ---- a result -------------------------------------------------------------------------------------


def effect_line(effect: Any) -> None:
    """Whether this run showed the effect the lecture teaches (results saved before it was recorded: nothing)."""
    if not isinstance(effect, Mapping) or not isinstance(effect.get("shown"), bool):
        return
    if effect["shown"]:
        st.success(_("This run shows the effect the lecture teaches."), icon=":material/check_circle:")
        return
    why = [w for w in effect.get("why") or [] if isinstance(w, str) and w.strip()]
    listed = "\n".join(f"- {text(w)}" for w in why)
    st.warning(_("This run does not show the effect the lecture teaches:") + "\n" + listed if why
               else _("This run does not show the effect the lecture teaches."), icon=":material/report:")


def arm_diagnoses(arms: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """What each arm's training X-ray says in words (``cnnlab.xray.diagnose``), for the arms where it says something."""
    said = [(label, arm["diagnoses"]) for arm, label in zip(arms, labels)
            if isinstance(arm.get("diagnoses"), list) and arm["diagnoses"]]
    if not said:
        return
    st.markdown(_("**What the training X-ray saw** (the Runs page shows each arm's X-ray in full)"))
    for label, sentences in said:
        st.warning(f"**{text(label)}**:\n" + "\n".join(f"- {text(s)}" for s in sentences),
                   icon=":material/troubleshoot:")


def show_result(stored, lesson: Lesson) -> None:
    data = stored.data
    shown = stored.lesson or lesson  # the lesson as it was run (its plots and columns)
    arms = stored.arms
    labels = arm_labels([(a["id"], shown.tr(a["name"])) for a in arms])
    machine = data.get("machine") or {}
    facts = [_("{budget} budget").format(budget=budget_name(data["budget"])),
             str(data["created"]).replace("T", " ")[:16]]
    if isinstance(data.get("seconds"), (int, float)):
        facts.append(_("{seconds} s in all").format(seconds=fmt(data["seconds"], ",.0f")))
    if machine.get("device"):
        facts.append(_("on {device}, {threads} threads").format(device=machine["device"], threads=machine["threads"])
                     if machine.get("threads") else _("on {device}").format(device=machine["device"]))
    facts.append(_("result {id}").format(id=data.get("id", stored.id)))
    st.caption(" · ".join(facts))
    if data.get("overrides"):
        st.caption(_(":material/tune: Run with these settings for every arm: {settings}").format(
            settings=settings_text(data["overrides"])))
    if data.get("state") == "cancelled":
        st.warning(_("This run was stopped before every arm ended: the table has what was measured."),
                   icon=":material/cancel:")
    if stored.problem:
        st.caption(_("The lesson as it was run no longer parses ({problem}); shown with today's file.").format(
            problem=text(stored.problem)))

    st.markdown(_("#### :material/lightbulb: Conclusion"))
    st.info(text(stored.conclusion), icon=":material/school:")
    effect_line(data.get("effect"))

    st.markdown(_("#### :material/table_chart: Side by side"))
    rows = result_table(arms, shown.columns)
    if not rows:
        st.caption(_("This result has no arm."))
        return
    measured = [k for k in rows[0] if k != "arm" and (k == "status" or any(r[k] is not None for r in rows))]
    table = pd.DataFrame([{_(k): cell(row[k], k) for k in measured} for row in rows],  # headings: COLUMN_LABELS
                         index=pd.Index(labels, name=_("arm")))
    st.table(table)
    for arm, label in zip(arms, labels):
        if arm["status"] == "finished":
            continue
        said = {"arm": text(label), "status": status_word(arm["status"])}
        what = _("**{arm}** {status}: {message}").format(**said, message=text(arm["message"])) \
            if arm.get("message") else _("**{arm}** {status}.").format(**said)
        icon = STATUS_ICONS.get(arm["status"], ":material/info:")
        (st.error if arm["status"] == "failed" else st.warning)(what, icon=icon)
    arm_diagnoses(arms, labels)

    st.markdown(_("#### :material/show_chart: Curves"))
    c1, c2 = st.columns(2)
    for col, metric, title in ((c1, "top1", _("**Accuracy** per epoch (solid: validation, dashed: training)")),
                               (c2, "loss", _("**Loss** per epoch (solid: validation, dashed: training)"))):
        chart = curves_chart(arms, labels, metric)
        col.markdown(title)
        if chart is None:
            col.caption(_("No epoch was measured."))
        else:
            col.altair_chart(chart, width="stretch")
    for plot in shown.plots:
        if plot not in PLOT_CHARTS:
            continue
        title, make = PLOT_CHARTS[plot]
        st.markdown(f"#### {_(title)}")
        st.caption(_(PLOTS[plot]).capitalize() + ".")  # PLOTS: marked in cnnlab.lessons.spec
        chart = make(arms, labels)
        if chart is None:
            st.caption(_("Not measured for any arm of this run."))
        else:
            st.altair_chart(chart, width="stretch")


# ---- the page's parts -----------------------------------------------------------------------------


def pick_builtin(measured: Mapping[str, Any]) -> Lesson | None:
    """One of the course's lessons, one line each with its measured time; a broken file is reported."""
    lessons, problems = read_builtin()
    for err in problems:
        show_error(err, context=_("A built-in lesson cannot be read"))
    if not lessons:
        return None
    by_name = {x.name: x for x in lessons}
    if st.session_state.get("lesson-pick", st.session_state.get(STORE, {}).get("lesson-pick")) not in by_name:
        st.session_state.pop("lesson-pick", None)
        st.session_state.get(STORE, {}).pop("lesson-pick", None)
    pick_key = remember(STORE, "lesson-pick", lessons[0].name, options=list(by_name))
    if setting_shown(pick_key):
        # one line per lesson, no scroll box: the chosen one's question and arms are shown below
        st.radio(
            _("Lesson"), list(by_name), key=pick_key,
            format_func=lambda n: f"{list(by_name).index(n) + 1}. {by_name[n].tr(by_name[n].title)}"
            + (f" · {about(measured[n]['seconds'])}" if n in measured else ""),
            help=_("The time is the quick budget's, as measured by `{command}`.").format(
                command="python -m cnnlab lessons --measure"),
        )
    return by_name[st.session_state[pick_key]]


KIND_LABELS = {BUILTIN: N_("The course's lessons"), OWN: N_("Your own lesson file")}


def choose_lesson(measured: Mapping[str, Any]) -> Lesson | None:
    kind = st.segmented_control(_("Lessons"), [BUILTIN, OWN], key=remember(STORE, "lesson-kind", BUILTIN),
                                format_func=lambda k: _(KIND_LABELS[k]),
                                label_visibility="collapsed", required=True) or BUILTIN
    return pick_builtin(measured) if kind == BUILTIN else own_lesson()


def describe_lesson(lesson: Lesson, measured: Mapping[str, Any]) -> None:
    """Other lessons running, then this one's title, origin, question and arms."""
    for other in lesson_runs():
        if not other.done and not same_lesson(other.lesson, lesson):
            st.caption(_(":material/pending: Also running: {title} ({budget} budget, {share}).").format(
                title=text(other.lesson.tr(other.lesson.title)), budget=budget_name(other.budget), share=fmt(other.progress, ".0%")))
    st.divider()
    st.subheader(lesson.tr(lesson.title), anchor=False)
    timed = measured.get(lesson.name) if lesson.builtin else None
    facts = [_("Lecture {seed} · lesson `{name}`").format(seed=lesson.seed_label, name=lesson.name)]
    if not lesson.builtin and lesson.path:
        facts.append(_("from {path}").format(path=text(lesson.path)))
    if timed:
        facts.append(_("quick budget {measured}").format(measured=measured_label(timed)))
    st.caption(" · ".join(facts))
    st.markdown(_("**Question.** {question}").format(question=text(lesson.tr(lesson.question))))
    st.markdown("\n".join(f"- **{text(lesson.tr(a.name))}**" + (f": {text(lesson.tr(a.note))}" if a.note else "")
                          for a in lesson.arms))


def followed_run(lesson: Lesson) -> LessonRun | None:
    """The run of ``lesson`` still going that this session follows (one it started, or one started
    before a reload or from another tab); a followed run that has ended hands over its result."""
    running = find_run(st.session_state.get(LIVE))
    if running is not None and running.done:  # the run this session followed has ended since the last rerun
        st.session_state.pop(LIVE, None)
        if running.result_id:
            st.session_state[PICK] = running.result_id
        if running.state == "failed":
            st.session_state[ENDED] = running.message
        running = None
    if running is None or not same_lesson(running.lesson, lesson):
        running = next((r for r in reversed(lesson_runs(lesson.name)) if not r.done and same_lesson(r.lesson, lesson)),
                       None)
        if running is not None:
            st.session_state[LIVE] = running.id
    return running


def budget_choice(lesson: Lesson, running: LessonRun | None, extra: Mapping[str, Any],
                  extra_from: str) -> tuple[str, list[StoredResult]]:
    """The budget radio, the Run button (a press starts the lesson) and what the budget trains; the
    budget and this lesson's saved results in it."""
    can_full, why_full = full_budget_state(lesson)
    if not can_full and st.session_state.get("lesson-budget") == "full":
        st.session_state["lesson-budget"] = "quick"
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    budget_key = remember(STORE, "lesson-budget", "quick", options=BUDGETS)
    if not can_full and st.session_state[budget_key] == "full":  # e.g. a link asking for the full budget here
        st.session_state[budget_key] = st.session_state[STORE][budget_key] = "quick"
    if setting_shown(budget_key):
        c1.radio(_("Budget"), BUDGETS, key=budget_key, horizontal=True,
                 format_func=lambda b: _(BUDGET_LABELS[b]), disabled=running is not None or not can_full)
    budget = running.budget if running is not None else st.session_state[budget_key]
    results = results_of(lesson, budget)
    start = c2.button(_("Run again") if results else _("Run"), type="primary",
                      icon=":material/play_arrow:", key="lesson-run", disabled=running is not None, width="stretch",
                      help=_("Queue every arm of the lesson as a background job; the result is saved and listed "
                             "below."))
    why = _("the default") if budget == "quick" else _("chosen: {why}").format(why=why_full.rstrip("."))
    try:
        summary = budget_summary(lesson, budget, extra)
    except CnnlabError as err:
        summary = ""
        show_error(err, context=_("The settings for every arm do not fit this lesson"))
    st.caption(_("Runs the **{budget}** budget ({why}). {summary}").format(
        budget=budget_name(budget), why=text(why), summary=text(summary.split(": ", 1)[-1])))
    if not can_full:
        st.caption(_(":material/block: The full budget is not offered here: {why}").format(why=text(why_full)))
    if extra:
        st.caption(_(":material/tune: Settings for every arm from {where} (a test or teacher hook): {settings}").format(
            where=extra_from, settings=settings_text(extra)))
    if start and running is None:
        try:
            started = start_lesson(lesson, budget, overrides=extra)
        except CnnlabError as err:
            show_error(err, context=_("The lesson did not start"))
        else:
            st.session_state[LIVE] = started.id
            st.session_state.pop(ENDED, None)
            st.rerun()  # drawn again as running: Run and the budget disabled, the live view
    return budget, results


def result_label(stored: StoredResult, newest: bool) -> str:
    d = stored.data
    parts = [str(d["created"]).replace("T", " ")[:19]]
    if newest:
        parts.append(_("newest"))
    if d.get("state") == "cancelled":
        parts.append(_("stopped"))
    if d.get("overrides"):
        parts.append(_("settings: {settings}").format(settings=settings_text(d["overrides"])))
    return " · ".join(parts)


def delete_control(result_id: str) -> None:
    """Delete a saved result (e.g. a trial run before class), after a confirmation."""
    if confirm_delete("lesson", result_id, label=_("Delete this result…"),
                      help=_("Remove this saved result; the runs of its arms stay on the Runs page."),
                      warning=_("Delete the lesson result **{id}**? Its table, curves and conclusion are removed "
                                "for good. The runs of its arms and the other results are not touched.").format(
                                    id=result_id),
                      delete=delete_result, failed=_("The result was not deleted")):
        st.session_state.pop(PICK, None)
        st.session_state[DELETED] = result_id
        st.rerun()


def saved_results(lesson: Lesson, budget: str, results: Sequence[StoredResult]) -> None:
    """The saved results of ``lesson`` in ``budget`` (newest first): the chosen one shown, and a way to
    delete it."""
    st.subheader(_("Result"), anchor=False)
    deleted = st.session_state.pop(DELETED, None)
    if deleted:
        st.success(_("Lesson result {id} deleted. The runs of its arms were not touched.").format(id=deleted),
                   icon=":material/delete:")
    if not results:
        st.info(_("This lesson has no saved result in the {budget} budget on this machine yet: press **Run**. "
                  "The result is saved and opens here instantly next time.").format(budget=budget_name(budget)),
                icon=":material/info:")
        return
    by_id = {r.id: r for r in results}
    if st.session_state.get(PICK) not in by_id:
        st.session_state[PICK] = results[0].id
    if len(results) > 1:
        st.selectbox(_("Saved results of this lesson (newest first)"), list(by_id), key=PICK,
                     format_func=lambda rid: result_label(by_id[rid], rid == results[0].id))
    show_result(by_id[st.session_state[PICK]], lesson)
    delete_control(st.session_state[PICK])


# ---- the page -------------------------------------------------------------------------------------

st.title(_("Lessons"))
st.write(_("Each lesson is one comparison of the course, run in one go: its arms train one after the other as "
           "background jobs (they also appear on the **Train** and **Runs** pages), then the page lines them up "
           "and writes a conclusion from the numbers just measured. A lesson already run opens from disk at once, "
           "so a teacher can prepare it before class."))

try:
    extra, extra_from = overrides()
except CnnlabError as err:
    show_error(err, context=_("The lesson settings hook is ignored"))
    extra, extra_from = {}, ""

measured = read_measured()  # cnnlab/lessons/measured.json: each built-in lesson's quick budget, timed
lesson = choose_lesson(measured)
if lesson is None:
    st.stop()
describe_lesson(lesson, measured)
running = followed_run(lesson)
budget, results = budget_choice(lesson, running, extra, extra_from)

with st.expander(_("Class session: the class guesses before the run"), icon=":material/groups:",
                 expanded=bool(st.session_state.get(CLASS_KEY, {}).get(lesson.name))):
    teacher_panel(lesson.name, results)

if lesson.builtin:
    with st.expander(_("Homework: this lesson as a notebook or a script"), icon=":material/code:"):
        st.caption(_("Plain PyTorch, no cnnlab: the question, one section per arm, the comparison table and plot, and "
                     "the questions to discuss. It runs in a fresh Jupyter kernel or with `python lesson.py`."))
        export_view.lesson_exports(lesson.name, lesson.source, budget)

ended = st.session_state.pop(ENDED, None)
if ended:
    show_error(ended, context=_("The lesson stopped"))
if running is not None:
    st.subheader(_("Running"), anchor=False)
    live_view(running.id)
else:
    saved_results(lesson, budget, results)
