"""From the app to code: a run or a lesson as a plain-PyTorch notebook or script, a trained model as ONNX or
TorchScript. ``python -m cnnlab export RUN_OR_LESSON --notebook F.ipynb --script F.py --onnx F.onnx
--torchscript F.pt``; the Runs and Lessons pages call the same functions.

Each ``*_bytes``/``*_text`` function returns the file's content (what a download button serves);
:func:`write_exports` writes several at once: every path is checked first, every content is made
before anything is written, and each file is written atomically, so an export that fails leaves
nothing behind, not even a part of a file. Every failure is one :class:`ExportError` (or another
:class:`~cnnlab.errors.CnnlabError`: an unknown run, a damaged run folder) with a message saying what to do.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import RunNotFoundError
from ..files import atomic_write_bytes
from ..i18n import _
from ..lessons import Lesson, builtin_names, get_lesson
from ..runs import load_run
from .closure import ExportError
from .modelcode import ModelCode, model_code
from .modelfiles import EXTRA_FILE, metadata, onnx_bytes, torchscript_bytes
from .notebook import lesson_cells, run_cells, to_notebook, to_script

__all__ = [
    "EXTRA_FILE", "FORMATS", "ExportError", "ModelCode", "lesson_notebook_bytes", "lesson_script_text", "metadata",
    "model_code", "onnx_bytes", "resolve_target", "run_notebook_bytes", "run_script_text", "torchscript_bytes",
    "write_exports",
]

FORMATS = ("notebook", "script", "onnx", "torchscript")  # what a run exports; a lesson: notebook and script
Overrides = Mapping[str, Any] | None


def run_notebook_bytes(run_id: str) -> bytes:
    """The run as a Jupyter notebook (``.ipynb``) that trains it again without cnnlab."""
    return to_notebook(run_cells(load_run(run_id)))


def run_script_text(run_id: str) -> str:
    """The same code as the run's notebook, as one Python script."""
    return to_script(run_cells(load_run(run_id)))


def lesson_notebook_bytes(lesson: Lesson | str, budget: str = "quick", overrides: Overrides = None) -> bytes:
    """A lesson (a :class:`~cnnlab.lessons.Lesson`, a built-in name or a file's path) as a notebook;
    ``overrides``: settings for every arm, e.g. ``{"epochs": 2}``."""
    return to_notebook(lesson_cells(lesson if isinstance(lesson, Lesson) else get_lesson(lesson), budget, overrides))


def lesson_script_text(lesson: Lesson | str, budget: str = "quick", overrides: Overrides = None) -> str:
    """The same code as the lesson's notebook, as one Python script."""
    return to_script(lesson_cells(lesson if isinstance(lesson, Lesson) else get_lesson(lesson), budget, overrides))


def resolve_target(target: str) -> tuple[str, str | Lesson]:
    """``("lesson", Lesson)`` for a built-in lesson's name or a ``.toml`` file, else ``("run", run id)`` for a run
    id or its unique beginning (run ids begin with their date, lesson names never do)."""
    if target in builtin_names() or target.endswith(".toml"):
        return "lesson", get_lesson(target)
    try:
        return "run", load_run(target).run_id
    except RunNotFoundError as e:
        raise ExportError(_("{error} Or name a lesson: {lessons}, or a lesson's .toml file.").format(
            error=e, lessons=", ".join(builtin_names()))) from None


def _makers(kind: str, target: str | Lesson, budget: str, overrides: Overrides) -> dict[str, Callable[[], bytes]]:
    if kind == "run":
        run_id = str(target)
        return {"notebook": lambda: run_notebook_bytes(run_id), "script": lambda: run_script_text(run_id).encode(),
                "onnx": lambda: onnx_bytes(run_id), "torchscript": lambda: torchscript_bytes(run_id)}
    return {"notebook": lambda: lesson_notebook_bytes(target, budget, overrides),
            "script": lambda: lesson_script_text(target, budget, overrides).encode()}


def write_exports(target: str, paths: Mapping[str, str | os.PathLike[str]], budget: str = "quick",
                  overrides: Overrides = None) -> list[Path]:
    """Write the exports of a run or lesson ``target`` named in ``paths`` (format -> file, see :data:`FORMATS`);
    returns the files written. ``budget`` and ``overrides``: a lesson's settings. All or nothing: see the
    module's docstring."""
    wanted = {k: Path(v).expanduser() for k, v in paths.items() if v is not None}
    if not wanted:
        raise ExportError(_("say what to export: {options} with a file name each.").format(
            options=", ".join("--" + f for f in FORMATS)))
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown:
        raise ExportError(_("unknown export format {formats}: choose among {choices}.").format(
            formats=", ".join(unknown), choices=", ".join(FORMATS)))
    if len({p.resolve() for p in wanted.values()}) < len(wanted):
        raise ExportError(_("two exports name the same file: give each its own."))
    kind, resolved = resolve_target(target)
    if kind == "run" and overrides:
        raise ExportError(_("--set changes a lesson's settings; a run is exported with the settings it was trained "
                            "with."))
    makers = _makers(kind, resolved, budget, overrides)
    refused = [f for f in wanted if f not in makers]
    if refused:
        raise ExportError(_("a lesson has no single trained model to export as {formats}: export one of its runs "
                            "(python -m cnnlab runs), or the lesson as --notebook or --script.").format(
            formats=_(" or ").join(refused)))
    for path in wanted.values():
        _check_writable(path)
    contents = {f: makers[f]() for f in wanted}  # everything made before anything is written
    return _write_all({wanted[f]: data for f, data in contents.items()})


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise ExportError(_("{path} is a folder: give a file name.").format(path=path))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(_("the folder {folder} does not exist: create it first, or choose another place.").format(
            folder=folder))
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ExportError(_("cannot write {path}: no permission to write there. Choose another place.").format(
            path=path))


def _write_all(files: Mapping[Path, bytes]) -> list[Path]:
    """Write each file atomically; if one fails, remove those this call created and say which one failed."""
    written: list[Path] = []
    created: list[Path] = []
    for path, data in files.items():
        existed = path.exists()
        try:
            atomic_write_bytes(path, data)
        except OSError as e:
            for p in created:
                with contextlib.suppress(OSError):
                    p.unlink()
            said = {"path": path, "error": e.strerror or e}
            raise ExportError((_("cannot write {path}: {error}. Nothing was exported (the files written before it "
                                 "were removed).") if created else
                               _("cannot write {path}: {error}. Nothing was exported.")).format(**said)) from None
        with contextlib.suppress(OSError):  # a new file gets the usual permissions, not the temporary file's 0600
            os.chmod(path, 0o666 & ~_umask())
        written.append(path)
        if not existed:
            created.append(path)
    return written


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it: a race with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
