"""Background jobs: FIFO queue per device, cancel (queued and running), event polling."""

from __future__ import annotations

import time

import pytest

from cnnlab import runs
from cnnlab.errors import ConfigError
from cnnlab.jobs import JobManager, get_manager
from cnnlab.train import TrainConfig
from test_train_data import digits_bundle

FAST = dict(model="lenet", dataset="digits", batch_size=64, optimizer="adam", lr=3e-3, device="cpu")


@pytest.fixture
def manager():
    """A fresh manager whose jobs are all cancelled and finished at the end of the test."""
    m = JobManager()
    yield m
    for job in m.jobs():
        job.cancel()
    for job in m.jobs():
        assert job.wait(30)


def _wait(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_second_job_waits_in_the_queue_then_runs(manager):
    data = digits_bundle(n_train=300)
    first = manager.submit(TrainConfig(epochs=1000, log_every_steps=1, **FAST), data=data)
    second = manager.submit(TrainConfig(epochs=2, **FAST), data=data)
    assert _wait(lambda: first.state == "running" and first.progress > 0)
    assert second.state == "queued" and second.position == 1 and second.progress == 0.0
    assert first.position is None
    assert manager.active() == [first, second]
    first.cancel()
    assert first.wait(30) and first.state == "cancelled"
    assert first.progress < 1.0  # a stopped job's bar stays where it stopped: a full bar would say it completed
    assert second.wait(60)
    assert second.state == "finished" and second.progress == 1.0
    assert second.latest_epoch["epoch"] == 2
    assert manager.active() == [] and manager.jobs() == [first, second]
    listed = {r.run_id: r for r in runs.list_runs()}
    assert listed[second.run_id].status == "finished"
    assert listed[first.run_id].status == "cancelled"


def test_cancel_a_queued_job_and_poll_events(manager):
    data = digits_bundle(n_train=300)
    running = manager.submit(TrainConfig(epochs=1000, **FAST), data=data)
    assert _wait(lambda: running.state == "running")
    waiting = manager.submit(TrainConfig(epochs=1, **FAST), data=data)
    third = manager.submit(TrainConfig(epochs=1, **FAST), data=data)
    assert third.position == 2
    waiting.cancel()
    assert waiting.done and waiting.state == "cancelled" and waiting.run_id is None and waiting.progress == 0.0
    assert third.position == 1
    events, index = waiting.events_since(0)
    assert [e["kind"] for e in events] == ["end"] and index == 1

    seen, index = [], 0
    assert _wait(lambda: running.latest_epoch is not None)
    running.cancel()
    assert running.wait(30)
    while True:
        new, index = running.events_since(index)
        if not new:
            break
        seen += new
    kinds = [e["kind"] for e in seen]
    assert kinds[0] == "start" and kinds[-1] == "end" and "epoch" in kinds and "step" in kinds
    assert seen == running.events and index == len(seen)
    assert running.events_since(index) == ([], index)
    assert third.wait(60) and third.state == "finished"


def test_a_bad_config_is_refused_at_submit_and_a_failing_job_is_reported(manager):
    with pytest.raises(ConfigError):
        manager.submit(TrainConfig(**{**FAST, "lr": 0.0}))
    job = manager.submit(TrainConfig(subset=3, **FAST), data=digits_bundle())
    assert job.wait(30) and job.state == "failed"
    assert "at least one image per class" in job.message
    assert job.events[-1]["kind"] == "end" and job.events[-1]["status"] == "failed"


def test_get_manager_is_a_process_wide_singleton():
    assert get_manager() is get_manager()
