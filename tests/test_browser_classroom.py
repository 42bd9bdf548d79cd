"""A class session in Chromium (issue 26): the teacher's Lessons page and three students, each in a browser of
their own; the reveal counts the three answers; a second answer from the same browser is refused; a student's
page has no navigation; the run's result appears beside the guesses. Every wait is for something the page shows;
the timeouts are safety nets."""

from __future__ import annotations

import re

import pytest
import test_browser
from test_browser import CHROMIUM, ERROR_SELECTOR, wait_idle

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (.ci/run installs it)")
# the app with the Lessons page's tiny-budget hook (CNNLAB_LESSON_OVERRIDES): the run takes seconds
lesson_app, browser, shots = test_browser.lesson_app, test_browser.browser, test_browser.shots
LESSON = "6. The learning rate"  # the quickest built-in lesson: three LeNet-5 arms on digits


def student_answers(context, url: str, code: str, choice: str) -> None:
    page = context.new_page()
    page.goto(f"{url}/?class={code}")
    page.get_by_text("Send my answer").wait_for(timeout=60_000)
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # nothing of the app but the question
    page.get_by_text(choice, exact=True).click()
    page.get_by_text("Send my answer").click()
    page.get_by_text("Your answer is in").wait_for(timeout=60_000)
    page.close()


def test_a_class_guesses_the_teacher_reveals_and_the_result_comes_beside(browser, lesson_app, shots):
    app_url, cache = lesson_app
    # a browser context of its own: the other modules' pages (other servers on 127.0.0.1, other ports) leave
    # cookies for the same host in the default one
    teacher = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    teacher.goto(f"{app_url}/lessons")
    teacher.get_by_text(LESSON).first.click()
    teacher.get_by_role("heading", name="The learning rate: too small, about right, too large").wait_for(timeout=60_000)
    wait_idle(teacher)
    teacher.get_by_text("Class session: the class guesses before the run").click()
    teacher.get_by_role("button", name="Start a class session").click()
    wait_idle(teacher)
    teacher.screenshot(path=str(shots / "class-start.png"), full_page=True)
    code_text = teacher.get_by_text(re.compile(r"Class code [A-Z2-9]{5}")).first
    try:
        code_text.wait_for(timeout=60_000)
    except Exception:  # what the page and the server said, in the failure's report
        teacher.screenshot(path=str(shots / "class-start-failed.png"), full_page=True)
        log = (cache / "streamlit.log").read_text(errors="replace")[-4000:]
        text = teacher.get_by_test_id("stMain").inner_text()[-3000:]
        pytest.fail(f"no class code on the teacher's page.\n--- page ---\n{text}\n--- server log ---\n{log}")
    code = re.search(r"Class code ([A-Z2-9]{5})", code_text.inner_text()).group(1)

    contexts = [browser.new_context(viewport={"width": 420, "height": 800}) for _ in range(3)]
    for context, choice in zip(contexts, ["lr 0.001 (too small)", "lr 0.1 (about right)", "lr 0.1 (about right)"]):
        student_answers(context, app_url, code, choice)
    again = contexts[0].new_page()  # the same browser, a new tab: its answer is already in
    again.goto(f"{app_url}/?class={code}")
    again.get_by_text("Your answer is in").wait_for(timeout=60_000)
    assert again.get_by_text("Send my answer").count() == 0
    again.screenshot(path=str(shots / "class-student.png"))

    # the live count reaches 3 without a click, then the reveal
    teacher.locator('[data-testid="stMetricValue"]', has_text=re.compile(r"^3$")).wait_for(timeout=60_000)
    teacher.get_by_role("button", name="Reveal the guesses").click()
    teacher.get_by_text("Guesses (3): lr 0.001 (too small) 1, lr 0.1 (about right) 2, lr 10 (too large) 0").wait_for(
        timeout=60_000)
    teacher.screenshot(path=str(shots / "class-reveal.png"), full_page=True)

    teacher.get_by_role("button", name=re.compile(r"^Run")).click()
    beside = teacher.get_by_text(re.compile(r"2 of 3 expected lr 0\.1 \(about right\) to come out on top"))
    beside.first.wait_for(timeout=600_000)
    wait_idle(teacher)
    assert teacher.get_by_text("Explain the gap").count() >= 1
    assert teacher.locator(ERROR_SELECTOR).count() == 0
    teacher.set_viewport_size({"width": 1280, "height": 1600})  # the whole session box in one picture
    teacher.get_by_test_id("stExpander").filter(has_text="Class code").screenshot(path=str(shots / "class-result.png"))
    for context in contexts:
        context.close()
    teacher.close()
