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

import hashlib
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .data import DataBundle, load_dataset
from .data.shapes import SOURCE_CLASSES, STANDIN_MODEL, TARGET_CLASSES
from .device import pick_device
from .errors import CnnlabError, ConfigError, UnsafeFileError
from .evaluate import evaluate_run
from .files import atomic_file
from .i18n import _
from .jobs import Job, JobManager, get_manager
from .models import create, get_spec
from .models.pretrained import fetch_weights
from .paths import cache_dir
from .runs import Run, list_runs, load_run, load_run_data, recorders, run_config
from .safeload import load_state_dict_file
from .train import TrainConfig, TrainResult, fit, load_data

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
    scratch_cfg, transfer_cfg = config.train_configs()
    fetch_weights(config.pretrained)  # a missing weights file fails now, not after the scratch run
    if data is None:
        data = load_dataset(config.dataset, root=config.data_root, seed=config.seed, **config.data_options)
    scratch = fit(scratch_cfg, data=data, listeners=[*recorders(), *_tagged(listeners, "scratch")], cancel=cancel)
    pretrained = fit(transfer_cfg, data=data, listeners=[*recorders(), *_tagged(listeners, "pretrained")],
                     cancel=cancel)
    return Comparison(scratch, pretrained)


# --- the offline stand-in ------------------------------------------------------------------------

STANDIN_TAG = "transfer-standin"
STANDIN_HEAD = "fc3"  # the last layer: replaced for the new classes, the only one trained when frozen
STANDIN_VERSION = 2


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

    def source_config(self) -> TrainConfig:
        """The pretraining on the five source shapes (its data is generated from another seed)."""
        return TrainConfig(model=STANDIN_MODEL, dataset="shapes", epochs=self.source_epochs, lr=self.lr,
                           batch_size=64, in_channels=3, input_size=32, seed=self.seed + 1000, device=self.device,
                           data_options={"classes": list(SOURCE_CLASSES), "n_train": self.source_images,
                                         "n_val": 500}).validate()

    def target_configs(self) -> tuple[TrainConfig, TrainConfig]:
        """Scratch and pretrained on the three target shapes: an ordinary 'shapes' dataset restricted
        to those classes, so a run's data is rebuilt from its config alone."""
        common = dict(model=STANDIN_MODEL, dataset="shapes", epochs=self.epochs, batch_size=16, in_channels=3,
                      input_size=32, seed=self.seed, device=self.device, tag=STANDIN_TAG,
                      subset=self.target_labels * len(TARGET_CLASSES),
                      data_options={"classes": list(TARGET_CLASSES), "n_train": 4000, "n_val": self.target_val})
        return TrainConfig(lr=self.lr, **common).validate(), TrainConfig(lr=self.finetune_lr, **common).validate()


def _standin_path(cfg: StandinConfig) -> Path:
    """The cache file of the pretrained stand-in: keyed by everything that changes its weights."""
    source = asdict(cfg.source_config())
    source["device"] = pick_device(cfg.device).type  # CPU and GPU numerics differ
    digest = hashlib.sha1(json.dumps({**source, "v": STANDIN_VERSION}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "standin" / f"{STANDIN_MODEL}-{digest}.pt"


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
                state = load_state_dict_file(path, what=_("the transfer stand-in's cached weights"))
                if _fits(state, _source_model()):
                    return state
            except UnsafeFileError:  # a broken or planted cache file is never used: it is rebuilt
                pass
            path.unlink(missing_ok=True)
        result = fit(cfg.source_config(), listeners=_tagged(listeners, "source"), cancel=cancel)
        if result.status != "finished":
            raise ConfigError(_("pretraining the stand-in stopped: {message}").format(message=result.message))
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as f:  # the other caller reads the whole file or none
            torch.save(state, f)
        return state


def _source_model() -> torch.nn.Module:
    return create(STANDIN_MODEL, num_classes=len(SOURCE_CLASSES), in_channels=3, input_size=32)


def _fits(state: dict[str, torch.Tensor], model: torch.nn.Module) -> bool:
    """Whether ``state`` has exactly ``model``'s layers and shapes."""
    own = model.state_dict()
    return state.keys() == own.keys() and all(state[k].shape == v.shape for k, v in own.items())


def standin_target(cfg: StandinConfig) -> DataBundle:
    """The small target task: three unseen shape classes, ``target_labels`` images each."""
    return load_data(cfg.target_configs()[0], download=False)


def standin_transfer_model(cfg: StandinConfig, listeners: Sequence[Listener] = (),
                           cancel: threading.Event | None = None, freeze: bool = False) -> torch.nn.Module:
    """The target network with every pretrained layer but the new 3-class head (``fc3``); pretrains
    first if the cache is empty. Refuses, rather than silently transferring nothing, when the
    pretrained layers do not fit. ``freeze``: keep every pretrained layer fixed and train the new
    head only (``fc3``: 255 of the 82,531 weights at 3x32x32), as seed 001 does with ResNet-18 (only its new ``fc``
    learns) and seed 000 with VGG16 (its features fixed, under 1% of the weights trained): the frozen
    part is most of the network, and no gradient flows back through it.

    The new head's initial weights come from ``cfg.seed`` (not from whatever the global random state
    happens to be), so the same settings give the same result."""
    source = pretrained_standin(cfg, listeners, cancel)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = create(STANDIN_MODEL, num_classes=len(TARGET_CLASSES), in_channels=3, input_size=32)
    own = model.state_dict()
    body = {k: v for k, v in source.items() if not k.startswith(f"{STANDIN_HEAD}.")}
    missing = [k for k in own if not k.startswith(f"{STANDIN_HEAD}.") and (k not in body or body[k].shape != own[k].shape)]
    if missing or len(body) != len(own) - sum(k.startswith(f"{STANDIN_HEAD}.") for k in own):
        raise ConfigError(_("the pretrained stand-in does not fit {model}'s layers ({layers}); delete {path} and run "
                            "it again.").format(model=STANDIN_MODEL, layers=", ".join(missing[:3]) or _("extra layers"),
                                             path=_standin_path(cfg)))
    model.load_state_dict({**own, **body})
    if freeze:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(f"{STANDIN_HEAD}."))
    return model


def compare_standin(cfg: StandinConfig | None = None, listeners: Sequence[Listener] = (),
                    cancel: threading.Event | None = None) -> Comparison:
    """Scratch against pretrained on the small target task; both become ordinary runs."""
    cfg = cfg or StandinConfig()
    scratch_cfg, pretrained_cfg = cfg.target_configs()
    model = standin_transfer_model(cfg, listeners, cancel)
    data = load_data(scratch_cfg)
    scratch = fit(scratch_cfg, data=data, listeners=[*recorders(), *_tagged(listeners, "scratch")], cancel=cancel)
    pretrained = fit(pretrained_cfg, model=model, data=data,
                     listeners=[*recorders(), *_tagged(listeners, "pretrained")], cancel=cancel)
    return Comparison(scratch, pretrained)


def submit_comparison(config: CompareConfig, manager: JobManager | None = None) -> list[Job]:
    """Queue both trainings of a real comparison as background jobs (scratch first)."""
    manager = manager or get_manager()
    scratch_cfg, transfer_cfg = config.train_configs()
    fetch_weights(config.pretrained)
    data = load_dataset(config.dataset, root=config.data_root, seed=config.seed, **config.data_options)
    return [manager.submit(scratch_cfg, data=data), manager.submit(transfer_cfg, data=data)]


def submit_standin(cfg: StandinConfig | None = None, manager: JobManager | None = None) -> list[Job]:
    """Queue both trainings of the stand-in at once. The pretraining (when not cached yet) runs in
    the device's queue too, as the first thing the "pretrained" job does."""
    cfg = cfg or StandinConfig()
    manager = manager or get_manager()
    scratch_cfg, pretrained_cfg = cfg.target_configs()
    return [manager.submit(scratch_cfg),
            manager.submit(pretrained_cfg, model=lambda cancel: standin_transfer_model(cfg, cancel=cancel))]


def standin_cfg_of(run) -> StandinConfig | None:
    """The stand-in settings a run was trained with, or None if it is not a stand-in run."""
    try:
        config = run_config(run)
    except CnnlabError:
        return None
    if config.tag != STANDIN_TAG:
        return None
    return StandinConfig(target_labels=(config.subset or 60) // len(TARGET_CLASSES),
                         target_val=int(config.data_options.get("n_val", 600)), epochs=config.epochs,
                         seed=config.seed, device=config.device)


def is_pretrained(run: Run) -> bool:
    """Whether a run started from pretrained weights (ImageNet, or the stand-in's pretraining)."""
    return bool(run.config.get("pretrained") or run.meta.get("prepared_model"))


def comparison_candidates(found: Sequence[Run] | None = None) -> tuple[list[Run], list[Run]]:
    """Runs with a checkpoint that belong to a transfer comparison, as (from scratch, pretrained):
    stand-in runs, transfer-model runs and Caltech101 runs, newest first."""
    runs = [r for r in (list_runs() if found is None else found) if r.has_checkpoint and not r.damaged]
    cands = [r for r in runs if r.config.get("tag") == STANDIN_TAG or standin_cfg_of(r) is not None
             or r.config.get("dataset") == "caltech101" or _family(r) == "transfer"]
    return [r for r in cands if not is_pretrained(r)], [r for r in cands if is_pretrained(r)]


def comparable(scratch: Run, pretrained: Sequence[Run]) -> list[Run]:
    """The pretrained runs trained on the same classes as ``scratch`` (compared class by class)."""
    return [r for r in pretrained if r.meta.get("classes") == scratch.meta.get("classes")]


def _family(run: Run) -> str:
    try:
        return get_spec(str(run.meta.get("model") or run.config.get("model") or "")).family
    except CnnlabError:
        return ""


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
    run = load_run(run_id)
    if data is None and run.has_checkpoint:
        data = load_run_data(run)
    model = f"{run.meta.get('model', '?')}"
    label = (_("{model} (pretrained)") if run.config.get("pretrained") or run.meta.get("prepared_model")
             else _("{model} (scratch)")).format(model=model)
    top1 = top5 = None
    per_class: list[dict] = []
    if data is not None and run.has_checkpoint:
        if getattr(data, split, None) is None:
            split = "val"  # no test split (embedded data): say which split the numbers are on
        result = evaluate_run(run, split=split, data=data)
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
    ca, cb = (load_run(r).meta.get("classes") for r in (scratch_run, pretrained_run))
    if ca and cb and list(ca) != list(cb):
        raise ConfigError(_(
            "these runs were trained on different classes ({a} and {b}): compare runs of the same experiment (same "
            "dataset and split).").format(a=len(ca), b=len(cb)))
    a = _run_summary(scratch_run, data, split)
    b = _run_summary(pretrained_run, data, split)
    diffs = []
    for ra, rb in zip(a.per_class, b.per_class):
        name = ra.get("class") or ra.get("name")
        diffs.append({"class": name, "scratch top-1": ra.get("top1"), "pretrained top-1": rb.get("top1"),
                      "difference": (rb.get("top1") or 0) - (ra.get("top1") or 0)})
    diffs.sort(key=lambda d: -abs(d["difference"]))
    return ComparisonSummary(a, b, diffs[:top])
