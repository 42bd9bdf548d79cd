"""Presentation mode: a link with present=1 (or the sidebar switch) turns on the projector styles on every page,
and the switch turns them off again."""

from __future__ import annotations

from apphelpers import MAIN
from streamlit.testing.v1 import AppTest

from app.present import CSS


def styles(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.get("html")]


def test_a_link_with_present_1_turns_it_on_and_the_switch_turns_it_off():
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception
    assert CSS in styles(at) and at.sidebar.toggle(key="present-toggle").value is True
    at.switch_page("views/convolution.py").run()  # another page keeps the mode
    assert not at.exception and CSS in styles(at)
    at.sidebar.toggle(key="present-toggle").set_value(False).run()
    assert CSS not in styles(at) and "present" not in at.query_params


def test_off_by_default_and_on_from_the_switch():
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert CSS not in styles(at)
    at.sidebar.toggle(key="present-toggle").set_value(True).run()
    assert CSS in styles(at) and at.query_params.get("present") in ("1", ["1"])


def test_every_page_has_the_glossary_of_the_words_that_must_stay():
    from app.glossary import TERMS

    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    text = " ".join(m.value for m in at.sidebar.markdown)
    for term in ("arm", "budget", "receptive field", "Grad-CAM", "lecture 000-004", "points"):
        assert term in TERMS and f"**{term}**" in text
