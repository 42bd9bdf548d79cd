"""The Gradio demo, launched in-process on a free localhost port and called with gradio_client."""

import io
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import numpy as np
import pytest
from apphelpers import free_port
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits

import cnnlab.sources
from cnnlab.data.drawing import drawing_to_image, style_for
from cnnlab.evaluate import predict_topk
from cnnlab.runs import load_run, load_run_data
from cnnlab.sources import load_source

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import gradio_demo  # noqa: E402


@pytest.fixture(scope="module")
def _server(digits_run):
    """The demo on the session's LeNet digits run (conftest.py), which it only reads."""
    cache, run_id = digits_run[0], digits_run[1].run_id
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(cache))
        choices = gradio_demo.available_choices(run=run_id)
        demo = gradio_demo.build_demo(choices, k=3)
    port = free_port()
    gradio_demo.launch(demo, "127.0.0.1", port, share=False, block=False)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, run_id, cache
    demo.close()


@pytest.fixture
def server(_server, monkeypatch):
    """The running demo, with this test's cache pointed at the run's (the server reads runs lazily)."""
    monkeypatch.setenv("CNNLAB_CACHE", str(_server[2]))
    return _server


def _file(tmp_path, name, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def _digit_image() -> Image.Image:
    d = load_digits()
    return Image.fromarray((d.images[0] * 15).astype(np.uint8)).resize((56, 56))


def test_prediction_equals_predict_topk(server, tmp_path, monkeypatch):
    client, run_id, cache = server
    img = _digit_image()
    path = _file(tmp_path, "digit.png", _png(img))
    label, cam = client.predict(f"run:{run_id}", handle_file(path), api_name="/predict")
    src = load_source(f"run:{run_id}")
    expected = predict_topk(src.model, Image.open(path).convert("L"), src, k=3)
    got = [(c["label"], c["confidence"]) for c in label["confidences"]]
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (_, p), (_, q) in zip(got, expected):
        assert p == pytest.approx(q, abs=1e-5)
    assert label["label"] == expected[0][0]
    assert Path(cam).is_file()


BAD = {
    "text.png": (b"this is not an image", "not an image"),
    "empty.jpg": (b"", "empty"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_files_give_messages_and_server_keeps_answering(server, tmp_path, name):
    client, run_id, _ = server
    data, words = BAD[name]
    with pytest.raises(AppError) as e:
        client.predict(f"run:{run_id}", handle_file(_file(tmp_path, name, data)), api_name="/predict")
    assert words in str(e.value).lower()
    # still serving
    ok = _file(tmp_path, "ok.png", _png(_digit_image()))
    label, _ = client.predict(f"run:{run_id}", handle_file(ok), api_name="/predict")
    assert label["label"]


def test_truncated_and_huge_files(server, tmp_path):
    client, run_id, _ = server
    full = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(AppError, match="truncated|broken|incomplete"):
        client.predict(f"run:{run_id}", handle_file(_file(tmp_path, "cut.png", full[: len(full) // 2])),
                       api_name="/predict")
    huge = _png(Image.new("L", (9000, 9000)), optimize=True)  # 81 megapixels, tiny file
    with pytest.raises(AppError, match="megapixel"):
        client.predict(f"run:{run_id}", handle_file(_file(tmp_path, "huge.png", huge)), api_name="/predict")


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "I;16", "P", "1"])
def test_unusual_modes_decode(server, tmp_path, mode):
    client, run_id, _ = server
    base = _digit_image().convert("RGB")
    if mode == "I;16":
        arr = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        img, fmt = Image.fromarray(arr), "PNG"  # uint16 -> mode I;16
    else:
        img, fmt = base.convert(mode), "JPEG" if mode == "CMYK" else "PNG"
    path = _file(tmp_path, f"img.{fmt.lower()}", _png(img, format=fmt))
    label, _ = client.predict(f"run:{run_id}", handle_file(path), api_name="/predict")
    assert len(label["confidences"]) == 3


def test_only_predict_is_exposed(server):
    client, _, _ = server
    api = client.view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == ["/predict", "/predict_sketch"]
    assert not api["unnamed_endpoints"]


def test_no_run_no_weights_says_how_to_train(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    assert gradio_demo.main([]) == 1
    err = capsys.readouterr().err
    assert "python -m cnnlab train" in err and "fetch vgg16" in err


def test_unknown_run_and_missing_pretrained(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    assert gradio_demo.main(["--run", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert gradio_demo.main(["--model", "vgg16"]) == 2
    assert "vgg16-397923af.pth" in capsys.readouterr().err


def _example_pixels(path: str) -> np.ndarray:
    arr = np.asarray(Image.open(path))[::4, ::4]  # saved 4x larger, nearest neighbour
    return arr if arr.ndim == 3 else arr[..., None]


def _assert_examples_are_the_runs_validation_images(run_id: str, folder: Path):
    val = load_run_data(load_run(run_id)).val
    paths = gradio_demo.dataset_examples(f"run:{run_id}", folder, n=4)
    assert len(paths) == 4
    for i, path in enumerate(paths):
        same = np.array_equal(_example_pixels(path), val.images[i].permute(1, 2, 0).numpy())
        assert same, f"example {i} is not the run's validation image {i}"


def test_dataset_examples_are_the_runs_own_validation_images(digits_run, tmp_path, monkeypatch):
    """The run was trained with seed 3: its validation images are not those of the digits'
    default split (seed 0), some of which it was trained on."""
    cache, result = digits_run
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    _assert_examples_are_the_runs_validation_images(result.run_id, tmp_path)


def test_dataset_examples_of_a_standin_run_show_only_its_classes(standin, tmp_path, monkeypatch):
    """A transfer stand-in run learned three shapes (ring, heart, crescent), not all eight."""
    cache, comparison = standin
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    _assert_examples_are_the_runs_validation_images(comparison.pretrained.run_id, tmp_path)


def test_the_model_cache_is_safe_across_threads(monkeypatch):
    """Gradio answers requests in several threads: a model asked for by eight requests at once
    is loaded once, and every request gets the model it asked for."""
    loads = []

    def slow_load(ref):
        loads.append(ref)
        time.sleep(0.2)  # loading a model takes a while: long enough for the others to arrive
        return SimpleNamespace(ref=ref)

    monkeypatch.setattr(cnnlab.sources, "load_source", slow_load)
    predictor = gradio_demo.Predictor()
    refs = ["run:a"] * 8 + ["run:b", "run:a", "run:b", "run:a"]
    start = threading.Barrier(8)
    got, errors = [], []

    def ask(ref, wait):
        try:
            if wait:
                start.wait(10)
            got.append((ref, predictor.source(ref).ref))
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(ref, i < 8)) for i, ref in enumerate(refs)]
    for t in threads[:8]:
        t.start()
    for t in threads[:8]:
        t.join()
    assert loads == ["run:a"], loads  # once, not once per request
    for t in threads[8:]:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(got) == len(refs) and all(asked == answered for asked, answered in got)


def test_the_demo_says_which_classes_the_model_knows(standin, monkeypatch):
    """A 3-class stand-in answers "heart 95%" for a yellow circle: the page says it only knows three."""
    cache, comparison = standin
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    ref = f"run:{comparison.pretrained.run_id}"
    predictor = gradio_demo.Predictor(refs=[ref])
    text = predictor.classes_text(ref)
    assert "knows 3 classes" in text and all(c in text for c in ("ring", "heart", "crescent"))
    assert predictor.classes_text("pretrained:vgg16") == "Pick a model from the list."  # not a choice: not loaded
    assert predictor.classes_text("") == "Pick a model from the list."


def _sketch_png(tmp_path, draw, name="sketch.png") -> str:
    """A Sketchpad composite: black strokes on a transparent 280 x 280 canvas."""
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    draw(ImageDraw.Draw(img))
    return _file(tmp_path, name, _png(img))


def _zero(d):
    d.ellipse([80, 40, 200, 240], outline=(0, 0, 0, 255), width=24)


def test_a_sketch_goes_through_the_drawing_pipeline(server, tmp_path):
    client, run_id, _ = server
    path = _sketch_png(tmp_path, _zero)
    label, cam = client.predict(f"run:{run_id}", {"background": None, "layers": [], "composite": handle_file(path)},
                                api_name="/predict_sketch")
    src = load_source(f"run:{run_id}")
    image = drawing_to_image(np.asarray(Image.open(path)), style_for("digits", src.input_shape), background="#ffffff")
    expected = predict_topk(src.model, image, src, k=3)
    assert [(c["label"], round(c["confidence"], 5)) for c in label["confidences"]] == [
        (c, round(p, 5)) for c, p in expected]
    assert Path(cam).is_file()


def test_a_blank_or_missing_sketch_is_one_clear_message(server, tmp_path):
    client, run_id, _ = server
    blank = _sketch_png(tmp_path, lambda d: None, "blank.png")
    with pytest.raises(AppError, match="canvas is empty: draw a digit"):
        client.predict(f"run:{run_id}", {"background": None, "layers": [], "composite": handle_file(blank)},
                       api_name="/predict_sketch")
    with pytest.raises(AppError, match=gradio_demo.NO_SKETCH):
        client.predict(f"run:{run_id}", {"background": None, "layers": [], "composite": None},
                       api_name="/predict_sketch")


def test_a_browser_sketch_is_read_from_the_sketchpads_blobs(digits_run, tmp_path, monkeypatch):
    """The page posts the drawing's PNG to the Sketchpad's own route, then sends only its id:
    the bytes are taken (and removed) from the pad's memory; nothing drawn yet clears the answer."""
    cache, result = digits_run
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    ref = f"run:{result.run_id}"
    predictor = gradio_demo.Predictor(k=3, refs=[ref])
    png = Path(_sketch_png(tmp_path, _zero)).read_bytes()
    predictor.sketchpad = SimpleNamespace(blob_storage={"abc": SimpleNamespace(composite=png)})
    label, cam = predictor.sketch(ref, {"background": None, "layers": [], "composite": None, "id": "abc"})
    assert len(label) == 3 and cam.size[0] >= 280
    assert predictor.sketchpad.blob_storage == {}  # taken out: the pad's memory does not grow
    assert predictor.sketch(ref, {"composite": None, "id": "abc"}) == (None, None)  # no drawing yet
    huge = _png(Image.new("RGBA", (5000, 10)))
    predictor.sketchpad.blob_storage["big"] = SimpleNamespace(composite=huge)

    with pytest.raises(gr.Error, match="at most 2048 pixels"):  # bounded before decoding
        predictor.sketch(ref, {"composite": None, "id": "big"})


def test_each_error_is_shown_once(server):
    """A failed prediction is one toast: the events hide Gradio's per-output status, which showed
    an "Error" badge on each of the two outputs as well."""
    client = server[0]
    deps = httpx.get(client.src.rstrip("/") + "/config", timeout=60).json()["dependencies"]
    predicting = [d for d in deps if len(d.get("outputs", [])) == 2]  # the events answering [label, cam]
    assert {d.get("api_name") for d in predicting} >= {"predict", "predict_sketch"}
    assert len(predicting) == 3  # the button, the upload, the sketch
    assert all(d["show_progress"] == "hidden" for d in predicting), [
        (d.get("api_name"), d.get("show_progress")) for d in predicting]


def test_examples_follow_the_models_dataset(digits_run, tmp_path, monkeypatch):
    """A digits run shows its own digits; a pretrained ImageNet model shows photos; picking the
    model switches the examples shown."""
    cache, result = digits_run
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    ref = f"run:{result.run_id}"
    digits = gradio_demo.examples_for(ref, tmp_path)
    photos = gradio_demo.examples_for("pretrained:vgg16", tmp_path)
    assert len(digits) == 4 and all(Image.open(p).mode == "L" for p in digits)
    assert len(photos) >= 3 and all(Image.open(p).mode == "RGB" for p in photos)
    assert gradio_demo.examples_for("run:no-such-run", tmp_path) == photos  # data gone: photos
    choices = [gradio_demo.Choice(ref, "digits run"), gradio_demo.Choice("pretrained:vgg16", "VGG-16")]
    demo = gradio_demo.build_demo(choices, k=3)
    on_model = next(b.fn for b in demo.fns.values() if getattr(b.fn, "__name__", "") == "on_model")
    boxes = [o for o in next(b for b in demo.fns.values() if b.fn is on_model).outputs][2:]
    assert len(boxes) == 2 and [b.visible for b in boxes] == [True, False]  # the digits run's shown first
    _, hint, *shown = on_model("pretrained:vgg16")
    assert [u.visible if hasattr(u, "visible") else u["visible"] for u in shown] == [False, True]
    _, hint, *shown = on_model(ref)
    assert "Draw a digit" in hint and "scikit-learn" in hint
    assert [u.visible if hasattr(u, "visible") else u["visible"] for u in shown] == [True, False]
