"""AppTest of the Predict page: model and image pickers, top-k chart, bad uploads."""

import re

import pytest
from apphelpers import copy_runs, open_view, using_cache

from cnnlab.train import TrainConfig, fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with using_cache(tmp_path_factory.mktemp("predict-cache")) as cache:
        result = fit(TrainConfig(model="lenet", dataset="digits", epochs=2, subset=300))
    assert result.status == "finished", result.message
    return cache, result.run_id


@pytest.fixture
def run_id(trained):
    cache, run_id = trained
    copy_runs(cache)
    return run_id


def open_page():
    return open_view("predict")


def test_no_runs_says_to_train_one():
    at = open_page()
    assert at.title[0].value == "Predict"
    assert at.info and "Train" in at.info[0].value
    assert not at.get("vega_lite_chart") and not at.error


def test_run_and_bundled_photo_give_the_top_k_of_predict_topk(run_id):
    from cnnlab.data.images import load_bundled_photo
    from cnnlab.evaluate import predict_topk
    from cnnlab.sources import load_source

    at = open_page()
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
    at = open_page()
    at.radio(key="predict-img").set_value("Dataset sample").run()
    assert at.selectbox(key="predict-ds").value == "digits"
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 1


def test_bad_upload_shows_the_decoder_message(run_id):
    from cnnlab.data.images import decode_image
    from cnnlab.errors import DataError

    bad = b"this is not an image at all"
    with pytest.raises(DataError) as err:
        decode_image(bad)
    at = open_page()
    at.radio(key="predict-img").set_value("Upload").run()
    assert at.info and "Upload" in at.info[0].value
    at.file_uploader(key="predict-upload").set_value(("holiday.png", bad, "image/png")).run()
    assert not at.exception
    assert at.error and str(err.value) in at.error[0].value
    assert not at.get("vega_lite_chart")
