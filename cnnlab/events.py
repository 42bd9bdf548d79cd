"""What a training tells its listeners: small dataclasses, JSON-serialisable with ``asdict``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

@dataclass
class StartEvent:
    run_id: str | None
    model: str
    dataset: str
    device: str
    epochs: int
    steps_per_epoch: int
    total_steps: int
    train_images: int
    val_images: int
    num_params: int
    input_shape: tuple[int, int, int]
    classes: list[str]
    notes: list[str]
    kind: str = field(default="start", init=False)


@dataclass
class StepEvent:
    epoch: int
    step: int  # global step, 1-based
    total_steps: int
    loss: float  # mean train loss over the steps since the previous step event
    top1: float  # train top-1 accuracy over the same window
    lr: float
    images_per_sec: float  # training throughput (validation time excluded)
    elapsed: float
    eta: float
    kind: str = field(default="step", init=False)


@dataclass
class EpochEvent:
    epoch: int
    step: int
    train_loss: float
    train_top1: float
    train_top5: float
    val_loss: float
    val_top1: float
    val_top5: float
    lr: float
    images_per_sec: float
    elapsed: float
    eta: float
    is_best: bool
    train_images: int = 0  # images trained on in this epoch (with torchrun: by all processes, each once)
    train_seconds: float = 0.0  # seconds spent training so far (validation and events excluded)
    kind: str = field(default="epoch", init=False)


@dataclass
class EndEvent:
    status: str  # finished | cancelled | diverged | failed
    message: str
    best_val_top1: float | None
    best_epoch: int | None
    run_id: str | None
    elapsed: float
    steps: int = 0
    kind: str = field(default="end", init=False)


@dataclass
class XrayEvent:
    """What one sampled step looked like inside (:mod:`cnnlab.xray`): per layer with weights, its weight
    norm, gradient norm and the update-to-weight ratio of the step; per activation call, the mean and
    spread of its outputs and the share of dead or saturated units. Summed over a torchrun group."""

    step: int
    epoch: int
    layers: list[dict[str, Any]]
    activations: list[dict[str, Any]]
    every: int  # steps between two samples
    kind: str = field(default="xray", init=False)


@dataclass
class KernelsEvent:
    """The first convolution's kernels at the end of an epoch (epoch 0: before training), quantised to
    bytes (``data``: base64 of ``shape``'s uint8 values, ``low`` to ``high``): watching filters form."""

    epoch: int
    layer: str
    shape: list[int]
    low: float
    high: float
    data: str
    kind: str = field(default="kernels", init=False)


Event = StartEvent | StepEvent | EpochEvent | EndEvent | XrayEvent | KernelsEvent
Listener = Callable[[Any], None]


@dataclass
class TrainResult:
    status: str
    message: str
    run_id: str | None
    best_val_top1: float | None
    best_epoch: int | None
    history: list[EpochEvent]
    model: nn.Module | None  # best-validation weights (or the last ones); None once a job dropped it
    elapsed: float
    steps: int
    images_per_sec: float
    device: str
    threads: int | None = None  # CPU threads at the end of the training (None on a GPU)
