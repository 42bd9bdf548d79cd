"""``python -m cnnlab train | eval | bench train``: train a model, evaluate a run, measure speed."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from tqdm import tqdm

from .. import config, distributed
from ..config import TrainConfig  # the options below are generated from it
from ..events import EndEvent, EpochEvent, StartEvent, StepEvent


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model on a dataset and save the run",
        description="Train a zoo model; the run (config, metrics, best weights, TensorBoard log) is saved "
                    "under models_cache/runs/. Ctrl-C cancels and keeps the best weights. Every option is a "
                    "field of cnnlab.train.TrainConfig. Started by torchrun (torchrun --nproc_per_node N -m cnnlab "
                    "train ...), the N processes train one model together (DistributedDataParallel: NCCL on GPUs, "
                    "gloo on CPUs); --batch-size is then the batch of all of them together.",
    )
    add_config_options(p)
    p.add_argument("--no-tensorboard", action="store_true", help="do not write the TensorBoard log")
    p.set_defaults(func=cmd_train, log_interval_s=0.2)

    e = subparsers.add_parser("eval", help="evaluate a saved run: per-class top-1/top-5",
                              description="Per-class and overall top-1/top-5 of a run's best weights.")
    e.add_argument("run", help="run id (or a unique beginning of one, matched literally)")
    e.add_argument("--split", default="val", choices=["val", "test", "train"],
                   help="val (default), test, or train (clean accuracy on the training images, no augmentation)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_eval)

    r = subparsers.add_parser("runs", help="list saved training runs (newest first)",
                              description="List the runs in models_cache/runs/, or delete one.")
    r.add_argument("--delete", metavar="RUN", default=None,
                   help="delete this run (its id, or a unique beginning of it, matched literally)")
    r.set_defaults(func=cmd_runs)

    b = subparsers.add_parser("bench", help="benchmarks (bench train, bench inspect, bench conv, bench xray, bench features)")
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
    bt.add_argument("--no-busy", action="store_true", help="skip the measurement beside a busy process")
    bt.set_defaults(func=cmd_bench_train)
    ba = bsub.add_parser(
        "app", help="images/s of a training as an app job polled like the live view, against the command line",
        description="Trains the same model on the same data as the command line does (fit in the main thread) and "
                    "as an app job in a worker thread while the main thread polls it like the Train page's live "
                    "view, in alternating rounds, and prints both and their ratio (goal: at least 0.8).")
    ba.add_argument("--model", default="lenet")
    ba.add_argument("--data", default="digits")
    ba.add_argument("--seconds", type=float, default=10.0, help="total seconds per side")
    ba.add_argument("--poll", type=float, default=1.0, help="seconds between two polls (the live view's refresh)")
    ba.set_defaults(func=cmd_bench_app)
    bi = bsub.add_parser(
        "inspect", help="time of the meta-device layer table vs one real forward pass of the same model",
    )
    bi.add_argument("--model", default="vgg16")
    bi.add_argument("--repeat", type=int, default=5)
    bi.set_defaults(func=cmd_bench_inspect)
    bc = bsub.add_parser(
        "conv", help="time of each convolution-explorer interaction vs one forward pass of the layer (goal: 50 ms)",
    )
    bc.add_argument("--repeat", type=int, default=20)
    bc.set_defaults(func=cmd_bench_conv)
    bx = bsub.add_parser(
        "xray", help="images/s of training with the X-ray on vs off (goal: at least 0.95), and its bytes per 10,000 steps",
        description="Trains LeNet on digits and the CIFAR ResNet on shapes (batch 64) with the training X-ray off and "
                    "on (sampling every 20 steps, the most frequent automatic choice), in alternating rounds, best of "
                    "each, and prints both, their ratio and how much the run folder grows per 10,000 steps (goal: at "
                    "most 2 MB).")
    bx.add_argument("--seconds", type=float, default=6.0, help="seconds of training per side and model")
    bx.add_argument("--rounds", type=int, default=3)
    bx.add_argument("--every", type=int, default=20, help="steps between two X-ray samples (20: the most frequent "
                    "automatic choice)")
    bx.set_defaults(func=cmd_bench_xray)
    bf = bsub.add_parser("features", help="top patches vs the forward passes alone; activation maximisation "
                         "of one channel (LeNet, CIFAR ResNet < 10 s; VGG16 at 224 < 60 s)")
    bf.add_argument("--repeat", type=int, default=5)
    bf.add_argument("--steps", type=int, default=None)
    bf.set_defaults(func=cmd_bench_features)
    b.set_defaults(func=lambda args: (b.print_help(), 2)[1])


# --------------------------------------------------------------------------------------


def _option_type(name: str) -> Callable[[str], Any]:
    """The parser of one TrainConfig setting's command-line value, from the kinds of value it takes."""
    taken = set(config.kinds(name)) - {"null"}
    if "size" in taken:
        return _size
    for kind, parse in (("whole", int), ("number", float), ("text", str)):
        if taken == {kind}:
            return parse
    raise TypeError(f"TrainConfig.{name}: no command-line parser for {config.kinds(name)}")


def _size(text: str) -> int | tuple[int, int]:
    """``32`` or ``32x28`` (height x width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 32 or 32x28, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a size such as 32 or 32x28, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; the value is read as JSON when it parses (numbers, lists), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`~cnnlab.train.TrainConfig` field: name, type, default, help and the
    choices shown come from the setting, so every setting is reachable and none is copied by hand.
    Ranges and choices are checked by ``TrainConfig.validate`` (one message for the app and the
    command line)."""
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta["cli"]:
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = f" (default: {default})" if default not in (None, "", {}) else ""
        kwargs: dict[str, Any] = {"dest": f.name, "help": config.help_text(f.name) + shown}
        taken = config.kinds(f.name)
        if taken == ("bool",):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **kwargs)
        elif taken == ("object",):
            parser.add_argument(flag, type=_key_value, action="append", default=None, metavar="KEY=VALUE", **kwargs)
        else:
            rule = meta["rule"]
            metavar = "{" + ",".join(config.choices(f.name)) + "}" if rule and rule.kind == "choice" \
                else f.name.upper()
            parser.add_argument(flag, type=_option_type(f.name), default=default, metavar=metavar, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if isinstance(values.get("data_options"), list):
        values["data_options"] = dict(values["data_options"])
    values["data_options"] = values.get("data_options") or {}
    return TrainConfig(**values).validate()


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
    config = config_from_args(args)
    with distributed.torchrun_group(config.device):  # under torchrun: one process of a data-parallel training
        return _train_and_report(args, config)


def _train_and_report(args: argparse.Namespace, config: TrainConfig) -> int:
    # lazy: only `train` needs the run files and the trainer (start-up time of the other commands)
    from ..runs import recorders, start_weights
    # lazy: only `train` needs the trainer (start-up time of the other commands)
    from ..train import fit

    bar: list[Any] = []
    main_process = distributed.is_main()  # under torchrun only rank 0 prints (and writes the run folder)

    def listener(event: Any) -> None:
        if not main_process:
            return
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

    cancel = threading.Event()
    with cancel_on_signals(cancel.set):
        result = fit(config, listeners=[*recorders(tensorboard=not args.no_tensorboard), listener], cancel=cancel,
                     initial_state=start_weights(config))
    if main_process:
        if result.history:
            print(_metrics_table(result.history))
        print(result.message if result.message.startswith(result.status) else f"{result.status}: {result.message}")
        print(f"run id: {result.run_id}")
    return {"finished": 0, "cancelled": 130}.get(result.status, 1)


@contextlib.contextmanager
def cancel_on_signals(cancel: Callable[[], None]) -> Iterator[None]:
    """The first Ctrl-C calls ``cancel`` (a clean stop: best weights kept); a second one interrupts.
    Under torchrun SIGTERM does the same: its agent sends it to every process when one failed or the
    job is stopped, and a clean stop agreed by the processes still alive beats being killed; a second
    SIGTERM raises :class:`~cnnlab.distributed.GroupStopped` with a message saying why."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked: set[int] = set()

    def on_signal(signum: int, frame: Any) -> None:
        if signum in asked:
            if signum == signal.SIGTERM:
                raise distributed.GroupStopped(
                    "stopped by torchrun (SIGTERM): another process of the group failed, or the job was "
                    "stopped; that process's message says why.")
            raise KeyboardInterrupt
        asked.add(signum)
        cancel()

    handled = [signal.SIGINT] + ([signal.SIGTERM] if distributed.launched_by_torchrun() else [])
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_eval(args: argparse.Namespace) -> int:
    # lazy: only `eval` needs the run files (start-up time of the other commands)
    from .. import runs
    # lazy: only `eval` needs the evaluation (start-up time of the other commands)
    from ..evaluate import evaluate_run

    run = runs.load_run(args.run)
    config = runs.run_config(run)  # refuses a damaged config.json, or one without a dataset
    result = evaluate_run(run, split=args.split, device=args.device, batch_size=args.batch_size)
    print(f"run {run.run_id}: {run.meta.get('model', '?')} on {config.dataset}, {args.split} split, "
          f"{result.count} images, loss {result.loss:.4f}")
    print(result.table())
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    # lazy: only `runs` needs the run files (start-up time of the other commands)
    from .. import runs

    if args.delete is not None:  # an empty id is refused by runs, not taken for "list"
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
    # lazy: only the benchmarks need cnnlab.bench (start-up time of the other commands)
    from ..bench import bench_train

    also = tuple(args.also_batch) if args.also_batch else (256,)
    result = bench_train(model=args.model, dataset=args.data, seconds=args.seconds, batch_size=args.batch_size,
                         device=args.device, our_batch_sizes=also, busy=not args.no_busy)
    print(result.report())
    return 0


def cmd_bench_app(args: argparse.Namespace) -> int:
    # lazy: only the benchmarks need cnnlab.bench (start-up time of the other commands)
    from ..bench import bench_app

    r = bench_app(model=args.model, dataset=args.data, seconds=args.seconds, poll_s=args.poll)
    print(f"{r['model']} on {r['dataset']}, cpu (load average {r['load'][0]:.1f} -> {r['load'][1]:.1f})\n"
          f"  command line (fit in the main thread)          {r['cli_images_per_sec']:>9,.0f} images/s\n"
          f"  app job, polled every {r['poll_s']:g} s like the live view {r['app_images_per_sec']:>9,.0f} images/s\n"
          f"  app / command line                             {r['ratio']:>9.2f}  (goal >= 0.80)")
    return 0


def cmd_bench_inspect(args: argparse.Namespace) -> int:
    # lazy: only the benchmarks need cnnlab.bench (start-up time of the other commands)
    from ..bench import bench_inspect

    r = bench_inspect(args.model, repeat=args.repeat)
    print(f"{r['model']} at {'x'.join(map(str, r['input']))}, {r['threads']} threads (best of {args.repeat})")
    print(f"  one real forward pass, batch 1 (no_grad)  {r['forward_ms']:9.1f} ms  1.00x")
    print(f"  cnnlab layer table on the meta device      {r['inspect_ms']:9.1f} ms  "
          f"{r['forward_ms'] / r['inspect_ms']:.1f}x faster")
    return 0


def cmd_bench_features(args: argparse.Namespace) -> int:
    from ..bench import bench_features, features_report  # here: the benchmarks load data and models only when asked

    print(features_report(bench_features(repeat=args.repeat, **({"steps": args.steps} if args.steps else {}))))
    return 0


def cmd_bench_xray(args: argparse.Namespace) -> int:
    from ..bench import XRAY_GOAL, bench_xray  # here: the benchmarks load data and models only when asked

    rows = bench_xray(seconds=args.seconds, rounds=args.rounds, every=args.every)
    print(f"training X-ray, sampled every {args.every} steps, batch 64, best of {args.rounds} alternating rounds")
    for r in rows:
        verdict = "meets" if r["ratio"] >= XRAY_GOAL else "below"
        print(f"  {r['model']} on {r['dataset']}: off {r['off']:,.0f} images/s, on {r['on']:,.0f} images/s, "
              f"ratio {r['ratio']:.3f} ({verdict} the {XRAY_GOAL} goal); X-ray files "
              f"{r['bytes_per_10k_steps'] / 2**20:.2f} MB per 10,000 steps ({r['threads']} threads)")
    return 0


def cmd_bench_conv(args: argparse.Namespace) -> int:
    # lazy: only the benchmarks need cnnlab.bench (start-up time of the other commands)
    from ..bench import CONV_GOAL_MS, bench_conv

    result = bench_conv(repeat=args.repeat)
    print(f"convolution explorer, {result['threads']} threads (best of {args.repeat}); "
          f"goal: every interaction under {CONV_GOAL_MS:g} ms")
    print(f"  {'interaction':<76} {'ms':>8} {'forward ms':>10} {'ratio':>7}  goal")
    for r in result["rows"]:
        verdict = "met" if r["ms"] < CONV_GOAL_MS else "MISSED"
        print(f"  {r['what']:<76} {r['ms']:8.2f} {r['forward_ms']:10.2f} {r['ms'] / r['forward_ms']:6.2f}x  {verdict}")
    return 0

