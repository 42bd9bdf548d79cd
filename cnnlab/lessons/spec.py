"""A lesson is data: a small TOML file read with the standard library's ``tomllib``.

::

    title = "LeNet against LeNetV2"
    seed = "002"                       # the lecture it comes from (or a list: ["000", "003"])
    question = "Do ReLU and max pooling make LeNet learn better than tanh and average pooling?"
    plots = ["curves", "gap"]          # what the page draws besides the table (see PLOTS)

    [base]                             # TrainConfig settings shared by every arm
    dataset = "digits"
    optimizer = "momentum"

    [budget.quick]                     # on top of base: embedded data, minutes on 2 CPU cores
    epochs = 4
    [budget.full]                      # the seed's own dataset and epochs (meant for a GPU)
    dataset = "mnist"
    epochs = 50

    [[arms]]                           # two to eight arms; each differs from the base
    id = "lenet"                       # a short identifier, used by the conclusion's templates
    name = "LeNet (tanh, average pooling)"
    model = "lenet"
    [arms.full]                        # optional: this arm's settings in one budget only
    batch_size = 1024

    [conclusion]                       # written from the measured numbers (see conclude.py)
    metric = "best_val_top1"
    expect = "lenet_v2"
    expected = "{best.name} reached {best.best_val_top1:.1%} ..."

An arm's settings are merged in this order: base, the budget's, the arm's, the arm's for the
budget. Besides TrainConfig fields an arm may set ``start = "standin"`` (begin from the offline
transfer stand-in's pretrained network, :mod:`cnnlab.transfer`; ``freeze = "features"`` then keeps
its convolutions fixed) and ``init_from = "@other"`` (begin from the best weights of arm ``other``
of the same lesson run, which then runs first).

Every problem is a :class:`~cnnlab.errors.LessonError` naming the file, the key and its line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .. import i18n
from ..errors import CnnlabError, LessonError
from ..i18n import N_, _
from ..config import wrong_kind
from ..train import TrainConfig
from ..data.shapes import STANDIN_MODEL, TARGET_CLASSES
from .conclude import COLUMNS, METRICS, RESERVED, check_templates

BUDGETS = ("quick", "full")
PLOTS = {  # shown through _()
    "curves": N_("validation accuracy and loss per epoch, the arms overlaid"),
    "gap": N_("final training against validation accuracy per arm (the overfitting gap)"),
    "time": N_("seconds per epoch per arm"),
    "params": N_("parameters against best validation accuracy"),
}
STARTS = ("scratch", "standin")
MAX_LESSON_BYTES = 64 * 1024
MAX_ARMS = 8
MAX_TEXT = 2000  # characters of any text field
ID_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
LESSON_KEYS = {"title", "seed", "question", "plots", "base", "budget", "arms", "conclusion", "columns", "choices",
               "discuss"}
CHOICES_KEYS = {"arm", "arms", "metric", "prompt"}
MAX_DISCUSS = 4
ARM_KEYS = {"id", "name", "note", "start", "compare"}  # besides TrainConfig fields and the budget tables
CONCLUSION_KEYS = {"metric", "higher_is_better", "expect", "expect_order", "learn", "expected", "unexpected",
                   "close", "always", "diverged", "tie", "also"}
ALSO_KEYS = CONCLUSION_KEYS - {"learn", "also", "diverged"}  # a further question about the same arms
TEMPLATE_KEYS = ("expected", "unexpected", "close", "always", "diverged")  # the conclusion's texts
CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}
LESSON_ONLY_FIELDS = {"device"}  # chosen by whoever runs the lesson, never by the file


@dataclass(frozen=True)
class Arm:
    """One side of the comparison: a name and the settings that differ from the lesson's base."""

    id: str
    name: str
    settings: dict[str, Any]
    budgets: dict[str, dict[str, Any]]
    start: str = "scratch"  # the arm's start in every budget without its own "start"
    note: str = ""
    starts: dict[str, str] = field(default_factory=dict)  # per budget, from [arms.quick] / [arms.full]
    compare: bool = True  # False: a preparatory arm (e.g. the pretraining another arm starts from), not ranked

    def start_in(self, budget: str) -> str:
        return self.starts.get(budget, self.start)

    def depends_on(self, budget: str) -> str | None:
        """The id of the arm whose weights this one starts from (``init_from = "@id"``), if any."""
        value = {**self.settings, **self.budgets.get(budget, {})}.get("init_from")
        return value[1:] if isinstance(value, str) and value.startswith("@") else None


@dataclass(frozen=True)
class Conclusion:
    metric: str = "best_val_top1"
    higher_is_better: bool = True
    expect: str | None = None
    expected: str = ""
    unexpected: str = ""
    close: str = ""
    always: str = ""
    diverged: str = ""
    tie: float | None = None  # for metrics other than accuracies: a difference this small is a tie
    expect_order: tuple[tuple[str, ...], ...] = ()  # tiers, each expected above the next beyond the noise
    learn: tuple[str, ...] = ()  # arms that must learn for the lesson to show its effect ("all": every compared arm)
    also: tuple["Conclusion", ...] = ()  # further questions about the same arms (e.g. time per epoch)


@dataclass(frozen=True)
class Choices:
    """What a class guesses before a run (predict, observe, explain): which arm comes out on top (``kind``
    "arms", among ``arms``), or the value of ``metric`` for one ``arm`` (``kind`` "number", a percentage for
    accuracies). ``prompt`` is what the students read."""

    kind: str
    prompt: str
    metric: str
    arms: tuple[str, ...] = ()
    arm: str = ""


@dataclass(frozen=True)
class Lesson:
    name: str  # the file's stem: how the command line and the page call it
    title: str
    seeds: tuple[str, ...]
    question: str
    base: dict[str, Any]
    budgets: dict[str, dict[str, Any]]
    arms: tuple[Arm, ...]
    plots: tuple[str, ...]
    conclusion: Conclusion
    columns: tuple[str, ...] = ()
    source: str = ""  # the file's text: kept with every result, so a result is read without the file
    path: str = ""
    builtin: bool = False
    choices: Choices | None = None  # what the class can guess before the run (None: the conclusion's arms)
    discuss: tuple[str, ...] = ()  # questions for the class to explain the gap between guesses and result
    translations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # the file's own: language -> English -> text

    def tr(self, text: str) -> str:
        """``text`` (one of this lesson's English texts) in the language in use: the file's own translation,
        else the catalogue's (the built-in lessons are translated there), else English."""
        code = i18n.language()
        if code == i18n.SOURCE_LANGUAGE or not text:
            return text
        return self.translations.get(code, {}).get(text) or i18n.gettext(text)

    def texts(self) -> list[str]:
        """Every English text of the lesson a reader sees, once each (what a catalogue translates)."""
        c = self.conclusion
        found = [self.title, self.question, *(t for a in self.arms for t in (a.name, a.note)),
                 *(getattr(x, k) for x in (c, *c.also) for k in TEMPLATE_KEYS),
                 self.choices.prompt if self.choices else "", *self.discuss]
        return [t for t in dict.fromkeys(found) if t]

    def guess(self) -> Choices:
        """What a class session asks: the file's ``choices``, else which compared arm comes out on top."""
        if self.choices is not None and self.choices.prompt:
            return dataclasses.replace(self.choices, prompt=self.tr(self.choices.prompt))
        prompt = _("{question} Which one will come out on top?").format(question=self.tr(self.question))
        if self.choices is not None:
            return dataclasses.replace(self.choices, prompt=prompt)
        return Choices("arms", prompt, self.conclusion.metric, tuple(a.id for a in self.arms if a.compare))

    def arm(self, arm_id: str) -> Arm:
        for a in self.arms:
            if a.id == arm_id:
                return a
        raise LessonError(_('lesson {name!r} has no arm {arm_id!r} (arms: {value}).').format(name=self.name, arm_id=arm_id, value=', '.join(a.id for a in self.arms)))

    def settings(self, arm: Arm, budget: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The arm's TrainConfig settings in ``budget``: base, budget, arm, arm's budget, ``overrides``."""
        merged: dict[str, Any] = {}
        for layer in (self.base, self.budgets.get(budget, {}), arm.settings, arm.budgets.get(budget, {}),
                      overrides or {}):
            for key, value in layer.items():
                if key == "data_options" and isinstance(value, dict):
                    merged[key] = {**merged.get(key, {}), **value}
                else:
                    merged[key] = value
        return merged

    def config(self, arm: Arm, budget: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """The arm's validated TrainConfig (``init_from = "@id"`` stays a reference to resolve)."""
        settings = self.settings(arm, budget, overrides)
        if arm.start_in(budget) == "standin":
            settings.pop("freeze", None)  # the stand-in's convolutions are frozen by the lesson runner
        settings.setdefault("tag", f"lesson {self.name}: {arm.id}")
        return TrainConfig.from_dict(settings).validate()

    def standin_freeze(self, arm: Arm, budget: str) -> bool:
        return arm.start_in(budget) == "standin" and self.settings(arm, budget).get("freeze", "none") == "features"

    @property
    def seed_label(self) -> str:
        return ", ".join(self.seeds)


# ---- parsing ----------------------------------------------------------------------------------


def _line_of(text: str, path: tuple[Any, ...]) -> int | None:
    """The line of ``path`` (e.g. ("arms", 2, "lr"), ("budget", "quick", "epochs")) in a TOML text:
    the line of the key inside its table, else of the table's header, else the key's first use."""
    if not path:
        return None
    table: tuple[Any, ...] = ()
    counts: dict[tuple, int] = {}
    header_line: int | None = None
    want_table, key = tuple(path[:-1]), path[-1]
    lines = text.splitlines()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith("["):  # a header may end with a comment: [budget.full]  # the seed's setting
            line = line.split("#", 1)[0].strip()
        if line.startswith("[["):
            name = tuple(line.strip("[] ").split("."))
            counts[name] = counts.get(name, -1) + 1
            table = (*name, counts[name])
        elif line.startswith("["):
            parts = line.strip("[] ").split(".")
            if parts and parts[0] == "arms" and ("arms",) in counts:  # [arms.quick] belongs to the last [[arms]]
                table = ("arms", counts[("arms",)], *parts[1:])
            else:
                table = tuple(parts)
        else:
            m = re.match(r'["\']?([A-Za-z0-9_\-]+)["\']?\s*=', line)
            if m and table == want_table and m.group(1) == str(key):
                return number
            continue
        if table == tuple(path):
            header_line = number
    if header_line is not None:
        return header_line
    for number, raw in enumerate(lines, 1):
        if re.match(rf'\s*["\']?{re.escape(str(key))}["\']?\s*=', raw):
            return number
    return None


class _Reader:
    def __init__(self, text: str, source: str):
        self.text, self.source = text, source
        self.translations: dict[str, dict[str, str]] = {}  # language -> English text -> the file's translation

    def error(self, path: tuple[Any, ...], what: str) -> LessonError:
        shown = ".".join(f"arms[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".arms[", "[")
        shown = re.sub(r"^arms\.(\d+)", r"arms[\1]", shown)
        line = _line_of(self.text, path)
        where = f"{self.source}, line {line}" if line else self.source
        return LessonError(f"{where}: key '{shown}': {what}")

    def text_value(self, table: Mapping[str, Any], path: tuple[Any, ...], required: bool = True, default: str = "") -> str:
        """A text field: a string, or a table of translations (``title.en = "..."``, ``title.it = "..."``)
        whose English text is returned and whose others are kept in :attr:`translations`."""
        key = path[-1]
        if key not in table:
            if required:
                raise self.error(path, _("is missing."))
            return default
        value = table[key]
        if isinstance(value, dict):
            return self._translated(value, path, required)
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.error(path, _("must be a text, got {value}.").format(value=_shown(value)))
        if len(value) > MAX_TEXT:
            raise self.error(path, _("is longer than {n} characters.").format(n=MAX_TEXT))
        return value.strip()

    def _translated(self, value: Mapping[str, Any], path: tuple[Any, ...], required: bool) -> str:
        english = self.text_value(value, (*path, i18n.SOURCE_LANGUAGE), required)
        for code, text in value.items():
            if code == i18n.SOURCE_LANGUAGE:
                continue
            if not i18n.CODE_RE.fullmatch(code):
                raise self.error((*path, code), _("is not a language code: a translated text is written "
                                                  "title.en = \"...\", title.it = \"...\", title.zh = \"...\"."))
            translated = self.text_value(value, (*path, code), required)
            if english:
                self.translations.setdefault(code, {})[english] = translated
        return english

    def table(self, parent: Mapping[str, Any], path: tuple[Any, ...], required: bool = False) -> dict[str, Any]:
        key = path[-1]
        if key not in parent:
            if required:
                raise self.error(path, _('is missing.'))
            return {}
        value = parent[key]
        if not isinstance(value, dict):
            raise self.error(path, _('must be a table ([{value}]), got {value2}.').format(value='.'.join(map(str, path)), value2=_shown(value)))
        return value

    def settings(self, table: Mapping[str, Any], path: tuple[Any, ...], extra: set[str] = frozenset()) -> dict[str, Any]:
        """TrainConfig settings, each checked for its type now (ranges when the arms are built)."""
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key in extra:
                continue
            if key in LESSON_ONLY_FIELDS:
                raise self.error((*path, key), _("is chosen by whoever runs the lesson (--device, the page's device), not by the lesson file."))
            if key not in CONFIG_FIELDS:
                hint = _close(key, CONFIG_FIELDS | extra)
                raise self.error((*path, key), (_("is not a training setting (did you mean {hint!r}?). Settings: "
                                                  "python -m cnnlab train --help.") if hint else
                                                _("is not a training setting. Settings: python -m cnnlab train "
                                                  "--help.")).format(hint=hint))
            if isinstance(value, float) and not math.isfinite(value):
                raise self.error((*path, key), _('must be a finite number, got {value}.').format(value=value))
            if key == "init_from" and not (isinstance(value, str) and value.startswith("@")):
                raise self.error((*path, key), _('must name another arm of this lesson as "@id" (a lesson runs from scratch, so it cannot '
                                                 'depend on a run of this machine), got {value}.').format(value=_shown(value)))
            wrong = wrong_kind(key, value)
            if wrong is not None:
                raise self.error((*path, key), _("should be {wanted}, got {value}.").format(wanted=wrong[0],
                                                                                           value=wrong[1]))
            out[key] = value
        return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _close(key: str, choices: set[str]) -> str | None:
    found = difflib.get_close_matches(key, sorted(choices), n=1)
    return found[0] if found else None


def parse_lesson(text: str, name: str, source: str = "", builtin: bool = False) -> Lesson:
    """A :class:`Lesson` from TOML ``text``; every arm's config is built and validated for both
    budgets now, and the conclusion's templates are tried, so a broken file fails at once."""
    name = lesson_name(name)  # the name becomes a folder name of results: never a path
    source = source or f"{name}.toml"
    if len(text.encode("utf-8", "replace")) > MAX_LESSON_BYTES:
        raise LessonError(_('{source}: a lesson file is at most {value} KB.').format(source=source, value=MAX_LESSON_BYTES // 1024))
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LessonError(_('{source}: not valid TOML: {e}.').format(source=source, e=e)) from None
    r = _Reader(text, source)
    for key in doc:
        if key not in LESSON_KEYS:
            hint = _close(key, LESSON_KEYS)
            raise r.error((key,), (_("is not a lesson key (did you mean {hint!r}?); lesson keys: {keys}.") if hint else
                                   _("is not a lesson key; lesson keys: {keys}.")).format(
                hint=hint, keys=", ".join(sorted(LESSON_KEYS))))
    title = r.text_value(doc, ("title",))
    question = r.text_value(doc, ("question",))
    seeds_raw = doc.get("seed", [])
    seeds_list = [seeds_raw] if isinstance(seeds_raw, str) else seeds_raw
    if not isinstance(seeds_list, list) or not all(isinstance(s, str) and re.fullmatch(r"\d{3}", s) for s in seeds_list):
        raise r.error(("seed",), _('must be a seed number such as "002" or a list of them, got {value}.').format(value=_shown(seeds_raw)))
    plots = doc.get("plots", ["curves"])
    if not isinstance(plots, list) or not all(isinstance(p, str) for p in plots):
        raise r.error(("plots",), _('must be a list of plot names ({value}).').format(value=', '.join(PLOTS)))
    for p in plots:
        if p not in PLOTS:
            raise r.error(("plots",), _('unknown plot {p!r}: choose among {value}.').format(p=p, value=', '.join(PLOTS)))
    columns = doc.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) and c in COLUMNS for c in columns):
        raise r.error(("columns",), _('must be a list of extra table columns among {value}.').format(value=', '.join(COLUMNS)))

    base = r.settings(r.table(doc, ("base",)), ("base",))
    budget_doc = r.table(doc, ("budget",))
    for key in budget_doc:
        if key not in BUDGETS:
            raise r.error(("budget", key), _('unknown budget: lessons have {value}.').format(value=' and '.join(BUDGETS)))
    budgets = {b: r.settings(r.table(budget_doc, ("budget", b), required=True), ("budget", b)) for b in BUDGETS}

    arms_doc = doc.get("arms")
    if not isinstance(arms_doc, list) or not 2 <= len(arms_doc) <= MAX_ARMS:
        raise r.error(("arms",), _('a lesson compares 2 to {max_arms} arms, each a [[arms]] table.').format(max_arms=MAX_ARMS))
    arms: list[Arm] = []
    for i, a in enumerate(arms_doc):
        if not isinstance(a, dict):
            raise r.error(("arms", i), _('must be a table.'))
        arm_id = a.get("id")
        if not isinstance(arm_id, str) or not ID_RE.fullmatch(arm_id):
            raise r.error(("arms", i, "id"), _('must be a short lower-case identifier (letters, digits, _), e.g. "lenet_v2", got {value}.').format(value=_shown(arm_id)))
        if arm_id in RESERVED or any(x.id == arm_id for x in arms):
            raise r.error(("arms", i, "id"), (_("{arm_id!r} is used by another arm.") if arm_id not in RESERVED
                                              else _("{arm_id!r} is a name the conclusion uses; pick another.")).format(
                arm_id=arm_id))
        start = a.get("start", "scratch")
        if start not in STARTS:
            raise r.error(("arms", i, "start"), _('must be one of {value}, got {value2}.').format(value=', '.join(STARTS), value2=_shown(start)))
        arm_budgets, starts = {}, {}
        for b in BUDGETS:
            sub = r.table(a, ("arms", i, b))
            arm_budgets[b] = r.settings(sub, ("arms", i, b), extra={"start"})
            if "start" in sub:
                if sub["start"] not in STARTS:
                    raise r.error(("arms", i, b, "start"), _('must be one of {value}, got {value2}.').format(value=', '.join(STARTS), value2=_shown(sub['start'])))
                starts[b] = sub["start"]
        extra = ARM_KEYS | set(BUDGETS)
        settings = r.settings(a, ("arms", i), extra=extra)
        compare = a.get("compare", True)
        if not isinstance(compare, bool):
            raise r.error(("arms", i, "compare"), _('must be true or false, got {value}.').format(value=_shown(compare)))
        arms.append(Arm(arm_id, r.text_value(a, ("arms", i, "name")), settings, arm_budgets, start,
                        r.text_value(a, ("arms", i, "note"), required=False), starts, compare))

    ids = [a.id for a in arms]
    if sum(a.compare for a in arms) < 2:
        raise r.error(("arms",), _('at least two arms must be compared (compare = false marks only preparatory arms).'))
    for i, arm in enumerate(arms):
        for b in BUDGETS:
            dep = arm.depends_on(b)
            if dep is not None and dep not in ids[:i]:
                raise r.error(("arms", i, "init_from"), _("'@{dep}' must name an arm listed before this one (earlier arms: {value}).").format(dep=dep, value=', '.join(ids[:i]) or 'none'))

    c = r.table(doc, ("conclusion",), required=True)
    conclusion = _conclusion(r, c, ("conclusion",), ids, [a for a in arms if a.compare], CONCLUSION_KEYS)
    also = c.get("also", [])
    if not isinstance(also, list) or not all(isinstance(x, dict) for x in also) or len(also) > 4:
        raise r.error(("conclusion", "also"), _('must be up to 4 [[conclusion.also]] tables.'))
    if also:
        extra = tuple(_conclusion(r, x, ("conclusion", "also"), ids, [a for a in arms if a.compare], ALSO_KEYS)
                      for x in also)
        conclusion = dataclasses.replace(conclusion, also=extra)

    lesson = Lesson(name, title, tuple(seeds_list), question, base, budgets, tuple(arms), tuple(plots),
                    conclusion, tuple(columns), text, source, builtin, _choices(r, doc, arms, conclusion.metric),
                    _discuss(r, doc), r.translations)
    for i, arm in enumerate(arms):  # every arm's whole config, in both budgets
        for b in BUDGETS:
            try:
                config = lesson.config(arm, b)
            except CnnlabError as e:
                raise r.error(_culprit(lesson, arm, i, b), _('in the {b} budget: {e}').format(b=b, e=e)) from None
            if arm.start_in(b) == "standin":
                _check_standin(r, lesson, arm, i, b, config)
    for key, problem in check_templates(lesson):
        raise r.error(("conclusion", key), problem)
    return lesson


def _choice_arms(r: _Reader, raw: Any, path: tuple[Any, ...], compared: list[str]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_ARMS or len(set(map(str, raw))) != len(raw) \
            or not all(isinstance(x, str) and x in compared for x in raw):
        raise r.error(path, _('must list 2 or more different compared arms among {value}, got {value2}.').format(value=', '.join(compared), value2=_shown(raw)))
    return tuple(raw)


def _choices(r: _Reader, doc: Mapping[str, Any], arms: list[Arm], metric: str) -> Choices | None:
    """What a class guesses: ``choices = ["a", "b"]`` (which of these arms comes out on top), or a
    ``[choices]`` table with ``prompt`` and either ``arms`` (the same) or ``arm`` (and ``metric``): the
    number that arm will reach. Absent: None (a class guesses among the compared arms)."""
    if "choices" not in doc:
        return None
    raw, compared = doc["choices"], [a.id for a in arms if a.compare]
    if isinstance(raw, list):
        return Choices("arms", "", metric, _choice_arms(r, raw, ("choices",), compared))
    if not isinstance(raw, dict):
        raise r.error(("choices",), _("must be a list of arm ids (which one comes out on top) or a table with a prompt and 'arms'"
                                      " or 'arm', got {value}.").format(value=_shown(raw)))
    for key in raw:
        if key not in CHOICES_KEYS:
            raise r.error(("choices", key), _('is not a key of [choices]; its keys: {value}.').format(value=', '.join(sorted(CHOICES_KEYS))))
    prompt = r.text_value(raw, ("choices", "prompt"))
    guessed = raw.get("metric", metric)
    if guessed not in METRICS:
        raise r.error(("choices", "metric"), _('must be one of {value}, got {value2}.').format(value=', '.join(METRICS), value2=_shown(guessed)))
    if ("arm" in raw) == ("arms" in raw):
        raise r.error(("choices",), _("needs either 'arms' (which comes out on top) or 'arm' (a number to guess)."))
    if "arms" in raw:
        return Choices("arms", prompt, guessed, _choice_arms(r, raw["arms"], ("choices", "arms"), compared))
    if raw["arm"] not in compared:
        raise r.error(("choices", "arm"), _('must be a compared arm ({value}), got {value2}.').format(value=', '.join(compared), value2=_shown(raw['arm'])))
    return Choices("number", prompt, guessed, (), raw["arm"])


def _discuss(r: _Reader, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """Up to :data:`MAX_DISCUSS` questions; ``discuss.en = [...]`` with ``discuss.it = [...]`` (the same
    number of questions, in the same order) carries their translations."""
    raw = doc.get("discuss", [])
    if isinstance(raw, dict):
        english = _discuss(r, {"discuss": raw.get(i18n.SOURCE_LANGUAGE, [])})
        for code, texts in raw.items():
            if code == i18n.SOURCE_LANGUAGE:
                continue
            translated = _discuss(r, {"discuss": texts}) if i18n.CODE_RE.fullmatch(code) else None
            if translated is None or len(translated) != len(english):
                raise r.error(("discuss", code), _("must be a language code with a list of as many questions as "
                                                   "discuss.en ({n}).").format(n=len(english)))
            r.translations.setdefault(code, {}).update(zip(english, translated))
        return english
    if not isinstance(raw, list) or len(raw) > MAX_DISCUSS or not all(isinstance(q, str) and q.strip() for q in raw):
        raise r.error(("discuss",), _('must be a list of up to {max_discuss} questions (texts), got {value}.').format(max_discuss=MAX_DISCUSS, value=_shown(raw)))
    for i, q in enumerate(raw):
        if len(q) > MAX_TEXT:
            raise r.error(("discuss", i), _('is longer than {max_text} characters.').format(max_text=MAX_TEXT))
    return tuple(q.strip() for q in raw)


def _conclusion(r: "_Reader", c: Mapping[str, Any], path: tuple[Any, ...], ids: list[str], compared: list[Arm],
                keys: set[str]) -> Conclusion:
    for key in c:
        if key not in keys:
            hint = _close(key, keys)
            raise r.error((*path, key), (_("is not a conclusion key (did you mean {hint!r}?); keys: {keys}.") if hint
                                         else _("is not a conclusion key; keys: {keys}.")).format(
                hint=hint, keys=", ".join(sorted(keys))))
    metric = c.get("metric", "best_val_top1")
    if not isinstance(metric, str) or metric not in METRICS:
        raise r.error((*path, "metric"), _('unknown metric {value}: choose among {value2}.').format(value=_shown(metric), value2=', '.join(METRICS)))
    higher = c.get("higher_is_better", METRICS[metric].higher_is_better)
    if not isinstance(higher, bool):
        raise r.error((*path, "higher_is_better"), _('must be true or false.'))
    expect = c.get("expect")
    if expect is not None and expect not in ids:
        raise r.error((*path, "expect"), _('must be the id of an arm ({value}), got {value2}.').format(value=', '.join(ids), value2=_shown(expect)))
    compared_ids = [a.id for a in compared]
    order_raw = c.get("expect_order", [])
    if (not isinstance(order_raw, list) or not all(isinstance(t, list) and t and all(isinstance(i, str) for i in t)
                                                   for t in order_raw)):
        raise r.error((*path, "expect_order"), _('must be a list of tiers, each a list of arm ids, e.g. [["adam", "momentum"], ["sgd"]] (each tier above the next).'))
    flat = [i for t in order_raw for i in t]
    for i in flat:
        if i not in compared_ids:
            raise r.error((*path, "expect_order"), _('{i!r} is not a compared arm ({value}).').format(i=i, value=', '.join(compared_ids)))
    if len(set(flat)) != len(flat):
        raise r.error((*path, "expect_order"), _('an arm appears in two tiers.'))
    if order_raw and len(order_raw) < 2:
        raise r.error((*path, "expect_order"), _('needs at least two tiers (the one above, the one below).'))
    if order_raw and expect is not None:
        raise r.error((*path, "expect_order"), _('give either expect (one arm first) or expect_order, not both.'))
    learn_raw = c.get("learn", [])
    learn_list = [learn_raw] if isinstance(learn_raw, str) else learn_raw
    if not isinstance(learn_list, list) or not all(isinstance(i, str) and (i in compared_ids or i == "all")
                                                   for i in learn_list):
        raise r.error((*path, "learn"), _('must be "all" or a list of compared arm ids ({value}).').format(value=', '.join(compared_ids)))
    tie = c.get("tie")
    if tie is not None and (isinstance(tie, bool) or not isinstance(tie, (int, float)) or not 0 <= tie < 1e9):
        raise r.error((*path, "tie"), _('must be a number >= 0, got {value}.').format(value=_shown(tie)))
    templates = {k: r.text_value(c, (*path, k), required=k == "expected")
                 for k in TEMPLATE_KEYS if k in keys}
    return Conclusion(metric, higher, expect, tie=None if tie is None else float(tie),
                      expect_order=tuple(tuple(t) for t in order_raw), learn=tuple(learn_list), **templates)


def _culprit(lesson: Lesson, arm: Arm, i: int, budget: str) -> tuple[Any, ...]:
    """Where the setting that breaks an arm's config is written: the first (most specific) layer
    whose value fails on its own, else the arm."""
    layers = ((("arms", i, budget), arm.budgets.get(budget, {})), (("arms", i), arm.settings),
              (("budget", budget), lesson.budgets.get(budget, {})), (("base",), lesson.base))
    for path, layer in layers:
        for key, value in layer.items():
            try:
                TrainConfig.from_dict({key: value}).validate()
            except CnnlabError:
                return (*path, key)
    return ("arms", i)


def _check_standin(r: _Reader, lesson: Lesson, arm: Arm, i: int, budget: str, config: TrainConfig) -> None:
    if budget == "full":
        raise r.error(("arms", i, "start"), _('start = "standin" is the offline stand-in of the quick budget: put it in [arms.quick], and give [arms.full] a pretrained model of the seed (e.g. model = "vgg16_transfer", pretrained = true).'))
    classes = config.data_options.get("classes")
    if (config.model != STANDIN_MODEL or config.dataset != "shapes" or classes != list(TARGET_CLASSES)
            or config.in_channels != 3 or config.input_size not in (32, (32, 32))):
        raise r.error(("arms", i, "start"), _('the stand-in is {standin_model} pretrained on other shapes, for the shapes {value}: set '
                                              'model = "{standin_model}", dataset = "shapes", in_channels = 3, input_size = 32 and '
                                              'data_options.classes = {value2}.').format(standin_model=STANDIN_MODEL, value=', '.join(TARGET_CLASSES), value2=list(TARGET_CLASSES)))


def lesson_text(data: bytes, filename: str) -> str:
    """A lesson file's text from its bytes, checked as every lesson file is, read or uploaded: at most
    :data:`MAX_LESSON_BYTES`, UTF-8."""
    if len(data) > MAX_LESSON_BYTES:
        raise LessonError(_('{filename}: a lesson file is at most {value} KB.').format(filename=filename, value=MAX_LESSON_BYTES // 1024))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise LessonError(_('{filename}: not a UTF-8 text file (a lesson is a TOML text file).').format(filename=filename)) from None


def read_lesson(path: str | Path, builtin: bool = False) -> Lesson:
    """A lesson from a file (bounded size, UTF-8)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LessonError(_('no lesson file at {p}: give the path of a .toml lesson file, or the name of a built-in '
                            'lesson (python -m cnnlab lessons).').format(p=p))
    try:
        with p.open("rb") as f:
            data = f.read(MAX_LESSON_BYTES + 1)  # one byte more than allowed is enough to refuse a big file
    except OSError as e:
        raise LessonError(_('cannot read {p}: {value}.').format(p=p, value=e.strerror or e)) from None
    return parse_lesson(lesson_text(data, p.name), lesson_name(p.stem), source=p.name, builtin=builtin)


def lesson_name(stem: str) -> str:
    """A lesson's name from its file name: "03_minialexnet.toml" is "minialexnet" (the number orders the course)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", re.sub(r"^\d+_", "", stem.lower())).strip("-")[:60]
    return name or "lesson"

