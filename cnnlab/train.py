"""The trainer: :func:`prepare` builds what a training needs, :func:`fit` runs it, listeners hear it.

Read :func:`fit`, then :class:`Training` top to bottom (``run`` -> ``train_epoch`` -> ``step_on`` ->
``validate``): the whole training loop is there (nanoGPT style). One process is a group of one
(:class:`cnnlab.distributed.Alone`): the same loop trains data-parallel under torchrun.

- The settings are :class:`cnnlab.config.TrainConfig`; the events :mod:`cnnlab.events`; the loop's
  helpers (:class:`~cnnlab.metering.Meter`, :class:`~cnnlab.metering.DivergenceGuard`,
  :class:`~cnnlab.metering.Best`) :mod:`cnnlab.metering`. All are importable from here too.
- Data stays as tensors (airbench style): each batch of uint8 images is moved to the device,
  converted to float, augmented as a whole batch, adapted to the model's channels and size,
  and normalised (:mod:`cnnlab.data.pipeline`). No DataLoader, no PIL per sample.
- Loss and accuracy are accumulated on the device; the host syncs only to emit an event.
- Every stop is one exception caught in one place: a cancel request (within one step), a loss
  that is not finite or has exploded ("diverged"). The best-validation weights are kept.
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
from .device import autocast_context, native_bf16
from .data.pipeline import (
    InputPipeline, default_input_size, eval_loop, first_layer_in_channels, get_preset,
    model_eval_resize, model_space_stats,
)
from .errors import CnnlabError, ConfigError, InputSizeError, InputTooSmallError, ModelConfigError
from .i18n import _, fmt
from .threads import ThreadGovernor, threads_from_env, usable_cores
from .xray import Xray
from .models import count_params, create, evaluating, get_spec, list_models
from .models._input_checks import check_input, smallest_input

# The settings and the events live in their own modules; importing them from here still works.
from .config import FREEZE_MODES, INITS, OPTIMIZERS, SCHEDULERS, VAL_SPLITS, Rule, TrainConfig, setting  # noqa: F401
from .config import check_subset
from .events import EndEvent, EpochEvent, Event, Listener, StartEvent, StepEvent, TrainResult  # noqa: F401
from .metering import EXPLODED, FIRST_EPOCH_WORSE, Best, DivergenceGuard, Meter  # noqa: F401

log = logging.getLogger(__name__)

# Steps by which the non-finite-loss check lags behind, per device type (see DivergenceGuard).
FINITE_CHECK_LAG: dict[str, int] = {"cuda": 1}


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
            raise ConfigError(_("{dataset} has no official test split: validate on a hold-out "
                                "(val_split='holdout').").format(dataset=bundle.info.display_name))
        train = TensorSplit(torch.cat([bundle.train.images, bundle.val.images]),
                            torch.cat([bundle.train.labels, bundle.val.labels]))
        if config.subset is not None and config.subset < len(train):
            train = stratified_subset(train, config.subset, seed=config.seed)
        bundle = replace(bundle, train=train, val=bundle.test,
                         notes=[*bundle.notes, _("validating on the official test split (no hold-out)")])
    return bundle


def load_data_in_turn(config: TrainConfig, device: torch.device | None = None) -> Any:
    """:func:`load_data`; in a process of a torchrun group, in turns (:func:`cnnlab.distributed.load_in_turn`):
    rank 0 downloads and decodes first, the others then find its files and decode cache instead of all
    writing into the same folder at once; a failure in one process stops all of them with its message.
    ``device``: this process's device (a GPU for NCCL's exchanges)."""
    if not distributed.is_active():
        return load_data(config)
    group = distributed.Group.for_exchanges(device if device is not None else distributed.pick_device(config.device))
    return distributed.load_in_turn(group, lambda download: load_data(config, download=download),
                                    _("the {dataset} dataset").format(dataset=config.dataset))


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
            raise ConfigError(_("cannot build {model} for this data: {error}").format(model=config.model, error=e)) from e
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
    try:
        with evaluating(model), torch.no_grad(), autocast_context(device):
            out = model(torch.zeros(2, *shape, device=device))
    except (RuntimeError, CnnlabError) as e:
        _explain_too_small(model, shape, name)
        text = _("{model} cannot process {shape} inputs: {error}. Choose another input size (input_size=...) or "
                 "the {model}_adaptive variant.") if f"{name}_adaptive" in list_models() else \
            _("{model} cannot process {shape} inputs: {error}. Choose another input size (input_size=...).")
        raise ConfigError(text.format(model=name, shape=f"{shape[0]}x{shape[1]}x{shape[2]}",
                                      error=str(e).strip().rstrip("."))) from e
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ConfigError(
            _("{model} outputs {shape} values per image but the dataset has {classes} classes; create it with "
              "num_classes={classes}.").format(model=name, shape=tuple(out.shape[1:]), classes=num_classes)
        )


def _explain_too_small(model: nn.Module, shape: tuple[int, int, int], name: str) -> None:
    """If ``shape`` shrinks to nothing inside ``model``, a ConfigError naming the layer and the
    smallest square input that works (checked on a meta-device copy: no memory, no compute)."""
    try:
        check_input(model, shape, name)
    except InputTooSmallError as e:
        side = smallest_input(model, shape[0])
        raise ConfigError(_("{error} Train it at input_size={side} or more (a setting of the Train page and "
                            "--input-size).").format(error=e, side=side) if side else str(e)) from None
    except InputSizeError:
        pass  # a fixed flatten size: the caller's message says which size the model needs


def make_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of ``config`` over the trainable ``params``, fused (one kernel for all the weights)
    where PyTorch supports it on their device: on a CPU, Adam's update of AlexNet's 47 M weights takes
    34 ms fused against 221 ms unfused (the whole step: 162 against 342 ms, batch 16, 2 cores)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError(_("the model has no trainable parameters (everything is frozen)."))
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

    @torch.no_grad()
    def val_probabilities(self, limit: int = 4096, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax outputs and labels of the model on (at most ``limit`` of) the validation split."""
        probs = []
        with evaluating(self.model):
            for start in range(0, min(limit, len(self.val_y)), batch_size):
                stop = min(start + batch_size, limit)
                with autocast_context(self.device):
                    logits = self.model(self.val_pipe.eval_batch(self.val_x[start:stop]))
                probs.append(logits.float().softmax(dim=1).cpu())
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
    device = distributed.pick_device(device or config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bundle = data if data is not None else load_data_in_turn(config, device)
    info = bundle.info
    train_x, train_y = bundle.train.images, bundle.train.labels.long()
    val_x, val_y = bundle.val.images, bundle.val.labels.long()
    num_classes = config.num_classes or len(info.classes)
    check_subset(config.subset, num_classes, info.name)
    if data is not None and config.subset is not None and config.subset < len(train_y):
        sub = stratified_subset(bundle.train, config.subset, seed=config.seed)
        train_x, train_y = sub.images, sub.labels.long()
    if len(train_y) == 0 or len(val_y) == 0:
        raise ConfigError(_("the {dataset} dataset has an empty train or validation split.").format(dataset=info.name))
    if int(train_y.max()) >= num_classes or int(val_y.max()) >= num_classes:
        raise ConfigError(_("labels go up to {label} but num_classes={classes}.").format(
            label=int(max(train_y.max(), val_y.max())), classes=num_classes))
    data_shape = tuple(int(v) for v in train_x.shape[1:])
    if len(data_shape) != 3:
        raise ConfigError(_("images must be N x C x H x W, got {shape}").format(shape=tuple(train_x.shape)))

    torch.manual_seed(config.seed)
    model_given = model is not None
    model, model_shape, model_kwargs = prepare_model(config, data_shape, num_classes, model)  # type: ignore[arg-type]
    if config.init != "default":  # validate() refused it with pretrained weights or init_from
        if model_given:
            raise ConfigError(_("init={init!r} would overwrite the weights of the model given to fit; keep "
                                "init='default' for a prepared model.").format(init=config.init))
        init_weights(model, config.init)
    notes = list(getattr(bundle, "notes", []) or [])
    if config.init_from is not None:
        if initial_state is None:
            raise ConfigError(_("init_from={run!r}: pass the run's weights too, e.g. "
                                "fit(config, initial_state=cnnlab.runs.start_weights(config)).").format(
                run=config.init_from))
        notes.append(_load_fitting(model, initial_state, config.init_from))
    channels_last = device.type in ("cuda", "cpu")  # faster convolutions on CUDA and (mkldnn) on CPU
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    _check_forward(model, model_shape, num_classes, config.model, device)
    mean, std = model_space_stats(train_x, tuple(info.mean), tuple(info.std), model_shape[0])
    model.cnnlab_norm = (mean, std)  # type: ignore[attr-defined]  # what evaluation and prediction use
    pipe = dict(data_shape=data_shape, model_shape=model_shape, mean=mean, std=std, device=device,
                channels_last=channels_last, eval_resize=model_eval_resize(model))
    if data_shape[0] != model_shape[0]:
        text = _("{channels}-channel images repeated for a {model}-channel model.") if data_shape[0] == 1 else \
            _("{channels}-channel images converted to greyscale for a {model}-channel model.")
        notes.append(text.format(channels=data_shape[0], model=model_shape[0]))
    if data_shape[1:] != model_shape[1:]:
        size, target = f"{data_shape[1]}x{data_shape[2]}", f"{model_shape[1]}x{model_shape[2]}"
        text = _("random {target} crops of the {size} images (the centre {target} at validation).") \
            if get_preset(config.augment).eval_cut == "center" else _("{size} images resized to {target}.")
        notes.append(text.format(size=size, target=target))
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
        raise ConfigError(_("none of the layers of run {run} fits {model}: start from a run of the same "
                            "architecture.").format(run=source, model=type(model).__name__))
    model.load_state_dict({**own, **fits})
    fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in fits})
    text = _("started from run {run}: reused {reused} of {total} tensors; new (fresh) layers: {layers}.") if fresh \
        else _("started from run {run}: reused {reused} of {total} tensors; every layer reused.")
    return text.format(run=source, reused=len(fits), total=len(own), layers=", ".join(fresh[:6]))


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
    the same events, with the numbers summed over all the processes, in every process. One process
    is a group of one: the same loop, whose sums and agreements have nothing to exchange.
    """
    s = prepare(config, model, data, initial_state, device=device)
    s.group = distributed.Group.current(s.device)
    governor = _thread_governor(s)
    governor.start()
    if note := governor.note():
        s.notes.append(note)
    try:
        return Training(s, listeners, cancel, governor).run()
    finally:
        governor.stop()  # the process's previous thread count back


def _thread_governor(s: Prepared) -> ThreadGovernor:
    """Threads from the free cores, adapted as it runs, unless the config or CNNLAB_THREADS fixes them;
    the processes of a torchrun group on one machine share its cores: a fixed share each."""
    forced, why = s.config.threads or threads_from_env(), ""
    if s.group is not None and forced is None and s.device.type == "cpu":
        cores, here = usable_cores(), distributed.local_world_size()
        forced = distributed.threads_per_process(cores, here)
        why = _("this process's share of the {cores} cores used by {processes} processes of the torchrun "
                "group").format(cores=cores, processes=here)
    return ThreadGovernor(forced, s.device.type, why=why)


class _Stop(Exception):
    """Ends the loop early: ``status`` "cancelled" or "diverged", with the message saying why."""

    def __init__(self, status: str, message: str = ""):
        super().__init__(message)
        self.status, self.message = status, message


class Training:
    """One training loop over a prepared setup. Read :meth:`run`, then :meth:`train_epoch`,
    :meth:`step` and :meth:`validate`: every stop (cancel, a non-finite or exploded loss) raises
    :class:`_Stop`, caught in :meth:`run` only."""

    def __init__(self, s: Prepared, listeners: Sequence[Listener], cancel: threading.Event | None,
                 governor: ThreadGovernor):
        self.s, self.config, self.device, self.cancel, self.governor = s, s.config, s.device, cancel, governor
        self.group = g = s.group or distributed.Alone(s.device)
        self.steps_per_epoch = distributed.steps_per_epoch(len(s.train_y), self.config.batch_size, g.world)
        self.total_steps = min(self.steps_per_epoch * self.config.epochs, self.config.max_steps or math.inf)
        # one run folder: rank 0 records; the other processes' listeners get the same (summed) events
        self.listeners = [x for x in listeners if g.rank == 0 or not isinstance(x, Recorder)]
        self.recorders = [r for r in self.listeners if isinstance(r, Recorder)]
        self.val_x, self.val_y = s.val_x[g.rank::g.world], s.val_y[g.rank::g.world]  # each validates its share
        self.meter = Meter(s.device, s.num_classes, self.total_steps, self.config, g)
        self.guard, self.best = DivergenceGuard(self.config, s.num_classes), Best()
        # on CUDA a step's flags are read a step later, so that the GPU's queue never runs dry
        self.agreement = distributed.StepAgreement(g, FINITE_CHECK_LAG.get(s.device.type, 0))
        self.xray = Xray(s.model, g, self.total_steps, self.config.epochs, self.config.xray, self.config.xray_every)
        self.step = self.epoch = 0

    # ---- the whole training --------------------------------------------------------------------------

    def run(self) -> TrainResult:
        config = self.config
        self.optimizer = make_optimizer(config, self.s.model.parameters())  # refuses a model with nothing to train
        self.scheduler, self.sched_when = make_scheduler(config, self.optimizer, self.steps_per_epoch,
                                                         self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and not native_bf16(self.device))
        self.net, restore_bn = self._wrap()
        try:
            self._begin()
            status, message = "finished", ""
            try:
                for self.epoch in range(1, config.epochs + 1):
                    if not self.train_epoch():
                        break
                    self.validate()
                    if self.step >= self.total_steps:
                        break
            except _Stop as stop:
                status, message = stop.status, stop.message
            except BaseException as error:
                self._failed(error)  # re-raises
            return self._end(status, message)
        finally:
            restore_bn()

    def _begin(self) -> None:
        s, config, g = self.s, self.config, self.group
        self.shuffle = torch.Generator().manual_seed(config.seed)  # the same permutation in every process
        self.augment = torch.Generator(device=self.device).manual_seed(config.seed + 1 + g.rank)
        if g.rank:  # other dropout masks than rank 0's (DDP gave every process rank 0's weights)
            torch.manual_seed(config.seed + 1 + g.rank)
        distributed.inject_failure_for_tests(s.model, g)
        for r in self.recorders:
            r.begin(s)
        s.run_id = g.broadcast(s.run_id)
        self.emit(StartEvent(s.run_id, config.model, config.dataset, str(self.device), config.epochs,
                             self.steps_per_epoch, self.total_steps, len(s.train_y), len(s.val_y),
                             count_params(s.model), s.model_shape, s.classes, s.notes))
        self._kernels(0)

    def emit(self, event: Any) -> None:
        for listener in self.listeners:
            _safely("listener", listener, event)

    # ---- one epoch, one step -----------------------------------------------------------------------

    def train_epoch(self) -> bool:
        """One pass over the training images (up to the total steps); False when none was left."""
        s, bs = self.s, self.config.batch_size
        self.net.train()
        self.meter.start_epoch()
        perm = torch.randperm(len(s.train_y), generator=self.shuffle).to(s.train_x.device)
        try:
            for i in range(self.steps_per_epoch):
                if self.step >= self.total_steps:
                    break
                self.step_on(perm[i * bs:(i + 1) * bs], last_of_epoch=i == self.steps_per_epoch - 1)
            for agreed in self.agreement.flush():  # the steps whose flags were still in flight
                self._stop_if(agreed)
        finally:
            self.meter.end_epoch()
            self.agreement.clear()
        return self.meter.reduce_epoch() > 0

    def step_on(self, idx: torch.Tensor, last_of_epoch: bool) -> None:
        """One optimiser step on the images ``idx`` (all processes' share of them)."""
        s, g, device = self.s, self.group, self.device
        batch = len(idx)
        idx = distributed.shard_of_batch(idx, g.rank, g.world)
        xb, yb = s.train_x[idx], s.train_y[idx]
        if device.type == "cuda" and xb.device.type == "cpu":
            xb, yb = xb.pin_memory(), yb.pin_memory()
        x, y = s.train_pipe.train_batch(xb, self.augment), yb.to(device, non_blocking=True)
        probe = self.xray.probe(self.step + 1)  # on a sampled step: hooks on the activations (cnnlab.xray)
        try:
            with autocast_context(device):
                logits = self.net(x)
            loss = F.cross_entropy(logits.float(), y)
            # all processes stop at the same step, before a backward the others would wait for
            cancel = self.cancel is not None and self.cancel.is_set()
            agreed = self.agreement.push(loss, cancel, self.meter.due(self.step + 1), self.step + 1, self.epoch)
            self._stop_if(agreed)
            # DDP averages the processes' gradients: weighted so that the average is the gradient of the mean
            # loss over the whole batch, as one process computes it (a factor of 1 in one process)
            weighted = loss * (len(y) * g.world / batch) if g.world > 1 else loss
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(weighted).backward()
            probe.gradients(self.scaler)  # the scale is read on sampled steps only (it waits for the GPU)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            probe.updated()
        finally:
            probe.close()
        if (xray := probe.event(self.epoch)) is not None:
            self.emit(xray)
        if self.sched_when == "step" and self.step < self.total_steps - 1:  # never past its end
            self.scheduler.step()
        self.step += 1
        self.meter.add(loss.detach(), logits.detach(), y)
        self.governor.tick()
        if (agreed is not None and agreed.due) or last_of_epoch:
            self.emit(event := self.meter.step_event(self.epoch, self.step, self._lr()))
            self.agreement.reported(self.step)  # the flags computed before this event are stale now
            self._diverged_if(self.guard.window(event))

    def validate(self) -> None:
        """Validation (each process its share, the counts summed), the best weights, the epoch event."""
        s, config = self.s, self.config
        v = eval_loop(s.model, self.val_x, self.val_y, s.val_pipe, s.num_classes,
                      config.eval_batch_size or min(2 * config.batch_size, 1024),
                      cancel=self.cancel if self.group.world == 1 else None)
        if v is None:
            raise _Stop("cancelled")  # during validation
        keys = ("loss_sum", "correct1", "correct5", "count")
        summed = self.group.sum(torch.stack([torch.as_tensor(v[k], dtype=torch.float64).cpu() for k in keys]),
                                _("summing the validation"))
        v = {**v, **dict(zip(keys, summed.tolist()))}
        if self.sched_when == "epoch":
            self.scheduler.step()
        event = self.meter.epoch_event(self.epoch, self.step, v, self._lr(), is_best=False)
        bad = self.guard.epoch(event)
        if bad is None and self.best.offer(event.val_top1, self.epoch, s.model):
            event.is_best = True  # a diverged epoch's weights are never the best
            for r in self.recorders:
                _safely("recorder", r.save_best, self.best.state, self.epoch)
        self.emit(event)
        self._kernels(self.epoch)
        self._diverged_if(bad)

    def _kernels(self, epoch: int) -> None:
        if (kernels := self.xray.kernels(epoch)) is not None:
            self.emit(kernels)

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _stop_if(self, agreed: distributed.Agreed | None) -> None:
        if agreed is not None and agreed.cancel:
            raise _Stop("cancelled")
        if agreed is not None and agreed.not_finite:
            raise _Stop("diverged", self.guard.not_finite(agreed.step, agreed.epoch, agreed.loss))

    @staticmethod
    def _diverged_if(message: str | None) -> None:
        if message is not None:
            raise _Stop("diverged", message)

    # ---- the group, the end --------------------------------------------------------------------------

    def _wrap(self) -> tuple[nn.Module, Callable[[], None]]:
        """The model as the loop calls it: itself in one process, in DistributedDataParallel in a group of
        several; and what undoes the batch-norm conversion."""
        s, config, g = self.s, self.config, self.group
        if g.world == 1:
            if config.sync_bn:
                s.notes.append(_("sync_bn has no effect in a single process (it synchronises the processes of "
                                 "torchrun)."))
            return g.wrap(s.model), lambda: None
        if g.backend == "nccl" and self.device.type != "cuda":
            raise ConfigError(_("the process group uses NCCL, which works on GPUs only, but this training runs on "
                                "{device}: train on the GPU (device auto or cuda), or start the group with "
                                "gloo.").format(device=self.device))
        if config.batch_size < g.world:
            raise ConfigError(_("batch size {batch} is the batch of all {world} processes together: use at least "
                                "{world} (e.g. {example} for 64 images per process).").format(
                batch=config.batch_size, world=g.world, example=64 * g.world))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # this thread's current GPU: NCCL's object collectives use it
        restore: Callable[[], None] = lambda: None  # noqa: E731
        if config.sync_bn:
            if self.device.type != "cuda":
                raise ConfigError(_("sync_bn synchronises batch norm across GPUs; PyTorch's SyncBatchNorm does not "
                                    "run on CPUs: train without --sync-bn here (each process normalises its own "
                                    "share)."))
            restore = distributed.convert_sync_batchnorm(s.model)
        per = math.ceil(config.batch_size / g.world)
        text = _("data-parallel on {world} processes ({backend}): every step's batch of {batch} images is shared "
                 "by them (about {per} each); validation is shared too, and every number is summed over all of "
                 "them; batch norm synchronised (SyncBatchNorm).") if config.sync_bn else \
            _("data-parallel on {world} processes ({backend}): every step's batch of {batch} images is shared by "
              "them (about {per} each); validation is shared too, and every number is summed over all of them.")
        s.notes.append(text.format(world=g.world, backend=g.backend, batch=config.batch_size, per=per))
        try:
            return g.wrap(s.model), restore
        except BaseException:
            restore()
            raise

    def _end(self, status: str, message: str) -> TrainResult:
        s, model, best, step = self.s, self.s.model, self.best, self.step
        if status == "cancelled":
            text = _("cancelled at step {step} (epoch {epoch}).")
            if best.state is None and step > 0:
                best.keep(model)
                for r in self.recorders:
                    _safely("recorder", r.save_best, best.state, None)
                text = _("cancelled at step {step} (epoch {epoch}). No validation had run yet: best.pt holds the "
                         "weights at the moment of cancelling.")
            elif best.state is not None:
                text = _("cancelled at step {step} (epoch {epoch}). Best weights kept from epoch {best}.")
            message = text.format(step=step, epoch=self.epoch, best=best.epoch)
        elif status == "finished":
            message = _("finished {epochs} epoch(s), {steps} steps; best val top-1 {top1} at epoch {epoch}.").format(
                epochs=len(self.meter.history), steps=step, top1=fmt(best.top1 or 0, ".1%"), epoch=best.epoch)
        if best.state is not None:
            model.load_state_dict(best.state)
        if s.channels_last:  # hand back the usual layout: same numerics as a model loaded from best.pt
            model.to(memory_format=torch.contiguous_format)
        end = self._finish(status, message)
        self.group.barrier()  # nobody goes on (e.g. to a lesson's next arm) before the run folder is complete
        return TrainResult(status, message, s.run_id, best.top1, best.epoch, self.meter.history, model, end.elapsed,
                           step, self.meter.images_per_sec(), str(self.device),
                           self.governor.threads if self.device.type == "cpu" else None)

    def _failed(self, error: BaseException) -> None:
        """Report an unexpected error as "failed" and raise it (a lost peer as :class:`PeerLostError`)."""
        e = error
        if self.group.world > 1 and not isinstance(e, (CnnlabError, KeyboardInterrupt, torch.OutOfMemoryError)) \
                and distributed.from_collective(e):  # e.g. DDP's gradient exchange in backward, when a peer died
            e = self.group.peer_lost(_("the exchange of gradients at step {step}").format(step=self.step + 1), e)
        self._finish("failed", self._failure_message(e))
        if e is not error:
            raise e from error
        raise error

    def _failure_message(self, e: BaseException) -> str:
        if isinstance(e, torch.OutOfMemoryError):
            return _("out of memory on {device}: lower the batch size (now {batch}) or the input size.").format(
                device=self.device, batch=self.config.batch_size)
        if isinstance(e, (distributed.PeerLostError, distributed.GroupStopped)):
            return str(e)
        if isinstance(e, KeyboardInterrupt):
            return _("interrupted (KeyboardInterrupt).")
        return _("training failed at step {step}: {error}").format(step=self.step, error=f"{type(e).__name__}: {e}")

    def _finish(self, status: str, message: str) -> EndEvent:
        end = EndEvent(status, message, self.best.top1, self.best.epoch, self.s.run_id,
                       time.perf_counter() - self.meter.t_start, self.step)
        self.emit(end)
        for r in self.recorders:
            _safely("recorder", r.finish, self.s, end)
        return end
