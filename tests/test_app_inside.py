"""AppTest of the Look inside page."""


from apphelpers import open_view


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
    at.selectbox(key="inside-conv").set_value("C1").run()
    assert not at.exception and not at.error
    keys = {s.key for s in at.slider}
    assert "inside-ni" not in keys  # a 1-channel conv has nothing to choose (it used to offer 2)
    assert any("1 input channel: one grey tile" in c.value for c in at.caption)
    assert any("untrained" in c.value and "heatmap" in c.value for c in at.caption)  # Grad-CAM's caveat


def test_kernels_of_a_many_channel_conv_keep_the_slider():
    at = open_view("inside")
    at.selectbox(key="inside-zoo").set_value("lenet").run()
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
    centred), and the feature maps and the class-activation map change with every stroke."""
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
        assert any("Grad-CAM for" in c for c in _captions(at))
        means.append(next(m.value for m in at.metric if m.label == "Mean"))
    assert means[0] != means[1], "the feature maps did not follow the drawing"
