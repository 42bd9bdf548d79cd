"""The course's comparisons as lessons: each a TOML file, run in one go, concluded from its numbers.

>>> from cnnlab.lessons import get_lesson, start_lesson
>>> lesson = get_lesson("lenet-vs-lenetv2")          # a built-in lesson, or a path to a .toml file
>>> run = start_lesson(lesson, "quick")              # every arm queued as a background job
>>> run.wait(); print(run.result["conclusion"])

The built-in lessons are the ``*.toml`` files next to this module; :mod:`.spec` describes the
format, :mod:`.conclude` the conclusions, :mod:`.runner` running them and the stored results.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LessonError
from .conclude import ARM_FIELDS, COLUMN_LABELS, DEFAULT_COLUMNS, METRICS, conclude, render
from .measure import (
    about, measure_lessons, measured_entry, measured_label, measured_times, merge_measured, read_measured,
)
from .runner import (
    ArmState, LessonRun, StoredResult, budget_summary, delete_result, full_budget_state, latest_result,
    lesson_runs, lesson_to_dict, list_results, load_result, measure_arm, plan, result_table, results_dir,
    start_lesson,
)
from .spec import BUDGETS, PLOTS, Arm, Conclusion, Lesson, lesson_name, parse_lesson, read_lesson

BUILTIN_DIR = Path(__file__).resolve().parent


def builtin_names() -> list[str]:
    """The built-in lessons' names, in course order (their files are numbered)."""
    return [lesson_name(p.stem) for p in sorted(BUILTIN_DIR.glob("*.toml"))]


def builtin_lessons() -> list[Lesson]:
    return [read_lesson(p, builtin=True) for p in sorted(BUILTIN_DIR.glob("*.toml"))]


def _builtin_path(name: str) -> Path | None:
    for p in sorted(BUILTIN_DIR.glob("*.toml")):
        if lesson_name(p.stem) == name or p.stem == name:
            return p
    return None


def get_lesson(name_or_path: str | Path) -> Lesson:
    """A built-in lesson by name (``python -m cnnlab lessons``), or a lesson file by path."""
    text = str(name_or_path)
    found = _builtin_path(text)
    if found is not None:
        lesson = read_lesson(found, builtin=True)
        return lesson
    if text.endswith(".toml") or "/" in text or Path(text).expanduser().is_file():
        return read_lesson(text)
    import difflib

    close = difflib.get_close_matches(text, builtin_names(), n=2)
    raise LessonError(f"no lesson {text!r}" + (f" (did you mean {' or '.join(close)}?)" if close else "")
                      + f". Built-in lessons: {', '.join(builtin_names())}; or give the path of a .toml file.")


__all__ = [
    "ARM_FIELDS", "Arm", "ArmState", "BUDGETS", "BUILTIN_DIR", "COLUMN_LABELS", "Conclusion", "DEFAULT_COLUMNS",
    "Lesson", "LessonRun", "METRICS", "PLOTS", "StoredResult", "about", "budget_summary", "builtin_lessons", "builtin_names",
    "conclude", "delete_result", "full_budget_state", "get_lesson", "latest_result", "lesson_name", "lesson_runs", "lesson_to_dict",
    "list_results", "load_result", "measure_arm", "measure_lessons", "measured_entry", "measured_label",
    "measured_times", "merge_measured", "parse_lesson", "plan", "read_lesson", "read_measured", "render", "result_table",
    "results_dir", "start_lesson",
]
