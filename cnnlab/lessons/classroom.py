"""Class sessions: a class guesses a lesson's result before the run (predict, observe, explain).

A teacher starts a session for a lesson (:func:`start_session`): a short code (``?class=CODE`` in the
app's address). Every student answers once per browser (:func:`answer`: the browser's random token is
kept only as a hash, to refuse a second answer); the teacher sees how many answered, reveals the
guesses (:func:`reveal`), runs the lesson, and the result is told beside the guesses
(:func:`compare_text`). A session is a small JSON file in ``models_cache/classes/``: no names, at most
:data:`MAX_ANSWERS` answers, gone after :data:`SESSION_SECONDS`. Everything read back is checked: the
code's form before any file is touched, the file's fields after.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import CnnlabError
from ..files import atomic_write_text
from ..i18n import _, fmt, ngettext
from ..paths import cache_dir
from .conclude import METRICS, names_list, takes_part, tiers, value_text
from .spec import Choices, Lesson

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, no 1/I: read off a projector
CODE_LENGTH = 5
CODE_RE = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")
MAX_ANSWERS = 500
SESSION_SECONDS = 6 * 3600
MAX_SESSIONS = 200  # files kept; the oldest go first
MAX_SESSION_BYTES = 64 * 1024
NEAR_POINTS = 0.05  # a number guess within 5 points of the result counts as close
_LOCK = threading.Lock()  # the app's sessions are threads of one process: one answer at a time


class ClassSessionError(CnnlabError):
    """A class session that does not exist, has ended, or refuses an answer; the message says why."""


@dataclass
class ClassSession:
    code: str
    lesson: str
    budget: str
    kind: str  # "arms": which arm comes out on top; "number": the value of one arm's metric
    prompt: str
    metric: str
    choices: list[str]  # the arm ids to pick from (kind "arms")
    names: dict[str, str]  # arm id -> its name in the lesson
    arm: str = ""  # the arm whose metric is guessed (kind "number")
    created: float = 0.0
    expires: float = 0.0
    revealed: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # kind "arms": answers per arm id
    values: list[float] = field(default_factory=list)  # kind "number": the guesses (fractions for accuracies)
    voters: list[str] = field(default_factory=list)  # hashes of the browsers that answered
    result_id: str | None = None

    @property
    def answers(self) -> int:
        return sum(self.counts.values()) if self.kind == "arms" else len(self.values)

    @property
    def percent(self) -> bool:
        """Whether a number guess is a percentage (an accuracy or a gap between two), typed as 0-100."""
        return self.kind == "number" and METRICS[self.metric].fmt.endswith("%")

    def summary(self) -> dict[str, Any]:
        """What is kept with the lesson result: counts only, no browser."""
        out: dict[str, Any] = {"code": self.code, "kind": self.kind, "prompt": self.prompt, "metric": self.metric,
                               "answers": self.answers}
        if self.kind == "arms":
            out["counts"] = {self.names.get(k, k): self.counts.get(k, 0) for k in self.choices}
        else:
            out["arm"], out["values"] = self.names.get(self.arm, self.arm), list(self.values)
        return out


def _folder() -> Path:
    path = cache_dir() / "classes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _path(code: str) -> Path:
    if not isinstance(code, str) or not CODE_RE.fullmatch(code):
        raise ClassSessionError(_("{code!r} is not a class code: a code is {n} letters and digits, as shown on the "
                                  "teacher's screen.").format(code=str(code)[:20], n=CODE_LENGTH))
    return _folder() / f"{code}.json"


def _save(s: ClassSession) -> None:
    atomic_write_text(_path(s.code), json.dumps(asdict(s)))


def _prune(now: float) -> None:
    files = sorted(_folder().glob("*.json"), key=lambda p: p.stat().st_mtime)
    for i, path in enumerate(files):
        try:
            expired = json.loads(path.read_text()).get("expires", 0) < now
        except (OSError, ValueError, AttributeError):
            expired = True  # unreadable: nothing a class can use
        if expired or i < len(files) - MAX_SESSIONS + 1:
            path.unlink(missing_ok=True)


def start_session(lesson: Lesson, budget: str = "quick", now: float | None = None) -> ClassSession:
    """A new session for ``lesson``: what its class guesses (:meth:`Lesson.guess`), a fresh code."""
    now = time.time() if now is None else now
    guess: Choices = lesson.guess()
    names = {a.id: a.name for a in lesson.arms}
    with _LOCK:
        _prune(now)
        for _attempt in range(100):
            code = "".join(secrets.choice(CODE_ALPHABET) for _position in range(CODE_LENGTH))
            if not _path(code).exists():
                break
        else:  # pragma: no cover - 32**5 codes
            raise ClassSessionError(_("no free class code: end some sessions and try again."))
        session = ClassSession(code, lesson.name, budget, guess.kind, guess.prompt, guess.metric, list(guess.arms), names,
                               guess.arm, now, now + SESSION_SECONDS,
                               counts={k: 0 for k in guess.arms} if guess.kind == "arms" else {})
        _save(session)
    return session


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _checked(data: Any, code: str) -> ClassSession:
    """A session from its file, every field checked (a damaged or edited file is refused)."""
    try:
        s = ClassSession(**{k: data[k] for k in ClassSession.__dataclass_fields__})  # type: ignore[attr-defined]
    except (KeyError, TypeError):
        raise ClassSessionError(_("class session {code} is damaged: start a new one.").format(code=code)) from None
    ok = (s.code == code and s.kind in ("arms", "number") and s.metric in METRICS
          and isinstance(s.choices, list) and all(isinstance(c, str) for c in s.choices)
          and isinstance(s.names, dict) and all(isinstance(v, str) for v in s.names.values())
          and isinstance(s.counts, dict) and all(isinstance(v, int) and v >= 0 for v in s.counts.values())
          and isinstance(s.values, list) and all(_number(v) for v in s.values)
          and isinstance(s.voters, list) and len(s.voters) <= MAX_ANSWERS and _number(s.expires)
          and isinstance(s.prompt, str) and isinstance(s.lesson, str) and isinstance(s.revealed, bool))
    if not ok:
        raise ClassSessionError(_("class session {code} is damaged: start a new one.").format(code=code))
    return s


def load_session(code: str, now: float | None = None) -> ClassSession:
    """The session of ``code``; a clear error when there is none, or it has ended."""
    path = _path(code)
    now = time.time() if now is None else now
    try:
        if path.is_symlink() or path.stat().st_size > MAX_SESSION_BYTES:
            raise ClassSessionError(_("class session {code} is damaged: start a new one.").format(code=code))
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClassSessionError(_("there is no class session {code}: check the code on the teacher's "
                                  "screen.").format(code=code)) from None
    except (OSError, ValueError):
        raise ClassSessionError(_("class session {code} is damaged: start a new one.").format(code=code)) from None
    session = _checked(data, code)
    if session.expires < now:
        raise ClassSessionError(_("class session {code} has ended: ask your teacher for the new code.").format(
            code=code))
    return session


def _voter_hash(code: str, voter: str) -> str:
    if not isinstance(voter, str) or not 8 <= len(voter) <= 128:
        raise ClassSessionError(_("this browser could not be told apart from the others: reload the page."))
    return hashlib.sha256(f"{code}:{voter}".encode()).hexdigest()[:24]


def has_answered(code: str, voter: str) -> bool:
    return _voter_hash(code, voter) in load_session(code).voters


def answer(code: str, voter: str, value: Any, now: float | None = None) -> ClassSession:
    """Record one answer from the browser ``voter``: an arm id (kind "arms"), or a number (kind "number";
    a percentage from 0 to 100 for accuracies). A second answer from the same browser, an answer after
    the reveal or beyond :data:`MAX_ANSWERS`, and a value that is not a choice are refused."""
    with _LOCK:
        s = load_session(code, now)
        who = _voter_hash(code, voter)
        if who in s.voters:
            raise ClassSessionError(_("this browser has already answered: one answer each."))
        if s.revealed:
            raise ClassSessionError(_("the guesses have been revealed: answers are closed."))
        if s.answers >= MAX_ANSWERS:
            raise ClassSessionError(_("this session has its {n} answers: no more can be taken.").format(n=MAX_ANSWERS))
        if s.kind == "arms":
            if value not in s.choices:
                raise ClassSessionError(_("pick one of the choices shown."))
            s.counts[value] = s.counts.get(value, 0) + 1
        else:
            low, high = (0.0, 100.0) if s.percent else (-1e9, 1e9)
            if not _number(value) or not low <= float(value) <= high:
                raise ClassSessionError(_("type a number from {low:g} to {high:g}.").format(low=low, high=high)
                                        if s.percent else _("type a number."))
            s.values.append(float(value) / 100 if s.percent else float(value))
        s.voters.append(who)
        _save(s)
    return s


def reveal(code: str) -> ClassSession:
    """Close the answers and let the teacher's screen show the guesses."""
    with _LOCK:
        s = load_session(code)
        s.revealed = True
        _save(s)
    return s


def attach_result(code: str, result_id: str) -> ClassSession:
    with _LOCK:
        s = load_session(code)
        s.result_id = str(result_id)[:200]
        _save(s)
    return s


# ---- the result beside the guesses ---------------------------------------------------------------------


def _two(first: str, second: str) -> str:
    """Two sentences one after the other, as the language writes them."""
    # TRANSLATORS: two whole sentences one after the other (Chinese writes them with no space between)
    return _("{first_sentence} {second_sentence}").format(first_sentence=first, second_sentence=second)


def compare_text(session: ClassSession, arms: Sequence[Mapping[str, Any]],
                 names: Mapping[str, str] | None = None) -> str:
    """One or two sentences: what the class expected, and what the run measured, true of both.
    ``names``: each arm's name as the reader sees it (arm id -> name in their language; default the
    session's)."""
    if session.answers == 0:
        return _("Nobody answered before the run.")
    names = {**session.names, **(names or {})}
    by_id = {a.get("id"): dict(a, name=names.get(a.get("id"), a.get("name"))) for a in arms}
    if session.kind == "number":
        return _compare_number(session, by_id.get(session.arm), names)
    return _compare_arms(session, [by_id[k] for k in session.choices if k in by_id], names)


def _compare_arms(s: ClassSession, arms: Sequence[Mapping[str, Any]], names: Mapping[str, str]) -> str:
    m, total = METRICS[s.metric], s.answers
    most = max(s.counts.values())
    favourites = [names.get(k, k) for k in s.choices if s.counts.get(k, 0) == most]
    one = len(favourites) == 1
    said = {"n": most, "total": total, "favourite": favourites[0], "names": names_list(favourites)}
    ranked = sorted([dict(a, value=a[s.metric]) for a in arms if takes_part(a, s.metric)],
                    key=lambda a: a["value"], reverse=m.higher_is_better)
    if not ranked:
        return (ngettext("{n} of {total} expected {favourite} to come out on top; none of them learnt, so none came "
                         "out on top.",
                         "{n} of {total} expected {favourite} to come out on top; none of them learnt, so none came "
                         "out on top.", most) if one else
                _("The class was split between {names} ({n} each); none of them learnt, so none came out on "
                  "top.")).format(**said)
    top = tiers(ranked, s.metric, m.higher_is_better, None)[0]
    right = sum(s.counts.get(a["id"], 0) for a in top)
    if len(top) == 1:
        outcome = (ngettext("{n} of {total} expected {favourite} to come out on top; {winner} came out on top, "
                            "beyond the noise.",
                            "{n} of {total} expected {favourite} to come out on top; {winner} came out on top, "
                            "beyond the noise.", most) if one else
                   _("The class was split between {names} ({n} each); {winner} came out on top, beyond the noise."))
        guessed = ngettext("{n} of {total} guessed it.", "{n} of {total} guessed it.", right)
    else:
        outcome = (ngettext("{n} of {total} expected {favourite} to come out on top; {winners} came out on top "
                            "together, too close to tell apart.",
                            "{n} of {total} expected {favourite} to come out on top; {winners} came out on top "
                            "together, too close to tell apart.", most) if one else
                   _("The class was split between {names} ({n} each); {winners} came out on top together, too close "
                     "to tell apart."))
        guessed = ngettext("{n} of {total} guessed one of them.", "{n} of {total} guessed one of them.", right)
    winners = names_list([value_text(a, m) for a in top])
    return _two(outcome.format(**said, winner=winners, winners=winners), guessed.format(n=right, total=total))


def _compare_number(s: ClassSession, arm: Mapping[str, Any] | None, names: Mapping[str, str]) -> str:
    m, name = METRICS[s.metric], names.get(s.arm, s.arm)
    spec = ".0%" if s.percent else ".3g"
    said = {"n": s.answers, "guess": fmt(statistics.median(s.values), spec), "low": fmt(min(s.values), spec),
            "high": fmt(max(s.values), spec), "arm": name}
    value = arm.get(s.metric) if arm is not None else None
    if not _number(value) or (arm is not None and arm.get("status") not in ("finished", "cancelled")):
        return ngettext("The class guessed {guess} (the middle of {n} guesses, from {low} to {high}); {arm} has no "
                        "{metric} to compare with.",
                        "The class guessed {guess} (the middle of {n} guesses, from {low} to {high}); {arm} has no "
                        "{metric} to compare with.", s.answers).format(**said, metric=_(m.label))
    text = ngettext("The class guessed {guess} (the middle of {n} guesses, from {low} to {high}); {arm} reached "
                    "{value}.",
                    "The class guessed {guess} (the middle of {n} guesses, from {low} to {high}); {arm} reached "
                    "{value}.", s.answers).format(**said, value=fmt(value, m.fmt))
    if not s.percent:
        return text
    close = sum(abs(v - value) <= NEAR_POINTS for v in s.values)
    return _two(text, ngettext("{n} of {total} guesses were within 5 points.",
                               "{n} of {total} guesses were within 5 points.", close).format(n=close, total=s.answers))
