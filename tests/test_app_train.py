"""AppTest of the Train page: a short training driven to the end through the page."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def open_page():
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page("views/train.py").run()
    assert not at.exception, at.exception
    return at


def test_train_page_renders_controls():
    at = open_page()
    assert at.title[0].value == "Train"
    assert at.selectbox(key="train-model").value == "lenet"
    assert at.selectbox(key="train-data").value == "digits"
    assert not at.error


def test_bad_setting_gives_message():
    at = open_page()
    at.number_input(key="train-subset").set_value(5).run()  # fewer images than the 10 classes
    at.button(key="train-start").click().run()
    assert not at.exception
    assert at.error and "subset" in at.error[0].value


def test_short_training_to_the_end_shows_curves_and_run():
    from cnnlab.jobs import get_manager
    from cnnlab.runs import list_runs

    at = open_page()
    at.number_input(key="train-epochs").set_value(2).run()
    at.button(key="train-start").click().run()
    assert not at.exception and not at.error
    manager = get_manager()
    job = manager.get(at.session_state["train-job"])
    assert job is not None
    assert job.wait(timeout=120), "training did not finish"
    at.run()
    assert not at.exception
    assert job.state == "finished", job.message
    assert any("Runs" in s.value for s in at.success)
    assert len(at.get("vega_lite_chart")) >= 2  # loss and accuracy curves
    assert any(r.run_id == job.run_id for r in list_runs())
