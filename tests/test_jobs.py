"""Background jobs: FIFO queue per device, cancel (queued and running), event polling."""

from __future__ import annotations

import threading
import time

import pytest

from cnnlab import runs
from cnnlab.errors import ConfigError
from cnnlab.jobs import JobManager, get_manager
from cnnlab.train import TrainConfig, fit
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


def test_two_devices_train_two_jobs_at_once():
    """A server with two GPUs (faked: the jobs are given cuda:0 and cuda:1 and train on the CPU): one job
    per device at once. Each of the first two jobs waits at a barrier until the other one has started:
    they pass it only if both run at the same time (a manager running one job at a time would leave the
    first alone there until the barrier's safety timeout breaks it, and the job fails)."""
    both_started = threading.Barrier(2, timeout=120)
    release = threading.Event()
    seen: dict[int, tuple[str, set[str]]] = {}

    def train_on_cpu(config, *, device, **kw):
        if config.seed in (1, 2):
            both_started.wait()
            seen[config.seed] = (device, {job.device for job in manager.active() if job.state == "running"})
            assert release.wait(120)  # both stay running until the test has looked at the queues
        return fit(config, device="cpu", **kw)

    manager = JobManager(devices=["cuda:0", "cuda:1"], train=train_on_cpu)
    assert manager.devices == ["cuda:0", "cuda:1"]
    data = digits_bundle(n_train=300)
    config = dict(FAST, device="auto", epochs=1)
    try:
        first = manager.submit(TrainConfig(**{**config, "seed": 1}), data=data)
        second = manager.submit(TrainConfig(**{**config, "seed": 2}), data=data)
        assert (first.device, second.device) == ("cuda:0", "cuda:1")  # "auto": the device with fewest jobs
        assert _wait(lambda: len(seen) == 2)
        assert seen[1] == ("cuda:0", {"cuda:0", "cuda:1"}) and seen[2] == ("cuda:1", {"cuda:0", "cuda:1"})
        assert first.state == second.state == "running" and not first.done and not second.done
        third = manager.submit(TrainConfig(**{**config, "seed": 3}), data=data)  # a tie: the first device
        named = manager.submit(TrainConfig(**{**config, "seed": 4, "device": "cuda:1"}), data=data)
        assert (third.device, third.state, third.position) == ("cuda:0", "queued", 1)
        assert (named.device, named.state, named.position) == ("cuda:1", "queued", 1)
        assert manager.active()[:2] == [first, second]
    finally:
        release.set()
    for job in (first, second, third, named):
        assert job.wait(120)
        assert job.state == "finished", job.message
    assert [j.result.device for j in (first, second, third, named)] == ["cpu"] * 4
    assert {r.run_id for r in runs.list_runs()} == {j.run_id for j in (first, second, third, named)}


def test_a_device_this_machine_lacks_is_refused_at_submit():
    manager = JobManager(devices=["cpu"])
    with pytest.raises(ConfigError):
        manager.submit(TrainConfig(**{**FAST, "device": "cuda:7"}))


def test_sidebar_shows_which_job_is_on_which_device(monkeypatch):
    """The app's sidebar on a two-GPU server: the devices, and the device of every running and queued job."""
    from streamlit.testing.v1 import AppTest

    import cnnlab.jobs

    running = threading.Barrier(3, timeout=120)  # the two running jobs and this test
    release = threading.Event()

    def wait_then_train_on_cpu(config, *, device, **kw):
        if config.seed in (1, 2):  # the two jobs that start at once
            running.wait()
            assert release.wait(120)
        return fit(config, device="cpu", **kw)

    manager = JobManager(devices=["cuda:0", "cuda:1"], train=wait_then_train_on_cpu)
    monkeypatch.setattr(cnnlab.jobs, "_manager", manager)
    data = digits_bundle(n_train=200)
    jobs = [manager.submit(TrainConfig(**{**FAST, "device": "auto", "epochs": 1, "seed": seed}), data=data)
            for seed in (1, 2, 3)]
    try:
        running.wait()  # jobs 1 and 2 run, job 3 waits for cuda:0

        def page():
            from app.common import sidebar_status

            sidebar_status()

        at = AppTest.from_function(page).run()
        assert not at.exception
        captions = [c.value for c in at.sidebar.caption]
        bars = [p.proto.text for p in at.sidebar.get("progress")]
    finally:
        release.set()
    assert any("2 devices (cuda:0, cuda:1)" in c for c in captions)
    assert bars == [f"#{jobs[0].id} lenet on digits · cuda:0", f"#{jobs[1].id} lenet on digits · cuda:1"]
    assert f"#{jobs[2].id} lenet on digits: queued for cuda:0 (1)" in " ".join(captions)
    for job in jobs:
        assert job.wait(120) and job.state == "finished", job.message


def test_a_short_job_that_explodes_ends_diverged(manager):
    # the app's path to the trainer: the same check as fit's (issue 23)
    job = manager.submit(TrainConfig(**{**FAST, "epochs": 1, "max_steps": 5, "lr": 1e6}), data=digits_bundle())
    assert job.wait(60)
    assert job.state == "diverged" and "rose to" in job.message, job.message
