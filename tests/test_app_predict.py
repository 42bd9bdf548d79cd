"""AppTest of the Predict page: model and image pickers, top-k chart, bad uploads."""

import re
from pathlib import Path

import numpy as np
import pytest
from apphelpers import copy_runs, open_view
from streamlit.testing.v1 import AppTest

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def run_id(digits_run):
    """The session's LeNet digits run (seed 3, conftest.py), copied into this test's cache."""
    cache, result = digits_run
    copy_runs(cache)
    return result.run_id


def test_no_runs_says_to_train_one():
    at = open_view("predict")
    assert at.title[0].value == "Predict"
    assert at.info and "Train" in at.info[0].value
    assert not at.get("vega_lite_chart") and not at.error


def test_run_and_bundled_photo_give_the_top_k_of_predict_topk(run_id):
    from cnnlab.data.images import load_bundled_photo
    from cnnlab.evaluate import predict_topk
    from cnnlab.sources import load_source

    at = open_view("predict")
    assert at.selectbox(key="predict-run").value == run_id
    assert at.radio(key="predict-img").value == "Bundled photo"
    photo = at.selectbox(key="predict-photo").value
    assert not at.error
    (chart,) = at.get("vega_lite_chart")
    assert '"bar"' in chart.proto.spec and at.slider(key="predict-k").value == 5

    source = load_source(f"run:{run_id}")
    expected = predict_topk(source.model, load_bundled_photo(photo), source, 5)
    says = next(m.value for m in at.markdown if " says " in m.value)
    assert re.search(r"says \*\*(.+?)\*\* with probability \*\*([\d.]+)%", says).groups() == (
        expected[0][0], f"{100 * expected[0][1]:.1f}")

    at.slider(key="predict-k").set_value(3).run()
    assert not at.exception and len(at.get("vega_lite_chart")) == 1


def test_dataset_sample_of_the_run(run_id):
    at = open_view("predict")
    at.radio(key="predict-img").set_value("Dataset sample").run()
    assert at.selectbox(key="predict-ds").value == "run"  # the run's own split first
    assert not at.exception and not at.error
    assert any("not used for training" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == 1


def _picker(root: str, ref: str):
    """A page holding only the image picker for the model ``ref`` (run by AppTest as a script)."""
    import sys

    import numpy as np
    import streamlit as st

    sys.path.insert(0, root)
    from app.common import cached_source, image_picker

    image = image_picker("t", cached_source(ref))
    if image is not None:
        st.session_state["picked"] = np.asarray(image)


def _assert_samples_are_the_runs_validation_images(run_id: str, indices=(0, 5)):
    from cnnlab.runs import load_run, load_run_data

    data = load_run_data(load_run(run_id))
    at = AppTest.from_function(_picker, args=(ROOT, f"run:{run_id}"), default_timeout=120)
    at.run()
    at.radio(key="t-img").set_value("Dataset sample").run()
    assert at.selectbox(key="t-ds").value == "run"
    for idx in indices:
        at.slider(key="t-idx").set_value(idx).run()
        assert not at.exception and not at.error
        picked = at.session_state["picked"]
        expected = data.val.images[idx].permute(1, 2, 0).numpy()
        same = np.array_equal(picked.reshape(expected.shape), expected)
        assert same, f"sample {idx} is not the run's validation image {idx}"
        label = data.info.classes[int(data.val.labels[idx])]
        assert any(f"Label: **{label}**" in c.value for c in at.caption)
    return data


def test_dataset_samples_follow_the_runs_seed_and_split(run_id):
    """The run was trained with seed 3: its validation images are not those of the digits'
    default split (seed 0), some of which it was trained on."""
    _assert_samples_are_the_runs_validation_images(run_id)


def test_dataset_samples_of_a_standin_run_are_of_its_classes(standin):
    cache, comparison = standin
    copy_runs(cache)
    data = _assert_samples_are_the_runs_validation_images(comparison.pretrained.run_id, indices=(0, 1, 2))
    assert data.info.classes == ["ring", "heart", "crescent"]


def test_bad_upload_shows_the_decoder_message(run_id):
    from cnnlab.data.images import decode_image
    from cnnlab.errors import DataError

    bad = b"this is not an image at all"
    with pytest.raises(DataError) as err:
        decode_image(bad)
    at = open_view("predict")
    at.radio(key="predict-img").set_value("Upload").run()
    assert at.info and "Upload" in at.info[0].value
    at.file_uploader(key="predict-upload").set_value(("holiday.png", bad, "image/png")).run()
    assert not at.exception
    assert at.error and str(err.value) in at.error[0].value
    assert not at.get("vega_lite_chart")


def _canvas_state(draw) -> dict:
    """The value streamlit-drawable-canvas sends after a stroke: the canvas as a PNG data URL."""
    import base64
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
    draw(ImageDraw.Draw(img))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}}, np.asarray(img)


def test_draw_a_digit_and_the_top_k_follows_the_drawing(run_id):
    from cnnlab.data.drawing import drawing_to_image, style_for
    from cnnlab.evaluate import predict_topk
    from cnnlab.sources import load_source

    at = open_view("predict")
    at.radio(key="predict-img").set_value("Draw").run()
    assert not at.exception and not at.error
    assert any("Draw a digit on the canvas" in i.value for i in at.info)  # a blank canvas: what to do
    assert not at.get("vega_lite_chart")
    source = load_source(f"run:{run_id}")
    for draw in (lambda d: d.ellipse([80, 40, 200, 240], outline=(0, 0, 0, 255), width=26),
                 lambda d: d.line([(150, 40), (150, 240)], fill=(0, 0, 0, 255), width=26)):
        state, rgba = _canvas_state(draw)
        at.session_state["predict-canvas-digits"] = state
        at.run()
        assert not at.exception and not at.error
        expected = predict_topk(source.model, drawing_to_image(rgba, style_for("digits", source.input_shape)), source, 5)
        says = next(m.value for m in at.markdown if " says " in m.value)
        assert re.search(r"says \*\*(.+?)\*\* with probability \*\*([\d.]+)%", says).groups() == (
            expected[0][0], f"{100 * expected[0][1]:.1f}")
        assert any("scikit-learn's 8 x 8 digits" in c for c in _captions(at))  # how the drawing was made to look
    state, _ = _canvas_state(lambda d: None)  # cleared with the bin
    at.session_state["predict-canvas-digits"] = state
    at.run()
    assert not at.exception and not at.error and not at.get("vega_lite_chart")
    assert any("Draw a digit on the canvas" in i.value for i in at.info)


def _captions(at) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]
