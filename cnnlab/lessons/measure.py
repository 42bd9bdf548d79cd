"""How long each built-in lesson takes, and whether its quick budget shows the lecture's effect.

``python -m cnnlab lessons --measure`` runs every built-in lesson's quick budget once per seed,
one after the other, and keeps per lesson what it measured in ``measured.json`` next to this
module: the wall time, the seeds on which the effect came out (and why not on the others), each
arm's best validation accuracy, when and on what machine. The Lessons page and
``python -m cnnlab lessons`` show the time ("measured: 28 s on a 2-core CPU") before a lesson runs.

From a notebook::

    >>> from cnnlab.lessons.measure import measure_lessons, merge_measured, measured_times
    >>> rows = measure_lessons(["lenet-vs-lenetv2"], seeds=[0, 1])   # trains: minutes on a CPU
    >>> merge_measured(rows)                                          # writes measured.json
    >>> measured_times()
    {'lenet-vs-lenetv2': 21.3}

``measured.json`` is read as untrusted input: bounded in size, every entry checked field by field
(a wrong field is dropped, an entry without a usable time is ignored), a missing or damaged file
is an empty one.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..errors import LessonError
from ..files import atomic_write_text
from ..i18n import _, fmt
from ..jobs import JobManager
from .catalog import builtin_lessons, builtin_names
from .runner import LessonRun, check_overrides, plan, start_lesson
from .spec import Lesson

log = logging.getLogger(__name__)

MEASURED_FILE = Path(__file__).resolve().parent / "measured.json"
MAX_MEASURED_BYTES = 512 * 1024
MAX_ENTRIES = 200
MAX_SEEDS = 50
MAX_ARMS = 16
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
SEED_KEY = re.compile(r"-?\d{1,12}")

Row = dict[str, Any]  # one lesson run with one seed (see :func:`measure_row`)


def measured_path() -> Path:
    """Where the measurements are kept (``MEASURED_FILE``; tests point it elsewhere)."""
    return MEASURED_FILE


# ---- reading ------------------------------------------------------------------------------------


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _seconds(v: Any) -> float | None:
    n = _number(v)
    return n if n is not None and 0 <= n < 10**7 else None


def _seed_map(v: Any, clean: Callable[[Any], Any]) -> dict[str, Any]:
    """``{seed: value}`` with seed keys that are integers and values ``clean`` accepts (not None)."""
    if not isinstance(v, dict):
        return {}
    out = {}
    for k, x in list(v.items())[:MAX_SEEDS]:
        if isinstance(k, str) and SEED_KEY.fullmatch(k) and (c := clean(x)) is not None:
            out[str(int(k))] = c
    return out


def _why(v: Any) -> list[str] | None:
    if not isinstance(v, list):
        return None
    return [w[:500] for w in v[:20] if isinstance(w, str)]


def _accuracy(v: Any) -> float | None:
    n = _number(v)
    return n if n is not None and 0 <= n <= 1 else None


def _machine(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        return {}
    out: dict[str, Any] = {}
    cpus = v.get("cpus")
    if isinstance(cpus, int) and not isinstance(cpus, bool) and 0 < cpus < 100_000:
        out["cpus"] = cpus
    threads = v.get("threads")
    if isinstance(threads, int) and not isinstance(threads, bool) and 0 < threads < 100_000:
        out["threads"] = threads
    elif isinstance(threads, list) and threads and all(isinstance(t, int) and not isinstance(t, bool)
                                                       for t in threads[:16]):
        out["threads"] = threads[:16]
    for key in ("device", "torch"):
        if isinstance(v.get(key), str):
            out[key] = v[key][:80]
    return out


def clean_entry(entry: Any) -> dict[str, Any] | None:
    """One lesson's measurement with every field of the expected type, or None when it has no
    usable time (the one field the page and the list need)."""
    if not isinstance(entry, dict):
        return None
    seconds = _seconds(entry.get("seconds"))
    if seconds is None:
        return None
    shown = entry.get("shown")
    arms = entry.get("arms") if isinstance(entry.get("arms"), dict) else {}
    measured = entry.get("measured")
    return {
        "seconds": seconds,
        "seconds_by_seed": _seed_map(entry.get("seconds_by_seed"), _seconds),
        "shown": sorted({s for s in shown[:MAX_SEEDS] if isinstance(s, int) and not isinstance(s, bool)})
        if isinstance(shown, list) else [],
        "short": _seed_map(entry.get("short"), _why),
        "arms": {k: m for k, v in list(arms.items())[:MAX_ARMS]
                 if isinstance(k, str) and len(k) <= 80 and (m := _seed_map(v, _accuracy))},
        "measured": measured[:40] if isinstance(measured, str) else "",
        "machine": _machine(entry.get("machine")),
    }


def read_measured(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every lesson's measurement in ``measured.json`` (see :func:`clean_entry`), by lesson name.
    A missing, oversized or damaged file gives ``{}`` (logged); a damaged entry is left out."""
    path = Path(path) if path is not None else measured_path()
    try:
        if not path.is_file():
            return {}
        if path.stat().st_size > MAX_MEASURED_BYTES:
            log.warning("%s is larger than %d KB: ignored.", path, MAX_MEASURED_BYTES // 1024)
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        log.warning("%s cannot be read (%s): ignored.", path, e)
        return {}
    if not isinstance(data, dict):
        log.warning("%s is not a JSON object: ignored.", path)
        return {}
    out = {}
    for name, entry in list(data.items())[:MAX_ENTRIES]:
        if isinstance(name, str) and NAME.fullmatch(name) and (clean := clean_entry(entry)) is not None:
            out[name] = clean
        else:
            log.info("%s: the entry %r is not a measurement: ignored.", path, str(name)[:80])
    return out


def measured_entry(name: str, path: str | Path | None = None) -> dict[str, Any] | None:
    """One lesson's measurement (see :func:`clean_entry`), or None when it was not measured."""
    return read_measured(path).get(name)


def measured_times(path: str | Path | None = None) -> dict[str, float]:
    """Seconds each measured lesson's quick budget took (its first seed), by lesson name."""
    return {name: e["seconds"] for name, e in read_measured(path).items()}


# ---- saying it ------------------------------------------------------------------------------------


def about(seconds: float) -> str:
    """A rounded duration for a list: "about 30 s", "about 2 min", "about 1.5 h"."""
    if seconds < 57.5:
        return _("about {seconds} s").format(seconds=max(5, int(5 * round(seconds / 5))))
    minutes = seconds / 60
    if minutes < 59.5:
        return _("about {minutes} min").format(minutes=max(1, round(minutes)))
    hours = seconds / 3600
    return _("about {hours} h").format(hours=fmt(hours, ".0f" if format(hours, ".1f").endswith(".0") else ".1f"))


def exact(seconds: float) -> str:
    """A measured duration: "28 s", "3 min 2 s"."""
    s = round(seconds)
    if s < 120:
        return _("{seconds} s").format(seconds=s)
    return _("{minutes} min {seconds} s").format(minutes=s // 60, seconds=s % 60)


def machine_label(machine: Mapping[str, Any]) -> str:
    """Where it was measured: "a 2-core CPU", "cuda:0 (a 16-core machine)"."""
    device = str(machine.get("device") or "cpu")
    cpus = machine.get("cpus")
    if device == "cpu":
        return _("a {cpus}-core CPU").format(cpus=cpus) if cpus else _("a CPU")
    return _("{device} (a {cpus}-core machine)").format(device=device, cpus=cpus) if cpus else device


def measured_label(entry: Mapping[str, Any] | None) -> str:
    """One line for a lesson list: "measured: 28 s on a 2-core CPU", or "not measured yet"."""
    if not entry:
        return _("not measured yet")
    return _("measured: {time} on {machine}").format(time=exact(entry["seconds"]),
                                                     machine=machine_label(entry.get("machine") or {}))


# ---- measuring --------------------------------------------------------------------------------------


def builtin_by_name() -> dict[str, Lesson]:
    """The built-in lessons in course order, by name."""
    return {x.name: x for x in builtin_lessons()}


def choose_lessons(names: Iterable[str] | None = None) -> list[Lesson]:
    """The built-in lessons called ``names`` (all when None or empty), in course order."""
    known = builtin_by_name()
    wanted = list(dict.fromkeys(names or ()))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        hints = [m for n in unknown for m in difflib.get_close_matches(n, list(known), n=1)]
        said = {"names": ", ".join(unknown), "hints": _(" or ").join(hints), "known": ", ".join(known)}
        raise LessonError((_("not a built-in lesson: {names} (did you mean {hints}?). Only the built-in lessons are "
                             "measured: {known}.") if hints else
                           _("not a built-in lesson: {names}. Only the built-in lessons are measured: {known}."))
                          .format(**said))
    return [x for name, x in known.items() if not wanted or name in wanted]


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (repeats dropped, order kept)."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        if not re.fullmatch(r"\d{1,9}", part):
            raise LessonError(_("seeds: {part!r} is not a non-negative whole number; write e.g. --seeds 0,1,2.")
                              .format(part=part))
        seeds.append(int(part))
    if not seeds or len(seeds) > MAX_SEEDS:
        raise LessonError(_("seeds: give 1 to {n} seeds, e.g. --seeds 0,1,2.").format(n=MAX_SEEDS))
    return list(dict.fromkeys(seeds))


def measure_row(run: LessonRun, seed: int) -> Row:
    """What one ended lesson run measured, for the table and ``measured.json``."""
    result = run.result or {}
    effect = result.get("effect") if isinstance(result.get("effect"), dict) else None
    if run.state == "failed":
        shown, why = False, [_("the lesson stopped: {message}").format(message=run.message)]
    elif run.state == "cancelled":
        shown, why = False, [_("the lesson was stopped before every arm ended.")]
    elif effect is None:
        shown, why = False, [_("the result does not say whether the effect came out.")]
    else:
        shown, why = bool(effect.get("shown")), [str(w) for w in effect.get("why") or []]
    arms = result.get("arms") or []
    return {
        "lesson": run.lesson.name, "title": run.lesson.title, "seed": seed, "state": run.state,
        "seconds": _number(result.get("seconds")) if result else round(run_seconds(run), 1),
        "shown": shown, "why": why,
        "arms": {a["id"]: _number(a.get("best_val_top1")) for a in arms},
        "arm_names": {a["id"]: a.get("name") or a["id"] for a in arms}
        or {a.plan.arm.id: a.plan.arm.name for a in run.arms},
        "machine": result.get("machine") or {}, "result_id": run.result_id,
    }


def run_seconds(run: LessonRun) -> float:
    return time.time() - run.started


def prepare_measure(names: Iterable[str] | None = None, seeds: Sequence[int] = (0,),
                    overrides: Mapping[str, Any] | None = None, device: str = "auto") -> tuple[list[Lesson], dict]:
    """The lessons to measure and the checked settings for every arm; every lesson is planned, so a
    wrong name or setting is one message (:class:`LessonError`) before anything trains."""
    extra = check_overrides(overrides)
    if "seed" in extra:
        raise LessonError(_("--set seed: give the seeds with --seeds 0,1,2 instead."))
    lessons = choose_lessons(names)
    for lesson in lessons:
        plan(lesson, "quick", {**extra, "seed": int(next(iter(seeds), 0))}, device)
    return lessons, extra


def measure_lessons(names: Iterable[str] | None = None, seeds: Sequence[int] = (0,),
                    overrides: Mapping[str, Any] | None = None, *, device: str = "auto",
                    manager: JobManager | None = None, watch: Callable[[LessonRun], None] | None = None,
                    stop: threading.Event | None = None,
                    on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Run each lesson's quick budget once per seed (``overrides`` plus ``{"seed": N}``), one after the
    other on ``manager`` (default: a JobManager of its own), and return one row per run.

    Every lesson is planned first, so a wrong setting is one message before anything trains.
    ``watch(run)`` is called after each start (progress bars; it may return before the run ends);
    ``stop`` set (e.g. by Ctrl-C, with the current run cancelled) ends the loop after the current run:
    the rows measured so far are returned, the stopped run's row with state "cancelled".
    ``on_row(row)`` is called as each run ends."""
    lessons, extra = prepare_measure(names, seeds, overrides, device)
    seeds = list(dict.fromkeys(int(s) for s in seeds)) or [0]
    manager = manager or JobManager()
    rows: list[Row] = []
    for lesson in lessons:
        for seed in seeds:
            if stop is not None and stop.is_set():
                return rows
            run = start_lesson(lesson, "quick", manager=manager, overrides={**extra, "seed": seed}, device=device)
            if stop is not None and stop.is_set():  # stopped while it was starting
                run.cancel()
            if watch is not None:
                watch(run)
            run.wait()
            row = measure_row(run, seed)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


# ---- keeping it -------------------------------------------------------------------------------------


def entries_from_rows(rows: Sequence[Row], today: str | None = None) -> dict[str, dict[str, Any]]:
    """One ``measured.json`` entry per lesson from its finished runs (a stopped or failed run says
    nothing about the lesson's time, and is left out)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["state"] != "finished" or row.get("seconds") is None:
            continue
        seed = str(row["seed"])
        e = out.setdefault(row["lesson"], {
            "seconds": round(row["seconds"], 1), "seconds_by_seed": {}, "shown": [], "short": {}, "arms": {},
            "measured": today or date.today().isoformat(), "machine": _row_machine(row),
        })
        e["seconds_by_seed"][seed] = round(row["seconds"], 1)
        if row["shown"]:
            e["shown"].append(row["seed"])
        else:
            e["short"][seed] = list(row["why"])
        for arm_id, best in row["arms"].items():
            if best is not None:
                e["arms"].setdefault(arm_id, {})[seed] = round(best, 4)
    return out


def _row_machine(row: Row) -> dict[str, Any]:
    m = row.get("machine") or {}
    return {"cpus": os.cpu_count(), "threads": m.get("threads"), "device": m.get("device") or "cpu",
            "torch": m.get("torch") or torch.__version__}


def merge_measured(rows_or_entries: Sequence[Row] | Mapping[str, Any], path: str | Path | None = None,
                   known: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Merge new measurements into ``measured.json`` and write it atomically; the whole file's content.

    Lessons not measured now keep their entry; an entry of a lesson that is no longer built in
    (``known``, default the built-in names) is dropped."""
    new = (entries_from_rows(rows_or_entries) if not isinstance(rows_or_entries, Mapping)
           else dict(rows_or_entries))
    path = Path(path) if path is not None else measured_path()
    names = list(known) if known is not None else builtin_names()
    merged = {**read_measured(path), **new}
    merged = {n: merged[n] for n in names if n in merged}  # course order, unknown names dropped
    write_json_atomic(path, merged)
    return merged


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON, atomically (:func:`cnnlab.files.atomic_write_text`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def short_lessons(rows: Sequence[Row]) -> dict[str, list[tuple[int, list[str]]]]:
    """Lessons that fell short of their effect on some seed: ``{name: [(seed, why), ...]}``."""
    out: dict[str, list[tuple[int, list[str]]]] = {}
    for row in rows:
        if not row["shown"]:
            out.setdefault(row["lesson"], []).append((row["seed"], row["why"]))
    return out


def all_shown(rows: Sequence[Row]) -> bool:
    return bool(rows) and all(r["shown"] for r in rows)


__all__ = [
    "MEASURED_FILE", "about", "all_shown", "choose_lessons", "clean_entry", "entries_from_rows", "exact",
    "machine_label", "measure_lessons", "measure_row", "measured_entry", "measured_label", "measured_path",
    "measured_times", "merge_measured", "parse_seeds", "prepare_measure", "read_measured", "short_lessons", "write_json_atomic",
]
