"""``python -m cnnlab export RUN_OR_LESSON``: a run as a plain-PyTorch notebook or script, its trained model as
ONNX or TorchScript; a lesson as a notebook or script for homework (:mod:`cnnlab.export`)."""

from __future__ import annotations

import argparse
from typing import Any

from .train import _key_value

# cnnlab.export (nbformat, the ONNX exporter) is imported inside the command: only this command needs it.


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="a run or a lesson as a plain-PyTorch notebook or script; a run's model as ONNX or TorchScript",
        description="Write a run as a Jupyter notebook (--notebook) or a Python script (--script) that trains it "
                    "again with torch, torchvision and matplotlib only (the same data, split, model, settings and "
                    "seed), and its trained model as ONNX (--onnx) or TorchScript (--torchscript), with the class "
                    "names and the input normalisation in the file's metadata. A lesson exports as a notebook or "
                    "a script: its question, one section per arm, the comparison, questions for discussion. "
                    "Several files at once are allowed; if one cannot be made, none is written.")
    p.add_argument("target", metavar="RUN_OR_LESSON",
                   help="a run id (a unique beginning is enough; python -m cnnlab runs) or a lesson's name "
                        "(python -m cnnlab lessons) or .toml file")
    p.add_argument("--notebook", metavar="FILE.ipynb", help="write the Jupyter notebook here")
    p.add_argument("--script", metavar="FILE.py", help="write the same code as one Python script here")
    p.add_argument("--onnx", metavar="FILE.onnx", help="a run: write its trained model as ONNX here")
    p.add_argument("--torchscript", metavar="FILE.pt", help="a run: write its trained model as TorchScript here")
    p.add_argument("--budget", choices=["quick", "full"], default="quick",
                   help="a lesson: the settings its arms train with (default: %(default)s)")
    p.add_argument("--set", dest="overrides", type=_key_value, action="append", default=None, metavar="KEY=VALUE",
                   help="a lesson: a training setting for every arm, e.g. --set epochs=2 (repeatable)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import FORMATS, write_exports  # nbformat and the ONNX exporter load only for this command

    paths = {f: getattr(args, f) for f in FORMATS if getattr(args, f) is not None}
    for path in write_exports(args.target, paths, budget=args.budget, overrides=dict(args.overrides or [])):
        print(f"wrote {path}")
    return 0
