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

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .errors import ConfigError
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


    @property
    def ratio(self) -> float:
        """Ours over the baseline at the same batch size."""
        ours = self.ours.get(self.batch_size)
        if ours is None or not self.baseline_images_per_sec:
            return float("nan")
        return ours / self.baseline_images_per_sec

    def report(self) -> str:
        base = self.baseline_images_per_sec
        lines = [
            f"{self.model} on {self.dataset}, {self.device} ({self.threads} threads, load average "
            f"{self.load[0]:.1f} -> {self.load[1]:.1f}; other processes skew small batches most)",
            f"  {'loop':<50} {'batch':>5} {'images/s':>9} {'ratio':>6}",
            f"  {'seed style (PIL + DataLoader + .item())':<50} {self.batch_size:>5} {base:>9.0f} {1:>5.2f}x",
        ]
        if self.ceiling:
            lines.append(f"  {'model alone (one preloaded batch, no data at all)':<50} {self.batch_size:>5} "
                         f"{self.ceiling:>9.0f} {self.ceiling / base if base else float('nan'):>5.2f}x")
        for bs, ips in sorted(self.ours.items()):
            lines.append(f"  {'cnnlab trainer (tensors, batch transforms)':<50} {bs:>5} {ips:>9.0f} "
                         f"{ips / base if base else float('nan'):>5.2f}x")
        return "\n".join(lines)


class _PilDataset(torch.utils.data.Dataset):
    """Like torchvision's MNIST/CIFAR datasets: a PIL image per ``__getitem__``, then transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int):
        from PIL import Image

        arr = self.images[i].numpy()
        img = Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
        return self.transform(img), int(self.labels[i])


def _baseline_transform(data_shape: tuple[int, ...], model_shape: tuple[int, ...], mean, std) -> Callable:
    from torchvision import transforms

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


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return 0.0


def _model_alone(model: nn.Module, shape: tuple[int, ...], num_classes: int, batch_size: int,
                 device: torch.device, seconds: float) -> float:
    """Images/s of forward + backward + Adam on one fixed batch: the ceiling of any data loop."""
    x = torch.randn(batch_size, *shape, device=device)
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


def _ours_round(config: TrainConfig, bundle: Any, batch_size: int, seconds: float) -> float:
    """Images/s of :func:`fit` over about ``seconds`` of training (validation excluded)."""
    cancel = threading.Event()
    last: list[StepEvent] = []

    def listener(event: Any) -> None:
        if isinstance(event, StepEvent):
            last.append(event)
            if event.images_per_sec and event.step * batch_size / event.images_per_sec >= seconds:
                cancel.set()

    fit(TrainConfig(**{**config.__dict__, "batch_size": batch_size}), data=bundle, listeners=[listener],
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
) -> BenchResult:
    """Images/second of :func:`fit` and of a seed-style loop on the same model and data.

    The baseline runs at ``batch_size``; ours at ``batch_size`` and at every size in
    ``our_batch_sizes`` (larger batches are where whole-batch transforms pay off most).
    """
    if not 0.5 <= seconds <= 3600:
        raise ConfigError(f"seconds must be between 0.5 and 3600, got {seconds}")
    if not 1 <= rounds <= 20:
        raise ConfigError(f"rounds must be between 1 and 20, got {rounds}")
    config = TrainConfig(model=model, dataset=dataset, epochs=1000, batch_size=batch_size, optimizer="adam",
                         lr=1e-3, device=device, log_interval_s=0.2).validate()
    bundle = data if data is not None else load_data(config)
    from .device import pick_device

    dev = pick_device(device)

    # Both loops run in alternating rounds and the best round of each counts (as timeit
    # does): other processes on a shared machine then slow both sides alike.
    load_before = _load()
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
    base_best, base_images, ceiling = 0.0, 0, 0.0
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

    return BenchResult(
        model=model, dataset=dataset, device=str(dev), batch_size=batch_size, threads=torch.get_num_threads(),
        baseline_images_per_sec=base_best, baseline_images=base_images, ours=ours,
        ceiling=ceiling, load=(load_before, _load()),
    )


def bench_inspect(model: str = "vgg16", repeat: int = 5) -> dict:
    """Milliseconds of :func:`cnnlab.inspect.summarize` (meta device: shapes, parameters, MACs,
    receptive fields) against one real CPU forward pass of the same model, best of ``repeat``."""
    from .inspect import summarize
    from .models import create, get_spec

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
