"""Transfer learning against training from scratch, on the same split and budget.

Seed 000's main experiment: VGG16 trained from scratch on Caltech101 against VGG16 pretrained on
ImageNet with frozen features and a new head. :func:`compare` runs both as ordinary training runs
(so they appear on the Runs page) and :func:`summarize` puts them side by side: curves, final
top-1 and top-5, per-class top-1/top-5 as in the seed, and the classes where they differ most.

Without the ImageNet weights and Caltech101 on disk, :func:`compare_standin` shows the same
lesson offline, in the spirit of seed 002's CIFAR-100 -> CIFAR-10 fine-tuning: a small CNN is
pretrained once on five shape classes with plenty of images (cached in ``models_cache/``), then
it and an identical fresh network learn three *other* shape classes from a few labelled images.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from .data import DataBundle, DatasetInfo, TensorSplit, load_dataset, stratified_subset
from .errors import ConfigError, UnsafeFileError
from .paths import cache_dir
from .safeload import load_state_dict_file
from .train import TrainConfig, TrainResult, fit

Listener = Callable[[Any], None]


@dataclass
class CompareConfig:
    """One budget for both models."""

    dataset: str = "caltech101"
    scratch_model: str = "vgg16"  # any zoo model, trained from random initialisation
    pretrained: str = "vgg16"  # a torchvision model with ImageNet weights (see models.pretrained)
    mode: str = "feature_extract"  # or "finetune"
    epochs: int = 3
    batch_size: int = 16  # seed 000
    optimizer: str = "adam"
    lr: float = 1e-3
    augment: str = "imagenet"
    subset: int | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)

    def train_configs(self) -> tuple[TrainConfig, TrainConfig]:
        common = dict(dataset=self.dataset, epochs=self.epochs, batch_size=self.batch_size,
                      optimizer=self.optimizer, lr=self.lr, augment=self.augment, subset=self.subset,
                      seed=self.seed, device=self.device, data_root=self.data_root,
                      data_options=dict(self.data_options))
        scratch = TrainConfig(model=self.scratch_model, **common)
        transfer = TrainConfig(model=f"{self.pretrained}_transfer", pretrained=True,
                               freeze="features" if self.mode == "feature_extract" else "none", **common)
        return scratch.validate(), transfer.validate()


@dataclass
class Comparison:
    scratch: TrainResult
    pretrained: TrainResult

    @property
    def run_ids(self) -> tuple[str | None, str | None]:
        return self.scratch.run_id, self.pretrained.run_id


def _tagged(listeners: Sequence[Listener], tag: str) -> list[Listener]:
    """Listeners that also learn which of the two trainings an event belongs to."""
    return [lambda e, fn=fn: fn((tag, e)) for fn in listeners]


def compare(config: CompareConfig, listeners: Sequence[Listener] = (), cancel: threading.Event | None = None,
            data: DataBundle | None = None) -> Comparison:
    """Train the from-scratch model, then the pretrained one, on the same data and budget.

    Listeners receive ``(tag, event)`` with tag ``"scratch"`` or ``"pretrained"``.
    """
    from .models.pretrained import fetch_weights

    scratch_cfg, transfer_cfg = config.train_configs()
    fetch_weights(config.pretrained)  # a missing weights file fails now, not after the scratch run
    if data is None:
        data = load_dataset(config.dataset, root=config.data_root, seed=config.seed, **config.data_options)
    scratch = fit(scratch_cfg, data=data, listeners=_tagged(listeners, "scratch"), cancel=cancel)
    pretrained = fit(transfer_cfg, data=data, listeners=_tagged(listeners, "pretrained"), cancel=cancel)
    return Comparison(scratch, pretrained)


# --- the offline stand-in ------------------------------------------------------------------------

STANDIN_MODEL = "lenet5"
SOURCE_CLASSES = (0, 1, 2, 3, 4)  # circle, square, triangle, star, cross: the "large" task
TARGET_CLASSES = (5, 6, 7)  # ring, heart, crescent: the "small" task, never seen in pretraining
STANDIN_VERSION = 1


@dataclass
class StandinConfig:
    source_images: int = 8000  # labelled images of the pretraining task
    source_epochs: int = 12
    target_labels: int = 20  # labelled images per class of the new task
    target_val: int = 600
    epochs: int = 12
    lr: float = 2e-3
    finetune_lr: float = 1e-3
    seed: int = 0
    device: str = "auto"


def _shape_bundle(classes: Sequence[int], n_train: int, n_val: int, seed: int) -> DataBundle:
    """A shapes dataset restricted to some classes, labels renumbered from 0."""
    from .data import SHAPE_CLASSES, generate_shapes

    total = (n_train + n_val) * 8 // len(classes) + 64
    images, labels = generate_shapes(total, seed=seed)
    keep = torch.isin(labels, torch.tensor(list(classes)))
    images, labels = images[keep], labels[keep]
    remap = torch.full((8,), -1, dtype=torch.int64)
    remap[list(classes)] = torch.arange(len(classes))
    labels = remap[labels]
    train = TensorSplit(images[:n_train].clone(), labels[:n_train].clone())
    val = TensorSplit(images[n_train:n_train + n_val].clone(), labels[n_train:n_train + n_val].clone())
    x = train.images.float() / 255
    info = DatasetInfo(
        name="shapes", display_name=f"Shapes: {', '.join(SHAPE_CLASSES[c] for c in classes)}",
        classes=[SHAPE_CLASSES[c] for c in classes], input_shape=tuple(train.images.shape[1:]),
        mean=tuple(x.mean((0, 2, 3)).tolist()), std=tuple(x.std((0, 2, 3)).tolist()), source="embedded",
        description="A subset of the procedural shapes, for the transfer-learning stand-in.",
    )
    return DataBundle(info, train, val, None, [])


def _standin_path(cfg: StandinConfig):
    key = f"{STANDIN_MODEL}-n{cfg.source_images}-e{cfg.source_epochs}-s{cfg.seed}-v{STANDIN_VERSION}"
    return cache_dir() / "standin" / f"{key}.pt"


_STANDIN_LOCK = threading.Lock()


def pretrained_standin(cfg: StandinConfig, listeners: Sequence[Listener] = (),
                       cancel: threading.Event | None = None) -> dict[str, torch.Tensor]:
    """The weights of the stand-in network pretrained on the five source classes (computed once,
    then read from ``models_cache/standin/``). Two callers at once (two browser sessions)
    compute it once: the second waits and reads the file."""
    path = _standin_path(cfg)
    with _STANDIN_LOCK:
        if path.is_file():
            try:
                state = load_state_dict_file(path, what="the transfer stand-in's cached weights")
                if _fits_source_model(state):
                    return state
            except UnsafeFileError:  # a broken or planted cache file is never used: it is rebuilt
                pass
            path.unlink(missing_ok=True)
        source = _shape_bundle(SOURCE_CLASSES, cfg.source_images, 500, seed=cfg.seed + 1000)
        config = TrainConfig(model=STANDIN_MODEL, dataset="shapes", epochs=cfg.source_epochs, lr=cfg.lr,
                             batch_size=64, in_channels=3, input_size=32, seed=cfg.seed, device=cfg.device)
        result = fit(config, data=source, listeners=_tagged(listeners, "source"), cancel=cancel, save=False)
        if result.status != "finished":
            raise ConfigError(f"pretraining the stand-in stopped: {result.message}")
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # atomic: temp file, then rename
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return state


def _fits_source_model(state: dict[str, torch.Tensor]) -> bool:
    """Whether a cached state has exactly the source network's layers and shapes."""
    from .models import create

    own = create(STANDIN_MODEL, num_classes=len(SOURCE_CLASSES), in_channels=3, input_size=32).state_dict()
    return state.keys() == own.keys() and all(state[k].shape == v.shape for k, v in own.items())


def standin_target(cfg: StandinConfig) -> DataBundle:
    """The small target task: three unseen shape classes, ``target_labels`` images each."""
    target = _shape_bundle(TARGET_CLASSES, 4000, cfg.target_val, seed=cfg.seed + 2000)
    target.train = stratified_subset(target.train, cfg.target_labels * len(TARGET_CLASSES), seed=cfg.seed)
    return target


def standin_jobs(cfg: StandinConfig, listeners: Sequence[Listener] = (),
                 cancel: threading.Event | None = None) -> list[tuple[TrainConfig, Any, DataBundle]]:
    """The two trainings of the stand-in as (config, prepared model or None, data): scratch first.
    Pretraining (cached) happens here."""
    from .models import create

    source_state = pretrained_standin(cfg, listeners, cancel)
    target = standin_target(cfg)
    n = len(TARGET_CLASSES)
    common = dict(model=STANDIN_MODEL, dataset="shapes", epochs=cfg.epochs, batch_size=16, in_channels=3,
                  input_size=32, seed=cfg.seed, device=cfg.device,
                  data_options={"standin": "target", "standin_config": asdict(cfg)})
    model = create(STANDIN_MODEL, num_classes=n, in_channels=3, input_size=32)
    transferable = {k: v for k, v in source_state.items() if not k.startswith("fc3.")}
    model.load_state_dict(transferable, strict=False)  # everything but the new 3-class head
    return [(TrainConfig(lr=cfg.lr, **common), None, target),
            (TrainConfig(lr=cfg.finetune_lr, **common), model, target)]


def compare_standin(cfg: StandinConfig | None = None, listeners: Sequence[Listener] = (),
                    cancel: threading.Event | None = None) -> Comparison:
    """Scratch against pretrained on the small target task; both become ordinary runs."""
    cfg = cfg or StandinConfig()
    (c1, _, data), (c2, model, _) = standin_jobs(cfg, listeners, cancel)
    scratch = fit(c1, data=data, listeners=_tagged(listeners, "scratch"), cancel=cancel)
    pretrained = fit(c2, model=model, data=data, listeners=_tagged(listeners, "pretrained"), cancel=cancel)
    return Comparison(scratch, pretrained)


def submit_comparison(config: CompareConfig, manager=None) -> list:
    """Queue both trainings of a real comparison as background jobs (scratch first)."""
    from .jobs import get_manager

    from .models.pretrained import fetch_weights

    manager = manager or get_manager()
    scratch_cfg, transfer_cfg = config.train_configs()
    fetch_weights(config.pretrained)
    data = load_dataset(config.dataset, root=config.data_root, seed=config.seed, **config.data_options)
    return [manager.submit(scratch_cfg, data=data), manager.submit(transfer_cfg, data=data)]


def submit_standin(cfg: StandinConfig | None = None, manager=None) -> list:
    """Pretrain the stand-in if it is not cached yet (seconds), then queue both trainings."""
    from .jobs import get_manager

    manager = manager or get_manager()
    return [manager.submit(c, model=m, data=d) for c, m, d in standin_jobs(cfg or StandinConfig())]


def standin_cfg_of(run) -> StandinConfig | None:
    """The stand-in settings a run was trained with, or None if it is not a stand-in run."""
    opts = run.config.get("data_options") or {}
    if not isinstance(opts, dict) or opts.get("standin") != "target":
        return None
    given = opts.get("standin_config")
    if not isinstance(given, dict):
        raise ConfigError(f"run {run.run_id}: its config.json has no valid standin_config; the run cannot be rebuilt.")
    try:
        return StandinConfig(**{k: v for k, v in given.items() if k in StandinConfig.__dataclass_fields__})
    except TypeError as e:
        raise ConfigError(f"run {run.run_id}: its standin_config is damaged ({e}).") from None


# --- side by side ------------------------------------------------------------------------------


@dataclass
class RunSummary:
    run_id: str
    label: str
    status: str
    message: str
    curves: list[dict]  # metrics.jsonl rows
    top1: float | None
    top5: float | None
    per_class: list[dict]  # class, count, top1, top5
    split: str


@dataclass
class ComparisonSummary:
    scratch: RunSummary
    pretrained: RunSummary
    differences: list[dict]  # class, scratch top1, pretrained top1, difference; largest first

    def as_dict(self) -> dict:
        return asdict(self)


def _run_summary(run_id: str, data: DataBundle | None, split: str) -> RunSummary:
    from .evaluate import evaluate
    from .runs import load_model, load_run, load_run_data

    run = load_run(run_id)
    if data is None and run.has_checkpoint:
        data = load_run_data(run)
    label = f"{run.meta.get('model', '?')}" + (" (pretrained)" if run.config.get("pretrained")
                                              or run.meta.get("prepared_model") else " (scratch)")
    top1 = top5 = None
    per_class: list[dict] = []
    if data is not None and run.has_checkpoint:
        if getattr(data, split, None) is None:
            split = "val"  # no test split (embedded data): say which split the numbers are on
        result = evaluate(load_model(run.run_id), getattr(data, split), data.info)
        top1, top5 = result.top1, result.top5
        per_class = [dict(row) if isinstance(row, dict) else asdict(row) for row in result.per_class]
    return RunSummary(run.run_id, label, run.status, run.message, run.metrics, top1, top5, per_class, split)


def summarize(scratch_run: str, pretrained_run: str, data: DataBundle | None = None, split: str = "test",
              top: int = 10) -> ComparisonSummary:
    """Final top-1/top-5 and per-class results of both runs on ``split`` (falls back to validation
    when the dataset has no test split), and the ``top`` classes where the two differ most.

    ``data`` (the shared dataset of both runs) saves loading it; without it each run is
    evaluated on its own data (:func:`cnnlab.runs.load_run_data`). Runs with different class
    lists cannot be compared class by class: that is a :class:`ConfigError`.
    """
    from .runs import load_run

    ca, cb = (load_run(r).meta.get("classes") for r in (scratch_run, pretrained_run))
    if ca and cb and list(ca) != list(cb):
        raise ConfigError(
            f"these runs were trained on different classes ({len(ca)} and {len(cb)}): compare runs of the "
            "same experiment (same dataset and split)."
        )
    a = _run_summary(scratch_run, data, split)
    b = _run_summary(pretrained_run, data, split)
    diffs = []
    for ra, rb in zip(a.per_class, b.per_class):
        name = ra.get("class") or ra.get("name")
        diffs.append({"class": name, "scratch top-1": ra.get("top1"), "pretrained top-1": rb.get("top1"),
                      "difference": (rb.get("top1") or 0) - (ra.get("top1") or 0)})
    diffs.sort(key=lambda d: -abs(d["difference"]))
    return ComparisonSummary(a, b, diffs[:top])
