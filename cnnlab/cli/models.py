"""``models`` and ``summary`` subcommands."""

from __future__ import annotations

import argparse

import torch

from ..inspect import summarize
from ..models import count_params, create, get_spec, list_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list every architecture of the zoo")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'vgg*'")
    p.add_argument("--all", action="store_true", help="include the _adaptive variants")
    p.add_argument("--pretrained", action="store_true",
                   help="include the torchvision models with ImageNet weights (family 'pretrained')")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="per-layer table of a model: shapes, parameters, MACs, receptive field")
    p.add_argument("model")
    p.add_argument("--input", default=None, help="input shape CxHxW, e.g. 3x224x224 (default: the model's)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (default: the model's)")
    p.add_argument("--leaves", action="store_true", help="only layers without children")
    p.add_argument("--formulas", action="store_true", help="print the output-size formula of every conv/pool and the parameter arithmetic of every layer with weights")
    p.set_defaults(func=cmd_summary)


def cmd_models(args) -> int:
    names = [n for n in list_models(args.pattern, include_pretrained=args.pretrained)
             if args.all or not get_spec(n).adaptive]
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 1
    rows = []
    for n in names:
        s = get_spec(n)
        with torch.device("meta"):  # shapes only: no memory, and no weights file is read
            m = create(n)
        params = count_params(m)
        twin = " +adaptive" if not args.all and s.fixed_input and not s.sized_at_creation else ""
        rows.append((n, s.display_name, s.family, str(s.year), "x".join(map(str, s.input_shape)),
                     str(s.num_classes), f"{params:,}", s.seed, twin))
    head = ("name", "model", "family", "year", "input", "classes", "params", "seed", "")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    right = {6}
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(fmt(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r).rstrip())
    if not args.all:
        print("\n+adaptive: a <name>_adaptive twin with the same weights accepts other input sizes (--all lists them).")
    return 0


def cmd_summary(args) -> int:
    s = summarize(args.model, args.input, args.classes)
    print(s.format_table(leaves_only=args.leaves))
    if args.formulas:
        print("\nOutput size of each convolution and pooling, floor((W - F + 2P) / S) + 1:")
        for r in s.rows:
            if r.formula:
                print(f"  {r.name:<24} {r.formula}")
        print("\nParameters of each layer with weights (filters x kh x kw x inputs + biases; outputs x inputs + biases):")
        for r in s.rows:
            if r.param_formula:
                print(f"  {r.name:<24} {r.param_formula:<28} {r.param_words}")
    for note in s.notes:
        print(f"\nNote: {note}")
    return 0
