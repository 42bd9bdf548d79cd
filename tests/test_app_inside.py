"""AppTest of the Look inside page."""


from apphelpers import open_view


def open_page():
    return open_view("inside")


def test_inside_page_default_zoo_model_and_photo():
    at = open_page()
    assert at.title[0].value == "Look inside"
    assert not at.error
    assert len(at.get("imgs")) >= 1 or at.image
    assert any(m.label == "Zeros" for m in at.metric)


def test_inside_page_layer_and_method_switch():
    at = open_page()
    at.selectbox(key="inside-layer").set_value("layer2.0.conv1").run()
    assert not at.exception and not at.error
    at.radio(key="inside-method").set_value("Saliency").run()
    assert not at.exception and not at.error


def test_inside_pretrained_missing_weights_says_what_to_do(monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    at = open_page()
    at.radio(key="inside-kind").set_value("Pretrained (ImageNet)").run()
    assert not at.exception
    assert at.warning and "vgg16-397923af.pth" in at.warning[0].value
