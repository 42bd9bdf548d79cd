"""Data-parallel training on PyTorch's own engine: ``torchrun`` starts the processes, this module
joins them into a process group and gives the trainer what it needs to train one model with them.

Launch (see the README, "A class on one server, long trainings with torchrun")::

    torchrun --nproc_per_node 4 -m cnnlab train --model vgg16 --data caltech101 --batch-size 256

- The command line joins the group when torchrun started it (``WORLD_SIZE`` > 1): NCCL on GPUs,
  each process on the GPU ``LOCAL_RANK`` names; gloo on CPUs. A library user calls
  :func:`init_from_env` (or ``torch.distributed.init_process_group``) before :func:`cnnlab.train.fit`:
  ``fit`` trains data-parallel whenever a process group of more than one process is initialised.
- ``batch_size`` is the **global** batch: the images of one optimiser step, summed over the
  processes. Each step's batch is the same slice of the same permutation a single process would take
  (every process draws the permutation from the same seed) and each process trains on its share of
  it (every ``world``-th image), with the loss scaled so that the averaged gradient is exactly the
  single-process one. Every process makes the same number of steps (so none waits forever for a
  collective the others never reach), and each image is trained on once per epoch, by one process.
- The data is loaded in turns (:func:`load_in_turn`): rank 0 first (it may download), then the first
  process of every other machine, then the rest, who find the files and the decode cache; a failure in
  one process stops all of them with its message. A lesson's arms are agreed before each one
  (:func:`agree_on_task`): the same arm everywhere, a cancel in one process stops all.
- Everything that decides what happens next is agreed by all processes: the metrics are summed
  across them (:meth:`Group.sum`), and cancel, a non-finite loss and "time for a progress event" are
  exchanged every step (:meth:`Group.agree`), so all stop at the same step.
- A process that fails takes the others down with a clear message: a collective that cannot reach a
  peer raises :class:`PeerLostError`, and every collective has the group's timeout
  (``CNNLAB_DIST_TIMEOUT``, seconds; default 600). torchrun's agent stops the rest of the group when one
  process exits with an error.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .device import pick_device as _pick_device
from .errors import CnnlabError, ConfigError, DataError
from .i18n import _

TIMEOUT_ENV = "CNNLAB_DIST_TIMEOUT"  # seconds a collective may wait for the other processes
DEFAULT_TIMEOUT_S = 600.0
# Tests only: the process of this rank raises an error after CNNLAB_TEST_FAIL_STEP (default 3) training
# steps, so a test can check that the other processes stop with a clear message instead of hanging.
FAIL_RANK_ENV = "CNNLAB_TEST_FAIL_RANK"
FAIL_STEP_ENV = "CNNLAB_TEST_FAIL_STEP"


class PeerLostError(CnnlabError):
    """A collective failed: another process of the group stopped or cannot be reached."""


class GroupStopped(KeyboardInterrupt):
    """torchrun's agent asked this process to stop (a second SIGTERM): another process failed, or the
    whole job was stopped. A KeyboardInterrupt, so nothing on the way catches it by accident."""


def launched_by_torchrun() -> bool:
    """True in a process torchrun started as one of several (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def is_active() -> bool:
    """True when a process group of more than one process is initialised in this process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """True in the process that writes, prints and saves (rank 0), and in a single process."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``), 0 when not set."""
    try:
        return max(0, int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        return 0


def local_world_size() -> int:
    """How many processes of the group run on this machine (torchrun's ``LOCAL_WORLD_SIZE``)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def timeout() -> timedelta:
    """How long a collective waits for the other processes before it fails (``CNNLAB_DIST_TIMEOUT``)."""
    try:
        seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        seconds = DEFAULT_TIMEOUT_S
    return timedelta(seconds=max(1.0, seconds))


def uses_cuda(preference: str | None) -> bool:
    """Whether the group's processes train on GPUs: CUDA is there and the device asked for allows it."""
    pref = (preference or "auto").lower()
    return torch.cuda.is_available() and (pref == "auto" or pref.startswith("cuda"))


def init_from_env(device: str | None = "auto") -> bool:
    """Join the process group torchrun set up (its environment variables, ``env://``): NCCL with the GPU
    ``LOCAL_RANK`` names when ``device`` allows CUDA and there is one, gloo on CPUs. Returns True if
    this call initialised the group (then :func:`shutdown` it), False when not launched by torchrun
    or already initialised."""
    if not launched_by_torchrun() or not dist.is_available() or dist.is_initialized():
        return False
    backend = "gloo"
    if uses_cuda(device):
        count, index = torch.cuda.device_count(), local_rank()
        if index >= count:
            raise ConfigError(_("this machine has {count} GPU(s) but torchrun started process {index} of {here} on "
                                "it: use --nproc_per_node {count} (one process per GPU).").format(
                count=count, index=index, here=local_world_size()))
        torch.cuda.set_device(index)
        backend = "nccl"
    dist.init_process_group(backend, timeout=timeout())
    return True


def shutdown() -> None:
    """Leave the process group (after a training that ended normally)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def torchrun_group(device: str | None = "auto") -> Iterator[None]:
    """Inside: in the process group torchrun set up, if it launched this process (see
    :func:`init_from_env`); left at the end of a normal exit. After an error it is not left: a peer
    may be gone, and leaving would wait for it; the process ends anyway."""
    started = init_from_env(device)
    yield
    if started:
        shutdown()


def rank_device(device: torch.device) -> torch.device:
    """The device of this process in the group: a GPU without an index becomes ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank() % max(1, torch.cuda.device_count()))
    return device


def pick_device(preference: str | None = "auto") -> torch.device:
    """:func:`cnnlab.device.pick_device`, in a process of a torchrun group on the GPU its ``LOCAL_RANK``
    names when the preference names none (``auto``, ``cuda``)."""
    device = _pick_device(preference)
    return rank_device(device) if is_active() else device


def threads_per_process(cores: int, processes: int) -> int:
    """CPU threads for each of ``processes`` trainings sharing ``cores`` cores: never oversubscribed."""
    return max(1, cores // max(1, processes))


def steps_per_epoch(n_train: int, batch_size: int, world: int = 1) -> int:
    """Optimiser steps in one epoch of ``n_train`` images at a global ``batch_size``.

    A last batch too small to share (fewer than 2 images for each process: batch norm cannot train on
    one image) is dropped, as a single process drops a 1-image last batch."""
    if n_train <= 1:
        return 1
    full, rest = divmod(n_train, batch_size)
    if rest and rest < 2 * world:
        return max(1, full)
    return full + (1 if rest else 0)


def shard_of_batch(indices: torch.Tensor, rank_: int, world: int) -> torch.Tensor:
    """This process's share of one step's (global) batch: every ``world``-th index from its rank on."""
    return indices[rank_::world]


def convert_sync_batchnorm(model: nn.Module) -> Callable[[], None]:
    """Replace every batch-norm layer of ``model`` by a :class:`torch.nn.SyncBatchNorm` (PyTorch's
    ``convert_sync_batchnorm``; statistics computed over the whole global batch) and return a function
    that puts the original layers back. They share their weights and running statistics with the
    synchronised ones, so what was trained stays in the model."""
    originals = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
                 if isinstance(child, nn.modules.batchnorm._BatchNorm)]
    if not originals:
        return lambda: None
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if converted is not model:  # pragma: no cover - the model itself is one batch-norm layer
        raise ConfigError(_("sync_bn: the model is a single batch-norm layer; nothing to synchronise."))

    def restore() -> None:
        for parent, name, child in originals:
            setattr(parent, name, child)

    return restore


@dataclass
class Group:
    """The trainer's view of the process group: who it is, where it trains, and the collectives it uses
    (each one turns a lost peer into :class:`PeerLostError`)."""

    rank: int
    world: int
    device: torch.device
    backend: str
    lost: list[str] = field(default_factory=list)

    @classmethod
    def current(cls, device: torch.device) -> "Group | None":
        """The initialised process group (more than one process), or None. An unnumbered GPU becomes the
        one this process's ``LOCAL_RANK`` names."""
        if not is_active():
            return None
        return cls(rank(), world_size(), rank_device(device), str(dist.get_backend()))

    @classmethod
    def for_exchanges(cls, device: torch.device) -> "Group | None":
        """:meth:`current`, for exchanges outside a training (loading the data, agreeing on a lesson's arm):
        with NCCL, on this process's GPU even when ``device`` is not one (NCCL exchanges GPU tensors only)."""
        group = cls.current(device)
        if group is not None and group.backend == "nccl" and device.type != "cuda":
            group.device = rank_device(torch.device("cuda"))
        return group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return _("process {rank} of {world}").format(rank=self.rank, world=self.world)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, a collective; ``what`` says what it was doing (translated: a message may show it)."""
        try:
            return fn()
        except (RuntimeError, ValueError, ConnectionError) as e:  # DistBackendError is a RuntimeError
            if isinstance(e, torch.OutOfMemoryError):
                raise
            raise self.peer_lost(what, e) from e

    def peer_lost(self, what: str, error: BaseException) -> PeerLostError:
        detail = " ".join(str(error).split())[:300]
        return PeerLostError(
            _("{process} stopped: {what} could not complete because another process of this torchrun group ({world} "
              "processes) stopped or cannot be reached; its own message says why. ({error})").format(
                process=self.describe(), what=what, world=self.world, error=f"{type(error).__name__}: {detail}"))

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (rank 0's weights and buffers
        are copied to every process now; gradients are averaged during ``backward``)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        try:
            return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)
        except RuntimeError as e:
            if from_collective(e):  # the first copy of rank 0's weights could not reach everyone
                raise self.peer_lost(_("starting DistributedDataParallel"), e) from e
            raise

    def _on_device(self, values: torch.Tensor) -> torch.Tensor:
        # NCCL reduces GPU tensors only; gloo reduces CPU tensors
        return values.to(self.device) if self.backend == "nccl" else values.cpu()

    def sum(self, values: torch.Tensor, what: str = "") -> torch.Tensor:
        """The element-wise sum of ``values`` over every process (a new tensor, on ``values``' device)."""
        t = self._on_device(values.detach().clone())
        self._call(what or _("summing the metrics"), lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM))
        return t.to(values.device)

    def agree(self, flags: torch.Tensor) -> torch.Tensor:
        """The element-wise maximum of 0/1 ``flags`` over every process (asynchronous on a GPU: read it
        a step later, as the trainer does)."""
        t = self._on_device(flags)
        self._call(_("agreeing on the next step"), lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        return t

    def broadcast(self, obj: Any, what: str = "", src: int = 0) -> Any:
        """Process ``src``'s ``obj`` on every process (rank 0's by default)."""
        box = [obj]
        device = self.device if self.backend == "nccl" else None
        self._call(what or _("sharing the run id"), lambda: dist.broadcast_object_list(box, src=src, device=device))
        return box[0]

    def barrier(self, what: str = "") -> None:
        """Wait until every process reaches this point (a tiny all-reduce: the same on every backend)."""
        self.sum(torch.zeros(1), what or _("waiting for the run folder to be written"))


class Alone(Group):
    """A training in one process: a group of one, whose collectives have nothing to exchange. The
    trainer runs the same loop with it as with a torchrun group."""

    def __init__(self, device: torch.device):
        super().__init__(0, 1, device, "none")

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def sum(self, values: torch.Tensor, what: str = "") -> torch.Tensor:
        return values

    def agree(self, flags: torch.Tensor) -> torch.Tensor:
        return flags

    def broadcast(self, obj: Any, what: str = "", src: int = 0) -> Any:
        return obj

    def barrier(self, what: str = "") -> None:
        pass


@dataclass
class Agreed:
    """What every process agreed on about one step (the OR of their flags)."""

    step: int
    epoch: int
    cancel: bool  # some process was asked to stop (Ctrl-C, a job's cancel, torchrun's SIGTERM)
    not_finite: bool  # some process's loss of that step was NaN or infinite
    due: bool  # time for a progress event (some process's clock said so)
    loss: float | None = None  # this process's loss of that step, when it was not finite


class StepAgreement:
    """Every step each process puts in its flags (cancel asked, loss not finite, progress event due) and
    all of them get the same OR of everybody's flags, so all stop, or report, at the same step.

    ``lag`` steps late, as the trainer's finite-loss check on a GPU: the flags of step k are read while
    step k+1 is already queued, so the GPU's queue never runs dry waiting for the host."""

    def __init__(self, group: Group, lag: int = 0):
        self.group, self.lag = group, lag
        self.pending: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []
        self.last_event = 0  # the step of the last progress event (see reported)

    def reported(self, step: int) -> None:
        """A progress event was made after ``step``: "event due" flags of that step or earlier are stale.

        With ``lag`` 1 the flag read after step s+1 was computed at step s+1, before the event of step
        s+1 reset the meter, so it would ask for a second event one step after the first."""
        self.last_event = max(self.last_event, step)

    def push(self, loss: torch.Tensor, cancel: bool, due: bool, step: int, epoch: int) -> Agreed | None:
        """This step's flags; what all agreed about the step ``lag`` steps back (None while too early)."""
        bad = (~torch.isfinite(loss.detach().float())).to(torch.float32).reshape(1)
        flags = torch.cat([torch.tensor([float(cancel), float(due)]).to(bad.device), bad])
        self.pending.append((self.group.agree(flags), loss.detach(), step, epoch))
        return self._read(len(self.pending) > self.lag)

    def flush(self) -> list[Agreed]:
        """At the end of an epoch: what was agreed about the steps still in flight (the same on all)."""
        out = []
        while self.pending:
            out.append(self._read(True))
        return out  # type: ignore[return-value]

    def clear(self) -> None:
        self.pending.clear()

    def _read(self, ready: bool) -> Agreed | None:
        if not ready:
            return None
        flags, loss, step, epoch = self.pending.pop(0)
        cancel, due, bad = (bool(v) for v in flags.tolist())
        own = float(loss) if bad and not bool(torch.isfinite(loss)) else None
        return Agreed(step, epoch, cancel, bad, due and step > self.last_event, own)


# ---- preparing together: the data, one lesson arm after the other ----------------------------------


class OutOfStepError(CnnlabError):
    """The processes of the group are not doing the same thing (e.g. not at the same arm of a lesson)."""


# seconds between two "still loading?" exchanges while the first processes load the data: each exchange
# is short, so a download longer than the group's timeout does not make the waiting processes fail
LOAD_POLL_S = 0.5


def load_turn(rank_: int, local_rank_: int) -> int:
    """When a process loads the data (:func:`load_in_turn`): 0 rank 0, 1 the first process of every other
    machine, 2 the rest. Turns 0 and 1 may download; turn 2 finds the files and the decode cache."""
    return 0 if rank_ == 0 else 1 if local_rank_ == 0 else 2


def load_in_turn(group: Any, load: Callable[[bool], Any], what: str = "",
                 local_rank_: int | None = None, poll_s: float = LOAD_POLL_S) -> Any:
    """``load(download)`` in every process of ``group``, in turns, so that no two processes download
    or decode into the same folder at once.

    Rank 0 loads first (download allowed) while the others wait; then the first process of every
    other machine (download allowed: on a machine of its own it needs its own copy; on a disk shared
    with rank 0 it finds rank 0's files and downloads nothing); then all the others, with download
    disabled: they find the files and the decode cache their machine's first process left. Waiting is
    a series of short exchanges (every ``poll_s`` s), so a long download never runs into the group's
    timeout. Success is agreed after every turn: when a process fails, every process raises, the
    failing one its own error and the others a :class:`~cnnlab.errors.DataError` naming it and its
    message, so none waits for a turn that never comes. ``what``: what is loaded, as a message names it
    (translated; by default "the dataset")."""
    what = what or _("the dataset")
    turn = load_turn(group.rank, local_rank() if local_rank_ is None else local_rank_)
    result: Any = None
    for phase in range(3):
        error: list[BaseException] = []
        worker = None
        if phase == turn:  # loading in a thread: this one keeps telling the others it is still busy
            def run(download: bool = phase < 2, error: list[BaseException] = error) -> None:
                nonlocal result
                try:
                    result = load(download)
                except BaseException as e:  # noqa: BLE001 - reported to every process below
                    error.append(e)

            worker = threading.Thread(target=run, name="cnnlab-load-in-turn", daemon=True)
            worker.start()
        while True:
            if worker is not None:
                worker.join(poll_s)
            state = torch.zeros(group.world)  # per process: 0 done (or not its turn), 1 loading, 2 failed
            state[group.rank] = 1.0 if worker is not None and worker.is_alive() else 2.0 if error else 0.0
            state = group.sum(state, _("waiting for process(es) loading {what}").format(what=what))
            if not bool((state == 1).any()):
                break
        failed = [r for r in range(group.world) if int(state[r]) == 2]
        if failed:
            own = error[0] if error else None
            shown = f"{type(own).__name__}: {own}" if own is not None and not isinstance(own, CnnlabError) else str(own)
            message = group.broadcast(shown if own is not None else "",
                                      _("sharing why {what} did not load").format(what=what), src=failed[0])
            if own is not None:
                raise own
            raise DataError(_("process {rank} of {world} could not load {what}, so no process of this torchrun group "
                              "trains: {message}").format(rank=failed[0], world=group.world, what=what,
                                                          message=message))
    return result


@dataclass
class TaskAgreement:
    """What every process agreed before a task (a lesson's arm): stop everything, or skip this one."""

    cancel: bool  # some process was asked to stop
    skip: str  # why the task is skipped (some process cannot run it), or "" to run it


def agree_on_task(group: Any, index: int, names: Sequence[str], *, cancel: bool = False,
                  skip: str = "", what: str = "") -> TaskAgreement:
    """Before task ``index`` of ``names`` (e.g. a lesson's arms, run one after the other by every process):
    all processes must be at the same task; a cancel asked in one (Ctrl-C, torchrun's SIGTERM) stops all;
    a task one of them cannot run (``skip``: why) is skipped by all, with that process's reason.
    Raises :class:`OutOfStepError`, the same message in every process, when they are at different tasks
    (``index`` = ``len(names)``: past the last one), or at tasks of different names (not the same lesson).
    ``what``: what a task is called in a message (translated; by default "arm")."""
    what = what or _("arm")
    # per process: the task's index and a checksum of its name (float64 holds both exactly), cancel, skip
    state = torch.zeros(group.world, 4, dtype=torch.float64)
    name = names[index] if 0 <= index < len(names) else ""
    state[group.rank] = torch.tensor([float(index + 1), float(zlib.crc32(name.encode())), float(cancel),
                                      float(bool(skip))], dtype=torch.float64)
    state = group.sum(state, _("agreeing on the next {what}").format(what=what))
    at = [int(v) - 1 for v in state[:, 0].tolist()]
    if len(set(at)) > 1 or len(set(state[:, 1].tolist())) > 1:
        where = ", ".join((_("process {rank} at {what} {index}") if i < len(names) else
                           _("process {rank} past the last {what}")).format(rank=r, what=what, index=i + 1)
                          for r, i in enumerate(at))
        text = _("the processes of this torchrun group are not at the same {what} ({where}): every process stops. "
                 "Start them all with the same command and settings.") if len(set(at)) > 1 else \
            _("the processes of this torchrun group are not at the same {what} ({where}, not the same {what}s): "
              "every process stops. Start them all with the same command and settings.")
        raise OutOfStepError(text.format(what=what, where=where))
    if bool(state[:, 2].any()):
        return TaskAgreement(True, "")
    skipping = [r for r in range(group.world) if bool(state[r, 3])]
    if not skipping:
        return TaskAgreement(False, "")
    reason = group.broadcast(skip, _("sharing why a process skips this {what}").format(what=what), src=skipping[0])
    return TaskAgreement(False, reason if skipping[0] == group.rank or not reason
                         else _("process {rank} of {world}: {reason}").format(rank=skipping[0], world=group.world,
                                                                            reason=reason))


def from_collective(error: BaseException) -> bool:
    """Whether ``error`` came from a collective of the process group (a lost peer), not from this process
    (e.g. DDP's exchange of gradients inside ``backward``)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error).lower()
    return any(w in text for w in ("gloo", "nccl", "connection closed", "connection reset", "broken pipe",
                                   "timed out", "process group", "c10d"))


def inject_failure_for_tests(model: nn.Module, group: Group) -> None:
    """Tests only: on the rank ``CNNLAB_TEST_FAIL_RANK`` names, the training forward pass after
    ``CNNLAB_TEST_FAIL_STEP`` steps (default 3) raises, so a test can check that the other processes stop
    with a clear message. Installed as a hook before the loop; the loop itself knows nothing of it."""
    wanted = os.environ.get(FAIL_RANK_ENV)
    if group.world == 1 or wanted is None or wanted.strip() != str(group.rank):
        return
    try:
        at = int(os.environ.get(FAIL_STEP_ENV, "3"))
    except ValueError:
        at = 3
    done = [0]

    def fail(module: nn.Module, args: Any) -> None:
        if module.training:
            if done[0] >= at:
                raise RuntimeError(f"failure injected for a test ({FAIL_RANK_ENV}={group.rank}) after step {done[0]}")
            done[0] += 1

    model.register_forward_pre_hook(fail)
