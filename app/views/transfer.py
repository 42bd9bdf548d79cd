"""Transfer learning: a pretrained network against the same network trained from scratch."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.common import show_error
from cnnlab.data import dataset_status
from cnnlab.device import pick_device
from cnnlab.errors import CnnlabError
from cnnlab.i18n import N_, _, fmt, language
from cnnlab.jobs import get_manager
from cnnlab.models import get_spec, list_models
from cnnlab.models.pretrained import weights_status
from cnnlab.runs import load_run, run_label, status_word
from cnnlab.transfer import (
    CompareConfig, StandinConfig, comparable, comparison_candidates, submit_comparison, submit_standin, summarize,
)

st.title(_("Transfer learning"))
st.write(_(
    "Lecture 000's experiment: VGG-16 trained from scratch on Caltech101 against VGG-16 pretrained on "
    "ImageNet, its features frozen and only a new head trained (1,075,046 parameters). Same images, "
    "same budget. The pretrained network starts from features that already see edges, textures and "
    "object parts; the scratch one must learn them from a few thousand images."
))
# what the code keeps as keys, shown in the reader's language
FILE_STATES = {"present": N_("present"), "downloadable": N_("downloadable"), "missing": N_("missing")}
SPLIT_WORDS = {"test": N_("test"), "val": N_("val"), "train": N_("train")}
MODES = {"feature_extract": N_("frozen features (lecture 000)"), "finetune": N_("fine-tune everything")}


def state_word(state: str) -> str:
    """Whether a file is there, in the reader's language."""
    return _(FILE_STATES[state]) if state in FILE_STATES else state


weights_state, weights_msg = weights_status("vgg16")
data_status = dataset_status("caltech101")
c1, c2 = st.columns(2)
icon = {"present": ":material/check_circle:", "downloadable": ":material/download:", "missing": ":material/cancel:"}  # not emoji: Debian's Chromium has no emoji font
c1.markdown(_("**VGG-16 ImageNet weights** {icon} {state}").format(icon=icon.get(weights_state, ""),
                                                                      state=state_word(weights_state)))
c1.caption(weights_msg)
c2.markdown(_("**Caltech101** {icon} {state}").format(icon=icon.get(data_status.state, ""),
                                                       state=state_word(data_status.state)))
c2.caption(data_status.message)

real_possible = weights_state == "present" and data_status.state == "present"
names = [_("Caltech101 with VGG-16"), _("Offline stand-in (works everywhere)")]
tabs = st.tabs(names if real_possible else names[::-1])  # the runnable experiment first
tab_real, tab_standin = (tabs[0], tabs[1]) if real_possible else (tabs[1], tabs[0])

with tab_real:
    if not real_possible:
        st.info(_("The real comparison needs both the ImageNet weights and Caltech101 on disk (see above). "
                  "Meanwhile the **offline stand-in** tab runs the same experiment on embedded data."))
    else:
        names = [n for n in list_models() if not get_spec(n).adaptive and get_spec(n).family != "transfer"]
        a, b, c, d = st.columns(4)
        scratch_model = a.selectbox(_("From-scratch model"), names, index=names.index("vgg16"),
                                    key="tl-scratch")
        mode = b.radio(_("Pretrained VGG-16"), list(MODES), key="tl-mode", format_func=lambda m: _(MODES[m]))
        epochs = c.number_input(_("Epochs"), 1, 100, 3, key="tl-epochs")
        batch = d.select_slider(_("Batch size"), [8, 16, 32, 64], 16, key="tl-batch")
        lr = st.number_input(_("Learning rate (Adam)"), 1e-6, 1.0, 1e-3, format="%.5f", key="tl-lr")
        if pick_device().type == "cpu":
            st.warning(_("No GPU here: VGG-16 at 224x224 trains at a few images per second on a CPU, so "
                         "one epoch of Caltech101 takes tens of minutes."), icon=":material/hourglass_top:")
        if st.button(_("Run the comparison"), type="primary", key="tl-run"):
            try:
                cfg = CompareConfig(scratch_model=scratch_model, mode=mode, epochs=int(epochs),
                                    batch_size=int(batch), lr=float(lr))
                jobs = submit_comparison(cfg)
            except CnnlabError as err:
                show_error(err)
            else:
                st.session_state["tl-jobs"] = [j.id for j in jobs]
                st.success(_("Queued: the scratch model first, then the pretrained one. Follow them on the "
                             "**Train** page; the result appears below when both are done."))

with tab_standin:
    st.markdown(_(
        "No download needed. In the spirit of lecture 002 (pretrain on CIFAR-100, fine-tune on CIFAR-10): "
        "a LeNet-5 is pretrained once on **five** shape classes with thousands of images (cached), then it "
        "and an identical fresh LeNet-5 learn **three other** shapes (ring, heart, crescent) from only "
        "20 labelled images each, for the same number of steps."
    ))
    if st.button(_("Run the stand-in comparison"), type="primary", key="tl-standin"):
        try:
            with st.spinner(_("Pretraining on the five source classes (once; cached afterwards)…")):
                jobs = submit_standin(StandinConfig())
        except CnnlabError as err:
            show_error(err)
        else:
            st.session_state["tl-jobs"] = [j.id for j in jobs]


def job_text(scratch: bool, job) -> str:
    """One of the comparison's two trainings: which it is, its model, its state (its place in the queue)."""
    said = {"model": job.config.model, "state": status_word(job.state), "position": job.position}
    if job.state == "queued":
        text = (_("from scratch: {model} — {state} (queue position {position})") if scratch
                else _("pretrained: {model} — {state} (queue position {position})"))
    else:
        text = _("from scratch: {model} — {state}") if scratch else _("pretrained: {model} — {state}")
    return text.format(**said)


@st.fragment(run_every=2.0)
def progress() -> None:
    ids = st.session_state.get("tl-jobs")
    if not ids:
        return
    manager = get_manager()
    jobs = [manager.get(i) for i in ids]
    if any(j is None for j in jobs):
        return
    for scratch, job in zip((True, False), jobs):
        st.progress(job.progress, text=job_text(scratch, job))
    if all(j.done for j in jobs):
        st.session_state["tl-pair"] = (jobs[0].run_id, jobs[1].run_id)
        st.session_state.pop("tl-jobs")
        st.rerun()


progress()

st.subheader(_("Results"))
scratch_cands, pre_cands = comparison_candidates()
cands = scratch_cands + pre_cands
scratch_runs = [r.run_id for r in scratch_cands]
pre_runs = [r.run_id for r in pre_cands]
if not scratch_runs or not pre_runs:
    st.info(_("No comparison yet: run one above (the stand-in takes about a minute on a CPU)."))
    st.stop()
pair = st.session_state.get("tl-pair") or (scratch_runs[0], pre_runs[0])
a, b = st.columns(2)
labels = {r.run_id: run_label(r) for r in cands}
s_id = a.selectbox(_("From scratch"), scratch_runs, format_func=labels.get, key="tl-s",
                   index=scratch_runs.index(pair[0]) if pair[0] in scratch_runs else 0)
same = [r.run_id for r in comparable(load_run(s_id), pre_cands)]
if not same:
    st.info(_("No pretrained run was trained on the same classes as this scratch run: pick another one, "
              "or run a comparison above."))
    st.stop()
pre_runs = same
p_id = b.selectbox(_("Pretrained"), pre_runs, format_func=labels.get, key="tl-p",
                   index=pre_runs.index(pair[1]) if pair[1] in pre_runs else 0)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_summary(scratch_id: str, pre_id: str, lang: str) -> dict:
    """Both runs evaluated side by side; per language ``lang``: the summary's labels are in it."""
    return summarize(scratch_id, pre_id, split="test").as_dict()  # each run on its own split


try:
    with st.spinner(_("Evaluating both runs…")):  # here: a decorator's text is fixed at import, in English
        summary = cached_summary(s_id, p_id, language())
except CnnlabError as err:
    show_error(err)
    st.stop()

sa, sb = summary["scratch"], summary["pretrained"]
# top-5 means something only with more than five classes (with three it is always 100%)
with_top5 = len(sa["per_class"]) > 5
m = st.columns(4 if with_top5 else 2)
m[0].metric(_("Scratch top-1"), fmt(sa["top1"], ".1%"))
gain = (sb["top1"] - sa["top1"]) * 100
m[1].metric(_("Pretrained top-1"), fmt(sb["top1"], ".1%"),
            delta=_("{delta} points").format(delta=("+" if gain >= 0 else "-") + fmt(abs(gain), ".1f")))
if with_top5:
    m[2].metric(_("Scratch top-5"), fmt(sa["top5"], ".1%"))
    m[3].metric(_("Pretrained top-5"), fmt(sb["top5"], ".1%"))
said = {"split": _(SPLIT_WORDS[sa["split"]]) if sa["split"] in SPLIT_WORDS else sa["split"],
        "scratch": status_word(sa["status"]), "pretrained": status_word(sb["status"]),
        "message": sa["message"]}
if sa["status"] == "finished":
    st.caption(_("Measured on the {split} split. Scratch run: {scratch}; pretrained run: {pretrained}.")
               .format(**said))
else:
    st.caption(_("Measured on the {split} split. Scratch run: {scratch}; pretrained run: {pretrained}. "
                 "Scratch: {message}").format(**said))

# the charts name their axes and legends by the columns: the columns are named in the reader's language
col = {"epoch": _("epoch"), "run": _("run"), "val accuracy": _("val accuracy"), "val loss": _("val loss"),
       "train loss": _("train loss"), "class": _("class"), "scratch top-1": _("scratch top-1"),
       "pretrained top-1": _("pretrained top-1"), "difference": _("difference")}
rows = []
for tag, s in ((_("scratch"), sa), (_("pretrained"), sb)):
    for r in s["curves"]:
        rows.append({col["epoch"]: r.get("epoch"), col["run"]: tag, col["val accuracy"]: r.get("val_top1"),
                     col["val loss"]: r.get("val_loss"), col["train loss"]: r.get("train_loss")})
curves = pd.DataFrame(rows)
if not curves.empty:
    c1, c2 = st.columns(2)
    c1.markdown(_("**Validation accuracy**"))
    c1.line_chart(curves, x=col["epoch"], y=col["val accuracy"], color=col["run"], height=260)
    c2.markdown(_("**Validation loss**"))
    c2.line_chart(curves, x=col["epoch"], y=col["val loss"], color=col["run"], height=260)

per_class = pd.DataFrame({
    col["class"]: [r["name"] for r in sa["per_class"]],
    col["scratch top-1"]: [r["top1"] for r in sa["per_class"]],
    col["pretrained top-1"]: [r["top1"] for r in sb["per_class"]],
})
st.markdown(_("**Per class** (as in lecture 000)"))
st.bar_chart(per_class.set_index(col["class"]), stack=False, height=280)
st.markdown(_("**Where they differ most**"))
# summarize()'s keys stay English (data); the table's headings are translated
st.dataframe(pd.DataFrame(summary["differences"]), hide_index=True, width="stretch",
             column_config={"class": st.column_config.Column(col["class"]),
                            **{c: st.column_config.NumberColumn(col[c], format="percent")
                               for c in ("scratch top-1", "pretrained top-1", "difference")}})
