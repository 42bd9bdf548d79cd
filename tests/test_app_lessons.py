"""AppTest of the Lessons page: the list, a result shown from disk, a tiny lesson run through the
page, a teacher's malformed lesson file, failed arms.

Results "from disk" are built here from made-up measurements and saved with the runner's own
``save_result``: no training. The one run through the page uses the page's test hook
(``st.session_state["lesson_overrides"]``) for a tiny budget, and waits for the lesson's end
event (``LessonRun.wait``), never for some wall-clock time.
"""

from __future__ import annotations

import contextvars
from datetime import datetime, timedelta

import pytest
from apphelpers import MAIN, open_view
from streamlit.testing.v1 import AppTest

from cnnlab import i18n

LESSON = "lenet-vs-lenetv2"
TINY = {"epochs": 1, "max_steps": 3}

BAD_LESSON = '''title = "A broken lesson"
seed = "002"
question = "Does it parse?"

[base]
dataset = "digits"

[budget.quick]
epochs = 1

[budget.full]
epochs = 2

[[arms]]
id = "a"
name = "First"
model = "lenet"

[[arms]]
id = "b"
name = "Second"
model = "lenet_v2"
lr = "fast"

[conclusion]
expected = "{best.name} won."
'''


@pytest.fixture(autouse=True)
def _no_measured_times(tmp_path, monkeypatch):
    """The page reads cnnlab/lessons/measured.json: here a file of the test's own (none unless it writes one)."""
    import cnnlab.lessons.measure as measure

    monkeypatch.setattr(measure, "MEASURED_FILE", tmp_path / "measured.json")
    return tmp_path / "measured.json"


def unescaped(text: str) -> str:
    """The page shows a lesson's own text literally: markdown characters are backslash-escaped."""
    return text.replace("\\", "")


def all_text(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader")
             for e in getattr(at, kind)]
    return unescaped(" ".join(str(p) for p in parts))


def fake_result(lesson, *, created: datetime | None = None, change: dict | None = None, overrides=None,
                effect: dict | None = None) -> str:
    """Save a result of ``lesson`` with made-up measurements (arm i: 90 - 10 i % validation), each arm's
    fields updated by ``change[arm id]``; the conclusion is written by the lesson's own templates."""
    from cnnlab.lessons import conclude
    from cnnlab.lessons.conclude import example_arms
    from cnnlab.lessons.runner import save_result

    arms = example_arms(lesson)
    for a in arms:
        a["curves"] = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "elapsed": 3.0 * e,
                        "train_top1": a["final_train_top1"] - 0.1 * (3 - e), "val_top1": a["best_val_top1"] - 0.1 * (3 - e)}
                       for e in (1, 2, 3)]
        a.update((change or {}).get(a["id"], {}))
        if a["status"] != "finished":
            a["curves"] = a["curves"][:1]
    result = {
        "version": 1, "lesson": lesson.name, "title": lesson.title, "budget": "quick", "seeds": list(lesson.seeds),
        "question": lesson.question, "created": (created or datetime.now()).isoformat(timespec="seconds"),
        "seconds": 12.0, "state": "finished", "overrides": overrides or {}, "arms": arms,
        "conclusion": conclude(lesson, arms, "quick"), "lesson_source": lesson.source, "builtin": lesson.builtin,
        "machine": {"device": "cpu", "threads": 2, "cpus": 2, "torch": "test"},
    }
    if effect is not None:  # results saved before effects were recorded have none
        result["effect"] = effect
    return save_result(result)


def test_page_opens_and_lists_every_builtin_lesson_with_its_question():
    from cnnlab.lessons import builtin_lessons

    lessons = builtin_lessons()
    at = open_view("lessons")
    assert at.title[0].value == "Lessons"
    assert not at.error
    pick = at.radio(key="lesson-pick")
    # one line per lesson (nothing measured here: no time), no captions: the list fits without a scroll box
    assert pick.options == [f"{i}. {x.title}" for i, x in enumerate(lessons, 1)]
    assert not any(pick.proto.captions)
    page = all_text(at)
    assert lessons[0].question in page  # the chosen lesson's question, its arms, the budget that runs and why
    assert lessons[1].question not in page  # only the chosen lesson's
    assert all(a.name in page for a in lessons[0].arms)
    assert "measured:" not in page
    assert "Runs the **quick** budget (the default" in page
    assert at.radio(key="lesson-budget").value == "quick"
    assert "no saved result" in at.info[0].value
    assert at.button(key="lesson-run").label == "Run"


def test_full_budget_offered_only_when_it_can_run_and_says_why_not():
    from cnnlab.lessons import full_budget_state, get_lesson

    can, why = full_budget_state(get_lesson(LESSON))
    at = open_view("lessons")
    budget = at.radio(key="lesson-budget")
    assert budget.disabled is (not can)
    if not can:  # no MNIST offline in tests: the reason is on the page
        assert unescaped(why) in all_text(at)


def test_a_stored_result_is_shown_from_disk_without_training():
    from cnnlab.jobs import get_manager
    from cnnlab.lessons import get_lesson, load_result

    lesson = get_lesson(LESSON)
    rid = fake_result(lesson)
    jobs_before = len(get_manager().jobs())
    at = open_view("lessons")
    assert not at.exception and not at.error
    assert len(get_manager().jobs()) == jobs_before  # nothing was trained
    assert at.button(key="lesson-run").label == "Run again"
    table = at.table[0].value
    assert list(table.index) == [a.name for a in lesson.arms]
    assert list(table["parameters"]) == ["1,000", "2,000"]  # readable counts
    assert list(table["best val top-1"]) == ["90.0%", "80.0%"]  # percentages
    assert list(table["status"]) == ["finished", "finished"]
    assert "test top-1" in table.columns
    conclusion = load_result(rid).conclusion
    assert any(unescaped(i.value) == conclusion for i in at.info), [i.value for i in at.info]
    assert rid in all_text(at)
    assert len(at.get("vega_lite_chart")) >= 3  # accuracy and loss curves, the gap plot the lesson asks for


def test_earlier_results_can_be_picked_and_the_newest_is_shown_first():
    from cnnlab.lessons import get_lesson, load_result

    lesson = get_lesson(LESSON)
    now = datetime.now()
    # the older run: the arm the lecture expects first lost clearly, and the conclusion says so
    older = fake_result(lesson, created=now - timedelta(days=1),
                        change={"lenet_v2": {"best_val_top1": 0.5, "final_val_top1": 0.5}})
    newer = fake_result(lesson, created=now, overrides=TINY)
    at = open_view("lessons")
    pick = at.selectbox(key="lesson-result")
    assert pick.options[0].startswith(now.isoformat(timespec="seconds").replace("T", " "))
    assert "newest" in pick.options[0]
    assert "epochs=1" in pick.options[0]  # a result made with the test hook says so
    assert pick.value == newer
    assert any(unescaped(i.value) == load_result(newer).conclusion for i in at.info)
    pick.set_value(older).run()
    assert not at.exception
    old_conclusion = load_result(older).conclusion
    assert "did better than" in old_conclusion  # honest: the expected winner lost
    assert any(unescaped(i.value) == old_conclusion for i in at.info)
    assert list(at.table[0].value["best val top-1"]) == ["90.0%", "50.0%"]


def test_a_saved_result_is_deleted_after_a_confirmation_and_the_others_stay():
    from cnnlab.lessons import get_lesson, list_results

    lesson = get_lesson(LESSON)
    now = datetime.now()
    older = fake_result(lesson, created=now - timedelta(days=1))
    trial = fake_result(lesson, created=now, overrides=TINY)  # e.g. a trial run before class
    at = open_view("lessons")
    assert at.selectbox(key="lesson-result").value == trial
    at.button(key="lesson-delete").click().run()
    assert not at.exception
    assert any(trial in w.value for w in at.warning)  # which result, said before anything is removed
    assert at.button(key="lesson-delete-confirm").disabled  # not before "I am sure"
    at.button(key="lesson-delete-cancel").click().run()
    assert "lesson-delete-confirm" not in [b.key for b in at.button]
    assert [r.id for r in list_results(LESSON)] == [trial, older]  # cancel removed nothing
    at.button(key="lesson-delete").click().run()
    at.checkbox(key=f"lesson-sure-{trial}").check().run()
    at.button(key="lesson-delete-confirm").click().run()
    assert not at.exception and not at.error
    assert [r.id for r in list_results(LESSON)] == [older]
    assert any(trial in s.value and "deleted" in s.value for s in at.success)
    assert at.session_state["lesson-result"] == older  # the remaining result is shown
    assert "lesson-result" not in [w.key for w in at.selectbox]  # one result left: no picker
    assert at.button(key="lesson-run").label == "Run again"


def test_running_a_tiny_lesson_through_the_page_shows_the_table_and_conclusion():
    from cnnlab.lessons import lesson_runs, load_result

    at = open_view("lessons")
    at.session_state["lesson_overrides"] = TINY  # the page's test hook: a tiny budget for every arm
    at.run()
    assert "epochs=1, max_steps=3" in all_text(at)
    before = {r.id for r in lesson_runs(LESSON)}
    at.button(key="lesson-run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = next(r for r in lesson_runs(LESSON) if r.id not in before)
    assert at.session_state["lesson-live"] == run.id
    assert {a.plan.config.max_steps for a in run.arms} == {3}
    assert at.button(key="lesson-run").disabled  # one run of a lesson at a time
    assert at.button(key=f"lesson-stop-{run.id}")
    assert run.wait(600), "the lesson did not end"
    assert run.state == "finished", run.message
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["lesson-result"] == run.result_id
    stored = load_result(run.result_id)
    assert any(unescaped(i.value) == stored.conclusion for i in at.info)
    assert stored.conclusion and ("epoch" in stored.conclusion or "did not learn" in stored.conclusion)
    table = at.table[0].value
    assert list(table.index) == [a.plan.arm.name for a in run.arms]
    assert list(table["status"]) == ["finished", "finished"]
    assert all(v.endswith("%") for v in table["best val top-1"])
    assert list(table["parameters"]) == [f"{a['params']:,}" for a in stored.arms]
    assert at.button(key="lesson-run").label == "Run again" and not at.button(key="lesson-run").disabled


def test_a_malformed_uploaded_lesson_names_the_key_and_line():
    from cnnlab.errors import LessonError
    from cnnlab.lessons import parse_lesson

    with pytest.raises(LessonError) as err:
        parse_lesson(BAD_LESSON, "broken", source="broken.toml")
    assert "line 23" in str(err.value) and "'arms[1].lr'" in str(err.value)
    at = open_view("lessons")
    at.segmented_control(key="lesson-kind").set_value("own").run()
    assert at.info and "Upload a lesson file" in at.info[0].value
    at.file_uploader(key="lesson-upload").set_value(("broken.toml", BAD_LESSON.encode(), "application/toml")).run()
    assert not at.exception
    assert at.error and str(err.value) in unescaped(at.error[0].value)
    assert not at.table


def test_a_lesson_by_path_must_be_a_toml_file_and_is_checked(tmp_path):
    at = open_view("lessons")
    at.segmented_control(key="lesson-kind").set_value("own").run()
    at.radio(key="lesson-open").set_value("path").run()
    assert at.info and "Type the path" in at.info[0].value
    other = tmp_path / "notes.txt"
    other.write_text("title = 'x'")
    at.text_input(key="lesson-path").input(str(other)).run()
    assert at.error and "only .toml lesson files" in at.error[0].value
    bad = tmp_path / "broken.toml"
    bad.write_text(BAD_LESSON)
    at.text_input(key="lesson-path").input(str(bad)).run()
    assert not at.exception
    assert at.error and "broken.toml, line 23: key 'arms[1].lr'" in unescaped(at.error[0].value)
    good = tmp_path / "mine.toml"
    good.write_text(BAD_LESSON.replace('lr = "fast"', "lr = 0.05"))
    at.text_input(key="lesson-path").input(str(good)).run()
    assert not at.exception and not at.error
    assert at.subheader[0].value == "A broken lesson"
    assert "no saved result" in at.info[-1].value


def test_an_oversized_upload_is_refused_with_a_message():
    at = open_view("lessons")
    at.segmented_control(key="lesson-kind").set_value("own").run()
    big = BAD_LESSON + "#" * (70 * 1024)
    at.file_uploader(key="lesson-upload").set_value(("big.toml", big.encode(), "application/toml")).run()
    assert not at.exception
    assert at.error and "at most 64 KB" in at.error[0].value


def test_failed_and_diverged_arms_are_shown_with_their_message_and_the_rest_still_shows(tmp_path):
    from cnnlab.lessons import load_result, read_lesson

    source = BAD_LESSON.replace('lr = "fast"', "lr = 0.05").replace(
        '[conclusion]', '[[arms]]\nid = "c"\nname = "Third"\nmodel = "lenet"\n\n[conclusion]').replace(
        'seed = "002"', 'seed = "002"\nplots = ["curves", "gap", "time", "params"]')
    path = tmp_path / "three.toml"
    path.write_text(source)
    lesson = read_lesson(path)
    rid = fake_result(lesson, change={
        "b": {"status": "failed", "message": "out of memory at step 7: try a smaller batch."},
        "c": {"status": "diverged", "message": "the loss became NaN at epoch 1, step 12; training stopped there.",
              "best_val_top1": None, "final_val_top1": None, "final_train_top1": None, "gap": None},
    })
    at = open_view("lessons")
    at.segmented_control(key="lesson-kind").set_value("own").run()
    at.radio(key="lesson-open").set_value("path").run()
    at.text_input(key="lesson-path").input(str(path)).run()
    assert not at.exception
    errors = [unescaped(e.value) for e in at.error]
    warnings = [unescaped(w.value) for w in at.warning]
    assert any("Second** failed: out of memory at step 7" in e for e in errors), errors
    assert any("Third** diverged: the loss became NaN" in w for w in warnings), warnings
    table = at.table[0].value
    assert list(table["status"]) == ["finished", "failed", "diverged"]
    assert table.loc["Third", "best val top-1"] == "—"
    conclusion = load_result(rid).conclusion
    assert "Second failed" in conclusion and "Third" in conclusion
    assert any(unescaped(i.value) == conclusion for i in at.info)
    assert len(at.get("vega_lite_chart")) == 5  # two curves, gap, time, params: the finished arm still shows


def test_a_teachers_lesson_run_before_opens_from_its_saved_result_without_the_file(tmp_path):
    from cnnlab.lessons import load_result, read_lesson

    path = tmp_path / "mine.toml"
    path.write_text(BAD_LESSON.replace('lr = "fast"', "lr = 0.05"))
    rid = fake_result(read_lesson(path))
    path.unlink()  # the result keeps the lesson's text
    at = open_view("lessons")
    at.segmented_control(key="lesson-kind").set_value("own").run()
    at.radio(key="lesson-open").set_value("saved").run()
    assert at.selectbox(key="lesson-saved").options == ["A broken lesson · mine"]
    at.selectbox(key="lesson-saved").set_value("mine").run()
    assert not at.exception and not at.error
    assert at.subheader[0].value == "A broken lesson"
    assert any(unescaped(i.value) == load_result(rid).conclusion for i in at.info)
    assert at.button(key="lesson-run").label == "Run again"


def test_stop_ends_the_lesson_and_keeps_what_was_measured():
    """Run the real quick budget and press Stop at once: the lesson ends "cancelled" (an event, not a
    timing) and its result says so."""
    from cnnlab.lessons import lesson_runs

    at = open_view("lessons")
    at.button(key="lesson-run").click().run()
    assert not at.exception and not at.error
    run = lesson_runs(LESSON)[-1]
    at.button(key=f"lesson-stop-{run.id}").click().run()
    assert run.wait(600), "the stopped lesson did not end"
    assert run.state == "cancelled", (run.state, run.message)
    at.run()
    assert not at.exception
    assert any("was stopped" in w.value for w in at.warning)
    statuses = list(at.table[0].value["status"])
    assert "cancelled" in statuses and "finished" not in statuses
    assert at.info and at.info[0].value  # a conclusion, saying the run cannot answer the question


def test_the_list_shows_each_lessons_measured_time_from_measured_json(_no_measured_times):
    """Times laid out in measured.json (as ``lessons --measure`` writes it) show in the list, rounded; a
    lesson not measured, and a damaged entry, show none."""
    import json

    from cnnlab.lessons import builtin_lessons

    lessons = builtin_lessons()
    _no_measured_times.write_text(json.dumps({
        lessons[0].name: {"seconds": 28.4, "seconds_by_seed": {"0": 28.4}, "shown": [0], "short": {},
                          "arms": {}, "measured": "2026-01-01", "machine": {"cpus": 2, "threads": 2, "device": "cpu"}},
        lessons[2].name: {"seconds": 131.0, "machine": {"cpus": 2, "device": "cpu"}},
        lessons[3].name: {"seconds": "fast"},  # damaged: ignored
        "no-such-lesson": {"seconds": 5.0},
    }))
    at = open_view("lessons")
    assert not at.exception and not at.error
    options = at.radio(key="lesson-pick").options
    assert options[0] == f"1. {lessons[0].title} · about 30 s"
    assert options[1] == f"2. {lessons[1].title}"
    assert options[2] == f"3. {lessons[2].title} · about 2 min"
    assert options[3] == f"4. {lessons[3].title}"
    assert "quick budget measured: 28 s on a 2-core CPU" in all_text(at)  # the chosen lesson, exactly
    at.radio(key="lesson-pick").set_value(lessons[1].name).run()
    assert not at.exception
    assert "measured:" not in all_text(at)


def test_a_result_says_whether_it_showed_the_lecture_effect():
    from cnnlab.lessons import get_lesson

    lesson = get_lesson(LESSON)
    now = datetime.now()
    shown = fake_result(lesson, created=now, effect={"shown": True, "why": []})
    short = fake_result(lesson, created=now - timedelta(hours=1), effect={
        "shown": False, "why": ["LeNet did not learn.", "LeNetV2 came first by 2.0 points, within the noise."]})
    old = fake_result(lesson, created=now - timedelta(hours=2))  # saved before effects were recorded
    at = open_view("lessons")
    assert not at.exception and not at.error
    assert at.selectbox(key="lesson-result").value == shown
    assert [s.value for s in at.success] == ["This run shows the effect the lecture teaches."]
    assert not at.warning
    at.selectbox(key="lesson-result").set_value(short).run()
    assert not at.exception and not at.success
    warning = unescaped(at.warning[0].value)
    assert warning.startswith("This run does not show the effect the lecture teaches")
    assert "- LeNet did not learn." in warning and "within the noise." in warning
    at.selectbox(key="lesson-result").set_value(old).run()
    assert not at.exception
    assert not at.success and not at.warning
    assert at.info  # the conclusion still shows


@pytest.mark.parametrize("code", ["it", "zh"])
def test_a_stored_result_reads_in_the_language_of_the_link(code):
    """?lang=it or ?lang=zh: the page's own words from the catalogue, the lesson's texts through lesson.tr, and
    the table's headings, states and numbers in that language (12,5 % in Italian)."""
    contextvars.copy_context().run(_a_stored_result_in, code)


def _a_stored_result_in(code: str) -> None:
    from cnnlab.i18n import _, fmt
    from cnnlab.lessons import get_lesson

    i18n.set_language(code)  # this thread too (a copied context): AppTest formats the widgets' options here
    lesson = get_lesson(LESSON)
    fake_result(lesson)
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["lang"] = code
    at.run()
    at.switch_page("views/lessons.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == _("Lessons")
    assert unescaped(lesson.tr(lesson.question)) in all_text(at)
    assert at.button(key="lesson-run").label == _("Run again")
    table = at.table[0].value
    assert list(table.index) == [lesson.tr(a.name) for a in lesson.arms]
    assert list(table[_("best val top-1")])[0] == fmt(0.9, ".1%")
    assert list(table[_("status")]) == [_("finished")] * 2
