"""Downloads of code and models (issue 27) in the app: the Runs page prepares a run's notebook, script, ONNX and
TorchScript files; the Lessons page a lesson's notebook and script; a file that cannot be made says why."""

from __future__ import annotations

import json

import pytest
from apphelpers import copy_runs, open_view

from cnnlab.export import ExportError


@pytest.fixture
def a_run(digits_run):
    cache, result = digits_run
    copy_runs(cache)
    return result.run_id


def test_the_runs_page_offers_a_run_as_code_and_its_model(a_run, monkeypatch):
    from app import export_view

    at = open_view("runs")
    at.selectbox(key="runs-detail").set_value(a_run).run()
    at.button(key=f"export-prepare-{a_run}").click().run()
    assert not at.exception
    buttons = [b for b in at.get("download_button")]
    labels = [b.proto.label for b in buttons]
    assert labels == ["Notebook (.ipynb)", "Script (.py)", "ONNX model", "TorchScript model"]
    notebook, why = export_view.run_file(a_run, "notebook", 0.0)
    assert why == "" and json.loads(notebook)["nbformat"] == 4
    assert "import cnnlab" not in export_view.run_file(a_run, "script", 0.0)[0].decode()
    # a file that cannot be made: its reason instead of a button
    monkeypatch.setitem(export_view.RUN_FILES, "onnx", (*export_view.RUN_FILES["onnx"][:3],
                                                          lambda rid: (_ for _ in ()).throw(ExportError("no ONNX here."))))
    export_view.run_file.clear()
    assert export_view.run_file(a_run, "onnx", 1.0) == (None, "no ONNX here.")


def test_the_lessons_page_offers_the_lesson_as_homework():
    at = open_view("lessons")
    at.button(key="export-prepare-lenet-vs-lenetv2-quick").click().run()
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Notebook (.ipynb)", "Script (.py)"]
