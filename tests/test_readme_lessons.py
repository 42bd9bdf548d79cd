"""The README's table of lessons says what the lesson files say: names in course order, seeds, the
number of arms and the quick budget's epochs (the measured numbers and times are the command's, not
checked here: they depend on the machine)."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlab.lessons import builtin_lessons

README = Path(__file__).resolve().parents[1] / "README.md"


def _rows() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("| # | lesson | seed |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_the_readme_lists_every_lesson_in_course_order_with_its_seed_arms_and_budget():
    lessons = builtin_lessons()
    rows = _rows()
    assert len(rows) == len(lessons)
    for i, (row, lesson) in enumerate(zip(rows, lessons), 1):
        number, name, seed, _question, budget = row[:5]
        assert number == str(i)
        assert name == f"`{lesson.name}`"
        assert seed == lesson.seed_label
        compared = [a for a in lesson.arms if a.compare]
        assert f"{len(compared)} arms" in budget, (lesson.name, budget)
        epochs = sorted({lesson.config(a, "quick").epochs for a in compared})
        shown = f"{epochs[0]} epochs" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]} epochs"
        assert shown in budget, (lesson.name, budget, shown)


def test_the_readme_table_has_a_measured_time_for_every_lesson():
    for row in _rows():
        assert re.search(r"\d+ s|\d+ min", row[-1]), row
