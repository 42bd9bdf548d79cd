"""``fetch`` and ``pretrained`` subcommands: ImageNet weights in models_cache/hub."""

from __future__ import annotations

import argparse

from ..models.pretrained import PRETRAINED, fetch_weights, weights_path, weights_status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="download pretrained ImageNet weights into models_cache/hub/checkpoints")
    p.add_argument("name", choices=sorted(PRETRAINED), help="which model's weights")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("pretrained", help="list pretrained models and whether their weights are present")
    p.set_defaults(func=cmd_pretrained)


def cmd_fetch(args) -> int:
    if weights_path(args.name).is_file():
        print(f"already present: {weights_path(args.name)}")
        return 0
    path = fetch_weights(args.name, progress=True)
    print(f"saved {path}")
    return 0


def cmd_pretrained(args) -> int:
    for name in PRETRAINED:
        state, message = weights_status(name)
        print(f"{name:<10} {state:<13} {message}")
    return 0
