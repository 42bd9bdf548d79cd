"""``activations``, ``kernels`` and ``cam`` subcommands: look inside a model from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from torch import nn

from ..activations import (
    activation_points, capture_activations, denormalize, feature_grid, first_conv, grad_cam, kernel_grid,
    overlay, resolve_layers, saliency,
)
from ..data.images import decode_image, load_bundled_photo
from ..errors import CnnlabError, ConfigError

if TYPE_CHECKING:
    from ..sources import ModelSource

SOURCE_HELP = "a run id (or run:ID), pretrained:vgg16, or a zoo model name (untrained)"
IMAGE_HELP = "an image file, or photo:NAME for a photo bundled with scikit-image (photo:chelsea)"
SLIDE_WIDTH = 800


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("activations", help="feature maps of one layer for one image, as a PNG grid")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("image", help=IMAGE_HELP)
    p.add_argument("--layer", help="layer name (default: the first convolution); --list shows them")
    p.add_argument("--list", action="store_true", help="list the layers with their output shapes and exit")
    p.add_argument("--max-channels", type=int, default=64)
    p.add_argument("--cmap", default="viridis")
    p.add_argument("--out", default="activations.png")
    _add_size(p)
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser("kernels", help="learned kernels of a convolution, as a PNG grid")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--layer", help="convolution name (default: the first)")
    p.add_argument("--out", default="kernels.png")
    _add_size(p)
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("cam", help="Grad-CAM (or saliency) overlay of one image")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("image", help=IMAGE_HELP)
    p.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    p.add_argument("--layer", help="layer for Grad-CAM (default: the end of the convolutional part)")
    p.add_argument("--method", choices=["gradcam", "saliency"], default="gradcam")
    p.add_argument("--out", default="cam.png")
    _add_size(p)
    p.set_defaults(func=cmd_cam)


def _add_size(p: argparse.ArgumentParser) -> None:
    """``--size``, the same for every picture these commands write."""
    p.add_argument("--size", type=int, default=SLIDE_WIDTH, help="width in pixels at least (default: %(default)s, "
                   "readable on a slide); small pictures are enlarged")


def model_source(ref: str) -> ModelSource:
    """The model ``ref`` names (:func:`cnnlab.sources.load_source`)."""
    # lazy: a source loads runs and the trainer, which only these commands need (start-up time of the others)
    from ..sources import load_source

    return load_source(ref)


def read_image(ref: str):
    """The image ``ref`` names: ``photo:NAME`` (a bundled photo) or a file, decoded safely."""
    if ref.startswith("photo:"):
        return load_bundled_photo(ref.split(":", 1)[1])
    return decode_image(Path(ref))


def cmd_activations(args) -> int:
    src = model_source(args.source)
    x = src.to_input(read_image(args.image))
    if args.list:
        for name, shape, kind in activation_points(src.model, x):
            print(f"{name:<32} {kind:<16} {' x '.join(map(str, shape))}")
        return 0
    layer = args.layer or first_conv(src.model)[0]
    act = capture_activations(src.model, x, [layer])[layer]
    grid, stats = feature_grid(act, max_channels=args.max_channels, cmap=args.cmap)
    _save(grid, args.out, args.size, crisp=True)
    print(f"{layer}: output {' x '.join(map(str, stats.shape))}, mean {stats.mean:.4f}, std {stats.std:.4f}, "
          f"zeros {stats.zero_fraction:.1%}"
          + (f", strongest channel {stats.strongest_channel}" if stats.strongest_channel is not None else ""))
    print(f"saved {args.out}")
    return 0


def cmd_kernels(args) -> int:
    src = model_source(args.source)
    name = args.layer or first_conv(src.model)[0]
    conv = resolve_layers(src.model, [name])[name]
    if not isinstance(conv, nn.Conv2d):
        raise CnnlabError(f"layer {name!r} is a {type(conv).__name__}, not a convolution.")
    _save(kernel_grid(conv), args.out, args.size, crisp=True)
    print(f"{name}: {conv.out_channels} filters of {conv.in_channels} x {conv.kernel_size[0]} x "
          f"{conv.kernel_size[1]}; saved {args.out}")
    return 0


def cmd_cam(args) -> int:
    src = model_source(args.source)
    x = src.to_input(read_image(args.image))
    target = None
    if args.target is not None:
        if args.target.isdigit():
            target = int(args.target)
        elif args.target in src.classes:
            target = src.classes.index(args.target)
        else:
            raise CnnlabError(f"unknown class {args.target!r}; classes: {', '.join(src.classes[:30])}")
    cam = grad_cam(src.model, x, target, args.layer) if args.method == "gradcam" else saliency(src.model, x, target)
    seen = Image.fromarray(denormalize(x, src.mean, src.std))
    scale = max(1, 256 // max(seen.size))
    _save(overlay(seen.resize((seen.width * scale, seen.height * scale)), cam.heatmap), args.out, args.size, crisp=False)
    top = cam.probabilities.argsort()[::-1][:5]
    print(f"{args.method} for class '{src.classes[cam.target]}'" + (f" at layer {cam.layer}" if cam.layer else ""))
    for i in top:
        print(f"  {src.classes[i]:<24} {cam.probabilities[i]:.3f}")
    print(f"saved {args.out}")
    return 0


def _out(path: str) -> str:
    """The output file, its folder created if missing (a clear error if it cannot be)."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"):
        raise ConfigError(f"--out {path}: give an image file name ending in .png (or .jpg).")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot create the folder {out.parent} ({e.strerror or e}).") from None
    return str(out)


def _save(img, path: str, size: int, crisp: bool) -> None:
    """Save ``img`` at least ``size`` pixels wide: grids of feature maps and kernels grow by a whole
    factor with nearest-neighbour (every value stays a sharp square), photos smoothly."""
    if not 64 <= size <= 4096:
        raise ConfigError(f"--size must be between 64 and 4096 pixels, got {size}.")
    out = _out(path)
    if img.width < size:
        factor = -(-size // img.width) if crisp else size / img.width
        w, h = int(round(img.width * factor)), int(round(img.height * factor))
        if max(w, h) > 8192:  # a very tall strip: bound the larger side instead
            scale = 8192 / max(w, h)
            w, h = max(1, int(w * scale)), max(1, int(h * scale))
        img = img.resize((w, h), Image.NEAREST if crisp else Image.LANCZOS)
    img.save(out)
