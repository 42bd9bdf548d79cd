"""The trainer's CPU threads: chosen from the free cores, adapted while training, forced when asked.

No timing here: the monitor and the clock are replaced by fakes, so the tests check the decisions,
never the machine's speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab import threads as th
from cnnlab.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cores, others, expected", [
    (2, 0.0, 2), (2, 0.2, 2), (2, 0.5, 1), (2, 1.0, 1), (2, 3.0, 1), (2, -1.0, 2),
    (4, 1.0, 3), (4, 0.25, 4), (8, 0.6, 7), (1, 0.0, 1), (1, 5.0, 1),
])
def test_choose_threads(cores, others, expected):
    assert th.choose_threads(cores, others) == expected


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_forced_count_is_used_and_the_previous_one_given_back(two_threads):
    gov = th.ThreadGovernor(forced=1, cores=2)
    gov.start()
    assert torch.get_num_threads() == 1
    gov.tick()
    assert torch.get_num_threads() == 1
    assert "as asked" in gov.note()
    gov.stop()
    assert torch.get_num_threads() == 2


def test_the_count_follows_the_other_processes_after_two_agreeing_looks(two_threads, monkeypatch):
    monkeypatch.setattr(th, "initial_others", lambda: 0.0)
    readings = iter([1.0, 1.0, 0.0, 1.0, 0.1, 0.1])
    clock = FakeClock()
    gov = th.ThreadGovernor(monitor=lambda: next(readings), cores=2, clock=clock)
    assert gov.start() == 2  # quiet at the start: every core

    def look():
        clock.t += th.ADAPT_EVERY_S
        gov.tick()
        return torch.get_num_threads()

    gov.tick()  # too early: no look yet
    assert torch.get_num_threads() == 2
    assert look() == 2  # one busy look is not enough
    assert look() == 1  # two in a row: give a core up
    assert look() == 1  # one quiet look: not yet
    assert look() == 1  # busy again: the quiet look is forgotten
    assert look() == 1
    assert look() == 2  # two quiet looks: the core back
    gov.stop()
    assert torch.get_num_threads() == 2


def test_a_busy_start_begins_with_fewer_threads(two_threads, monkeypatch):
    monkeypatch.setattr(th, "initial_others", lambda: 1.0)
    gov = th.ThreadGovernor(monitor=lambda: None, cores=2, clock=FakeClock())
    assert gov.start() == 1
    assert "adapted while training" in gov.note()
    gov.stop()
    assert torch.get_num_threads() == 2


def test_a_gpu_training_leaves_the_cpu_threads_alone(two_threads, monkeypatch):
    monkeypatch.setattr(th, "initial_others", lambda: 5.0)
    gov = th.ThreadGovernor(device_type="cuda", cores=2)
    gov.start()
    assert torch.get_num_threads() == 2 and gov.note() == ""


def test_the_monitor_reads_this_machine():
    mon = th.CpuMonitor(cores=2)
    sum(i * i for i in range(200_000))  # some work of our own between the two looks
    others = mon.others_busy()
    if mon.last is None:  # no /proc/stat (not Linux)
        assert others is None
    else:
        assert others is None or 0.0 <= others <= 2.0
    assert th.usable_cores() >= 1
    assert th.initial_others() >= 0.0


def test_fit_honours_a_forced_count_and_gives_the_previous_one_back(two_threads):
    seen: list[int] = []
    notes: list[str] = []

    def listener(event):
        if getattr(event, "kind", "") == "step":
            seen.append(torch.get_num_threads())
        elif getattr(event, "kind", "") == "start":
            notes.extend(event.notes)

    result = fit(TrainConfig(model="lenet", dataset="digits", epochs=1, max_steps=6, log_every_steps=2, threads=1,
                             device="cpu"), listeners=[listener])
    assert result.status == "finished"
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2
    assert any("1 CPU thread(s), as asked" in n for n in notes)


def test_fit_notes_its_thread_choice(two_threads, monkeypatch):
    monkeypatch.delenv("CNNLAB_THREADS", raising=False)  # the automatic choice (conftest fixes a count)
    notes: list[str] = []
    fit(TrainConfig(model="lenet", dataset="digits", epochs=1, max_steps=2, device="cpu"),
        listeners=[lambda e: notes.extend(e.notes) if getattr(e, "kind", "") == "start" else None])
    assert any("CPU thread(s)" in n and "adapted while training" in n for n in notes)
    assert torch.get_num_threads() == 2


def test_threads_is_checked_like_every_setting():
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="threads"):
        TrainConfig(threads=0).validate()


@pytest.mark.parametrize("given, expected", [
    ({}, "1000"),  # cnnlab's short spin
    ({"GOMP_SPINCOUNT": "5"}, "5"),  # the user's own count wins
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "unset"),  # so does the user's own policy
])
def test_importing_cnnlab_makes_openmp_waits_short_unless_told_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(given)
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", "import cnnlab, os; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == expected, out.stderr


def test_cnnlab_threads_fixes_the_count_of_every_training(two_threads, monkeypatch):
    from cnnlab.threads import threads_from_env

    for bad in ("", "zero", "0", "-1", "5000"):
        monkeypatch.setenv("CNNLAB_THREADS", bad)
        assert threads_from_env() is None
    monkeypatch.setenv("CNNLAB_THREADS", "1")
    assert threads_from_env() == 1
    seen: list[int] = []
    fit(TrainConfig(model="lenet", dataset="digits", epochs=1, max_steps=4, log_every_steps=2, device="cpu"),
        listeners=[lambda e: seen.append(torch.get_num_threads()) if getattr(e, "kind", "") == "step" else None])
    assert set(seen) == {1} and torch.get_num_threads() == 2
