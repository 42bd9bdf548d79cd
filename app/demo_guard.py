"""What makes the Gradio demo safe to share by link with a room of students.

Every request is untrusted: nothing a request sends may read a file the demo did not receive,
run code, make the server fetch a web address, or make it read or allocate without bound, and
every refusal reads the same whatever exists on the server (nothing can be probed).
``app/gradio_demo.py`` applies all of it: ``build_demo`` ends with :func:`protect`, ``launch``
passes :func:`launch_options` to Gradio. The protections, and why each is needed:

- **Bounded request bodies, before anything parses them** (:class:`RequestLimits`, an ASGI
  middleware): an upload carries at most :data:`MAX_UPLOAD_BODY` bytes (one 10 MB image and its
  multipart headers), every other request at most :data:`MAX_JSON_BODY`; a declared
  ``Content-Length`` over the limit is refused unread, a chunked body is counted as it arrives.
  Gradio would otherwise parse a 67 MB JSON body in memory.
- **One file per upload** (:class:`RequestLimits`): Gradio's ``max_file_size`` (also set, see
  :func:`launch_options`) is per file, so six 9 MB files in one request would pass it.
- **No ``data:`` URL or web address as a file** (:class:`RequestLimits` rewrites such a file
  object into a refusal that the prediction answers with one sentence; :class:`Uploads` refuses
  them again): Gradio would decode the data without a size bound, or download the address into
  its cache (a request making the server fetch any address), before the demo's function runs.
  A browser never sends either: files, webcam shots and pasted images are uploaded first.
- **Only the files this demo received** (:class:`Uploads`): a path is resolved (symlinks, ``..``)
  and must lie in Gradio's upload folder and be one Gradio received for this demo, or be one of
  the demo's examples; ``/etc/passwd``, another app's upload, a missing file all get the same
  sentence. The middleware refuses such paths before Gradio looks at them, so the browser,
  gradio_client and plain HTTP all get that sentence.
- **Only regular files, read with a bound** (:func:`_read_regular_file`): no FIFO, device
  (``/dev/zero``) or directory, and never more than :data:`MAX_FILE_BYTES` read.
- **Bounded drawings in memory** (:func:`_accept_drawing`, the Sketchpad's upload route): Gradio's
  own extends a list to a client-chosen index (a billion entries: 8 GB) and keeps every id
  forever; this one keeps at most :data:`MAX_DRAWINGS` drawing PNGs, under short ids.

What the demo itself does for the same reason (``app/gradio_demo.py``): its events run with
``preprocess=False`` (Gradio's ``gr.Image`` opens a payload's path unchecked when it has no
``meta``, so every file goes through :class:`Uploads` and cnnlab's bounded decoders instead); only
``/predict`` and ``/predict_sketch`` are in the API; only the picker's models can be asked for
(weights are loaded with ``weights_only=True``, so no pickle code runs); no ``allowed_paths``, so
Gradio's ``/file=`` route serves no server file; a failure is one sentence, never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
import types

import gradio as gr
from gradio.components.base import server
from gradio.components.image_editor import EditorDataBlobs
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from cnnlab.i18n import N_, _

MAX_FILE_MB = 10
MAX_FILE_SIZE = f"{MAX_FILE_MB}mb"  # Gradio's upload limit (it reads "10mb" as 10 MiB)
MAX_FILE_BYTES = MAX_FILE_MB * 1024 * 1024  # the same limit, enforced again on the bytes we read
MAX_UPLOAD_BODY = MAX_FILE_BYTES + 64 * 1024  # one file plus its multipart headers
MAX_JSON_BODY = 256 * 1024  # every other request: a prediction call is a few hundred bytes
MAX_DRAWINGS = 64  # drawings a Sketchpad keeps in memory between their upload and their prediction
MAX_DRAWING_ID = 64

# the refusals a visitor reads, translated where they are raised (the demo itself stays English)
NO_IMAGE = N_("Upload an image, take one with the webcam, or paste one.")
NOT_RECEIVED = N_("That image is not one this demo received; upload it again.")
INLINE_REFUSED = N_("Inline (data: or web address) images are not accepted; upload the image file.")
TOO_LARGE = N_("The image is larger than {mb} MB; upload a smaller one.")  # {mb}: MAX_FILE_MB
REFUSED_MARK = "\0cnnlab-refused:"  # the middleware's refusal, carried in a file object's orig_name
REFUSALS = {"inline": INLINE_REFUSED, "not-received": NOT_RECEIVED}


# ---------------------------------------------------------------------------------------------
# Applying the protections
# ---------------------------------------------------------------------------------------------


def protect(demo: gr.Blocks, uploads: Uploads) -> gr.Blocks:
    """``demo``, built, made safe to share: ``uploads`` accepts its received files from now on,
    and every image editor on the page (the Sketchpad) keeps its drawings with a bound."""
    uploads.attach(demo)
    for block in demo.blocks.values():
        if isinstance(block, gr.ImageEditor):
            # set on the instance: a subclass of a Gradio component would make Gradio write a
            # .pyi stub next to this file
            block.accept_blobs = types.MethodType(_accept_drawing, block)
    demo.cnnlab_uploads = uploads  # for launch_options: the middleware checks paths too
    return demo


def launch_options(demo: gr.Blocks) -> dict:
    """The arguments of ``demo.launch`` that bound requests: Gradio's per-file upload limit and
    :class:`RequestLimits` in front of the app. Fresh each call: Gradio adds to ``app_kwargs``."""
    limits = Middleware(RequestLimits, uploads=getattr(demo, "cnnlab_uploads", None))
    return {"max_file_size": MAX_FILE_SIZE, "app_kwargs": {"middleware": [limits]}}


# ---------------------------------------------------------------------------------------------
# Which files a request may name
# ---------------------------------------------------------------------------------------------


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
                raise gr.Error(_(REFUSALS.get(mark[len(REFUSED_MARK):], NOT_RECEIVED)))  # see RequestLimits
            if _is_inline(raw) or _is_data(payload.get("url")):
                raise gr.Error(_(INLINE_REFUSED))
            if not raw and not payload.get("url"):
                raise gr.Error(_(NO_IMAGE))
        elif payload is None or payload == "":
            raise gr.Error(_(NO_IMAGE))
        else:
            raw = payload
            if _is_inline(raw):
                raise gr.Error(_(INLINE_REFUSED))
        real = self.resolve(raw)
        if real is None:
            raise gr.Error(_(NOT_RECEIVED))
        try:
            return _read_regular_file(real, MAX_FILE_BYTES)
        except OSError:
            raise gr.Error(_(NOT_RECEIVED)) from None


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
            raise gr.Error(_(NOT_RECEIVED))
        if st.st_size > limit:
            raise gr.Error(too_large())
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
        raise gr.Error(too_large())
    return data


def too_large() -> str:
    """The refusal of an image over the upload limit, in the language in use."""
    return _(TOO_LARGE).format(mb=MAX_FILE_MB)


# ---------------------------------------------------------------------------------------------
# Drawings kept in memory
# ---------------------------------------------------------------------------------------------


@server
def _accept_drawing(pad, data) -> None:
    """The Sketchpad's ``accept_blobs`` server function, safe to share by link.

    The page posts a drawing's PNG here before the change event names it by id. Gradio's own
    function trusts the request: a ``layer`` blob with index 1,000,000,000 makes it allocate a
    list of a billion entries (8 GB), and ids nobody ever predicts pile up in memory. This one
    keeps only what the demo's ``Predictor.sketch`` reads, the drawing's composite PNG (the
    request limit bounds its size), under a short id, and at most :data:`MAX_DRAWINGS` of them
    (the oldest are dropped: a drawing is read within a second of being posted)."""
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


# ---------------------------------------------------------------------------------------------
# Request limits, before Gradio parses anything
# ---------------------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


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
        if is_upload:
            too_big = _("Request refused: an image upload is limited to {mb} MB.").format(mb=MAX_FILE_MB)
        else:
            too_big = _("Request refused: this request is too large.")
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise _Refused(400, _("Bad Content-Length.")) from None
            if size > limit:
                raise _Refused(413, too_big)
        if is_upload:
            return _counting_receive(receive, limit, too_big, _multipart_marker(headers))
        if scope.get("method", "GET") in ("GET", "HEAD", "OPTIONS") and declared is None:
            return _counting_receive(receive, limit, too_big, None)
        body = _check_files(await _read_body(receive, limit, too_big), self.uploads)
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


def _counting_receive(receive, limit: int, too_big: str, marker: bytes | None):
    """``receive`` that refuses a body over ``limit`` bytes (saying ``too_big``) and, given a multipart boundary
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
                raise _Refused(413, too_big)
            if marker:
                window = tail + chunk
                seen += window.count(marker)
                tail = window[-(len(marker) - 1):]
                if seen > 2:
                    raise _Refused(400, _("Request refused: send one image per upload."))
        return message

    return wrapped


async def _read_body(receive, limit: int, too_big: str) -> bytes:
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Refused(400, _("The request ended early."))
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _Refused(413, too_big)
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
        raise _Refused(400, _("Request refused: it is nested too deeply.")) from None
    return json.dumps(data).encode() if changed else body


async def _respond(send, status: int, message: str):
    body = json.dumps({"detail": message, "error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
