"""What a lesson measured, and the conclusion written from it.

A lesson's conclusion is a template filled with the numbers of the run that just ended::

    [conclusion]
    metric = "best_val_top1"   # ranks the arms (METRICS)
    expect = "lenet_v2"        # the arm the lecture expects first (optional), or:
    expect_order = [["momentum_09", "adam"], ["momentum_05", "sgd"]]  # tiers: each above the next
    learn = "all"              # arms that must learn for the lesson to show its effect ("all" or ids)
    expected = "{lenet_v2.name} reached {lenet_v2.best_val_top1:.1%}, {lead:.1%} above {lenet.name}."
    unexpected = "..."         # the lecture's explanation when another order came out (facts come first)
    close = "..."              # said when the expected difference is within the measurement's noise
    always = "..."             # added every time
    diverged = "..."           # said of each diverged arm, as {arm}
    [[conclusion.also]]        # a second question about the same arms, e.g. time per epoch
    metric = "train_epoch_seconds"
    expect = "frozen"
    expected = "..."

Names a template can use: each arm's id, ``best``, ``second``, ``worst`` (by the metric, among the
arms that learnt), ``expected`` (the ``expect`` arm), ``most_params``, ``fewest_params``, ``fastest``,
``slowest`` (by training seconds per epoch), and ``epochs``, ``budget``, ``metric``, ``gap`` (best
minus worst), ``lead`` (best minus second), ``margin`` (the noise margin), ``ratio`` (best against
second, as a factor), ``ranking`` (the order as a sentence, ties named), ``not_learnt`` (the arms at
chance), ``n_arms``, ``dataset``. An arm has the attributes in :data:`ARM_FIELDS`; a value that was
not measured prints as "n/a".

Differences of accuracies are percentage points: ``{lead:.1%}`` prints "12.5 points", never "12.5%".

The conclusion is honest by construction:

- an arm whose validation accuracy is within the noise of guessing (1 / classes) did not learn: it
  is said so, and it is never ranked among the others;
- the "expected" sentence is said only when every step of the expected order is beyond the noise
  (about 95% confidence for accuracies, from the size of the validation sets); otherwise the
  conclusion first says what this run measured (which arm came above which, which cannot be told
  apart), then the lesson's explanation;
- an order of three or more arms (``{ranking}``) names as tied every pair it cannot tell apart.

Templates are filled by a formatter that reads only these names and attributes: a lesson file from
an upload can reach nothing else.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from .. import i18n
from ..i18n import N_, _, fmt, ngettext


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    fmt: str  # format spec for values of this metric
    accuracy: bool = False  # a fraction of validation images: its noise follows from their count
    relative: bool = False  # a duration: a tie is a fraction of the larger value (default RELATIVE_TIE)
    needs_learning: bool = False  # an arm that did not learn is not ranked by it


RELATIVE_TIE = 0.10  # durations measured on a shared machine: within 10% is a tie

METRICS: dict[str, Metric] = {
    "best_val_top1": Metric(N_("best validation top-1"), True, ".1%", True, needs_learning=True),
    "final_val_top1": Metric(N_("final validation top-1"), True, ".1%", True, needs_learning=True),
    "final_train_top1": Metric(N_("final training top-1"), True, ".1%", True, needs_learning=True),
    "test_top1": Metric(N_("test top-1"), True, ".1%", True, needs_learning=True),
    "gap": Metric(N_("train/validation gap"), False, ".1%", needs_learning=True),
    "seconds": Metric(N_("seconds"), False, ".1f", relative=True),
    "epoch_seconds": Metric(N_("seconds per epoch"), False, ".2f", relative=True),
    "train_epoch_seconds": Metric(N_("training seconds per epoch"), False, ".2f", relative=True),
    "images_per_sec": Metric(N_("images per second"), True, ",.0f", relative=True),
    "params": Metric(N_("parameters"), False, ","),
    "trainable_params": Metric(N_("trainable parameters"), False, ","),
    "macs": Metric(N_("multiply-accumulates per image"), False, ","),
}
# differences of these arm attributes are percentage points
POINT_FIELDS = ("gap",)

# The table's columns: always these, then the lesson's own ``columns``.
DEFAULT_COLUMNS = ("params", "epochs", "best_val_top1", "final_train_top1", "gap", "test_top1", "seconds",
                   "images_per_sec", "status")
COLUMN_LABELS = {  # shown through _()
    "params": N_("parameters"), "trainable_params": N_("trainable"), "macs": N_("MACs/image"), "epochs": N_("epochs"),
    "best_val_top1": N_("best val top-1"), "best_epoch": N_("best epoch"), "final_val_top1": N_("final val top-1"),
    "final_train_top1": N_("final train top-1"), "gap": N_("train-val gap"), "test_top1": N_("test top-1"),
    "seconds": N_("seconds"), "epoch_seconds": N_("s/epoch"), "train_epoch_seconds": N_("train s/epoch"),
    "images_per_sec": N_("images/s"), "status": N_("status"), "train_images": N_("train images"),
}
COLUMNS = tuple(c for c in COLUMN_LABELS if c not in DEFAULT_COLUMNS)

# What a template may read of an arm: the measurements and the settings that make the arms differ.
ARM_FIELDS = (
    "id", "name", "note", "status", "message", "value", "params", "trainable_params", "macs", "epochs",
    "best_epoch", "best_val_top1", "final_val_top1", "final_train_top1", "gap", "test_top1", "seconds",
    "epoch_seconds", "train_epoch_seconds", "images_per_sec", "train_images", "val_images", "num_classes",
    "chance", "learnt_by", "fit", "trainable_share", "model", "model_name", "optimizer", "lr", "momentum",
    "batch_size", "augment", "subset", "freeze", "run_id",
)
ARM_ROLES = ("best", "second", "worst", "expected", "most_params", "fewest_params", "fastest", "slowest", "arm")
SCALARS = ("epochs", "budget", "metric", "gap", "lead", "margin", "ratio", "ranking", "not_learnt", "n_arms",
           "dataset")
RESERVED = frozenset(ARM_ROLES + SCALARS)
RANKED_STATUSES = ("finished",)
STATUS_WORDS = {"running": N_("running"), "finished": N_("finished"), "cancelled": N_("cancelled"),  # shown via _()
                "diverged": N_("diverged"), "failed": N_("failed"), "skipped": N_("skipped")}
Z95 = 1.96


class _Missing:
    """A value that was not measured (a failed arm, no test split): prints "n/a" whatever the format."""

    def __format__(self, spec: str) -> str:
        return _("n/a")

    def __str__(self) -> str:
        return _("n/a")


MISSING = _Missing()


class Points(float):
    """A difference of two accuracies: with a percent format it prints percentage points
    (``format(Points(0.125), ".1%")`` is "12.5 points"), never a percentage."""

    def __format__(self, spec: str) -> str:
        if spec.endswith("%"):
            points = float(self) * 100
            value = fmt(points, spec[:-1] + "f")
            return ngettext("{value} point", "{value} points", 1 if abs(points) == 1 else 2).format(value=value)
        return fmt(float(self), spec)


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
            return fmt(value, format_spec)
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


# ---- noise, chance and what an arm learnt --------------------------------------------------------


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def noise_margin(a: Mapping[str, Any], b: Mapping[str, Any], metric: str, tie: float | None) -> float:
    """How large a difference between ``a`` and ``b`` in ``metric`` must be to mean something: about
    95% confidence for accuracies (binomial standard errors on their validation sets), a fraction
    ``tie`` (default 10%) of the larger value for durations, else ``tie``."""
    m = METRICS[metric]
    if m.relative:
        va, vb = _num(a.get(metric)), _num(b.get(metric))
        share = RELATIVE_TIE if tie is None else float(tie)
        return share * max(abs(va or 0.0), abs(vb or 0.0))
    if not m.accuracy:
        return float(tie or 0.0)
    total = 0.0
    for arm in (a, b):
        p, n = _num(arm.get(metric)), _num(arm.get("val_images"))
        if p is None or not n:
            return float(tie or 0.0)
        total += max(p * (1 - p), 1.0 / n) / n  # at least one image's worth when p is 0 or 1
    return max(Z95 * math.sqrt(total), float(tie or 0.0))


def chance_of(arm: Mapping[str, Any]) -> float | None:
    """The accuracy of guessing: 1 / the arm's number of classes (None when not recorded)."""
    k = _num(arm.get("num_classes"))
    return 1.0 / k if k and k >= 2 else None


def chance_margin(arm: Mapping[str, Any], p: float | None = None) -> float | None:
    """How far above chance an accuracy must be to be more than luck (95%, one validation set)."""
    chance, n = chance_of(arm), _num(arm.get("val_images"))
    if chance is None or not n:
        return None
    return Z95 * math.sqrt(chance * (1 - chance) / n)


def learnt(arm: Mapping[str, Any]) -> bool | None:
    """Whether the arm learnt: its best validation accuracy beyond the noise of guessing. None when
    that cannot be told (no class count or validation size recorded, or no accuracy)."""
    best = _num(arm.get("best_val_top1"))
    chance, margin = chance_of(arm), chance_margin(arm)
    if best is None or chance is None or margin is None:
        return None
    return best > chance + margin


def learnt_by(arm: Mapping[str, Any]) -> int | None:
    """The first epoch whose validation accuracy is beyond the noise of guessing (None: never, or unknown)."""
    chance, margin = chance_of(arm), chance_margin(arm)
    if chance is None or margin is None:
        return None
    for e in arm.get("curves") or []:
        v = _num(e.get("val_top1"))
        if v is not None and v > chance + margin:
            return int(e.get("epoch") or 0) or None
    return None


def fit_phrase(arm: Mapping[str, Any]) -> str:
    """What the training and validation accuracies say about the arm, in a few words."""
    train, val = _num(arm.get("final_train_top1")), _num(arm.get("final_val_top1"))
    if learnt(arm) is False:
        return _("did not learn (validation accuracy within the noise of guessing)")
    if train is None or val is None:
        return _("n/a")
    n = _num(arm.get("val_images")) or 0
    gap_noise = Z95 * math.sqrt(max(val * (1 - val), 1.0 / n) / n) if n else 0.02
    shown = {"train": fmt(train, ".1%"), "val": fmt(val, ".1%")}
    if train >= 0.95 and train - val > gap_noise:
        return _("memorised its training images (training {train}, validation {val})").format(**shown)
    if train < 0.9 and train - val > gap_noise:
        return _("underfits: it does not fit even its training images, and does worse still on new ones "
                 "(training {train}, validation {val})").format(**shown)
    if train - val > gap_noise:
        return _("overfits: it does better on its training images than on new ones "
                 "(training {train}, validation {val})").format(**shown)
    if train < 0.9:
        return _("underfits: it does not fit even its training images (training {train}, validation {val})").format(
            **shown)
    return _("generalises: no gap beyond the noise (training {train}, validation {val})").format(**shown)


def _with_derived(a: Mapping[str, Any]) -> dict[str, Any]:
    """An arm with what the conclusion computes from its numbers (chance, learnt_by, fit...)."""
    out = dict(a)
    out["chance"] = chance_of(a)
    out["learnt_by"] = learnt_by(a)
    out["fit"] = fit_phrase(a)
    if _num(a.get("gap")) is not None:
        out["gap"] = Points(a["gap"])
    params, trainable = _num(a.get("params")), _num(a.get("trainable_params"))
    out["trainable_share"] = trainable / params if params and trainable is not None else None
    return out


# ---- the order of the arms ---------------------------------------------------------------------


def takes_part(a: Mapping[str, Any], metric: str) -> bool:
    """Whether an arm takes part in the ranking: compared, finished, measured, and (for metrics that
    need it) learnt."""
    if not (a.get("compare", True) and a.get("status") in RANKED_STATUSES and _num(a.get(metric)) is not None):
        return False
    return not (METRICS[metric].needs_learning and learnt(a) is False)


def _above(a: Mapping[str, Any], b: Mapping[str, Any], metric: str, higher: bool, tie: float | None) -> bool:
    """Whether ``a`` is better than ``b`` by more than the noise."""
    diff = (a["value"] - b["value"]) if higher else (b["value"] - a["value"])
    return diff > noise_margin(a, b, metric, tie)


def tiers(ranked: Sequence[Mapping[str, Any]], metric: str, higher: bool, tie: float | None) -> list[list[dict]]:
    """``ranked`` (sorted best first) cut into groups: every arm of a group is above every arm of
    the next groups by more than the noise; within a group the order cannot be told."""
    groups: list[list[dict]] = []
    for a in ranked:
        if groups and not all(_above(b, a, metric, higher, tie) for b in groups[-1]):
            groups[-1].append(dict(a))
        else:
            groups.append([dict(a)])
    # a later arm may still be within the noise of an arm two groups up: merge until consistent
    merged = True
    while merged:
        merged = False
        for i in range(len(groups) - 1):
            if not all(_above(a, b, metric, higher, tie) for a in groups[i] for b in groups[i + 1]):
                groups[i:i + 2] = [groups[i] + groups[i + 1]]
                merged = True
                break
    return groups


def value_text(a: Mapping[str, Any], m: Metric) -> str:
    return _("{name} ({value})").format(name=a["name"], value=fmt(a["value"], m.fmt))


def names_list(items: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C" in the language in use."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    # TRANSLATORS: the separator between the first names of a list ("A, B and C"; Chinese uses "、")
    return _("{items} and {last}").format(items=_(", ").join(items[:-1]), last=items[-1])


def ranking_text(groups: Sequence[Sequence[Mapping[str, Any]]], m: Metric) -> str:
    """The order as a sentence: "A (90.0%), then B (80.1%) and C (79.5%), too close to tell apart"."""
    parts = []
    for g in groups:
        text = names_list([value_text(a, m) for a in g])
        if len(g) > 1:
            text = (_("{names}, too close to tell apart") if len(g) == 2 else _("{names}, too close to order")).format(
                names=text)
        parts.append(text)
    text = parts[0] if parts else ""
    for part in parts[1:]:
        text = _("{before}; then {after}").format(before=text, after=part)
    return text


# ---- the conclusion ------------------------------------------------------------------------------


def _claims(c: Any, arms: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The expected order as (above, below) pairs of arm ids."""
    order = [list(t) for t in getattr(c, "expect_order", ()) or ()]
    if not order and c.expect is not None:
        order = [[c.expect], [a["id"] for a in arms if a["id"] != c.expect and a.get("compare", True)]]
    pairs = []
    for i, upper in enumerate(order):
        for lower in order[i + 1:]:
            pairs += [(x, y) for x in upper for y in lower]
    return pairs


def _names(lesson: Any, arms: Sequence[Mapping[str, Any]], budget: str, c: Any = None) -> dict[str, Any]:
    c = c if c is not None else lesson.conclusion
    metric = c.metric
    m = METRICS[metric]
    views = {a["id"]: {**_with_derived(a), "value": a.get(metric),
                       "message": _stopped_at(str(a.get("message") or ""))} for a in arms}
    ranked = [views[a["id"]] for a in arms if takes_part(a, metric)]
    ranked.sort(key=lambda a: a["value"], reverse=c.higher_is_better)
    names: dict[str, Any] = dict(views)
    names["_ids"] = tuple(views)
    done = [views[a["id"]] for a in arms if a.get("status") in RANKED_STATUSES and a.get("compare", True)]
    diff = Points if m.accuracy else float
    if ranked:
        names.update(best=ranked[0], worst=ranked[-1], second=ranked[1] if len(ranked) > 1 else ranked[0])
        names["gap"] = diff(abs(ranked[0]["value"] - ranked[-1]["value"]))
        names["lead"] = diff(abs(ranked[0]["value"] - names["second"]["value"]))
        names["margin"] = diff(noise_margin(ranked[0], names["second"], metric, c.tie))
        names["ratio"] = _ratio(ranked[0]["value"], names["second"]["value"])
        names["ranking"] = ranking_text(tiers(ranked, metric, c.higher_is_better, c.tie), m)
    for role, key, high in (("most_params", "params", True), ("fewest_params", "params", False),
                            ("fastest", "train_epoch_seconds", False), ("slowest", "train_epoch_seconds", True)):
        cands = [a for a in done if _num(a.get(key)) is not None]
        if not cands and key == "train_epoch_seconds":  # results saved before training time was recorded
            key = "epoch_seconds"
            cands = [a for a in done if _num(a.get(key)) is not None]
        if cands:
            names[role] = (max if high else min)(cands, key=lambda a, k=key: a[k])
    if c.expect is not None:
        names["expected"] = views[c.expect]
    epochs = [a.get("epochs") for a in arms if isinstance(a.get("epochs"), int)]
    names.update(epochs=max(epochs) if epochs else MISSING, budget=budget, metric=_(m.label),
                 n_arms=len(arms), dataset=next((a.get("dataset") for a in arms if a.get("dataset")), MISSING),
                 not_learnt=names_list([a["name"] for a in done if learnt(a) is False]) or _("none"))
    return names


def _ratio(a: Any, b: Any) -> float | _Missing:
    a, b = _num(a), _num(b)
    if not a or not b:
        return MISSING
    return max(a, b) / min(a, b) if a > 0 and b > 0 else MISSING


def _stopped_at(message: str) -> str:
    """A divergence message up to 'training stopped there.' (the advice after it is for a user's own runs)."""
    for end in dict.fromkeys(("training stopped there", _("training stopped there"))):
        cut = message.find(end)
        if cut >= 0:
            return message[: cut + len(end)] + "."
    return message


def _tr(lesson: Any, text: str) -> str:
    """One of the lesson's texts in the language in use (:meth:`~cnnlab.lessons.spec.Lesson.tr`)."""
    tr = getattr(lesson, "tr", None)
    return tr(text) if tr is not None and text else text


def _in_language(lesson: Any, arms: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The arms with their names and notes in the language in use (results keep the English ones)."""
    if i18n.language() == i18n.SOURCE_LANGUAGE:
        return [dict(a) for a in arms]
    return [{**a, "name": _tr(lesson, str(a.get("name", ""))), "note": _tr(lesson, str(a.get("note") or ""))}
            for a in arms]


def _say(template: str, names: Mapping[str, Any], fallback: str = "", lesson: Any = None) -> str:
    """``template`` (in the language in use, when the lesson or the catalogue translates it) filled from
    ``names``; a template that needs what this run lacks (e.g. {best} when every arm diverged) falls back
    to ``fallback``, and a translation that cannot be filled to the English text, never losing the result."""
    for t in dict.fromkeys((_tr(lesson, template), template, fallback)):
        if not t:
            continue
        try:
            return render(t, names)
        except TemplateError:
            continue
    return ""


@dataclass
class Outcome:
    """One conclusion's reading of the measured arms."""

    sentences: list[str]
    shown: bool  # the effect the lecture expects came out, beyond the noise
    why: list[str]  # when not: what fell short, one short sentence each


def _outcome(lesson: Any, c: Any, arms: Sequence[Mapping[str, Any]], budget: str, primary: bool) -> Outcome:
    m = METRICS[c.metric]
    names = _names(lesson, arms, budget, c)
    views = {k: v for k, v in names.items() if isinstance(v, dict) and k in names["_ids"]}
    sentences: list[str] = []
    measured = [a for a in arms if a.get("compare", True) and a.get("status") in RANKED_STATUSES
                and _num(a.get(c.metric)) is not None]
    ranked = [a for a in arms if takes_part(a, c.metric)]
    if len(measured) < 2:
        if primary:
            sentences.append(_("Only {arm} finished, so this run cannot answer the question: see why below and "
                               "run the lesson again.").format(arm=measured[0]["name"]) if measured else
                             _("No arm finished, so this run cannot answer the question: see why below and run the "
                               "lesson again."))
        return Outcome(sentences, False, [_("Fewer than two arms finished.")])
    claims = _claims(c, arms)
    if not ranked or (len(ranked) == 1 and not claims):
        if primary:
            best = names.get("best") or {}
            sentences.append(_("No arm learnt anything, so this run cannot compare them: see the curves and run "
                               "the lesson again.") if not ranked else
                             _("{arm} was the only arm that learnt ({metric} {value}).").format(
                                 arm=best.get("name"), metric=_(m.label), value=fmt(best.get("value"), m.fmt)))
        return Outcome(sentences, False, [_("Fewer than two arms learnt.")])
    expected = names.get("expected")
    if expected is not None and expected.get("status") not in RANKED_STATUSES:
        best = names.get("best") or {}
        sentences.append(_("{expected}, the arm the lecture expects to come first, did not finish ({status}); among "
                           "the others {best} came first ({metric} {value}).").format(
            expected=expected["name"], status=_status(expected.get("status")), best=best.get("name", _("n/a")),
            metric=_(m.label), value=fmt(best.get("value", MISSING), m.fmt)))
        return Outcome(sentences, False, [_status_fact(expected)])
    if not claims:  # no expected order: the measured order, ties named
        if names["lead"] <= names["margin"]:
            sentences.append(_say(c.close, names, _default_close(m), lesson))
        else:
            sentences.append(_say(c.expected, names, _default_expected(m), lesson))
        return Outcome(sentences, True, [])
    failed: list[str] = []
    apart: list[str] = []
    for up, down in claims:
        a, b = views[up], views[down]
        if a.get("status") not in RANKED_STATUSES or _num(a.get("value")) is None:
            failed.append(_status_fact(a))
            continue
        if m.needs_learning and learnt(a) is False:
            failed.append(_("{arm} did not learn.").format(arm=a["name"]))
            continue
        if b.get("status") not in RANKED_STATUSES or _num(b.get("value")) is None:
            continue  # nothing to beat: the arm below diverged or failed (said below)
        if _above(a, b, c.metric, c.higher_is_better, c.tie):
            continue
        margin = noise_margin(a, b, c.metric, c.tie)
        diff = abs(a["value"] - b["value"])
        pair = {"a": a["name"], "a_value": fmt(a["value"], m.fmt), "b": b["name"], "b_value": fmt(b["value"], m.fmt),
                "noise": fmt(Points(margin) if m.accuracy else margin, m.fmt if m.accuracy else ".3g")}
        if diff <= margin:
            apart.append(_("{a} ({a_value}) and {b} ({b_value}) cannot be told apart on this run (a difference within "
                           "±{noise}).").format(**pair))
        else:
            failed.append(_("{b} ({b_value}) did better than {a} ({a_value}), by more than the noise "
                            "(±{noise}).").format(**pair))
    if not failed and not apart:
        sentences.append(_say(c.expected, names, _default_expected(m), lesson))
        return Outcome(sentences, True, [])
    facts = failed + apart
    if failed:
        sentences.append(sentences_text(facts))
        if c.unexpected:
            sentences.append(_say(c.unexpected, names, lesson=lesson))
        else:
            sentences.append(_("Look at the curves: more epochs or the full budget may change the order."))
    else:
        sentences.append(sentences_text(apart))
        if c.close:
            sentences.append(_say(c.close, names, lesson=lesson))
        else:
            sentences.append(_("More epochs, more validation images or the full budget would separate them."))
    return Outcome(sentences, False, facts)


def _status(status: Any) -> str:
    """An arm's status as the reader's language says it."""
    return _(STATUS_WORDS[status]) if status in STATUS_WORDS else str(status)


def _status_fact(a: Mapping[str, Any]) -> str:
    """"LeNet diverged.": what became of an arm that was not measured."""
    return _("{arm} {status}.").format(arm=a["name"], status=_status(a.get("status")))


def outcomes(lesson: Any, arms: Sequence[Mapping[str, Any]], budget: str = "quick") -> list[Outcome]:
    """The lesson's conclusion and each of its ``also`` conclusions, read from ``arms``."""
    c = lesson.conclusion
    arms = _in_language(lesson, arms)
    found = [_outcome(lesson, c, arms, budget, True)]
    for extra in getattr(c, "also", ()) or ():
        o = _outcome(lesson, extra, arms, budget, False)
        if extra.always and any(takes_part(a, extra.metric) for a in arms):
            o.sentences.append(_say(extra.always, _names(lesson, arms, budget, extra), lesson=lesson))
        found.append(o)
    return found


def effect(lesson: Any, arms: Sequence[Mapping[str, Any]], budget: str = "quick",
           found: Sequence[Outcome] | None = None) -> dict[str, Any]:
    """Whether this run shows the effect the lecture teaches: every expected order beyond the noise
    and every arm the lesson needs to learn learnt. ``{"shown": bool, "why": [sentences]}``.
    ``found``: the :func:`outcomes` already read (:func:`conclude_with_effect`)."""
    why: list[str] = []
    for o in found if found is not None else outcomes(lesson, arms, budget):
        why += o.why
    must = set(getattr(lesson.conclusion, "learn", ()) or ())
    for a in _in_language(lesson, arms):
        if a["id"] in must or ("all" in must and a.get("compare", True)):
            if a.get("status") not in RANKED_STATUSES:
                why.append(_status_fact(a))
            elif learnt(a) is False:
                why.append(_("{arm} did not learn.").format(arm=a["name"]))
    return {"shown": not why, "why": list(dict.fromkeys(why))}


def conclude_with_effect(lesson: Any, arms: Sequence[Mapping[str, Any]],
                         budget: str = "quick") -> tuple[str, dict[str, Any]]:
    """:func:`conclude` and :func:`effect` from one reading of the arms."""
    found = outcomes(lesson, arms, budget)
    return conclude(lesson, arms, budget, found), effect(lesson, arms, budget, found)


def conclude(lesson: Any, arms: Sequence[Mapping[str, Any]], budget: str = "quick",
             found: Sequence[Outcome] | None = None) -> str:
    """The conclusion of ``lesson`` from the measured ``arms`` (dicts of :data:`ARM_FIELDS`)."""
    c = lesson.conclusion
    found = list(found) if found is not None else outcomes(lesson, arms, budget)
    arms = _in_language(lesson, arms)
    sentences = list(found[0].sentences)
    names = _names(lesson, arms, budget)
    compared = [a for a in arms if a.get("compare", True) and a.get("status") in RANKED_STATUSES]
    at_chance = [a for a in compared if learnt(a) is False]
    if at_chance:
        chance = chance_of(at_chance[0])
        same = all(chance_of(a) == chance for a in at_chance)
        who = names_list([value_text({**a, "value": _num(a.get("best_val_top1"))}, METRICS["best_val_top1"])
                          for a in at_chance])
        sentences.append(_at_chance(who, len(at_chance), chance if same else None))
    for a in arms:
        status = a.get("status")
        if status in RANKED_STATUSES or (status == "skipped" and not a.get("compare", True)):
            continue
        message = str(a.get("message") or "").strip()
        if status == "diverged":
            default = _("{arm} {what}").format(arm=a["name"], what=_stopped_at(message) if message else _("diverged."))
        elif message:
            default = _("{arm} {status}: {message}").format(arm=a["name"], status=_status(status), message=message)
        else:
            default = _status_fact(a)
        if status == "diverged" and c.diverged:
            sentences.append(_say(c.diverged, {**names, "arm": names[a["id"]]}, lesson=lesson) or default)
        else:
            sentences.append(default)
    for extra in found[1:]:
        sentences += extra.sentences
    ranked = [a for a in arms if takes_part(a, c.metric)]
    if c.always and len(ranked) >= 1:
        sentences.append(_say(c.always, names, lesson=lesson))
    return sentences_text(sentences)


def sentences_text(sentences: Sequence[str]) -> str:
    """Sentences one after the other as the language writes them (a space in English, none in Chinese)."""
    found = [s.strip() for s in sentences if s and s.strip()]
    text = found[0] if found else ""
    for sentence in found[1:]:
        text = _("{first_sentence} {second_sentence}").format(first_sentence=text, second_sentence=sentence)
    return text


def _at_chance(who: str, n: int, chance: float | None) -> str:
    """The arms that did not learn, said once (they are not ranked)."""
    if chance:
        return ngettext("{arms} did not learn: its best validation accuracy is within the noise of guessing "
                        "({chance} for {classes} classes), so it is not ranked.",
                        "{arms} did not learn: their best validation accuracy is within the noise of guessing "
                        "({chance} for {classes} classes), so they are not ranked.", n).format(
            arms=who, chance=fmt(chance, ".1%"), classes=round(1 / chance))
    return ngettext("{arms} did not learn: its best validation accuracy is within the noise of guessing, so it is "
                    "not ranked.",
                    "{arms} did not learn: their best validation accuracy is within the noise of guessing, so they "
                    "are not ranked.", n).format(arms=who)


def _default_expected(m: Metric) -> str:
    # TRANSLATORS: a template filled later: keep {{best.name}}, {{second.name}}, {{ranking}} and the
    # {{best.value:{fmt}}} fields (one brace pair each once filled), and {label} and {fmt}
    return _("{{best.name}} came first ({label} {{best.value:{fmt}}}), ahead of {{second.name}} "
             "({{second.value:{fmt}}}) by more than the noise. The order: {{ranking}}.").format(
        label=_(m.label), fmt=m.fmt)


def _default_close(m: Metric) -> str:
    # TRANSLATORS: a template filled later, as the one above; {noise} is the format of the margin
    return _("{{best.name}} and {{second.name}} are too close to call on this run ({label} {{best.value:{fmt}}} "
             "against {{second.value:{fmt}}}): the difference is within the noise of the measurement "
             "(±{{margin:{noise}}}). More epochs, more validation images or the full budget would separate "
             "them.").format(label=_(m.label), fmt=m.fmt, noise=m.fmt if m.accuracy else ".3g")


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
            "gap": 0.05, "test_top1": p, "seconds": 10.0 + i, "epoch_seconds": 3.0 + i,
            "train_epoch_seconds": 2.0 + i, "images_per_sec": 500.0, "num_classes": 10,
            "train_images": 1000, "val_images": 10_000, "model": "lenet", "model_name": "LeNet",
            "optimizer": "adam", "lr": 0.001, "momentum": 0.9, "batch_size": 64, "augment": "none",
            "subset": None, "freeze": "none", "run_id": "example", "dataset": "Digits", "compare": arm.compare,
            "curves": [{"epoch": e, "val_top1": p * e / 3, "train_top1": (p + 0.05) * e / 3} for e in (1, 2, 3)],
        })
    return arms


def check_templates(lesson: Any) -> Iterator[tuple[str, str]]:
    """(key, problem) for each conclusion template that cannot be filled."""
    arms = example_arms(lesson)
    main = lesson.conclusion
    for prefix, c in [("", main)] + [(f"also[{i}].", x) for i, x in enumerate(getattr(main, "also", ()) or ())]:
        names = _names(lesson, arms, "quick", c)
        names["arm"] = names[arms[0]["id"]]
        for key in ("expected", "unexpected", "close", "always", "diverged"):
            template = getattr(c, key)
            if not template:
                continue
            for code, translated in [("", template)] + [(code, texts[template]) for code, texts in
                                                        sorted((getattr(lesson, "translations", None) or {}).items())
                                                        if template in texts]:
                try:
                    render(translated, names)
                except TemplateError as e:
                    yield prefix + key + (f".{code}" if code else ""), str(e)
