"""``transfer`` subcommand: pretrained against from-scratch, on Caltech101 or the offline stand-in."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from ..data import load_dataset
from ..models.pretrained import fetch_weights


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer", help="compare a pretrained model with one trained from scratch")
    p.add_argument("--standin", action="store_true",
                   help="the offline stand-in on embedded shapes (no download needed)")
    p.add_argument("--scratch-model", default="vgg16", help="zoo model trained from scratch (default vgg16)")
    p.add_argument("--mode", choices=["feature_extract", "finetune"], default="feature_extract")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--root", default=None, help="folder holding 101_ObjectCategories")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_transfer)


def cmd_transfer(args) -> int:
    # lazy: only `transfer` needs cnnlab.transfer (start-up time of the other commands)
    from ..transfer import CompareConfig, StandinConfig, compare, compare_standin, standin_target, summarize

    bars: dict[str, tqdm] = {}

    def listener(tagged) -> None:
        tag, event = tagged
        kind = getattr(event, "kind", "")
        if kind == "start":
            bars[tag] = tqdm(total=event.total_steps, desc=f"{tag:<10}", unit="step", leave=True)
        elif kind == "step" and tag in bars:
            bars[tag].n = event.step
            bars[tag].set_postfix(loss=f"{event.loss:.3f}", acc=f"{event.top1:.2f}")
        elif kind == "end" and tag in bars:
            bars[tag].close()

    if args.standin:
        cfg = StandinConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
        result = compare_standin(cfg, listeners=[listener])
        data, split = standin_target(cfg), "val"
    else:
        fetch_weights("vgg16")  # before decoding Caltech101: say what is missing first
        cfg = CompareConfig(scratch_model=args.scratch_model, mode=args.mode, epochs=args.epochs or 3,
                            batch_size=args.batch_size, lr=args.lr, data_root=args.root, seed=args.seed)
        data = load_dataset("caltech101", root=args.root, seed=args.seed)
        result = compare(cfg, listeners=[listener], data=data)
        split = "test"
    s = summarize(result.scratch.run_id, result.pretrained.run_id, data, split=split)
    print(f"\n{'':<12} {'top-1':>7} {'top-5':>7}  status     run")
    for tag, r in (("scratch", s.scratch), ("pretrained", s.pretrained)):
        print(f"{tag:<12} {_pct(r.top1):>7} {_pct(r.top5):>7}  {r.status:<10} {r.run_id}")
        if r.status != "finished":
            print(f"{'':<12} {r.message}")
        if r.top1 is None:
            print(f"{'':<12} no checkpoint: this run stopped before its first validation, so it has no result.")
    if s.differences:
        print(f"\nClasses where they differ most ({split} split, top-1):")
    for d in s.differences:
        print(f"  {d['class']:<28} scratch {_pct(d['scratch top-1']):>6}  pretrained {_pct(d['pretrained top-1']):>6}")
    return 0 if s.scratch.top1 is not None and s.pretrained.top1 is not None else 1


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
