"""A shareable per-image prediction demo.

    python app/gradio_demo.py                  # every saved run (and pretrained models present)
    python app/gradio_demo.py --run RUN_ID     # start on one run
    python app/gradio_demo.py --model vgg16    # the pretrained ImageNet VGG-16 (weights must be present)
    python app/gradio_demo.py --share          # ask Gradio for a public link

Students upload a photo (or use the webcam or the clipboard) and get the top classes with
probabilities and the Grad-CAM overlay of the top class. Only the prediction function is
exposed; uploads are limited in size and decoded by cnnlab's one safe decoder.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gradio as gr  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402

MAX_FILE_SIZE = "10mb"
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
        if r.has_checkpoint:
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
    """Loads model sources on demand (cached) and answers one image at a time."""

    def __init__(self, k: int = 5):
        self.k = k
        self._cache: dict[str, object] = {}

    def source(self, ref: str):
        from cnnlab.sources import load_source

        if ref not in self._cache:
            self._cache.clear()  # keep one model in memory at a time
            self._cache[ref] = load_source(ref)
        return self._cache[ref]

    def __call__(self, ref: str, image: dict | str | None):
        """``image`` is Gradio's raw upload payload (the event runs with ``preprocess=False``, so
        Gradio never opens the file itself: every file, even a broken one, reaches cnnlab's
        safe decoder and gets its clear message)."""
        from PIL import Image

        from cnnlab.activations import denormalize, grad_cam, overlay
        from cnnlab.data.images import decode_image
        from cnnlab.evaluate import predict_topk

        if not ref:
            raise gr.Error("Pick a model first.")
        source = _payload_source(image)
        if not source:
            raise gr.Error("Upload an image, take one with the webcam, or paste one.")
        try:
            image = decode_image(_read_upload(source))
            src = self.source(ref)
            top = predict_topk(src.model, image, src, k=min(self.k, len(src.classes)))
            x = src.to_input(image)
            cam = grad_cam(src.model, x, target=src.classes.index(top[0][0]))
            seen = Image.fromarray(denormalize(x, src.mean, src.std))
            scale = max(1, 320 // max(seen.size))
            seen = seen.resize((seen.width * scale, seen.height * scale), Image.BILINEAR)
            picture = overlay(seen, cam.heatmap)
        except CnnlabError as err:
            raise gr.Error(str(err)) from None
        return {name: float(p) for name, p in top}, picture


def _payload_source(payload: dict | str | None) -> str | None:
    if isinstance(payload, dict):
        url = payload.get("url") or ""
        return url if url.startswith("data:") else payload.get("path")
    return payload or None


def _read_upload(value: str) -> bytes:
    """The uploaded bytes: Gradio hands over a temp-file path (or, from some sources, a data:
    URL). Bytes, not the path, go to the decoder so messages say "the uploaded file"."""
    if value.startswith("data:"):
        try:
            return base64.b64decode(value.split(",", 1)[1], validate=False)
        except (ValueError, IndexError):
            raise CnnlabError("the image sent by the browser could not be read.") from None
    try:
        return Path(value).read_bytes()
    except OSError:
        raise CnnlabError("the uploaded file could not be read; upload it again.") from None


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
    """A few validation images of a run's dataset, saved as PNG for Gradio's examples."""
    if not ref.startswith("run:"):
        return []
    from PIL import Image

    from cnnlab.data import load_dataset
    from cnnlab.runs import load_run

    meta = load_run(ref[4:]).meta
    try:
        bundle = load_dataset(meta.get("dataset", ""), download=False)
    except Exception:  # a dataset no longer on disk: bundled photos are enough
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


def build_demo(choices: list[Choice], k: int = 5) -> gr.Blocks:
    predictor = Predictor(k)
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-gradio-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # example files live as long as the demo
    examples = dataset_examples(choices[0].ref, tmp) + example_images(tmp)
    with gr.Blocks(title="cnnlab — what does the network see?") as demo:
        gr.Markdown("# What does the network see?\nUpload a photo, take one with the webcam or paste "
                    "one: the model answers with its top classes and shows where it looked (Grad-CAM).")
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown([(c.label, c.ref) for c in choices], value=choices[0].ref, label="Model")
                image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Image")
                button = gr.Button("Predict", variant="primary")
            with gr.Column():
                label = gr.Label(num_top_classes=k, label="Top classes")
                cam = gr.Image(type="pil", label="Grad-CAM of the top class (the input as the model sees it)",
                               interactive=False, height=340)
        if examples:
            gr.Examples(examples, inputs=[image], label="Examples")
        button.click(predictor, inputs=[model, image], outputs=[label, cam], api_name="predict", preprocess=False)
        image.upload(predictor, inputs=[model, image], outputs=[label, cam], api_visibility="private",
                     preprocess=False)
    return demo


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(demo: gr.Blocks, host: str, port: int | None, share: bool, block: bool = True):
    """Launch; when a public link is impossible, say so in one line and keep serving locally."""
    kwargs = dict(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, show_error=True,
                  quiet=True, prevent_thread_lock=True, footer_links=[])
    share_ok = False
    if share:
        try:
            demo.launch(share=True, **kwargs)
            share_ok = bool(getattr(demo, "share_url", None))
        except Exception as e:  # no network, blocked tunnel
            print(f"Could not create a public link ({type(e).__name__}: {e}).", file=sys.stderr)
            demo.close()
    if not share_ok:
        if share:
            print("No public share link is possible from here (no network or the tunnel is blocked); "
                  "serving on the local address only.", flush=True)
            if not getattr(demo, "local_url", None):
                demo.launch(share=False, **kwargs)
        else:
            demo.launch(share=False, **kwargs)
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
