"""AppTest of the Runs page, on real runs trained once per module and copied into each test's cache."""

import re
import shutil
import threading

import numpy as np
import pytest
from apphelpers import colour_folder, copy_runs, open_view, train_run, using_cache

from app import common
from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run
from cnnlab.train import TrainConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_run):
    """A diverged digits run, a run whose image folder was deleted afterwards, and the session's
    finished digits run (conftest.py)."""
    cache = tmp_path_factory.mktemp("runs-cache")
    folder = tmp_path_factory.mktemp("imgs") / "colours"
    colour_folder(folder, per_class=12, seed=0)
    with using_cache(cache):
        gone = train_run(TrainConfig(model="lenet", dataset="folder", data_root=str(folder), epochs=1,
                                     batch_size=8, data_options={"image_size": 32, "progress": False}))
        shutil.rmtree(folder)  # the dataset is not on disk any more
        diverged = train_run(TrainConfig(model="lenet_v2", dataset="digits", epochs=2, subset=300,
                                         optimizer="sgd", lr=10.0))
    finished = digits_run[1]
    shutil.copytree(digits_run[0] / "runs" / finished.run_id, cache / "runs" / finished.run_id)
    assert gone.status == "finished", gone.message
    assert diverged.status == "diverged", diverged.message  # really diverges (the loss explodes), not a fake
    assert finished.status == "finished", finished.message
    return {"cache": cache, "finished": finished, "diverged": diverged, "gone": gone}


@pytest.fixture
def with_runs(trained):
    """Copies of the trained runs in this test's isolated cache (so deleting one is safe)."""
    copy_runs(trained["cache"])
    return trained


def test_no_runs_says_to_train_one():
    at = open_view("runs")
    assert at.title[0].value == "Runs"
    assert at.info and "Train" in at.info[0].value
    assert not at.dataframe and not at.error


def test_lists_runs_with_status_and_accuracy_and_overlays_curves(with_runs):
    at = open_view("runs")
    table = at.dataframe[0].value
    finished, diverged = with_runs["finished"], with_runs["diverged"]
    assert list(table["run"]) == [r.run_id for r in runs.list_runs()]  # newest first
    assert len(table) == 3
    row = table.set_index("run").loc[finished.run_id]
    assert row["status"] == "finished" and row["epochs"] == "2 / 2" and row["model"] == "lenet"
    assert row["best val top-1"] == pytest.approx(100 * finished.best_val_top1)
    assert table.set_index("run").loc[diverged.run_id, "status"] == "diverged"
    assert at.multiselect(key="runs-compare").value == [r.run_id for r in runs.list_runs()]
    at.selectbox(key="runs-detail").set_value(finished.run_id).run()  # the diverged run has no checkpoint
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert len(specs) >= 2 + 2  # accuracy and loss curves, then per-class bars and confusion matrix


def test_detail_shows_per_class_bars_confusion_matrix_and_evaluation(with_runs):
    finished = with_runs["finished"]
    at = open_view("runs")
    at.selectbox(key="runs-detail").set_value(finished.run_id).run()
    assert not at.exception and not at.error
    assert at.success and "finished" in at.success[-1].value
    top1 = next(m for m in at.metric if m.label == "Val top-1")
    assert float(top1.value.rstrip("%")) == pytest.approx(100 * finished.best_val_top1, abs=0.2)
    charts = at.get("vega_lite_chart")
    specs = " ".join(c.proto.spec for c in charts)
    assert '"rect"' in specs  # the confusion matrix heatmap
    assert '"bar"' in specs and "top-5" in " ".join(str(c.proto) for c in charts)  # per-class bars
    assert any("overall" in c.value for c in at.code)


def test_diverged_run_says_why_and_missing_dataset_keeps_curves(with_runs):
    at = open_view("runs")
    at.selectbox(key="runs-detail").set_value(with_runs["diverged"].run_id).run()
    assert not at.exception
    assert at.error and "diverged" in at.error[0].value and "learning rate" in at.error[0].value
    at.selectbox(key="runs-detail").set_value(with_runs["gone"].run_id).run()
    assert not at.exception
    assert any("cannot be loaded" in e.value and "does not exist" in e.value for e in at.error)
    assert len(at.get("vega_lite_chart")) >= 2  # curves still there


def click_cell(at, run_id: str, true: int, predicted: int):
    """What a click on a confusion-matrix cell sends back: the chart's point selection."""
    at.session_state[f"runs-confusion-{run_id}"] = {"selection": {"cell": [{"t": true, "p": predicted}]}}
    return at.run()


def captions(at) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def test_clicking_a_confusion_cell_shows_its_images_with_grad_cam_and_nearest_examples(with_runs):
    finished = with_runs["finished"]
    conf = evaluate_run(finished.run_id).confusion
    wrong = conf - np.diag(np.diag(conf))
    t, p = (int(v) for v in np.unravel_index(wrong.argmax(), wrong.shape))
    count = int(conf[t, p])
    assert count > 0
    at = open_view("runs")
    at.selectbox(key="runs-detail").set_value(finished.run_id).run()
    matrix = next(c.proto for c in at.get("vega_lite_chart") if '"rect"' in c.proto.spec)
    assert '"cell"' in matrix.spec and "cell" in matrix.selection_mode  # clickable: a point selection
    assert at.selectbox(key=f"runs-mistakes-{finished.run_id}").value is None  # nothing computed until asked

    click_cell(at, finished.run_id, t, p)
    assert not at.exception and not at.error
    assert at.selectbox(key=f"runs-mistakes-{finished.run_id}").value == f"{t} {p}"
    assert any(f"**True {t}, predicted {p}**: {count} image" in m.value for m in at.markdown)
    shown = min(count, 8)
    names = captions(at)
    assert len([c for c in names if c.startswith("validation image #")]) == shown
    assert len([c for c in names if c.startswith(f"Grad-CAM of {p} · ")]) == shown
    nearest = [re.fullmatch(r"#(\d+), -?[01]\.\d{3}", c) for c in names]
    nearest = [int(m.group(1)) for m in nearest if m]
    assert len(nearest) == 4 * shown
    assert sum(f"Nearest training images of class **{p}**" in c.value for c in at.caption) == shown
    train_labels = runs.load_run_data(runs.load_run(finished.run_id)).train.labels
    assert {int(train_labels[j]) for j in nearest} == {p}  # of the predicted class
    verdicts = [m.value for m in at.markdown if m.value.startswith("**true:**")]
    assert len(verdicts) == shown and all(f"**true:** {t}" in v and f"**predicted:** {p}" in v
                                          and f"**top-3:** {p} " in v and v.count("%") == 3 for v in verdicts)

    at.selectbox(key=f"runs-mistakes-{finished.run_id}").set_value("top").run()
    assert not at.exception and not at.error
    assert any("**The 8 highest losses**" in m.value for m in at.markdown)
    assert len([c for c in captions(at) if c.startswith("validation image #")]) == 8

    empty = [(i, j) for i in range(len(conf)) for j in range(len(conf)) if conf[i, j] == 0][0]
    click_cell(at, finished.run_id, *empty)
    assert not at.exception
    assert any("this cell is empty" in i.value for i in at.info)
    assert not [c for c in captions(at) if c.startswith("validation image #")]


def test_the_mistakes_are_prepared_in_the_background_before_any_click(with_runs, monkeypatch):
    """What a click needs (every validation image's prediction, the training images' features) is prepared
    once the matrix is on screen, in the server's background thread; the click uses it."""
    finished = with_runs["finished"]
    built, features = [], []  # run ids: each RunMistakes made, each time the features were computed

    class Counting(common.RunMistakes):
        def __init__(self, run, **kwargs):
            built.append(run)
            super().__init__(run, **kwargs)

        def embedding(self):
            if self._embedding is None:
                features.append(self.run_id)
            return super().embedding()

    monkeypatch.setattr(common, "RunMistakes", Counting)
    common.mistakes_started.clear()  # nothing prepared by an earlier test
    at = open_view("runs")
    at.selectbox(key="runs-detail").set_value(finished.run_id).run()
    assert at.selectbox(key=f"runs-mistakes-{finished.run_id}").value is None  # no click yet
    common.preparer().submit(lambda: None).result()  # the background queue, emptied
    assert built.count(finished.run_id) == 1 and features.count(finished.run_id) == 1
    conf = evaluate_run(finished.run_id).confusion
    click_cell(at, finished.run_id, 0, 0)
    assert not at.exception and not at.error
    assert len([c for c in captions(at) if c.startswith("validation image #")]) == min(int(conf[0, 0]), 8)
    assert built.count(finished.run_id) == 1 and features.count(finished.run_id) == 1  # nothing done again


def test_the_background_preparation_speaks_the_pages_language(with_runs, speak):
    """Its messages are made in the preparer's thread, in the language of the page that started it; the
    thread itself keeps no language between two preparations."""
    missing = "20990101-000000-lenet-digits-none"
    said = {}
    for code in ("it", "en"):
        with pytest.raises(CnnlabError) as err:
            common.preparer().submit(common.prepare_mistakes, missing, code).result()
        said[code] = str(err.value)
    speak("it")
    with pytest.raises(CnnlabError) as direct:
        runs.load_run(missing)
    assert said["it"] == str(direct.value) != said["en"]


@pytest.fixture(scope="module")
def vanishing(tmp_path_factory):
    """A finished run on an image folder that a test deletes while the page is open."""
    cache = tmp_path_factory.mktemp("vanishing-cache")
    folder = tmp_path_factory.mktemp("vanishing-imgs") / "colours"
    colour_folder(folder, per_class=10, seed=1)
    with using_cache(cache):
        result = train_run(TrainConfig(model="lenet", dataset="folder", data_root=str(folder), epochs=1,
                                       batch_size=8, data_options={"image_size": 32, "progress": False}))
    assert result.status == "finished", result.message
    return cache, result, folder


def test_drilldown_says_so_when_the_runs_images_are_gone(vanishing):
    """The folder goes after the evaluation and before the background preparation reads it (held behind a
    task of the test's until then)."""
    cache, result, folder = vanishing
    copy_runs(cache)
    gate = threading.Event()
    common.preparer().submit(gate.wait)  # the preparer's one thread waits for the gate
    try:
        at = open_view("runs")
        assert not at.exception and not at.error
        assert any(m.label == "Val top-1" for m in at.metric)  # evaluated while its images were there
        shutil.rmtree(folder)  # then the folder is deleted
    finally:
        gate.set()
    at.selectbox(key=f"runs-mistakes-{result.run_id}").set_value("top").run()
    assert not at.exception
    assert any("data of this run cannot be loaded" in e.value and "does not exist" in e.value for e in at.error)
    assert not [c for c in captions(at) if c.startswith("validation image #")]


def test_delete_with_confirmation_removes_only_that_run(with_runs):
    victim = with_runs["diverged"].run_id
    at = open_view("runs")
    at.selectbox(key="runs-detail").set_value(victim).run()
    at.button(key="runs-delete").click().run()
    assert not at.exception
    assert any(victim in w.value for w in at.warning)
    assert at.button(key="runs-delete-confirm").disabled  # not before "I am sure"
    at.checkbox(key=f"runs-sure-{victim}").check().run()
    at.button(key="runs-delete-confirm").click().run()
    assert not at.exception, at.exception
    left = {r.run_id for r in runs.list_runs()}
    assert left == {with_runs["finished"].run_id, with_runs["gone"].run_id}
    assert victim not in set(at.dataframe[0].value["run"])
    assert any("deleted" in s.value for s in at.success)
    assert runs.load_run(with_runs["finished"].run_id).has_checkpoint


def test_running_run_shows_curves_but_no_evaluation():
    first_epoch, release, cancel = threading.Event(), threading.Event(), threading.Event()

    def hold(event):  # keep the run "running" after its first epoch until the page has been seen
        if getattr(event, "kind", "") == "epoch":
            first_epoch.set()
            release.wait(60)

    cfg = TrainConfig(model="lenet", dataset="digits", epochs=3, subset=300)
    out = {}
    worker = threading.Thread(target=lambda: out.update(r=train_run(cfg, listeners=[hold], cancel=cancel)))
    worker.start()
    try:
        assert first_epoch.wait(120)
        (run,) = runs.list_runs()
        assert run.status == "running"
        at = open_view("runs")
        assert not at.exception and not at.error
        assert at.dataframe[0].value.loc[0, "status"] == "running"
        assert any("still training" in i.value for i in at.info)
        assert not [m for m in at.metric if m.label == "Val top-1"]  # no evaluation
        assert at.button(key="runs-delete").disabled
        specs = [c.proto.spec for c in at.get("vega_lite_chart")]
        xray = [s for s in specs if "gradient norm" in s or "rule of thumb" in s or "share of the units" in s]
        assert len(xray) == 3  # its training X-ray so far: heat map, update ratios, dead or saturated shares
        assert len(specs) - len(xray) == 2  # and its curves; no per-class bars, no confusion matrix
    finally:
        cancel.set()
        release.set()
        worker.join(60)
    assert out["r"].status == "cancelled"
