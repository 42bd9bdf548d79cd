"""The run registry: files, listing, checkpoints (round trip, mismatch), deletion."""

from __future__ import annotations

import json
import os
import socket

import pytest
from apphelpers import train_run
import torch

from cnnlab import runs
from cnnlab.errors import CnnlabError, UnsafeFileError
from apphelpers import using_cache
from cnnlab.train import TrainConfig
from test_train_data import digits_bundle

FAST = dict(model="lenet", dataset="digits", batch_size=64, optimizer="adam", lr=3e-3, device="cpu")


@pytest.fixture(scope="module")
def _trained(tmp_path_factory):
    with using_cache(tmp_path_factory.mktemp("runs_cache")) as cache:
        result = train_run(TrainConfig(epochs=2, **FAST), data=digits_bundle(n_train=500))
    return cache, result


@pytest.fixture
def trained(_trained, monkeypatch):
    cache, result = _trained
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    return result


def test_checkpoint_round_trip_gives_identical_predictions(trained):
    x = digits_bundle().val.images[:50].float() / 255
    x = (x - 0.19) / 0.33
    loaded = runs.load_model(trained.run_id)
    assert not loaded.training
    trained.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), trained.model(x))


def test_run_folder_layout(trained):
    run = runs.load_run(trained.run_id)
    names = sorted(p.name for p in run.path.iterdir())
    assert names == ["best.pt", "config.json", "kernels.jsonl", "meta.json", "metrics.jsonl", "status.json", "xray.jsonl"]
    record = runs.run_xray(trained.run_id)
    assert record.samples and not record.problems
    assert [k["epoch"] for k in record.kernels] == [0, 1, 2]
    status = json.loads((run.path / "status.json").read_text())
    assert status["status"] == "finished" and status["pid"] == os.getpid()
    assert status["hostname"] == socket.gethostname() and status["finished"]
    assert len((run.path / "metrics.jsonl").read_text().splitlines()) == 2
    assert runs.load_run(trained.run_id[:-2]).run_id == trained.run_id  # a unique prefix works
    assert TrainConfig.from_dict(run.config) == TrainConfig(epochs=2, **FAST)


def test_mismatched_checkpoint_names_the_layer(trained, monkeypatch):
    run = runs.load_run(trained.run_id)
    meta = dict(run.meta)
    meta["model_kwargs"] = {**meta["model_kwargs"], "num_classes": 5}
    (run.path / "meta.json").write_text(json.dumps(meta))
    try:
        with pytest.raises(runs.CheckpointMismatchError) as info:
            runs.load_model(trained.run_id)
        msg = str(info.value)
        assert "F7.weight" in msg and "(10, 84)" in msg and "(5, 84)" in msg
        meta["model"] = "lenet5"
        meta["model_kwargs"]["num_classes"] = 10
        (run.path / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(CnnlabError, match="does not fit"):
            runs.load_model(trained.run_id)
    finally:
        (run.path / "meta.json").write_text(json.dumps(run.meta))
    runs.load_model(trained.run_id)


def test_list_runs_newest_first_and_interrupted(tmp_path):
    a = runs.create_run({"model": "lenet"}, {"model": "lenet", "dataset": "digits"})
    b = runs.create_run({"model": "lenet"}, {"model": "lenet", "dataset": "digits"})
    meta = json.loads((a.path / "meta.json").read_text())
    assert [r.run_id for r in runs.list_runs()] == [b.run_id, a.run_id]  # same second: by created_ts
    meta["created"], meta["created_ts"] = "2100-01-01T00:00:00+0000", meta["created_ts"] + 1e6
    (a.path / "meta.json").write_text(json.dumps(meta))
    assert [r.run_id for r in runs.list_runs()] == [a.run_id, b.run_id]
    assert runs.load_run(b.run_id).status == "running"  # this process is alive
    status = json.loads((a.path / "status.json").read_text())
    status["pid"] = 2**22 + 12345  # no such process
    (a.path / "status.json").write_text(json.dumps(status))
    assert runs.load_run(a.run_id).status == "interrupted"


def test_torn_metrics_line_is_ignored():
    w = runs.create_run({}, {"model": "lenet", "dataset": "digits"})
    w.append_metrics({"epoch": 1, "val_top1": 0.5})
    with open(w.path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "val_to')
    run = runs.load_run(w.run_id)
    assert run.metrics == [{"epoch": 1, "val_top1": 0.5}] and run.best_val_top1 == 0.5


def test_missing_checkpoint_unknown_run_and_delete():
    w = runs.create_run({}, {"model": "lenet", "dataset": "digits"})
    with pytest.raises(runs.RunError, match="no checkpoint"):
        runs.load_model(w.run_id)
    with pytest.raises(runs.RunError, match="still training"):
        runs.delete_run(w.run_id)
    w.set_status("cancelled", "stopped")
    runs.delete_run(w.run_id)
    assert not w.path.exists()
    with pytest.raises(runs.RunNotFoundError, match="no run"):
        runs.load_run(w.run_id)
    with pytest.raises(runs.RunNotFoundError):
        runs.load_run("../etc")
    for empty in ("", "  "):  # never a prefix of every run
        with pytest.raises(runs.RunNotFoundError, match="the run id is empty"):
            runs.delete_run(empty)


def test_best_pt_is_written_atomically_with_weights_only(tmp_path):
    w = runs.create_run({}, {"model": "lenet", "dataset": "digits"})
    w.save_best({"a": torch.ones(3)})
    w.save_best({"a": torch.zeros(3)})
    assert sorted(p.name for p in w.path.iterdir() if p.name.startswith(".")) == []
    assert torch.equal(runs.load_checkpoint(w.run_id)["a"], torch.zeros(3))
    torch.save({"a": torch.ones(1), "evil": object()}, w.path / "best.pt")  # not loadable safely
    with pytest.raises(UnsafeFileError, match="refused") as info:
        runs.load_checkpoint(w.run_id)
    assert f"checkpoint of run {w.run_id}" in str(info.value) and "weights_only" not in str(info.value)
    assert "\n" not in str(info.value)
