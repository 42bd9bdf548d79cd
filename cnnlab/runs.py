"""The run registry: one folder per training run under :func:`cnnlab.paths.runs_dir`.

A run folder (id like ``20261123-142501-lenet-digits-ab12``) holds:

- ``config.json``: the :class:`~cnnlab.train.TrainConfig` as a dict;
- ``meta.json``: model name and creation arguments, dataset, class names, input shape,
  mean/std, parameter counts, device, creation time;
- ``metrics.jsonl``: one JSON line per epoch, appended, flushed and fsynced;
- ``best.pt``: the best-validation ``state_dict``, written atomically;
- ``status.json``: running/finished/cancelled/diverged/failed, message, pid, hostname and
  timestamps, written atomically.

A run whose status says "running" but whose process is gone is reported as "interrupted";
its metrics and best checkpoint so far stay usable.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import CnnlabError
from .paths import runs_dir

STATUSES = ("running", "finished", "cancelled", "diverged", "failed")


class RunNotFoundError(CnnlabError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RunError(CnnlabError):
    """A run that cannot be written, loaded or deleted as asked."""


class CheckpointMismatchError(CnnlabError, ValueError):
    """A checkpoint whose layers do not fit the model (other architecture or class count)."""


# --------------------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


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


def _read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e}); the run folder is damaged.") from e


def _read_jsonl(path: Path) -> list[dict]:
    """Every complete line; a torn last line (process killed mid-write) is ignored."""
    rows: list[dict] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")[:40] or "x"


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
        line = json.dumps(dict(row), default=_json_default) + "\n"
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def save_best(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Write ``best.pt`` atomically (temporary file in the run folder, then ``os.replace``)."""
        cpu_state = {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
        fd, tmp = tempfile.mkstemp(prefix=".best.pt.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(cpu_state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / "best.pt")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def set_status(self, status: str, message: str = "", **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        record = {
            "status": status, "message": message, "pid": os.getpid(),
            "hostname": socket.gethostname(), "created": self.created, "updated": _now(),
        }
        if status != "running":
            record["finished"] = record["updated"]
        record.update(extra)
        _atomic_write_json(self.path / "status.json", record)


def new_run_id(model: str, dataset: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(model)}-{_slug(dataset)}-{secrets.token_hex(2)}"


def create_run(config: Mapping[str, Any], meta: Mapping[str, Any]) -> RunWriter:
    """Create a run folder with ``config.json``, ``meta.json`` and a "running" status."""
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    model = str(meta.get("model") or config.get("model") or "model")
    dataset = str(meta.get("dataset") or config.get("dataset") or "data")
    for _ in range(100):
        run_id = new_run_id(model, dataset)
        path = root / run_id
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of a 16-bit suffix within one second
        raise RunError(f"could not create a new run folder in {root}")
    created = _now()
    meta = {**meta, "run_id": run_id, "created": created, "created_ts": time.time()}
    writer = RunWriter(run_id, path, created)
    writer.set_status("running", "training")  # first: a listing never sees a new run as "interrupted"
    _atomic_write_json(path / "config.json", dict(config))
    _atomic_write_json(path / "meta.json", meta)
    (path / "metrics.jsonl").touch()
    return writer


# --------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    """A run as stored on disk."""

    run_id: str
    path: Path
    config: dict
    meta: dict
    metrics: list[dict]
    status_record: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The recorded status, or "interrupted" for a "running" run whose process is dead."""
        rec = self.status_record
        status = rec.get("status", "interrupted")
        if status == "running" and rec.get("hostname") == socket.gethostname():
            if not _pid_alive(int(rec.get("pid", -1))):
                return "interrupted"
        return status

    @property
    def message(self) -> str:
        if self.status == "interrupted":
            return ("the training process stopped without finishing (killed or crashed); "
                    "metrics and the best checkpoint up to then are kept.")
        return str(self.status_record.get("message", ""))

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / "best.pt").is_file()

    @property
    def best_val_top1(self) -> float | None:
        vals = [m["val_top1"] for m in self.metrics if m.get("val_top1") is not None]
        return max(vals) if vals else self.status_record.get("best_val_top1")

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))


def _run_path(run_id: str) -> Path:
    root = runs_dir()
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunNotFoundError(f"{run_id!r} is not a run id.")
    path = root / run_id
    if path.is_dir():
        return path
    matches = sorted(p for p in root.glob(f"{run_id}*") if p.is_dir()) if root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RunNotFoundError(
            f"{run_id!r} matches {len(matches)} runs ({', '.join(p.name for p in matches[:4])}...); "
            "give more of the id."
        )
    raise RunNotFoundError(
        f"no run {run_id!r} in {root}. `python -m cnnlab runs` lists them."
    )


def load_run(run_id: str) -> Run:
    """A run by id (or a unique prefix of one)."""
    path = _run_path(run_id)
    return Run(
        run_id=path.name, path=path,
        config=_read_json(path / "config.json", {}) or {},
        meta=_read_json(path / "meta.json", {}) or {},
        metrics=_read_jsonl(path / "metrics.jsonl"),
        status_record=_read_json(path / "status.json", {}) or {},
    )


def list_runs() -> list[Run]:
    """Every run, newest first. Folders that cannot be read are skipped."""
    root = runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for p in root.iterdir():
        if not p.is_dir() or p.name.startswith(".") or not (p / "meta.json").exists():
            continue
        try:
            runs.append(load_run(p.name))
        except RunError:
            continue
    runs.sort(key=lambda r: (float(r.meta.get("created_ts") or 0.0), r.created, r.run_id), reverse=True)
    return runs


def delete_run(run_id: str) -> None:
    """Remove a run folder. A run still training in a live process is refused."""
    run = load_run(run_id)
    if run.status == "running":
        raise RunError(f"run {run.run_id} is still training; cancel it before deleting it.")
    shutil.rmtree(run.path)


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict(state)`` with a clear message when the layers do not fit."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointMismatchError(
                f"the {source} does not fit this model: layer {key!r} has shape "
                f"{tuple(value.shape)} in the checkpoint but {tuple(own[key].shape)} in the model "
                "(another architecture, class count or input size)."
            )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"not in the model: {', '.join(unexpected[:5])}"
                         + (" ..." if len(unexpected) > 5 else ""))
        raise CheckpointMismatchError(
            f"the {source} does not fit this model (another architecture?): " + "; ".join(parts)
        )
    model.load_state_dict(state)


def load_checkpoint(run_id: str, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The ``state_dict`` in a run's ``best.pt`` (always ``weights_only=True``)."""
    run = load_run(run_id)
    path = run.path / "best.pt"
    if not path.is_file():
        raise RunError(
            f"run {run.run_id} has no checkpoint yet (best.pt is written after the first "
            "validation, or when a run is cancelled)."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling error, truncated file...
        raise RunError(f"cannot read {path}: {e}") from e
    if not isinstance(state, Mapping):
        raise RunError(f"{path} does not hold a state_dict.")
    return dict(state)


def build_model(meta: Mapping[str, Any]) -> nn.Module:
    """The (untrained) model a run's ``meta.json`` describes, through the model registry."""
    from . import models

    kwargs = dict(meta.get("model_kwargs") or {})
    if "input_size" in kwargs and kwargs["input_size"] is not None:
        kwargs["input_size"] = tuple(kwargs["input_size"])
    model = models.create(meta["model"], **kwargs)
    shape = meta.get("input_shape")
    if shape:
        model.cnnlab_input_shape = tuple(int(v) for v in shape)  # type: ignore[attr-defined]
    return model


def load_model(run_id: str, device: str | torch.device = "cpu") -> nn.Module:
    """The run's model with its best weights, in eval mode, on ``device``."""
    run = load_run(run_id)
    if "model" not in run.meta:
        raise RunError(f"run {run.run_id} has no model name in meta.json; it cannot be rebuilt.")
    model = build_model(run.meta)
    state = load_checkpoint(run.run_id, map_location=device)
    load_state_into(model, state, source=f"checkpoint of run {run.run_id}")
    model.cnnlab_run_id = run.run_id  # type: ignore[attr-defined]
    return model.to(device).eval()


def load_run_data(run: Run):
    """The dataset a run was trained on, split the same way (for evaluation after the fact).

    Raises a :class:`~cnnlab.errors.DataError` when the data is no longer on disk.
    """
    from .transfer import standin_cfg_of, standin_target

    standin = standin_cfg_of(run)
    if standin is not None:
        return standin_target(standin)
    from .train import TrainConfig, load_data

    config = TrainConfig.from_dict(run.config)
    return load_data(config, download=False)
