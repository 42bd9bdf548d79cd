"""Training settings: :class:`TrainConfig`, and the rules of each setting written once.

Every field carries its default, its help text, its label and its check (:class:`Rule`): the
command line's options (``python -m cnnlab train --help``), the Train page's widgets and
:meth:`TrainConfig.validate` all take them from here, through :func:`bounds`, :func:`choices`,
:func:`choice_labels`, :func:`help_text` and :func:`kinds`.
"""

from __future__ import annotations

import math
from dataclasses import Field, dataclass, field, fields
from typing import Any, Callable, Mapping

from .data.pipeline import AUGMENT_LABELS
from .errors import ConfigError, UnknownModelError
from .i18n import N_, _, either
from .models import get_spec, list_models

# Each choice with the label a person reads (the Train page's menus); the tuples are the choices. The labels
# are marked for translation here and translated where they are read (:func:`choice_labels`).
OPTIMIZER_LABELS = {"sgd": "SGD", "momentum": N_("SGD + momentum"), "adam": "Adam", "adamw": "AdamW"}
SCHEDULER_LABELS = {"none": N_("Constant"), "step": N_("StepLR (see Advanced)"), "cosine": N_("Cosine"),
                    "onecycle": N_("One-cycle")}
FREEZE_LABELS = {"none": N_("Fine-tune every layer"), "features": N_("Freeze the pretrained features")}
INIT_LABELS = {"default": N_("The model's own"), "kaiming": N_("Kaiming (He normal)"),
               "xavier": N_("Xavier (Glorot uniform)")}
VAL_SPLIT_LABELS = {"holdout": N_("Hold-out of the training set"), "test": N_("The official test split")}
OPTIMIZERS = tuple(OPTIMIZER_LABELS)
SCHEDULERS = tuple(SCHEDULER_LABELS)
FREEZE_MODES = tuple(FREEZE_LABELS)
INITS = tuple(INIT_LABELS)
VAL_SPLITS = tuple(VAL_SPLIT_LABELS)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The kinds of value a setting may take, as JSON gives them back (``config.json``, lesson files):
# kind -> (test, what the message calls it, translated where shown). A tuple comes back from JSON as a list.
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), N_("text")),
    "whole": (_is_int, N_("a whole number")),
    "number": (lambda v: _is_int(v) or isinstance(v, float), N_("a number")),
    "bool": (lambda v: isinstance(v, bool), N_("true or false")),
    "size": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_int, v)),
             N_("two whole numbers")),
    "object": (lambda v: isinstance(v, dict), N_("an object")),
    "null": (lambda v: v is None, N_("null")),
}


def _number(value: int | float) -> str:
    """A bound or a value in a message: whole numbers in full (2147483647), others short (1e+06)."""
    return str(value) if _is_int(value) else f"{value:g}"


@dataclass(frozen=True)
class Rule:
    """How one setting is checked: a whole number or a number in ``[lo, hi]``, or one of ``choices``
    (``labels``: the label a person reads for each choice, in the same order)."""

    kind: str  # "int" | "float" | "choice" | "text"
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    lo_open: bool = False  # lo itself is not allowed
    why: str = ""  # appended to the message (e.g. typical values; marked with N_, translated when shown)
    labels: tuple[str, ...] = ()

    @classmethod
    def one_of(cls, labels: Mapping[str, str]) -> "Rule":
        """A choice among the keys of ``labels``, each shown to a person as its value."""
        return cls("choice", choices=tuple(labels), labels=tuple(labels.values()))

    def check(self, label: str, value: Any) -> None:
        """Raise :class:`ConfigError` when ``value`` breaks the rule (``label``: what the message calls the
        setting, translated)."""
        why = _(self.why) if self.why else ""
        if self.kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(_("{label} must be a name{why}, got {value!r}.").format(
                    label=label, why=why, value=value))
            return
        if self.kind == "choice":
            if value not in self.choices:
                raise ConfigError(_("unknown {label} {value!r}: choose one of {choices}.").format(
                    label=label, value=value, choices=", ".join(self.choices)))
            return
        if self.kind == "int" and not _is_int(value):
            raise ConfigError(_("{label} must be a whole number, got {value!r}.").format(label=label, value=value))
        if not _is_int(value) and not (isinstance(value, float) and math.isfinite(value)):
            raise ConfigError(_("{label} must be a number, got {value!r}.").format(label=label, value=value))
        low_bad = value <= self.lo if self.lo_open else value < self.lo if self.lo is not None else False
        if low_bad or (self.hi is not None and value > self.hi):
            text = _("{label} must be > {lo} and <= {hi}, got {value}{why}.") if self.lo_open else \
                _("{label} must be between {lo} and {hi}, got {value}{why}.")
            raise ConfigError(text.format(label=label, lo=_number(self.lo), hi=_number(self.hi),
                                          value=_number(value), why=why))


def setting(default: Any = None, help: str = "", rule: Rule | None = None, *, label: str = "",
            cli: bool = True, flag: str = "", factory: Callable[[], Any] | None = None,
            accepts: tuple[str, ...] = ()) -> Any:
    """A TrainConfig field with what the command line, the Train page and validation need to know about it.

    ``accepts``: the :data:`KINDS` of value it takes; by default the kind its rule checks (or
    its default's), and null when the default is None."""
    meta = {"help": help, "rule": rule, "label": label, "cli": cli, "flag": flag,
            "accepts": accepts or _accepted(rule, default, factory)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _accepted(rule: Rule | None, default: Any, factory: Callable[[], Any] | None) -> tuple[str, ...]:
    if factory is not None:
        return ("object",)  # the one factory-made setting is a mapping (data_options)
    if rule is not None:
        kind = {"int": "whole", "float": "number"}.get(rule.kind, "text")
    else:
        kind = "bool" if isinstance(default, bool) else "text"
    return (kind, "null") if default is None else (kind,)


def _whole(lo: int, hi: int) -> Rule:
    return Rule("int", lo, hi)


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``asdict(config)`` is what ``config.json`` holds.

    Each field carries its help text and its check (:class:`Rule`): the command line's options
    (``python -m cnnlab train --help``), the Train page's widgets and :meth:`validate` are made
    from them.
    """

    model: str = setting("lenet", N_("model name (python -m cnnlab models)"), Rule("text", why=N_(", e.g. 'lenet'")),
                         label=N_("model"))
    dataset: str = setting("digits", N_("dataset: shapes, digits, mnist, fashion_mnist, cifar10, cifar100, "
                                        "caltech101, folder"), Rule("text", why=N_(", e.g. 'digits'")), flag="--data",
                           label=N_("dataset"))
    epochs: int = setting(3, N_("passes over the training set"), _whole(1, 1000), label=N_("epochs"))
    batch_size: int = setting(64, N_("images per training step (with torchrun: in all, shared by the processes)"),
                              _whole(1, 4096), label=N_("batch size"))
    optimizer: str = setting("adam", N_("optimizer (momentum: SGD with --momentum)"),
                             Rule.one_of(OPTIMIZER_LABELS), label=N_("optimizer"))
    lr: float = setting(1e-3, N_("learning rate (typical: 0.1 for SGD, 0.001 for Adam; try 100 to see a divergence)"),
                        Rule("float", 0, 1e6, lo_open=True, why=N_(" (typical: 0.1 for SGD, 0.001 for Adam)")),
                        label=N_("learning rate"))
    momentum: float = setting(0.9, N_("momentum of the 'momentum' optimizer (seed 003: 0.5; seed 002: 0.99)"),
                              Rule("float", 0, 0.999), label=N_("momentum"))
    nesterov: bool = setting(False, N_("Nesterov momentum (with the 'momentum' optimizer)"))
    init: str = setting("default", N_("weight initialisation: default (the model's own) | kaiming (seed 000) | "
                                      "xavier (seed 004)"), Rule.one_of(INIT_LABELS), label=N_("initialisation"))
    weight_decay: float = setting(0.0, N_("L2 penalty of the optimiser"), Rule("float", 0, 1), label=N_("weight decay"))
    scheduler: str = setting("none", N_("learning-rate schedule (step: StepLR with --step-size and --gamma)"),
                             Rule.one_of(SCHEDULER_LABELS), label=N_("scheduler"))
    step_size: int = setting(7, N_("StepLR: epochs between decays (seed 001: 7)"), _whole(1, 1000),
                             label=N_("step size"))
    gamma: float = setting(0.1, N_("StepLR: decay factor"), Rule("float", 0, 1, lo_open=True),
                           label=N_("gamma (StepLR decay)"))
    augment: str = setting("none", N_("batch augmentation preset (the Data page shows what each does)"),
                           Rule.one_of(AUGMENT_LABELS), label=N_("augmentation preset"))
    subset: int | None = setting(None, N_("train on this many images (class-balanced)"), _whole(1, 100_000_000),
                                 label=N_("subset"))
    val_split: str = setting("holdout", N_("validate on a hold-out of the training set (holdout) or on the "
                                           "dataset's official test split (test), as the seeds do"),
                             Rule.one_of(VAL_SPLIT_LABELS), label=N_("validation split"))
    val_fraction: float = setting(0.2, N_("share of the training data held out for validation"),
                                  Rule("float", 0, 0.95, lo_open=True), label="val_fraction")
    # 2**31 - 1 at most: every seeded generator takes it, and so does the page's number box (a
    # browser keeps whole numbers exact only up to 2**53).
    seed: int = setting(0, N_("seed of the split, the initialisation, the shuffling and the augmentation "
                              "(0 to 2147483647)"), _whole(0, 2**31 - 1), label=N_("seed"))
    device: str = setting("auto", N_("auto, cpu, cuda or mps"), Rule("text"), label=N_("device"))
    num_classes: int | None = setting(None, N_("output classes (default: the dataset's)"), _whole(1, 100_000))
    in_channels: int | None = setting(None, N_("input channels of the model (default: the data's; 3 for ImageNet "
                                               "weights; other data is adapted: grey repeated, colour to luma)"),
                                      _whole(1, 64))
    input_size: int | tuple[int, int] | None = setting(
        None, N_("resize images to this size for the model: 32 or 32x28 (default: a fixed-input model's own "
                 "size, else the data's)"), accepts=("whole", "size", "null"))
    data_root: str | None = setting(None, N_("where the dataset files are (default: data/)"))
    data_options: dict[str, Any] = setting(
        help=N_("dataset options as KEY=VALUE (repeatable), e.g. n_train=2000"), factory=dict, flag="--data-option")
    log_every_steps: int | None = setting(None, N_("emit a step event every N steps (default: by time)"),
                                          _whole(1, 1_000_000))
    log_interval_s: float = setting(0.5, N_("seconds between step events"), Rule("float", 0, 3600))
    xray: bool = setting(True, N_("record the X-ray every few steps: per layer the weight and gradient norms and the "
                                  "update-to-weight ratio, per activation the dead or saturated units (a few percent "
                                  "of the training time)"),
                         label=N_("training X-ray"))
    xray_every: int = setting(0, N_("steps between two X-ray samples (0: chosen from the length of the training)"),
                              _whole(0, 1_000_000), label=N_("X-ray every (steps)"))
    max_steps: int | None = setting(None, N_("stop (as finished) after this many steps"), _whole(1, 100_000_000),
                                    label=N_("max steps"))
    eval_batch_size: int | None = setting(None, N_("validation batch (default: twice the batch size, at most 1024)"),
                                          _whole(1, 4096), label=N_("eval batch size"))
    pretrained: bool = setting(False, N_("start from ImageNet weights (transfer-learning models)"))
    freeze: str = setting("none", N_("features: keep the pretrained features fixed; none: fine-tune every layer"),
                          Rule.one_of(FREEZE_LABELS), label=N_("freeze mode"))
    init_from: str | None = setting(None, N_("start from this run's best weights: every layer whose shape fits is "
                                             "reused, the others (a new head for another class count) start fresh"))
    tag: str = setting("", N_("a label kept with the run, e.g. the comparison or lesson it belongs to"))
    threads: int | None = setting(None, N_("CPU threads for training (default: one per core the other processes "
                                           "leave free, adapted while training)"), _whole(1, 1024),
                                  label=N_("threads"))
    sync_bn: bool = setting(False, N_("with torchrun on GPUs: batch-norm statistics over the whole batch of all the "
                                      "processes (SyncBatchNorm) instead of each process's share"))

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` for the first out-of-range setting; return ``self``."""
        for f in fields(self):
            rule, value = f.metadata["rule"], getattr(self, f.name)
            if rule is not None and not (value is None and f.default is None):
                rule.check(label(f.name), value)
            if f.metadata["accepts"] == ("bool",) and not isinstance(value, bool):
                raise ConfigError(_("{name} must be true or false, got {value!r}.").format(name=f.name, value=value))
        if not isinstance(self.data_options, dict):
            raise ConfigError(_("data_options must be a mapping of dataset options, got {value!r}.").format(
                value=self.data_options))
        check_subset(self.subset, self.num_classes)
        if self.input_size is not None:
            size = (self.input_size,) * 2 if isinstance(self.input_size, int) else tuple(self.input_size)
            if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 1024 for v in size):
                raise ConfigError(_("input size must be one or two whole numbers in 8..1024, got {value!r}.").format(
                    value=self.input_size))
        self._check_starting_weights()
        return self

    def _check_starting_weights(self) -> None:
        """Pretrained weights, freezing, an initialisation and a run to start from: which go together."""
        try:
            spec = get_spec(self.model)
        except UnknownModelError as e:
            raise ConfigError(str(e)) from e
        if (self.pretrained or self.freeze != "none") and spec.family != "transfer":
            raise ConfigError(
                _("pretrained weights and freezing apply to the transfer-learning models ({models}); {model} is "
                  "trained from scratch. For another prepared model, set requires_grad=False yourself and pass it "
                  "to fit(config, model=...).").format(models=", ".join(list_models(family="transfer")),
                                                       model=self.model)
            )
        if self.init != "default" and (self.pretrained or self.init_from):
            raise ConfigError(_("init={init!r} would overwrite the weights this training starts from; keep "
                                "init='default' with pretrained weights or init_from.").format(init=self.init))
        if self.freeze != "none" and not self.pretrained:
            raise ConfigError(_("freeze='features' keeps pretrained features fixed: it needs pretrained=True."))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config from ``asdict`` output (e.g. a run's ``config.json``); unknown keys are ignored.

        Each value is checked against the :data:`KINDS` its setting accepts (as JSON gives them
        back: a tuple comes back as a list); the first wrong one raises :class:`ConfigError`
        naming the setting. Ranges are :meth:`validate`'s business.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(_("a training config must be a JSON object of settings, got {kind}.").format(
                kind=type(d).__name__))
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            value, accepts = d[f.name], f.metadata["accepts"]
            wrong = wrong_kind(f.name, value)
            if wrong is not None:
                raise ConfigError(_("setting {name!r} should be {wanted}, got {value}.").format(
                    name=f.name, wanted=wrong[0], value=wrong[1]))
            kw[f.name] = tuple(value) if "size" in accepts and isinstance(value, list) else value
        return cls(**kw)


def check_subset(subset: int | None, num_classes: int | None, dataset: str = "") -> None:
    """Refuse a class-balanced subset of fewer images than classes: it needs one image per class.

    The one copy of this rule: :meth:`TrainConfig.validate` (with ``num_classes`` set), the Train
    page (the dataset's classes, before a job starts) and the trainer (the loaded data's) call it."""
    if subset is not None and num_classes is not None and subset < num_classes:
        text = _("subset={subset} is smaller than the {classes} classes of {dataset}: a stratified subset needs at "
                 "least one image per class; ask for at least {classes} images, or for all.") if dataset else \
            _("subset={subset} is smaller than the {classes} classes: a stratified subset needs at least one image "
              "per class; ask for at least {classes} images, or for all.")
        raise ConfigError(text.format(subset=subset, classes=num_classes, dataset=dataset))


# --------------------------------------------------------------------------------------
# What the command line and the Train page read about a setting
# --------------------------------------------------------------------------------------

_FIELDS: dict[str, Field] = {f.name: f for f in fields(TrainConfig)}


def _meta(name: str) -> Mapping[str, Any]:
    if name not in _FIELDS:
        raise KeyError(f"TrainConfig has no setting {name!r}")
    return _FIELDS[name].metadata


def _rule(name: str, *kinds: str) -> Rule:
    rule = _meta(name)["rule"]
    if rule is None or rule.kind not in kinds:
        raise KeyError(f"TrainConfig.{name} is not a setting of kind {' or '.join(kinds)}")
    return rule


def help_text(name: str) -> str:
    """The setting's help, translated: the command line's ``--help`` and the Train page's tooltips."""
    return _(_meta(name)["help"])


def label(name: str) -> str:
    """What messages call the setting, translated (its field name with spaces, unless it has a label)."""
    own = _meta(name)["label"]
    return _(own) if own else name.replace("_", " ")


def wrong_kind(name: str, value: Any) -> tuple[str, str] | None:
    """When ``value`` (as JSON gives it back) is of no :data:`KINDS` the setting ``name`` accepts: what it
    should be (translated, "a whole number or null") and the value as a message shows it (``repr``, at most
    60 characters). None when it fits, or when there is no such setting (unknown keys are ignored)."""
    f = _FIELDS.get(name)
    if f is None or any(KINDS[k][0](value) for k in f.metadata["accepts"]):
        return None
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return either([_(KINDS[k][1]) for k in f.metadata["accepts"]]), shown


def kinds(name: str) -> tuple[str, ...]:
    """The :data:`KINDS` of value the setting takes (``("whole", "null")`` for an optional whole number)."""
    return _meta(name)["accepts"]


def bounds(name: str) -> tuple[int | float, int | float]:
    """A number setting's lowest and highest value, as its type (a number box's min and max). An open
    bound (the learning rate is > 0) is given as is: :meth:`TrainConfig.validate` refuses it itself."""
    rule = _rule(name, "int", "float")
    as_type = int if rule.kind == "int" else float
    return as_type(rule.lo), as_type(rule.hi)


def choices(name: str) -> tuple[str, ...]:
    """The values a choice setting takes, in the order a menu shows them."""
    return _rule(name, "choice").choices


def choice_labels(name: str) -> dict[str, str]:
    """Each value of a choice setting -> the label a person reads, translated (the Train page's menus)."""
    rule = _rule(name, "choice")
    return {choice: _(text) for choice, text in zip(rule.choices, rule.labels)}
