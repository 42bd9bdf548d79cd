"""Trainer benchmark: our tensor trainer against a seed-style loop, in the same process.

The baseline is the loop of seeds 002/003: a ``Dataset`` that turns each stored image into a
PIL image, per-sample ``transforms.Compose([ToTensor(), Normalize()])``, a torch
``DataLoader`` (batch 64, shuffled, no worker processes) and ``.item()`` on the loss and the
correct count at every step. Ours is :func:`cnnlab.train.fit`: uint8 tensors, whole-batch
transforms, metrics accumulated on the device. Both train the same model (same registry
name, same seed, Adam) on the same images for about the same wall time; the result is a
ratio of images per second, never an absolute claim.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn
from torchvision import transforms

from .convolution import LayerCapture, capture_layer, conv_sandbox, digit_input, photo_input
from .data.gallery import to_pil
from .device import pick_device
from .data import InputPipeline, load_dataset
from .data.pipeline import IMAGENET_MEAN, IMAGENET_STD
from .errors import ConfigError
from .features import (
    DEFAULT_STEPS, TOP_K, check_images, check_steps, conv_layer, conv_layers, optimise, top_patches,
)
from .inspect import summarize
from .jobs import JobManager
from .models import create, evaluating, get_spec
from .runs import RunRecorder
from . import xray
from .threads import CpuMonitor, usable_cores
from .train import StepEvent, TrainConfig, fit, load_data, prepare_model


@dataclass
class BenchResult:
    model: str
    dataset: str
    device: str
    batch_size: int  # the baseline's (the seeds use 64)
    threads: int
    baseline_images_per_sec: float
    baseline_images: int
    ours: dict[int, float]  # our batch size -> images/s
    ceiling: float = 0.0  # model alone at batch_size: one preloaded batch, no data pipeline
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    busy: float = 0.0  # ours at batch_size with one busy process beside it (0: not measured)
    busy_threads: int = 0  # the threads the trainer chose beside the busy process
    cores: int = 1
    notes: tuple[str, ...] = ()  # what made a figure unreliable, and what was repeated
    macs_per_image: int = 0  # forward multiply-accumulates (training costs about 3x: forward + backward)
    peak_tflops: float = 0.0  # the GPU's dense bf16 peak, when it is a known one

    @property
    def ratio(self) -> float:
        """Ours over the baseline at the same batch size."""
        ours = self.ours.get(self.batch_size)
        if ours is None or not self.baseline_images_per_sec:
            return float("nan")
        return ours / self.baseline_images_per_sec

    def report(self) -> str:
        base = self.baseline_images_per_sec
        ours = self.ours.get(self.batch_size, 0.0)

        def ratio(v: float) -> str:
            return f"{v / base:>5.2f}x" if base else "    -"

        lines = [
            f"{self.model} on {self.dataset}, {self.device}: {self.cores} usable cores, load average "
            f"{self.load[0]:.1f} before and {self.load[1]:.1f} after (best of alternating rounds)",
            f"  {'measurement':<58} {'batch':>5} {'images/s':>9} {'vs seed':>7}",
            f"  {'seed-style loop (PIL + DataLoader + .item() per step)':<58} {self.batch_size:>5} {base:>9,.0f} "
            f"{ratio(base)}",
        ]
        if self.ceiling:
            lines.append(f"  {'model alone: one preloaded batch, no data (the ceiling)':<58} {self.batch_size:>5} "
                         f"{self.ceiling:>9,.0f} {ratio(self.ceiling)}")
        for bs, ips in sorted(self.ours.items()):
            lines.append(f"  {'cnnlab trainer, quiet machine':<58} {bs:>5} {ips:>9,.0f} {ratio(ips)}")
        if self.busy:
            lines.append(f"  {f'cnnlab trainer beside a busy process ({self.busy_threads} thread(s) chosen)':<58} "
                         f"{self.batch_size:>5} {self.busy:>9,.0f} {ratio(self.busy)}")
        lines.append("  ratios:")
        if self.ceiling and ours:
            lines.append(f"    trainer / model alone      {ours / self.ceiling:5.2f}  (the data pipeline's cost; "
                         "goal >= 0.90)")
        if self.busy and ours:
            lines.append(f"    beside a busy process / quiet {self.busy / ours:5.2f}  (half the cores is the fair "
                         "share; goal >= 0.50)")
        if base and ours:
            lines.append(f"    trainer / seed-style loop  {ours / base:5.2f}")
        if self.peak_tflops and self.macs_per_image and ours:
            best = max(self.ours.values())
            achieved = 6 * self.macs_per_image * best / 1e12  # 2 FLOPs per MAC, x3 for forward + backward
            lines.append(f"    share of the GPU's bf16 peak   {achieved / self.peak_tflops:5.1%}  ({achieved:.1f} of "
                         f"{self.peak_tflops:g} TFLOP/s at the best batch size)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by a piece of the device name.
GPU_BF16_PEAK = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                 "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "T4": 65.0, "V100": 125.0}


def gpu_bf16_peak(name: str) -> float:
    """The dense bf16 peak of a GPU by its name (0 when unknown: the share is then not printed)."""
    for key, peak in GPU_BF16_PEAK.items():  # the more specific names come first
        if key in name:
            return peak
    return 0.0


class _PilDataset(torch.utils.data.Dataset):
    """Like torchvision's MNIST/CIFAR datasets: a PIL image per ``__getitem__``, then transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int):
        return self.transform(to_pil(self.images[i])), int(self.labels[i])


def _baseline_transform(data_shape: tuple[int, ...], model_shape: tuple[int, ...], mean, std) -> Callable:
    steps: list[Any] = []
    if tuple(data_shape[1:]) != tuple(model_shape[1:]):
        steps.append(transforms.Resize(tuple(model_shape[1:])))
    if data_shape[0] != model_shape[0]:
        steps.append(transforms.Grayscale(num_output_channels=model_shape[0]))
        mean = [sum(mean) / len(mean)] * model_shape[0]
        std = [sum(std) / len(std)] * model_shape[0]
    steps += [transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))]
    return transforms.Compose(steps)


def _seed_style_loop(model: nn.Module, loader, device: torch.device, seconds: float) -> tuple[int, float]:
    """Seed 003's ``train_val_model`` training phase, stopped after ``seconds``."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    images, t0, started = 0, 0.0, False
    running_loss, running_corrects = 0.0, 0
    while True:
        for inputs, labels in loader:
            if not started:  # the first batch is warm-up, as for ours
                started, t0 = True, time.perf_counter()
            else:
                images += inputs.size(0)
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(inputs)
            _, preds = torch.max(outputs, 1)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * inputs.size(0)
            running_corrects += torch.sum(preds == labels.data).item()
            if time.perf_counter() - t0 >= seconds and images:
                return images, time.perf_counter() - t0


class BusyNeighbour:
    """A plain Python busy loop in another process: a stand-in for a page rerunning, a browser, a
    second student's job."""

    def __enter__(self) -> "BusyNeighbour":
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)  # let it take its core
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.kill()
        self.proc.wait()


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return 0.0


def _model_alone(model: nn.Module, shape: tuple[int, ...], num_classes: int, batch_size: int,
                 device: torch.device, seconds: float) -> float:
    """Images/s of forward + backward + Adam on one fixed batch: the ceiling of any data loop."""
    fmt = torch.channels_last if device.type in ("cpu", "cuda") else torch.preserve_format  # as fit does
    model = copy.deepcopy(model).to(device, memory_format=fmt)
    x = torch.randn(batch_size, *shape, device=device).to(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    steps, t0 = 0, time.perf_counter()
    while True:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        if steps % 10 == 0:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                return steps * batch_size / elapsed


def _ours_round(config: TrainConfig, bundle: Any, batch_size: int, seconds: float,
                threads_seen: list[int] | None = None, listeners: tuple[Any, ...] = ()) -> float:
    """Images/s of :func:`fit` over about ``seconds`` of training (validation excluded)."""
    cancel = threading.Event()
    last: list[StepEvent] = []

    def listener(event: Any) -> None:
        if isinstance(event, StepEvent):
            last.append(event)
            if threads_seen is not None:
                threads_seen.append(torch.get_num_threads())
            if event.images_per_sec and event.step * batch_size / event.images_per_sec >= seconds:
                cancel.set()

    fit(TrainConfig(**{**config.__dict__, "batch_size": batch_size}), data=bundle, listeners=[*listeners, listener],
        cancel=cancel)
    return last[-1].images_per_sec


def bench_train(
    model: str = "lenet",
    dataset: str = "digits",
    seconds: float = 10.0,
    batch_size: int = 64,
    device: str = "cpu",
    data: Any = None,
    our_batch_sizes: tuple[int, ...] = (),
    rounds: int = 3,
    busy: bool = True,
) -> BenchResult:
    """Images/second of :func:`fit` and of a seed-style loop on the same model and data.

    The baseline runs at ``batch_size``; ours at ``batch_size`` and at every size in
    ``our_batch_sizes`` (larger batches are where whole-batch transforms pay off most). Each round
    also times the model alone on one preloaded batch (the ceiling of any data loop) and, with
    ``busy``, our trainer again beside a busy process (a CPU-only measurement).
    """
    if not 0.5 <= seconds <= 3600:
        raise ConfigError(f"seconds must be between 0.5 and 3600, got {seconds}")
    if not 1 <= rounds <= 20:
        raise ConfigError(f"rounds must be between 1 and 20, got {rounds}")
    config = TrainConfig(model=model, dataset=dataset, epochs=1000, batch_size=batch_size, optimizer="adam",
                         lr=1e-3, device=device, log_interval_s=0.2).validate()
    bundle = data if data is not None else load_data(config)
    dev = pick_device(device)

    # Both loops run in alternating rounds and the best round of each counts (as timeit
    # does): other processes on a shared machine then slow both sides alike.
    load_before = _load()
    monitor = CpuMonitor()
    time.sleep(1.0)
    others_before = monitor.others_busy() or 0.0  # what the other processes did in the last second
    per_round = seconds / rounds
    ours: dict[int, float] = {}
    train = bundle.train
    data_shape = tuple(int(v) for v in train.images.shape[1:])
    torch.manual_seed(0)
    net, model_shape, _ = prepare_model(config, data_shape, len(bundle.info.classes))  # type: ignore[arg-type]
    net.to(dev)
    transform = _baseline_transform(data_shape, model_shape, bundle.info.mean, bundle.info.std)
    loader = torch.utils.data.DataLoader(_PilDataset(train.images, train.labels, transform),
                                         batch_size=batch_size, shuffle=True, num_workers=0)
    base_best, base_images, ceiling, busy_best = 0.0, 0, 0.0, 0.0
    busy_threads: list[int] = []
    busy = busy and dev.type == "cpu"
    for _ in range(rounds):
        # --- the model alone (same device, same memory format as in fit) -----------------
        ceiling = max(ceiling, _model_alone(net, model_shape, len(bundle.info.classes), batch_size, dev,
                                            per_round / 3))
        # --- ours: fit() until `per_round` seconds of training time have passed -----------
        for bs in dict.fromkeys((batch_size, *our_batch_sizes)):
            ours[bs] = max(ours.get(bs, 0.0), _ours_round(config, bundle, bs, per_round))
        # --- baseline: the seed loop on PIL images ----------------------------------------
        images, elapsed = _seed_style_loop(net, loader, dev, per_round)
        base_images += images
        base_best = max(base_best, images / elapsed)
        # --- ours again, beside a busy process ----------------------------------------------
        if busy:
            with BusyNeighbour():
                seen: list[int] = []
                busy_best = max(busy_best, _ours_round(config, bundle, batch_size, per_round, seen))
                busy_threads = busy_threads or seen[-1:]

    cores = usable_cores()
    notes = []
    if ceiling and ours.get(batch_size, 0.0) > 1.05 * ceiling:  # a disturbed model-alone round: measure again
        ceiling = max(ceiling, _model_alone(net, model_shape, len(bundle.info.classes), batch_size, dev, per_round))
        notes.append("the model alone first came out slower than the whole trainer (another process took the "
                     "cores during its round); it was measured again.")
    if others_before > 0.3:
        notes.append(f"other processes kept {others_before:.1f} of the {cores} cores busy when the benchmark started: "
                     "the quiet figures are lower than on a quiet machine and the ratios less reliable; run it "
                     "again when nothing else runs.")
    macs, peak = 0, 0.0
    if dev.type == "cuda":
        macs = summarize(model, input_shape=model_shape, num_classes=len(bundle.info.classes)).total_macs
        peak = gpu_bf16_peak(torch.cuda.get_device_name(dev))
    return BenchResult(
        model=model, dataset=dataset, device=str(dev), batch_size=batch_size, threads=torch.get_num_threads(),
        macs_per_image=macs, peak_tflops=peak,
        baseline_images_per_sec=base_best, baseline_images=base_images, ours=ours,
        ceiling=ceiling, load=(load_before, _load()), busy=busy_best, busy_threads=busy_threads[0] if busy_threads else 0,
        cores=cores, notes=tuple(notes),
    )


def bench_app(model: str = "lenet", dataset: str = "digits", seconds: float = 10.0, poll_s: float = 1.0,
              rounds: int = 2) -> dict[str, Any]:
    """Images/s of a training run as the command line runs it (``fit`` in this thread) against the
    same training as an app job (:class:`~cnnlab.jobs.JobManager`, a worker thread) while this
    thread polls it every ``poll_s`` seconds the way the Train page's live view does (new events,
    a data frame of the curves, a chart spec). Alternating rounds, best of each."""
    import pandas as pd  # here, not at the top: 0.35 s to import, and only this benchmark needs it

    if not 0.5 <= seconds <= 3600 or not 0.05 <= poll_s <= 60 or not 1 <= rounds <= 20:
        raise ConfigError("seconds must be in 0.5..3600, poll_s in 0.05..60 and rounds in 1..20.")
    config = TrainConfig(model=model, dataset=dataset, epochs=1000, device="cpu", log_interval_s=0.5).validate()
    bundle = load_data(config)
    manager = JobManager()
    cli_best = app_best = 0.0
    polls = 0
    load_before = _load()
    per_round = seconds / rounds
    for _ in range(rounds):
        cli_best = max(cli_best, _ours_round(config, bundle, config.batch_size, per_round))
        job = manager.submit(config, data=bundle)
        index, rows = 0, []
        while True:
            time.sleep(poll_s)
            events, index = job.events_since(index)
            rows += [e for e in events if e.get("kind") in ("step", "epoch")]
            frame = pd.DataFrame(rows)
            if not frame.empty:  # what a live chart does with it: long format, a JSON spec
                frame.melt(id_vars=[c for c in ("step", "kind") if c in frame], value_vars=[
                    c for c in ("loss", "top1", "val_top1") if c in frame]).to_json()
            polls += 1
            step = job.latest_step or {}
            trained = step.get("step", 0) * config.batch_size / step["images_per_sec"] if step.get("images_per_sec") else 0
            if trained >= per_round or job.done:
                break
        job.cancel()
        job.wait(60)
        app_best = max(app_best, float((job.latest_step or {}).get("images_per_sec") or 0.0))
    return {"model": model, "dataset": dataset, "cli_images_per_sec": cli_best, "app_images_per_sec": app_best,
            "ratio": app_best / cli_best if cli_best else float("nan"), "polls": polls, "poll_s": poll_s,
            "load": (load_before, _load())}


def bench_inspect(model: str = "vgg16", repeat: int = 5) -> dict:
    """Milliseconds of :func:`cnnlab.inspect.summarize` (meta device: shapes, parameters, MACs,
    receptive fields) against one real CPU forward pass of the same model, best of ``repeat``."""
    if not 1 <= repeat <= 100:
        raise ConfigError(f"repeat must be between 1 and 100, got {repeat}")
    spec = get_spec(model)
    summarize(spec.name)  # warm-up: imports, torchinfo, first meta allocations
    inspect_s = min(_timed(lambda: summarize(spec.name)) for _ in range(repeat))
    net = create(spec.name).eval()
    x = torch.randn(1, *spec.input_shape)
    with torch.no_grad():
        net(x)
        forward_s = min(_timed(lambda: net(x)) for _ in range(repeat))
    return {"model": spec.name, "input": spec.input_shape, "threads": torch.get_num_threads(),
            "inspect_ms": 1000 * inspect_s, "forward_ms": 1000 * forward_s}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


#: The Convolution page's goal for one interaction (issue 24).
CONV_GOAL_MS = 50.0


def _best_ms(fn: Callable[[int], Any], repeat: int) -> float:
    """Best of ``repeat`` calls in milliseconds; ``fn`` gets the call's number (to move the window each time)."""
    fn(0)  # warm-up
    return 1000 * min(_timed(lambda i=i: fn(i)) for i in range(repeat))


def _conv_sandbox_rows(repeat: int) -> list[dict]:
    """The sandbox: a 3x12x12 photo, a 3x3 kernel; its forward is one F.conv2d."""
    x = photo_input("chelsea")
    sb = conv_sandbox(x, "sharpen", padding=1)
    positions = sb.positions()
    forward = _best_ms(lambda i: sb.operation.forward(sb.input), repeat)
    what = "sandbox 3x12x12 photo, 3x3 kernel"
    return [
        {"what": f"{what}: move the window (explain one output)", "forward_ms": forward,
         "ms": _best_ms(lambda i: sb.explain(0, *positions[i % len(positions)]), repeat)},
        {"what": f"{what}: change the padding (recompute, explain)", "forward_ms": forward,
         "ms": _best_ms(lambda i: conv_sandbox(x, "sharpen", padding=1 + i % 2).explain(0, 0, 0), repeat)},
    ]


def _layer_alone(model: str, layer: str) -> LayerCapture:
    """One layer of a large zoo model at its own input size, without building the model's weights: the
    model on the meta device gives the layer's input size and receptive field; the layer alone gets
    random weights and a random input."""
    spec = get_spec(model)
    with torch.device("meta"):
        net = create(spec.name)
    seen = capture_layer(net, layer, torch.empty(1, *spec.input_shape, device="meta"))
    alone = copy.deepcopy(seen.module).to_empty(device="cpu")
    alone.reset_parameters()
    x = torch.randn(*seen.input.shape)
    with torch.no_grad():
        out = alone(x[None])[0]
    return LayerCapture(layer, alone.eval(), x, out, seen.image_size, seen.field)


def _conv_layer_rows(cap: LayerCapture, label: str, repeat: int) -> list[dict]:
    """A real layer: explaining one output (the page's every click) against the layer's forward pass."""
    with torch.no_grad():
        forward = _best_ms(lambda i: cap.module(cap.input[None]), repeat)
    k, rows, cols = cap.output.shape
    shape = "x".join(map(str, cap.input.shape))
    return [{"what": f"{label} ({shape} in): move the window (explain one output)", "forward_ms": forward,
             "ms": _best_ms(lambda i: cap.explain(i % k, i * 7 % rows, i * 3 % cols), repeat)}]


def bench_conv(repeat: int = 20) -> dict:
    """Milliseconds of each interaction of the convolution explorer (move the window, change the padding,
    pick a layer) against one forward pass of the layer it explains (of the model, to pick a layer),
    best of ``repeat``: the sandbox, LeNet's C3 on a digit, and VGG16's last convolution at 224x224 (the
    most products per output: 512 channels of 3x3). Each row: what, ms, forward_ms."""
    if not 1 <= repeat <= 1000:
        raise ConfigError(f"repeat must be between 1 and 1000, got {repeat}")
    lenet = create("lenet").eval()
    digit = torch.nn.functional.interpolate(digit_input(3)[None].float() / 16, size=(28, 28))
    with torch.no_grad():
        model_forward = _best_ms(lambda i: lenet(digit), repeat)
    pick = _best_ms(lambda i: capture_layer(lenet, "C3", digit), repeat)
    rows = _conv_sandbox_rows(repeat)
    rows.append({"what": "LeNet: pick C3 (one forward pass of the model with hooks)", "forward_ms": model_forward,
                 "ms": pick})
    rows += _conv_layer_rows(capture_layer(lenet, "C3", digit), "LeNet C3", repeat)
    rows += _conv_layer_rows(_layer_alone("vgg16", "features.28"), "VGG16 features.28 at 224", repeat)
    return {"threads": torch.get_num_threads(), "rows": rows}


#: Issue 25's goals on this machine: activation maximisation of one channel (seconds), and top patches of
#: one layer over 1,000 images at most this many forward passes (of one batch) beyond the passes themselves.
FEATURES_GOAL_S = {"small": 10.0, "vgg16": 60.0}
PATCHES_GOAL_PASSES = 5.0


def _full_passes(model: nn.Module, images: torch.Tensor, pipeline: InputPipeline, batch_size: int) -> None:
    """The whole model's forward passes over the images, without gradients: the scan's baseline."""
    with torch.no_grad(), evaluating(model):
        for start in range(0, len(images), batch_size):
            model(pipeline.eval_batch(images[start:start + batch_size]))


def _patches_row(repeat: int, count: int, batch_size: int = 64) -> dict:
    """Top patches of every channel of the CIFAR ResNet's last convolution (the most of the model runs
    before it) over ``count`` shapes validation images, against the model's forward passes alone."""
    images = load_dataset("shapes", seed=0).val.images[:count]
    model = create("cifar_resnet").eval()
    layer = conv_layers(model)[-1]
    channels = range(conv_layer(model, layer).out_channels)
    pipeline = InputPipeline(tuple(images.shape[1:]), (3, 32, 32), (0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    _full_passes(model, images[:batch_size], pipeline, batch_size)  # warm-up
    forward = ours = float("inf")
    for _ in range(repeat):  # alternating, best of each: a busy neighbour slows both alike
        forward = min(forward, _timed(lambda: _full_passes(model, images, pipeline, batch_size)))
        ours = min(ours, _timed(lambda: top_patches(model, layer, channels, images, pipeline,
                                                    max_images=len(images), batch_size=batch_size)))
    one_pass = forward / -(-len(images) // batch_size)
    return {"what": f"CIFAR ResNet {layer}, {len(channels)} channels, top {TOP_K} of {len(images)} shapes images "
                    f"(batch {batch_size})", "forward_s": forward, "seconds": ours,
            "extra_passes": (ours - forward) / one_pass}


def _optimise_row(model_name: str, layer: str | None, steps: int, goal: float) -> dict:
    """Activation maximisation of channel 0 of ``layer`` (default: the last convolution), random weights."""
    spec = get_spec(model_name)
    model = create(spec.name).eval()
    layer = layer or conv_layers(model)[-1]
    c = spec.input_shape[0]
    norm = ((0.5,) * c, (0.5,) * c) if c == 1 else (IMAGENET_MEAN, IMAGENET_STD)
    seconds = _timed(lambda: optimise(model, layer, [0], spec.input_shape, *norm, steps=steps))
    shape = "x".join(map(str, spec.input_shape))
    return {"what": f"{spec.display_name} {layer} at {shape}, channel 0, {steps} steps", "seconds": seconds,
            "per_step_ms": 1000 * seconds / steps, "goal_s": goal}


def bench_features(repeat: int = 5, steps: int = DEFAULT_STEPS, images: int = 1000) -> dict:
    """What a channel responds to (issue 25), on the CPU: top patches of one layer over ``images``
    validation images against the forward passes alone (best of ``repeat``), and activation maximisation
    of one channel of LeNet, the CIFAR ResNet and VGG16 at 224 (random weights) with ``steps`` steps,
    against their goals."""
    if not 1 <= repeat <= 20:
        raise ConfigError(f"repeat must be between 1 and 20, got {repeat}")
    check_steps(steps)
    check_images(images)
    rows = [_optimise_row("lenet", "C3", steps, FEATURES_GOAL_S["small"]),
            _optimise_row("cifar_resnet", None, steps, FEATURES_GOAL_S["small"]),
            _optimise_row("vgg16", "features.28", steps, FEATURES_GOAL_S["vgg16"])]
    return {"threads": torch.get_num_threads(), "patches": _patches_row(repeat, images), "optimise": rows}


def features_report(result: dict) -> str:
    """:func:`bench_features`'s result as the lines ``python -m cnnlab bench features`` prints."""
    p = result["patches"]
    lines = [f"what a channel responds to, cpu, {result['threads']} threads",
             f"  top patches: {p['what']}",
             f"    forward passes alone {p['forward_s']:7.2f} s; top patches {p['seconds']:7.2f} s; ratio "
             f"{p['seconds'] / p['forward_s']:.2f}; beyond the passes: {p['extra_passes']:+.1f} batch passes "
             f"(goal <= {PATCHES_GOAL_PASSES:g}: {'met' if p['extra_passes'] <= PATCHES_GOAL_PASSES else 'MISSED'})",
             "  activation maximisation (the command's --method optimise does it twice: trained and random weights)"]
    for r in result["optimise"]:
        verdict = "met" if r["seconds"] < r["goal_s"] else "MISSED"
        lines.append(f"    {r['what']:<70} {r['seconds']:6.1f} s ({r['per_step_ms']:6.0f} ms/step)  goal < "
                     f"{r['goal_s']:g} s: {verdict}")
    return "\n".join(lines)



XRAY_GOAL = 0.95  # training with the X-ray on keeps at least this share of its speed without it
XRAY_CASES = (("lenet", "digits"), ("cifar_resnet", "shapes"))


def bench_xray(seconds: float = 6.0, rounds: int = 3, every: int = xray.MIN_EVERY,
               cases: tuple[tuple[str, str], ...] = XRAY_CASES) -> list[dict[str, Any]]:
    """Images/s of the same training with the X-ray off and on (sampling every ``every`` steps: by default the
    most frequent automatic choice), in alternating rounds, best of each; the run folder's X-ray bytes per
    10,000 steps at the interval a 10,000-step training of the model gets (each "on" round writes a run
    folder into a temporary cache, as the app does)."""
    if not 0.5 <= seconds <= 3600 or not 1 <= rounds <= 20 or not 1 <= every <= 1000:
        raise ConfigError("seconds must be 0.5-3600, rounds 1-20 and every 1-1000")
    rows = []
    for model, dataset in cases:
        config = TrainConfig(model=model, dataset=dataset, epochs=1000, batch_size=64, optimizer="adam", lr=1e-3,
                             device="cpu", log_interval_s=0.2, xray_every=every).validate()
        bundle = load_data(config)
        off = on = 0.0
        per_10k = 0.0
        with tempfile.TemporaryDirectory() as cache, _env("CNNLAB_CACHE", cache):
            for _ in range(rounds):
                # both sides write their run folder as the app does: the ratio is the X-ray's alone
                off = max(off, _ours_round(replace(config, xray=False), bundle, 64, seconds / rounds,
                                           listeners=(RunRecorder(),)))
                recorder = RunRecorder()
                on = max(on, _ours_round(config, bundle, 64, seconds / rounds, listeners=(recorder,)))
                folder = recorder.writer.path if recorder.writer is not None else None
                per_10k = max(per_10k, _xray_bytes_per_10k(folder))
        rows.append({"model": model, "dataset": dataset, "every": every, "off": off, "on": on,
                     "ratio": on / off if off else 0.0, "bytes_per_10k_steps": per_10k,
                     "threads": torch.get_num_threads()})
    return rows


def _xray_bytes_per_10k(folder: Any) -> float:
    """The size of ``xray.jsonl`` over 10,000 steps: its mean line times the samples that a 10,000-step
    training of the same model takes (:func:`cnnlab.xray.choose_every`), and the kernel snapshots of 100 epochs."""
    lines = (folder / "xray.jsonl").read_bytes().splitlines() if folder is not None and (folder / "xray.jsonl").is_file() else []
    if not lines:
        return 0.0
    last = json.loads(lines[-1])
    every = xray.choose_every(10_000, len(last["layers"]) + len(last["activations"]))
    kernels = (folder / "kernels.jsonl").read_bytes().splitlines() if (folder / "kernels.jsonl").is_file() else []
    per_kernel = sum(map(len, kernels)) / len(kernels) if kernels else 0.0
    return sum(map(len, lines)) / len(lines) * (10_000 / every + 1) + per_kernel * 100


@contextlib.contextmanager
def _env(name: str, value: str) -> Any:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
