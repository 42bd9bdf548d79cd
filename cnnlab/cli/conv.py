"""``python -m cnnlab conv``: how one output of a convolution or pooling is computed (issue 24).

The sandbox (typed numbers, a digit or a bundled photo; a kernel or a pooling window) prints the output
and the output-size formula; ``--at ROW,COL`` every product of one output, ``--json`` the same as data,
``--gif`` the sliding window for slides. ``--model`` explains a real layer of a run, a pretrained or a
zoo model on an image, beside the value its feature map holds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..convolution import (
    MAX_KERNEL, PRESETS, Explanation, LayerCapture, Sandbox, SizeFormula, capture_layer, conv_sandbox,
    explain_softmax, explainable_layers, pool_sandbox, read_input, write_gif,
)
from ..errors import ConfigError
from .inside import IMAGE_HELP, SOURCE_HELP, model_source, read_image

DEFAULT_INPUT = "digit"
DEFAULT_KERNEL = "vertical_edges"
_SANDBOX_ONLY = ("input", "kernel", "bias", "padding", "stride", "dilation", "groups", "pool", "window")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conv", help="how a convolution or pooling computes one output (a sandbox, or a real layer)",
        description="Sandbox: a small input and a kernel (or a pooling window); prints the output and the "
                    "output-size formula with the numbers, --at ROW,COL the products of one output. Real layer: "
                    "--model M --layer L --channel K --at R,C --image SOURCE.")
    p.add_argument("--input", help="typed numbers (rows separated by ';', channels by '|': \"1,2,3;4,5,6;7,8,9\"), "
                   "digit[:N] (scikit-learn's 8x8 digit N) or photo[:NAME] (a bundled photo shrunk to 12x12); "
                   f"default: {DEFAULT_INPUT}")
    p.add_argument("--kernel", help=f"typed numbers like --input, or a preset: {', '.join(PRESETS)}; "
                   f"default: {DEFAULT_KERNEL}")
    p.add_argument("--bias", help="the bias added to each output (default 0)")
    for name, what in (("padding", "rings of zeros around the input (default 0)"),
                       ("stride", "cells the window moves each step (default 1; pooling: the window's size)"),
                       ("dilation", "spacing between the kernel's taps (default 1)"),
                       ("groups", "input channels split into this many groups, one filter each (default 1)")):
        p.add_argument(f"--{name}", help=what)
    p.add_argument("--pool", choices=["max", "avg"], help="pooling instead of a convolution")
    p.add_argument("--window", help=f"the pooling window's size, 1 to {MAX_KERNEL} (default 2)")
    p.add_argument("--ceil-mode", action="store_true", help="pooling: round the output size up (ceil_mode)")
    p.add_argument("--count-include-pad", action=argparse.BooleanOptionalAction, default=True,
                   help="average pooling: count padding cells in the divisor (PyTorch's default)")
    p.add_argument("--relu", action="store_true", help="apply a ReLU after the operation")
    p.add_argument("--softmax", metavar="LOGITS", help="instead: softmax of these logits (\"2, 1, 0.1\"), worked out")
    p.add_argument("--model", help=f"a real layer's model: {SOURCE_HELP}")
    p.add_argument("--layer", help="with --model: a convolution or pooling layer (default: the first)")
    p.add_argument("--image", default="photo:chelsea", help=f"with --model: {IMAGE_HELP} (default: %(default)s)")
    p.add_argument("--channel", default="0", help="the output channel (default 0)")
    p.add_argument("--at", metavar="ROW,COL", help="explain this output position (a real layer: default its centre)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--gif", metavar="FILE.gif",
                   help="sandbox: write the sliding-window animation, one frame per output position")
    p.set_defaults(func=cmd_conv)


def cmd_conv(args: argparse.Namespace) -> int:
    if args.softmax is not None:
        return _softmax(args)
    if args.model:
        if args.gif:
            raise ConfigError("--gif animates the sandbox only; leave out --model to draw it.")
        given = [f"--{name}" for name in _SANDBOX_ONLY if getattr(args, name) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: a real layer has its own input, weights and settings; leave "
                              "these out with --model.")
        return _real_layer(args)
    return _sandbox(args)


def _int(text: str | None, option: str, default: int | None) -> int | None:
    if text is None:
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{option} must be a whole number, got {text!r}.") from None


def _float(text: str | None, option: str) -> float:
    try:
        value = float(text) if text is not None else 0.0
    except ValueError:
        raise ConfigError(f"{option} must be a number, got {text!r}.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number, got {text!r}.")
    return value


def _at(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        row, col = (int(p.strip()) for p in parts)
    except ValueError:
        raise ConfigError(f"--at {text!r}: give the output's row and column as ROW,COL, e.g. --at 0,2.") from None
    return row, col


def build_sandbox(args: argparse.Namespace) -> Sandbox:
    """The sandbox the options describe (a convolution, or a pooling with --pool)."""
    x = read_input(DEFAULT_INPUT if args.input is None else args.input)
    padding = _int(args.padding, "--padding", 0)
    dilation = _int(args.dilation, "--dilation", 1)
    if args.pool:
        for option in ("kernel", "bias", "groups"):
            if getattr(args, option) is not None:
                raise ConfigError(f"--{option} is for convolutions; pooling has none (its size is --window).")
        window = _int(args.window, "--window", 2)
        return pool_sandbox(x, args.pool, window, _int(args.stride, "--stride", None), padding, dilation,
                            args.ceil_mode, args.count_include_pad, args.relu)
    if args.window is not None or args.ceil_mode:
        raise ConfigError("--window and --ceil-mode are for pooling: add --pool max or --pool avg.")
    kernel = DEFAULT_KERNEL if args.kernel is None else args.kernel
    return conv_sandbox(x, kernel, _float(args.bias, "--bias"), _int(args.stride, "--stride", 1),
                        padding, dilation, _int(args.groups, "--groups", 1), args.relu)


def _sandbox(args: argparse.Namespace) -> int:
    sb = build_sandbox(args)
    channel, at = _int(args.channel, "--channel", 0), _at(args.at)
    explanation = sb.explain(channel, *at) if at else sb.explain(channel, 0, 0)
    if args.gif:
        frames = write_gif(sb, _gif_path(args.gif), channel)
    if args.json:
        print(json.dumps(_result(sb.output[channel].tolist(), explanation if at else None)))
        return 0
    c, h, w = sb.input.shape
    print(f"input {c}x{h}x{w} -> output {'x'.join(map(str, sb.output.shape))} ({_settings(sb)})")
    _print_formulas(sb.formulas())
    print(f"output channel {channel}{' after the ReLU' if sb.relu else ''}:")
    print(_grid(sb.output[channel].tolist()))
    if at:
        print("\n".join(explanation.lines()))
    if args.gif:
        print(f"saved {args.gif} ({frames} frames, one per output position)")
    return 0


def _print_formulas(formulas: list[SizeFormula]) -> None:
    for formula in formulas:
        note = f"  ({formula.note})" if formula.note else ""
        print(f"{'rows' if formula.axis == 'H' else 'cols'}: {formula.text}{note}")


def _settings(sb: Sandbox) -> str:
    op, g = sb.operation, sb.operation.geometry
    what = (f"kernel {g.kernel[0]}x{g.kernel[1]}, groups {op.groups}" if sb.op == "conv"
            else f"{sb.op} pooling {g.kernel[0]}x{g.kernel[1]}")
    return f"{what}, stride {g.stride[0]}, padding {g.padding[0]}, dilation {g.dilation[0]}"


def _grid(rows: list[list[float]]) -> str:
    cells = [[f"{v:.6g}" for v in row] for row in rows]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("  " + " ".join(c.rjust(width) for c in row) for row in cells)


def _finite(values: Any) -> Any:
    """JSON has no -inf (a max pooling's padding): it is written as null."""
    if isinstance(values, list):
        return [_finite(v) for v in values]
    return values if math.isfinite(values) else None


def _at_json(e: Explanation) -> dict[str, Any]:
    if e.op == "conv":
        return {"row": e.row, "col": e.col, "products": e.products, "bias": e.bias, "value": e.result}
    found: dict[str, Any] = {"row": e.row, "col": e.col, "window": _finite(e.windows[0].values)}
    if e.winner is not None:
        found["winner"] = list(e.winner)
    else:
        found.update({"sum": e.total, "divisor": e.divisor})
    return {**found, "value": e.result}


def _result(output: list[list[float]], e: Explanation | None) -> dict[str, Any]:
    return {"output": output, "output_size": [len(output), len(output[0])], "at": _at_json(e) if e else None}


def _gif_path(path: str) -> Path:
    out = Path(path).expanduser()
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--gif {path}: give a file name ending in .gif.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--gif {path}: cannot create the folder {out.parent} ({e.strerror or e}).") from None
    return out


def _capture(args: argparse.Namespace) -> tuple[Any, LayerCapture]:
    src = model_source(args.model)
    x = src.to_input(read_image(args.image))
    names = explainable_layers(src.model)
    if not names:
        raise ConfigError(f"{src.label} has no convolution or pooling layer to explain.")
    return src, capture_layer(src.model, args.layer or names[0], x)


def _real_layer(args: argparse.Namespace) -> int:
    src, cap = _capture(args)
    rows, cols = cap.output.shape[-2:]
    row, col = _at(args.at) or (rows // 2, cols // 2)
    channel = _int(args.channel, "--channel", 0)
    found = cap.explain(channel, row, col)
    if args.json:
        out = _result(cap.output[channel].tolist(), found.explanation)
        print(json.dumps({**out, "feature_map_value": found.feature_map_value}))
        return 0
    shape = "x".join(map(str, cap.input.shape))
    print(f"{src.label}: layer {cap.layer} ({cap.describe()}), input {shape} -> output "
          f"{'x'.join(map(str, cap.output.shape))}")
    _print_formulas(cap.formulas())
    print("\n".join(found.explanation.lines()))
    verdict = "they agree" if found.agrees else "they DIFFER"
    print(f"explained value {found.explanation.value:.7g}; the feature map holds {found.feature_map_value:.7g} "
          f"(difference {found.difference:.2g}: {verdict})")
    print("\n".join(found.receptive_field.lines()))
    return 0


def _softmax(args: argparse.Namespace) -> int:
    s = explain_softmax(args.softmax)
    if args.json:
        print(json.dumps({"logits": s.logits, "exponentials": s.exponentials, "sum": s.total,
                          "probabilities": s.probabilities}))
    else:
        print("\n".join(s.lines()))
    return 0
