"""Data-parallel training under torchrun, on CPUs (gloo, loopback only): one run folder, every image
counted once, the accuracy of one process with the same global batch, nothing left running, and a
failing process stopping the others with a clear message instead of a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab import distributed, xray
from cnnlab.events import XrayEvent
from cnnlab.errors import DataError
from cnnlab.jobs import JobManager
from cnnlab.threads import usable_cores
from cnnlab.train import TrainResult

ROOT = Path(__file__).resolve().parents[1]
SAFETY_S = 300  # a safety net only: a hang is what the failure test rules out, not a slow machine
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "--local-addr", "127.0.0.1", "-m", "cnnlab"]
TRAIN = ["train", "--model", "lenet", "--data", "digits", "--epochs", "2", "--no-tensorboard"]


def _marked_processes(marker: str) -> list[int]:
    """Pids of the live processes whose environment carries ``marker`` (torchrun and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if f"CNNLAB_TEST_MARKER={marker}".encode() in env.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def _torchrun(args: list[str], cache: Path, **extra: str) -> tuple[subprocess.CompletedProcess, str]:
    """torchrun with 2 CPU processes on loopback; the result and the marker of its processes."""
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "CNNLAB_THREADS")}
    env.update(CNNLAB_CACHE=str(cache), CNNLAB_OFFLINE="1", OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               CUDA_VISIBLE_DEVICES="", CNNLAB_DIST_TIMEOUT="120", CNNLAB_TEST_MARKER=marker,
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), **extra)
    proc = subprocess.Popen(TORCHRUN + args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=SAFETY_S)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *_marked_processes(marker)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, err = proc.communicate()
        pytest.fail(f"torchrun still running after {SAFETY_S} s (a hang):\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), marker


def _no_process_left(marker: str) -> None:
    # torchrun has returned: it waited for its workers; none of them may still run
    assert _marked_processes(marker) == []


def test_torchrun_two_processes_train_one_model_like_one_process(tmp_path):
    from cnnlab.train import TrainConfig, fit, load_data

    cache = tmp_path / "cache"
    done, marker = _torchrun(TRAIN, cache)
    assert done.returncode == 0, done.stderr[-3000:]
    _no_process_left(marker)
    assert done.stdout.count("run id:") == 1  # rank 0 prints, the other process trains quietly

    (folder,) = (cache / "runs").iterdir()  # exactly one run folder
    meta = json.loads((folder / "meta.json").read_text())
    status = json.loads((folder / "status.json").read_text())
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert status["status"] == "finished" and (folder / "best.pt").is_file()
    assert meta["world_size"] == 2 and meta["backend"] == "gloo"
    # each process trained on its share: every training image counted once per epoch, over both processes
    config = TrainConfig(model="lenet", dataset="digits", epochs=2, device="cpu")
    data = load_data(config, download=False)
    assert meta["train_images"] == len(data.train.labels) and meta["val_images"] == len(data.val.labels)
    assert [m["train_images"] for m in metrics] == [len(data.train.labels)] * 2
    # the two processes share the cores: max(1, cores // 2) threads each, never oversubscribed
    threads = max(1, usable_cores() // 2)
    assert any(n.startswith(f"{threads} CPU thread(s), this process's share") for n in meta["notes"]), meta["notes"]

    # one process with the same global batch (64) reaches the same accuracy
    events: list = []
    single = fit(config, data=data, listeners=[events.append])
    assert single.status == "finished"
    # the X-ray: the same steps sampled; at the first step (same weights, same batch shared by two) the same
    # numbers, each process's sums exchanged once
    pooled = [json.loads(line) for line in (folder / "xray.jsonl").read_text().splitlines()]
    alone = [xray.compact(e) for e in events if isinstance(e, XrayEvent)]
    assert [x["step"] for x in pooled] == [x["step"] for x in alone] and pooled[0]["step"] == 1
    for part, keys in (("layers", ("weight_norm", "grad_norm", "update_ratio")),
                       ("activations", ("mean", "std", "dead", "saturated"))):
        for a, b in zip(pooled[0][part], alone[0][part], strict=True):
            assert a["name"] == b["name"]
            for k in keys:
                assert a[k] == pytest.approx(b[k], rel=2e-3, abs=1e-6), (part, a["name"], k)
    assert len(metrics) == len(single.history) == 2
    assert abs(metrics[-1]["val_top1"] - single.history[-1].val_top1) <= 0.03
    assert abs(metrics[-1]["train_loss"] - single.history[-1].train_loss) <= 0.05
    assert status["steps"] == single.steps  # the same steps: the global batch is the batch


def test_a_failing_process_stops_the_other_with_a_clear_message(tmp_path):
    cache = tmp_path / "cache"
    done, marker = _torchrun(TRAIN, cache, CNNLAB_THREADS="1", CNNLAB_TEST_FAIL_RANK="1")
    assert done.returncode != 0
    _no_process_left(marker)
    assert "failure injected for a test (CNNLAB_TEST_FAIL_RANK=1)" in done.stderr
    # rank 0 says why it stopped: not its own error, and where to look
    assert "error: process 0 of 2 stopped" in done.stderr
    assert "another process of this torchrun group (2 processes) stopped" in done.stderr
    (folder,) = (cache / "runs").iterdir()
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "failed" and "another process of this torchrun group" in status["message"]


def test_torchrun_lesson_trains_every_arm_in_both_processes_one_result(tmp_path):
    # the arms one after the other, agreed before each one; the data loaded by rank 0 first
    cache = tmp_path / "cache"
    done, marker = _torchrun(["lesson", "lenet-vs-lenetv2", "--set", "epochs=1", "--set", "max_steps=3",
                              "--device", "cpu", "--json"], cache)
    assert done.returncode == 0, done.stderr[-3000:]
    _no_process_left(marker)
    result = json.loads(done.stdout)  # rank 0 alone prints it
    assert [a["status"] for a in result["arms"]] == ["finished", "finished"]
    runs = list((cache / "runs").iterdir())
    assert len(runs) == 2 and len(list((cache / "lessons").iterdir())) == 1
    assert all(json.loads((r / "meta.json").read_text())["world_size"] == 2 for r in runs)  # data-parallel


# ---- the pieces, in one process ------------------------------------------------------------


@pytest.mark.parametrize("n, batch, world", [(1438, 64, 2), (1437, 64, 2), (1000, 64, 3), (130, 64, 4),
                                             (65, 64, 2), (66, 64, 2), (100, 7, 1)])
def test_every_image_once_per_epoch_in_equal_steps(n, batch, world):
    steps = distributed.steps_per_epoch(n, batch, world)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    seen = []
    for i in range(steps):
        step = perm[i * batch:(i + 1) * batch]
        shares = [distributed.shard_of_batch(step, r, world) for r in range(world)]
        assert all(len(s) >= 1 for s in shares)  # every process makes every step: none waits forever
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        seen += [int(v) for s in shares for v in s]
    assert len(seen) == len(set(seen))  # never twice
    rest = n % batch
    dropped = rest if 0 < rest < 2 * world else 0  # a last batch too small to share (batch norm needs 2)
    assert len(seen) == n - dropped
    # the steps a single process makes with that batch
    assert distributed.steps_per_epoch(n, batch, 1) == (n // batch + (n % batch > 1))


def test_threads_per_process_never_oversubscribe():
    assert distributed.threads_per_process(2, 2) == 1
    assert distributed.threads_per_process(16, 4) == 4
    assert distributed.threads_per_process(3, 4) == 1
    assert distributed.threads_per_process(8, 1) == 8


def test_sync_batchnorm_conversion_is_undone_with_the_trained_weights_kept():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4 * 6 * 6)))
    bn = model[1]
    restore = distributed.convert_sync_batchnorm(model)
    assert isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[2][1], nn.SyncBatchNorm)
    with torch.no_grad():
        model[1].weight.fill_(3.0)  # trained while synchronised
        model[1].running_mean.fill_(0.5)
    restore()
    assert model[1] is bn and type(model[2][1]) is nn.BatchNorm1d
    assert bool((bn.weight == 3.0).all()) and bool((bn.running_mean == 0.5).all())


def test_outside_torchrun_there_is_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched_by_torchrun() and not distributed.is_active()
    assert distributed.init_from_env("cpu") is False
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched_by_torchrun()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "42")
    assert distributed.timeout().total_seconds() == 42


# ---- agreeing between processes, with threads standing in for them ---------------------------------


class ThreadGroup:
    """The collectives the helpers use (:meth:`distributed.Group.sum` and ``broadcast``) between the threads
    of this process, one thread per "process": what a group of ``world`` processes would exchange."""

    def __init__(self, world: int):
        self.world = world
        self.barrier = threading.Barrier(world, timeout=30)  # a hang fails the test instead of blocking it
        self.slots: list = [None] * world

    def member(self, rank: int) -> "ThreadMember":
        return ThreadMember(self, rank)

    def run(self, fn, *args_per_rank):
        """``fn(member, *args)`` in one thread per rank; each rank's result, or the exception it raised."""
        out: list = [None] * self.world

        def body(r: int) -> None:
            try:
                out[r] = fn(self.member(r), *[a[r] for a in args_per_rank])
            except BaseException as e:  # noqa: BLE001 - returned to the test
                out[r] = e

        threads = [threading.Thread(target=body, args=(r,)) for r in range(self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a rank is still waiting (a hang)"
        return out


class ThreadMember:
    def __init__(self, shared: ThreadGroup, rank: int):
        self.shared, self.rank, self.world = shared, rank, shared.world
        self.device, self.backend = torch.device("cpu"), "threads"

    def _exchange(self, value):
        self.shared.slots[self.rank] = value
        self.shared.barrier.wait()
        values = list(self.shared.slots)
        self.shared.barrier.wait()
        return values

    def sum(self, values, what=""):
        return sum(v.clone() for v in self._exchange(values.detach().clone()))

    def broadcast(self, obj, what="", src=0):
        return self._exchange(obj)[src]


def test_load_in_turn_rank_0_first_then_each_machine_first_then_the_rest():
    # 3 processes on 2 machines: ranks 0 and 1 on the first (local ranks 0, 1), rank 2 alone on the second
    log, lock = [], threading.Lock()

    def load(member, local):
        def one(download):
            with lock:
                log.append(("start", member.rank, download))
            time.sleep(0.05)  # several "still loading" exchanges while this one loads
            with lock:
                log.append(("end", member.rank, download))
            return f"data of {member.rank}"
        return distributed.load_in_turn(member, one, local_rank_=local, poll_s=0.01)

    out = ThreadGroup(3).run(load, [0, 1, 0])
    assert out == ["data of 0", "data of 1", "data of 2"]
    # one at a time, in turns; only the first process of a machine may download
    assert log == [("start", 0, True), ("end", 0, True), ("start", 2, True), ("end", 2, True),
                   ("start", 1, False), ("end", 1, False)]


@pytest.mark.parametrize("failing, error", [(0, DataError("no network: put the files in data/")),
                                            (1, RuntimeError("disk full"))])
def test_load_in_turn_a_failure_stops_every_process_with_its_message(failing, error):
    calls = []

    def load(member):
        def one(download):
            calls.append(member.rank)
            if member.rank == failing:
                raise error
            return "data"
        return distributed.load_in_turn(member, one, "the digits dataset", local_rank_=member.rank, poll_s=0.01)

    out = ThreadGroup(2).run(load)
    assert out[failing] is error  # the failing process raises its own error
    other = out[1 - failing]
    assert isinstance(other, DataError)
    assert f"process {failing} of 2 could not load the digits dataset" in str(other)
    assert (str(error) if failing == 0 else "RuntimeError: disk full") in str(other)
    if failing == 0:
        assert calls == [0]  # nobody loads (nor downloads) after rank 0 failed


def test_agree_on_task_same_task_cancel_skip_and_out_of_step():
    names = ["lenet", "lenet_v2"]
    g = ThreadGroup(2)
    agree = distributed.agree_on_task
    assert g.run(lambda m: agree(m, 0, names)) == [distributed.TaskAgreement(False, "")] * 2
    # a cancel in one process (Ctrl-C, SIGTERM between two arms) stops both
    assert [a.cancel for a in g.run(lambda m: agree(m, 1, names, cancel=m.rank == 1))] == [True, True]
    # an arm one process cannot start is skipped by both, with its reason
    out = g.run(lambda m: agree(m, 1, names, skip="its data failed" if m.rank == 1 else ""))
    assert [a.skip for a in out] == ["process 1 of 2: its data failed", "its data failed"]
    # not at the same arm (or not the same lesson): both stop, with the same message
    out = g.run(lambda m, i: agree(m, i, names), [0, 1])
    assert all(isinstance(e, distributed.OutOfStepError) for e in out) and str(out[0]) == str(out[1])
    assert "process 0 at arm 1, process 1 at arm 2" in str(out[0])
    out = g.run(lambda m, n: agree(m, 0, n), [names, ["vgg16", "lenet"]])
    assert all(isinstance(e, distributed.OutOfStepError) for e in out) and "not the same arms" in str(out[0])
    out = g.run(lambda m, i: agree(m, i, names), [2, 1])  # one finished the lesson, the other did not
    assert "process 0 past the last arm, process 1 at arm 2" in str(out[0])


def _fake_train(trained):
    def train(config, model=None, data=None, listeners=(), cancel=None, initial_state=None, device=None):
        trained.append((threading.current_thread().name, config.model))
        return TrainResult("finished", "", f"run-{config.model}", 0.5, 1, [], None, 0.1, 3, 100.0, "cpu")
    return train


def _lesson_runs(world, monkeypatch, fail_load=None):
    """One LessonRun of lenet-vs-lenetv2 per rank, a job manager whose training only records the arm;
    the ``fail_load``-th load of the data (0 first) fails."""
    from cnnlab.lessons import get_lesson, runner

    real, loads = runner.load_data, []

    def load_data(config, download=True):
        loads.append(download)
        if len(loads) - 1 == fail_load:
            raise DataError("cannot read the shapes files")
        return real(config, download=download)

    monkeypatch.setattr(runner, "load_data", load_data)
    trained = []
    lesson = get_lesson("lenet-vs-lenetv2")
    runs = []
    for _ in range(world):
        plans = runner.plan(lesson, "quick", {"epochs": 1, "max_steps": 1}, "cpu")
        runs.append(runner.LessonRun(lesson, "quick", plans, JobManager(devices=["cpu"], train=_fake_train(trained))))

    def arms_of(member, run):
        run._arms_in_group({}, group=member)
        return [(a.state if a.job is None else a.job.state, a.message) for a in run.arms]

    return runs, arms_of, trained


def test_lesson_arms_agreed_a_data_failure_in_one_process_fails_that_arm_in_all(monkeypatch):
    # rank 0 loads first, then rank 1 (the first process of its machine here, as LOCAL_RANK is not set): its load fails
    runs, arms_of, trained = _lesson_runs(2, monkeypatch, fail_load=1)
    out = ThreadGroup(2).run(arms_of, runs)
    assert not any(isinstance(o, BaseException) for o in out), out
    for states in out:  # the same in both processes: the first arm failed, nobody trained it; the second trained
        # (its data loaded again, in both)
        assert states[0][0] == "failed" and states[1][0] == "finished"
    assert "cannot read the shapes files" in out[1][0][1]
    assert "process 1 of 2 could not load the shapes dataset" in out[0][0][1]
    assert sorted(model for _, model in trained) == ["lenet_v2", "lenet_v2"]


def test_lesson_arms_a_cancel_in_one_process_between_arms_stops_all(monkeypatch):
    runs, arms_of, trained = _lesson_runs(2, monkeypatch)
    runs[1]._cancel.set()  # rank 1 was asked to stop (Ctrl-C, torchrun's SIGTERM) before the first arm
    ThreadGroup(2).run(arms_of, runs)
    assert trained == [] and all(r._cancel.is_set() for r in runs)


def test_group_stopped_prints_its_message(monkeypatch, capsys):
    import argparse

    from cnnlab import cli

    def stopped(args):
        raise distributed.GroupStopped("stopped by torchrun (SIGTERM): another process of the group failed")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=stopped)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 143
    assert "error: stopped by torchrun (SIGTERM): another process of the group failed" in capsys.readouterr().err


def test_progress_events_are_not_doubled_when_flags_are_read_a_step_late(monkeypatch):
    """On a GPU the agreed flags are read one step late (lag 1): the flag read after an event was computed
    before it, and must not make a second event one step later. Forced here on the CPU with a group of one."""
    from cnnlab import train as train_mod
    from cnnlab.train import StepEvent, TrainConfig, fit

    class OneProcess(ThreadMember):
        def agree(self, flags):
            return flags.clone()

        def wrap(self, model):
            return model

        def barrier(self, what=""):
            pass

    monkeypatch.setitem(train_mod.FINITE_CHECK_LAG, "cpu", 1)
    monkeypatch.setattr(distributed.Group, "current", classmethod(lambda cls, device: OneProcess(ThreadGroup(1), 0)))
    steps = []
    config = TrainConfig(model="lenet", dataset="digits", epochs=1, device="cpu", log_every_steps=4)
    result = fit(config, listeners=[lambda e: steps.append(e.step) if isinstance(e, StepEvent) else None])
    assert result.status == "finished"
    gaps = [b - a for a, b in zip([0, *steps], steps)]
    assert min(gaps[:-1]) >= 4, steps  # no one-step event after each one (the last one ends the epoch)
