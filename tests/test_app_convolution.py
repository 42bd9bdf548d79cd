"""AppTest of the Convolution page (issue 24): the sandbox's formula, window and products; its steps;
impossible settings refused with their reason; pooling and softmax explained; a real LeNet layer whose
explained value is the feature map's."""

import re

from apphelpers import MAIN, open_view
from streamlit.testing.v1 import AppTest

from cnnlab.convolution import conv_sandbox, read_input, read_kernel


def markdown(at) -> list[str]:
    return [m.value for m in at.markdown]


def shown_size(at) -> str:
    return next(re.search(r"output \*\*(\S+)\*\*", m).group(1) for m in markdown(at) if "-> output **" in m)


def test_the_page_opens_with_the_formula_the_window_and_its_products():
    at = open_view("convolution")
    assert at.title[0].value == "Convolution"
    assert not at.error
    # the default sandbox: digit 3, vertical edges, padding 1, as `python -m cnnlab conv --input digit:3 ...`
    sb = conv_sandbox(read_input("digit:3"), read_kernel("vertical_edges"), padding=1)
    assert any(f.text in m for f in sb.formulas() for m in markdown(at))
    assert "**Output row 0, col 0** (1 of 64)" in markdown(at)
    e = sb.explain(0, 0, 0)
    products = at.table[2].value  # input values, kernel, products
    assert products.to_numpy().tolist() == [[str(int(v)) for v in row] for row in e.windows[0].products]
    assert any(c.value.startswith(e.lines()[0]) for c in at.code)


def test_next_previous_and_play_move_the_window():
    at = open_view("convolution")
    at.button(key="conv-next").click().run()
    assert "**Output row 0, col 1** (2 of 64)" in markdown(at)
    at.button(key="conv-prev").click().run()
    at.button(key="conv-prev").click().run()  # before the first: round to the last
    assert "**Output row 7, col 7** (64 of 64)" in markdown(at)
    at.button(key="conv-play").click().run()  # playing: each run (a tick of the fragment) moves on one
    assert at.button(key="conv-play").label == "Pause"
    assert "**Output row 0, col 0** (1 of 64)" in markdown(at)
    at.button(key="conv-play").click().run()
    assert at.button(key="conv-play").label == "Play"
    assert not at.exception and not at.error


def test_padding_and_stride_change_the_output_size():
    at = open_view("convolution")
    assert shown_size(at) == "1x8x8"
    at.number_input(key="conv-padding").set_value(0).run()
    assert shown_size(at) == "1x6x6"
    at.number_input(key="conv-stride").set_value(2).run()
    assert shown_size(at) == "1x3x3"
    assert any("floor((H - F + 2P) / S) + 1 = floor((8 - 3 + 2x0) / 2) + 1" in m for m in markdown(at))


def test_an_impossible_setting_shows_its_reason_and_nothing_else():
    at = open_view("convolution")
    at.number_input(key="conv-stride").set_value(0).run()
    assert not at.exception
    assert len(at.error) == 1 and "stride 0" in at.error[0].value
    assert not [b for b in at.button if b.key == "conv-play"]  # no window drawn from the last good settings
    at.number_input(key="conv-stride").set_value(1).run()
    at.radio(key="conv-input").set_value("typed").run()
    at.text_area(key="conv-numbers").set_value("1,2;3,4").run()
    at.number_input(key="conv-padding").set_value(0).run()
    assert not at.exception
    assert len(at.error) == 1 and "the kernel spans 3 rows" in at.error[0].value
    at.text_area(key="conv-numbers").set_value("1,2,3;4,5").run()
    assert len(at.error) == 1 and "every row needs the same count" in at.error[0].value


def test_three_channels_add_into_one_number():
    at = open_view("convolution")
    at.radio(key="conv-input").set_value("photo").run()
    assert not at.exception and not at.error
    sandbox = at.tabs[0]
    sums = [float(m.value) for m in sandbox.metric if m.label.startswith("Channel ")]
    assert len(sums) == 3  # side by side, then added with the bias into the output
    bias, output = (float(next(m.value for m in sandbox.metric if m.label == k)) for k in ("Bias", "Output"))
    assert abs(sum(sums) + bias - output) < 1e-6
    assert any("sum over 3 input channel(s)" in c.value for c in sandbox.code)


def test_pooling_and_softmax_show_their_explanations():
    at = open_view("convolution")
    at.radio(key="conv-op").set_value("max").run()
    assert not at.exception and not at.error
    assert shown_size(at) == "1x4x4"  # 8x8, window 2, stride 2
    assert any("padding never wins" in c.value for c in at.code)
    assert any("(max)" in cell for t in at.table for row in t.value.to_numpy().tolist() for cell in row)
    at.radio(key="conv-op").set_value("avg").run()
    assert any(re.search(r"divided by 4 .*: \S+ / 4 = ", c.value) for c in at.code)
    at.checkbox(key="conv-relu").check().run()
    assert any("ReLU(" in c.value for c in at.code)
    at.radio(key="conv-op").set_value("softmax").run()
    assert not at.exception and not at.error
    text = "\n".join(c.value for c in at.code)
    assert "exponentials: exp(0) = 1" in text and "probabilities:" in text
    at.text_input(key="conv-logits").set_value("1, x").run()
    assert len(at.error) == 1 and "'x' is not a number" in at.error[0].value


def test_a_real_lenet_layer_is_explained_with_the_feature_map_value():
    at = open_view("convolution")
    at.radio(key="conv-real-kind").set_value("zoo").run()
    at.selectbox(key="conv-real-zoo").set_value("lenet").run()
    assert not at.exception and not at.error
    at.selectbox(key="conv-real-layer").set_value("C3").run()
    at.number_input(key="conv-real-row").set_value(2).run()
    assert not at.exception and not at.error
    found = [s.value for s in at.success if s.value.startswith("Explained value")]
    assert len(found) == 1
    explained, feature_map = re.match(r"Explained value (\S+) = feature map value (\S+) ", found[0]).groups()
    assert abs(float(explained) - float(feature_map)) <= 1e-4 * max(1.0, abs(float(feature_map)))
    assert any("Conv2d 6 -> 16, 5x5" in m for m in markdown(at))
    field = [c.value for c in at.code if c.value.startswith("output (2, ")]  # the receptive field, grown
    assert field and "C1 (Conv2d 5x5" in field[0]
    at.selectbox(key="conv-real-layer").set_value("S4").run()  # pooling; the row is kept within its 5x5 map
    assert not at.exception and not at.error
    assert any(s.value.startswith("Explained value") for s in at.success)


def test_a_link_opens_the_sandbox_with_its_settings():
    """The README's example link: a teacher's slide opens the same sandbox for every student."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params.update({"kernel": "sharpen", "padding": "0", "stride": "2"})
    at.switch_page("views/convolution.py").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="conv-kernel").value == "sharpen"
    assert shown_size(at) == "1x3x3"


def test_alexnet_grouped_convolution_says_which_input_channels_a_group_sees():
    at = open_view("convolution")
    at.radio(key="conv-real-kind").set_value("zoo").run()
    at.selectbox(key="conv-real-zoo").set_value("alexnet").run()
    at.selectbox(key="conv-real-layer").set_value("layer2.0").run()  # seed 000's conv2: 96 -> 256, groups=2
    at.number_input(key="conv-real-channel").set_value(200).run()
    assert not at.exception and not at.error
    assert any("group 1 of 2, which sees input channels 48 to 95 only" in i.value for i in at.info)
    assert [s for s in at.success if s.value.startswith("Explained value")]
