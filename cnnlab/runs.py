"""The run registry: one folder per training run under :func:`cnnlab.paths.runs_dir`.

A run folder (id like ``20261123-142501-lenet-digits-ab12``) holds:

- ``config.json``: the :class:`~cnnlab.train.TrainConfig` as a dict;
- ``meta.json``: model name and creation arguments, dataset, class names, input shape,
  mean/std, parameter counts, device, creation time, and ``world_size``: how many processes trained
  the model together (torchrun; only rank 0 writes the folder);
- ``metrics.jsonl``: one JSON line per epoch, appended, flushed and fsynced;
- ``best.pt``: the best-validation ``state_dict``, written atomically;
- ``xray.jsonl`` and ``kernels.jsonl``: the training X-ray's samples and the first convolution's
  kernels at each epoch (:mod:`cnnlab.xray`; read back with :func:`run_xray`);
- ``status.json``: running/finished/cancelled/diverged/failed, message, pid (with the process's
  start time and the boot id, so a recycled pid is not mistaken for the trainer), hostname and
  timestamps, written atomically.

A run whose status says "running" but whose process is gone is reported as "interrupted";
its metrics and best checkpoint so far stay usable.

Every file is untrusted when read back: each is checked against a small schema (an object
expected, numbers are numbers, a known status word...). What does not fit is left out and noted
in :attr:`Run.problems` (shown as :attr:`Run.damage`), so one damaged folder never hides the
other runs, and a damaged run is still listed and can be deleted. A symbolic link in ``runs/``
is never followed: it is listed as damaged and deleting it removes the link only. Run ids are
matched literally (a unique prefix is enough); no character is a wildcard.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import socket
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import nn

from . import models, xray
from .errors import CheckpointMismatchError, CnnlabError, RunError, RunNotFoundError, UnknownModelError
from .files import atomic_file, atomic_write_text, unique_folder
from .i18n import N_, _, fmt
from .paths import runs_dir
from .safeload import load_state_dict_file
from .tensorboard_log import TensorBoardRecorder
from .events import KernelsEvent, XrayEvent
from .train import EndEvent, EpochEvent, Prepared, Recorder, TrainConfig, load_data
from .config import wrong_kind

STATUSES = ("running", "finished", "cancelled", "diverged", "failed")
FILES = ("config.json", "meta.json", "metrics.jsonl", "status.json")
MAX_JSON_BYTES = 4 * 2**20  # meta.json with ImageNet's 1000 class names is ~30 KB
MAX_METRICS_BYTES = 32 * 2**20  # ~300 bytes an epoch
MAX_ID_CHARS = 200
STALE_TMP_S = 3600.0  # a temporary file this old is a leftover whoever wrote it


# --------------------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.device):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    return repr(o)


def _shown(value: Any, limit: int = 60) -> str:
    """``repr`` for a message: one line, escaped, bounded."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_bytes(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file in a run folder, or None if it does not exist.

    Never follows a symbolic link, never blocks on a pipe, never reads more than ``limit``
    bytes; anything else is a :class:`_Damaged` saying what is wrong with the file.
    """
    name = path.name
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise _Damaged(_("{file} is a symbolic link (cnnlab does not follow links in a run folder)").format(
                file=name)) from None
        raise _Damaged(_("{file} cannot be read ({reason})").format(file=name, reason=e.strerror or e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Damaged(_("{file} is not a regular file").format(file=name))
        if st.st_size > limit:
            raise _Damaged(_("{file} is {size:.1f} MB, more than the {limit:.0f} MB expected").format(
                file=name, size=st.st_size / 2**20, limit=limit / 2**20))
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)[:limit]
    except OSError as e:
        raise _Damaged(_("{file} cannot be read ({reason})").format(file=name, reason=e.strerror or e)) from None
    finally:
        os.close(fd)


class _Damaged(Exception):
    """Internal: why a whole file of a run folder is unusable (the message names the file)."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    # A zombie (killed, not yet reaped by its parent) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _proc_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot: field 22 of /proc/<pid>/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _process_identity() -> dict[str, Any]:
    """What identifies this process beyond its pid (a pid is reused after the process ends)."""
    return {"pid": os.getpid(), "pid_start": _proc_start(os.getpid()), "boot_id": _boot_id()}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")[:40] or "x"


# --------------------------------------------------------------------------------------
# What each file of a run folder may hold
# --------------------------------------------------------------------------------------


def _is_text(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        v.encode("utf-8")  # a lone surrogate (JSON "\\ud800") cannot be printed
    except UnicodeEncodeError:
        return False
    return True


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return _is_int(v) or isinstance(v, float)


def _is_finite(v: Any) -> bool:
    return _is_num(v) and math.isfinite(v)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _list_of(check: Callable[[Any], bool], n: int | None = None) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and (n is None or len(v) == n) and all(check(x) for x in v)


# each rule with what a message says the value should be (translated where the message is made)
_TEXT = (_is_text, N_("text"))
_INT = (_is_int, N_("a whole number"))
_NUM_OR_NULL = (_opt(_is_num), N_("a number or null"))
_TEXT_OR_NULL = (_opt(_is_text), N_("text or null"))
_NUMBERS = (_list_of(_is_finite), N_("a list of numbers"))

Schema = Mapping[str, tuple[Callable[[Any], bool], str]]

STATUS_SCHEMA: Schema = {
    "status": (lambda v: v in STATUSES, N_("one of running, finished, cancelled, diverged, failed")),
    "message": _TEXT, "hostname": _TEXT, "created": _TEXT, "updated": _TEXT, "finished": _TEXT,
    "pid": _INT, "pid_start": (_opt(_is_int), N_("a whole number or null")), "boot_id": _TEXT_OR_NULL,
    "best_val_top1": (_opt(_is_finite), N_("a number or null")),
    "best_epoch": (_opt(_is_int), N_("a whole number or null")),
    "steps": _INT,
}
META_SCHEMA: Schema = {
    "run_id": _TEXT, "model": (lambda v: _is_text(v) and bool(v.strip()), N_("a model name")),
    "model_kwargs": (lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), N_("an object")),
    "prepared_model": (lambda v: isinstance(v, bool), N_("true or false")),
    "dataset": _TEXT, "dataset_name": _TEXT, "display_name": _TEXT,
    "classes": (_list_of(_is_text), N_("a list of class names")),
    "input_shape": (_list_of(lambda x: _is_int(x) and 0 < x <= 100_000, 3), N_("three positive whole numbers")),
    "data_shape": (_list_of(lambda x: _is_int(x) and 0 < x <= 100_000, 3), N_("three positive whole numbers")),
    "mean": _NUMBERS, "std": _NUMBERS, "model_mean": _NUMBERS, "model_std": _NUMBERS,
    "num_params": _INT, "trainable_params": _INT, "train_images": _INT, "val_images": _INT,
    "device": _TEXT, "torch": _TEXT, "notes": (_list_of(_is_text), N_("a list of notes")),
    "world_size": (lambda v: _is_int(v) and v >= 1, N_("a whole number of processes")), "backend": _TEXT,
    "created": _TEXT, "created_ts": (_is_finite, N_("a number (seconds since 1970)")),
}
METRICS_SCHEMA: Schema = {
    "epoch": (lambda v: _is_int(v) and v >= 0, N_("a whole number")), "step": _INT,
    **{k: _NUM_OR_NULL for k in ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5",
                                  "lr", "images_per_sec", "elapsed", "eta", "train_seconds")},
    "is_best": (lambda v: isinstance(v, bool), N_("true or false")),
    "train_images": (lambda v: _is_int(v) and v >= 0, N_("a whole number")),
}


class Problem(NamedTuple):
    """Something wrong in one file of a run folder (``key`` None: the whole file)."""

    file: str
    key: str | None
    text: str


def _check(obj: Any, schema: Schema, file: str, problems: list[Problem], line: int | None = None) -> dict:
    """The entries of ``obj`` that fit ``schema`` (unknown keys kept); a Problem for each that does not
    (``line``: the line of a JSON-lines file ``obj`` is, which the problems name)."""
    if not isinstance(obj, dict):
        kind = "null" if obj is None else type(obj).__name__
        text = _("{file} holds {kind} {value}, not an object") if line is None else \
            _("{file} line {line} holds {kind} {value}, not an object")
        problems.append(Problem(file, None, text.format(file=file, line=line, kind=kind, value=_shown(obj, 40))))
        return {}
    clean = {}
    for key, value in obj.items():
        rule = schema.get(key)
        if rule is not None and not rule[0](value):
            text = _("{file}: {key} should be {wanted}, got {value}") if line is None else \
                _("{key} should be {wanted}, got {value} (line {line})")
            problems.append(Problem(file, key, text.format(file=file, key=key, wanted=_(rule[1]),
                                                           value=_shown(value, 40), line=line)))
            continue
        clean[key] = value
    return clean


def _check_config(obj: dict, problems: list[Problem]) -> dict:
    """``config.json``: each setting has the type of its :class:`~cnnlab.train.TrainConfig` field."""
    clean = {}
    for key, value in obj.items():
        wrong = wrong_kind(key, value)  # unknown keys: kept, as TrainConfig.from_dict ignores them
        if wrong is not None:
            text = _("config.json: {name!r} should be {wanted}, got {value}").format(
                name=key, wanted=wrong[0], value=wrong[1])
            problems.append(Problem("config.json", key, text.rstrip(".")))
            continue
        clean[key] = value
    return clean


def _read_json(path: Path, schema: Schema | None, problems: list[Problem]) -> dict:
    """The file's object, keeping what fits ``schema`` (None: config.json, checked against
    :class:`~cnnlab.train.TrainConfig`); every problem is noted, none raised."""
    name = path.name
    try:
        data = _read_bytes(path, MAX_JSON_BYTES)
    except _Damaged as e:
        problems.append(Problem(name, None, str(e)))
        return {}
    if data is None:
        problems.append(Problem(name, None, _("{file} is missing").format(file=name)))
        return {}
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        problems.append(Problem(name, None, _("{file} is not UTF-8 text").format(file=name)))
        return {}
    except (json.JSONDecodeError, RecursionError) as e:
        reason = e.msg if hasattr(e, "msg") else _("too deep")
        text = _("{file} is empty") if not data.strip() else _("{file} is not valid JSON ({reason})")
        problems.append(Problem(name, None, text.format(file=name, reason=reason)))
        return {}
    if schema is None:
        return _check_config(_check(obj, {}, name, problems), problems)
    return _check(obj, schema, name, problems)


def _read_metrics(path: Path, problems: list[Problem]) -> list[dict]:
    """Every usable epoch line; a torn last line (process killed mid-write) is ignored silently."""
    name = path.name
    try:
        data = _read_bytes(path, MAX_METRICS_BYTES)
    except _Damaged as e:
        problems.append(Problem(name, None, str(e)))
        return []
    if data is None:
        return []
    rows: list[dict] = []
    bad: list[str] = []
    lines = data.split(b"\n")
    torn_last = not data.endswith(b"\n")
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append(_("line {line} is not UTF-8 text").format(line=i))
            continue
        except (json.JSONDecodeError, RecursionError):
            if not (torn_last and i == len(lines)):
                bad.append(_("line {line} is not valid JSON").format(line=i))
            continue
        row_problems: list[Problem] = []
        row = _check(obj, METRICS_SCHEMA, name, row_problems, line=i)
        if row_problems and not row:
            bad.append(_("line {line} is {kind} {value}, not an epoch record").format(
                line=i, kind=type(obj).__name__, value=_shown(obj, 30)))
            continue
        if "epoch" not in row:
            bad.append(_("line {line} has no epoch number").format(line=i))
            continue
        bad.extend(p.text for p in row_problems)
        rows.append(row)
    if bad:
        text = _("{file}: {problems} and {more} more") if len(bad) > 3 else _("{file}: {problems}")
        problems.append(Problem(name, None, text.format(file=name, problems="; ".join(bad[:3]), more=len(bad) - 3)))
    return rows
# --------------------------------------------------------------------------------------
# Writing a run
# --------------------------------------------------------------------------------------


class RunWriter:
    """The trainer's handle on a run folder while it trains."""

    def __init__(self, run_id: str, path: Path, created: str):
        self.run_id = run_id
        self.path = path
        self.created = created

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's metrics as a JSON line, flushed and fsynced."""
        self.append_line("metrics.jsonl", row, sync=True)

    def append_line(self, name: str, row: Mapping[str, Any], sync: bool = False) -> None:
        """Append ``row`` as one JSON line to the run's file ``name`` (fsynced if ``sync``: the X-ray's
        frequent lines are only flushed; losing the last ones in a crash loses little)."""
        line = json.dumps(dict(row), default=_json_default) + "\n"
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            if sync:
                os.fsync(f.fileno())

    def save_best(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Write ``best.pt`` atomically: a reader (the app) sees the previous best or this one."""
        cpu_state = {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
        with atomic_file(self.path / "best.pt") as f:
            torch.save(cpu_state, f)

    def set_status(self, status: str, message: str = "", **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        record = {
            "status": status, "message": message, **_process_identity(),
            "hostname": socket.gethostname(), "created": self.created, "updated": _now(),
        }
        if status != "running":
            record["finished"] = record["updated"]
        record.update(extra)
        _atomic_write_json(self.path / "status.json", record)


def create_run(config: Mapping[str, Any], meta: Mapping[str, Any]) -> RunWriter:
    """Create a run folder with ``config.json``, ``meta.json`` and a "running" status."""
    model = str(meta.get("model") or config.get("model") or "model")
    dataset = str(meta.get("dataset") or config.get("dataset") or "data")
    try:  # an id like 20261123-142501-lenet-digits-ab12
        path = unique_folder(runs_dir(), f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(model)}-{_slug(dataset)}")
    except FileExistsError:  # pragma: no cover - 100 collisions of a 16-bit suffix within one second
        raise RunError(_("could not create a new run folder in {folder}").format(folder=runs_dir())) from None
    run_id = path.name
    created = _now()
    meta = {**meta, "run_id": run_id, "created": created, "created_ts": time.time()}
    writer = RunWriter(run_id, path, created)
    writer.set_status("running", "training")  # first: a listing never sees a new run as "interrupted"
    _atomic_write_json(path / "config.json", dict(config))
    _atomic_write_json(path / "meta.json", meta)
    (path / "metrics.jsonl").touch()
    return writer


def run_meta(setup: Prepared) -> dict[str, Any]:
    """What a run folder's ``meta.json`` records about a prepared training."""
    info, model, group = setup.bundle.info, setup.model, setup.group
    return {
        "model": setup.config.model, "model_kwargs": setup.model_kwargs, "prepared_model": setup.model_given,
        "dataset": setup.config.dataset, "dataset_name": info.name,
        "display_name": getattr(info, "display_name", info.name), "classes": setup.classes,
        "input_shape": list(setup.model_shape), "data_shape": list(setup.train_x.shape[1:]),
        "mean": list(info.mean), "std": list(info.std),
        # what the model sees: the statistics in its own channels, for pages that prepare images
        "model_mean": list(setup.val_pipe.model_mean), "model_std": list(setup.val_pipe.model_std),
        "num_params": models.count_params(model), "trainable_params": models.count_params(model, trainable_only=True),
        "device": str(setup.device), "torch": torch.__version__, "notes": setup.notes,
        "train_images": len(setup.train_y), "val_images": len(setup.val_y),
        # processes that trained the model together (torchrun), each on its share of every batch
        "world_size": group.world if group is not None else 1,
        **({"backend": group.backend} if group is not None else {}),
    }


class RunRecorder(Recorder):
    """The trainer's listener that writes the run folder: ``config.json``, ``meta.json`` and a
    "running" status when training begins, one metrics line per epoch, ``best.pt`` at each new
    best, and the final status."""

    def __init__(self) -> None:
        self.writer: RunWriter | None = None

    def begin(self, setup: Prepared) -> None:
        self.writer = create_run(asdict(setup.config), run_meta(setup))
        setup.run_id, setup.run_dir = self.writer.run_id, self.writer.path

    def __call__(self, event: Any) -> None:
        if self.writer is None:
            return
        if isinstance(event, EpochEvent):
            self.writer.append_metrics(asdict(event))
        elif isinstance(event, XrayEvent):
            self.writer.append_line("xray.jsonl", xray.compact(event))
        elif isinstance(event, KernelsEvent):
            self.writer.append_line("kernels.jsonl", asdict(event))

    def save_best(self, state: Mapping[str, torch.Tensor], epoch: int | None) -> None:
        if self.writer is not None:
            self.writer.save_best(state)

    def finish(self, setup: Prepared, end: EndEvent) -> None:
        if self.writer is not None:
            self.writer.set_status(end.status, end.message, best_val_top1=end.best_val_top1,
                                   best_epoch=end.best_epoch, steps=end.steps)


def recorders(tensorboard: bool = True) -> list[Recorder]:
    """The listeners that save a training as a run: the run folder, and its TensorBoard log."""
    return [RunRecorder(), *([TensorBoardRecorder()] if tensorboard else [])]


# --------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    """A run as stored on disk.

    ``config``, ``meta``, ``metrics`` and ``status_record`` hold only what fits each file's schema;
    ``problems`` says what was left out and why (see :attr:`damage`).
    """

    run_id: str
    path: Path
    config: dict
    meta: dict
    metrics: list[dict]
    status_record: dict = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    is_link: bool = False  # a symbolic link in runs/: never followed

    @property
    def damage(self) -> str:
        """What is wrong with the run's files, in one line ("" when nothing is)."""
        return "; ".join(p.text for p in self.problems)

    @property
    def damaged(self) -> bool:
        return bool(self.problems)

    def damaged_in(self, file: str, *keys: str) -> list[Problem]:
        """The problems of ``file`` that concern the whole file or one of ``keys`` (any key if none given)."""
        return [p for p in self.problems if p.file == file and (p.key is None or not keys or p.key in keys)]

    @property
    def status(self) -> str:
        """The recorded status; "interrupted" for a "running" run whose process is gone;
        "damaged" when status.json is missing, unreadable or holds an unknown status."""
        if self.is_link or self.damaged_in("status.json", "status"):
            return "damaged"
        rec = self.status_record
        status = rec.get("status")
        if status is None:
            return "damaged"
        if status == "running" and not _writer_alive(rec):
            return "interrupted"
        return status

    @property
    def message(self) -> str:
        status = self.status
        if status == "damaged":
            return self.damage
        if status == "interrupted":
            return _("the training process stopped without finishing (killed or crashed); "
                     "metrics and the best checkpoint up to then are kept.")
        return str(self.status_record.get("message", ""))

    @property
    def has_checkpoint(self) -> bool:
        return not self.is_link and (self.path / "best.pt").is_file() and not (self.path / "best.pt").is_symlink()

    @property
    def best_val_top1(self) -> float | None:
        vals = [m["val_top1"] for m in self.metrics if _is_finite(m.get("val_top1"))]
        return max(vals) if vals else self.status_record.get("best_val_top1")

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))


def _writer_alive(rec: Mapping[str, Any]) -> bool:
    """Whether the process that wrote a "running" status is still that process.

    On another host nothing can be checked: it is taken as alive. Here the pid must be alive
    and, where /proc tells, have the recorded start time and boot id (a pid is reused).
    """
    host = rec.get("hostname")
    if host is not None and host != socket.gethostname():
        return True
    pid = rec.get("pid")
    if not _is_int(pid) or not _pid_alive(pid):
        return False
    boot = _boot_id()
    if boot is not None and rec.get("boot_id") != boot:
        return False
    start = _proc_start(pid)
    if start is not None and rec.get("pid_start") != start:
        return False
    return True


def _check_id(run_id: Any) -> str:
    if isinstance(run_id, str) and not run_id.strip():
        raise RunNotFoundError(_("the run id is empty: give the id of a run (or a unique beginning of it). "
                                 "`python -m cnnlab runs` lists them."))
    if not isinstance(run_id, str):
        raise RunNotFoundError(_not_an_id(run_id))
    if len(run_id) > MAX_ID_CHARS:
        raise RunNotFoundError(
            _("a run id of {count} characters is not a run id (ids are like 20261123-142501-lenet-digits-ab12). "
              "`python -m cnnlab runs` lists them.").format(count=len(run_id))
        )
    if "/" in run_id or "\\" in run_id or run_id.startswith(".") or not run_id.isprintable():
        raise RunNotFoundError(_not_an_id(run_id))
    return run_id


def _not_an_id(run_id: Any) -> str:
    return _("{value} is not a run id. `python -m cnnlab runs` lists them.").format(value=_shown(run_id))


def _entries(root: Path) -> list[os.DirEntry]:
    """The entries of ``runs/`` that may be runs: folders and symbolic links, never hidden ones."""
    try:
        with os.scandir(root) as it:
            return [e for e in it if not e.name.startswith(".") and (e.is_symlink() or e.is_dir(follow_symlinks=False))]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RunError(_("cannot list the runs folder {folder} ({reason}).").format(
            folder=root, reason=e.strerror or e)) from None


def _run_path(run_id: str) -> Path:
    """The path of a run by id or unique prefix, compared literally (no character is a wildcard)."""
    root = runs_dir()
    run_id = _check_id(run_id)
    path = root / run_id
    if os.path.lexists(path):
        return path
    matches = sorted(e.name for e in _entries(root) if e.name.startswith(run_id))
    if len(matches) == 1:
        return root / matches[0]
    if len(matches) > 1:
        raise RunNotFoundError(_("{run!r} matches {count} runs ({ids}); give more of the id.").format(
            run=run_id, count=len(matches), ids=", ".join(matches[:4]) + (", ..." if len(matches) > 4 else "")))
    raise RunNotFoundError(_("no run {run!r} in {folder}. `python -m cnnlab runs` lists them.").format(
        run=run_id, folder=root))


def _load(path: Path) -> Run:
    """Read a run folder; whatever is wrong becomes a :class:`Problem`, never an exception."""
    if path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        text = _("{name} is a symbolic link (to {target}), not a run folder: cnnlab does not follow it; deleting "
                 "it removes the link only").format(name=path.name, target=_shown(target, 80))
        return Run(path.name, path, {}, {}, [], {}, [Problem("", None, text)], is_link=True)
    if not path.is_dir():
        raise RunNotFoundError(_("{path} is not a run folder. `python -m cnnlab runs` lists the runs.").format(
            path=path))
    problems: list[Problem] = []
    run = Run(
        run_id=path.name, path=path,
        config=_read_json(path / "config.json", None, problems),
        meta=_read_json(path / "meta.json", META_SCHEMA, problems),
        metrics=_read_metrics(path / "metrics.jsonl", problems),
        status_record=_read_json(path / "status.json", STATUS_SCHEMA, problems),
        problems=problems,
    )
    if "status" not in run.status_record and not run.damaged_in("status.json"):
        problems.append(Problem("status.json", "status", _("status.json has no status")))
    bp = path / "best.pt"
    if bp.is_symlink():
        problems.append(Problem("best.pt", None, _("{file} is a symbolic link (cnnlab does not follow links in a run "
                                                   "folder)").format(file="best.pt")))
    if run.status != "running":
        _remove_stale_temp_files(path, writer_gone=run.status_record.get("status") in STATUSES)
    return run


def _remove_stale_temp_files(path: Path, writer_gone: bool) -> None:
    """Remove the temporary files a killed writer left (``.best.pt.*.tmp``, ``.status.json.*.tmp``...).

    Called for runs not training: when the writer's status is readable and it is gone every
    leftover goes; otherwise (status damaged) only those older than :data:`STALE_TMP_S`.
    """
    prefixes = tuple(f".{n}." for n in ("best.pt", *FILES))
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(path) as it:
        for e in it:
            if not (e.name.startswith(prefixes) and e.name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError):
                if writer_gone or now - e.stat(follow_symlinks=False).st_mtime > STALE_TMP_S:
                    os.unlink(e.path)  # a link is unlinked itself, never followed


def load_run(run_id: str) -> Run:
    """A run by id (or a unique prefix of one). A damaged run loads, with its :attr:`Run.damage`."""
    return _load(_run_path(run_id))


def run_xray(run_id: str) -> xray.XrayRecord:
    """The X-ray of a run (its samples, kernel snapshots and diagnoses), each file line checked."""
    run = load_run(run_id)
    if run.is_link:
        raise RunError(_("run {run} is a symbolic link: it is never followed.").format(run=run.run_id))
    return xray.read_xray(run.path)


def _being_created(path: Path) -> bool:
    """A folder :func:`create_run` is filling right now (its files are written one after the other)."""
    try:
        young = time.time() - path.stat().st_mtime < 60
    except OSError:
        return False
    return young and not (path / "meta.json").exists()


def list_runs() -> list[Run]:
    """Every run, newest first. A damaged run is listed too, with its :attr:`Run.damage`."""
    root = runs_dir()
    runs = []
    for entry in _entries(root):
        path = root / entry.name
        if not entry.name.isprintable():
            continue  # a name that cannot be printed or typed back is not one of ours
        if not entry.is_symlink() and _being_created(path):
            continue
        try:
            runs.append(_load(path))
        except RunNotFoundError:  # removed meanwhile
            continue
    runs.sort(key=lambda r: (float(r.meta.get("created_ts") or 0.0), r.created, r.run_id), reverse=True)
    return runs


def delete_run(run_id: str) -> str:
    """Remove a run folder and return its id. A run still training in a live process is refused.

    A symbolic link in ``runs/`` is removed itself; what it points to is never touched.
    """
    path = _run_path(run_id)
    if path.is_symlink():
        try:
            path.unlink()
        except OSError as e:
            raise RunError(_("cannot remove the link {path} ({reason}).").format(
                path=path, reason=e.strerror or e)) from None
        return path.name
    run = _load(path)
    if run.status == "running":
        host = run.status_record.get("hostname")
        text = _("run {run} is still training on {host}; cancel it before deleting it.") \
            if host and host != socket.gethostname() else \
            _("run {run} is still training (process {pid}); cancel it before deleting it.")
        raise RunError(text.format(run=run.run_id, host=host, pid=run.status_record.get("pid")))
    try:
        shutil.rmtree(path)
    except OSError as e:
        raise RunError(
            _("could not delete all of {path} ({reason}); what is left can be removed by hand.").format(
                path=path, reason=e.strerror or e)
        ) from None
    return run.run_id


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | None = None) -> None:
    """``model.load_state_dict(state)`` with a clear message when the layers do not fit (``source``: what
    the message calls the weights, translated; by default "checkpoint")."""
    source = source or _("checkpoint")
    own = model.state_dict()
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointMismatchError(
                _("the {source} does not fit this model: layer {layer!r} has shape {shape} in the checkpoint but "
                  "{own} in the model (another architecture, class count or input size).").format(
                    source=source, layer=key, shape=tuple(value.shape), own=tuple(own[key].shape))
            )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(_("missing from the checkpoint: {layers}").format(
                layers=", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")))
        if unexpected:
            parts.append(_("not in the model: {layers}").format(
                layers=", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")))
        raise CheckpointMismatchError(
            _("the {source} does not fit this model (another architecture?): {problems}").format(
                source=source, problems="; ".join(parts))
        )
    model.load_state_dict(state)


def load_checkpoint(run_id: str, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The ``state_dict`` in a run's ``best.pt``, through :func:`cnnlab.safeload.load_state_dict_file`
    (``weights_only=True``; anything else is refused with one line)."""

    run = load_run(run_id)
    if run.is_link:
        raise RunError(_damage(run))
    path = run.path / "best.pt"
    if path.is_symlink():
        raise RunError(_("the checkpoint of run {run} ({path}) is a symbolic link; cnnlab does not follow links in a "
                         "run folder. Delete the run (python -m cnnlab runs --delete {run}).").format(
            run=run.run_id, path=path))
    if not os.path.lexists(path):
        raise RunError(
            _("run {run} has no checkpoint yet (best.pt is written after the first validation, or when a run is "
              "cancelled).").format(run=run.run_id)
        )
    return load_state_dict_file(
        path, what=_("the checkpoint of run {run}").format(run=run.run_id), map_location=map_location,
        remedy=_("Delete the run (python -m cnnlab runs --delete {run}) or train it again.").format(run=run.run_id),
    )


def _damage(run: Run) -> str:
    """A damaged run's problems as one message."""
    return _("{problems}.").format(problems=run.damage)


def _remedy(run: Run) -> str:
    return _("Delete it (python -m cnnlab runs --delete {run}) or train it again.").format(run=run.run_id)


def start_weights(config: TrainConfig) -> dict[str, torch.Tensor] | None:
    """The weights ``config.init_from`` names (its run's ``best.pt``), for ``fit(initial_state=...)``;
    None when the training starts fresh."""
    return load_checkpoint(config.init_from) if config.init_from else None


def build_model(meta: Mapping[str, Any]) -> nn.Module:
    """The (untrained) model a run's ``meta.json`` describes, through the model registry."""
    kwargs = dict(meta.get("model_kwargs") or {})
    if "input_size" in kwargs and kwargs["input_size"] is not None:
        kwargs["input_size"] = tuple(kwargs["input_size"]) if isinstance(kwargs["input_size"], list) \
            else kwargs["input_size"]
    try:
        model = models.create(meta["model"], **kwargs)
    except UnknownModelError as e:
        raise RunError(_("meta.json names the model {model!r}, which cnnlab does not know ({error})").format(
            model=meta["model"], error=e)) from None
    except (CnnlabError, TypeError, ValueError, KeyError) as e:  # creation arguments of the wrong name or type
        why = str(e) if isinstance(e, CnnlabError) else f"{type(e).__name__}: {e}"
        raise RunError(_("meta.json's model_kwargs {kwargs} do not build a {model} ({error})").format(
            kwargs=_shown(kwargs, 80), model=meta["model"], error=_shown(why, 160)[1:-1])) from None
    shape = meta.get("input_shape")
    if shape:
        model.cnnlab_input_shape = tuple(int(v) for v in shape)  # type: ignore[attr-defined]
    mean, std = meta.get("model_mean"), meta.get("model_std")
    if mean and std:  # the statistics the model was trained with, in its own channels
        model.cnnlab_norm = (tuple(mean), tuple(std))  # type: ignore[attr-defined]
    return model


_MODEL_KEYS = ("model", "model_kwargs", "input_shape")


def load_model(run_id: str, device: str | torch.device = "cpu") -> nn.Module:
    """The run's model with its best weights, in eval mode, on ``device``."""
    run = load_run(run_id)
    if run.is_link:
        raise RunError(_damage(run))
    bad = run.damaged_in("meta.json", *_MODEL_KEYS)
    if bad:
        raise RunError(_not_rebuilt(run, "; ".join(p.text for p in bad)))
    if "model" not in run.meta:
        raise RunError(_("run {run} has no model name in meta.json; it cannot be rebuilt.").format(run=run.run_id))
    try:
        model = build_model(run.meta)
    except RunError as e:
        raise RunError(_not_rebuilt(run, str(e))) from None
    state = load_checkpoint(run.run_id, map_location=device)
    load_state_into(model, state, source=_("checkpoint of run {run}").format(run=run.run_id))
    model.cnnlab_run_id = run.run_id  # type: ignore[attr-defined]
    return model.to(device).eval()


def _not_rebuilt(run: Run, problems: str) -> str:
    return _("run {run} cannot be rebuilt: {problems}. {remedy}").format(
        run=run.run_id, problems=problems, remedy=_remedy(run))


def run_config(run: Run):
    """The run's :class:`~cnnlab.train.TrainConfig`, refusing a damaged or incomplete ``config.json``
    (a default in place of a lost setting would evaluate on another split, or another dataset)."""
    if run.is_link:
        raise RunError(_damage(run))
    bad = run.damaged_in("config.json")
    if bad:
        raise RunError(_("run {run} cannot be evaluated: {problems}. {remedy}").format(
            run=run.run_id, problems="; ".join(p.text for p in bad), remedy=_remedy(run)))
    if "dataset" not in run.config:
        raise RunError(_("run {run}'s config.json has no dataset, so the data it was trained on is unknown and it "
                         "cannot be evaluated. {remedy}").format(run=run.run_id, remedy=_remedy(run)))
    return TrainConfig.from_dict(_upgrade_config(run.config))


def _upgrade_config(config: dict) -> dict:
    """Configs of transfer stand-in runs saved before their data was an ordinary 'shapes' dataset
    option set (data_options {"standin": "target", ...}) in today's terms."""
    opts = config.get("data_options")
    if not isinstance(opts, dict) or opts.get("standin") != "target":
        return config
    given = opts.get("standin_config") if isinstance(opts.get("standin_config"), dict) else {}
    labels = given.get("target_labels", 20)
    return {**config, "tag": "transfer-standin", "subset": 3 * labels if isinstance(labels, int) else None,
            "data_options": {"classes": ["ring", "heart", "crescent"], "n_train": 4000,
                             "n_val": given.get("target_val", 600)}}


def load_run_data(run: Run):
    """The dataset a run was trained on, split the same way, rebuilt from its config alone (the
    one way every page, command and demo gets a run's data). Never downloads.

    Raises a :class:`~cnnlab.errors.DataError` when the data is no longer on disk.
    """
    return load_data(run_config(run), download=False)


# --------------------------------------------------------------------------------------
# What a listing shows
# --------------------------------------------------------------------------------------


def _stamp(text: Any) -> float | None:
    try:
        return time.mktime(time.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z")) if text else None
    except (TypeError, ValueError, OverflowError):
        return None


def run_duration(run: Run, now: float | None = None) -> float | None:
    """Seconds from creation to the end (to ``now`` while running); sub-second precision from the
    metrics for short runs. None when the files do not say."""
    rec = run.status_record
    start = run.meta.get("created_ts") if _is_finite(run.meta.get("created_ts")) else _stamp(rec.get("created") or run.created)
    if start is None:
        return None
    if run.status == "running":
        return max(0.0, (now or time.time()) - float(start))
    end = _stamp(rec.get("finished"))
    wall = end - float(start) if end is not None else None
    elapsed = run.metrics[-1].get("elapsed") if run.metrics else None
    if _is_finite(elapsed) and (wall is None or wall < 10):
        return float(elapsed)
    return wall if wall is None or wall >= 0 else None


def format_duration(seconds: float | None) -> str:
    """"4.2 s", "52 s", "3 min 07 s", "1 h 02 min"; "—" when unknown."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return _("{seconds} s").format(seconds=fmt(seconds, ".1f"))
    s = int(round(seconds))
    if s >= 3600:
        return _("{hours} h {minutes} min").format(hours=s // 3600, minutes=f"{s % 3600 // 60:02d}")
    if s >= 60:
        return _("{minutes} min {seconds} s").format(minutes=s // 60, seconds=f"{s % 60:02d}")
    return _("{seconds} s").format(seconds=s)


def runs_table(found: list[Run] | None = None) -> list[dict[str, Any]]:
    """One row per run for listings: id, status, model, dataset, best val top-1, epochs done and
    planned, duration, creation time (seconds since the epoch), problem."""
    return [{
        "run": r.run_id, "status": r.status,
        "model": r.meta.get("model") or r.config.get("model"),
        "dataset": r.meta.get("dataset") or r.config.get("dataset"),
        "best_val_top1": r.best_val_top1, "epochs_done": len(r.metrics), "epochs_planned": r.config.get("epochs"),
        "duration_s": run_duration(r), "created": r.meta.get("created_ts") if _is_finite(r.meta.get("created_ts"))
        else _stamp(r.created), "problem": r.damage,
    } for r in (list_runs() if found is None else found)]


CURVES = (("accuracy", "validation", "val_top1"), ("accuracy", "train", "train_top1"),
          ("loss", "validation", "val_loss"), ("loss", "train", "train_loss"))


def curve_rows(run: Run) -> list[dict[str, Any]]:
    """The run's per-epoch curves as long-format rows (epoch, metric, split, value), finite values only."""
    return [{"epoch": int(m["epoch"]), "metric": metric, "split": split, "value": float(m[key])}
            for m in run.metrics if _is_int(m.get("epoch"))
            for metric, split, key in CURVES if _is_finite(m.get(key))]


# ---- runs named for people -----------------------------------------------------------------------------

RUN_STATUS = {"queued": N_("queued"), "running": N_("running"), "finished": N_("finished"),
              "cancelled": N_("cancelled"), "diverged": N_("diverged"), "failed": N_("failed"),
              "interrupted": N_("interrupted"), "damaged": N_("damaged")}


def status_word(status: str) -> str:
    """A run's or a job's status in the reader's language (an unknown one as it is)."""
    return _(RUN_STATUS[status]) if status in RUN_STATUS else status


def run_label(run: Run) -> str:
    """How every run picker (the app's and the demo's) names a run: what was trained on what, how it ended
    with its best validation accuracy, when it started, then its id (the rest may be the same for two runs).
    A running run says "training now" without a number, so its label changes once, when it ends."""
    model = str(run.meta.get("model") or run.config.get("model") or "?")
    dataset = str(run.meta.get("dataset") or run.config.get("dataset") or "?")
    status, best = run.status, run.best_val_top1
    if status == "running":
        state = _("training now")
    elif not isinstance(best, (int, float)) or isinstance(best, bool) or not math.isfinite(best):
        state = _("{status} · not validated").format(status=status_word(status))
    else:
        state = _("{status} · best {accuracy} on validation").format(
            status=status_word(status), accuracy=fmt(best if best <= 1 else best / 100, ".1%"))
    return _("{model} on {dataset} · {state} · {started} · {run}").format(
        model=models.get_spec(model).display_name if model in models.list_models() else model, dataset=dataset,
        state=state, started=_started(run), run=run.run_id)


def _started(run: Run) -> str:
    """When a run started, in the server's time zone, to the minute."""
    stamp = run.meta.get("created_ts")
    if isinstance(stamp, (int, float)) and math.isfinite(stamp):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))
    return str(run.created)[:16].replace("T", " ") or "?"
