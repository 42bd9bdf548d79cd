"""Class sessions (predict, observe, explain): codes, one answer per browser, bounds and expiry, damaged files,
the sentence that puts the result beside the guesses (true of both), and the lesson files' choices and discuss."""

from __future__ import annotations

import json

import pytest

from cnnlab.errors import LessonError
from cnnlab.lessons import classroom as cls
from cnnlab.lessons.catalog import builtin_lessons
from cnnlab.lessons.runner import attach_guesses, load_result, save_result
from cnnlab.lessons.spec import parse_lesson

LESSON = '''
title = "t"
seed = "002"
question = "Which learns faster?"
{extra}
[base]
dataset = "digits"
[budget.quick]
epochs = 1
[budget.full]
epochs = 2
[[arms]]
id = "a"
name = "Arm A"
model = "lenet"
[[arms]]
id = "b"
name = "Arm B"
model = "lenet_v2"
[[arms]]
id = "c"
name = "Arm C"
model = "lenet5"
[conclusion]
expect = "b"
expected = "{{best.name}} came first."
'''


def lesson(extra: str = ""):
    return parse_lesson(LESSON.format(extra=extra), "guess-test")


def arm(i, value, status="finished", n=500, classes=10):
    return {"id": i, "name": f"Arm {i.upper()}", "status": status, "best_val_top1": value, "val_images": n,
            "num_classes": classes, "compare": True}


def vote(code, answers):
    for i, v in enumerate(answers):
        cls.answer(code, f"browser-{i:04d}", v)


def test_a_session_takes_one_answer_per_browser_and_closes_at_the_reveal():
    s = cls.start_session(lesson())
    assert cls.CODE_RE.fullmatch(s.code) and s.kind == "arms" and s.choices == ["a", "b", "c"]
    assert s.prompt == "Which learns faster? Which one will come out on top?"
    vote(s.code, ["a", "b", "b"])
    with pytest.raises(cls.ClassSessionError, match="already answered"):
        cls.answer(s.code, "browser-0001", "c")
    with pytest.raises(cls.ClassSessionError, match="pick one of the choices"):
        cls.answer(s.code, "browser-9999", "z")
    assert cls.has_answered(s.code, "browser-0000") and not cls.has_answered(s.code, "browser-9999")
    assert cls.load_session(s.code).counts == {"a": 1, "b": 2, "c": 0}
    cls.reveal(s.code)
    with pytest.raises(cls.ClassSessionError, match="revealed"):
        cls.answer(s.code, "browser-9999", "a")
    # the file keeps no browser token, only hashes; the summary keeps counts only
    text = (cls._folder() / f"{s.code}.json").read_text()
    assert "browser-0000" not in text
    assert cls.load_session(s.code).summary()["counts"] == {"Arm A": 1, "Arm B": 2, "Arm C": 0}


def test_bounds_expiry_and_bad_codes(monkeypatch):
    s = cls.start_session(lesson(), now=1000.0)
    with pytest.raises(cls.ClassSessionError, match="has ended"):
        cls.load_session(s.code, now=1000.0 + cls.SESSION_SECONDS + 1)
    monkeypatch.setattr(cls, "MAX_ANSWERS", 2)
    s = cls.start_session(lesson())
    vote(s.code, ["a", "b"])
    with pytest.raises(cls.ClassSessionError, match="its 2 answers"):
        cls.answer(s.code, "browser-7777", "a")
    for bad in ("../../etc", "abcde", "ABC", "ABCDE1", "", None):
        with pytest.raises(cls.ClassSessionError, match="not a class code"):
            cls.load_session(bad)
    with pytest.raises(cls.ClassSessionError, match="no class session"):
        cls.load_session("ZZZZZ")
    with pytest.raises(cls.ClassSessionError, match="told apart"):
        cls.answer(s.code, "short", "a")


@pytest.mark.parametrize("damage", [
    lambda d: {**d, "counts": {"a": -1}},
    lambda d: {**d, "values": ["x"]},
    lambda d: {**d, "kind": "other"},
    lambda d: {k: v for k, v in d.items() if k != "choices"},
    lambda d: [1, 2],
])
def test_a_damaged_session_file_is_refused(damage):
    s = cls.start_session(lesson())
    path = cls._folder() / f"{s.code}.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.raises(cls.ClassSessionError, match="damaged"):
        cls.load_session(s.code)


def test_the_result_beside_the_guesses_says_what_both_say():
    s = cls.start_session(lesson())
    assert cls.compare_text(s, [arm("a", 0.5)]) == "Nobody answered before the run."
    vote(s.code, ["a"] * 14 + ["b"] * 5 + ["c"] * 4)
    s = cls.load_session(s.code)
    # a clear winner that most did not expect
    assert cls.compare_text(s, [arm("a", 0.60), arm("b", 0.90), arm("c", 0.55)]) == (
        "14 of 23 expected Arm A to come out on top; Arm B (90.0%) came out on top, beyond the noise. "
        "5 of 23 guessed it.")
    # a tie at the top is a tie
    assert cls.compare_text(s, [arm("a", 0.89), arm("b", 0.90), arm("c", 0.55)]) == (
        "14 of 23 expected Arm A to come out on top; Arm B (90.0%) and Arm A (89.0%) came out on top together, "
        "too close to tell apart. 19 of 23 guessed one of them.")
    # an arm at chance is never the winner; none learnt: said
    assert "Arm C (55.0%) came out on top" in cls.compare_text(s, [arm("a", 0.10), arm("b", 0.11), arm("c", 0.55)])
    assert cls.compare_text(s, [arm("a", 0.10), arm("b", 0.11), arm("c", 0.09)]).endswith(
        "none of them learnt, so none came out on top.")
    split = cls.start_session(lesson())
    vote(split.code, ["a", "b"])
    assert cls.compare_text(cls.load_session(split.code), [arm("a", 0.6), arm("b", 0.9)]).startswith(
        "The class was split between Arm A and Arm B (1 each)")


def test_a_number_guess_is_a_percentage_for_an_accuracy():
    s = cls.start_session(lesson('choices = { arm = "a", prompt = "What accuracy will A reach?" }'))
    assert (s.kind, s.arm, s.prompt, s.percent) == ("number", "a", "What accuracy will A reach?", True)
    vote(s.code, [40, 62, 70, 90])
    for bad in (101, -1, "50", float("nan"), True):
        with pytest.raises(cls.ClassSessionError, match="from 0 to 100"):
            cls.answer(s.code, "browser-5555", bad)
    s = cls.load_session(s.code)
    assert s.values == [0.40, 0.62, 0.70, 0.90]
    assert cls.compare_text(s, [arm("a", 0.71)]) == (
        "The class guessed 66% (the middle of 4 guesses, from 40% to 90%); Arm A reached 71.0%. "
        "1 of 4 guesses were within 5 points.")
    assert "has no best validation top-1 to compare with" in cls.compare_text(s, [arm("a", None, status="failed")])


def test_choices_and_discuss_in_a_lesson_file():
    plain = lesson()
    assert plain.choices is None and plain.discuss == ()
    listed = lesson('choices = ["b", "c"]\ndiscuss = ["Why?", "What next?"]')
    assert listed.guess().arms == ("b", "c") and listed.discuss == ("Why?", "What next?")
    table = lesson('choices = { arms = ["a", "b"], prompt = "A or B?" }')
    assert (table.guess().kind, table.guess().prompt) == ("arms", "A or B?")
    for bad, where in (('choices = ["a"]', "key 'choices'"), ('choices = ["a", "z"]', "key 'choices'"),
                       ('choices = { arm = "z", prompt = "?" }', "key 'choices.arm'"),
                       ('choices = { arm = "a" }', "key 'choices.prompt'"),
                       ('choices = { arm = "a", arms = ["a", "b"], prompt = "?" }', "needs either 'arms'"),
                       ('choices = { arm = "a", prompt = "?", colour = 1 }', "key 'choices.colour'"),
                       ('choices = { arm = "a", prompt = "?", metric = "speed" }', "key 'choices.metric'"),
                       ('discuss = "Why?"', "key 'discuss'"), ('discuss = ["a", "b", "c", "d", "e"]', "key 'discuss'")):
        with pytest.raises(LessonError, match=where.replace("(", r"\(").replace("'", "'")):
            lesson(bad)


def test_every_built_in_lesson_asks_the_class_and_gives_questions_to_discuss():
    for item in builtin_lessons():
        guess = item.guess()
        assert guess.prompt and guess.prompt.endswith("?"), item.name
        assert len(item.discuss) >= 2 and all(q.endswith("?") for q in item.discuss), item.name
        ids = {a.id for a in item.arms if a.compare}
        assert set(guess.arms) <= ids and (guess.kind == "arms" or guess.arm in ids)


def test_guesses_are_kept_with_the_lesson_result():
    s = cls.start_session(lesson())
    vote(s.code, ["a", "b", "b"])
    s = cls.reveal(s.code)
    rid = save_result({"lesson": "guess-test", "title": "t", "budget": "quick", "created": "now", "conclusion": "c",
                       "arms": [], "lesson_source": LESSON.format(extra=""), "state": "finished"})
    stored = attach_guesses(rid, {**s.summary(), "text": "2 of 3 expected Arm B ..."})
    assert stored.data["guesses"]["counts"] == {"Arm A": 1, "Arm B": 2, "Arm C": 0}
    assert stored.data["guesses"]["text"] == "2 of 3 expected Arm B ..."
    assert load_result(rid).data["guesses"]["answers"] == 3
    # nothing but counts: no browser hash ever reaches the result
    assert "voters" not in json.dumps(load_result(rid).data)
