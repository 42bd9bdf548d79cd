"""Background training jobs, usable from the app, a notebook or a script.

One process-wide :class:`JobManager` (see :func:`get_manager`) owns a worker thread per
device: one job trains per device, the others wait in a FIFO queue. On a machine with several
GPUs every GPU has its queue, so as many jobs train at once as there are GPUs (a class on one
server): a job for ``auto`` or ``cuda`` goes to the GPU with the fewest jobs, ``cuda:N`` to that
one. A job's events are kept in order with an absolute index, so a page that refreshes every
second can poll ``job.events_since(i)`` and draw only what is new::

    job = get_manager().submit(TrainConfig(model="lenet", dataset="digits"))
    i = 0
    while not job.done:
        events, i = job.events_since(i)
        ...
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import threading
import time
from dataclasses import asdict, is_dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from . import distributed, i18n
from .device import pick_device
from .runs import recorders, start_weights
from .train import TrainConfig, TrainResult, fit
from .events import XrayEvent
from .i18n import _
from .xray import compact

log = logging.getLogger(__name__)


def job_devices() -> list[str]:
    """The devices background jobs are spread over, one queue (one training at a time) each: every
    CUDA GPU of the machine (``cuda:0``, ``cuda:1``...), else the best other device. In a process of a
    torchrun group, only its own device."""
    if torch.cuda.is_available():
        if distributed.is_active():
            return [str(distributed.pick_device("cuda"))]
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [str(pick_device("auto"))]

JOB_STATES = ("queued", "running", "finished", "cancelled", "diverged", "failed")
FINAL_STATES = frozenset(JOB_STATES[2:])
# step and X-ray events kept per job before only every 10th is (start, epoch, kernels and end events are all kept)
MAX_STEP_EVENTS = 5000
MAX_XRAY_EVENTS = 2000
THINNED = {"step": MAX_STEP_EVENTS, "xray": MAX_XRAY_EVENTS}
MAX_FINISHED_JOBS = 50  # finished jobs listed per process; older ones live on as runs


class Job:
    """One training job. Its attributes are safe to read from any thread."""

    def __init__(self, job_id: int, config: TrainConfig, device: str, manager: "JobManager",
                 model: Any = None, data: Any = None):
        self.id = job_id
        self.config = config
        self.device = device
        self.language = i18n.language()  # its messages are written in the language of whoever submitted it
        self.submitted = time.time()
        self.state = "queued"
        self.message = ""
        self.run_id: str | None = None
        self.result: TrainResult | None = None
        self.error: BaseException | None = None
        self.latest_epoch: dict | None = None
        self.latest_step: dict | None = None
        self._manager = manager
        self._model, self._data = model, data
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._events: list[dict] = []
        self._counts: dict[str, int] = {}  # events of each thinned kind so far

    # ---- events ------------------------------------------------------------------------

    def _record(self, event: Any) -> None:
        # an X-ray sample as its file line (asdict's deep copy would cost more than taking the sample)
        d = compact(event) if isinstance(event, XrayEvent) else asdict(event) if is_dataclass(event) else dict(event)
        kind = d.get("kind")
        with self._lock:
            if kind in THINNED:  # beyond its limit only every 10th is stored; the newest step is still shown
                n = self._counts[kind] = self._counts.get(kind, 0) + 1
                if kind == "step":
                    self.latest_step = d
                if n > THINNED[kind] and n % 10:
                    return
            elif kind == "epoch":
                self.latest_epoch = d
            elif kind == "start":
                self.run_id = d.get("run_id")
            self._events.append(d)

    @property
    def events(self) -> list[dict]:
        """A copy of every recorded event dict, in order."""
        with self._lock:
            return list(self._events)

    def events_since(self, index: int) -> tuple[list[dict], int]:
        """Events from position ``index`` on, and the index to pass next time."""
        with self._lock:
            index = max(0, int(index))
            new = self._events[index:]
            return list(new), index + len(new)

    # ---- state -------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def position(self) -> int | None:
        """1-based place in its device's queue while queued (1 = next), else None."""
        return self._manager._position(self)

    @property
    def progress(self) -> float:
        """Fraction of training steps done, 0..1: 1 once it finished; a cancelled, diverged or failed
        job stays where it stopped (a full bar would say it completed)."""
        if self.done and self.state == "finished":
            return 1.0
        step = self.latest_step
        if not step or not step.get("total_steps"):
            return 0.0
        return min(1.0, step["step"] / step["total_steps"])

    def cancel(self) -> None:
        """Stop a running job within one step, or take a queued job out of its queue."""
        self._cancel.set()
        self._manager._cancel_queued(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is over; True if it is."""
        return self._done.wait(timeout)

    def _finish(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        self._done.set()

    def __repr__(self) -> str:
        return f"Job(id={self.id}, {self.config.model} on {self.config.dataset}, {self.state}, device={self.device})"


class JobManager:
    """Owns the job queues and one worker thread per device.

    ``devices``: the devices jobs are spread over, one queue each (default:
    :func:`job_devices`, every GPU of the machine, else the best other device).
    ``train``: the function a job trains with, called as :func:`cnnlab.train.fit` is, with the
    job's device as ``device=`` (default ``fit``; a test gives one that trains on the CPU whatever
    device the job was given)."""

    def __init__(self, devices: Sequence[str] | None = None,
                 train: Callable[..., TrainResult] | None = None) -> None:
        self.devices = [str(d) for d in devices] if devices is not None else job_devices()
        self._train = train or fit
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._jobs: list[Job] = []
        self._queues: dict[str, collections.deque[Job]] = {}
        self._running: dict[str, Job] = {}
        self._wakeups: dict[str, threading.Condition] = {}
        self._workers: dict[str, threading.Thread] = {}

    def submit(self, config: TrainConfig, *, model: Any = None, data: Any = None) -> Job:
        """Queue a training job (the config is validated now) and return it at once.

        ``model`` is a prepared ``nn.Module``, or a function ``model(cancel_event)`` that builds one
        when the job starts (slow preparation, such as pretraining, then waits in the device's
        queue like any training); the run is saved with its TensorBoard log."""
        config.validate()
        with self._lock:
            device = self._device_for(config)
            job = Job(next(self._ids), config, device, self, model=model, data=data)
            self._jobs.append(job)
            self._queues.setdefault(device, collections.deque()).append(job)
            cond = self._wakeups.setdefault(device, threading.Condition(self._lock))
            worker = self._workers.get(device)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(target=self._work, args=(device,), name=f"cnnlab-jobs-{device}",
                                          daemon=True)
                self._workers[device] = worker
                worker.start()
            cond.notify()
        return job

    def jobs(self) -> list[Job]:
        """Every job submitted in this process, oldest first."""
        with self._lock:
            return list(self._jobs)

    def active(self) -> list[Job]:
        """Running jobs (oldest first, whichever device started first), then queued ones in queue order."""
        with self._lock:
            running = sorted(self._running.values(), key=lambda job: job.id)
            queued = [j for q in self._queues.values() for j in q]
        return running + queued

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs if j.id == job_id), None)

    # ---- internals ---------------------------------------------------------------------

    def _load(self, device: str) -> int:
        return len(self._queues.get(device, ())) + (device in self._running)

    def _device_for(self, config: TrainConfig) -> str:
        """The queue a new job joins (under the lock): ``auto`` and ``cuda`` go to the GPU (or the device)
        with the fewest jobs running or waiting, the first one on a tie; a named device to its own queue."""
        pref = (config.device or "auto").lower()
        if pref in ("auto", "cuda"):
            pool = [d for d in self.devices if pref == "auto" or d.startswith("cuda")]
            if pool:
                return min(pool, key=lambda d: (self._load(d), pool.index(d)))
        if pref in self.devices:
            return pref
        return str(pick_device(pref))  # refuses a device this machine does not have

    def _position(self, job: Job) -> int | None:
        with self._lock:
            q = self._queues.get(job.device, ())
            for i, j in enumerate(q):
                if j is job:
                    return i + 1
        return None

    def _cancel_queued(self, job: Job) -> None:
        with self._lock:
            q = self._queues.get(job.device)
            if q is None or job not in q:
                return
            q.remove(job)
        message = _("cancelled while queued.")
        job._record({"kind": "end", "status": "cancelled", "message": message,
                     "best_val_top1": None, "best_epoch": None, "run_id": None, "elapsed": 0.0, "steps": 0})
        job._finish("cancelled", message)

    def _work(self, device: str) -> None:
        cond = self._wakeups[device]
        while True:
            with self._lock:
                q = self._queues[device]
                while not q:
                    # Idle workers exit after a while; submit() starts a new one when needed.
                    if not cond.wait(timeout=60.0) and not q:
                        self._workers.pop(device, None)
                        return
                job = q.popleft()
                self._running[device] = job
                job.state = "running"
            i18n.set_language(job.language)  # this worker thread runs jobs only: each sets its own
            try:
                state, message = self._run(job)
            finally:
                with self._lock:
                    self._running.pop(device, None)
            job._finish(state, message)  # after leaving `running`: a waiter sees a consistent manager
            self._forget_old()

    def _run(self, job: Job) -> tuple[str, str]:
        try:
            model = job._model
            if callable(model) and not isinstance(model, nn.Module):  # a factory: build it in the queue
                model = model(job._cancel)
            result = self._train(job.config, model=model, data=job._data, listeners=[*recorders(), job._record],
                                 cancel=job._cancel, initial_state=start_weights(job.config), device=job.device)
        except BaseException as e:  # noqa: BLE001 - a job thread must never die silently
            job._model = job._data = None  # a failed job must not pin a dataset or a model
            job.error = e
            msg = str(e) or type(e).__name__
            if not any(ev.get("kind") == "end" for ev in job.events[-1:]):
                job._record({"kind": "end", "status": "failed", "message": msg, "best_val_top1": None,
                             "best_epoch": None, "run_id": job.run_id, "elapsed": 0.0, "steps": 0})
            log.warning("training job %s failed: %s", job.id, msg)
            return "failed", msg
        # Keep the numbers, not the weights (they are in the run's best.pt): a finished job
        # must not hold a model in memory, or on the GPU, for the rest of the process.
        job.result = dataclasses.replace(result, model=None)
        job.run_id = result.run_id
        job._model = job._data = None
        return result.status, result.message

    def _forget_old(self, keep: int = MAX_FINISHED_JOBS) -> None:
        """Drop the oldest finished jobs beyond ``keep`` (their runs stay on disk)."""
        with self._lock:
            finished = [j for j in self._jobs if j.done]
            for j in finished[: max(0, len(finished) - keep)]:
                self._jobs.remove(j)


_manager: JobManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> JobManager:
    """The process-wide job manager (created on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = JobManager()
        return _manager
