"""AppTest of the Architectures page."""


from apphelpers import open_view


def run_app():
    return open_view()


def test_architectures_page_renders_lenet():
    at = run_app()
    assert at.title[0].value == "Architectures"
    assert at.metric[0].value == "44,426"
    assert not at.error
    df = at.dataframe[0].value
    assert "C1" in set(df["layer"]) and 86_400 in set(df["MACs"])


def test_architectures_too_small_input_shows_message():
    at = run_app()
    at.selectbox[0].set_value("alexnet").run()
    assert at.metric[0].value == "62.1 M"  # short enough for a metric box at 1280x720
    assert "62,071,144" in at.metric[0].help  # the exact count is one hover away
    at.number_input(key="arch-h").set_value(32).run()
    at.number_input(key="arch-w").set_value(32).run()
    assert not at.exception
    assert at.error and "too small" in at.error[0].value


def test_headline_numbers_are_short():
    from app.common import short_bytes, short_number

    assert short_number(44_426) == "44,426"
    assert short_number(138_357_544) == "138.4 M"
    assert short_number(15_470_264_320) == "15.5 G"
    assert short_bytes(553_430_176) == "527.8 MB" and short_bytes(2048) == "2.0 KB" and short_bytes(12) == "12 B"


def test_table_and_formulas_tab_teach_the_arithmetic():
    at = run_app()
    df = at.dataframe[0].value
    c1 = df[df["layer"] == "C1"].iloc[0]
    assert c1["params ="] == "6x5x5x1+6 = 156"
    assert c1["size ="] == "floor((28 - 5 + 2*0) / 1) + 1 = 24"
    layer = next(sb for sb in at.selectbox if sb.label == "Layer")
    layer.set_value("F5").run()
    assert not at.exception
    codes = [c.value for c in at.code]
    assert "120x256+120 = 30,840" in codes
    assert any("120 outputs, each a weighted sum of 256 inputs" in c.value for c in at.caption)


def test_lazy_tabs_draw_when_opened_and_the_compare_choice_survives_another_tab():
    at = open_view()
    assert not [m for m in at.multiselect if m.key == "arch-compare"]  # not drawn until its tab is open
    at.session_state["arch-tab"] = "Compare models"
    at.run()
    box = at.multiselect(key="arch-compare")
    assert box.value == ["alexnet", "vgg16"]
    box.set_value(["densenet121"] if "densenet121" in box.options else [box.options[-1]]).run()
    chosen = at.multiselect(key="arch-compare").value
    at.session_state["arch-tab"] = "Layer table"
    at.run()
    assert not [m for m in at.multiselect if m.key == "arch-compare"]
    at.session_state["arch-tab"] = "Compare models"
    at.run()
    assert at.multiselect(key="arch-compare").value == chosen
    assert not at.exception
    at.session_state["arch-tab"] = "Diagram"
    at.run()
    assert at.slider(key="diagram-depth").value == 3 and not at.exception
