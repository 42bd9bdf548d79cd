"""app/common.py: the one error box, and every page using it for the library's errors."""

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP_FILES = sorted((ROOT / "app" / "views").glob("*.py")) + [ROOT / "app" / "common.py", ROOT / "app" / "main.py"]
LIBRARY_ERRORS = {"CnnlabError", "DataError", "ConfigError", "UnsafeFileError", "UnknownModelError",
                  "ModelConfigError", "InputSizeError", "LayerNotFoundError", "RunNotFoundError", "RunError"}


def _box(root: str, message: str, context):
    import sys

    sys.path.insert(0, root)
    from app.common import show_error
    from cnnlab.errors import DataError

    show_error(DataError(message), context)


@pytest.mark.parametrize("context, shown", [
    (None, "No file at /data/x_y.png: put it there or pick another one."),
    ("The dataset cannot be loaded.", "**The dataset cannot be loaded:** No file at /data/x_y.png: put it there "
                                      "or pick another one."),
])
def test_show_error_is_one_red_box_with_the_libraries_message(context, shown):
    at = AppTest.from_function(_box, args=(str(ROOT), "No file at /data/x_y.png: put it there or pick another one.\n",
                                           context))
    at.run(timeout=60)  # the first run imports app.common (cnnlab, torch): seconds on a busy machine
    assert not at.exception
    assert [e.value for e in at.error] == [shown]
    assert at.error[0].icon == ":material/error:"  # a Material icon: Debian's Chromium has no emoji font
    assert not at.warning and not at.info


def _handlers(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node.type) if isinstance(n, ast.Attribute)}
            yield node, names


def _calls(node, name: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(node))


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: p.name)
def test_every_page_shows_library_errors_through_show_error(path):
    """A handler of a library error either shows it with ``show_error`` or skips an item of a
    list (``continue``); no page writes its own box around an error's text."""
    for handler, names in _handlers(path):
        where = f"{path.name}:{handler.lineno}"
        if names & LIBRARY_ERRORS:
            skips = len(handler.body) == 1 and isinstance(handler.body[0], ast.Continue)
            # a widget callback cannot draw where the page wants: it keeps the error for show_error later
            defers = any(isinstance(n, ast.Assign) and "session_state" in ast.unparse(n.targets[0])
                         and handler.name and handler.name in ast.unparse(n.value) for n in ast.walk(handler))
            assert skips or defers or _calls(handler, "show_error"), f"{where}: a library error not shown by show_error"
        if handler.name:
            for call in ast.walk(handler):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and isinstance(call.func.value, ast.Name) and call.func.value.id == "st"
                        and call.func.attr in ("error", "warning", "info", "exception", "markdown", "write")):
                    used = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)}
                    assert handler.name not in used, f"{where}: st.{call.func.attr} shows an error itself"


def _events(losses):
    events = [{"kind": "start", "steps_per_epoch": 2}]
    for i, loss in enumerate(losses, 1):
        events.append({"kind": "step", "step": i, "loss": loss, "top1": 0.5})
    events.append({"kind": "epoch", "epoch": 1, "train_loss": losses[-1], "val_loss": losses[-1], "train_top1": 0.5,
                   "val_top1": 0.6})
    return events


def test_live_curves_have_titles_percentages_and_a_log_scale_when_needed():
    from app.common import CURVE_SERIES, curve_charts

    assert curve_charts([{"kind": "start", "steps_per_epoch": 2}]) is None
    loss, acc, log = curve_charts(_events([2.3, 1.9]))
    assert not log
    loss_spec, acc_spec = loss.to_dict(), acc.to_dict()
    assert loss_spec["encoding"]["y"]["title"] == "cross-entropy loss"
    assert acc_spec["encoding"]["y"]["title"] == "top-1 accuracy" and acc_spec["encoding"]["y"]["axis"]["format"] == "%"
    assert acc_spec["encoding"]["x"]["title"] == "epoch"
    assert acc_spec["encoding"]["color"]["scale"]["domain"] == CURVE_SERIES  # the same colour per split everywhere
    assert len(set(acc_spec["encoding"]["color"]["scale"]["range"])) == len(CURVE_SERIES)
    _, _, log = curve_charts(_events([200.0, 2.0]))  # one blown-up window: log scale
    assert log


class _Run:
    """What run_label reads of a run."""

    def __init__(self, status, best, **meta):
        self.run_id, self.status, self.best_val_top1, self.config = "20261206-024722-lenet-digits-f89b", status, best, {}
        self.meta = {"model": "lenet", "dataset": "digits", "created_ts": 1796525242.98, **meta}
        self.created = "2026-12-06T02:47:22+0000"


def test_a_run_is_named_by_model_dataset_status_best_accuracy_date_and_id():
    import time

    from app.common import run_label

    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(1796525242.98))
    assert run_label(_Run("finished", 0.6964)) == (
        f"LeNet on digits · finished · best 69.6% on validation · {when} · 20261206-024722-lenet-digits-f89b")
    assert run_label(_Run("diverged", None)).startswith("LeNet on digits · diverged · not validated · ")
    # a running run's label holds nothing that changes while it trains (a selectbox keeps a choice by its label)
    assert run_label(_Run("running", 0.3)).startswith("LeNet on digits · training now · ")
    assert " · my_net on " not in run_label(_Run("finished", 0.5, model="my_net"))  # an unknown model: its name
    assert run_label(_Run("finished", 0.5, model="my_net")).startswith("my_net on digits · ")


def test_every_run_picker_names_runs_with_the_one_label(digits_run):
    from apphelpers import copy_runs, open_view

    from app.common import run_label
    from cnnlab.runs import list_runs

    copy_runs(digits_run[0])
    (run,) = list_runs()
    label = run_label(run)
    at = open_view("runs")
    assert at.selectbox(key="runs-detail").options == [label]
    assert at.multiselect(key="runs-compare").options == [label]
    assert at.multiselect(key="runs-compare").value == [run.run_id]
    for view, key in (("inside", "inside-run"), ("predict", "predict-run")):
        assert open_view(view).selectbox(key=key).options == [label], view
    at = open_view("train")
    assert at.selectbox(key="train-copy-run").options == [label]
    assert at.selectbox(key="train-init-from").options[1:] == [label]
    for page in ("runs", "train", "transfer"):  # the transfer page's pickers need a comparison: checked by name
        text = (ROOT / "app" / "views" / f"{page}.py").read_text()
        assert "run_label" in text or "run_select" in text, page
