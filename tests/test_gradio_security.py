"""The Gradio demo as an attacker sees it: nothing a request sends may read a file the demo did
not receive, make the server read without bound, or tell which paths exist.

The demo runs in-process on a free 127.0.0.1 port. Requests go through plain HTTP (the
``/gradio_api/call`` and ``/gradio_api/queue`` routes, as curl or the browser would send them)
and through gradio_client; each refusal is checked by its words, and every test ends with a
normal upload that still predicts.
"""

import base64
import io
import json
import os
import resource
import shutil
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import numpy as np
import pytest
from apphelpers import free_port, train_run, using_cache
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from sklearn.datasets import load_digits

from cnnlab.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import demo_guard, gradio_demo  # noqa: E402

META = {"_type": "gradio.FileData"}
NOT_RECEIVED = demo_guard.NOT_RECEIVED
INLINE = demo_guard.INLINE_REFUSED


# ---------------------------------------------------------------------------------------------
# The server and how to talk to it
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _server(tmp_path_factory):
    with using_cache(tmp_path_factory.mktemp("security-cache")) as cache:
        config = TrainConfig(model="lenet", dataset="digits", epochs=1, batch_size=64, lr=2e-3, seed=0)
        run_id = train_run(config).run_id
        demo = gradio_demo.build_demo(gradio_demo.available_choices(run=run_id), k=3)
    port = free_port()
    gradio_demo.launch(demo, "127.0.0.1", port, share=False, block=False)
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=120)
    client = Client(base + "/", verbose=False)
    yield SimpleNamespace(demo=demo, base=base, http=http, client=client, ref=f"run:{run_id}", cache=cache)
    http.close()
    demo.close()


@pytest.fixture
def server(_server, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(_server.cache))  # the server reads runs lazily
    yield _server
    # whatever the test sent, the server still answers a normal upload
    ok = _handle(_png_file(_server.cache, "ok.png"))
    label, _ = _server.client.predict(_server.ref, ok, api_name="/predict")
    assert label["label"]


def _handle(path):
    return handle_file(str(path))


def _digit_png() -> bytes:
    img = Image.fromarray((load_digits().images[0] * 15).astype(np.uint8)).resize((56, 56))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_file(folder: Path, name: str) -> Path:
    path = Path(folder) / name
    path.write_bytes(_digit_png())
    return path


def _sse(text: str) -> list[tuple[str, str]]:
    events, event = [], "message"
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            events.append((event, line[5:].strip()))
            event = "message"
    return events


def call_http(srv, data: list) -> tuple[str, object]:
    """POST /gradio_api/call/predict then read its event stream: ("complete", outputs),
    ("error", message) or ("http <status>", body) when the POST itself is refused."""
    r = srv.http.post("/gradio_api/call/predict", json={"data": data})
    if r.status_code != 200:
        return f"http {r.status_code}", r.text
    stream = srv.http.get(f"/gradio_api/call/predict/{r.json()['event_id']}")
    for event, payload in _sse(stream.text):
        if event == "complete":
            return "complete", json.loads(payload)
        if event == "error":
            return "error", (json.loads(payload) or {}).get("error") if payload != "null" else None
    raise AssertionError(f"no result in {stream.text!r}")


def call_queue(srv, data: list) -> tuple[str, object]:
    """The browser's route: POST /gradio_api/queue/join, then the session's event stream."""
    config = srv.http.get("/config").json()
    fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "predict")
    session = uuid.uuid4().hex
    r = srv.http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                       "session_hash": session, "event_data": None,
                                                       "trigger_id": None})
    if r.status_code != 200:
        return f"http {r.status_code}", r.text
    stream = srv.http.get("/gradio_api/queue/data", params={"session_hash": session})
    for _, payload in _sse(stream.text):
        msg = json.loads(payload)
        if msg.get("msg") == "process_completed":
            out = msg.get("output") or {}
            return ("complete", out["data"]) if msg.get("success") else ("error", out.get("error"))
    raise AssertionError(f"no result in {stream.text!r}")


ROUTES = {"call": call_http, "queue": call_queue}


def _refused(result, words: str):
    kind, message = result
    assert kind == "error", result
    assert message == words, result
    return message


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.fixture
def in_upload_folder():
    """A fresh folder inside Gradio's upload folder (the place uploads land), removed afterwards."""
    folder = Path(get_upload_folder()) / f"cnnlab-test-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Hole 1: paths of the server's files
# ---------------------------------------------------------------------------------------------


def _attack_paths(tmp_path: Path, upload_dir: Path) -> dict[str, str]:
    outside = _png_file(tmp_path, "outside.png")  # a real image, outside Gradio's folder
    link = upload_dir / "link.png"
    link.symlink_to(outside)  # in the cache, pointing out of it
    link_passwd = upload_dir / "passwd.png"
    link_passwd.symlink_to("/etc/passwd")
    return {
        "passwd": "/etc/passwd",
        "missing": "/etc/no-such-file-anywhere",
        "outside image": str(outside),
        "dev zero": "/dev/zero",
        "symlink to image": str(link),
        "symlink to passwd": str(link_passwd),
        "dotdot": str(upload_dir / ".." / ".." / ".." / "etc" / "passwd"),
        "upload folder itself": str(upload_dir),
        "relative": "../../../../etc/passwd",
    }


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("meta", [False, True], ids=["no-meta", "meta"])
def test_server_paths_are_refused_alike(server, tmp_path, in_upload_folder, route, meta):
    before = _rss_peak_mb()
    messages = set()
    for name, path in _attack_paths(tmp_path, in_upload_folder).items():
        payload = {"path": path, "meta": META} if meta else {"path": path}
        result = ROUTES[route](server, [server.ref, payload])
        messages.add(_refused(result, NOT_RECEIVED))
    assert messages == {NOT_RECEIVED}  # missing, forbidden and existing files read alike
    assert _rss_peak_mb() - before < 200  # /dev/zero was never read


def test_a_symlink_gradio_recorded_is_still_resolved(server, tmp_path, in_upload_folder):
    """Even a path in the demo's own upload set is resolved before the containment check."""
    outside = _png_file(tmp_path, "outside.png")
    link = in_upload_folder / "recorded.png"
    link.symlink_to(outside)
    server.demo.upload_file_set.add(str(link))
    try:
        _refused(call_http(server, [server.ref, {"path": str(link), "meta": META}]), NOT_RECEIVED)
        _refused(call_http(server, [server.ref, {"path": str(link)}]), NOT_RECEIVED)
    finally:
        server.demo.upload_file_set.discard(str(link))


def test_a_file_gradio_did_not_receive_is_refused_even_in_its_folder(server, in_upload_folder):
    """Another app's upload (same shared folder) is not ours to read."""
    other = _png_file(in_upload_folder, "someone-elses.png")
    for payload in ({"path": str(other)}, {"path": str(other), "meta": META}):
        _refused(call_http(server, [server.ref, payload]), NOT_RECEIVED)
    assert str(other) not in server.demo.upload_file_set


def test_only_regular_files_and_the_size_limit_on_read(server, in_upload_folder):
    fifo = in_upload_folder / "pipe.png"
    os.mkfifo(fifo)
    big = in_upload_folder / "big.png"
    with open(big, "wb") as f:  # sparse: 11 MB on paper, nothing on disk
        f.truncate(demo_guard.MAX_FILE_BYTES + 1)
    paths = [str(fifo), str(big), str(in_upload_folder)]
    server.demo.upload_file_set.update(paths)  # as if Gradio had received them
    try:
        _refused(call_http(server, [server.ref, {"path": str(fifo)}]), NOT_RECEIVED)
        _refused(call_http(server, [server.ref, {"path": str(in_upload_folder)}]), NOT_RECEIVED)
        _refused(call_http(server, [server.ref, {"path": str(big)}]), demo_guard.too_large())
    finally:
        server.demo.upload_file_set.difference_update(paths)


@pytest.mark.parametrize("name", ["passwd", "outside image", "dev zero", "symlink to image"])
def test_gradio_client_raw_paths_are_refused(server, tmp_path, in_upload_folder, name):
    path = _attack_paths(tmp_path, in_upload_folder)[name]
    with pytest.raises(AppError) as e:
        server.client.predict(server.ref, {"path": path}, api_name="/predict")
    assert str(e.value) == NOT_RECEIVED


def test_a_model_outside_the_picker_is_refused(server, tmp_path):
    path = _png_file(tmp_path, "digit.png")
    for ref in ("zoo:densenet201", "pretrained:vgg16", "run:..", server.ref[:8], ""):
        with pytest.raises(Exception) as e:
            server.client.predict(ref, _handle(path), api_name="/predict")
        assert str(e.value) == "Pick a model from the list first."


def test_gradio_file_route_serves_no_server_file(server, tmp_path, in_upload_folder):
    """Gradio's own ``/file=`` route: the demo adds no allowed path, so it stays closed too."""
    for name, path in _attack_paths(tmp_path, in_upload_folder).items():
        if name in ("relative", "upload folder itself"):
            continue
        r = server.http.get(f"/gradio_api/file={path}")
        assert r.status_code == 403, (name, r.status_code)
        assert b"root:" not in r.content and b"PNG" not in r.content[:8]


# ---------------------------------------------------------------------------------------------
# Hole 2: data: URLs, web addresses, huge bodies, several files
# ---------------------------------------------------------------------------------------------


def test_data_urls_and_web_addresses_are_refused(server):
    small = "data:image/png;base64," + base64.b64encode(_digit_png()).decode()
    payloads = [
        {"url": small},  # a small valid image: refused all the same, a browser never sends one
        {"url": small, "path": None, "meta": META},
        {"path": small},
        {"path": small, "meta": META},
        {"path": "https://example.com/cat.png", "meta": META},  # Gradio would download it
        {"path": "http://127.0.0.1:1/x.png"},
    ]
    for payload in payloads:
        _refused(call_http(server, [server.ref, payload]), INLINE)

    with pytest.raises(AppError) as e:
        server.client.predict(server.ref, {"url": small, "path": None}, api_name="/predict")
    assert str(e.value) == INLINE


def _streamed_json(ref: str, n_mb: int):
    """A JSON body carrying an n MB data: URL, produced piece by piece (the test never holds it)."""
    yield ('{"data": ["' + ref + '", {"url": "data:image/png;base64,').encode()
    block = b"A" * (1 << 20)
    for _ in range(n_mb):
        yield block
    yield b'"}]}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_data_url_and_json_bodies_are_refused_before_parsing(server, declared):
    before = _rss_peak_mb()
    n = 26
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(sum(len(c) for c in _streamed_json(server.ref, n)))
    for url in ("/gradio_api/call/predict", "/gradio_api/queue/join", "/gradio_api/run/predict"):
        r = server.http.post(url, content=_streamed_json(server.ref, n), headers=headers)
        assert r.status_code == 413, (url, r.status_code, r.text[:200])
        assert r.json()["error"] == "Request refused: this request is too large."
    assert _rss_peak_mb() - before < 200


def test_a_json_body_just_over_the_limit_is_refused_and_one_under_is_parsed(server):
    pad = "x" * (demo_guard.MAX_JSON_BODY + 1)
    r = server.http.post("/gradio_api/call/predict", json={"data": [server.ref, None], "pad": pad})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    # an ordinary body is parsed and reaches the demo, which asks for an image
    assert call_http(server, [server.ref, None]) == ("error", demo_guard.NO_IMAGE)


def _multipart(files: list[tuple[str, bytes]], boundary: str = "cnnlabboundary") -> tuple[bytes, dict]:
    body = b""
    for name, data in files:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                 "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_one_file_per_upload(server):
    png = _digit_png()
    body, headers = _multipart([("a.png", png), ("b.png", png)])
    r = server.http.post("/gradio_api/upload", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "Request refused: send one image per upload."
    # the same two files, streamed without a length: refused as they arrive
    r = server.http.post("/gradio_api/upload", content=iter([body[:100], body[100:]]), headers=headers)
    assert r.status_code == 400 and "one image per upload" in r.json()["error"]
    # one file is fine, and the path it returns predicts
    body, headers = _multipart([("a.png", png)])
    r = server.http.post("/gradio_api/upload", content=body, headers=headers)
    assert r.status_code == 200, r.text
    (path,) = r.json()
    kind, out = call_http(server, [server.ref, {"path": path, "meta": META}])
    assert kind == "complete" and out[0]["label"]
    kind, out = call_queue(server, [server.ref, {"path": path, "meta": META}])
    assert kind == "complete" and out[0]["label"]


def test_upload_size_limit_whatever_the_count(server):
    nine = b"\0" * (9 * 1024 * 1024)
    body, headers = _multipart([(f"{i}.png", nine) for i in range(6)])  # six 9 MB files
    r = server.http.post("/gradio_api/upload", content=body, headers=headers)
    assert r.status_code == 413 and "limited to 10 MB" in r.json()["error"]
    body, headers = _multipart([("big.png", b"\0" * (demo_guard.MAX_FILE_BYTES + 1))])
    r = server.http.post("/gradio_api/upload", content=body, headers=headers)
    assert r.status_code == 413
    r = server.http.post("/gradio_api/upload", content=iter([body[: len(body) // 2], body[len(body) // 2:]]),
                         headers=headers)  # chunked: counted as it arrives
    assert r.status_code == 413
    body, headers = _multipart([("nine.png", nine)])  # one 9 MB file is within the limit
    assert server.http.post("/gradio_api/upload", content=body, headers=headers).status_code == 200


def test_several_files_in_one_prediction_only_the_image_input_is_used(server):
    first = server.http.post("/gradio_api/upload", files=[("files", ("a.png", _digit_png()))]).json()[0]
    ok = {"path": first, "meta": META}
    # the image input is the second value: a server path there is refused ...
    assert call_http(server, [server.ref, {"path": "/etc/passwd"}, ok]) == ("error", NOT_RECEIVED)
    # ... and extra values are ignored (Gradio passes the function its two inputs only)
    for extra in ({"path": "/etc/passwd"}, {"path": "/dev/zero", "meta": META}, ok):
        kind, out = call_http(server, [server.ref, ok, extra])
        assert kind == "complete" and out[0]["label"], (kind, out)


# ---------------------------------------------------------------------------------------------
# What still works
# ---------------------------------------------------------------------------------------------


def test_examples_still_predict(server):
    """The example files, as the page sends them back (Gradio's cached copies), are accepted."""
    config = server.http.get("/config").json()
    samples = [c["props"]["samples"] for c in config["components"] if c.get("type") == "dataset"]
    assert samples and samples[0]
    for (payload,) in samples[0][:2]:
        for route in ROUTES.values():
            kind, out = route(server, [server.ref, payload])
            assert kind == "complete", (kind, out)
            assert out[0]["label"]


def test_errors_are_one_short_sentence(server, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(AppError) as e:
        server.client.predict(server.ref, _handle(bad), api_name="/predict")
    text = str(e.value)
    assert text and "\n" not in text and "Traceback" not in text and len(text) < 300


# ---------------------------------------------------------------------------------------------
# The checks themselves, without a server or the middleware (defence in depth)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def uploads(in_upload_folder):
    guard = demo_guard.Uploads()
    guard.attach(SimpleNamespace(upload_file_set=set(), temp_file_sets=[set()]))
    return guard


def test_uploads_read_refuses_everything_not_received(uploads, tmp_path, in_upload_folder):
    for name, path in _attack_paths(tmp_path, in_upload_folder).items():
        for payload in ({"path": path}, {"path": path, "meta": META}, path):
            with pytest.raises(gr.Error) as e:
                uploads.read(payload)
            assert e.value.message == NOT_RECEIVED, name
    received = _png_file(in_upload_folder, "received.png")
    uploads.demo.upload_file_set.add(str(received))
    assert uploads.read({"path": str(received), "meta": META}) == _digit_png()
    via_dotdot = str(in_upload_folder / "x" / ".." / "received.png")
    assert uploads.read({"path": via_dotdot}) == _digit_png()  # resolved, then found in the set


def test_uploads_read_refuses_inline_and_empty(uploads):
    small = "data:image/png;base64," + base64.b64encode(_digit_png()).decode()
    for payload, words in [({"url": small}, INLINE), ({"path": small}, INLINE), (small, INLINE),
                           ({"path": "https://example.com/a.png"}, INLINE),
                           (None, demo_guard.NO_IMAGE), ({}, demo_guard.NO_IMAGE),
                           ("", demo_guard.NO_IMAGE),
                           ({"path": None, "orig_name": demo_guard.REFUSED_MARK + "inline"}, INLINE),
                           (123, NOT_RECEIVED), ({"path": 5}, NOT_RECEIVED)]:
        with pytest.raises(gr.Error) as e:
            uploads.read(payload)
        assert e.value.message == words, payload


def test_a_predictor_without_a_demo_reads_nothing(tmp_path):
    path = _png_file(tmp_path, "digit.png")
    with pytest.raises(gr.Error) as e:
        gradio_demo.Predictor()("zoo:lenet", {"path": str(path)})
    assert e.value.message == NOT_RECEIVED


def test_unexpected_failures_become_one_sentence(uploads, in_upload_folder, monkeypatch, capsys):
    received = _png_file(in_upload_folder, "received.png")
    uploads.demo.upload_file_set.add(str(received))
    predictor = gradio_demo.Predictor(refs=["zoo:lenet"], uploads=uploads)

    def boom(*a, **k):
        raise RuntimeError("")  # an empty message must not reach the user

    monkeypatch.setattr(predictor, "_predict", boom)
    with pytest.raises(gr.Error) as e:
        predictor("zoo:lenet", {"path": str(received)})
    assert e.value.message == "The prediction failed unexpectedly; try another image or model."
    assert "RuntimeError" in capsys.readouterr().err  # the log keeps the traceback


def _sketchpad(server):
    return next(b for b in server.demo.blocks.values() if isinstance(b, gr.Sketchpad))


def _post_blob(server, pad, kind: str, index, blob_id: str, content: bytes):
    fields = {"session_hash": "attacker", "component_id": str(pad._id), "fn_name": "accept_blobs",
              "type": kind, "index": str(index), "id": blob_id}
    return server.http.post("/gradio_api/component_server", data=fields,
                            files={"file": ("blob", content, "image/png")})


def test_the_sketchpad_stores_only_drawings_and_a_bounded_number_of_them(server):
    """Gradio's own accept_blobs would extend a list to a client-chosen index (a billion entries:
    8 GB) and keep every id forever; ours keeps only a drawing's picture, at most MAX_DRAWINGS."""
    pad = _sketchpad(server)
    png = _digit_png()
    before = _rss_peak_mb()
    assert _post_blob(server, pad, "layer", 1_000_000_000, "huge", png).status_code == 200
    assert _post_blob(server, pad, "background", "null", "bg", png).status_code == 200
    assert "huge" not in pad.blob_storage and "bg" not in pad.blob_storage
    assert _rss_peak_mb() - before < 500  # nothing the size of the index was allocated
    assert _post_blob(server, pad, "composite", "null", "x" * 65, png).status_code == 200
    assert "x" * 65 not in pad.blob_storage  # ids are short
    for i in range(demo_guard.MAX_DRAWINGS + 6):
        assert _post_blob(server, pad, "composite", "null", f"d{i}", png).status_code == 200
    assert len(pad.blob_storage) == demo_guard.MAX_DRAWINGS and "d0" not in pad.blob_storage
    last = f"d{demo_guard.MAX_DRAWINGS + 5}"
    assert pad.blob_storage[last].composite == png
    # the change event that names the drawing predicts it, and takes it out of the pad's memory
    label, _ = server.client.predict(server.ref, {"id": last}, api_name="/predict_sketch")
    assert label["label"] in [str(d) for d in range(10)] and last not in pad.blob_storage
