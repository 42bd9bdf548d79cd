"""``python -m cnnlab datasets``: list the datasets; ``datasets make``: a dataset from your own images."""

from __future__ import annotations

import argparse

from ..data import dataset_status, list_datasets, maker
from ..errors import DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "datasets", help="list the datasets (and whether each can be loaded now); make one from your images",
        description="Every dataset cnnlab knows, with its state: present, downloadable or missing. Datasets made "
                    "from your own images (the app's 'Your images' page, or 'datasets make') are listed by name.",
    )
    p.set_defaults(func=cmd_list)
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    m = sub.add_parser(
        "make", help="make (or add to) a dataset of your own images under data/<name>/",
        description="Copy image files into data/NAME/CLASS/0001.png ... through the safe decoder (a file that "
                    "cannot be used is named with the reason, the others are kept). Running it again on the same "
                    "NAME adds images and classes; nothing saved is removed. Train on it with: "
                    "python -m cnnlab train --data NAME",
    )
    m.add_argument("name", help="dataset name: letters a-z, digits and _ (spaces become _)")
    m.add_argument("--class", dest="classes", nargs="+", action="append", required=True, metavar="CLASS_OR_FILE",
                   help="a class name followed by its image files or folders (repeat for every class)")
    m.add_argument("--title", default=None, help="the name shown in the app (default: NAME as typed)")
    m.set_defaults(func=cmd_make)


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for spec in list_datasets():
        status = dataset_status(spec.name)
        rows.append((spec.name, "yours" if spec.source == "yours" else spec.source, status.state, status.message))
    width = max(len(r[0]) for r in rows)
    print(f"{'name':<{width}}  {'source':<11}  {'state':<12}  what to know")
    for name, source, state, message in rows:
        print(f"{name:<{width}}  {source:<11}  {state:<12}  {message}")
    return 0


def cmd_make(args: argparse.Namespace) -> int:
    groups = [(g[0], g[1:]) for g in args.classes]
    empty = [name for name, files in groups if not files]
    if empty:
        raise DataError(f"--class {empty[0]} names no files: write --class {empty[0]} FILE_OR_FOLDER ...")
    made = maker.create_dataset(args.name, [name for name, _ in groups], title=args.title or args.name)
    print(f"dataset {made.key!r} in {made.root}")
    print(f"limits: {maker.limits_text()}")
    saved = refused = 0
    for name, files in groups:
        report = maker.add_paths(made.key, name, files)
        saved += len(report.saved)
        refused += len(report.refused)
        print(f"  {report.class_name}: added {len(report.saved)}, refused {len(report.refused)}")
        for r in report.refused:
            print(f"    refused: {r.reason}")
    made = maker.read_made(made.key)
    print(f"{made.key}: {made.total} images in {len(made.classes)} classes "
          f"({', '.join(f'{c} {n}' for c, n in made.counts.items())})")
    if not made.ready:
        print(f"every class needs at least {maker.MIN_IMAGES_TO_TRAIN} images to train; too few in: "
              f"{', '.join(made.missing())}")
    else:
        suggestion = maker.suggest_training(list(made.counts.values()))
        print(f"train on it: {maker.train_command(made.key, suggestion)}")
    return 0 if saved or not refused else 1
