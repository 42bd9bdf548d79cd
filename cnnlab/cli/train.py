"""``python -m cnnlab train | eval | bench train``: train a model, evaluate a run, measure speed."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ..errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model on a dataset and save the run",
        description="Train a zoo model; the run (config, metrics, best weights) is saved under "
                    "models_cache/runs/. Ctrl-C cancels and keeps the best weights.",
    )
    p.add_argument("--model", default="lenet", help="model name (python -m cnnlab models)")
    p.add_argument("--data", default="digits", help="dataset name: shapes, digits, mnist, cifar10, ...")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", help="sgd, momentum, adam or adamw")
    p.add_argument("--scheduler", default="none", help="none, step, cosine or onecycle")
    p.add_argument("--step-size", type=int, default=7, help="epochs between StepLR decays")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--augment", default="none", help="none, flip, cifar, crop28 or imagenet")
    p.add_argument("--subset", type=int, default=None, help="train on this many images (stratified)")
    p.add_argument("--input-size", type=int, default=None, help="resize images to this size for the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--data-root", default=None, help="where the dataset files are (default: data/)")
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser("eval", help="evaluate a saved run: per-class top-1/top-5",
                              description="Per-class and overall top-1/top-5 of a run's best weights.")
    e.add_argument("run", help="run id (or a unique beginning of one, matched literally)")
    e.add_argument("--split", default="val", choices=["val", "test"])
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_eval)

    r = subparsers.add_parser("runs", help="list saved training runs (newest first)",
                              description="List the runs in models_cache/runs/, or delete one.")
    r.add_argument("--delete", metavar="RUN", default=None,
                   help="delete this run (its id, or a unique beginning of it, matched literally)")
    r.set_defaults(func=cmd_runs)

    b = subparsers.add_parser("bench", help="benchmarks (bench train, bench inspect)")
    bsub = b.add_subparsers(dest="bench_command", metavar="BENCH")
    bt = bsub.add_parser(
        "train", help="images/s of the cnnlab trainer vs a seed-style PIL + DataLoader loop",
        description="Trains the same model on the same data with both loops in this process, in "
                    "alternating rounds, and prints images/s and the ratio.",
    )
    bt.add_argument("--model", default="lenet")
    bt.add_argument("--data", default="digits")
    bt.add_argument("--seconds", type=float, default=10.0, help="total seconds per loop")
    bt.add_argument("--batch-size", type=int, default=64, help="the seed loop's batch size (seeds: 64)")
    bt.add_argument("--also-batch", type=int, action="append", default=None,
                    help="also measure our trainer at this batch size (repeatable; default 256)")
    bt.add_argument("--device", default="cpu")
    bt.set_defaults(func=cmd_bench_train)
    bi = bsub.add_parser(
        "inspect", help="time of the meta-device layer table vs one real forward pass of the same model",
    )
    bi.add_argument("--model", default="vgg16")
    bi.add_argument("--repeat", type=int, default=5)
    bi.set_defaults(func=cmd_bench_inspect)
    b.set_defaults(func=lambda args: (b.print_help(), 2)[1])


# --------------------------------------------------------------------------------------


def _metrics_table(history: list[Any]) -> str:
    head = f"{'epoch':>5}  {'train loss':>10}  {'train top1':>10}  {'val loss':>8}  {'val top1':>8}  " \
           f"{'val top5':>8}  {'lr':>8}  {'time':>6}"
    lines = [head]
    for e in history:
        lines.append(
            f"{e.epoch:>5}  {e.train_loss:>10.4f}  {100 * e.train_top1:>9.1f}%  {e.val_loss:>8.4f}  "
            f"{100 * e.val_top1:>7.1f}%  {100 * e.val_top5:>7.1f}%  {e.lr:>8.2g}  {e.elapsed:>5.1f}s"
            + ("  *" if e.is_best else "")
        )
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..train import EndEvent, EpochEvent, StartEvent, StepEvent, TrainConfig, fit

    config = TrainConfig(
        model=args.model, dataset=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, scheduler=args.scheduler, step_size=args.step_size,
        weight_decay=args.weight_decay, augment=args.augment, subset=args.subset, input_size=args.input_size,
        seed=args.seed, device=args.device, data_root=args.data_root, log_interval_s=0.2,
    ).validate()
    bar: list[Any] = []

    def listener(event: Any) -> None:
        if isinstance(event, StartEvent):
            print(f"run {event.run_id}: {event.model} ({event.num_params:,} parameters) on {event.dataset} "
                  f"({event.train_images} train / {event.val_images} val images), device {event.device}")
            for note in event.notes:
                print(f"  note: {note}")
            bar.append(tqdm(total=event.total_steps, unit="step", dynamic_ncols=True, file=sys.stderr))
        elif isinstance(event, StepEvent) and bar:
            if bar[0].desc != f"epoch {event.epoch}/{config.epochs}":
                bar[0].set_description(f"epoch {event.epoch}/{config.epochs}", refresh=False)
            bar[0].set_postfix(loss=f"{event.loss:.3f}", acc=f"{100 * event.top1:.1f}%",
                               img_s=f"{event.images_per_sec:.0f}", refresh=False)
            bar[0].update(event.step - bar[0].n)
        elif isinstance(event, EpochEvent) and bar:
            bar[0].write(f"epoch {event.epoch}: val top-1 {100 * event.val_top1:.1f}%  top-5 "
                         f"{100 * event.val_top5:.1f}%  loss {event.val_loss:.4f}" + ("  (best)" if event.is_best else ""))
        elif isinstance(event, EndEvent) and bar:
            bar[0].close()

    # The first Ctrl-C cancels cleanly (best weights kept); a second one interrupts.
    cancel = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum, frame):
            if cancel.is_set():
                raise KeyboardInterrupt
            cancel.set()

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = fit(config, listeners=[listener], cancel=cancel)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if result.history:
        print(_metrics_table(result.history))
    print(result.message if result.message.startswith(result.status) else f"{result.status}: {result.message}")
    print(f"run id: {result.run_id}")
    return {"finished": 0, "cancelled": 130}.get(result.status, 1)


def cmd_eval(args: argparse.Namespace) -> int:
    from .. import runs
    from ..evaluate import evaluate
    from ..train import load_data

    run = runs.load_run(args.run)
    config = runs.run_config(run)  # refuses a damaged config.json, or one without a dataset
    bundle = load_data(config)  # same name, seed and fractions: the same split as in training
    split = bundle.val if args.split == "val" else bundle.test
    if split is None:
        raise ConfigError(f"{config.dataset} has no test split; use --split val.")
    from ..device import pick_device

    device = pick_device(args.device)
    model = runs.load_model(run.run_id, device=device)
    result = evaluate(model, split, bundle.info, device=device, batch_size=args.batch_size)
    print(f"run {run.run_id}: {run.meta.get('model', '?')} on {config.dataset}, {args.split} split, "
          f"{result.count} images, loss {result.loss:.4f}")
    print(result.table())
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .. import runs

    if args.delete:
        link = runs.load_run(args.delete).is_link
        run_id = runs.delete_run(args.delete)
        print(f"removed the link {run_id} (what it pointed to was not touched)" if link else f"deleted {run_id}")
        return 0
    found = runs.list_runs()
    if not found:
        print("no runs yet: python -m cnnlab train --model lenet --data digits")
        return 0
    width = max(44, *(len(r.run_id) for r in found))
    print(f"{'run id':<{width}} {'status':<11} {'epochs':>6} {'best val top1':>13}")
    damaged = 0
    for run in found:
        best = run.best_val_top1
        best_s = f"{100 * best:.1f}%" if best is not None else "-"
        print(f"{run.run_id:<{width}} {run.status:<11} {len(run.metrics):>6} {best_s:>13}")
        if run.damaged:
            damaged += 1
            print(f"    damaged: {run.damage}")
    if damaged:
        print(f"{damaged} damaged run(s): what could be read is shown; delete one with "
              "python -m cnnlab runs --delete RUN")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from ..bench import bench_train

    also = tuple(args.also_batch) if args.also_batch else (256,)
    result = bench_train(model=args.model, dataset=args.data, seconds=args.seconds, batch_size=args.batch_size,
                         device=args.device, our_batch_sizes=also)
    print(result.report())
    return 0


def cmd_bench_inspect(args: argparse.Namespace) -> int:
    from ..bench import bench_inspect

    r = bench_inspect(args.model, repeat=args.repeat)
    print(f"{r['model']} at {'x'.join(map(str, r['input']))}, {r['threads']} threads (best of {args.repeat})")
    print(f"  one real forward pass, batch 1 (no_grad)  {r['forward_ms']:9.1f} ms  1.00x")
    print(f"  cnnlab layer table on the meta device      {r['inspect_ms']:9.1f} ms  "
          f"{r['forward_ms'] / r['inspect_ms']:.1f}x faster")
    return 0
