"""Lesson files: every built-in lesson parses and plans in both budgets; a malformed file is one
LessonError naming the key and its line; conclusion templates reach nothing but the measured numbers.

Tests marked "Regression" keep fixed the defects found while writing them.
"""

from __future__ import annotations

import re

import pytest

from cnnlab.data.registry import get_spec as dataset_spec
from cnnlab.errors import LessonError
from cnnlab.lessons import (
    BUDGETS,
    builtin_lessons,
    builtin_names,
    get_lesson,
    lesson_at,
    parse_lesson,
    plan,
    read_builtin,
    read_lesson,
    render,
    uploaded_lesson,
)
from cnnlab.lessons.spec import MAX_LESSON_BYTES
from cnnlab.train import TrainConfig

# A small valid lesson; the tests below change one thing in it and check the message.
VALID = '''\
title = "Two learning rates"
seed = "003"
question = "Which learning rate learns faster?"

[base]
dataset = "digits"
model = "lenet"

[budget.quick]
epochs = 1

[budget.full]
dataset = "mnist"

[[arms]]
id = "slow"
name = "Slow"
lr = 0.0001

[[arms]]
id = "fast"
name = "Fast"
lr = 0.001

[conclusion]
expect = "fast"
expected = "{best.name} reached {best.best_val_top1:.1%}."
'''


def line_no(text: str, fragment: str) -> int:
    """The 1-based line of the one line of ``text`` that contains ``fragment``."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


def after(text: str, anchor: str, new: str) -> str:
    """``text`` with the line ``new`` inserted after the (unique) line ``anchor``."""
    assert text.count(anchor + "\n") == 1, anchor
    return text.replace(anchor + "\n", anchor + "\n" + new + "\n")


def error_of(text: str, name: str = "my") -> str:
    with pytest.raises(LessonError) as e:
        parse_lesson(text, name)
    return str(e.value)


def test_the_valid_lesson_parses():
    lesson = parse_lesson(VALID, "my")
    assert [a.id for a in lesson.arms] == ["slow", "fast"]
    assert lesson.seeds == ("003",)
    assert lesson.conclusion.expect == "fast"
    assert lesson.config(lesson.arm("fast"), "quick").lr == 0.001
    assert lesson.config(lesson.arm("fast"), "full").dataset == "mnist"


# ---- the built-in lessons -------------------------------------------------------------------


def test_there_are_builtin_lessons():
    names = builtin_names()
    assert "lenet-vs-lenetv2" in names
    assert len(names) == len(set(names)), "two built-in lesson files have the same name"
    assert [lesson.name for lesson in builtin_lessons()] == names


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_lesson_parses_and_plans(name):
    lesson = get_lesson(name)
    assert lesson.name == name and lesson.builtin
    assert lesson.title.strip() and lesson.question.strip()
    assert lesson.seeds and all(s in {"000", "001", "002", "003", "004"} for s in lesson.seeds), lesson.seeds
    assert 2 <= len(lesson.arms) <= 8
    assert len({a.id for a in lesson.arms}) == len(lesson.arms)
    assert all(a.name.strip() for a in lesson.arms)
    assert lesson.conclusion.expected.strip()
    if lesson.conclusion.expect is not None:
        lesson.arm(lesson.conclusion.expect)  # names one of the arms
    for budget in BUDGETS:
        plans = plan(lesson, budget, check_data=False)
        assert [p.arm.id for p in plans] == [a.id for a in lesson.arms]
        for p in plans:
            assert isinstance(p.config, TrainConfig)
            p.config.validate()
            if p.depends_on is not None:
                assert p.config.init_from == f"@{p.depends_on}"
                assert p.depends_on in [a.id for a in lesson.arms[: lesson.arms.index(p.arm)]]
    # The quick budget runs offline: embedded data only, and never ImageNet weights.
    for p in plan(lesson, "quick", check_data=False):
        assert dataset_spec(p.config.dataset).source == "embedded", (p.arm.id, p.config.dataset)
        assert not p.config.pretrained, p.arm.id
    # ... and its data is present on any machine (the check the command line makes before training).
    plan(lesson, "quick", check_data=True)


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_lesson_round_trips_through_its_source(name):
    """A stored result keeps the lesson's text and parses it again: it must give the same lesson."""
    lesson = get_lesson(name)
    again = parse_lesson(lesson.source, lesson.name, builtin=True)
    assert again.arms == lesson.arms and again.conclusion == lesson.conclusion
    assert again.base == lesson.base and again.budgets == lesson.budgets


def test_get_lesson_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "07_My Lesson.toml"
    path.write_text(VALID)
    lesson = get_lesson(str(path))
    assert lesson.name == "my-lesson" and not lesson.builtin
    with pytest.raises(LessonError, match="lenet-vs-lenetv2"):  # lists the built-in lessons
        get_lesson("lenet-vs-lenet")
    with pytest.raises(LessonError, match="no lesson file"):
        get_lesson(str(tmp_path / "missing.toml"))


def test_settings_merge_data_options_and_overrides():
    lesson = get_lesson("lenet-vs-lenetv2")
    arm = lesson.arms[0]
    base = lesson.settings(arm, "quick")["data_options"]
    merged = lesson.settings(arm, "quick", {"data_options": {"n_train": 300}, "epochs": 1})
    assert merged["data_options"] == {**base, "n_train": 300}  # merged, not replaced
    assert merged["epochs"] == 1
    # the override did not leak into the lesson
    assert lesson.settings(arm, "quick")["data_options"] == base


def test_plan_refuses_unknown_budget_and_bad_overrides():
    lesson = get_lesson("lenet-vs-lenetv2")
    with pytest.raises(LessonError, match="budget"):
        plan(lesson, "medium", check_data=False)
    with pytest.raises(LessonError, match="lrr"):
        plan(lesson, "quick", {"lrr": 1}, check_data=False)
    with pytest.raises(LessonError, match="init_from"):
        plan(lesson, "quick", {"init_from": "some-run"}, check_data=False)
    with pytest.raises(LessonError, match="epochs"):
        plan(lesson, "quick", {"epochs": 0}, check_data=False)
    p = plan(lesson, "quick", {"epochs": 1, "max_steps": 3}, device="cpu", check_data=False)
    assert all(x.config.epochs == 1 and x.config.max_steps == 3 and x.config.device == "cpu" for x in p)


# ---- malformed files: the key and its line ------------------------------------------------------


def test_invalid_toml_names_the_line():
    text = after(VALID, 'name = "Fast"', "lr = = 0.1")
    msg = error_of(text)
    assert "my.toml" in msg and "TOML" in msg
    assert f"line {line_no(text, 'lr = = 0.1')}" in msg


def test_unknown_top_level_key():
    text = VALID.replace('seed = "003"', 'seed = "003"\ntitel = "x"')
    msg = error_of(text)
    assert "'titel'" in msg and "title" in msg  # the key, and a suggestion
    assert f"line {line_no(text, 'titel')}:" in msg


def test_unknown_setting_in_an_arm_names_arm_key_line_and_suggestion():
    text = after(VALID, 'name = "Fast"', "lrr = 0.1")
    msg = error_of(text)
    assert "arms[1].lrr" in msg
    assert line_no(text, "lrr") == 23
    assert "line 23:" in msg
    assert "'lr'" in msg  # did you mean 'lr'?


def test_unknown_setting_in_an_arms_budget_table():
    text = after(VALID, "lr = 0.001", "[arms.quick]\nepoch = 2")
    msg = error_of(text)
    assert "arms[1].quick.epoch" in msg and "'epochs'" in msg
    assert f"line {line_no(text, 'epoch = 2')}:" in msg


def test_unknown_setting_in_the_first_arm_is_not_blamed_on_the_second():
    text = after(VALID, 'name = "Slow"', "lrr = 0.1")
    msg = error_of(text)
    assert "arms[0].lrr" in msg and f"line {line_no(text, 'lrr')}:" in msg


def test_bad_value_type():
    text = after(VALID, 'name = "Fast"', 'epochs = "three"')
    msg = error_of(text)
    assert "arms[1].epochs" in msg and "three" in msg
    assert f"line {line_no(text, 'three')}:" in msg


def test_bad_value_type_in_a_repeated_key_points_at_the_right_line():
    """'lr' appears in both arms: the message must point at the second arm's."""
    text = VALID.replace("lr = 0.001", 'lr = "fast"')
    msg = error_of(text)
    line = line_no(text, 'lr = "fast"')
    assert "arms[1].lr" in msg and f"line {line}:" in msg


def test_out_of_range_value_is_caught_when_the_arms_are_built():
    text = after(VALID, 'name = "Fast"', "epochs = 0")
    msg = error_of(text)
    assert "arms[1]" in msg and "epochs" in msg and "0" in msg
    assert "quick" in msg  # which budget's config failed
    assert re.search(r"line \d+", msg)
    # an out-of-range value in a budget table is caught too
    msg = error_of(VALID.replace("[budget.quick]\nepochs = 1", "[budget.quick]\nepochs = 100000"))
    assert "epochs" in msg and "100000" in msg


def test_out_of_range_momentum_and_unknown_model():
    assert "momentum" in error_of(after(VALID, 'name = "Fast"', "momentum = 1.5"))
    msg = error_of(VALID.replace('model = "lenet"', 'model = "lenet9"'))
    assert "lenet9" in msg


def test_non_finite_number_refused():
    text = after(VALID, 'name = "Fast"', "lr = nan").replace("lr = 0.001\n", "")
    msg = error_of(text)
    assert "arms[1].lr" in msg and "finite" in msg
    assert f"line {line_no(text, 'lr = nan')}:" in msg


def test_duplicate_arm_id():
    text = VALID.replace('id = "fast"', 'id = "slow"')
    msg = error_of(text)
    assert "arms[1].id" in msg and "another arm" in msg
    line = line_no(text, 'name = "Fast"') - 1  # the second arm's id line
    assert f"line {line}:" in msg


@pytest.mark.parametrize("arm_id", ["best", "second", "worst", "expected", "margin", "epochs", "Fast", "1x", "a b", ""])
def test_arm_id_must_be_a_free_identifier(arm_id):
    msg = error_of(VALID.replace('id = "fast"', f'id = "{arm_id}"').replace('expect = "fast"', 'expect = "slow"'))
    assert "arms[1].id" in msg


def test_init_from_must_reference_an_earlier_arm():
    # a run id of this machine: refused (a lesson starts from scratch)
    text = after(VALID, 'name = "Fast"', 'init_from = "20240101-000000-lenet-digits-abcd"')
    msg = error_of(text)
    assert "arms[1].init_from" in msg and "@" in msg
    assert f"line {line_no(text, 'init_from')}:" in msg
    # a later arm (or itself)
    text = after(VALID, 'name = "Slow"', 'init_from = "@fast"')
    msg = error_of(text)
    assert "arms[0].init_from" in msg and "'@fast'" in msg and "before" in msg
    assert f"line {line_no(text, 'init_from')}:" in msg
    assert "before" in error_of(after(VALID, 'name = "Fast"', 'init_from = "@fast"'))
    assert "before" in error_of(after(VALID, 'name = "Fast"', 'init_from = "@nobody"'))
    # an earlier arm: fine, and the reference stays a reference until that arm's run exists
    lesson = parse_lesson(after(VALID, 'name = "Fast"', 'init_from = "@slow"'), "my")
    assert lesson.arm("fast").depends_on("quick") == "slow"
    assert lesson.config(lesson.arm("fast"), "quick").init_from == "@slow"


def test_unknown_template_name_in_the_conclusion():
    text = VALID.replace("{best.name}", "{bestt.name}")
    msg = error_of(text)
    assert "conclusion.expected" in msg and "bestt" in msg
    assert f"line {line_no(text, 'bestt')}:" in msg


def test_unknown_template_attribute():
    text = VALID.replace("{best.best_val_top1:.1%}", "{best.best_val_top:.1%}")
    msg = error_of(text)
    assert "conclusion.expected" in msg and "best_val_top" in msg
    assert f"line {line_no(text, 'best_val_top:')}:" in msg


def test_expect_must_name_an_arm():
    text = VALID.replace('expect = "fast"', 'expect = "faster"')
    msg = error_of(text)
    assert "conclusion.expect" in msg and "faster" in msg and "slow" in msg
    assert f"line {line_no(text, 'expect = ')}:" in msg


def test_unknown_conclusion_key_and_metric():
    text = VALID.replace('expect = "fast"', 'expect = "fast"\nexpectd = "x"')
    msg = error_of(text)
    assert "conclusion.expectd" in msg and f"line {line_no(text, 'expectd')}:" in msg
    msg = error_of(VALID.replace('expect = "fast"', 'expect = "fast"\nmetric = "accuracy"'))
    assert "conclusion.metric" in msg and "accuracy" in msg


@pytest.mark.parametrize("value", ["[]", "{}", '["best_val_top1"]', "1"])
def test_metric_of_the_wrong_type_is_a_lesson_error(value):
    """Regression (a defect found while writing these tests, now fixed): `metric = []` (or a table) in [conclusion] raised TypeError (unhashable type) from
    spec.py's `if metric not in METRICS`, a traceback on the command line instead of a message."""
    msg = error_of(VALID.replace('expect = "fast"', f'expect = "fast"\nmetric = {value}'))
    assert "conclusion.metric" in msg


@pytest.mark.parametrize("table", ["[base]", "[budget.quick]"])
def test_device_in_the_file_is_refused(table):
    text = after(VALID, table, 'device = "cuda"')
    msg = error_of(text)
    assert "device" in msg and f"line {line_no(text, 'device')}:" in msg
    msg = error_of(after(VALID, 'name = "Fast"', 'device = "cpu"'))
    assert "arms[1].device" in msg


def test_missing_parts():
    assert "question" in error_of(VALID.replace('question = "Which learning rate learns faster?"\n', ""))
    assert "conclusion" in error_of(VALID.split("[conclusion]")[0])
    assert "budget.full" in error_of(VALID.replace('[budget.full]\ndataset = "mnist"\n', ""))
    one_arm = VALID.replace('[[arms]]\nid = "fast"\nname = "Fast"\nlr = 0.001\n', "").replace('"fast"', '"slow"')
    assert "2 to 8 arms" in error_of(one_arm)
    msg = error_of(VALID.replace('name = "Fast"\n', ""))
    assert "arms[1].name" in msg and "missing" in msg


def test_bad_seed_and_plots():
    assert "seed" in error_of(VALID.replace('seed = "003"', 'seed = "3"'))
    msg = error_of(VALID.replace('seed = "003"', 'seed = "003"\nplots = ["curves", "pie"]'))
    assert "plots" in msg and "pie" in msg


def test_too_large_file_refused(tmp_path):
    text = VALID + "#" * (MAX_LESSON_BYTES + 1) + "\n"
    with pytest.raises(LessonError, match="at most 64 KB"):
        parse_lesson(text, "big")
    path = tmp_path / "big.toml"
    path.write_text(text)
    with pytest.raises(LessonError, match="at most 64 KB"):
        read_lesson(path)


def test_not_utf8_file_refused(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes(VALID.replace("Slow", "Lent\xe9").encode("latin-1"))
    with pytest.raises(LessonError, match="UTF-8"):
        read_lesson(path)


# ---- a teacher's file: uploaded or by path; the built-in list -------------------------------------


def test_an_uploaded_lesson_is_checked_as_a_file_on_disk(tmp_path):
    lesson = uploaded_lesson("03_My Rates.toml", VALID.encode())
    assert lesson.name == "my-rates" and lesson.path == "03_My Rates.toml" and not lesson.builtin
    assert lesson.source == VALID
    big = (VALID + "#" * (MAX_LESSON_BYTES + 1) + "\n").encode()
    latin = VALID.replace("Slow", "Lent\xe9").encode("latin-1")
    for name, data, message in (("big.toml", big, "big.toml: a lesson file is at most 64 KB"),
                                ("latin.toml", latin, "latin.toml: not a UTF-8 text file"),
                                ("notes.txt", VALID.encode(), "notes.txt: a lesson is a .toml file")):
        with pytest.raises(LessonError, match=message):
            uploaded_lesson(name, data)
        path = tmp_path / name
        path.write_bytes(data)
        if name.endswith(".toml"):  # the same message for the same file read from disk
            with pytest.raises(LessonError, match=message):
                read_lesson(path)


def test_a_lesson_by_path_must_be_a_toml_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text(VALID)
    with pytest.raises(LessonError, match="only .toml lesson files"):
        lesson_at(str(notes))
    mine = tmp_path / "mine.toml"
    mine.write_text(VALID)
    assert lesson_at(f"  {mine}  ").title == "Two learning rates"  # spaces typed around the path
    with pytest.raises(LessonError, match="no lesson file at"):
        lesson_at(str(tmp_path / "gone.toml"))


def test_a_broken_builtin_file_is_reported_and_the_others_still_listed(tmp_path, monkeypatch):
    import cnnlab.lessons.catalog as catalog

    (tmp_path / "01_first.toml").write_text(VALID)
    (tmp_path / "02_broken.toml").write_text(VALID.replace("lr = 0.001", 'lr = "fast"'))
    (tmp_path / "03_third.toml").write_text(VALID)
    monkeypatch.setattr(catalog, "BUILTIN_DIR", tmp_path)
    lessons, problems = read_builtin()
    assert [x.name for x in lessons] == ["first", "third"] and all(x.builtin for x in lessons)
    assert len(problems) == 1 and "02_broken.toml" in str(problems[0]) and "arms[1].lr" in str(problems[0])
    assert builtin_names() == ["first", "broken", "third"]
    with pytest.raises(LessonError, match="02_broken.toml"):
        builtin_lessons()  # the command line's list: one message for the broken file
    assert get_lesson("third").builtin and get_lesson("03_third").name == "third"


def test_long_text_refused():
    assert "longer than" in error_of(VALID.replace("Which learning rate learns faster?", "x" * 3000))


def test_header_with_a_comment_still_gives_the_right_line():
    """Regression (a defect found while writing these tests, now fixed): `_line_of` (spec.py) reads a table header with a trailing comment, such as the built-in
    lenet file's `[budget.full]                 # seed 002: MNIST ...`, as a table named
    "full]   # seed 002: ...", so it loses track of the table and falls back to the key's *first*
    use in the file: a bad `epochs` in [budget.full] is reported at the quick budget's epochs line."""
    text = VALID.replace('[budget.full]\ndataset = "mnist"',
                         '[budget.full]          # the seed\'s own data\ndataset = "mnist"\nepochs = "fifty"')
    msg = error_of(text)
    assert "budget.full.epochs" in msg
    assert f"line {line_no(text, 'fifty')}:" in msg, msg
    # the same for an arm's header
    text = VALID.replace('[[arms]]\nid = "fast"', '[[arms]]   # the second arm\nid = "fast"\nlr = "quick"')
    text = text.replace("lr = 0.001\n", "")
    msg = error_of(text)
    line = line_no(text, 'lr = "quick"')
    assert "arms[1].lr" in msg and f"line {line}:" in msg, msg


# ---- template safety ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [
    "{best.__class__}",
    "{best.name.__class__}",
    "{best.name.__class__.__mro__}",
    "{best[0]}",
    "{best[name]}",
    "{0}",
    "{}",
    "{best!r}",
    "{best.name!r}",
    "{best.name!a}",
    "{best}",  # an arm, not a value
    "{__import__}",
    "{lesson.source}",
    "{best.name.upper}",
    "{best.name:{best.name}}",  # a format spec built from a value
    "{best.name:{0}}",
    "{epochs:{margin}}",
    "{best.best_val_top1:%%}",
    "{best.name:x}",
    "unbalanced {",
    "unbalanced }",
])
def test_unsafe_or_broken_templates_are_refused_at_parse_time(template):
    text = VALID.replace("{best.name} reached {best.best_val_top1:.1%}.", template)
    msg = error_of(text)
    assert "conclusion.expected" in msg


@pytest.mark.parametrize("key", ["unexpected", "close", "always", "diverged"])
def test_every_template_is_checked(key):
    text = VALID + f'{key} = "{{best.__class__}}"\n'
    msg = error_of(text)
    assert f"conclusion.{key}" in msg and f"line {line_no(text, '__class__')}:" in msg


def test_huge_format_width_is_refused():
    """Regression (a defect found while writing these tests, now fixed): a format spec's width is passed straight to `format()` by `_Formatter.format_field`
    (conclude.py). `{best.name:>99999999999}` makes parsing the lesson raise MemoryError (not a
    LessonError; not tried here, since on a machine with much memory it would fill it); a width of
    10 million is accepted and makes a conclusion of 10 MB, stored in result.json, whose reader
    refuses files over 4 MB. Format specs should be limited to a safe pattern (fill/align, sign,
    ',', a width of a few digits, precision, type)."""
    msg = error_of(VALID.replace("{best.name} reached", "{best.name:>10000000} reached"))
    assert "conclusion.expected" in msg


def test_render_allows_the_documented_names_and_prints_missing_values_as_na():
    arm = {"id": "fast", "name": "Fast", "best_val_top1": 0.875, "test_top1": None}
    names = {"best": arm, "fast": arm, "epochs": 3}
    assert render("{best.name} {best.best_val_top1:.1%} {epochs}", names) == "Fast 87.5% 3"
    assert render("{fast.name!s:>6}", names) == "  Fast"
    assert render("{best.test_top1:.1%}", names) == "n/a"  # measured as None
    assert render("{best.seconds:.1f} s", names) == "n/a s"  # not measured at all
    assert render("{{literal}} {best.name}", names) == "{literal} Fast"


def test_valid_lesson_templates_with_the_documented_names():
    text = VALID.replace(
        "{best.name} reached {best.best_val_top1:.1%}.",
        "{best.name} {second.name} {worst.name} {expected.name} {fast.lr} {slow.model} {gap:.1%} {lead:.1%} "
        "{margin:.1%} {epochs} {budget} {metric} {n_arms} {dataset} {most_params.params:,} "
        "{fewest_params.name} {fastest.epoch_seconds:.2f} {slowest.name} {best.test_top1:.1%}")
    lesson = parse_lesson(text + 'diverged = "{arm.name} stopped: {arm.message}"\n', "my")
    assert lesson.conclusion.diverged


def test_the_readme_lesson_example_parses():
    """The lesson file shown in the README is a lesson cnnlab reads, in both budgets."""
    import re
    from pathlib import Path

    from cnnlab.lessons import parse_lesson, plan

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README shows a lesson file"
    lesson = parse_lesson(blocks[0], "readme-example")
    assert [a.id for a in lesson.arms] == ["plain", "heavy"]
    for budget in ("quick", "full"):
        assert len(plan(lesson, budget, check_data=False)) == 2


# ---- a lesson file's own translations (issue 28) ------------------------------------------------

TRANSLATED = (VALID.replace('title = "Two learning rates"', 'title.en = "Two learning rates"\n'
                            'title.it = "Due learning rate"\ntitle.zh = "两种学习率"')
              .replace('name = "Fast"', 'name.en = "Fast"\nname.it = "Veloce"')
              .replace('expected = "{best.name} reached {best.best_val_top1:.1%}."',
                       'expected.en = "{best.name} reached {best.best_val_top1:.1%}."\n'
                       'expected.it = "{best.name} ha raggiunto {best.best_val_top1:.1%}."')
              .replace('question = "Which learning rate learns faster?"',
                       'question = "Which learning rate learns faster?"\ndiscuss.en = ["Why?"]\ndiscuss.it = ["Perché?"]'))


def test_a_lesson_file_carries_its_own_translations(speak):
    speak("it")
    from cnnlab.lessons.conclude import conclude

    lesson = parse_lesson(TRANSLATED, "my")
    assert (lesson.title, lesson.arm("fast").name, lesson.discuss) == ("Two learning rates", "Fast", ("Why?",))
    assert lesson.tr(lesson.title) == "Due learning rate"
    assert lesson.tr("Fast") == "Veloce" and lesson.tr("Why?") == "Perché?"
    assert lesson.tr("Slow") == "Slow"  # untranslated: English
    arms = [{"id": "slow", "name": "Slow", "status": "finished", "best_val_top1": 0.2, "num_classes": 10,
             "val_images": 1000},
            {"id": "fast", "name": "Fast", "status": "finished", "best_val_top1": 0.9, "num_classes": 10,
             "val_images": 1000}]
    assert conclude(lesson, arms).startswith("Veloce ha raggiunto 90,0")
    assert set(lesson.texts()) >= {"Two learning rates", "Fast", "Why?", "{best.name} reached {best.best_val_top1:.1%}."}


def test_a_translated_template_is_checked_like_the_english_one():
    bad = TRANSLATED.replace("{best.name} ha raggiunto", "{bestt.name} ha raggiunto")
    message = error_of(bad)
    assert "conclusion.expected.it" in message and "bestt" in message


def test_translations_must_be_complete_and_named_by_language():
    assert "discuss.it" in error_of(TRANSLATED.replace('discuss.it = ["Perché?"]', 'discuss.it = ["a", "b"]'))
    message = error_of(TRANSLATED.replace('title.it =', 'title.Italian ='))
    assert "title.Italian" in message and "language code" in message
    assert "title.en" in error_of(TRANSLATED.replace('title.en = "Two learning rates"\n', ""))
