"""AppTest of Look inside's tab "What a channel responds to" (issue 25): top patches and optimised inputs
of a zoo LeNet's C3 and of a trained run, and a bad channel text shown as one error line."""

from __future__ import annotations

import pytest
from apphelpers import copy_runs, open_view


def _captions(at) -> list[str]:
    return [c.value for c in at.caption]


def _numbers(at) -> list:
    """The tab's table of optimised activations (the feature maps' tab has a table of values too)."""
    return [d.value for d in at.dataframe if "optimised input" in d.value.columns]


def _open(at, tab: str = "What a channel responds to"):
    """Open one of the page's tabs (English name): only the open tab is computed."""
    at.session_state["inside-tab"] = tab
    return at.run()


def lenet_tab():
    """The page on an untrained zoo LeNet (no run in this test's cache), the tab's layer left at C3."""
    at = open_view("inside")
    at.selectbox(key="inside-zoo").set_value("lenet").run()
    _open(at)
    assert not at.exception and not at.error
    assert at.selectbox(key="inside-feat-layer").value == "C3"
    assert at.selectbox(key="inside-feat-layer").options[0].startswith("C1 · 1 → 6 channels, 5 x 5")
    return at


def test_top_patches_then_optimised_inputs_of_lenets_c3():
    at = lenet_tab()
    assert any("Press **Compute**" in c for c in _captions(at))  # nothing computed before the button
    at.text_input(key="inside-feat-channels").set_value("0-2").run()
    at.number_input(key="inside-feat-images").set_value(200).run()
    at.button(key="inside-feat-go").click().run()
    assert not at.exception and not at.error
    captions = _captions(at)
    assert any("Each row is one channel of **C3**" in c and "200 images looked through" in c for c in captions)
    assert any("untrained" in c for c in captions)
    assert not any("Adebayo" in c for c in captions) and not _numbers(at)  # no optimised input asked for

    at.radio(key="inside-feat-method").set_value("optimise").run()
    assert any("Press **Compute**" in c for c in _captions(at))  # other settings: the button again
    at.number_input(key="inside-feat-steps").set_value(4).run()
    at.button(key="inside-feat-go").click().run()
    assert not at.exception and not at.error
    captions = _captions(at)
    assert any("4 steps of gradient ascent" in c and "Adebayo" in c for c in captions)
    assert any("Each row is one channel of **C3**" in c for c in captions)  # the patches below it
    (table,) = _numbers(at)
    assert list(table["channel"]) == [0, 1, 2]
    assert list(table.columns) == ["channel", "optimised input", "validation mean", "times the mean",
                                   "best validation image", "random weights"]
    # another widget of the page (only the open tab is drawn, so not another tab's): the result stays
    at.radio(key="inside-img").set_value("Dataset sample").run()
    assert not at.exception and any("Adebayo" in c for c in _captions(at))


@pytest.mark.parametrize("text, says", [("12-20", "channel 16 does not exist: C3 has 16 channels, 0 to 15"),
                                        ("two", "give numbers and ranges like 0-7")])
def test_a_bad_channel_text_is_one_error_line(text, says):
    at = lenet_tab()
    at.text_input(key="inside-feat-channels").set_value(text).run()
    assert not at.exception
    assert len(at.error) == 1 and says in at.error[0].value
    assert not any(b.key == "inside-feat-go" for b in at.button)  # nothing to compute


def test_a_trained_run_uses_its_own_validation_split(digits_run):
    cache, result = digits_run
    copy_runs(cache)
    at = open_view("inside")
    assert at.selectbox(key="inside-run").value == result.run_id
    _open(at)
    at.text_input(key="inside-feat-channels").set_value("5").run()
    at.radio(key="inside-feat-method").set_value("optimise").run()
    at.number_input(key="inside-feat-steps").set_value(4).run()
    at.button(key="inside-feat-go").click().run()
    assert not at.exception and not at.error
    captions = _captions(at)
    assert any("digits validation images" in c for c in captions)  # the run's split, named by its dataset
    assert any("Adebayo" in c for c in captions)
    assert not any("untrained" in c for c in captions)
    (row,) = _numbers(at)[0].to_dict("records")
    assert row["channel"] == 5 and row["optimised input"] != row["random weights"]
