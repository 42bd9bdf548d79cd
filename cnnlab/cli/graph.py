"""``graph`` subcommand: the architecture diagram of a model as Graphviz DOT or SVG."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diagram import MAX_DEPTH, model_graph, to_svg
from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="architecture diagram of a model (Graphviz DOT or SVG), shapes on the edges")
    p.add_argument("model")
    p.add_argument("--input", default=None, help="input shape CxHxW, e.g. 3x224x224 (default: the model's)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (default: the model's)")
    p.add_argument("--depth", type=int, default=2,
                   help=f"levels of nested modules to open, 0 to {MAX_DEPTH} (default 2)")
    p.add_argument("--out", default=None,
                   help="write to FILE.dot or FILE.svg (SVG needs Graphviz's `dot`); default: DOT on stdout")
    p.set_defaults(func=cmd_graph)


def cmd_graph(args) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".dot", ".gv", ".svg"):
        raise ConfigError(f"--out {args.out}: the file name must end in .dot (Graphviz source) or .svg (drawing)")
    dot = model_graph(args.model, args.input, depth=args.depth, num_classes=args.classes)
    if out is None:
        print(dot, end="")
        return 0
    text = to_svg(dot) if out.suffix.lower() == ".svg" else dot
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"wrote {out}")
    return 0
