"""AppTest of the Look inside page."""

import base64
import io
import json

import numpy as np
from apphelpers import open_view
from PIL import Image


def _open(at, tab: str):
    """Open one of the page's tabs (English name): only the open tab is computed."""
    at.session_state["inside-tab"] = tab
    return at.run()


def test_inside_page_default_zoo_model_and_photo():
    at = open_view("inside")
    assert at.title[0].value == "Look inside"
    assert not at.error
    assert len(at.get("imgs")) >= 1 or at.image
    assert any(m.label == "Zeros" for m in at.metric)


def test_inside_page_layer_and_method_switch():
    at = open_view("inside")
    at.selectbox(key="inside-layer").set_value("layer2.0.conv1").run()
    assert not at.exception and not at.error
    _open(at, "Class-activation map")
    at.radio(key="inside-method").set_value("Saliency").run()
    assert not at.exception and not at.error


def test_inside_pretrained_missing_weights_says_what_to_do(monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    at = open_view("inside")
    at.radio(key="inside-kind").set_value("pretrained").run()
    assert not at.exception
    assert at.warning and "vgg16-397923af.pth" in at.warning[0].value


def test_kernels_of_a_one_channel_conv_offer_no_channel_slider_and_cam_warns_when_untrained():
    at = open_view("inside")
    at.selectbox(key="inside-zoo").set_value("lenet").run()
    _open(at, "Kernels")
    at.selectbox(key="inside-conv").set_value("C1").run()
    assert not at.exception and not at.error
    keys = {s.key for s in at.slider}
    assert "inside-ni" not in keys  # a 1-channel conv has nothing to choose (it used to offer 2)
    assert any("1 input channel: one grey tile" in c.value for c in at.caption)
    _open(at, "Class-activation map")
    assert any("untrained" in c.value and "heatmap" in c.value for c in at.caption)  # Grad-CAM's caveat


def test_kernels_of_a_many_channel_conv_keep_the_slider():
    at = open_view("inside")
    at.selectbox(key="inside-zoo").set_value("lenet").run()
    _open(at, "Kernels")
    at.selectbox(key="inside-conv").set_value("C3").run()
    assert not at.exception
    assert at.slider(key="inside-ni").max == 6  # C3 has 6 input channels


def test_one_channel_large_with_its_values():
    at = open_view("inside")
    assert not at.exception
    inputs = [n for n in at.number_input if n.key and n.key.startswith("inside-channel-")]
    assert inputs, "a channel picker under the feature maps"
    inputs[0].set_value(1).run()
    assert not at.exception and not at.error
    assert any("channel 1" in str(getattr(i, "caption", "")) for i in at.get("imgs")) or any(
        "Its values" in c.value for c in at.caption)


def test_draw_a_digit_and_the_maps_and_cam_follow_it():
    """LeNet (one channel, untrained): the drawing is made to look like MNIST (white on black,
    centred), and the feature maps and the class-activation map change with every stroke; Clear empties it."""
    from test_app_predict import _canvas_state, _captions

    at = open_view("inside")
    at.selectbox(key="inside-zoo").set_value("lenet").run()
    at.radio(key="inside-img").set_value("Draw").run()
    assert not at.exception and not at.error
    assert any("Draw a digit on the canvas" in i.value for i in at.info)
    assert not at.metric  # nothing to look inside yet
    means = []
    for draw in (lambda d: d.line([(60, 60), (220, 220)], fill=(0, 0, 0, 255), width=22),
                 lambda d: d.ellipse([60, 40, 220, 240], outline=(0, 0, 0, 255), width=22)):
        at.session_state["inside-canvas-mnist"] = _canvas_state(draw)[0]
        at.run()
        assert not at.exception and not at.error
        assert any("like MNIST" in c for c in _captions(at))  # the preview says how it was made to look
        assert next(m.value for m in at.metric if m.label == "Shape") == "6 x 24 x 24"  # C1 of the 28 x 28 input
        means.append(next(m.value for m in at.metric if m.label == "Mean"))
        _open(at, "Class-activation map")
        assert any("Grad-CAM for" in c for c in _captions(at))
        _open(at, "Feature maps")
    assert means[0] != means[1], "the feature maps did not follow the drawing"
    at.button(key="inside-clear").click().run()  # always in sight, unlike the canvas's own toolbar
    assert not at.exception and not at.metric
    assert any("Draw a digit on the canvas" in i.value for i in at.info)  # an empty canvas again


def _grid(at, layer: str = "conv") -> Image.Image:
    """The feature-map grid the page sends to its click component, as a picture."""
    (grid,) = [c for c in at.get("component_instance") if json.loads(c.proto.json_args).get("key") ==
               f"inside-click-{layer}"]
    src = json.loads(grid.proto.json_args)["src"]
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def _red_box(grid: Image.Image) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((np.asarray(grid) == (230, 20, 20)).all(-1))
    assert len(xs), "no channel outlined in red"
    return xs.min(), ys.min(), xs.max(), ys.max()


def _outlined(grid: Image.Image) -> int:
    """The channel the grid outlines in red, read from the picture alone: the outline sits on the 2-pixel
    gaps around one tile, so its size gives the tiles' pitch and its corner their row and column."""
    x0, y0, x1, y1 = _red_box(grid)
    pitch_x, pitch_y = x1 - x0 - 1, y1 - y0 - 1  # a tile and one gap
    cols = round((grid.width - 2) / pitch_x)
    return round(y0 / pitch_y) * cols + round(x0 / pitch_x)


def _centre(grid: Image.Image, channel: int) -> tuple[float, float]:
    x0, y0, x1, y1 = _red_box(grid)
    pitch_x, pitch_y = x1 - x0 - 1, y1 - y0 - 1
    r, k = divmod(channel, round((grid.width - 2) / pitch_x))
    return 2 + k * pitch_x + pitch_x / 2 - 1, 2 + r * pitch_y + pitch_y / 2 - 1


def _shown_channel(at, layer: str = "conv") -> tuple[int, int, str, str]:
    """(number box, red outline, caption under the grid, caption of the large picture)."""
    grid_caption = next(c.value for c in at.caption if "Outlined in red" in c.value)
    large = next(c.value for c in at.caption if c.value.startswith(f"{layer}, channel "))
    return at.number_input(key=f"inside-channel-{layer}").value, _outlined(_grid(at, layer)), grid_caption, large


def test_the_picked_channel_is_one_number_in_the_box_the_outline_and_the_captions():
    """The strongest channel until one is picked; a click on the grid or a typed number moves the box, the red
    outline, the caption and the large picture together, in the same rerun."""
    at = open_view("inside")
    at.radio(key="inside-kind").set_value("zoo").run()
    at.selectbox(key="inside-zoo").set_value("cifar_resnet").run()
    number, outline, caption, large = _shown_channel(at)
    assert number == outline and f"channel {number}, the strongest" in caption and f"channel {number}:" in large

    clicked = (number + 3) % 16
    x, y = _centre(_grid(at), clicked)
    grid = _grid(at)
    at.session_state["inside-click-conv"] = {"x": x, "y": y, "width": grid.width, "height": grid.height,
                                             "unix_time": 1}
    at.run()
    assert not at.exception and not at.error
    number, outline, caption, large = _shown_channel(at)
    assert number == outline == clicked
    assert f"channel {clicked}, the one you picked" in caption and f"channel {clicked}:" in large

    typed = (clicked + 5) % 16
    at.number_input(key="inside-channel-conv").set_value(typed).run()
    at.run()  # the old click is not applied again
    number, outline, caption, large = _shown_channel(at)
    assert number == outline == typed
    assert f"channel {typed}, the one you picked" in caption and f"channel {typed}:" in large


def test_the_grid_fills_the_column_and_the_cam_has_a_scale_an_explanation_and_numbered_bars():
    """LeNet's six 24 x 24 maps are drawn large (not 150 pixels wide); Grad-CAM comes with its colour scale and
    what it means; each top-5 bar says its percentage; the answer is next to the input."""
    at = open_view("inside")
    at.radio(key="inside-kind").set_value("zoo").run()
    at.selectbox(key="inside-zoo").set_value("lenet").run()
    assert not at.exception and not at.error
    assert _grid(at, "C1").width >= 700
    assert any(m.value.startswith("The network's answer: **") and "a guess" in m.value for m in at.markdown)
    _open(at, "Class-activation map")
    assert any("linear-gradient" in h.proto.body and "high" in h.proto.body for h in at.get("html"))
    assert any(m.value.startswith("**What the colours mean.**") and "not whether the answer is right" in m.value
               for m in at.markdown)
    top = next(json.loads(c.proto.spec) for c in at.get("vega_lite_chart") if "percent" in c.proto.spec)
    assert [layer["mark"]["type"] for layer in top["layer"]] == ["bar", "text"]
    at.radio(key="inside-method").set_value("Saliency").run()
    assert any(m.value.startswith("**What the colours mean.**") and "tiny change" in m.value for m in at.markdown)


def test_a_tab_keeps_its_choices_when_another_tab_is_opened_and_closed():
    """Only the open tab is drawn; its widgets' values must survive a visit to another tab."""
    at = _open(open_view("inside"), "Kernels")
    conv = at.selectbox(key="inside-conv")
    chosen = conv.options[-1]
    conv.set_value(chosen).run()
    assert len(conv.options) > 1 and at.selectbox(key="inside-conv").value == chosen
    at = _open(at, "Feature maps")
    assert not at.exception
    at = _open(at, "Kernels")
    assert at.selectbox(key="inside-conv").value == chosen
