"""Training settings: :class:`TrainConfig`, and the rules of each setting written once.

Every field carries its default, its help text, its label and its check (:class:`Rule`): the
command line's options (``python -m cnnlab train --help``), the Train page's widgets and
:meth:`TrainConfig.validate` all take them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from .data.pipeline import AUGMENT_PRESETS
from .errors import ConfigError, UnknownModelError
from .models import get_spec, list_models

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine", "onecycle")
FREEZE_MODES = ("none", "features")
INITS = ("default", "kaiming", "xavier")
VAL_SPLITS = ("holdout", "test")

# ======================================================================================
# Configuration
# ======================================================================================


@dataclass(frozen=True)
class Rule:
    """How one setting is checked: a whole number or a number in ``[lo, hi]``, or one of ``choices``."""

    kind: str  # "int" | "float" | "choice" | "text"
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    lo_open: bool = False  # lo itself is not allowed
    why: str = ""  # appended to the message (e.g. typical values)

    def check(self, label: str, value: Any) -> None:
        if self.kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{label} must be a name{self.why}, got {value!r}.")
            return
        if self.kind == "choice":
            if value not in self.choices:
                raise ConfigError(f"unknown {label} {value!r}: choose one of {', '.join(self.choices)}.")
            return
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "int" and not is_int:
            raise ConfigError(f"{label} must be a whole number, got {value!r}.")
        if not is_int and not (isinstance(value, float) and math.isfinite(value)):
            raise ConfigError(f"{label} must be a number, got {value!r}.")
        low_bad = value <= self.lo if self.lo_open else value < self.lo if self.lo is not None else False
        if low_bad or (self.hi is not None and value > self.hi):
            lo = f"> {self.lo:g}" if self.lo_open else f">= {self.lo:g}"
            span = f"between {self.lo:g} and {self.hi:g}" if not self.lo_open else f"{lo} and <= {self.hi:g}"
            raise ConfigError(f"{label} must be {span}, got {value:g}{self.why}.")


def setting(default: Any = None, help: str = "", rule: Rule | None = None, *, label: str = "",
            cli: bool = True, flag: str = "", factory: Callable[[], Any] | None = None) -> Any:
    """A TrainConfig field with what the command line and validation need to know about it."""
    meta = {"help": help, "rule": rule, "label": label, "cli": cli, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _whole(lo: int, hi: int) -> Rule:
    return Rule("int", lo, hi)


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``asdict(config)`` is what ``config.json`` holds.

    Each field carries its help text and its check (:class:`Rule`): the command line's options
    (``python -m cnnlab train --help``) and :meth:`validate` are generated from them.
    """

    model: str = setting("lenet", "model name (python -m cnnlab models)", Rule("text", why=", e.g. 'lenet'"))
    dataset: str = setting("digits", "dataset: shapes, digits, mnist, fashion_mnist, cifar10, cifar100, "
                           "caltech101, folder", Rule("text", why=", e.g. 'digits'"), flag="--data")
    epochs: int = setting(3, "passes over the training set", _whole(1, 1000))
    batch_size: int = setting(64, "images per training step (with torchrun: in all, shared by the processes)",
                              _whole(1, 4096), label="batch size")
    optimizer: str = setting("adam", "sgd | momentum (SGD with --momentum) | adam | adamw",
                             Rule("choice", choices=OPTIMIZERS))
    lr: float = setting(1e-3, "learning rate (typical: 0.1 for SGD, 0.001 for Adam; try 100 to see a divergence)",
                        Rule("float", 0, 1e6, lo_open=True, why=" (typical: 0.1 for SGD, 0.001 for Adam)"),
                        label="learning rate")
    momentum: float = setting(0.9, "momentum of the 'momentum' optimizer (seed 003: 0.5; seed 002: 0.99)",
                              Rule("float", 0, 0.999), label="momentum")
    nesterov: bool = setting(False, "Nesterov momentum (with the 'momentum' optimizer)")
    init: str = setting("default", "weight initialisation: default (the model's own) | kaiming (seed 000) | "
                        "xavier (seed 004)", Rule("choice", choices=INITS), label="initialisation")
    weight_decay: float = setting(0.0, "L2 penalty of the optimiser", Rule("float", 0, 1), label="weight decay")
    scheduler: str = setting("none", "learning-rate schedule: none | step | cosine | onecycle",
                             Rule("choice", choices=SCHEDULERS))
    step_size: int = setting(7, "StepLR: epochs between decays (seed 001: 7)", _whole(1, 1000), label="step size")
    gamma: float = setting(0.1, "StepLR: decay factor", Rule("float", 0, 1, lo_open=True),
                           label="gamma (StepLR decay)")
    augment: str = setting("none", "batch augmentation preset: " + " | ".join(AUGMENT_PRESETS),
                           Rule("choice", choices=AUGMENT_PRESETS), label="augmentation preset")
    subset: int | None = setting(None, "train on this many images (class-balanced)", _whole(1, 100_000_000))
    val_split: str = setting("holdout", "validate on a hold-out of the training set (holdout) or on the "
                             "dataset's official test split (test), as the seeds do", Rule("choice", choices=VAL_SPLITS),
                             label="validation split")
    val_fraction: float = setting(0.2, "share of the training data held out for validation",
                                  Rule("float", 0, 0.95, lo_open=True), label="val_fraction")
    seed: int = setting(0, "seed of the split, the initialisation, the shuffling and the augmentation",
                        _whole(0, 2**63 - 1))
    device: str = setting("auto", "auto, cpu, cuda or mps", Rule("text"))
    num_classes: int | None = setting(None, "output classes (default: the dataset's)", _whole(1, 100_000))
    in_channels: int | None = setting(None, "input channels of the model (default: the data's; 3 for ImageNet "
                                      "weights; other data is adapted: grey repeated, colour to luma)", _whole(1, 64))
    input_size: int | tuple[int, int] | None = setting(
        None, "resize images to this size for the model: 32 or 32x28 (default: a fixed-input model's own "
        "size, else the data's)")
    data_root: str | None = setting(None, "where the dataset files are (default: data/)")
    data_options: dict[str, Any] = setting(
        help="dataset options as KEY=VALUE (repeatable), e.g. n_train=2000", factory=dict, flag="--data-option")
    log_every_steps: int | None = setting(None, "emit a step event every N steps (default: by time)",
                                          _whole(1, 1_000_000))
    log_interval_s: float = setting(0.5, "seconds between step events", Rule("float", 0, 3600))
    max_steps: int | None = setting(None, "stop (as finished) after this many steps", _whole(1, 100_000_000))
    eval_batch_size: int | None = setting(None, "validation batch (default: twice the batch size, at most 1024)",
                                          _whole(1, 4096), label="eval batch size")
    pretrained: bool = setting(False, "start from ImageNet weights (transfer-learning models)")
    freeze: str = setting("none", "none | features: keep the pretrained features fixed",
                          Rule("choice", choices=FREEZE_MODES), label="freeze mode")
    init_from: str | None = setting(None, "start from this run's best weights: every layer whose shape fits is "
                                    "reused, the others (a new head for another class count) start fresh")
    tag: str = setting("", "a label kept with the run, e.g. the comparison or lesson it belongs to")
    threads: int | None = setting(None, "CPU threads for training (default: one per core the other processes leave "
                                  "free, adapted while training)", _whole(1, 1024), label="threads")
    sync_bn: bool = setting(False, "with torchrun on GPUs: batch-norm statistics over the whole batch of all the "
                            "processes (SyncBatchNorm) instead of each process's share")

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` for the first out-of-range setting; return ``self``."""
        for f in fields(self):
            rule, value = f.metadata.get("rule"), getattr(self, f.name)
            if rule is not None and not (value is None and f.default is None):
                rule.check(f.metadata.get("label") or f.name.replace("_", " "), value)
        for name in ("pretrained", "sync_bn"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        if not isinstance(self.data_options, dict):
            raise ConfigError(f"data_options must be a mapping of dataset options, got {self.data_options!r}.")
        if self.num_classes is not None and self.subset is not None and self.subset < self.num_classes:
            raise ConfigError(f"subset={self.subset} is smaller than the {self.num_classes} classes: "
                              "a stratified subset needs at least one image per class.")
        if self.input_size is not None:
            size = (self.input_size,) * 2 if isinstance(self.input_size, int) else tuple(self.input_size)
            if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 1024 for v in size):
                raise ConfigError(f"input size must be one or two whole numbers in 8..1024, got {self.input_size!r}.")
        try:
            spec = get_spec(self.model)
        except UnknownModelError as e:
            raise ConfigError(str(e)) from e
        if (self.pretrained or self.freeze != "none") and spec.family != "transfer":
            raise ConfigError(
                f"pretrained weights and freezing apply to the transfer-learning models "
                f"({', '.join(list_models(family='transfer'))}); {self.model} is trained from scratch. For "
                "another prepared model, set requires_grad=False yourself and pass it to fit(config, model=...)."
            )
        if self.init != "default" and (self.pretrained or self.init_from):
            raise ConfigError(f"init={self.init!r} would overwrite the weights this training starts from; keep "
                              "init='default' with pretrained weights or init_from.")
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
