"""The trainer: a config dataclass, one ``fit`` function, structured events.

Read :func:`fit` top to bottom: the whole training loop is there (nanoGPT style). What it
needs is prepared first by :func:`prepare` (device, tensors, model, input pipelines, notes).

- Data stays as tensors (airbench style): each batch of uint8 images is moved to the device,
  converted to float, augmented as a whole batch, adapted to the model's channels and size,
  and normalised (:mod:`cnnlab.data.pipeline`). No DataLoader, no PIL per sample.
- Loss and accuracy are accumulated on the device (:class:`Meter`); the host syncs only to
  emit an event.
- The loop stops at the first non-finite loss ("diverged"), within one step of a cancel
  request ("cancelled"), and keeps the best-validation weights.
- The trainer knows nothing about who listens: every listener (a callable) receives the same
  dataclass events; ``dataclasses.asdict(event)`` is JSON-serialisable. Listeners that keep
  more than events carry (the run folder of :mod:`cnnlab.runs`, the TensorBoard log of
  :mod:`cnnlab.tensorboard_log`) are :class:`Recorder` subclasses: they also see the prepared
  setup, the best weights and the final model.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import distributed
from .data import DataBundle, TensorSplit, load_dataset, stratified_subset
from .device import autocast_context, native_bf16, pick_device
from .data.pipeline import (
    InputPipeline, default_input_size, eval_loop, first_layer_in_channels, get_preset,
    model_eval_resize, model_space_stats,
)
from .errors import CnnlabError, ConfigError, InputSizeError, InputTooSmallError, ModelConfigError
from .threads import ThreadGovernor, threads_from_env, usable_cores
from .models import create, get_spec, list_models
from .models._input_checks import check_input, smallest_input

# The settings and the events live in their own modules; importing them from here still works.
from .config import FREEZE_MODES, INITS, OPTIMIZERS, SCHEDULERS, VAL_SPLITS, Rule, TrainConfig, setting  # noqa: F401
from .events import EndEvent, EpochEvent, Event, Listener, StartEvent, StepEvent, TrainResult  # noqa: F401

log = logging.getLogger(__name__)

# Steps by which the non-finite-loss check lags behind, per device type (see DivergenceGuard).
FINITE_CHECK_LAG: dict[str, int] = {"cuda": 1}
EXPLODED = 20.0  # a loss this many times the loss of guessing at random means the training diverged


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
    official = config.val_split == "test"
    bundle = load_dataset(
        config.dataset, root=config.data_root, seed=config.seed, subset=None if official else config.subset,
        val_fraction=config.val_fraction, download=download, **config.data_options,
    )
    if official:  # the seeds' way: train on the whole training set, validate on the test split
        if bundle.test is None:
            raise ConfigError(f"{bundle.info.display_name} has no official test split: validate on a hold-out "
                              "(val_split='holdout').")
        train = TensorSplit(torch.cat([bundle.train.images, bundle.val.images]),
                            torch.cat([bundle.train.labels, bundle.val.labels]))
        if config.subset is not None and config.subset < len(train):
            train = stratified_subset(train, config.subset, seed=config.seed)
        bundle = replace(bundle, train=train, val=bundle.test,
                         notes=[*bundle.notes, "validating on the official test split (no hold-out)"])
    return bundle


def load_data_in_turn(config: TrainConfig, device: torch.device | None = None) -> Any:
    """:func:`load_data`; in a process of a torchrun group, in turns (:func:`cnnlab.distributed.load_in_turn`):
    rank 0 downloads and decodes first, the others then find its files and decode cache instead of all
    writing into the same folder at once; a failure in one process stops all of them with its message.
    ``device``: this process's device (a GPU for NCCL's exchanges)."""
    if not distributed.is_active():
        return load_data(config)
    group = distributed.Group.for_exchanges(device if device is not None else pick_device(config.device))
    return distributed.load_in_turn(group, lambda download: load_data(config, download=download),
                                    f"the {config.dataset} dataset")


def init_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialise every convolution and fully connected layer: "kaiming" (He normal, fan-out,
    for ReLU networks: seed 000) or "xavier" (Glorot uniform: seed 004); biases to zero."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def prepare_model(
    config: TrainConfig, data_shape: tuple[int, int, int], num_classes: int, model: nn.Module | None = None
) -> tuple[nn.Module, tuple[int, int, int], dict[str, Any]]:
    """The model, the input shape it expects, and the registry arguments that rebuild it.

    Channels: ``config.in_channels``, else the model's own (data is adapted to them).
    Size: ``config.input_size``, else a fixed-input model's size, else the data's size.
    """
    spec = get_spec(config.model)
    if model is None:
        # the model takes the data's channels (LeNet-5 on CIFAR-10 is the seed's RGB LeNet-5, not a grey
        # one), except models with ImageNet weights, which take RGB (grey images are repeated)
        pretrained = spec.family in ("transfer", "pretrained")
        channels = config.in_channels or (spec.input_shape[0] if pretrained else data_shape[0])
        size = _size2(config.input_size) if config.input_size is not None else default_input_size(spec, data_shape[1:])
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
        else:
            size = default_input_size(spec, data_shape[1:])
        kwargs = {"num_classes": num_classes, "in_channels": channels, "input_size": list(size)}
    shape = (int(channels), int(size[0]), int(size[1]))
    model.cnnlab_input_shape = shape  # type: ignore[attr-defined]
    return model, shape, kwargs


def _check_forward(model: nn.Module, shape: tuple[int, int, int], num_classes: int, name: str,
                   device: torch.device) -> None:
    """A dry run on two blank images: a clear ConfigError instead of an error at step 1 (naming the
    layer an input is too small for, and the smallest size that works)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast_context(device):
            out = model(torch.zeros(2, *shape, device=device))
    except (RuntimeError, CnnlabError) as e:
        _explain_too_small(model, shape, name)
        raise ConfigError(
            f"{name} cannot process {shape[0]}x{shape[1]}x{shape[2]} inputs: {str(e).strip().rstrip('.')}. "
            "Choose another input size (input_size=...)"
            + (f" or the {name}_adaptive variant." if f"{name}_adaptive" in list_models() else ".")
        ) from e
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ConfigError(
            f"{name} outputs {tuple(out.shape[1:])} values per image but the dataset has "
            f"{num_classes} classes; create it with num_classes={num_classes}."
        )


def _explain_too_small(model: nn.Module, shape: tuple[int, int, int], name: str) -> None:
    """If ``shape`` shrinks to nothing inside ``model``, a ConfigError naming the layer and the
    smallest square input that works (checked on a meta-device copy: no memory, no compute)."""
    try:
        check_input(model, shape, name)
    except InputTooSmallError as e:
        side = smallest_input(model, shape[0])
        raise ConfigError(f"{e}" + (f" Train it at input_size={side} or more (a setting of the Train page and "
                                    "--input-size)." if side else "")) from None
    except InputSizeError:
        pass  # a fixed flatten size: the caller's message says which size the model needs


def make_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of ``config`` over the trainable ``params``, fused (one kernel for all the weights)
    where PyTorch supports it on their device: on a CPU, Adam's update of AlexNet's 47 M weights takes
    34 ms fused against 221 ms unfused (the whole step: 162 against 342 ms, batch 16, 2 cores)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (everything is frozen).")
    wd = config.weight_decay
    if config.optimizer in ("sgd", "momentum"):
        momentum = config.momentum if config.optimizer == "momentum" else 0.0
        kind, kwargs = torch.optim.SGD, dict(lr=config.lr, momentum=momentum, weight_decay=wd,
                                             nesterov=config.optimizer == "momentum" and config.nesterov and momentum > 0)
    else:
        kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        kwargs = dict(lr=config.lr, weight_decay=wd)
    try:
        return kind(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # a device or dtype this PyTorch cannot fuse: the usual loop
        return kind(params, **kwargs)


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


# ======================================================================================
# The prepared setup and the recorders
# ======================================================================================


@dataclass
class Prepared:
    """Everything :func:`fit` needs before its first step, built by :func:`prepare`."""

    config: TrainConfig
    device: torch.device
    channels_last: bool
    bundle: DataBundle
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    model: nn.Module
    model_shape: tuple[int, int, int]
    model_kwargs: dict[str, Any]
    model_given: bool
    train_pipe: InputPipeline
    val_pipe: InputPipeline
    notes: list[str]
    run_id: str | None = None  # set by the recorder that writes the run folder
    run_dir: Any = None
    group: Any = None  # the cnnlab.distributed.Group of a data-parallel training (torchrun), else None

    @property
    def classes(self) -> list[str]:
        return list(self.bundle.info.classes)

    def meta(self) -> dict[str, Any]:
        """What a run folder's ``meta.json`` records about this training."""
        info, model = self.bundle.info, self.model
        return {
            "model": self.config.model, "model_kwargs": self.model_kwargs, "prepared_model": self.model_given,
            "dataset": self.config.dataset, "dataset_name": info.name,
            "display_name": getattr(info, "display_name", info.name), "classes": self.classes,
            "input_shape": list(self.model_shape), "data_shape": list(self.train_x.shape[1:]),
            "mean": list(info.mean), "std": list(info.std),
            # what the model sees: the statistics in its own channels, for pages that prepare images
            "model_mean": list(self.val_pipe.model_mean), "model_std": list(self.val_pipe.model_std),
            "num_params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "device": str(self.device), "torch": torch.__version__, "notes": self.notes,
            "train_images": len(self.train_y), "val_images": len(self.val_y),
            # processes that trained the model together (torchrun), each on its share of every batch
            "world_size": self.group.world if self.group is not None else 1,
            **({"backend": self.group.backend} if self.group is not None else {}),
        }

    @torch.no_grad()
    def val_probabilities(self, limit: int = 4096, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax outputs and labels of the model on (at most ``limit`` of) the validation split."""
        model, was_training = self.model, self.model.training
        model.eval()
        probs = []
        try:
            for start in range(0, min(limit, len(self.val_y)), batch_size):
                stop = min(start + batch_size, limit)
                with autocast_context(self.device):
                    logits = model(self.val_pipe.eval_batch(self.val_x[start:stop]))
                probs.append(logits.float().softmax(dim=1).cpu())
        finally:
            model.train(was_training)
        return torch.cat(probs), self.val_y[:limit].cpu()


class Recorder:
    """A listener that keeps more than events carry (a run folder, a TensorBoard log).

    :func:`fit` calls :meth:`begin` with the prepared setup before the first event (a recorder
    that names the run sets ``setup.run_id``), passes every event to ``__call__``, hands the new
    best weights to :meth:`save_best`, and calls :meth:`finish` with the final model (best weights
    loaded) after the end event. Failures inside a recorder are logged, never fatal.
    """

    def begin(self, setup: Prepared) -> None:
        pass

    def __call__(self, event: Any) -> None:
        pass

    def save_best(self, state: Mapping[str, torch.Tensor], epoch: int | None) -> None:
        pass

    def finish(self, setup: Prepared, end: "EndEvent") -> None:
        pass


def _safely(what: str, fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a broken chart or a full disk must not stop the training
        log.exception("training %s %r failed", what, fn)


def prepare(config: TrainConfig, model: nn.Module | None = None, data: DataBundle | None = None,
            initial_state: Mapping[str, torch.Tensor] | None = None, device: str | None = None) -> Prepared:
    """Device, tensors, model and input pipelines for ``config`` (validated first).

    ``initial_state``: the weights ``config.init_from`` names (``cnnlab.runs.load_checkpoint``),
    loaded into every layer whose shape fits. ``device``: instead of ``config.device``."""
    config.validate()
    device = pick_device(device or config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bundle = data if data is not None else load_data_in_turn(config, device)
    info = bundle.info
    train_x, train_y = bundle.train.images, bundle.train.labels.long()
    val_x, val_y = bundle.val.images, bundle.val.labels.long()
    num_classes = config.num_classes or len(info.classes)
    if config.subset is not None and config.subset < num_classes:
        raise ConfigError(f"subset={config.subset} is smaller than the {num_classes} classes of {info.name}: "
                          "a stratified subset needs at least one image per class.")
    if data is not None and config.subset is not None and config.subset < len(train_y):
        sub = stratified_subset(bundle.train, config.subset, seed=config.seed)
        train_x, train_y = sub.images, sub.labels.long()
    if len(train_y) == 0 or len(val_y) == 0:
        raise ConfigError(f"the {info.name} dataset has an empty train or validation split.")
    if int(train_y.max()) >= num_classes or int(val_y.max()) >= num_classes:
        raise ConfigError(f"labels go up to {int(max(train_y.max(), val_y.max()))} but num_classes={num_classes}.")
    data_shape = tuple(int(v) for v in train_x.shape[1:])
    if len(data_shape) != 3:
        raise ConfigError(f"images must be N x C x H x W, got {tuple(train_x.shape)}")

    torch.manual_seed(config.seed)
    model_given = model is not None
    model, model_shape, model_kwargs = prepare_model(config, data_shape, num_classes, model)  # type: ignore[arg-type]
    if config.init != "default":  # validate() refused it with pretrained weights or init_from
        if model_given:
            raise ConfigError(f"init={config.init!r} would overwrite the weights of the model given to fit; "
                              "keep init='default' for a prepared model.")
        init_weights(model, config.init)
    notes = list(getattr(bundle, "notes", []) or [])
    if config.init_from is not None:
        if initial_state is None:
            raise ConfigError(f"init_from={config.init_from!r}: pass the run's weights too, e.g. "
                              "fit(config, initial_state=cnnlab.runs.start_weights(config)).")
        notes.append(_load_fitting(model, initial_state, config.init_from))
    channels_last = device.type in ("cuda", "cpu")  # faster convolutions on CUDA and (mkldnn) on CPU
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    _check_forward(model, model_shape, num_classes, config.model, device)
    mean, std = model_space_stats(train_x, tuple(info.mean), tuple(info.std), model_shape[0])
    model.cnnlab_norm = (mean, std)  # type: ignore[attr-defined]  # what evaluation and prediction use
    pipe = dict(data_shape=data_shape, model_shape=model_shape, mean=mean, std=std, device=device,
                channels_last=channels_last, eval_resize=model_eval_resize(model))
    if data_shape[0] != model_shape[0]:
        how = "repeated" if data_shape[0] == 1 else "converted to greyscale"
        notes.append(f"{data_shape[0]}-channel images {how} for a {model_shape[0]}-channel model.")
    if data_shape[1:] != model_shape[1:]:
        size, target = f"{data_shape[1]}x{data_shape[2]}", f"{model_shape[1]}x{model_shape[2]}"
        notes.append(f"random {target} crops of the {size} images (the centre {target} at validation)."
                     if get_preset(config.augment).eval_cut == "center" else f"{size} images resized to {target}.")
    if device.type == "cuda":  # keep a small uint8 dataset on the GPU; otherwise pin it
        on_gpu = train_x.numel() < 512 * 2**20
        train_x, train_y = (train_x.to(device), train_y.to(device)) if on_gpu else (train_x.pin_memory(), train_y.pin_memory())
    return Prepared(config, device, channels_last, bundle, train_x, train_y, val_x, val_y, num_classes, model,
                    model_shape, model_kwargs, model_given, InputPipeline(augment=config.augment, **pipe),
                    InputPipeline(augment="none", **pipe), notes)


def _load_fitting(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> str:
    """Load every tensor of ``state`` whose name and shape fit ``model``; the note says which."""
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fits:
        raise ConfigError(f"none of the layers of run {source} fits {type(model).__name__}: start from a run of "
                          "the same architecture.")
    model.load_state_dict({**own, **fits})
    fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in fits})
    return (f"started from run {source}: reused {len(fits)} of {len(own)} tensors"
            + (f"; new (fresh) layers: {', '.join(fresh[:6])}" if fresh else "; every layer reused") + ".")


# ======================================================================================
# The loop's three helpers: metering, the finite-loss guard, the best weights
# ======================================================================================


class Meter:
    """Loss and top-1/top-5 counts of a window (for step events) and of the epoch, kept on the
    device; images per second over training time only; ETA.

    With a process ``group`` (data-parallel training) each process counts its own images and the
    counts are summed over the processes whenever an event is made, so every event is about all the
    images of the step or the epoch, each counted once."""

    def __init__(self, device: torch.device, num_classes: int, total_steps: int, config: TrainConfig,
                 group: Any = None):
        self.device, self.k, self.total_steps, self.config = device, min(5, num_classes), total_steps, config
        self.group = group
        self.t_start = self.t_loop = time.perf_counter()
        self.train_time, self.images = 0.0, 0
        self.other_images = 0  # images the other processes trained on (known at each step event)
        self.last_t, self.last_step = self.t_start, 0
        self.window = self._zeros()
        self.epoch = self._zeros()
        self.history: list[EpochEvent] = []

    def _zeros(self) -> list[torch.Tensor]:  # loss sum, top-1 hits, top-5 hits, images
        return [torch.zeros((), device=self.device, dtype=d) for d in (torch.float64, torch.int64, torch.int64, torch.int64)]

    def start_epoch(self) -> None:
        self.epoch, self.t_epoch = self._zeros(), time.perf_counter()

    def end_epoch(self) -> None:
        self.train_time += time.perf_counter() - self.t_epoch

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = int(y.shape[0])
        top = logits.topk(self.k, dim=1).indices
        values = (loss.double() * n, (top[:, 0] == y).sum(), (top == y[:, None]).any(dim=1).sum())
        for acc in (self.window, self.epoch):
            for total, v in zip(acc, values):
                total += v
            acc[3] += n
        self.images += n

    def due(self, step: int) -> bool:
        if self.config.log_every_steps:
            return step - self.last_step >= self.config.log_every_steps
        return time.perf_counter() - self.last_t >= self.config.log_interval_s

    def images_per_sec(self, now: float | None = None) -> float:
        t = self.train_time + ((now - self.t_epoch) if now is not None else 0.0)
        return (self.images + self.other_images) / t if t > 0 else 0.0

    def _summed(self, acc: list[torch.Tensor]) -> list[float]:
        """The four counters of ``acc``, summed over the processes of the group (if any)."""
        values = torch.stack([v.double() for v in acc])
        if self.group is not None:
            values = self.group.sum(values)
        return [float(v) for v in values.cpu()]

    def step_event(self, epoch: int, step: int, lr: float) -> "StepEvent":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        own = int(self.window[3])
        loss, c1, _, n = self._summed(self.window)
        self.other_images += int(n) - own
        now = time.perf_counter()
        eta = (now - self.t_loop) / step * (self.total_steps - step)
        self.window, self.last_t, self.last_step = self._zeros(), now, step
        return StepEvent(epoch, step, self.total_steps, loss / max(n, 1), c1 / max(n, 1), float(lr),
                         self.images_per_sec(now), now - self.t_start, eta)

    def reduce_epoch(self) -> int:
        """At the end of an epoch: the epoch's counters summed over the processes; the images trained on."""
        self.epoch_totals = self._summed(self.epoch)
        return int(self.epoch_totals[3])

    def epoch_event(self, epoch: int, step: int, val: dict[str, Any], lr: float, is_best: bool) -> "EpochEvent":
        loss, c1, c5, n = self.epoch_totals
        now = time.perf_counter()
        count = float(val["count"])
        event = EpochEvent(
            epoch=epoch, step=step, train_loss=loss / n, train_top1=c1 / n, train_top5=c5 / n,
            val_loss=float(val["loss_sum"]) / count, val_top1=float(val["correct1"]) / count,
            val_top5=float(val["correct5"]) / count, lr=float(lr), images_per_sec=self.images_per_sec(),
            elapsed=now - self.t_start, eta=(now - self.t_loop) / epoch * (self.config.epochs - epoch), is_best=is_best,
            train_images=int(n), train_seconds=self.train_time,
        )
        self.history.append(event)
        return event


# The first epoch's mean loss includes the start, which can be well above guessing and then fall: MiniAlexNet
# V4 with Adam at 1e-3, 2.1-2.6 against 1.39 for 4 classes; a pretrained network with a fresh head on features
# of large magnitude, 5-6 against 1.10 for 3 classes. After one epoch only a mean loss this many times worse
# than guessing counts as stuck (a window of steps above EXPLODED times guessing is caught at once anyway).
FIRST_EPOCH_WORSE = EXPLODED / 2


class DivergenceGuard:
    """Decides that a training diverged, three ways, each with a message saying what happened and
    what to try:

    - a loss that is not finite (checked every step; on CUDA step k's loss is read while step k+1
      is already queued, ``lag`` 1, since reading it at once would stall the GPU's queue);
    - a loss that explodes: a window's mean above :data:`EXPLODED` times the loss of guessing at
      random, ln(classes) (LeNet at learning rate 10 with SGD: 150 against 2.3);
    - stuck at chance: after an epoch, validation top-1 no better than guessing and a training
      loss worse than guessing, rising.
    """

    def __init__(self, device: torch.device, config: TrainConfig, num_classes: int):
        self.lag, self.config, self.classes = FINITE_CHECK_LAG.get(device.type, 0), config, num_classes
        self.chance_loss = math.log(max(num_classes, 2))
        self.pending: list[tuple[torch.Tensor, int, int]] = []
        self.last_train_loss: float | None = None

    def push(self, loss: torch.Tensor, step: int, epoch: int) -> str | None:
        """Queue this step's loss; the diverged message if a checked loss is not finite."""
        self.pending.append((loss, step, epoch))
        return self._check(len(self.pending) - self.lag)

    def flush(self) -> str | None:
        return self._check(len(self.pending))

    def _check(self, count: int) -> str | None:
        for loss, step, epoch in self.pending[:max(count, 0)]:
            if not bool(torch.isfinite(loss)):
                return self.not_finite(step, epoch, float(loss))
        del self.pending[:max(count, 0)]
        return None

    def not_finite(self, step: int, epoch: int, value: float | None = None) -> str:
        """The message for a loss that became NaN or infinite (``value`` None: in another process)."""
        shown = ("NaN or infinite in one of the processes" if value is None else
                 "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf"))
        return self._message(f"the loss became {shown} at step {step} (epoch {epoch})")

    def window(self, event: "StepEvent") -> str | None:
        """After a step event (already on the host): has the loss exploded?"""
        if math.isfinite(event.loss) and event.loss > EXPLODED * self.chance_loss:
            return self._message(
                f"the loss rose to {event.loss:.4g} by step {event.step} (epoch {event.epoch}), "
                f"{event.loss / self.chance_loss:.3g} times the {self.chance_loss:.2f} of guessing at random")
        return None

    def epoch(self, event: "EpochEvent") -> str | None:
        """After an epoch's validation: stuck at chance with a loss worse than guessing, and rising?"""
        rising = self.last_train_loss is not None and event.train_loss > self.last_train_loss
        self.last_train_loss = event.train_loss
        if (event.val_top1 <= 1.2 / self.classes and event.train_loss > 1.5 * self.chance_loss
                and (rising or (event.epoch == 1 and event.train_loss > FIRST_EPOCH_WORSE * self.chance_loss))):
            return self._message(
                f"after epoch {event.epoch} the validation accuracy is {event.val_top1:.1%}, no better than "
                f"guessing among {self.classes} classes, and the training loss ({event.train_loss:.3g}) is worse "
                f"than guessing ({self.chance_loss:.2f})" + (" and rising" if rising else ""))
        return None

    def _message(self, what: str) -> str:
        c = self.config
        return (f"diverged: {what}; training stopped there. Try a lower learning rate (now {c.lr:g}; e.g. "
                f"{c.lr / 10:g})" + (", the adam optimizer" if c.optimizer != "adam" else "")
                + " or a model with batch normalisation.")


@dataclass
class Best:
    """The best validation top-1 so far and a copy of the weights that reached it."""

    top1: float | None = None
    epoch: int | None = None
    state: dict[str, torch.Tensor] | None = None

    def offer(self, top1: float, epoch: int, model: nn.Module) -> bool:
        if self.top1 is not None and top1 <= self.top1:
            return False
        self.top1, self.epoch = top1, epoch
        self.state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        return True


# ======================================================================================
# The training loop
# ======================================================================================


def fit(
    config: TrainConfig,
    *,
    model: nn.Module | None = None,
    data: DataBundle | None = None,
    listeners: Sequence[Listener] = (),
    cancel: threading.Event | None = None,
    initial_state: Mapping[str, torch.Tensor] | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train ``config.model`` (or a prepared ``model``) on ``config.dataset`` (or ``data``).

    ``listeners`` receive every event; pass ``cnnlab.runs.RunRecorder()`` to save the run folder
    and ``cnnlab.tensorboard_log.TensorBoardRecorder()`` for TensorBoard. Set ``cancel`` (from any
    thread) to stop within one step. ``initial_state``: the weights ``config.init_from`` names.
    ``device``: where to train instead of ``config.device`` (the job manager's choice of GPU). Returns a
    :class:`TrainResult` ("finished", "cancelled" or "diverged"); an unexpected error is reported as
    "failed" to the listeners and re-raised.

    Data-parallel: when a process group of several processes is initialised (``torchrun``; see
    :mod:`cnnlab.distributed`), every process calls ``fit`` with the same config and they train one
    model together with DistributedDataParallel, ``config.batch_size`` images per step in all (the
    global batch: the same steps, and the same accuracy, as one process with that batch). Only rank 0's
    recorders run (one run folder, its ``meta.json`` records the world size); the other listeners get
    the same events, with the numbers summed over all the processes, in every process.
    """
    s = prepare(config, model, data, initial_state, device=device)
    s.group = group = distributed.Group.current(s.device)
    # threads from the free cores, adapted as it runs, unless the config or CNNLAB_THREADS fixes them; the
    # processes of a torchrun group on one machine share its cores: a fixed share each, never oversubscribed
    forced, why = config.threads or threads_from_env(), ""
    if group is not None and forced is None and s.device.type == "cpu":
        cores, here = usable_cores(), distributed.local_world_size()
        forced = distributed.threads_per_process(cores, here)
        why = f"this process's share of the {cores} cores used by {here} processes of the torchrun group"
    governor = ThreadGovernor(forced, s.device.type, why=why)
    governor.start()
    if note := governor.note():
        s.notes.append(note)
    try:
        return _train(s, listeners, cancel, governor)
    finally:
        governor.stop()  # the process's previous thread count back


def _data_parallel(s: Prepared, group: distributed.Group) -> tuple[nn.Module, Callable[[], None]]:
    """The model wrapped for data-parallel training, and what undoes the batch-norm conversion."""
    config, device, world = s.config, s.device, group.world
    if group.backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"the process group uses NCCL, which works on GPUs only, but this training runs on "
                          f"{device}: train on the GPU (device auto or cuda), or start the group with gloo.")
    if config.batch_size < world:
        raise ConfigError(f"batch size {config.batch_size} is the batch of all {world} processes together: use at "
                          f"least {world} (e.g. {64 * world} for 64 images per process).")
    if not any(p.requires_grad for p in s.model.parameters()):
        raise ConfigError("the model has no trainable parameters (everything is frozen).")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # this thread's current GPU: NCCL's object collectives use it
    restore: Callable[[], None] = lambda: None  # noqa: E731
    if config.sync_bn:
        if device.type != "cuda":
            raise ConfigError("sync_bn synchronises batch norm across GPUs; PyTorch's SyncBatchNorm does not run "
                              "on CPUs: train without --sync-bn here (each process normalises its own share).")
        restore = distributed.convert_sync_batchnorm(s.model)
    per = math.ceil(config.batch_size / world)
    s.notes.append(f"data-parallel on {world} processes ({group.backend}): every step's batch of "
                   f"{config.batch_size} images is shared by them (about {per} each); validation is shared too, "
                   "and every number is summed over all of them"
                   + ("; batch norm synchronised (SyncBatchNorm)." if config.sync_bn else "."))
    try:
        return group.wrap(s.model), restore
    except BaseException:
        restore()
        raise


def _train(s: Prepared, listeners: Sequence[Listener], cancel: threading.Event | None,
           governor: ThreadGovernor) -> TrainResult:
    """:func:`fit`'s loop, on a prepared setup (data-parallel when ``s.group`` is set)."""
    config, group = s.config, s.group
    world = group.world if group is not None else 1
    n_train, bs = len(s.train_y), config.batch_size
    # a 1-image last batch breaks batch norm: dropped (with several processes: fewer than 2 images each)
    steps_per_epoch = distributed.steps_per_epoch(n_train, bs, world)
    total_steps = min(steps_per_epoch * config.epochs, config.max_steps or math.inf)
    net, restore_bn = (s.model, lambda: None) if group is None else _data_parallel(s, group)
    if group is None and config.sync_bn:
        s.notes.append("sync_bn has no effect in a single process (it synchronises the processes of torchrun).")
    try:
        return _loop(s, net, listeners, cancel, governor, steps_per_epoch, total_steps)
    finally:
        restore_bn()


def _loop(s: Prepared, net: nn.Module, listeners: Sequence[Listener], cancel: threading.Event | None,
          governor: ThreadGovernor, steps_per_epoch: int, total_steps: int) -> TrainResult:
    config, group = s.config, s.group
    model, device, bs = s.model, s.device, config.batch_size
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    n_train = len(s.train_y)
    optimizer = make_optimizer(config, model.parameters())
    scheduler, sched_when = make_scheduler(config, optimizer, steps_per_epoch, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not native_bf16(device))
    shuffle_gen = torch.Generator().manual_seed(config.seed)  # the same permutation in every process
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1 + rank)
    if rank:  # other dropout masks than rank 0's (DDP gave every process rank 0's weights)
        torch.manual_seed(config.seed + 1 + rank)
    # one run folder: rank 0 records; the other processes' listeners get the same (summed) events
    listeners = [x for x in listeners if rank == 0 or not isinstance(x, Recorder)]
    recorders = [r for r in listeners if isinstance(r, Recorder)]
    for r in recorders:
        r.begin(s)
    if group is not None:
        s.run_id = group.broadcast(s.run_id)
    val_x, val_y = (s.val_x, s.val_y) if group is None else (s.val_x[rank::world], s.val_y[rank::world])

    def emit(event: Any) -> None:
        for listener in listeners:
            _safely("listener", listener, event)

    emit(StartEvent(s.run_id, config.model, config.dataset, str(device), config.epochs, steps_per_epoch,
                    total_steps, n_train, len(s.val_y), sum(p.numel() for p in model.parameters()),
                    s.model_shape, s.classes, s.notes))
    meter = Meter(device, s.num_classes, total_steps, config, group)
    guard, best = DivergenceGuard(device, config, s.num_classes), Best()
    agreement = distributed.StepAgreement(group, guard.lag) if group is not None else None
    status, message, step, epoch = "finished", "", 0, 0

    def stop_for(agreed: distributed.Agreed | None) -> tuple[str, str] | None:
        if agreed is None:
            return None
        if agreed.cancel:
            return "cancelled", ""
        if agreed.not_finite:
            return "diverged", guard.not_finite(agreed.step, agreed.epoch)
        return None

    try:
        for epoch in range(1, config.epochs + 1):
            net.train()
            meter.start_epoch()
            perm = torch.randperm(n_train, generator=shuffle_gen).to(s.train_x.device)
            for i in range(steps_per_epoch):
                if agreement is None and cancel is not None and cancel.is_set():
                    status = "cancelled"
                    break
                if step >= total_steps:
                    break
                idx = perm[i * bs:(i + 1) * bs]
                batch = len(idx)  # the whole step's batch (all processes)
                if group is not None:
                    idx = distributed.shard_of_batch(idx, rank, world)
                xb, yb = s.train_x[idx], s.train_y[idx]
                if device.type == "cuda" and xb.device.type == "cpu":
                    xb, yb = xb.pin_memory(), yb.pin_memory()
                x, y = s.train_pipe.train_batch(xb, aug_gen), yb.to(device, non_blocking=True)
                with autocast_context(device):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), y)
                due, weighted = False, loss
                if agreement is None:
                    if (bad := guard.push(loss.detach(), step + 1, epoch)) is not None:
                        status, message = "diverged", bad
                        break
                else:  # all processes stop at the same step, before a backward the others would wait for
                    agreed = agreement.push(loss, cancel is not None and cancel.is_set(), meter.due(step + 1),
                                            step + 1, epoch)
                    if (stop := stop_for(agreed)) is not None:
                        status, message = stop
                        break
                    due = agreed is not None and agreed.due
                    # DDP averages the processes' gradients: weighted so that the average is the gradient
                    # of the mean loss over the whole batch, as one process computes it
                    weighted = loss * (len(y) * world / batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(weighted).backward()
                scaler.step(optimizer)
                scaler.update()
                if sched_when == "step" and step < total_steps - 1:  # never past its end
                    scheduler.step()
                step += 1
                meter.add(loss.detach(), logits.detach(), y)
                governor.tick()
                distributed.failure_for_tests(group, step)
                if (meter.due(step) if agreement is None else due) or i == steps_per_epoch - 1:
                    emit(event := meter.step_event(epoch, step, optimizer.param_groups[0]["lr"]))
                    if agreement is not None:  # the flags computed before this event are stale now
                        agreement.reported(step)
                    if (bad := guard.window(event)) is not None:
                        status, message = "diverged", bad
                        break
            meter.end_epoch()
            if status == "finished":
                if agreement is None:
                    if (bad := guard.flush()) is not None:
                        status, message = "diverged", bad
                else:
                    for agreed in agreement.flush():
                        if (stop := stop_for(agreed)) is not None:
                            status, message = stop
                            break
            if agreement is not None:
                agreement.clear()
            if status != "finished" or meter.reduce_epoch() == 0:
                break

            # ---- validation, best weights, metrics ---------------------------------------
            # with several processes each validates its share; the counts are summed (the same in all)
            v = eval_loop(model, val_x, val_y, s.val_pipe, s.num_classes,
                          config.eval_batch_size or min(2 * bs, 1024), cancel=cancel if group is None else None)
            if v is None:  # cancelled during validation
                status = "cancelled"
                break
            if group is not None:
                keys = ("loss_sum", "correct1", "correct5", "count")
                summed = group.sum(torch.stack([torch.as_tensor(v[k], dtype=torch.float64).cpu() for k in keys]),
                                   "summing the validation")
                v = {**v, **dict(zip(keys, summed))}
            if sched_when == "epoch":
                scheduler.step()
            if is_best := best.offer(float(v["correct1"]) / float(v["count"]), epoch, model):
                for r in recorders:
                    _safely("recorder", r.save_best, best.state, epoch)
            emit(event := meter.epoch_event(epoch, step, v, optimizer.param_groups[0]["lr"], is_best))
            if (bad := guard.epoch(event)) is not None:
                status, message = "diverged", bad
                break
            if step >= total_steps:
                break
    except BaseException as error:
        e: BaseException = error
        if group is not None and not isinstance(e, (CnnlabError, KeyboardInterrupt, torch.OutOfMemoryError)) \
                and distributed.from_collective(e):  # e.g. DDP's gradient exchange in backward, when a peer died
            e = group.peer_lost(f"the exchange of gradients at step {step + 1}", e)
        msg = (f"out of memory on {device}: lower the batch size (now {bs}) or the input size."
               if isinstance(e, torch.OutOfMemoryError) else str(e)
               if isinstance(e, (distributed.PeerLostError, distributed.GroupStopped)) else "interrupted (KeyboardInterrupt)."
               if isinstance(e, KeyboardInterrupt) else f"training failed at step {step}: {type(e).__name__}: {e}")
        _finish(s, recorders, emit, EndEvent("failed", msg, best.top1, best.epoch, s.run_id,
                                            time.perf_counter() - meter.t_start, step))
        if e is not error:
            raise e from error
        raise

    # ---- the end -----------------------------------------------------------------------
    if status == "cancelled":
        message = f"cancelled at step {step} (epoch {epoch})."
        if best.state is None and step > 0:
            best.state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            for r in recorders:
                _safely("recorder", r.save_best, best.state, None)
            message += " No validation had run yet: best.pt holds the weights at the moment of cancelling."
        elif best.state is not None:
            message += f" Best weights kept from epoch {best.epoch}."
    elif status == "finished":
        message = (f"finished {len(meter.history)} epoch(s), {step} steps; best val top-1 "
                   f"{100 * (best.top1 or 0):.1f}% at epoch {best.epoch}.")
    if best.state is not None:
        model.load_state_dict(best.state)
    if s.channels_last:  # hand back the usual layout: same numerics as a model loaded from best.pt
        model.to(memory_format=torch.contiguous_format)
    end = EndEvent(status, message, best.top1, best.epoch, s.run_id, time.perf_counter() - meter.t_start, step)
    _finish(s, recorders, emit, end)
    if group is not None:  # nobody goes on (e.g. to a lesson's next arm) before the run folder is complete
        group.barrier()
    return TrainResult(status, message, s.run_id, best.top1, best.epoch, meter.history, model, end.elapsed,
                       step, meter.images_per_sec(), str(device),
                       governor.threads if device.type == "cpu" else None)


def _finish(s: Prepared, recorders: Sequence[Recorder], emit: Callable[[Any], Any], end: "EndEvent") -> None:
    emit(end)
    for r in recorders:
        _safely("recorder", r.finish, s, end)
