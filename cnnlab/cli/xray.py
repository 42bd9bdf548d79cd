"""``python -m cnnlab xray RUN``: what happened inside a finished (or running) training, and why it may
not have learnt (:mod:`cnnlab.xray`)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from .. import runs
from ..xray import XrayRecord


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "xray", help="a run's training X-ray: per-layer gradients, update ratios, dead and saturated units",
        description="Show a run's training X-ray: per layer with weights its weight norm, gradient norm and "
                    "update-to-weight ratio, per activation its dead (ReLU) or saturated (tanh, sigmoid) share, "
                    "at the last sampled step, and what they say in plain words (vanishing gradients, "
                    "saturation, dead units, a learning rate far off).")
    p.add_argument("run", help="run id (a unique prefix is enough; see `python -m cnnlab runs`)")
    p.add_argument("--json", action="store_true",
                   help="print the per-layer series over the sampled steps and the diagnoses as one JSON object")
    p.set_defaults(func=cmd_xray)


def _num(v: Any) -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "-"
    return f"{v:.3g}" if v == 0 or 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def report(run_id: str, record: XrayRecord) -> str:
    """The text report: the diagnoses, then the last sample's layers and activations."""
    if not record.samples:
        return (f"run {run_id} has no X-ray: it was trained before cnnlab recorded one, with --no-xray, or stopped "
                "before its first step." + "".join(f"\n{p}" for p in record.problems))
    last = record.samples[-1]
    lines = [f"run {run_id}: {len(record.samples)} samples, every {last.get('every', '?')} steps; the last at step "
             f"{last['step']} (epoch {last.get('epoch', '?')})."]
    diagnoses = record.diagnoses
    lines += ["", "What it says:"] + [f"- {d}" for d in diagnoses] if diagnoses else \
        ["", "Nothing stands out: gradients reach every layer, the steps are of a usual size, few units are dead "
             "or saturated."]
    lines += ["", f"{'layer':<28} {'type':<12} {'weight norm':>11} {'grad norm':>10} {'update/weight':>13}"]
    for e in last["layers"]:
        lines.append(f"{e['name'][:28]:<28} {str(e.get('type', ''))[:12]:<12} {_num(e['weight_norm']):>11} "
                     f"{_num(e['grad_norm']):>10} {_num(e['update_ratio']):>13}")
    if last["activations"]:
        lines += ["", f"{'activation':<20} {'after':<22} {'mean':>8} {'std':>8} {'dead':>6} {'saturated':>9}"]
        for e in last["activations"]:
            dead = f"{e['dead']:.0%}" if e.get("kind") == "relu" else "-"
            sat = f"{e['saturated']:.0%}" if e.get("kind") != "relu" else "-"
            lines.append(f"{e['name'][:20]:<20} {str(e.get('after', ''))[:22]:<22} {_num(e['mean']):>8} "
                         f"{_num(e['std']):>8} {dead:>6} {sat:>9}")
    lines += [f"\n{p}" for p in record.problems]
    return "\n".join(lines)


def cmd_xray(args: argparse.Namespace) -> int:
    run = runs.load_run(args.run)
    record = runs.run_xray(run.run_id)
    if args.json:
        print(json.dumps({"run": run.run_id, **record.series(), "diagnoses": record.diagnoses,
                          "kernel_epochs": [k["epoch"] for k in record.kernels], "problems": record.problems}))
    else:
        print(report(run.run_id, record))
    return 0
