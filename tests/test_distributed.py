"""Data-parallel training under torchrun, on CPUs (gloo, loopback only): one run folder, every image
counted once, the accuracy of one process with the same global batch, nothing left running, and a
failing process stopping the others with a clear message instead of a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab import distributed
from cnnlab.threads import usable_cores

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
    single = fit(config, data=data)
    assert single.status == "finished"
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
