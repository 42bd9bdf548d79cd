"""A shareable per-image prediction demo.

    python app/gradio_demo.py                  # every saved run (and pretrained models present)
    python app/gradio_demo.py --run RUN_ID     # start on one run
    python app/gradio_demo.py --model vgg16    # the pretrained ImageNet VGG-16 (weights must be present)
    python app/gradio_demo.py --share          # ask Gradio for a public link

Students upload a photo (or use the webcam or the clipboard), or draw a digit or a shape on the
sketchpad, and get the top classes with probabilities and the Grad-CAM overlay of the top class.
A drawing goes through :func:`cnnlab.data.drawing.drawing_to_image` first (inverted, cropped,
centred and scaled like the images of the model's dataset), as on the app's Predict page. The
examples follow the selected model: a run's own validation images, photos for ImageNet models.
Only the two prediction functions are exposed; uploads are limited in size and decoded by
cnnlab's safe decoders.

The link is shared with a room, so every request is untrusted (see :class:`Uploads` and
:class:`RequestLimits`): the prediction reads only files Gradio received as uploads for this
demo or its own examples (resolved paths, regular files, at most 10 MB read), never a path,
``data:`` URL or web address a request names; request bodies are bounded before anything
parses them, an upload carries one file, and only the picker's models can be asked for.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A classroom demo sends nothing anywhere: no usage analytics (they would also try the network offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from gradio.components.base import server  # noqa: E402
from gradio.components.image_editor import EditorDataBlobs  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402

MAX_FILE_MB = 10
MAX_FILE_SIZE = f"{MAX_FILE_MB}mb"  # Gradio's upload limit (it reads "10mb" as 10 MiB)
MAX_FILE_BYTES = MAX_FILE_MB * 1024 * 1024  # the same limit, enforced again on the bytes we read
MAX_UPLOAD_BODY = MAX_FILE_BYTES + 64 * 1024  # one file plus its multipart headers
MAX_JSON_BODY = 256 * 1024  # every other request: a prediction call is a few hundred bytes
TRAIN_HINT = "python -m cnnlab train --model lenet --data digits --epochs 3"


@dataclass
class Choice:
    ref: str
    label: str


def available_choices(run: str | None = None, model: str | None = None) -> list[Choice]:
    """Runs with a checkpoint (newest first) and pretrained models whose weights are present."""
    from cnnlab.models.pretrained import PRETRAINED, weights_status
    from cnnlab.runs import list_runs, load_run

    choices: list[Choice] = []
    if run:
        r = load_run(run)  # raises a clear error for an unknown id
        if not r.has_checkpoint:
            raise CnnlabError(f"run {r.run_id} has no checkpoint yet (status: {r.status}).")
    for r in list_runs():
        if r.has_checkpoint and not r.damaged:
            acc = r.best_val_top1
            acc_txt = f", best val {acc:.1%}" if isinstance(acc, float) and acc <= 1 else ""
            choices.append(Choice(f"run:{r.run_id}",
                                  f"{r.meta.get('model', '?')} on {r.meta.get('dataset', '?')}{acc_txt} · {r.run_id}"))
    for name, spec in PRETRAINED.items():
        if weights_status(name)[0] == "present":
            choices.append(Choice(f"pretrained:{name}", spec.display_name))
    if model:
        ref = f"pretrained:{model}"
        state, message = weights_status(model)
        if state != "present":
            raise CnnlabError(message)
        choices.sort(key=lambda c: c.ref != ref)
    if run:
        choices.sort(key=lambda c: not c.ref.startswith(f"run:{run}"))
    return choices


class Predictor:
    """Loads model sources on demand (cached) and answers one image at a time.

    ``refs``: the model references a request may name (the picker's choices; ``None`` for any,
    as for server-side use). ``uploads``: which files a request may name (see :class:`Uploads`);
    by default none, so a Predictor never reads a path it was not told is an upload."""

    def __init__(self, k: int = 5, refs: list[str] | None = None, uploads: Uploads | None = None):
        self.k = k
        self.refs = None if refs is None else set(refs)
        self.uploads = uploads or Uploads()
        self._cache: dict[str, object] = {}
        self._datasets: dict[str, str | None] = {}
        self.sketchpad: gr.ImageEditor | None = None  # the page's Sketchpad, whose blobs a drawing is read from
        self._lock = threading.Lock()  # Gradio answers requests from several threads at once

    def source(self, ref: str):
        """The model source of ``ref``, loaded once: one model in memory at a time, and a request
        for another model waits until the one being loaded is ready (never a half-cleared cache)."""
        from cnnlab.sources import load_source

        with self._lock:
            src = self._cache.get(ref)
            if src is None:
                self._cache.clear()  # keep one model in memory at a time
                src = self._cache[ref] = load_source(ref)
            return src

    def dataset_of(self, ref: str) -> str | None:
        """The dataset ``ref``'s model learned from ("imagenet" for pretrained weights; None when
        unknown), which decides how a drawing is made to look (:func:`cnnlab.data.drawing.style_for`)."""
        from cnnlab.sources import dataset_of

        if ref not in self._datasets:
            self._datasets[ref] = dataset_of(ref)
        return self._datasets[ref]

    def allowed(self, ref) -> bool:
        return bool(ref) and isinstance(ref, str) and (self.refs is None or ref in self.refs)

    def classes_text(self, ref: str) -> str:
        """What the chosen model can answer: its classes (a 3-class model only ever says one of three)."""
        if not ref or not isinstance(ref, str) or (self.refs is not None and ref not in self.refs):
            return "Pick a model from the list."
        try:
            classes = list(self.source(ref).classes)
        except CnnlabError as err:
            return _one_line(str(err))
        except Exception:  # noqa: BLE001 - never a traceback for a visitor
            traceback.print_exc()
            return "This model cannot be loaded."
        shown = ", ".join(classes[:30]) + (f" and {len(classes) - 30} more" if len(classes) > 30 else "")
        return (f"**This model knows {len(classes)} classes:** {shown}. Whatever the image, its answer is one "
                "of these.")

    def __call__(self, ref: str, image: dict | str | None):
        """``image`` is Gradio's raw upload payload. The events run with ``preprocess=False``, so
        Gradio never opens the file itself: every file, even a broken one, reaches cnnlab's safe
        decoder and gets its clear message. (Gradio's own preprocessing would not protect us
        anyway: ``gr.Image`` opens a payload's path without checking it when the payload has no
        ``meta``, and decodes ``data:`` URLs without a size bound.) So the payload is checked
        here: only files Gradio received for this demo, or its examples, are read."""
        with _one_message():
            if not self.allowed(ref):
                raise gr.Error(PICK_MODEL)
            data = self.uploads.read(image)
            return self._predict(ref, data)

    def sketch(self, ref: str, value: dict | None):
        """The Sketchpad's raw value (``preprocess=False``), as a browser or a client sends it:

        - from the page: ``{"id": ...}``, the drawing's PNG having been posted just before to the
          Sketchpad's own ``accept_blobs`` route (bytes in memory, within the request limit),
          taken out of ``self.sketchpad.blob_storage`` here; no drawing yet (the brush was just
          picked, the canvas was cleared) clears the answer, the hint above the pad says what to do;
        - from gradio_client or HTTP: ``{"composite": <file>}``, an uploaded file read through
          :class:`Uploads` like any image; a missing or blank drawing is an error sentence.

        The PNG is decoded within :data:`cnnlab.data.drawing.MAX_BYTES` and ``MAX_SIDE``, made to
        look like the model's dataset (:func:`cnnlab.data.drawing.drawing_to_image`), and predicted."""
        from cnnlab.data.drawing import EmptyDrawingError

        with _one_message():
            if not self.allowed(ref):
                raise gr.Error(PICK_MODEL)
            if not isinstance(value, dict):
                raise gr.Error(NO_SKETCH)
            blob_id = value.get("id")
            if blob_id is not None and value.get("composite") is None:
                blobs = self.sketchpad.blob_storage.pop(blob_id, None) if (
                    self.sketchpad is not None and isinstance(blob_id, str)) else None
                data = getattr(blobs, "composite", None)
                if not isinstance(data, (bytes, bytearray)) or not data:
                    return None, None  # nothing drawn yet
                try:
                    return self._predict_drawing(ref, bytes(data))
                except EmptyDrawingError:
                    return None, None  # a cleared canvas
            composite = value.get("composite")
            if composite is None or composite == "":
                raise gr.Error(NO_SKETCH)
            return self._predict_drawing(ref, self.uploads.read(composite))

    def _predict_drawing(self, ref: str, data: bytes):
        from cnnlab.data.drawing import decode_drawing, drawing_to_image, style_for

        rgba = decode_drawing(data)  # bounded before decoding: MAX_BYTES, MAX_SIDE
        src = self.source(ref)
        style = style_for(self.dataset_of(ref), src.input_shape)
        return self._answer(src, drawing_to_image(rgba, style, background=SKETCH_BACKGROUND))

    def _predict(self, ref: str, data: bytes):
        from cnnlab.data.images import decode_image

        image = decode_image(data)
        return self._answer(self.source(ref), image)

    def _answer(self, src, image):
        from PIL import Image

        from cnnlab.activations import denormalize, grad_cam, overlay
        from cnnlab.evaluate import predict_topk

        top = predict_topk(src.model, image, src, k=min(self.k, len(src.classes)))
        x = src.to_input(image)
        cam = grad_cam(src.model, x, target=src.classes.index(top[0][0]))
        seen = Image.fromarray(denormalize(x, src.mean, src.std))
        scale = max(1, 320 // max(seen.size))
        seen = seen.resize((seen.width * scale, seen.height * scale), Image.BILINEAR)
        picture = overlay(seen, cam.heatmap)
        return {name: float(p) for name, p in top}, picture


class _one_message:
    """Every failure of a prediction as one :class:`gr.Error` of one short sentence: cnnlab's own
    message, or a generic sentence (the log keeps the traceback) -- never a traceback or an empty
    message for a visitor."""

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, gr.Error) or not isinstance(err, Exception):
            return False
        if isinstance(err, CnnlabError):
            raise gr.Error(_one_line(str(err))) from None
        traceback.print_exception(kind, err, tb)
        raise gr.Error("The prediction failed unexpectedly; try another image or model.") from None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Which files a request may name
# ---------------------------------------------------------------------------------------------

NO_IMAGE = "Upload an image, take one with the webcam, or paste one."
NO_SKETCH = "Draw on the sketchpad first."
PICK_MODEL = "Pick a model from the list first."
SKETCH_SIDE = 280  # pixels: ten times MNIST's 28, as in the TF.js digit demos
SKETCH_BACKGROUND = "#ffffff"  # the sketchpad's paper: a drawing's transparent pixels are white
NOT_RECEIVED = "That image is not one this demo received; upload it again."
INLINE_REFUSED = "Inline (data: or web address) images are not accepted; upload the image file."
TOO_LARGE = f"The image is larger than {MAX_FILE_MB} MB; upload a smaller one."
REFUSED_MARK = "\0cnnlab-refused:"
REFUSALS = {"inline": INLINE_REFUSED, "not-received": NOT_RECEIVED}


class Uploads:
    """The files a request may name: those Gradio received through its ``/upload`` route for this
    demo (``demo.upload_file_set``) and the demo's example files (the ones ``build_demo`` wrote,
    and the copies Gradio made of them in its cache while the demo was built). Paths are
    resolved (symlinks, ``..``) first and must lie inside Gradio's upload folder or be an
    example. Everything else gets the same one sentence, whether it exists or not, so nothing
    on the server can be probed.

    A browser never sends anything else: a file, a webcam shot and a pasted image are all
    uploaded through ``/gradio_api/upload`` first (only a *streaming* webcam sends ``data:``
    URLs, and this demo does not stream), so ``data:`` and web-address payloads are refused
    outright rather than decoded."""

    def __init__(self, examples: list[str] | tuple[str, ...] = ()):
        self.demo: gr.Blocks | None = None
        self.examples = {os.path.realpath(p) for p in examples}
        self.cached_examples: set[str] = set()

    def attach(self, demo: gr.Blocks):
        """Accept ``demo``'s uploads from now on; what its components hold in Gradio's cache at
        this point (before launch: only the examples' copies) counts as examples."""
        self.demo = demo
        self.cached_examples = {os.path.realpath(p) for files in demo.temp_file_sets for p in files}

    def resolve(self, raw) -> str | None:
        """The resolved path of ``raw`` when a request may read it, else None."""
        from gradio.utils import get_upload_folder

        if not isinstance(raw, str) or not raw or "\0" in raw or len(raw) > 4096 or _is_inline(raw):
            return None
        try:
            real = os.path.realpath(raw)
            if real in self.examples:
                return real
            if self.demo is None:
                return None
            folder = os.path.realpath(get_upload_folder())
            if os.path.commonpath([real, folder]) != folder:
                return None
        except (OSError, ValueError):
            return None
        if real in self.cached_examples:
            return real
        received = self.demo.upload_file_set
        if raw in received or os.path.abspath(raw) in received or real in received:
            return real
        return None

    def read(self, payload: dict | str | None) -> bytes:
        """The bytes of the one file the payload names, at most ``MAX_FILE_BYTES``."""
        if isinstance(payload, dict):
            raw = payload.get("path")
            mark = payload.get("orig_name")
            if raw is None and isinstance(mark, str) and mark.startswith(REFUSED_MARK):
                raise gr.Error(REFUSALS.get(mark[len(REFUSED_MARK):], NOT_RECEIVED))  # see RequestLimits
            if _is_inline(raw) or _is_data(payload.get("url")):
                raise gr.Error(INLINE_REFUSED)
            if not raw and not payload.get("url"):
                raise gr.Error(NO_IMAGE)
        elif payload is None or payload == "":
            raise gr.Error(NO_IMAGE)
        else:
            raw = payload
            if _is_inline(raw):
                raise gr.Error(INLINE_REFUSED)
        real = self.resolve(raw)
        if real is None:
            raise gr.Error(NOT_RECEIVED)
        try:
            return _read_regular_file(real, MAX_FILE_BYTES)
        except OSError:
            raise gr.Error(NOT_RECEIVED) from None


def _is_data(value) -> bool:
    return isinstance(value, str) and value.lstrip()[:5].lower() == "data:"


def _is_inline(value) -> bool:
    """A ``path`` that is not a path: a ``data:`` URL or a web address (which Gradio would fetch)."""
    web = isinstance(value, str) and value.lstrip()[:8].lower().startswith(("http://", "https://"))
    return web or _is_data(value)


def _read_regular_file(path: str, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes: no device, FIFO or directory (opened
    non-blocking, checked on the open descriptor), never more than ``limit + 1`` bytes read."""
    flags = os.O_RDONLY
    for name in ("O_NONBLOCK", "O_NOFOLLOW", "O_BINARY"):  # the last on Windows, the others on POSIX
        flags |= getattr(os, name, 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise gr.Error(NOT_RECEIVED)
        if st.st_size > limit:
            raise gr.Error(TOO_LARGE)
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise gr.Error(TOO_LARGE)
    return data


def example_images(folder: Path, names=("chelsea", "astronaut", "coffee", "rocket")) -> list[str]:
    from cnnlab.data.images import bundled_photos, load_bundled_photo

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        if name in bundled_photos():
            path = folder / f"{name}.png"
            if not path.exists():
                load_bundled_photo(name).save(path)
            out.append(str(path))
    return out


def dataset_examples(ref: str, folder: Path, n: int = 4) -> list[str]:
    """A few images of a run's own validation split (its seed, split and classes, rebuilt from
    its config by :func:`cnnlab.runs.load_run_data`), saved as PNG for Gradio's examples."""
    if not ref.startswith("run:"):
        return []
    from PIL import Image

    from cnnlab.runs import load_run, load_run_data

    try:
        bundle = load_run_data(load_run(ref[4:]))
    except (CnnlabError, OSError):  # a dataset no longer on disk, a damaged config: bundled photos are enough
        return []
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(min(n, len(bundle.val))):
        arr = bundle.val.images[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        path = folder / f"{bundle.info.name}-{i}.png"
        img.resize((img.width * 4, img.height * 4), Image.NEAREST).save(path)
        out.append(str(path))
    return out


# ---------------------------------------------------------------------------------------------
# Request limits, before Gradio parses anything
# ---------------------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


MAX_DRAWINGS = 64  # drawings a Sketchpad keeps in memory between their upload and their prediction
MAX_DRAWING_ID = 64


@server
def _accept_drawing(pad, data) -> None:
    """The Sketchpad's ``accept_blobs`` server function, safe to share by link.

    The page posts a drawing's PNG here before the change event names it by id. Gradio's own
    function trusts the request: a ``layer`` blob with index 1,000,000,000 makes it allocate a
    list of a billion entries (8 GB), and ids nobody ever predicts pile up in memory. This one
    keeps only what :meth:`Predictor.sketch` reads, the drawing's composite PNG (the request limit
    bounds its size), under a short id, and at most :data:`MAX_DRAWINGS` of them (the oldest are
    dropped: a drawing is read within a second of being posted)."""
    fields, files = getattr(data, "data", None), getattr(data, "files", None)
    if not isinstance(fields, dict) or not isinstance(files, list) or len(files) != 1:
        return None
    blob_id, kind = fields.get("id"), fields.get("type")
    if kind != "composite" or not isinstance(blob_id, str) or not 0 < len(blob_id) <= MAX_DRAWING_ID:
        return None  # backgrounds and layers are not used: never stored, never indexed
    content = files[0][1] if isinstance(files[0], (tuple, list)) and len(files[0]) == 2 else None
    if not isinstance(content, (bytes, bytearray)):
        return None
    pad.blob_storage.pop(blob_id, None)  # a newer drawing under the same id goes to the end
    pad.blob_storage[blob_id] = EditorDataBlobs(background=None, layers=[], composite=bytes(content))
    while len(pad.blob_storage) > MAX_DRAWINGS:
        pad.blob_storage.pop(next(iter(pad.blob_storage)))
    return None


def bounded_sketchpad(**kwargs) -> gr.Sketchpad:
    """A Sketchpad whose ``accept_blobs`` is :func:`_accept_drawing` (set on the instance: a subclass
    of a Gradio component would make Gradio write a ``.pyi`` stub next to this file)."""
    pad = gr.Sketchpad(**kwargs)
    pad.accept_blobs = types.MethodType(_accept_drawing, pad)
    return pad


class RequestLimits:
    """ASGI middleware on the FastAPI app Gradio builds (passed through ``launch(app_kwargs=)``).

    - ``/upload``: at most ``MAX_UPLOAD_BODY`` bytes and one file per request (Gradio's own
      ``max_file_size`` is per file, so six 9 MB files in one request would pass it).
    - every other request: at most ``MAX_JSON_BODY`` bytes, read here in full (so a 67 MB JSON
      body is refused before anything parses it), and a JSON body naming a file by web address
      or ``data:`` URL is refused (Gradio would otherwise download the address into its cache,
      or decode the data, before our function runs).

    A declared ``Content-Length`` over the limit is refused without reading the body; a body
    without one (chunked) is counted as it arrives."""

    def __init__(self, app, uploads: Uploads | None = None, max_upload: int = MAX_UPLOAD_BODY,
                 max_body: int = MAX_JSON_BODY):
        self.app, self.uploads, self.max_upload, self.max_body = app, uploads, max_upload, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            receive = await self._guard(scope, receive)
            await self.app(scope, receive, tracking_send)
        except _Refused as refusal:
            if started:
                raise
            await _respond(send, refusal.status, refusal.message)

    async def _guard(self, scope, receive):
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        is_upload = scope.get("path", "").rstrip("/").endswith("/upload")
        limit = self.max_upload if is_upload else self.max_body
        what = f"an image upload is limited to {MAX_FILE_MB} MB" if is_upload else "this request is too large"
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise _Refused(400, "Bad Content-Length.") from None
            if size > limit:
                raise _Refused(413, f"Request refused: {what}.")
        if is_upload:
            return _counting_receive(receive, limit, what, _multipart_marker(headers))
        if scope.get("method", "GET") in ("GET", "HEAD", "OPTIONS") and declared is None:
            return _counting_receive(receive, limit, what, None)
        body = _check_files(await _read_body(receive, limit, what), self.uploads)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _multipart_marker(headers: dict) -> bytes | None:
    ctype = headers.get(b"content-type", b"").decode("latin-1")
    if not ctype.lower().startswith("multipart/"):
        return None
    for part in ctype.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "boundary" and value.strip('"'):
            return b"--" + value.strip('"').encode("latin-1")
    return None


def _counting_receive(receive, limit: int, what: str, marker: bytes | None):
    """``receive`` that refuses a body over ``limit`` bytes and, given a multipart boundary
    marker, a body with more than one part (a part opens with the marker, the end is marked by
    one more)."""
    total, seen, tail = 0, 0, b""

    async def wrapped():
        nonlocal total, seen, tail
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise _Refused(413, f"Request refused: {what}.")
            if marker:
                window = tail + chunk
                seen += window.count(marker)
                tail = window[-(len(marker) - 1):]
                if seen > 2:
                    raise _Refused(400, "Request refused: send one image per upload.")
        return message

    return wrapped


async def _read_body(receive, limit: int, what: str) -> bytes:
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Refused(400, "The request ended early.")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _Refused(413, f"Request refused: {what}.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _check_files(body: bytes, uploads: Uploads | None) -> bytes:
    """The body, with every file object Gradio must not touch replaced by a refusal.

    A file object naming a ``data:`` URL or a web address (Gradio would decode it, or download
    the address into its cache, before our function runs) or, given the demo's
    :class:`Uploads`, a path the demo did not receive, is replaced by an empty file object
    whose ``orig_name`` carries the reason: Gradio passes it on untouched, and the prediction
    function answers with its one sentence (so the browser, gradio_client and plain HTTP all
    get the same message, and missing and forbidden paths read alike)."""
    if not body.strip():
        return body
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body  # not JSON for FastAPI either: it refuses it itself
    changed = False

    def visit(item):
        nonlocal changed
        if isinstance(item, list):
            return [visit(v) for v in item]
        if not isinstance(item, dict):
            return item
        if "path" in item or "url" in item:
            path, reason = item.get("path"), None
            if _is_inline(path) or _is_data(item.get("url")):
                reason = "inline"
            elif path is not None and (uploads is None or uploads.resolve(path) is None):
                reason = "not-received" if uploads is not None or not isinstance(path, str) else None
            if reason:
                changed = True
                return {"path": None, "url": None, "orig_name": REFUSED_MARK + reason}
        return {k: visit(v) for k, v in item.items()}

    try:
        data = visit(data)
    except RecursionError:
        raise _Refused(400, "Request refused: it is nested too deeply.") from None
    return json.dumps(data).encode() if changed else body


async def _respond(send, status: int, message: str):
    body = json.dumps({"detail": message, "error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def examples_for(ref: str, folder: Path) -> list[str]:
    """The examples shown for one model: a run's own validation images (photos when its data
    cannot be rebuilt), photos for a pretrained ImageNet model."""
    if ref.startswith("run:"):
        own = dataset_examples(ref, folder / ref[4:].replace("/", "_"))
        if own:
            return own
    return example_images(folder / "photos")


def build_demo(choices: list[Choice], k: int = 5) -> gr.Blocks:
    from cnnlab.data.drawing import style_for

    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-gradio-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # example files live as long as the demo
    per_choice = {c.ref: examples_for(c.ref, tmp) for c in choices}
    groups: dict[tuple[str, ...], list[str]] = {}  # one gr.Examples per distinct set of files
    for ref, files in per_choice.items():
        groups.setdefault(tuple(files), []).append(ref)
    uploads = Uploads([p for files in per_choice.values() for p in files])
    predictor = Predictor(k, refs=[c.ref for c in choices], uploads=uploads)

    def sketch_hint(ref: str) -> str:
        try:
            style = style_for(predictor.dataset_of(ref), tuple(predictor.source(ref).input_shape))
        except Exception:  # noqa: BLE001 - a model that cannot load says so in the classes text
            return ""
        return (f"Draw {style.subject} in black: the answer follows your pen. The drawing is "
                f"{style.describe()} before the model sees it.")

    with gr.Blocks(title="cnnlab — what does the network see?") as demo:
        gr.Markdown("# What does the network see?\nUpload a photo, take one with the webcam, paste one or "
                    "draw one: the model answers with its top classes and shows where it looked (Grad-CAM).")
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown([(c.label, c.ref) for c in choices], value=choices[0].ref, label="Model")
                known = gr.Markdown(predictor.classes_text(choices[0].ref))
                with gr.Tabs():
                    with gr.Tab("Image", id="image"):
                        image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Image")
                        button = gr.Button("Predict", variant="primary")
                    with gr.Tab("Draw", id="draw"):
                        hint = gr.Markdown(sketch_hint(choices[0].ref))
                        sketch = bounded_sketchpad(label="Sketchpad", canvas_size=(SKETCH_SIDE, SKETCH_SIDE),
                                              fixed_canvas=True, format="png", image_mode="RGBA", layers=False,
                                              transforms=(), brush=gr.Brush(default_size=18, colors=["#000000"],
                                                                            color_mode="fixed"))
            with gr.Column():
                label = gr.Label(num_top_classes=k, label="Top classes")
                cam = gr.Image(type="pil", label="Grad-CAM of the top class (the input as the model sees it)",
                               interactive=False, height=340)
        predictor.sketchpad = sketch
        example_sets = []
        for files, refs in groups.items():
            if files:
                with gr.Column(visible=choices[0].ref in refs) as box:  # shown for its models only
                    gr.Examples(list(files), inputs=[image], label="Examples")
                example_sets.append((box, set(refs)))

        def on_model(ref):
            """The classes, the drawing hint and the examples of the model just picked."""
            if not predictor.allowed(ref):
                return (predictor.classes_text(ref), gr.update(), *[gr.update() for _ in example_sets])
            return (predictor.classes_text(ref), sketch_hint(ref),
                    *[gr.Column(visible=ref in refs) for _, refs in example_sets])

        model.change(on_model, inputs=[model], outputs=[known, hint, *[b for b, _ in example_sets]],
                     api_visibility="private")
        # show_progress="hidden": a failure is shown once, in Gradio's error toast, not also as an
        # "Error" badge on each of the two outputs
        button.click(predictor, inputs=[model, image], outputs=[label, cam], api_name="predict", preprocess=False,
                     show_progress="hidden")
        image.upload(predictor, inputs=[model, image], outputs=[label, cam], api_visibility="private",
                     preprocess=False, show_progress="hidden")
        sketch.change(predictor.sketch, inputs=[model, sketch], outputs=[label, cam], api_name="predict_sketch",
                      preprocess=False, show_progress="hidden", trigger_mode="always_last")
    uploads.attach(demo)  # from now on, files Gradio receives for this demo may be read
    demo.cnnlab_uploads = uploads  # for launch(): the request middleware checks paths too
    return demo


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(demo: gr.Blocks, host: str, port: int | None, share: bool, block: bool = True):
    """Launch; when a public link is impossible, say so in one line and keep serving locally."""
    from starlette.middleware import Middleware

    limits = Middleware(RequestLimits, uploads=getattr(demo, "cnnlab_uploads", None))

    def kwargs() -> dict:  # fresh each launch: Gradio adds to app_kwargs
        return dict(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, show_error=True,
                    quiet=True, prevent_thread_lock=True, footer_links=[],
                    app_kwargs={"middleware": [limits]})

    share_ok = False
    if share:
        try:
            demo.launch(share=True, **kwargs())
            share_ok = bool(getattr(demo, "share_url", None))
        except Exception as e:  # no network, blocked tunnel
            print(f"Could not create a public link ({type(e).__name__}: {e}).", file=sys.stderr)
            demo.close()
    if not share_ok:
        if share:
            print("No public share link is possible from here (no network or the tunnel is blocked); "
                  "serving on the local address only.", flush=True)
            if not getattr(demo, "local_url", None):
                demo.launch(share=False, **kwargs())
        else:
            demo.launch(share=False, **kwargs())
    print(f"cnnlab demo on {demo.local_url}" + (f" — public link: {demo.share_url}" if share_ok else ""), flush=True)
    if block:
        demo.block_thread()
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="run id to start on (default: the newest run)")
    parser.add_argument("--model", help="a pretrained ImageNet model, e.g. vgg16 (weights must be present)")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link")
    parser.add_argument("--port", type=int, default=None, help="port (default: Gradio's 7860 or the next free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for the local network)")
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        choices = available_choices(args.run, args.model)
    except CnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not choices:
        print("No trained run and no pretrained weights yet, so there is nothing to demo.\n"
              f"Train a model first (a few seconds on a CPU):\n    {TRAIN_HINT}\n"
              "or fetch pretrained ImageNet weights:\n    python -m cnnlab fetch vgg16", file=sys.stderr)
        return 1
    launch(build_demo(choices, args.topk), args.host, args.port, args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
