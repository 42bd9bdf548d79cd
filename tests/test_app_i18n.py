"""Every page opens in each language with no exception and a translated title (issue 28)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import MAIN
from cnnlab import i18n

VIEWS = ["architectures", "data", "mydata", "inside", "convolution", "train", "transfer", "lessons", "runs",
         "predict"]
# titles a language keeps in English (the Italian course says "transfer learning")
SAME_WORDS = {"it": {"Transfer learning"}}


def english_titles() -> dict[str, str]:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    titles = {}
    for view in VIEWS:
        at.switch_page(f"views/{view}.py").run()
        assert not at.exception, (view, at.exception)
        titles[view] = at.title[0].value
    return titles


@pytest.fixture(scope="module")
def titles() -> dict[str, str]:
    return english_titles()


@pytest.mark.parametrize("code", ["it", "zh"])
def test_every_page_opens_in_the_language_with_its_title_translated(code, titles, speak):
    translated = i18n.translations(code)
    speak(code)  # AppTest formats a widget's options in the test's thread: in the page's language too
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["lang"] = code
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["lang-on"] == code
    for view in VIEWS:
        at.switch_page(f"views/{view}.py").run()
        assert not at.exception, (code, view, at.exception)
        title = at.title[0].value
        assert title == translated.gettext(titles[view]), (code, view, title)
        assert title != titles[view] or titles[view] in SAME_WORDS.get(code, ()), (code, view, title)
        assert at.sidebar.selectbox(key="lang-picker").value == code


def test_the_picker_switches_the_language_and_back():
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    english = at.title[0].value
    at.sidebar.selectbox(key="lang-picker").set_value("it").run()
    assert not at.exception
    assert at.title[0].value == i18n.translations("it").gettext(english) != english
    assert at.query_params["lang"] in ("it", ["it"])
    at.sidebar.selectbox(key="lang-picker").set_value("en").run()
    assert at.title[0].value == english and "lang" not in at.query_params


def test_the_open_tab_stays_open_when_the_language_changes(speak):
    """The session keeps the open tab's label: after a switch to Italian, the same tab (in Italian) is open and
    still drawn, and back in English too."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.session_state["arch-tab"] = "Diagram"
    at.run()
    assert not at.exception
    assert any(s.label == "Block depth" for s in at.slider)  # the Diagram tab is drawn only when open
    speak("it")  # the test's thread formats the options in the page's language
    at.sidebar.selectbox(key="lang-picker").set_value("it").run()
    assert not at.exception
    italian = i18n.translations("it")
    assert at.session_state["arch-tab"] == italian.gettext("Diagram")
    assert any(s.label == italian.gettext("Block depth") for s in at.slider)
    speak("en")
    at.sidebar.selectbox(key="lang-picker").set_value("en").run()
    assert at.session_state["arch-tab"] == "Diagram"


@pytest.mark.parametrize("code, decimal, thousands, percent", [("en", ".", ",", "%"), ("it", ",", ".", " %"),
                                                                ("zh", ".", ",", "%")])
def test_charts_write_numbers_in_the_language(code, decimal, thousands, percent, speak):
    """Vega-Lite's number locale in every chart's specification: an Italian axis reads 0,5 and 50 %."""
    import altair as alt
    import pandas as pd

    from app import language

    language.enable_chart_theme()
    speak(code)
    spec = alt.Chart(pd.DataFrame({"x": [0.5]})).mark_point().encode(x="x:Q").to_dict()
    number = spec["config"]["locale"]["number"]
    assert (number["decimal"], number["thousands"], number["percent"]) == (decimal, thousands, percent)
