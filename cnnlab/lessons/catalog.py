"""Which lessons there are: the built-in files next to this module, a teacher's own file (by path
or uploaded), the teachers' lessons already run on this machine, and a lesson named on the command
line. The command line and the Lessons page both list lessons through here.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import CnnlabError, LessonError
from ..i18n import _
from .runner import StoredResult, list_results
from .spec import Lesson, lesson_name, lesson_text, parse_lesson, read_lesson

BUILTIN_DIR = Path(__file__).resolve().parent


def builtin_paths() -> list[Path]:
    """The built-in lesson files in course order (their names are numbered)."""
    return sorted(BUILTIN_DIR.glob("*.toml"))


def builtin_names() -> list[str]:
    """The built-in lessons' names, in course order."""
    return [lesson_name(p.stem) for p in builtin_paths()]


def read_builtin() -> tuple[list[Lesson], list[CnnlabError]]:
    """Every built-in lesson that reads, and the problem of each file that does not: one broken
    file never hides the others from a class."""
    lessons: list[Lesson] = []
    problems: list[CnnlabError] = []
    for path in builtin_paths():
        try:
            lessons.append(read_lesson(path, builtin=True))
        except CnnlabError as err:
            problems.append(err)
    return lessons, problems


def builtin_lessons() -> list[Lesson]:
    """The built-in lessons in course order; a broken file raises its :class:`LessonError`."""
    lessons, problems = read_builtin()
    if problems:
        raise problems[0]
    return lessons


def get_lesson(name_or_path: str | Path) -> Lesson:
    """A built-in lesson by name (``python -m cnnlab lessons``), or a lesson file by path."""
    text = str(name_or_path)
    for path in builtin_paths():
        if lesson_name(path.stem) == text or path.stem == text:
            return read_lesson(path, builtin=True)
    if text.endswith(".toml") or "/" in text or Path(text).expanduser().is_file():
        return read_lesson(text)
    names = builtin_names()
    close = difflib.get_close_matches(text, names, n=2)
    said = {"name": text, "hints": _(" or ").join(close), "names": ", ".join(names)}
    raise LessonError((_("no lesson {name!r} (did you mean {hints}?). Built-in lessons: {names}; or give the path of "
                         "a .toml file.") if close else
                       _("no lesson {name!r}. Built-in lessons: {names}; or give the path of a .toml file."))
                      .format(**said))


def lesson_at(path: str) -> Lesson:
    """A teacher's lesson file on this machine: only a ``.toml`` file opens, so a mistyped path never
    has another file read as a lesson."""
    path = path.strip()
    if not path.lower().endswith(".toml"):
        raise LessonError(_("{path}: only .toml lesson files can be opened here.").format(path=path))
    return read_lesson(path)


def uploaded_lesson(filename: str, data: bytes) -> Lesson:
    """A lesson from an uploaded file's name and bytes, checked as :func:`read_lesson` checks a file
    (a .toml name, the size bound, UTF-8)."""
    if not filename.lower().endswith(".toml"):
        raise LessonError(_("{file}: a lesson is a .toml file.").format(file=filename))
    text = lesson_text(data, filename)
    return parse_lesson(text, lesson_name(Path(filename).stem), source=filename)


def own_lessons_run() -> dict[str, StoredResult]:
    """The teachers' own lessons run on this machine, by name, each from its newest result: a result
    keeps the lesson's text, so the lesson opens and runs again without its file. A result whose
    text no longer parses is left out."""
    found: dict[str, StoredResult] = {}
    for result in list_results(builtin=False):  # newest first
        if result.lesson is not None:
            found.setdefault(result.data["lesson"], result)
    return found
