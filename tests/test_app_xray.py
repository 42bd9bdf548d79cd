"""AppTest of the training X-ray (issue 25) on the pages: live on the Train page while a job runs, a run's
X-ray and kernel slider on the Runs page, the same slider in Look inside, an arm's diagnoses on the Lessons
page; a run without X-ray files says so. Runs are trained once per module (a few seconds each) and copied
into each test's cache; the live test waits for the job's first X-ray event, never for some time."""

from __future__ import annotations


import pytest
import torch
from apphelpers import copy_runs, open_view, train_run, using_cache

from cnnlab.config import help_text
from cnnlab.models import create
from cnnlab.train import TrainConfig

DIGITS = dict(model="lenet_v2", dataset="digits", seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A healthy LeNetV2 (3 epochs: kernels before training and after each), one whose C3 bias is -10 (its
    ReLUs after S4 never fire), and one trained with the X-ray off."""
    cache = tmp_path_factory.mktemp("xray-app-cache")
    torch.manual_seed(0)
    dead = create("lenet_v2", num_classes=10, in_channels=1)
    with torch.no_grad():
        dead.C3.bias.fill_(-10.0)
    with using_cache(cache):
        off = train_run(TrainConfig(epochs=1, max_steps=3, xray=False, **DIGITS))
        blocked = train_run(TrainConfig(epochs=1, **DIGITS), model=dead)
        healthy = train_run(TrainConfig(epochs=3, **DIGITS))  # the newest: what the pages open with
    for result in (off, blocked, healthy):
        assert result.status == "finished", result.message
    return {"cache": cache, "healthy": healthy.run_id, "dead": blocked.run_id, "off": off.run_id}


@pytest.fixture
def runs_here(trained):
    copy_runs(trained["cache"])
    return trained


def specs(at) -> list[str]:
    return [c.proto.spec for c in at.get("vega_lite_chart")]


def image_urls(at) -> list[str]:
    return [img.url for el in at.get("image") for img in el.proto.imgs]


def texts(at, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def assert_xray_charts(at) -> None:
    """The heat map (rects coloured by the gradient norm), the ratio lines with their rule, the share bars."""
    drawn = specs(at)
    assert any('"rect"' in s and "gradient norm" in s for s in drawn)
    assert any("rule of thumb 1e-3" in s and '"line"' in s for s in drawn)
    assert any('"bar"' in s and "after S2" in s for s in drawn)
    captions = " ".join(texts(at, "caption"))
    assert "Each row is a layer with weights, the first at the top" in captions
    assert "dashed rule of thumb" in captions


def select_run(at, run_id: str):
    at.selectbox(key="runs-detail").set_value(run_id).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def test_runs_page_shows_a_runs_xray_and_its_kernel_slider_moves(runs_here):
    run_id = runs_here["healthy"]
    at = select_run(open_view("runs"), run_id)
    assert "Training X-ray" in texts(at, "subheader")
    assert_xray_charts(at)
    assert any(c.startswith(":material/check: Nothing stands out") for c in texts(at, "caption"))
    slider = at.select_slider(key=f"runs-kernels-{run_id}")
    assert slider.options == ["before training", "after epoch 1", "after epoch 2", "after epoch 3"]
    assert slider.value == 0
    before = image_urls(at)[-1]
    assert any(c.startswith("C1 before training: 6 filters of 1 x 5 x 5") for c in texts(at, "caption"))
    slider.set_value(3).run()
    assert not at.exception and not at.error
    assert image_urls(at)[-1] != before  # the filters learnt: another picture
    assert any(c.startswith("C1 after epoch 3: 6 filters") for c in texts(at, "caption"))


def test_runs_page_says_why_a_run_with_dead_relus_does_not_learn(runs_here):
    at = select_run(open_view("runs"), runs_here["dead"])
    warnings = texts(at, "warning")
    assert any(w.startswith("100% of the relu units after S4") and "never fire" in w for w in warnings), warnings
    assert any("(C1) are zero" in w and "dead units below block them" in w for w in warnings), warnings
    assert not any(c.startswith(":material/check: Nothing stands out") for c in texts(at, "caption"))


def test_a_run_without_xray_files_says_so_without_error(runs_here):
    at = select_run(open_view("runs"), runs_here["off"])
    assert any("This run has no X-ray" in i for i in texts(at, "info"))
    assert not any(k.key.startswith("runs-kernels-") for k in at.get("select_slider"))
    assert not any("gradient norm" in s for s in specs(at))


def test_damaged_xray_lines_are_a_caption_and_the_rest_is_drawn(runs_here):
    from cnnlab.runs import load_run

    run_id = runs_here["healthy"]
    with open(load_run(run_id).path / "xray.jsonl", "a") as f:
        f.write('{"step": "not a sample"}\n')
    at = select_run(open_view("runs"), run_id)
    assert any("1 line(s) of xray.jsonl could not be read" in c for c in texts(at, "caption"))
    assert_xray_charts(at)


def test_look_inside_scrubs_a_runs_kernels_above_the_current_ones(runs_here):
    run_id = runs_here["healthy"]
    at = open_view("inside")
    assert at.selectbox(key="inside-run").value == run_id  # the newest run
    at.session_state["inside-tab"] = "Kernels"  # only the open tab is drawn
    at.run()
    slider = at.select_slider(key=f"inside-kernels-{run_id}")
    before = image_urls(at)
    slider.set_value(2).run()
    assert not at.exception and not at.error
    assert image_urls(at) != before
    assert any(c.startswith("C1 after epoch 2") for c in texts(at, "caption"))
    at.radio(key="inside-kind").set_value("zoo").run()  # an untrained zoo model has no snapshots
    assert not any(s.key.startswith("inside-kernels-") for s in at.get("select_slider"))


def first_xray_event(job) -> None:
    """Until the job has sent an X-ray sample, or ended without one (a failure); pytest-timeout guards a hang."""
    while not any(e["kind"] == "xray" for e in job.events):
        assert not job.done or any(e["kind"] == "xray" for e in job.events), job.message
        job.wait(0.2)


def test_train_page_draws_the_xray_live_while_the_job_runs():
    from cnnlab.jobs import get_manager

    at = open_view("train")
    box = at.checkbox(key="train-xray")
    assert box.value is True and box.label == "Training X-ray" and box.help == help_text("xray")
    at.number_input(key="train-epochs").set_value(200).run()  # far longer than this test: cancelled below
    at.button(key="train-start").click().run()
    job = get_manager().get(at.session_state["train-job"])
    try:
        first_xray_event(job)
        at.run()
        assert not at.exception and not at.error
        assert_xray_charts(at)
        assert job.config.xray
    finally:
        job.cancel()
        assert job.wait(120)


def test_train_page_with_the_xray_off_says_so():
    from cnnlab.jobs import get_manager

    at = open_view("train")
    at.checkbox(key="train-xray").uncheck().run()
    at.button(key="train-start").click().run()
    job = get_manager().get(at.session_state["train-job"])
    job.cancel()
    assert job.wait(120)
    at.run()
    assert not at.exception and job.config.xray is False
    assert any("The training X-ray is off for this training" in c for c in texts(at, "caption"))
    assert not any("gradient norm" in s for s in specs(at))


def test_lessons_page_lists_each_arms_diagnoses_under_the_table():
    from test_app_lessons import LESSON, fake_result, unescaped

    from cnnlab.lessons import get_lesson

    lesson = get_lesson(LESSON)
    first, second = (a.id for a in lesson.arms[:2])
    said = "74% of the tanh units after S2 are saturated: their output is within 1% of its limits."
    fake_result(lesson, change={first: {"diagnoses": [said]}, second: {"diagnoses": []}})
    at = open_view("lessons")
    assert not at.exception and not at.error
    warnings = [unescaped(w) for w in texts(at, "warning")]
    mine = [w for w in warnings if said in w]
    assert len(mine) == 1 and mine[0].startswith(f"**{lesson.arms[0].name}**:")
    assert "What the training X-ray saw" in " ".join(texts(at, "markdown"))
