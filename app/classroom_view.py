"""Predict, observe, explain in the app: the student's answer page (``?class=CODE``) and the teacher's panel on
the Lessons page (the code, a link and a QR code, the count of answers, the reveal, the result beside the
guesses and the questions to discuss). The sessions themselves are :mod:`cnnlab.lessons.classroom`."""

from __future__ import annotations

import io
import secrets
import socket
from datetime import datetime
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import altair as alt
import pandas as pd
import segno
import streamlit as st

from cnnlab.errors import CnnlabError
from cnnlab.i18n import _, fmt
from cnnlab.lessons import classroom as cls
from cnnlab.lessons import Lesson
from cnnlab.lessons.catalog import get_lesson
from cnnlab.lessons.runner import StoredResult, attach_guesses, load_result

COOKIE = "cnnlab_browser"  # a random token that tells one browser from another: one answer each
SESSION_KEY = "class-session"  # the teacher's current session code, per lesson
REFRESH_S = 2.0


# ---- the student's page ---------------------------------------------------------------------------------


def browser_token() -> str:
    """This browser's token: its cookie if it has one, else a new one (kept for this tab, and written to
    the cookie so that another tab of the same browser counts as the same student)."""
    token = st.context.cookies.get(COOKIE)
    if isinstance(token, str) and 16 <= len(token) <= 64 and token.isalnum():
        return token
    if "class-browser" not in st.session_state:
        st.session_state["class-browser"] = secrets.token_hex(16)
    token = st.session_state["class-browser"]
    st.html(f"<script>document.cookie = '{COOKIE}={token}; path=/; max-age=86400; SameSite=Strict';</script>",
            unsafe_allow_javascript=True)
    return token


def student_page(code: str) -> None:
    """What a student's link shows: the lesson's question and its choices, one answer; nothing else of the app
    (no navigation, no sidebar)."""
    st.html("<style>[data-testid='stSidebar'], [data-testid='stSidebarCollapsedControl'] {display: none;}</style>")
    try:
        session = cls.load_session(code)
        lesson = get_lesson(session.lesson)
    except CnnlabError as e:
        st.error(str(e))
        return
    st.title(lesson.tr(lesson.title))
    st.caption(_("Class session {code}: your answer is anonymous, one per browser.").format(code=session.code))
    voter = browser_token()
    if cls.has_answered(session.code, voter):
        st.success(_("Your answer is in. Watch the teacher's screen: the class's guesses come next, then the "
                     "result."))
        _student_result(session)
        return
    if session.revealed:
        st.info(_("The answers are closed: the teacher has revealed the guesses."))
        _student_result(session)
        return
    _answer_form(session, lesson, voter)


def arm_names(session: cls.ClassSession, lesson: Lesson) -> dict[str, str]:
    """Each arm's name (arm id -> name), in the language in use (the session keeps the English ones)."""
    return {k: lesson.tr(name) for k, name in session.names.items()}


def question(session: cls.ClassSession, lesson: Lesson) -> str:
    """What the class is asked, in the language in use: the lesson's own prompt, asked again (the session keeps
    it in the language of the teacher who started it)."""
    return lesson.guess().prompt or session.prompt


def _answer_form(session: cls.ClassSession, lesson: Lesson, voter: str) -> None:
    with st.form("class-answer"):
        st.subheader(question(session, lesson))
        if session.kind == "arms":
            names = arm_names(session, lesson)
            value = st.radio(_("Your guess"), session.choices, index=None, format_func=names.get, key="class-guess")
        else:
            value = st.number_input(_("Your guess (%)") if session.percent else _("Your guess"), min_value=0.0 if
                                    session.percent else None, max_value=100.0 if session.percent else None,
                                    value=None, step=1.0, key="class-guess")
        sent = st.form_submit_button(_("Send my answer"), type="primary")
    if sent:
        if value is None:
            st.warning(_("Choose an answer first."))
            return
        try:
            cls.answer(session.code, voter, value)
        except CnnlabError as e:
            st.error(str(e))
            return
        st.rerun()


def _student_result(session: cls.ClassSession) -> None:
    if session.result_id:
        try:
            stored = load_result(session.result_id)
        except CnnlabError:
            return
        guesses = stored.data.get("guesses") or {}
        if guesses.get("text"):
            st.markdown(f"**{guesses['text']}**")


# ---- the teacher's panel ----------------------------------------------------------------------------------


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def lan_address() -> str | None:
    """This machine's address on the local network (the interface a packet would leave by: a UDP socket's
    connect sends nothing), or None when there is no network."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def class_link(code: str) -> str:
    """The app's address with ``?class=CODE``: the address the teacher's browser uses, except that a
    teacher on ``localhost`` gets the machine's network address (the students' devices cannot reach
    their own localhost)."""
    parts = urlsplit(st.context.url or "http://localhost:8501/")
    host, port = parts.hostname or "localhost", f":{parts.port}" if parts.port else ""
    if host in LOCAL_HOSTS and (lan := lan_address()):
        host = lan
    return f"{parts.scheme}://{host}{port}/?class={code}"


def qr_png(text: str) -> bytes:
    """A QR code of ``text`` as a PNG (segno writes PNG itself: no other dependency)."""
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=8, border=2)
    return buf.getvalue()


def guesses_chart(session: cls.ClassSession, names: Mapping[str, str]) -> alt.Chart:
    """The class's guesses: one bar per choice (``names``: each choice's name), or a histogram of the numbers
    (percent for accuracies)."""
    if session.kind == "arms":
        df = pd.DataFrame({"choice": [names.get(k, k) for k in session.choices],
                           "answers": [session.counts.get(k, 0) for k in session.choices]})
        return alt.Chart(df).mark_bar().encode(
            x=alt.X("answers:Q", title=_("answers"), axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("choice:N", sort=None, title=None, axis=alt.Axis(labelLimit=600)),
            tooltip=[alt.Tooltip("choice:N", title=_("choice")), alt.Tooltip("answers:Q", title=_("answers"))],
        ).configure_axis(labelFontSize=16, titleFontSize=16)
    scale = 100 if session.percent else 1
    df = pd.DataFrame({"guess": [v * scale for v in session.values]})
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("guess:Q", bin=alt.Bin(step=5 if session.percent else None), title=_("guess (%)") if session.percent
                else _("guess")),
        y=alt.Y("count():Q", title=_("answers"), axis=alt.Axis(tickMinStep=1)),
    ).configure_axis(labelFontSize=16, titleFontSize=16)


def result_after(session: cls.ClassSession, results: Sequence[StoredResult]) -> StoredResult | None:
    """The result the class's guesses are about: the one already attached, else the newest saved after the
    session started (an older result was known before anyone guessed)."""
    for r in results:
        if r.id == session.result_id:
            return r
    fresh = [r for r in results if _timestamp(r.data.get("created")) >= session.created - 1]
    return max(fresh, key=lambda r: r.data["created"]) if fresh else None


def _timestamp(text: Any) -> float:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return 0.0


def guesses_text(session: cls.ClassSession, names: Mapping[str, str]) -> str:
    """The guesses in words under the chart: "Guesses (3): lr 0.001 1, lr 0.1 2, lr 10 0"."""
    if session.kind == "arms":
        shown = [f"{names.get(k, k)} {session.counts.get(k, 0)}" for k in session.choices]
    else:
        shown = [fmt(v, ".0%") if session.percent else fmt(v, ".3g") for v in sorted(session.values)]
    return _("Guesses ({n}): {guesses}").format(n=session.answers, guesses=", ".join(shown))


def teacher_panel(lesson_name: str, results: Sequence[StoredResult]) -> None:
    """On the Lessons page: start a session, show its code, link and QR code, count the answers live, reveal
    them, and once the lesson has a new result put it beside the guesses (kept with the result)."""
    store = st.session_state.setdefault(SESSION_KEY, {})
    code = store.get(lesson_name)
    session = None
    if code:
        try:
            session = cls.load_session(code)
        except CnnlabError as e:
            st.info(str(e))
            store.pop(lesson_name, None)
    if session is None:
        # one key for every lesson: a click on the button while the page is still switching lessons (the
        # last lesson's button, greyed) starts the session of the lesson being opened, instead of being lost
        if st.button(_("Start a class session"), key="class-start",
                     help=_("The class guesses the result before the run: a code and a link for their phones or "
                            "laptops.")):
            store[lesson_name] = cls.start_session(get_lesson(lesson_name)).code
            st.rerun()
        return
    _session_box(session, result_after(session, results))


def _session_box(session: cls.ClassSession, result: StoredResult | None) -> None:
    link = class_link(session.code)
    lesson = get_lesson(session.lesson)
    left, right = st.columns([2, 1])
    with left:
        st.markdown(_("### Class code **{code}**").format(code=session.code))
        st.markdown(_("Students open **{link}**, or scan the code. They see only this question: *{question}*")
                    .format(link=link, question=question(session, lesson)))
        _answers_live(session.code)
    with right:
        st.image(qr_png(link), caption=_("Scan to answer"), width=220)
    if not session.revealed:
        if st.button(_("Reveal the guesses"), key=f"class-reveal-{session.code}", type="primary",
                     help=_("Closes the answers and shows the class's guesses.")):
            cls.reveal(session.code)
            st.rerun()
        return
    # the height given here: Streamlit ignores a chart's own height when one axis lists categories
    names = arm_names(session, lesson)
    st.altair_chart(guesses_chart(session, names), width="stretch",
                    height=max(140, 48 * len(session.choices) + 70) if session.kind == "arms" else 280)
    st.caption(guesses_text(session, names))
    if result is not None:
        text = cls.compare_text(session, result.arms, names)
        st.markdown(f"#### {text}")
        if session.result_id != result.id:
            attach_guesses(result.id, {**session.summary(), "text": text})
            cls.attach_result(session.code, result.id)
        if lesson.discuss:
            st.markdown(_("**Explain the gap:**") + "\n" + "\n".join(f"- {lesson.tr(q)}" for q in lesson.discuss))
    else:
        st.caption(_("Run the lesson: its result will appear beside the guesses."))


@st.fragment(run_every=REFRESH_S)
def _answers_live(code: str) -> None:
    """How many answered so far, refreshed every few seconds without redrawing the page."""
    try:
        n = cls.load_session(code).answers
    except CnnlabError:
        return
    st.metric(_("Answers"), n)
