"""What a lesson measured, and the conclusion written from it.

A lesson's conclusion is a template filled with the numbers of the run that just ended::

    [conclusion]
    metric = "best_val_top1"   # ranks the arms (METRICS)
    expect = "lenet_v2"        # the arm the lecture expects first (optional)
    expected = "{best.name} reached {best.best_val_top1:.1%}, {gap:.1%} above {worst.name}."
    unexpected = "..."         # said instead when another arm comes first (a default exists)
    close = "..."              # said when the first two are within the measurement's noise
    always = "..."             # added every time
    diverged = "..."           # said of each diverged arm, as {arm}

Names a template can use: each arm's id, ``best``, ``second``, ``worst`` (by the metric),
``expected`` (the ``expect`` arm), ``most_params``, ``fewest_params``, ``fastest``, ``slowest``
(by seconds per epoch), and ``epochs``, ``budget``, ``metric``, ``gap`` (best minus worst),
``lead`` (best minus second), ``margin`` (the noise margin), ``n_arms``, ``dataset``. An arm has the
attributes in :data:`ARM_FIELDS`; a value that was not measured prints as "n/a".

The conclusion is honest by construction: the "expected" sentence is said only when the expected
arm really came first by more than the noise (about 95% confidence for accuracies, from the size of
the validation set); otherwise the page says that another arm won, or that the run cannot tell.
Templates are filled by a formatter that reads only these names and attributes: a lesson file from
an upload can reach nothing else.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    fmt: str  # format spec for values of this metric
    accuracy: bool = False  # a fraction of validation images: its noise follows from their count


METRICS: dict[str, Metric] = {
    "best_val_top1": Metric("best validation top-1", True, ".1%", True),
    "final_val_top1": Metric("final validation top-1", True, ".1%", True),
    "final_train_top1": Metric("final training top-1", True, ".1%", True),
    "test_top1": Metric("test top-1", True, ".1%", True),
    "gap": Metric("train/validation gap", False, ".1%"),
    "seconds": Metric("seconds", False, ".1f"),
    "epoch_seconds": Metric("seconds per epoch", False, ".2f"),
    "images_per_sec": Metric("images per second", True, ",.0f"),
    "params": Metric("parameters", False, ","),
    "trainable_params": Metric("trainable parameters", False, ","),
    "macs": Metric("multiply-accumulates per image", False, ","),
}

# The table's columns: always these, then the lesson's own ``columns``.
DEFAULT_COLUMNS = ("params", "epochs", "best_val_top1", "final_train_top1", "gap", "test_top1", "seconds",
                   "images_per_sec", "status")
COLUMN_LABELS = {
    "params": "parameters", "trainable_params": "trainable", "macs": "MACs/image", "epochs": "epochs",
    "best_val_top1": "best val top-1", "best_epoch": "best epoch", "final_val_top1": "final val top-1",
    "final_train_top1": "final train top-1", "gap": "train-val gap", "test_top1": "test top-1",
    "seconds": "seconds", "epoch_seconds": "s/epoch", "images_per_sec": "images/s", "status": "status",
    "train_images": "train images",
}
COLUMNS = tuple(c for c in COLUMN_LABELS if c not in DEFAULT_COLUMNS)

# What a template may read of an arm: the measurements and the settings that make the arms differ.
ARM_FIELDS = (
    "id", "name", "note", "status", "message", "value", "params", "trainable_params", "macs", "epochs",
    "best_epoch", "best_val_top1", "final_val_top1", "final_train_top1", "gap", "test_top1", "seconds",
    "epoch_seconds", "images_per_sec", "train_images", "val_images", "model", "model_name", "optimizer", "lr",
    "momentum", "batch_size", "augment", "subset", "freeze", "run_id",
)
ARM_ROLES = ("best", "second", "worst", "expected", "most_params", "fewest_params", "fastest", "slowest", "arm")
SCALARS = ("epochs", "budget", "metric", "gap", "lead", "margin", "n_arms", "dataset")
RESERVED = frozenset(ARM_ROLES + SCALARS)
RANKED_STATUSES = ("finished",)


class _Missing:
    """A value that was not measured (a failed arm, no test split): prints "n/a" whatever the format."""

    def __format__(self, spec: str) -> str:
        return "n/a"

    def __str__(self) -> str:
        return "n/a"


MISSING = _Missing()
_SPEC = re.compile(r"(?:[<>^]?[+ -]?\d{0,2}[,_]?(?:\.\d{1,2})?[%fFeEgGds]?)")  # widths and precisions bounded
_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?")


class TemplateError(Exception):
    pass


class _Formatter(string.Formatter):
    """``str.format`` that only reads ``name`` or ``name.attribute`` from plain dictionaries: no
    indexing, no dunder attributes, no conversions but !s."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        m = _FIELD.fullmatch(field_name)
        if not m:
            raise TemplateError(f"{{{field_name}}} is not a name: write {{best.name}} or {{epochs}}.")
        top, attr = m.group(1), m.group(2)
        if top not in kwargs:
            raise TemplateError(f"unknown name {{{field_name}}}: use an arm id ({', '.join(kwargs.get('_ids', ()))}) "
                                f"or {', '.join(n for n in ARM_ROLES + SCALARS if n != 'arm')}.")
        value = kwargs[top]
        if attr is None:
            if isinstance(value, dict):
                raise TemplateError(f"{{{field_name}}} is an arm: write {{{top}.name}} or {{{top}.best_val_top1:.1%}}.")
            return value, top
        if not isinstance(value, dict):
            raise TemplateError(f"{{{top}}} is a number or a text: it has no .{attr}.")
        if attr not in ARM_FIELDS:
            raise TemplateError(f"an arm has no '{attr}' ({{{field_name}}}); it has {', '.join(ARM_FIELDS)}.")
        return value.get(attr, MISSING), top

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion not in (None, "s"):
            raise TemplateError("only !s conversions are allowed.")
        return value if conversion is None else str(value)

    def format_field(self, value: Any, format_spec: str) -> Any:
        if value is None:
            value = MISSING
        if not _SPEC.fullmatch(format_spec):
            raise TemplateError(f"':{format_spec}' is not a number format a lesson may use (e.g. :.1%, :,.0f, :.3g, "
                                ":>8; widths up to 99).")
        try:
            return format(value, format_spec)
        except (ValueError, TypeError) as e:
            raise TemplateError(f"cannot format {value!r} with ':{format_spec}' ({e}).") from None


_FORMATTER = _Formatter()


def render(template: str, names: Mapping[str, Any]) -> str:
    """Fill ``template`` from ``names`` (:class:`TemplateError` on anything not allowed)."""
    try:
        return _FORMATTER.vformat(template, (), names)
    except TemplateError:
        raise
    except (ValueError, IndexError, KeyError, AttributeError) as e:  # unbalanced braces, positional {}
        raise TemplateError(f"not a valid template: {e}.") from None


# ---- the conclusion ---------------------------------------------------------------------------


def noise_margin(a: Mapping[str, Any], b: Mapping[str, Any], metric: str, tie: float | None) -> float:
    """How large a difference between ``a`` and ``b`` in ``metric`` must be to mean something: about
    95% confidence for accuracies (binomial standard errors on their validation sets), else ``tie``."""
    m = METRICS[metric]
    if not m.accuracy:
        return float(tie or 0.0)
    total = 0.0
    for arm in (a, b):
        p, n = _num(arm.get(metric)), _num(arm.get("val_images"))
        if p is None or not n:
            return float(tie or 0.0)
        total += max(p * (1 - p), 1.0 / n) / n  # at least one image's worth when p is 0 or 1
    return max(1.96 * math.sqrt(total), float(tie or 0.0))


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _names(lesson: Any, arms: Sequence[Mapping[str, Any]], budget: str) -> dict[str, Any]:
    c = lesson.conclusion
    metric = c.metric
    views = {a["id"]: {**a, "value": a.get(metric), "message": _stopped_at(str(a.get("message") or ""))}
             for a in arms}
    ranked = [views[a["id"]] for a in arms if _ranked(a, metric)]
    ranked.sort(key=lambda a: a["value"], reverse=c.higher_is_better)
    names: dict[str, Any] = dict(views)
    names["_ids"] = tuple(views)
    done = [views[a["id"]] for a in arms if a.get("status") in RANKED_STATUSES and a.get("compare", True)]
    if ranked:
        names.update(best=ranked[0], worst=ranked[-1], second=ranked[1] if len(ranked) > 1 else ranked[0])
        names["gap"] = abs(ranked[0]["value"] - ranked[-1]["value"])
        names["lead"] = abs(ranked[0]["value"] - names["second"]["value"])
        names["margin"] = noise_margin(ranked[0], names["second"], metric, c.tie)
    for role, key, high in (("most_params", "params", True), ("fewest_params", "params", False),
                            ("fastest", "epoch_seconds", False), ("slowest", "epoch_seconds", True)):
        cands = [a for a in done if _num(a.get(key)) is not None]
        if cands:
            names[role] = (max if high else min)(cands, key=lambda a, k=key: a[k])
    if c.expect is not None:
        names["expected"] = views[c.expect]
    epochs = [a.get("epochs") for a in arms if isinstance(a.get("epochs"), int)]
    names.update(epochs=max(epochs) if epochs else MISSING, budget=budget, metric=METRICS[metric].label,
                 n_arms=len(arms), dataset=next((a.get("dataset") for a in arms if a.get("dataset")), MISSING))
    return names


def _ranked(a: Mapping[str, Any], metric: str) -> bool:
    """Whether an arm takes part in the ranking: compared, finished, and measured."""
    return a.get("compare", True) and a.get("status") in RANKED_STATUSES and _num(a.get(metric)) is not None


def _stopped_at(message: str) -> str:
    """A divergence message up to 'training stopped there.' (the advice after it is for a user's own runs)."""
    cut = message.find("training stopped there")
    return message[: cut + len("training stopped there")] + "." if cut >= 0 else message


def _say(template: str, names: Mapping[str, Any], fallback: str = "") -> str:
    """``template`` filled from ``names``; a template that needs what this run lacks (e.g. {best} when
    every arm diverged) falls back to ``fallback``, never losing the result."""
    for t in (template, fallback):
        if not t:
            continue
        try:
            return render(t, names)
        except TemplateError:
            continue
    return ""


def conclude(lesson: Any, arms: Sequence[Mapping[str, Any]], budget: str = "quick") -> str:
    """The conclusion of ``lesson`` from the measured ``arms`` (dicts of :data:`ARM_FIELDS`)."""
    c = lesson.conclusion
    m = METRICS[c.metric]
    names = _names(lesson, arms, budget)
    sentences: list[str] = []
    ranked = [a for a in arms if _ranked(a, c.metric)]
    if len(ranked) < 2:
        done = ", ".join(a["name"] for a in ranked) or "no arm"
        sentences.append(f"Only {done} finished, so this run cannot answer the question: see why below and "
                         "run the lesson again.")
    else:
        best = names["best"]
        expected = names.get("expected")
        if expected is not None and expected.get("status") not in RANKED_STATUSES:
            sentences.append(_say(f"{{expected.name}}, the arm the lecture expects to come first, did not finish "
                                  f"({{expected.status}}); among the others {{best.name}} came first "
                                  f"({m.label} {{best.value:{m.fmt}}}).", names))
        elif expected is not None and expected["id"] != best["id"]:
            diff = abs(best["value"] - expected["value"])
            names_close = {**names, "second": expected,
                           "margin": noise_margin(best, expected, c.metric, c.tie), "lead": diff}
            if diff <= names_close["margin"]:
                sentences.append(_say(c.close, names_close, _default_close(m)))
            else:
                sentences.append(_say(c.unexpected, names, _default_unexpected(m)))
        elif names["lead"] <= names["margin"]:
            sentences.append(_say(c.close, names, _default_close(m)))
        else:
            sentences.append(_say(c.expected, names, _default_expected(m)))
    for a in arms:
        status = a.get("status")
        if status in RANKED_STATUSES or (status == "skipped" and not a.get("compare", True)):
            continue
        default = (f"{a['name']} {_stopped_at(str(a.get('message') or 'diverged.'))}" if status == "diverged" else
                   f"{a['name']} {status}" + (f": {str(a.get('message')).strip()}" if a.get("message") else "."))
        if status == "diverged" and c.diverged:
            sentences.append(_say(c.diverged, {**names, "arm": names[a["id"]]}) or default)
        else:
            sentences.append(default)
    if c.always and ranked:
        sentences.append(_say(c.always, names))
    return " ".join(s.strip() for s in sentences if s and s.strip())


def _default_expected(m: Metric) -> str:
    return (f"{{best.name}} came first ({m.label} {{best.value:{m.fmt}}}), ahead of {{second.name}} "
            f"({{second.value:{m.fmt}}}) and {{worst.name}} ({{worst.value:{m.fmt}}}).")


def _default_unexpected(m: Metric) -> str:
    return (f"The lecture expects {{expected.name}} to come first, but on this run {{best.name}} did "
            f"({m.label} {{best.value:{m.fmt}}} against {{expected.value:{m.fmt}}}), by more than the "
            f"noise of the measurement (±{{margin:{m.fmt if m.accuracy else '.3g'}}}). Look at the curves: more "
            "epochs or the full budget may change the order.")


def _default_close(m: Metric) -> str:
    return (f"{{best.name}} and {{second.name}} are too close to call on this run ({m.label} "
            f"{{best.value:{m.fmt}}} against {{second.value:{m.fmt}}}): the difference is within the noise of "
            f"the measurement (±{{margin:{m.fmt if m.accuracy else '.3g'}}}). More epochs, more validation "
            "images or the full budget would separate them.")


# ---- checking a lesson's templates when it is read --------------------------------------------


def example_arms(lesson: Any) -> list[dict[str, Any]]:
    """Made-up measurements for every arm (finished), to try the templates on."""
    arms = []
    for i, arm in enumerate(lesson.arms):
        p = 0.9 - 0.1 * i
        arms.append({
            "id": arm.id, "name": arm.name, "note": arm.note, "status": "finished", "message": "",
            "params": 1000 * (i + 1), "trainable_params": 1000 * (i + 1), "macs": 10_000 * (i + 1),
            "epochs": 3, "best_epoch": 3, "best_val_top1": p, "final_val_top1": p, "final_train_top1": p + 0.05,
            "gap": 0.05, "test_top1": p, "seconds": 10.0 + i, "epoch_seconds": 3.0 + i, "images_per_sec": 500.0,
            "train_images": 1000, "val_images": 10_000, "model": "lenet", "model_name": "LeNet",
            "optimizer": "adam", "lr": 0.001, "momentum": 0.9, "batch_size": 64, "augment": "none",
            "subset": None, "freeze": "none", "run_id": "example", "dataset": "Digits", "compare": arm.compare,
        })
    return arms


def check_templates(lesson: Any) -> Iterator[tuple[str, str]]:
    """(key, problem) for each conclusion template that cannot be filled."""
    arms = example_arms(lesson)
    names = _names(lesson, arms, "quick")
    names["arm"] = arms[0]
    c = lesson.conclusion
    for key in ("expected", "unexpected", "close", "always", "diverged"):
        template = getattr(c, key)
        if not template:
            continue
        try:
            render(template, names)
        except TemplateError as e:
            yield key, str(e)
