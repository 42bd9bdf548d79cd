"""How many CPU threads a training uses, on a machine it shares.

A classroom laptop is never quiet: the Streamlit server, the browser, a second student's job share
its cores. torch's thread pool waits at the end of every parallel region for its slowest thread; when
another process has taken that thread's core, every step waits for the scheduler. Measured on 2 cores
with one busy process beside the trainer: two threads kept 0.26 of their quiet speed (LeNet on
digits), one thread 0.71. So the trainer:

- lets waiting OpenMP threads spin only briefly before they sleep (``GOMP_SPINCOUNT``, set by
  ``import cnnlab`` before torch loads OpenMP, unless the user set it or ``OMP_WAIT_POLICY``).
  Measured on 2 quiet cores, LeNet at batch 64, model alone: two threads with libgomp's default
  spinning about 11,700 images/s, with a short spin about 13,100, never spinning (PASSIVE) 6,900,
  one thread 8,200; beside a busy process two threads fall to 2,300-3,300 whatever the policy and
  one thread keeps 6,500-7,800, which is why the count matters most;
- chooses its thread count from the cores it may use and how busy the others keep them
  (:func:`choose_threads`), and adapts during the run (:class:`ThreadGovernor`), every couple of
  seconds, from what ``/proc/stat`` says the other processes used;
- honours a forced count (``TrainConfig.threads``, ``--threads``).

Nothing here depends on timing for correctness: a wrong guess only costs speed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable

from .i18n import _, ngettext

log = logging.getLogger(__name__)

ADAPT_EVERY_S = 2.0  # seconds between two looks at the other processes
CONFIRM = 2  # consecutive looks that must agree before the count changes (no flapping)
HEADROOM = 0.3  # cores the others may use before a thread gives its core up


SPIN_COUNT = "1000"  # libgomp's default is 300,000 (or spinning forever with OMP_WAIT_POLICY=ACTIVE)


def short_spin() -> None:
    """OpenMP threads that wait spin briefly, then sleep: fast on a quiet machine, polite on a shared
    one. Must run before torch is first imported to matter; the user's own settings win."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)


THREADS_ENV = "CNNLAB_THREADS"  # a fixed count for every training of a process (a class server, the tests)


def threads_from_env() -> int | None:
    """The count ``CNNLAB_THREADS`` fixes, if any (ignored unless a whole number in 1..1024).

    The automatic count follows the machine's load, and the thread count changes the order of
    floating-point sums: bit-for-bit identical results across runs need a fixed count."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and 1 <= int(value) <= 1024 else None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on every platform
        return max(1, os.cpu_count() or 1)


def choose_threads(cores: int, others_busy: float) -> int:
    """Threads for a training given ``cores`` usable cores and ``others_busy`` cores' worth of work
    done by other processes: one per core the others leave free (a core counts as taken once the
    others use more than :data:`HEADROOM` of it), never fewer than 1 nor more than ``cores``."""
    free = cores - max(0.0, others_busy)
    return max(1, min(cores, int(free + HEADROOM)))


def _busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine (all processes, all CPUs) since boot."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal (no guest: counted in user)
    return busy / (os.sysconf("SC_CLK_TCK") or 100)


@dataclass
class Sample:
    wall: float
    busy: float
    own: float


class CpuMonitor:
    """How many cores' worth of work the *other* processes did since the last look."""

    def __init__(self, cores: int | None = None):
        self.cores = cores or usable_cores()
        self.last = self._sample()

    @staticmethod
    def _sample() -> Sample | None:
        busy = _busy_seconds()
        return None if busy is None else Sample(time.monotonic(), busy, time.process_time())

    def others_busy(self) -> float | None:
        now = self._sample()
        if now is None or self.last is None:
            return None
        wall = now.wall - self.last.wall
        if wall <= 0.05:
            return None
        others = ((now.busy - self.last.busy) - (now.own - self.last.own)) / wall
        self.last = now
        total = os.cpu_count() or self.cores  # /proc/stat counts every CPU of the machine
        return max(0.0, min(float(total), others)) * self.cores / max(total, self.cores)


def _own_running() -> int:
    """Threads of this process that are running or runnable right now (at least this one)."""
    count = 0
    try:
        for task in os.scandir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task.name}/stat", encoding="ascii", errors="replace") as f:
                    state = f.read().rsplit(")", 1)[-1].split()[0]
            except (OSError, IndexError):
                continue
            count += state == "R"
    except OSError:
        return 1
    return max(1, count)


def initial_others() -> float:
    """A first guess before any measurement: the threads of other processes runnable right now
    (``/proc/loadavg``'s fourth field less this process's own), else the 1-minute load average."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            running = int(f.read().split()[3].split("/")[0])
        return float(max(0, running - _own_running()))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


class ThreadGovernor:
    """Sets torch's CPU thread count for one training and gives the previous one back at the end.

    ``forced``: a fixed count (the user's choice, or one per process's share of the cores when several
    processes of a torchrun group train on one machine: ``why`` says so in the note). Otherwise the count follows
    :func:`choose_threads`: first from the load average, then, every :data:`ADAPT_EVERY_S` seconds
    (:meth:`tick`, called by the trainer between steps), from what the other processes used since.
    """

    def __init__(self, forced: int | None = None, device_type: str = "cpu",
                 monitor: Callable[[], float | None] | None = None, cores: int | None = None,
                 clock: Callable[[], float] = time.monotonic, why: str = ""):
        # not at the top: `import cnnlab` sets GOMP_SPINCOUNT before torch loads OpenMP (short_spin)
        import torch

        self.torch = torch
        self.forced = forced
        self.why = why  # why the count is fixed, when not the user's choice (the note says it)
        self.cores = cores or usable_cores()
        self.active = device_type == "cpu" or forced is not None
        self.previous = torch.get_num_threads()
        self.clock = clock
        self._monitor = monitor
        self._next = 0.0
        self._pending: tuple[int, int] | None = None  # (proposed count, looks that agreed)
        self.changes: list[tuple[float, int, float | None]] = []  # (time, threads, others) for the notes

    @property
    def threads(self) -> int:
        return self.torch.get_num_threads()

    def start(self) -> int:
        if not self.active:
            return self.threads
        if self.forced is not None:
            self._set(self.forced, None)
            return self.threads
        if self._monitor is None:
            self._monitor = CpuMonitor(self.cores).others_busy
        # the load average counts this process too when it already works (e.g. the app's server)
        self._set(choose_threads(self.cores, initial_others()), None)
        self._next = self.clock() + ADAPT_EVERY_S
        return self.threads

    def tick(self) -> None:
        """Between two steps: look at the other processes now and then, change the count if two
        looks in a row agree."""
        if not self.active or self.forced is not None or self.clock() < self._next:
            return
        self._next = self.clock() + ADAPT_EVERY_S
        others = self._monitor() if self._monitor is not None else None
        if others is None:
            return
        want = choose_threads(self.cores, others)
        if want == self.threads:
            self._pending = None
            return
        seen = self._pending[1] + 1 if self._pending and self._pending[0] == want else 1
        self._pending = (want, seen)
        if seen >= CONFIRM:
            self._set(want, others)
            self._pending = None

    def _set(self, n: int, others: float | None) -> None:
        n = max(1, int(n))
        if n != self.torch.get_num_threads():
            self.torch.set_num_threads(n)
        self.changes.append((self.clock(), n, others))
        log.debug("training threads: %d (others busy: %s)", n, others)

    def stop(self) -> None:
        if self.active and self.torch.get_num_threads() != self.previous:
            self.torch.set_num_threads(self.previous)

    def note(self) -> str:
        if not self.active:
            return ""
        if self.forced is not None:
            return _("{threads} CPU thread(s), {why}.").format(threads=self.forced, why=self.why or _("as asked"))
        return ngettext("{threads} CPU thread(s): {threads} of the machine's {cores} core, leaving room for the other "
                        "programs running; adapted while training (threads=N fixes the count).",
                        "{threads} CPU thread(s): {threads} of the machine's {cores} cores, leaving room for the other "
                        "programs running; adapted while training (threads=N fixes the count).",
                        self.cores).format(threads=self.threads, cores=self.cores)
