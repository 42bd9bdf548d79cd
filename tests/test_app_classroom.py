"""The class session in the app (AppTest): a student's link shows only the question, takes one answer, and
says a bad or ended code plainly; the teacher's QR code encodes the link."""

from __future__ import annotations

import contextvars

from apphelpers import MAIN
from streamlit.testing.v1 import AppTest

from cnnlab import i18n
from cnnlab.lessons import classroom as cls
from cnnlab.lessons.catalog import get_lesson


def student(code: str, lang: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["class"] = code
    if lang:
        at.query_params["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_student_sees_the_question_answers_once_and_nothing_else():
    session = cls.start_session(get_lesson("learning-rate"))
    at = student(session.code)
    assert at.title[0].value == get_lesson("learning-rate").title
    assert session.prompt in [h.value for h in at.subheader]
    radio = at.radio(key="class-guess")
    assert radio.options == [a.name for a in get_lesson("learning-rate").arms]
    assert not at.sidebar.button and not at.tabs  # no navigation, no other page's widgets
    at.button[0].click().run()  # nothing chosen yet
    assert "Choose an answer first." in [w.value for w in at.warning]
    at.radio(key="class-guess").set_value("good")
    at.button[0].click().run()
    assert not at.exception
    assert cls.load_session(session.code).counts == {"small": 0, "good": 1, "large": 0}
    assert any("Your answer is in" in s.value for s in at.success)
    assert not at.radio  # the form is gone: one answer per browser
    at.run()
    assert cls.load_session(session.code).answers == 1


def test_a_students_link_keeps_the_class_language():
    """A link with ?lang=zh: the lesson's title, its question and arms in the student's language (the lesson's
    translations), the form and its messages from the catalogue."""
    contextvars.copy_context().run(_a_student_in, "zh")


def _a_student_in(code: str) -> None:
    from cnnlab.i18n import _

    i18n.set_language(code)  # this thread too (a copied context): AppTest formats the widgets' options here
    lesson = get_lesson("learning-rate")
    session = cls.start_session(lesson)
    at = student(session.code, code)
    assert at.title[0].value == lesson.tr(lesson.title)
    assert lesson.guess().prompt in [h.value for h in at.subheader]
    assert at.radio(key="class-guess").options == [lesson.tr(a.name) for a in lesson.arms]
    assert at.button[0].label == _("Send my answer")
    at.button[0].click().run()
    assert _("Choose an answer first.") in [w.value for w in at.warning]


def test_a_number_guess_and_a_closed_session():
    session = cls.start_session(get_lesson("overfitting"))
    at = student(session.code)
    at.number_input(key="class-guess").set_value(72)
    at.button[0].click().run()
    assert cls.load_session(session.code).values == [0.72]
    late = cls.start_session(get_lesson("overfitting"))
    cls.reveal(late.code)
    at = student(late.code)
    assert any("answers are closed" in i.value for i in at.info) and not at.number_input


def test_a_bad_or_unknown_code_is_one_clear_message():
    assert "not a class code" in student("../etc").error[0].value
    assert "no class session ZZZZZ" in student("ZZZZZ").error[0].value


def test_the_qr_code_is_a_png_of_the_link():
    from app.classroom_view import qr_png

    data = qr_png("http://localhost:8501/?class=ABCDE")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 200


def test_the_teacher_starts_a_session_reveals_and_sees_the_result_beside_the_guesses(monkeypatch):
    """Lessons page: start, three answers, reveal (the chart counts them), then a result saved after the start
    appears beside the guesses and is kept with it."""
    from apphelpers import open_view

    from cnnlab.lessons.runner import load_result, save_result

    at = open_view("lessons")
    at.button(key="class-start").click().run()
    assert not at.exception
    (code,) = at.session_state["class-session"].values()
    for i, v in enumerate(["lenet", "lenet_v2", "lenet_v2"]):
        cls.answer(code, f"student-{i:04d}", v)
    assert any(f"Class code **{code}**" in m.value for m in at.markdown)
    at.button(key=f"class-reveal-{code}").click().run()
    assert not at.exception and cls.load_session(code).revealed
    lesson = get_lesson("lenet-vs-lenetv2")
    arms = [{"id": a.id, "name": a.name, "status": "finished", "message": "", "best_val_top1": v, "val_images": 360,
             "num_classes": 10, "compare": True} for a, v in zip(lesson.arms, (0.50, 0.90))]
    rid = save_result({"lesson": lesson.name, "title": lesson.title, "budget": "quick",
                       "created": "2099-01-01T00:00:00", "conclusion": "c", "arms": arms,
                       "lesson_source": lesson.source, "state": "finished", "builtin": True})
    at.run()
    assert not at.exception
    text = [m.value for m in at.markdown if "came out on top" in m.value]
    assert text and "2 of 3 expected LeNetV2 (ReLU, max pooling) to come out on top" in text[0]
    assert "LeNetV2 (ReLU, max pooling) (90.0%) came out on top, beyond the noise. 2 of 3 guessed it." in text[0]
    assert load_result(rid).data["guesses"]["counts"] == {"LeNet (tanh, average pooling)": 1,
                                                          "LeNetV2 (ReLU, max pooling)": 2}
    assert any("Explain the gap" in m.value for m in at.markdown)


def test_a_teacher_on_localhost_gets_a_link_students_can_reach():
    from app.classroom_view import lan_address

    address = lan_address()
    assert address is None or (not address.startswith("127.") and address.count(".") == 3)
