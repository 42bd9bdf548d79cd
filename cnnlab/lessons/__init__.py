"""The course's comparisons as lessons: each a TOML file, run in one go, concluded from its numbers.

>>> from cnnlab.lessons import get_lesson, start_lesson
>>> lesson = get_lesson("lenet-vs-lenetv2")          # a built-in lesson, or a path to a .toml file
>>> run = start_lesson(lesson, "quick")              # every arm queued as a background job
>>> run.wait(); print(run.result["conclusion"])

The built-in lessons are the ``*.toml`` files next to this module; :mod:`.spec` describes the
format, :mod:`.catalog` which lessons there are (built-in, a teacher's file, those run before),
:mod:`.conclude` the conclusions, :mod:`.runner` running them and the stored results, :mod:`.measure`
timing the built-in ones.
"""

from __future__ import annotations

from .catalog import (
    BUILTIN_DIR, builtin_lessons, builtin_names, get_lesson, lesson_at, own_lessons_run, read_builtin, uploaded_lesson,
)
from .conclude import ARM_FIELDS, COLUMN_LABELS, DEFAULT_COLUMNS, METRICS, conclude, render
from .measure import (
    about, measure_lessons, measured_entry, measured_label, measured_times, merge_measured, read_measured,
)
from .runner import (
    ArmState, LessonRun, StoredResult, budget_summary, delete_result, full_budget_state, lesson_runs, lesson_to_dict,
    list_results, load_result, measure_arm, plan, result_table, results_dir, start_lesson,
)
from .spec import BUDGETS, MAX_LESSON_BYTES, PLOTS, Arm, Conclusion, Lesson, lesson_name, parse_lesson, read_lesson

__all__ = [
    "ARM_FIELDS", "Arm", "ArmState", "BUDGETS", "BUILTIN_DIR", "COLUMN_LABELS", "Conclusion", "DEFAULT_COLUMNS",
    "Lesson", "LessonRun", "MAX_LESSON_BYTES", "METRICS", "PLOTS", "StoredResult", "about", "budget_summary",
    "builtin_lessons", "builtin_names", "conclude", "delete_result", "full_budget_state", "get_lesson", "lesson_at",
    "lesson_name", "lesson_runs", "lesson_to_dict", "list_results", "load_result", "measure_arm", "measure_lessons",
    "measured_entry", "measured_label", "measured_times", "merge_measured", "own_lessons_run", "parse_lesson", "plan",
    "read_builtin", "read_lesson", "read_measured", "render", "result_table", "results_dir", "start_lesson",
    "uploaded_lesson",
]
