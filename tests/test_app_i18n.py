"""Every page opens in each language with no exception and a translated title (issue 28)."""

from __future__ import annotations

import ast
from pathlib import Path

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


WIDGETS = {"selectbox", "multiselect", "radio", "slider", "select_slider", "number_input", "text_input", "text_area",
           "checkbox", "toggle", "segmented_control", "pills", "color_picker", "date_input", "time_input",
           "file_uploader", "camera_input", "data_editor", "chat_input", "feedback"}


def test_every_widget_has_a_key_so_a_change_of_language_keeps_its_value():
    """Streamlit tells a widget without a key by its label: translated, it is a new widget, back at its
    default. With a key, the key is its identity (the label may change)."""
    root = Path(MAIN).parent
    unkeyed = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WIDGETS
                    and not any(k.arg == "key" for k in node.keywords)):
                unkeyed.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.func.attr}")
    assert not unkeyed, unkeyed


def test_the_architectures_settings_survive_a_change_of_language(speak):
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.sidebar.toggle(key="arch-adaptive").set_value(True)
    at.toggle(key="arch-leaves").set_value(False)
    at.selectbox(key="arch-formula-layer").set_value("C3")
    at.run()
    assert not at.exception
    speak("it")
    at.sidebar.selectbox(key="lang-picker").set_value("it").run()
    assert not at.exception and at.title[0].value == i18n.translations("it").gettext("Architectures")
    assert at.sidebar.toggle(key="arch-adaptive").value is True
    assert at.toggle(key="arch-leaves").value is False
    assert at.selectbox(key="arch-formula-layer").value == "C3"


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
