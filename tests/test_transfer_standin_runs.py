"""Stand-in transfer runs are ordinary runs: rebuilt from their config alone, evaluated by the CLI,
pretrained inside the job queue, cached under a key of every setting, never transferring nothing."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch

from apphelpers import copy_runs
from cnnlab import runs
from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.transfer import (
    STANDIN_TAG,
    StandinConfig,
    _standin_path,
    comparison_candidates,
    standin_target,
    standin_transfer_model,
)


def test_cli_eval_of_a_standin_run_rebuilds_its_data_from_the_config(standin, capsys, monkeypatch):
    """Bug 2: `cnnlab eval` on a stand-in run failed ("Unknown option(s) for the 'shapes' dataset:
    standin, standin_config"). Its data is now an ordinary shapes subset, rebuilt from its config,
    and evaluating it opens no socket (no download is ever tried)."""
    import socket

    cache, comparison = standin
    copy_runs(cache)
    monkeypatch.setattr(socket.socket, "connect", lambda *a: (_ for _ in ()).throw(AssertionError("socket")))
    run_id = comparison.pretrained.run_id
    run = runs.load_run(run_id)
    assert run.config["tag"] == STANDIN_TAG and run.config["data_options"]["classes"] == ["ring", "heart", "crescent"]
    assert main(["eval", run_id]) == 0
    out = capsys.readouterr().out
    assert "ring" in out and "crescent" in out and "circle" not in out
    top1 = float(out.strip().splitlines()[-1].split()[2].rstrip("%")) / 100
    assert top1 == pytest.approx(run.best_val_top1, abs=1e-3)
    scratch, pretrained = comparison_candidates()
    assert [r.run_id for r in pretrained] == [run_id] and [r.run_id for r in scratch] == [comparison.scratch.run_id]


def test_legacy_standin_config_is_upgraded():
    legacy = {"model": "lenet5", "dataset": "shapes", "seed": 0, "epochs": 12,
              "data_options": {"standin": "target", "standin_config": {"target_labels": 20, "target_val": 600}}}
    config = runs._upgrade_config(legacy)
    assert config["subset"] == 60 and config["data_options"]["classes"] == ["ring", "heart", "crescent"]
    assert config["tag"] == STANDIN_TAG


def test_standin_target_data_is_the_run_config_data(standin_config):
    bundle = standin_target(standin_config)
    assert bundle.info.classes == ["ring", "heart", "crescent"]
    assert len(bundle.train) == standin_config.target_labels * 3
    assert torch.bincount(bundle.train.labels).tolist() == [standin_config.target_labels] * 3


def test_cli_transfer_without_checkpoints_says_so(monkeypatch, capsys):
    """Bug 3: `cnnlab transfer` printed a traceback when a run had no checkpoint (top-1 None)."""
    import cnnlab.transfer as transfer
    from cnnlab.transfer import ComparisonSummary, RunSummary

    empty = RunSummary("r1", "lenet5 (scratch)", "cancelled", "cancelled at step 0.", [], None, None, [], "val")
    monkeypatch.setattr(transfer, "compare_standin", lambda cfg, listeners=(): type("C", (), {
        "scratch": type("R", (), {"run_id": "r1"}), "pretrained": type("R", (), {"run_id": "r2"})})())
    monkeypatch.setattr(transfer, "standin_target", lambda cfg: None)
    monkeypatch.setattr(transfer, "summarize", lambda *a, **k: ComparisonSummary(empty, replace(empty, run_id="r2"), []))
    assert main(["transfer", "--standin", "--epochs", "1"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "no checkpoint" in captured.out


def test_standin_cache_key_covers_every_setting_that_changes_the_weights():
    """Bug 10: the cache key ignored lr and device."""
    base = StandinConfig(device="cpu")
    key = _standin_path(base)
    for changed in (replace(base, lr=base.lr / 2), replace(base, seed=1), replace(base, source_epochs=3),
                    replace(base, source_images=1000)):
        assert _standin_path(changed) != key, changed
    assert _standin_path(replace(base, epochs=1, target_labels=5)) == key  # target-only settings: same pretraining
    if torch.cuda.is_available():
        assert _standin_path(replace(base, device="cuda")) != key


def test_a_pretrained_standin_that_does_not_fit_is_refused_not_silently_ignored(monkeypatch):
    """Bug 10: load_state_dict(strict=False) transferred nothing when the layers changed."""
    import cnnlab.transfer as transfer

    monkeypatch.setattr(transfer, "pretrained_standin", lambda cfg, listeners=(), cancel=None:
                        {"conv1.weight": torch.zeros(2, 2), "fc3.weight": torch.zeros(5, 84)})
    with pytest.raises(ConfigError, match="does not fit"):
        standin_transfer_model(StandinConfig(device="cpu"))


def test_standin_pretraining_runs_in_the_job_queue_not_in_the_callers_thread(monkeypatch):
    """Bug 7: the stand-in's pretraining ran in the page's thread, outside the device queue."""
    import cnnlab.transfer as transfer
    from cnnlab.jobs import JobManager

    threads = []
    real = transfer.standin_transfer_model

    def spy(cfg, listeners=(), cancel=None):
        threads.append(threading.current_thread())
        return real(cfg, listeners, cancel)

    monkeypatch.setattr(transfer, "standin_transfer_model", spy)
    monkeypatch.setattr(transfer, "pretrained_standin", lambda cfg, listeners=(), cancel=None:
                        transfer._source_model().state_dict())
    cfg = StandinConfig(epochs=1, target_labels=4, target_val=30, device="cpu")
    jobs = transfer.submit_standin(cfg, manager=JobManager())
    assert threads == []  # submitting returns at once: nothing was built in this thread
    for job in jobs:
        assert job.wait(timeout=600), "job did not finish"
    assert jobs[1].state == "finished", jobs[1].message
    assert len(threads) == 1 and threads[0] is not threading.current_thread()
    assert threads[0].name.startswith("cnnlab-jobs-")
