"""From the app to code: download a run as a notebook or script and its model as ONNX or TorchScript (Runs
page), a lesson as a notebook or script (Lessons page). The files are made by :mod:`cnnlab.export` when asked
(an ONNX export takes seconds), cached per run and checkpoint, each failure said in one line."""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from cnnlab import export
from cnnlab.errors import CnnlabError
from cnnlab.i18n import N_, _, language

RUN_FILES = {  # format: (button label, file suffix, MIME type, what makes it)
    "notebook": (N_("Notebook (.ipynb)"), "ipynb", "application/x-ipynb+json", export.run_notebook_bytes),
    "script": (N_("Script (.py)"), "py", "text/x-python", lambda rid: export.run_script_text(rid).encode()),
    "onnx": (N_("ONNX model"), "onnx", "application/octet-stream", export.onnx_bytes),
    "torchscript": (N_("TorchScript model"), "pt", "application/octet-stream", export.torchscript_bytes),
}


@st.cache_data(show_spinner=False, max_entries=16)
def run_file(run_id: str, fmt: str, stamp: float, lang: str = "en") -> tuple[bytes | None, str]:
    """The run's file in ``fmt`` (or None and the reason); ``stamp`` (best.pt's time) and ``lang`` (the reason's
    language) only key the cache."""
    try:
        return RUN_FILES[fmt][3](run_id), ""
    except CnnlabError as e:
        return None, str(e)


def _offer(cols: Any, files: dict[str, tuple[bytes | None, str]], labels: dict[str, tuple[str, str, str]],
           stem: str) -> None:
    for col, (fmt, (data, why)) in zip(cols, files.items()):
        label, suffix, mime = labels[fmt]
        label = _(label)  # marked in RUN_FILES
        if data is None:
            col.caption(_("{file}: {reason}").format(file=label, reason=why))
        else:
            col.download_button(label, data, file_name=f"{stem}.{suffix}", mime=mime, key=f"export-{stem}-{fmt}",
                                icon=":material/download:", width="stretch")


def run_exports(run_id: str, stamp: float) -> None:
    """The Runs page's box: prepare once, then one download button per file (or why it cannot be made)."""
    key = f"export-ready-{run_id}-{stamp}"
    st.caption(_("The run as code a student can read and run without cnnlab (the dataset, the model written out in "
                 "torch.nn, the training loop and the curves; it trains to the same accuracy), and the trained model "
                 "for other programs (the class names and the input normalisation are in the file)."))
    if not st.session_state.get(key):
        if st.button(_("Prepare the files"), key=f"export-prepare-{run_id}", icon=":material/code:"):
            st.session_state[key] = True
            st.rerun()
        return
    with st.spinner(_("Writing the notebook, the script and the model files…")):
        files = {fmt: run_file(run_id, fmt, stamp, language()) for fmt in RUN_FILES}
    _offer(st.columns(len(files)), files, {k: v[:3] for k, v in RUN_FILES.items()}, run_id)


@st.cache_data(show_spinner=False, max_entries=16)
def lesson_file(name: str, source: str, budget: str, fmt: str, lang: str = "en") -> tuple[bytes | None, str]:
    """A built-in lesson's notebook or script (``source`` only keys the cache: a changed file, a new export;
    ``lang`` too: the file's and the reason's language)."""
    make: Callable[..., Any] = export.lesson_notebook_bytes if fmt == "notebook" else \
        (lambda *a: export.lesson_script_text(*a).encode())
    try:
        return make(name, budget), ""
    except CnnlabError as e:
        return None, str(e)


def lesson_exports(name: str, source: str, budget: str) -> None:
    """The Lessons page's box: the lesson as homework, a notebook (question, one section per arm, the table,
    the plots, the questions to discuss) or one script."""
    key = f"export-ready-{name}-{budget}"
    if not st.session_state.get(key):  # made when asked: opening a lesson stays instant
        if st.button(_("Prepare the notebook and the script"), key=f"export-prepare-{name}-{budget}",
                     icon=":material/code:"):
            st.session_state[key] = True
            st.rerun()
        return
    with st.spinner(_("Writing the lesson's notebook and script…")):
        files = {fmt: lesson_file(name, source, budget, fmt, language()) for fmt in ("notebook", "script")}
    _offer(st.columns(2), files, {k: RUN_FILES[k][:3] for k in files}, f"{name}-{budget}")
