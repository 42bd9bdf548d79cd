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

The link is shared with a room, so every request is untrusted. What makes the demo safe to
share lives in ``app/demo_guard.py`` (its docstring lists each protection and why): the
prediction reads files only through :class:`~app.demo_guard.Uploads`, ``build_demo`` hands the
built page to :func:`~app.demo_guard.protect`, and ``launch`` starts it with
:func:`~app.demo_guard.launch_options` (request limits before Gradio parses anything). This
module keeps the page: loading a model, predicting, the layout, launching.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A classroom demo sends nothing anywhere: no usage analytics (they would also try the network offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from app import demo_guard as guard  # noqa: E402
from cnnlab import sources  # noqa: E402
from cnnlab.activations import denormalize, grad_cam, overlay  # noqa: E402
from cnnlab.data.drawing import EmptyDrawingError, decode_drawing, drawing_to_image, style_for  # noqa: E402
from cnnlab.data.gallery import to_pil  # noqa: E402
from cnnlab.data.images import bundled_photos, decode_image, load_bundled_photo  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.evaluate import predict_topk  # noqa: E402
from cnnlab.i18n import N_, _, ngettext  # noqa: E402
from cnnlab.models.pretrained import PRETRAINED, weights_status  # noqa: E402
from cnnlab.runs import list_runs, load_run, load_run_data, run_label  # noqa: E402

TRAIN_HINT = "python -m cnnlab train --model lenet --data digits --epochs 3"
FETCH_HINT = "python -m cnnlab fetch vgg16"
NO_SKETCH = N_("Draw on the sketchpad first.")
PICK_MODEL = N_("Pick a model from the list first.")
SKETCH_SIDE = 280  # pixels: ten times MNIST's 28, as in the TF.js digit demos
SKETCH_BACKGROUND = "#ffffff"  # the sketchpad's paper: a drawing's transparent pixels are white


@dataclass
class Choice:
    ref: str
    label: str


def available_choices(run: str | None = None, model: str | None = None) -> list[Choice]:
    """Runs with a checkpoint (newest first) and pretrained models whose weights are present."""
    choices: list[Choice] = []
    if run:
        r = load_run(run)  # raises a clear error for an unknown id
        if not r.has_checkpoint:
            raise CnnlabError(_("run {run} has no checkpoint yet (status: {status}).").format(run=r.run_id,
                                                                                             status=r.status))
    for r in list_runs():
        if r.has_checkpoint and not r.damaged:
            choices.append(Choice(f"run:{r.run_id}", run_label(r)))
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
    as for server-side use). ``uploads``: which files a request may name (see
    :class:`~app.demo_guard.Uploads`); by default none, so a Predictor never reads a path it was
    not told is an upload."""

    def __init__(self, k: int = 5, refs: list[str] | None = None, uploads: guard.Uploads | None = None):
        self.k = k
        self.refs = None if refs is None else set(refs)
        self.uploads = uploads or guard.Uploads()
        self._cache: dict[str, object] = {}
        self._datasets: dict[str, str | None] = {}
        self.sketchpad: gr.ImageEditor | None = None  # the page's Sketchpad, whose blobs a drawing is read from
        self._lock = threading.Lock()  # Gradio answers requests from several threads at once

    def source(self, ref: str):
        """The model source of ``ref``, loaded once: one model in memory at a time, and a request
        for another model waits until the one being loaded is ready (never a half-cleared cache)."""
        with self._lock:
            src = self._cache.get(ref)
            if src is None:
                self._cache.clear()  # keep one model in memory at a time
                src = self._cache[ref] = sources.load_source(ref)
            return src

    def dataset_of(self, ref: str) -> str | None:
        """The dataset ``ref``'s model learned from ("imagenet" for pretrained weights; None when
        unknown), which decides how a drawing is made to look (:func:`cnnlab.data.drawing.style_for`)."""
        if ref not in self._datasets:
            self._datasets[ref] = sources.dataset_of(ref)
        return self._datasets[ref]

    def allowed(self, ref) -> bool:
        return bool(ref) and isinstance(ref, str) and (self.refs is None or ref in self.refs)

    def classes_text(self, ref: str) -> str:
        """What the chosen model can answer: its classes (a 3-class model only ever says one of three)."""
        if not ref or not isinstance(ref, str) or (self.refs is not None and ref not in self.refs):
            return _("Pick a model from the list.")
        try:
            classes = list(self.source(ref).classes)
        except CnnlabError as err:
            return _one_line(str(err))
        except Exception:  # noqa: BLE001 - never a traceback for a visitor
            traceback.print_exc()
            return _("This model cannot be loaded.")
        n, shown = len(classes), ", ".join(classes[:30])
        if n > 30:
            return ngettext("**This model knows {n} class:** {classes} and {more} more. Whatever the image, its "
                            "answer is one of these.",
                            "**This model knows {n} classes:** {classes} and {more} more. Whatever the image, its "
                            "answer is one of these.", n).format(n=n, classes=shown, more=n - 30)
        return ngettext("**This model knows {n} class:** {classes}. Whatever the image, its answer is one of these.",
                        "**This model knows {n} classes:** {classes}. Whatever the image, its answer is one of "
                        "these.", n).format(n=n, classes=shown)

    def __call__(self, ref: str, image: dict | str | None):
        """``image`` is Gradio's raw upload payload. The events run with ``preprocess=False``, so
        Gradio never opens the file itself: every file, even a broken one, reaches cnnlab's safe
        decoder and gets its clear message. (Gradio's own preprocessing would not protect us
        anyway: ``gr.Image`` opens a payload's path without checking it when the payload has no
        ``meta``, and decodes ``data:`` URLs without a size bound.) So the payload is checked
        here: only files Gradio received for this demo, or its examples, are read."""
        with _one_message():
            if not self.allowed(ref):
                raise gr.Error(_(PICK_MODEL))
            data = self.uploads.read(image)
            return self._predict(ref, data)

    def sketch(self, ref: str, value: dict | None):
        """The Sketchpad's raw value (``preprocess=False``), as a browser or a client sends it:

        - from the page: ``{"id": ...}``, the drawing's PNG having been posted just before to the
          Sketchpad's own ``accept_blobs`` route (bytes in memory, within the request limit),
          taken out of ``self.sketchpad.blob_storage`` here; no drawing yet (the brush was just
          picked, the canvas was cleared) clears the answer, the hint above the pad says what to do;
        - from gradio_client or HTTP: ``{"composite": <file>}``, an uploaded file read through
          :class:`~app.demo_guard.Uploads` like any image; a missing or blank drawing is an error
          sentence.

        The PNG is decoded within :data:`cnnlab.data.drawing.MAX_BYTES` and ``MAX_SIDE``, made to
        look like the model's dataset (:func:`cnnlab.data.drawing.drawing_to_image`), and predicted."""
        with _one_message():
            if not self.allowed(ref):
                raise gr.Error(_(PICK_MODEL))
            if not isinstance(value, dict):
                raise gr.Error(_(NO_SKETCH))
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
                raise gr.Error(_(NO_SKETCH))
            return self._predict_drawing(ref, self.uploads.read(composite))

    def _predict_drawing(self, ref: str, data: bytes):
        rgba = decode_drawing(data)  # bounded before decoding: MAX_BYTES, MAX_SIDE
        src = self.source(ref)
        style = style_for(self.dataset_of(ref), src.input_shape)
        return self._answer(src, drawing_to_image(rgba, style, background=SKETCH_BACKGROUND))

    def _predict(self, ref: str, data: bytes):
        image = decode_image(data)
        return self._answer(self.source(ref), image)

    def _answer(self, src, image):
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
        raise gr.Error(_("The prediction failed unexpectedly; try another image or model.")) from None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def example_images(folder: Path, names=("chelsea", "astronaut", "coffee", "rocket")) -> list[str]:
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
    try:
        bundle = load_run_data(load_run(ref[4:]))
    except (CnnlabError, OSError):  # a dataset no longer on disk, a damaged config: bundled photos are enough
        return []
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(min(n, len(bundle.val))):
        img = to_pil(bundle.val.images[i])
        path = folder / f"{bundle.info.name}-{i}.png"
        img.resize((img.width * 4, img.height * 4), Image.NEAREST).save(path)
        out.append(str(path))
    return out


def examples_for(ref: str, folder: Path) -> list[str]:
    """The examples shown for one model: a run's own validation images (photos when its data
    cannot be rebuilt), photos for a pretrained ImageNet model."""
    if ref.startswith("run:"):
        own = dataset_examples(ref, folder / ref[4:].replace("/", "_"))
        if own:
            return own
    return example_images(folder / "photos")


def build_demo(choices: list[Choice], k: int = 5) -> gr.Blocks:
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-gradio-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # example files live as long as the demo
    per_choice = {c.ref: examples_for(c.ref, tmp) for c in choices}
    groups: dict[tuple[str, ...], list[str]] = {}  # one gr.Examples per distinct set of files
    for ref, files in per_choice.items():
        groups.setdefault(tuple(files), []).append(ref)
    uploads = guard.Uploads([p for files in per_choice.values() for p in files])
    predictor = Predictor(k, refs=[c.ref for c in choices], uploads=uploads)

    def sketch_hint(ref: str) -> str:
        try:
            style = style_for(predictor.dataset_of(ref), tuple(predictor.source(ref).input_shape))
        except Exception:  # noqa: BLE001 - a model that cannot load says so in the classes text
            return ""
        return _("Draw {subject} in black: the answer follows your pen. The drawing is {how} before the model "
                 "sees it.").format(subject=style.subject, how=style.describe())

    with gr.Blocks(title=_("cnnlab — what does the network see?")) as demo:
        gr.Markdown(_("# What does the network see?\nUpload a photo, take one with the webcam, paste one or "
                      "draw one: the model answers with its top classes and shows where it looked (Grad-CAM)."))
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown([(c.label, c.ref) for c in choices], value=choices[0].ref, label=_("Model"))
                known = gr.Markdown(predictor.classes_text(choices[0].ref))
                with gr.Tabs():
                    with gr.Tab(_("Image"), id="image"):
                        image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label=_("Image"))
                        button = gr.Button(_("Predict"), variant="primary")
                    with gr.Tab(_("Draw"), id="draw"):
                        hint = gr.Markdown(sketch_hint(choices[0].ref))
                        sketch = gr.Sketchpad(label=_("Sketchpad"), canvas_size=(SKETCH_SIDE, SKETCH_SIDE),
                                              fixed_canvas=True, format="png", image_mode="RGBA", layers=False,
                                              transforms=(), brush=gr.Brush(default_size=18, colors=["#000000"],
                                                                            color_mode="fixed"))
            with gr.Column():
                label = gr.Label(num_top_classes=k, label=_("Top classes"))
                cam = gr.Image(type="pil", label=_("Grad-CAM of the top class (the input as the model sees it)"),
                               interactive=False, height=340)
        predictor.sketchpad = sketch
        example_sets = []
        for files, refs in groups.items():
            if files:
                with gr.Column(visible=choices[0].ref in refs) as box:  # shown for its models only
                    gr.Examples(list(files), inputs=[image], label=_("Examples"))
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
    # what makes the page safe to share (see app/demo_guard.py): files Gradio receives for it may be
    # read from now on, and the Sketchpad keeps a bounded number of drawings
    return guard.protect(demo, uploads)


def launch(demo: gr.Blocks, host: str, port: int | None, share: bool, block: bool = True):
    """Launch; when a public link is impossible, say so in one line and keep serving locally."""

    def kwargs() -> dict:  # fresh each launch: Gradio adds to app_kwargs
        return dict(server_name=host, server_port=port, show_error=True, quiet=True, prevent_thread_lock=True,
                    footer_links=[], **guard.launch_options(demo))  # request limits: app/demo_guard.py

    share_ok = False
    if share:
        try:
            demo.launch(share=True, **kwargs())
            share_ok = bool(getattr(demo, "share_url", None))
        except Exception as e:  # no network, blocked tunnel
            print(_("Could not create a public link ({kind}: {error}).").format(kind=type(e).__name__, error=e),
                  file=sys.stderr)
            demo.close()
    if not share_ok:
        if share:
            print(_("No public share link is possible from here (no network or the tunnel is blocked); "
                    "serving on the local address only."), flush=True)
            if not getattr(demo, "local_url", None):
                demo.launch(share=False, **kwargs())
        else:
            demo.launch(share=False, **kwargs())
    if share_ok:
        print(_("cnnlab demo on {url} — public link: {public}").format(url=demo.local_url, public=demo.share_url),
              flush=True)
    else:
        print(_("cnnlab demo on {url}").format(url=demo.local_url), flush=True)
    if block:
        demo.block_thread()
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help=_("run id to start on (default: the newest run)"))
    parser.add_argument("--model", help=_("a pretrained ImageNet model, e.g. vgg16 (weights must be present)"))
    parser.add_argument("--share", action="store_true", help=_("ask Gradio for a public link"))
    parser.add_argument("--port", type=int, default=None, help=_("port (default: Gradio's 7860 or the next free)"))
    parser.add_argument("--host", default="127.0.0.1",
                        help=_("address to listen on (0.0.0.0 for the local network)"))
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        choices = available_choices(args.run, args.model)
    except CnnlabError as err:
        print(_("error: {error}").format(error=err), file=sys.stderr)
        return 2
    if not choices:
        print(_("No trained run and no pretrained weights yet, so there is nothing to demo.\n"
                "Train a model first (a few seconds on a CPU):\n    {train}\n"
                "or fetch pretrained ImageNet weights:\n    {fetch}").format(train=TRAIN_HINT, fetch=FETCH_HINT),
              file=sys.stderr)
        return 1
    launch(build_demo(choices, args.topk), args.host, args.port, args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
