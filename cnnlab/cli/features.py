"""``python -m cnnlab features``: what a convolution channel responds to (issue 25).

``--method patches`` draws each channel's strongest receptive-field crops over the validation images
(a run's own, or ``--dataset``); ``--method optimise`` an input optimised to excite each channel beside
the same picture for the same architecture with random weights (the sanity check), with the activation
each reaches against the channel's mean on the validation images. ``--json`` prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from ..data import InputPipeline
from ..errors import ConfigError
from ..features import (
    DEFAULT_IMAGES, DEFAULT_STEPS, MAX_IMAGES, OBJECTIVES, TopPatches, check_images, check_steps, conv_layer,
    conv_layers, optimise, optimised_picture, parse_channels, patches_picture, png_path, random_twin,
    save_png, top_patches,
)
from ..sources import build_kwargs, validation_images
from .inside import SOURCE_HELP, model_source

if TYPE_CHECKING:
    from ..sources import ModelSource

DEFAULT_CHANNELS = 8  # without --channels: the first eight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features", help="what a convolution channel responds to: its top dataset patches, or an optimised input",
        description="For each channel of a convolution: the 9 validation patches that excite it most (--method "
                    "patches), or an input optimised to excite it beside the same picture for random weights "
                    "(--method optimise). Writes a PNG grid; --json prints the numbers.")
    p.add_argument("source", metavar="MODEL_OR_RUN", help=SOURCE_HELP)
    p.add_argument("--layer", help="a convolution layer (leave it out to list them)")
    p.add_argument("--channels", help=f"channels: 0-7, 3 or 0,2,5-6 (default: the first {DEFAULT_CHANNELS})")
    p.add_argument("--method", choices=["patches", "optimise"], default="patches")
    p.add_argument("--out", default="features.png", help="the PNG to write (default: %(default)s)")
    p.add_argument("--dataset", help="validation images from this dataset (default: a run's own; otherwise "
                                     "digits for a one-channel model, shapes for a three-channel one)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                   help=f"validation images to look through, at most {MAX_IMAGES:,} (default: %(default)s)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimise: steps (default: %(default)s)")
    p.add_argument("--objective", choices=OBJECTIVES, default="mean",
                   help="optimise: the channel's mean output over its map, or its centre unit (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="optimise: the seed of the picture and of the random weights")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(func=cmd_features)


def _bar(desc: str, enabled: bool):
    """A progress callback drawing a tqdm bar on stderr (none with --json)."""
    state: dict = {}

    def progress(done: int, total: int) -> None:
        if not enabled:
            return
        bar = state.get("bar") or state.setdefault("bar", tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
                                                               dynamic_ncols=True))
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return progress


def _channels(text: str | None, layer: str, count: int) -> list[int]:
    if text is None:
        return list(range(min(DEFAULT_CHANNELS, count)))
    return parse_channels(text, count, layer)


def cmd_features(args: argparse.Namespace) -> int:
    out = png_path(args.out, create_folder=True)
    check_images(args.images)  # before loading anything
    if args.method == "optimise":
        check_steps(args.steps)
    src = model_source(args.source)
    if not args.layer:
        raise ConfigError(f"name a convolution with --layer; {src.label} has: {', '.join(conv_layers(src.model))}.")
    count = conv_layer(src.model, args.layer).out_channels
    channels = _channels(args.channels, args.layer, count)
    dataset, images = validation_images(src, args.dataset)
    pipeline = InputPipeline(data_shape=tuple(images.shape[1:]), model_shape=src.input_shape, mean=src.mean,
                             std=src.std, device=torch.device("cpu"), eval_resize=src.eval_resize)
    found = top_patches(src.model, args.layer, channels, images, pipeline, max_images=args.images,
                        progress=_bar("validation images", not args.json))
    head = f"{src.label}: {args.layer}"
    if args.method == "patches":
        title = [f"{head}: the {len(found.channels[0].patches)} strongest positions over {found.images} "
                 f"{dataset} validation images"]
        save_png(patches_picture(found, title), out)
        report: dict[str, Any] = {"channels": [c.as_dict() for c in found.channels]}
        lines = [_patch_line(c) for c in found.channels]
    else:
        report, lines = _optimise(args, src, found, head, out)
    report = {"model": src.ref, "layer": args.layer, "method": args.method, "dataset": dataset,
              "images": found.images, **report, "out": str(out)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(lines + [f"saved {out}"]))
    return 0


def _patch_line(c) -> str:
    best = ", ".join(f"{p.value:.3g} (image #{p.image} at {p.row},{p.col})" for p in c.patches[:3])
    return f"channel {c.channel}: mean {c.mean:.3g}; strongest {best}"


def _optimise(args: argparse.Namespace, src: ModelSource, found: TopPatches, head: str,
              out: Path) -> tuple[dict, list[str]]:
    """Optimised inputs for the model and for its random-weights twin, drawn side by side."""
    shape, channels = src.input_shape, [c.channel for c in found.channels]
    common = dict(steps=args.steps, seed=args.seed, objective=args.objective)
    trained = optimise(src.model, args.layer, channels, shape, src.mean, src.std, reference=found,
                       progress=_bar("optimising", not args.json), **common)
    twin = random_twin(src.model, args.seed, build_kwargs(src))
    drawn = optimise(twin, args.layer, channels, shape, src.mean, src.std,
                     progress=_bar("random weights", not args.json), **common)
    untrained = " (untrained: both are random weights)" if src.kind == "zoo" else ""
    title = [f"{head}, {args.steps} steps, seed {args.seed}{untrained}"]
    save_png(optimised_picture(trained, drawn, title), out)
    rows, lines = [], []
    for o, r in zip(trained, drawn):
        rows.append({**o.as_dict(), "random_weights": {"value": r.value, "start": r.start}})
        versus = f"{o.ratio:.1f}x the validation mean {o.baseline:.3g}" if o.ratio is not None else \
            f"validation mean {o.baseline:.3g}"
        lines.append(f"channel {o.channel}: {o.value:.3g} ({versus}; best validation image "
                     f"{found.of(o.channel).best(o.objective):.3g}); random weights {r.value:.3g}")
    return {"objective": args.objective, "steps": args.steps, "seed": args.seed, "channels": rows}, lines
