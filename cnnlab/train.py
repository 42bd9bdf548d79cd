"""The trainer: a config dataclass, one ``fit`` function, structured events.

Read :func:`fit` top to bottom: the whole training loop is there (nanoGPT style).

- Data stays as tensors (airbench style): each batch of uint8 images is moved to the device,
  converted to float, augmented as a whole batch, adapted to the model's channels and size,
  and normalised. No DataLoader, no PIL per sample.
- Loss and accuracy are accumulated on the device; the host syncs only to emit an event.
- The loop stops at the first non-finite loss ("diverged"), within one step of a cancel
  request ("cancelled"), and keeps the best-validation weights in the run registry.
- The trainer knows nothing about who listens: every listener (a callable) receives the
  same dataclass events; ``dataclasses.asdict(event)`` is JSON-serialisable.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .device import pick_device
from .errors import CnnlabError, ConfigError
from .evaluate import (
    AUGMENT_PRESETS,
    InputPipeline,
    autocast_context,
    eval_loop,
    first_layer_in_channels,
    native_bf16,
)

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine", "onecycle")
# Steps by which the non-finite-loss check lags behind, per device type (see fit).
FINITE_CHECK_LAG: dict[str, int] = {"cuda": 1}


# ======================================================================================
# Configuration
# ======================================================================================


def _transfer_models() -> list[str]:
    from .models import list_models

    return list_models(family="transfer")


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``asdict(config)`` is what ``config.json`` holds."""

    model: str = "lenet"
    dataset: str = "digits"
    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "adam"  # sgd | momentum (SGD, momentum 0.9) | adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"  # none | step | cosine | onecycle
    step_size: int = 7  # StepLR: epochs between decays (seed 001 uses 7)
    gamma: float = 0.1  # StepLR decay factor
    augment: str = "none"  # none | flip | cifar | crop28 | imagenet
    subset: int | None = None  # None, or the number of training images (stratified)
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    num_classes: int | None = None  # default: the dataset's class count
    in_channels: int | None = None  # default: the model's (data channels are adapted)
    input_size: int | tuple[int, int] | None = None  # default: the model's fixed size, else the data's
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    log_every_steps: int | None = None  # None: a step event at most every log_interval_s
    log_interval_s: float = 0.5
    max_steps: int | None = None  # stop (as "finished") after this many steps
    eval_batch_size: int | None = None  # default: twice batch_size (no gradients kept), at most 1024
    # For transfer learning (a later issue). Today: pass a prepared nn.Module to fit(model=...);
    # its frozen parameters (requires_grad=False) are left out of the optimiser.
    pretrained: bool = False
    freeze: str = "none"

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` for the first out-of-range setting; return ``self``."""

        def whole(name: str, value: Any, lo: int, hi: int, why: str = "") -> None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number, got {value!r}.")
            if not lo <= value <= hi:
                raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}.{why}")

        def choice(name: str, value: Any, options: Sequence[str]) -> None:
            if value not in options:
                raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(options)}.")

        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model must be a model name, e.g. 'lenet'.")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError("dataset must be a dataset name, e.g. 'digits'.")
        whole("epochs", self.epochs, 1, 1000)
        whole("batch size", self.batch_size, 1, 4096)
        if self.eval_batch_size is not None:
            whole("eval batch size", self.eval_batch_size, 1, 4096)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("scheduler", self.scheduler, SCHEDULERS)
        choice("augmentation preset", self.augment, AUGMENT_PRESETS)
        choice("freeze mode", self.freeze, ("none", "features"))
        for name, value, hi in (("learning rate", self.lr, 10.0), ("weight decay", self.weight_decay, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a number, got {value!r}.")
        if not 0 < self.lr <= 10:
            raise ConfigError(
                f"learning rate must be > 0 and <= 10, got {self.lr:g} (typical: 0.1 for SGD, 0.001 for Adam)."
            )
        if not 0 <= self.weight_decay <= 1:
            raise ConfigError(f"weight decay must be between 0 and 1, got {self.weight_decay:g}.")
        if self.scheduler == "step":
            whole("step size", self.step_size, 1, 1000)
            if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1):
                raise ConfigError(f"gamma (StepLR decay) must be in (0, 1], got {self.gamma!r}.")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative whole number, got {self.seed!r}.")
        if self.num_classes is not None:
            whole("num_classes", self.num_classes, 1, 100_000)
        if self.in_channels is not None:
            whole("in_channels", self.in_channels, 1, 64)
        if self.subset is not None:
            whole("subset", self.subset, 1, 100_000_000)
            if self.num_classes is not None and self.subset < self.num_classes:
                raise ConfigError(
                    f"subset={self.subset} is smaller than the {self.num_classes} classes: "
                    "a stratified subset needs at least one image per class."
                )
        if self.input_size is not None:
            size = (self.input_size,) * 2 if isinstance(self.input_size, int) else tuple(self.input_size)
            if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 1024 for v in size):
                raise ConfigError(f"input size must be one or two whole numbers in 8..1024, got {self.input_size!r}.")
        if self.log_every_steps is not None:
            whole("log_every_steps", self.log_every_steps, 1, 1_000_000)
        if self.max_steps is not None:
            whole("max_steps", self.max_steps, 1, 100_000_000)
        if not isinstance(self.log_interval_s, (int, float)) or self.log_interval_s < 0:
            raise ConfigError(f"log_interval_s must be >= 0, got {self.log_interval_s!r}.")
        if not isinstance(self.device, str):
            raise ConfigError(f"device must be auto, cpu, cuda or mps; got {self.device!r}.")
        from .errors import UnknownModelError
        from .models import get_spec

        try:
            spec = get_spec(self.model)
        except UnknownModelError as e:
            raise ConfigError(str(e)) from e
        if (self.pretrained or self.freeze != "none") and spec.family != "transfer":
            transfer = ", ".join(n for n in _transfer_models())
            raise ConfigError(
                f"pretrained weights and freezing apply to the transfer-learning models ({transfer}); "
                f"{self.model} is trained from scratch. For another prepared model, set requires_grad=False "
                "yourself and pass it to fit(config, model=...)."
            )
        if self.freeze != "none" and not self.pretrained:
            raise ConfigError("freeze='features' keeps pretrained features fixed: it needs pretrained=True.")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config from ``asdict`` output (e.g. a run's ``config.json``); unknown keys are ignored.

        Values are checked against the fields' types (as JSON gives them back: a tuple comes back
        as a list); the first wrong one raises :class:`ConfigError` naming the setting. Ranges are
        :meth:`validate`'s business.
        """
        from collections.abc import Mapping

        if not isinstance(d, Mapping):
            raise ConfigError(f"a training config must be a JSON object of settings, got {type(d).__name__}.")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        checks: dict[str, tuple[Callable[[Any], bool], str]] = {
            "str": (lambda v: isinstance(v, str), "text"),
            "int": (is_int, "a whole number"),
            "float": (lambda v: is_int(v) or isinstance(v, float), "a number"),
            "bool": (lambda v: isinstance(v, bool), "true or false"),
            "None": (lambda v: v is None, "null"),
            "tuple[int, int]": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(map(is_int, v)),
                                "two whole numbers"),
            "dict": (lambda v: isinstance(v, dict), "an object"),
        }
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            value = d[f.name]
            options = [t.strip() for t in str(f.type).split("|")]
            known = [checks["dict"] if t.startswith("dict[") else checks.get(t) for t in options]
            if all(k is not None for k in known) and not any(k[0](value) for k in known if k):
                shown = repr(value)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                wanted = " or ".join(k[1] for k in known if k)
                raise ConfigError(f"setting {f.name!r} should be {wanted}, got {shown}.")
            kw[f.name] = tuple(value) if f.name == "input_size" and isinstance(value, list) else value
        return cls(**kw)


# ======================================================================================
# Events
# ======================================================================================


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


Event = StartEvent | StepEvent | EpochEvent | EndEvent
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


# ======================================================================================
# Preparation helpers
# ======================================================================================


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    s = tuple(int(v) for v in size)
    return s[-2:]  # type: ignore[return-value]


def load_data(config: TrainConfig, download: bool = True) -> Any:
    """The config's dataset through :func:`cnnlab.data.load_dataset` (the split is a pure
    function of the config, so a run's data can be loaded again later)."""
    from .data import load_dataset

    return load_dataset(
        config.dataset, root=config.data_root, seed=config.seed, subset=config.subset,
        val_fraction=config.val_fraction, download=download, **config.data_options,
    )


def prepare_model(
    config: TrainConfig, data_shape: tuple[int, int, int], num_classes: int, model: nn.Module | None = None
) -> tuple[nn.Module, tuple[int, int, int], dict[str, Any]]:
    """The model, the input shape it expects, and the registry arguments that rebuild it.

    Channels: ``config.in_channels``, else the model's own (data is adapted to them).
    Size: ``config.input_size``, else a fixed-input model's size, else the data's size.
    """
    from .errors import ModelConfigError, InputSizeError
    from .models import create, get_spec

    spec = get_spec(config.model)
    if model is None:
        channels = config.in_channels or spec.input_shape[0]
        if config.input_size is not None:
            size = _size2(config.input_size)
        elif spec.family == "transfer":  # ImageNet models: the weights' own 224x224 crops
            size = tuple(spec.input_shape[1:])
        elif spec.fixed_input and not spec.sized_at_creation:
            size = tuple(spec.input_shape[1:])
        else:
            size = tuple(data_shape[1:])
        kwargs: dict[str, Any] = {"num_classes": num_classes, "in_channels": channels, "input_size": list(size)}
        extra: dict[str, Any] = {}
        if spec.family == "transfer":  # only the first build loads ImageNet weights; a rebuild loads best.pt
            extra = {"pretrained": config.pretrained,
                     "mode": "feature_extract" if config.freeze == "features" else "finetune"}
        try:
            model = create(config.model, num_classes=num_classes, in_channels=channels, input_size=size, **extra)
        except (ModelConfigError, InputSizeError) as e:
            raise ConfigError(f"cannot build {config.model} for this data: {e}") from e
    else:
        channels = config.in_channels or first_layer_in_channels(model) or data_shape[0]
        if config.input_size is not None:
            size = _size2(config.input_size)
        elif getattr(model, "cnnlab_input_shape", None) is not None:
            size = tuple(model.cnnlab_input_shape[1:])  # type: ignore[attr-defined]
        elif spec.fixed_input and not spec.sized_at_creation:
            size = tuple(spec.input_shape[1:])
        else:
            size = tuple(data_shape[1:])
        kwargs = {"num_classes": num_classes, "in_channels": channels, "input_size": list(size)}
    shape = (int(channels), int(size[0]), int(size[1]))
    model.cnnlab_input_shape = shape  # type: ignore[attr-defined]
    return model, shape, kwargs


def _check_forward(model: nn.Module, shape: tuple[int, int, int], num_classes: int, name: str,
                   device: torch.device) -> None:
    """A dry run on two blank images: a clear ConfigError instead of an error at step 1."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast_context(device):
            out = model(torch.zeros(2, *shape, device=device))
    except (RuntimeError, CnnlabError) as e:
        raise ConfigError(
            f"{name} cannot process {shape[0]}x{shape[1]}x{shape[2]} inputs: {str(e).strip().rstrip('.')}. "
            "Choose another input size (input_size=...) or the model's _adaptive variant."
        ) from e
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ConfigError(
            f"{name} outputs {tuple(out.shape[1:])} values per image but the dataset has "
            f"{num_classes} classes; create it with num_classes={num_classes}."
        )


def make_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (everything is frozen).")
    wd = config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=wd)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=wd)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   total_steps: int) -> tuple[Any, str]:
    """The LR scheduler and when it steps: ``"epoch"``, ``"step"`` or ``""`` (none)."""
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma), "epoch"
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps)), "step"
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(1, total_steps)), "step"
    return None, ""


def _emit(listeners: Sequence[Listener], event: Any) -> None:
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a broken chart must not stop the training
            log.exception("training event listener %r failed", listener)


def _format_nonfinite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")


# ======================================================================================
# The training loop
# ======================================================================================


def fit(
    config: TrainConfig,
    *,
    model: nn.Module | None = None,
    data: Any = None,
    listeners: Sequence[Listener] = (),
    cancel: threading.Event | None = None,
    save: bool = True,
) -> TrainResult:
    """Train ``config.model`` (or a prepared ``model``) on ``config.dataset`` (or ``data``).

    Args:
        config: the run's settings (validated here).
        model: an already built ``nn.Module`` (e.g. pretrained with a new head); its registry
            name is still ``config.model`` so the run can be rebuilt.
        data: a ``DataBundle`` to use instead of ``load_dataset(config.dataset, ...)``.
        listeners: callables receiving every event.
        cancel: set it (from any thread) to stop within one step.
        save: write a run folder through :mod:`cnnlab.runs`.

    Returns a :class:`TrainResult`; the status is "finished", "cancelled" or "diverged".
    An unexpected error is recorded as "failed" (status file and EndEvent) and re-raised.
    """
    config.validate()
    t_start = time.perf_counter()
    device = pick_device(config.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True

    # ---- data --------------------------------------------------------------------------
    bundle = data if data is not None else load_data(config)
    info = bundle.info
    train_x, train_y = bundle.train.images, bundle.train.labels.long()
    val_x, val_y = bundle.val.images, bundle.val.labels.long()
    num_classes = config.num_classes or len(info.classes)
    if config.subset is not None and config.subset < num_classes:
        raise ConfigError(
            f"subset={config.subset} is smaller than the {num_classes} classes of {info.name}: "
            "a stratified subset needs at least one image per class."
        )
    if data is not None and config.subset is not None and config.subset < len(train_y):
        from .data import stratified_subset  # the one load_dataset(subset=) uses

        sub = stratified_subset(bundle.train, config.subset, seed=config.seed)
        train_x, train_y = sub.images, sub.labels.long()
    if len(train_y) == 0 or len(val_y) == 0:
        raise ConfigError(f"the {info.name} dataset has an empty train or validation split.")
    if int(train_y.max()) >= num_classes or int(val_y.max()) >= num_classes:
        raise ConfigError(f"labels go up to {int(max(train_y.max(), val_y.max()))} but num_classes={num_classes}.")
    data_shape = tuple(int(v) for v in train_x.shape[1:])
    if len(data_shape) != 3:
        raise ConfigError(f"images must be N x C x H x W, got {tuple(train_x.shape)}")

    # ---- model -------------------------------------------------------------------------
    torch.manual_seed(config.seed)
    model_given = model is not None
    model, model_shape, model_kwargs = prepare_model(config, data_shape, num_classes, model)  # type: ignore[arg-type]
    # channels_last: faster convolutions on CUDA and (mkldnn, ~8% for LeNet) on CPU.
    channels_last = device.type in ("cuda", "cpu")
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    _check_forward(model, model_shape, num_classes, config.model, device)
    pipe_args = dict(data_shape=data_shape, model_shape=model_shape, mean=tuple(info.mean),
                     std=tuple(info.std), device=device, channels_last=channels_last)
    train_pipe = InputPipeline(augment=config.augment, **pipe_args)  # type: ignore[arg-type]
    val_pipe = InputPipeline(augment="none", **pipe_args)  # type: ignore[arg-type]
    notes = list(getattr(bundle, "notes", []) or [])
    if data_shape[0] != model_shape[0]:
        how = "repeated" if data_shape[0] == 1 else "converted to greyscale"
        notes.append(f"{data_shape[0]}-channel images {how} for a {model_shape[0]}-channel model.")
    if data_shape[1:] != model_shape[1:]:
        notes.append(f"{data_shape[1]}x{data_shape[2]} images resized to {model_shape[1]}x{model_shape[2]}.")

    # On CUDA keep the uint8 dataset on the GPU when it is small; otherwise pin it.
    if cuda:
        if train_x.numel() < 512 * 2**20:
            train_x, train_y = train_x.to(device), train_y.to(device)
        else:
            train_x, train_y = train_x.pin_memory(), train_y.pin_memory()

    # ---- optimisation ------------------------------------------------------------------
    bs = config.batch_size
    eval_bs = config.eval_batch_size or min(2 * bs, 1024)
    n_train = len(train_y)
    steps_per_epoch = max(1, math.ceil(n_train / bs))
    if n_train % bs == 1 and n_train > 1:
        steps_per_epoch -= 1  # a 1-image last batch breaks batch norm; drop it
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    optimizer = make_optimizer(config, model.parameters())
    scheduler, sched_when = make_scheduler(config, optimizer, steps_per_epoch, total_steps)
    amp_fp16 = cuda and not native_bf16(device)  # fp16 autocast needs loss scaling
    scaler = torch.amp.GradScaler("cuda", enabled=amp_fp16)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    num_params = sum(p.numel() for p in model.parameters())

    # ---- run registry ------------------------------------------------------------------
    writer = None
    if save:
        from . import runs

        meta = {
            "model": config.model, "model_kwargs": model_kwargs, "prepared_model": model_given,
            "dataset": config.dataset, "dataset_name": info.name,
            "display_name": getattr(info, "display_name", info.name), "classes": list(info.classes),
            "input_shape": list(model_shape), "data_shape": list(data_shape),
            "mean": list(info.mean), "std": list(info.std), "num_params": num_params,
            # what the model sees: mean/std in its own channels (grey -> RGB repeats, RGB -> grey
            # uses the luma weights), for pages that prepare images themselves
            "model_mean": list(val_pipe.model_mean), "model_std": list(val_pipe.model_std),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "device": str(device), "torch": torch.__version__, "notes": notes,
            "train_images": n_train, "val_images": len(val_y),
        }
        writer = runs.create_run(asdict(config), meta)
    run_id = writer.run_id if writer else None
    emit = lambda ev: _emit(listeners, ev)  # noqa: E731
    emit(StartEvent(run_id, config.model, config.dataset, str(device), config.epochs, steps_per_epoch,
                    total_steps, n_train, len(val_y), num_params, model_shape, list(info.classes), notes))

    # ---- state -------------------------------------------------------------------------
    status, message = "finished", ""
    history: list[EpochEvent] = []
    best_top1, best_epoch, best_state = -1.0, None, None
    step = 0
    epoch = 0
    train_time = 0.0  # seconds spent in training steps (for images/s)
    images_seen = 0
    last_emit_t, last_emit_step = time.perf_counter(), 0
    k5 = min(5, num_classes)
    zero = lambda dtype: torch.zeros((), device=device, dtype=dtype)  # noqa: E731
    win_loss, win_correct, win_n = zero(torch.float32), zero(torch.int64), 0
    # Checking the loss of step k before its update costs nothing on CPU; on CUDA it would
    # stall the queue, so step k is checked while step k+1's forward is already queued.
    check_lag = FINITE_CHECK_LAG.get(device.type, 0)
    pending_finite: tuple[torch.Tensor, int, int, torch.Tensor] | None = None

    def lr_now() -> float:
        return float(optimizer.param_groups[0]["lr"])

    def diverged_message(bad_step: int, bad_epoch: int, loss_value: float) -> str:
        return (
            f"training diverged: the loss became {_format_nonfinite(loss_value)} at step {bad_step} "
            f"(epoch {bad_epoch}); training stopped there. Try a lower learning rate "
            f"(now {config.lr:g}; e.g. {config.lr / 10:g})"
            + (", the adam optimizer" if config.optimizer != "adam" else "")
            + " or a model with batch normalisation."
        )

    try:
        model.train()
        t_loop = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            ep_loss, ep_c1, ep_c5, ep_n = zero(torch.float64), zero(torch.int64), zero(torch.int64), 0
            perm = torch.randperm(n_train, generator=shuffle_gen)
            if train_x.device != perm.device:
                perm = perm.to(train_x.device)
            t_epoch = time.perf_counter()
            for i in range(steps_per_epoch):
                if cancel is not None and cancel.is_set():
                    status = "cancelled"
                    break
                if config.max_steps is not None and step >= config.max_steps:
                    break
                idx = perm[i * bs:(i + 1) * bs]
                xb, yb = train_x[idx], train_y[idx]
                if cuda and xb.device.type == "cpu":
                    xb, yb = xb.pin_memory(), yb.pin_memory()
                x = train_pipe.train_batch(xb, aug_gen)
                y = yb.to(device, non_blocking=True)
                with autocast_context(device):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
                finite = torch.isfinite(loss.detach())
                if check_lag == 0:
                    if not bool(finite):
                        status, message = "diverged", diverged_message(step + 1, epoch, float(loss.detach()))
                        break
                else:
                    if pending_finite is not None and not bool(pending_finite[0]):
                        bad = pending_finite
                        status, message = "diverged", diverged_message(bad[1], bad[2], float(bad[3]))
                        break
                    pending_finite = (finite, step + 1, epoch, loss.detach())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if sched_when == "step" and step < total_steps - 1:  # never past its end
                    scheduler.step()
                step += 1
                with torch.no_grad():
                    n = int(y.shape[0])
                    top = logits.detach().topk(k5, dim=1).indices
                    c1 = (top[:, 0] == y).sum()
                    c5 = (top == y[:, None]).any(dim=1).sum()
                    win_loss += loss.detach() * n
                    win_correct += c1
                    win_n += n
                    ep_loss += loss.detach().double() * n
                    ep_c1 += c1
                    ep_c5 += c5
                    ep_n += n
                images_seen += n
                now = time.perf_counter()
                due = (step - last_emit_step >= config.log_every_steps) if config.log_every_steps \
                    else (now - last_emit_t >= config.log_interval_s)
                if due or i == steps_per_epoch - 1:
                    if cuda:
                        torch.cuda.synchronize(device)
                        now = time.perf_counter()
                    t_train = train_time + (now - t_epoch)
                    elapsed = now - t_start
                    ips = images_seen / t_train if t_train > 0 else 0.0
                    eta = (now - t_loop) / step * (total_steps - step)
                    wl, wc = float(win_loss) / max(win_n, 1), int(win_correct) / max(win_n, 1)
                    emit(StepEvent(epoch, step, total_steps, wl, wc, lr_now(), ips, elapsed, eta))
                    win_loss.zero_(), win_correct.zero_()
                    win_n = 0
                    last_emit_t, last_emit_step = now, step
            train_time += time.perf_counter() - t_epoch
            if status == "finished" and pending_finite is not None and not bool(pending_finite[0]):
                bad = pending_finite
                status, message = "diverged", diverged_message(bad[1], bad[2], float(bad[3]))
            if status != "finished" or ep_n == 0:
                break

            # ---- validation, best weights, metrics ---------------------------------------
            v = eval_loop(model, val_x, val_y, val_pipe, num_classes, eval_bs, cancel=cancel)
            if v is None:  # cancelled during validation
                status = "cancelled"
                break
            if sched_when == "epoch":
                scheduler.step()
            val_top1 = v["correct1"] / v["count"]
            is_best = val_top1 > best_top1
            if is_best:
                best_top1, best_epoch = val_top1, epoch
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
                if writer:
                    writer.save_best(best_state)
            now = time.perf_counter()
            ev = EpochEvent(
                epoch=epoch, step=step, train_loss=float(ep_loss) / ep_n, train_top1=int(ep_c1) / ep_n,
                train_top5=int(ep_c5) / ep_n, val_loss=v["loss_sum"] / v["count"], val_top1=val_top1,
                val_top5=v["correct5"] / v["count"], lr=lr_now(),
                images_per_sec=images_seen / train_time if train_time > 0 else 0.0,
                elapsed=now - t_start, eta=(now - t_loop) / epoch * (config.epochs - epoch), is_best=is_best,
            )
            history.append(ev)
            if writer:
                writer.append_metrics(asdict(ev))
            emit(ev)
            if config.max_steps is not None and step >= config.max_steps:
                break
    except BaseException as e:
        elapsed = time.perf_counter() - t_start
        if isinstance(e, torch.OutOfMemoryError):
            msg = f"out of memory on {device}: lower the batch size (now {bs}) or the input size."
        elif isinstance(e, KeyboardInterrupt):
            msg = "interrupted (KeyboardInterrupt)."
        else:
            msg = f"training failed at step {step}: {type(e).__name__}: {e}"
        best = best_top1 if best_epoch is not None else None
        if writer:
            writer.set_status("failed", msg, best_val_top1=best, best_epoch=best_epoch, steps=step)
        emit(EndEvent("failed", msg, best, best_epoch, run_id, elapsed, step))
        raise

    # ---- the end -----------------------------------------------------------------------
    if status == "cancelled":
        message = f"cancelled at step {step} (epoch {epoch})."
        if best_state is None and step > 0:
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            if writer:
                writer.save_best(best_state)
            message += " No validation had run yet: best.pt holds the weights at the moment of cancelling."
        elif best_state is not None:
            message += f" Best weights kept from epoch {best_epoch}."
    elif status == "finished":
        message = (f"finished {len(history)} epoch(s), {step} steps; best val top-1 "
                   f"{100 * best_top1:.1f}% at epoch {best_epoch}.")
    if best_state is not None:
        model.load_state_dict(best_state)
    if channels_last:  # hand back the usual layout: same numerics as a model loaded from best.pt
        model.to(memory_format=torch.contiguous_format)
    elapsed = time.perf_counter() - t_start
    best = best_top1 if best_epoch is not None else None
    if writer:
        writer.set_status(status, message, best_val_top1=best, best_epoch=best_epoch, steps=step)
    emit(EndEvent(status, message, best, best_epoch, run_id, elapsed, step))
    return TrainResult(
        status=status, message=message, run_id=run_id, best_val_top1=best, best_epoch=best_epoch,
        history=history, model=model, elapsed=elapsed, steps=step,
        images_per_sec=images_seen / train_time if train_time > 0 else 0.0, device=str(device),
    )
