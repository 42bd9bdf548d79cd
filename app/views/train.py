"""Train: configure a short training, run it in a background job, watch it live."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import streamlit as st
from PIL import Image

from app import xray_view
from app.common import (
    cached_dataset,
    cached_made,
    dataset_choices,
    job_label,
    remember,
    show_error,
    training_charts,
)
from app.share import setting_shown
from cnnlab.config import TrainConfig, bounds, check_subset, choice_labels, choices, help_text, label
from cnnlab.data import DatasetStatus, class_count, has_test_split, list_datasets, maker
from cnnlab.data.gallery import to_pil
from cnnlab.data.pipeline import AUGMENT_DESCRIPTIONS, default_input_size, preview
from cnnlab.errors import CnnlabError
from cnnlab.i18n import N_, _, fmt, pgettext
from cnnlab.jobs import FINAL_STATES, get_manager
from cnnlab.models import ModelSpec, get_spec, list_models
from cnnlab.models.pretrained import weights_status
from cnnlab.runs import list_runs, load_run, run_config, run_label

st.title(_("Train"))
st.write(_("Pick a network and a dataset and train for a few minutes. Training runs in the "
           "background on the server: switch pages, reload the tab or open a second one, it keeps "
           "going. Each finished run is saved and appears on the **Runs** page."))

NO_RUN = "none"  # "Start from a run": the option for a fresh start
FORM = "train-form"  # the page's settings, kept for the session under a non-widget key
DATA_OPTIONS = "train-data-options"  # {"dataset": name, "options": {...}} copied from a run
COPY_MSG = "train-copy-msg"
HANDOFF = "train-handoff"  # set by the Your images page: a dataset to open with the small-data settings
SUGGESTED = "train-suggested"  # (dataset, reasons, transfer?) of the small-data settings applied last
MADE_SIZE = "train-made-size"  # the size your images are decoded at (the data option image_size)
MADE_SIZES = [32, 64, 96, 128, 224]
TRANSFER_ORDER = ("resnet18", "alexnet", "vgg16")  # the transfer model offered first whose weights are here
LIVE_JOB = "train-job"  # the job the live view follows: the one this session started or picked last
NO_JOB = 0  # LIVE_JOB after the dataset changed: no job shown until one starts or is picked (ids start at 1)
# A job's state (cnnlab.jobs.JOB_STATES) and a dataset's (cnnlab.data.dataset_status) in words, shown via _()
JOB_STATES = {"queued": N_("queued"), "running": N_("running"), "finished": N_("finished"),
              "cancelled": N_("cancelled"), "diverged": N_("diverged"), "failed": N_("failed")}
DATA_STATES = {"present": N_("present"), "downloadable": N_("downloadable"), "missing": N_("missing")}


def state_word(state: str, words: dict[str, str] = JOB_STATES) -> str:
    """A job's state (with ``words=DATA_STATES``: a dataset's) in the reader's language; an unknown one as it is."""
    return _(words[state]) if state in words else state


def default_lr(optimizer: str) -> float:
    return 0.01 if optimizer in ("sgd", "momentum") else 0.001


def size_text(size: Any) -> str:
    if size is None:
        return ""
    if isinstance(size, int):
        return str(size)
    h, w = size
    return str(h) if h == w else f"{h}x{w}"


def parse_size(text: str) -> Any:
    """"" -> None, "96" -> 96, "32x28" -> (32, 28); anything else is passed on as typed, so that
    TrainConfig.validate says what is wrong with it."""
    text = (text or "").strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+)\s*(?:[x×,]\s*(\d+))?", text)
    if m is None:
        return text
    h = int(m.group(1))
    return h if m.group(2) is None or int(m.group(2)) == h else (h, int(m.group(2)))


def form_values(c: TrainConfig) -> dict[str, Any]:
    """The widgets' values for a config (the defaults, or a run's settings to copy)."""
    return {
        "train-model": c.model, "train-data": c.dataset, "train-root": c.data_root or "",
        "train-epochs": int(c.epochs), "train-batch": int(c.batch_size), "train-opt": c.optimizer,
        "train-lr": float(c.lr), "train-momentum": float(c.momentum), "train-nesterov": bool(c.nesterov),
        "train-init": c.init, "train-wd": float(c.weight_decay), "train-sched": c.scheduler,
        "train-step": int(c.step_size), "train-gamma": float(c.gamma), "train-aug": c.augment,
        "train-subset": int(c.subset or 0), "train-seed": int(c.seed), "train-val": c.val_split,
        "train-valfrac": float(c.val_fraction), "train-channels": int(c.in_channels or 0),
        "train-size": size_text(c.input_size), "train-pretrained": bool(c.pretrained), "train-freeze": c.freeze,
        "train-init-from": c.init_from or NO_RUN, "train-xray": bool(c.xray),
    }


DEFAULTS = form_values(TrainConfig())
# Settings a run may have that this page has no widget for: copying a run says which it leaves out.
NOT_ON_PAGE = ("device", "num_classes", "log_every_steps", "log_interval_s", "max_steps", "eval_batch_size", "tag",
               "threads", "xray_every")


_DEFAULT = object()


def field(col, kind: str, label: str, *args, key: str, default=_DEFAULT, **kwargs):
    """A settings widget (``col.<kind>(label, *args, ...)``) kept across page switches and shareable by link
    (:mod:`app.share`): a value from a link or an older session is checked against the widget's options or
    bounds first; a setting the link hides is not drawn and keeps its value."""
    options = bounds = None
    if kind in ("selectbox", "radio"):
        options = args[0] if args else kwargs["options"]
    elif kind == "checkbox":
        options = (True, False)
    elif kind == "number_input":
        lo = kwargs.get("min_value", args[0] if args else None)
        hi = kwargs.get("max_value", args[1] if len(args) > 1 else None)
        bounds = (lo, hi)
    k = remember(FORM, key, DEFAULTS[key] if default is _DEFAULT else default, options=options, bounds=bounds)
    if not setting_shown(k):
        return st.session_state[k]
    return getattr(col, kind)(label, *args, key=k, **kwargs)


def number(col, label: str, name: str, *, key: str, **kwargs) -> Any:
    """A number box for the TrainConfig setting ``name``: its min, max and help are the setting's."""
    lo, hi = bounds(name)
    return field(col, "number_input", label, lo, hi, key=key, help=help_text(name), **kwargs)


def menu(col, kind: str, label: str, name: str, *, key: str, **kwargs) -> Any:
    """A selectbox or radio of the TrainConfig setting ``name``: its choices, their labels and its help."""
    return field(col, kind, label, choices(name), format_func=choice_labels(name).get, key=key,
                 help=help_text(name), **kwargs)


def _optimizer_changed() -> None:
    """A learning rate left at the old optimizer's typical value follows the new optimizer."""
    old = st.session_state[FORM].get("train-opt")
    if old and st.session_state.get("train-lr") == default_lr(old):
        st.session_state["train-lr"] = default_lr(st.session_state["train-opt"])


def _copy_from_run() -> None:
    run_id = st.session_state.get("train-copy-run")
    try:
        config = run_config(load_run(run_id))
        get_spec(config.model)  # a model this version of cnnlab still has
    except CnnlabError as err:
        st.session_state[COPY_MSG] = ("error", err)  # shown with show_error where the form is drawn
        return
    values = form_values(config)
    st.session_state.update(values)
    st.session_state[FORM].update(values)
    st.session_state[DATA_OPTIONS] = {"dataset": config.dataset, "options": dict(config.data_options)}
    size = config.data_options.get("image_size")
    if size in MADE_SIZES:  # your images, decoded at the size the run used
        st.session_state[MADE_SIZE] = st.session_state[FORM][MADE_SIZE] = size
    default = TrainConfig()
    left = [f"{n}={getattr(config, n)!r}" for n in NOT_ON_PAGE if getattr(config, n) != getattr(default, n)]
    st.session_state[COPY_MSG] = ("ok", _("Copied the settings of {run}. Not set on this page, so not copied: "
                                          "{settings}.").format(run=run_id, settings=", ".join(left)) if left
                                  else _("Copied the settings of {run}.").format(run=run_id))


def _reset() -> None:
    values = {k: v for k, v in DEFAULTS.items() if k != "train-pretrained"}  # its default depends on the weights
    st.session_state.update(values)
    st.session_state[FORM] = dict(values)
    st.session_state.pop("train-pretrained", None)
    st.session_state.pop(DATA_OPTIONS, None)
    st.session_state.pop(COPY_MSG, None)
    st.session_state.pop(SUGGESTED, None)
    st.session_state[FORM].pop(MADE_SIZE, None)
    st.session_state.pop(MADE_SIZE, None)


def made_dataset(name: str | None) -> maker.MadeDataset | None:
    """The dataset made from your own images called ``name``, or None (any other dataset)."""
    return maker.find_made(name) if name else None


def transfer_available() -> str | None:
    """The transfer-learning model offered for small datasets: the first whose ImageNet weights are on disk."""
    for name in TRANSFER_ORDER:
        if f"{name}_transfer" in list_models() and weights_status(name)[0] == "present":
            return f"{name}_transfer"
    return None


def apply_suggestion(dataset: str, transfer: bool = False, automatic: bool = False) -> None:
    """Fill the form with cnnlab.data.maker's settings for a small image folder (a callback: it runs
    before the widgets are drawn). ``automatic`` (on picking the dataset): only for a small one."""
    made = made_dataset(dataset)
    if made is None or (automatic and made.total > maker.SMALL_DATASET_IMAGES):
        return
    suggestion = maker.suggest_training(list(made.counts.values()), transfer_available() if transfer else None)
    s = suggestion.settings
    values = {
        "train-data": dataset, "train-model": s["model"], "train-size": size_text(s["input_size"]),
        "train-aug": s["augment"], "train-epochs": s["epochs"], "train-batch": s["batch_size"],
        "train-opt": s["optimizer"], "train-lr": s["lr"], "train-sched": s["scheduler"], "train-val": s["val_split"],
        "train-valfrac": s["val_fraction"], "train-pretrained": s["pretrained"], "train-freeze": s["freeze"],
        "train-init": "default", "train-init-from": NO_RUN, "train-subset": 0, "train-channels": 0,
        MADE_SIZE: s["data_options"]["image_size"],
    }
    if not suggestion.transfer:  # a transfer model picked later keeps its own default for the weights
        del values["train-pretrained"], values["train-freeze"]
    st.session_state.update(values)
    st.session_state[FORM].update(values)
    st.session_state.pop(DATA_OPTIONS, None)
    st.session_state[SUGGESTED] = (dataset, suggestion.why, suggestion.transfer)


def _dataset_changed() -> None:
    """Switching to a small dataset of your own images applies the small-data settings."""
    apply_suggestion(st.session_state.get("train-data"), automatic=True)
    forget_ended_job()


def forget_ended_job() -> None:
    """Another dataset, or "Train on it": a job that has ended leaves the live view, whose curves and message
    would otherwise read as the new training's; a job still running or queued stays."""
    job = get_manager().get(st.session_state.get(LIVE_JOB, NO_JOB))
    if job is None or job.done:
        st.session_state[LIVE_JOB] = NO_JOB
        st.session_state.pop("train-live-job", None)


FEW_VAL_IMAGES = 30  # fewer validation images than this: every image is more than 3 points of accuracy


def made_box(made: maker.MadeDataset, val_fraction: float, seed: int) -> None:
    """What the trainer will do with your images: the hold-out split, the settings applied and why,
    and the choice of transfer learning when ImageNet weights are here."""
    with st.container(border=True):
        suggested = st.session_state.get(SUGGESTED)
        if suggested and suggested[0] == made.key:
            st.markdown(_("**Settings for a small image folder applied** (change any of them below):"))
            st.markdown("\n".join(f"- {why}" for why in suggested[1]))
        else:
            st.markdown(_("**{name}: your own images**, {n} in {classes} classes.").format(
                name=made.key, n=made.total, classes=len(made.classes)))
        split = maker.holdout_counts(made, val_fraction, seed)  # the loader's own split, file by file
        n_train, n_val = sum(t for t, v in split), sum(v for t, v in split)
        st.caption(_("Hold-out: about {fraction} of every class (seed {seed}), {n_val} validation images the "
                     "network never trains on, {n_train} training images — {per_class} (train/validation). Each "
                     "image is held out or not from its name, so images added later never move one a run trained "
                     "on into validation.").format(
            fraction=fmt(val_fraction, ".0%"), seed=seed, n_val=n_val, n_train=n_train,
            per_class=", ".join(f"{c} {t}/{v}" for c, (t, v) in zip(made.classes, split))))
        if 0 < n_val < FEW_VAL_IMAGES:
            st.warning(_("Only {n_val} validation images: each is {points} points of accuracy, so the accuracy moves "
                         "in steps of {points} points and one lucky image changes it. Add images on the **Your "
                         "images** page (about {per_class} per class give {enough} validation images) for a measure "
                         "a class can trust.").format(n_val=n_val, points=fmt(100 / n_val, ".0f"),
                                                      per_class=FEW_VAL_IMAGES // len(made.classes) * 5,
                                                      enough=FEW_VAL_IMAGES), icon=":material/warning:")
        b1, b2 = st.columns(2)
        b1.button(_("Small-data settings"), key="train-suggest", on_click=apply_suggestion, args=(made.key,),
                  help=_("A small CNN at 32x32, augmentation on, epochs for about a minute on a CPU."))
        transfer = transfer_available()
        if transfer:
            b2.button(_("Transfer learning ({model})").format(model=get_spec(transfer).display_name),
                      key="train-suggest-transfer", on_click=apply_suggestion, args=(made.key, True),
                      help=_("Start from ImageNet weights, keep the features frozen, train only the new last layer."))
        else:
            b2.caption(_("Transfer learning: no ImageNet weights on this machine (`python -m cnnlab fetch resnet18` "
                         "downloads them); a small CNN trained from scratch works well on a few hundred images."))
        if made.total > maker.SMALL_DATASET_IMAGES:
            st.caption(_("More than {n} images: not a small dataset any more, so these settings are applied only "
                         "when you press the button.").format(n=fmt(maker.SMALL_DATASET_IMAGES, ",")))


def start_runs() -> dict[str, Any]:
    """The runs a training can start from (those with a checkpoint), by id, newest first."""
    return {r.run_id: r for r in list_runs() if r.has_checkpoint and not r.damaged}


def copy_row() -> None:
    runs = [r for r in list_runs() if not r.damaged]
    c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
    if runs:
        labels = {r.run_id: run_label(r) for r in runs}
        c1.selectbox(_("Copy settings from a run"), list(labels), format_func=labels.get, key="train-copy-run",
                     help=_("Fills the form below with the settings the run was trained with."))
        c2.button(_("Copy settings"), key="train-copy", on_click=_copy_from_run, width="stretch")
    else:
        c1.caption(_("Copy settings from a run: no run yet (finished trainings appear here)."))
    c3.button(_("Reset"), key="train-reset", on_click=_reset, width="stretch",
              help=_("Back to the page's default settings."))
    msg = st.session_state.get(COPY_MSG)
    if msg:
        if msg[0] == "error":
            show_error(msg[1], context=_("Could not copy the run's settings"))
        else:
            st.caption(msg[1])


@dataclass
class DataPick:
    """The dataset picked on the form, and what goes with it."""

    name: str
    status: DatasetStatus
    root: str | None  # the image folder of the 'folder' dataset
    made: maker.MadeDataset | None  # set for a dataset made from your own images
    options: dict[str, Any]  # the dataset options (your images' size, or a copied run's)


def kept(key: str) -> Any:
    """A widget's value before the widget is drawn this run: the session's, else the form's, else the default."""
    return st.session_state.get(key, st.session_state[FORM].get(key, DEFAULTS[key]))


def pick_model(col) -> str:
    names = [n for n in list_models() if not get_spec(n).adaptive]
    current = st.session_state.get("train-model", st.session_state[FORM].get("train-model"))
    if current and current not in names:  # an -adaptive variant, from a copied run
        names.append(current)
    return field(col, "selectbox", _("Model"), names, key="train-model", help=help_text("model"),
                 format_func=lambda n: _("{name} · {key} · transfer learning").format(
                     name=get_spec(n).display_name, key=n) if get_spec(n).family == "transfer"
                 else f"{get_spec(n).display_name} · {n}")


def pick_data(col) -> DataPick:
    """The dataset, and its folder or the size your images are decoded at; the small-data box for your images."""
    datasets, statuses = dataset_choices()
    picked = st.session_state.get("train-data")
    if isinstance(picked, str) and picked not in datasets and picked.split(" — ")[0] in datasets:
        # the label of the dataset picked earlier, from before its state changed (e.g. downloaded meanwhile)
        st.session_state["train-data"] = picked.split(" — ")[0]
    yours = {n for n in datasets if maker.is_made(n)}
    dataset = field(col, "selectbox", _("Dataset"), datasets, key="train-data", help=help_text("dataset"),
                    on_change=_dataset_changed,
                    format_func=lambda n: (_("{name} — your images") if statuses[n].state == "present"
                                           else _("{name} — your images, too few to train")).format(name=n)
                    if n in yours else f"{n} — {state_word(statuses[n].state, DATA_STATES)}")
    status = statuses[dataset]
    data_root = None
    made = made_dataset(dataset) if dataset in yours else None
    if made is not None:
        own_size = made.image_size if made.image_size in MADE_SIZES else maker.DEFAULT_IMAGE_SIZE
        col.selectbox(_("Your images decoded at"), MADE_SIZES, key=remember(FORM, MADE_SIZE, own_size),
                      format_func=lambda v: f"{v}x{v}",
                      help=_("The square size the images are stored in memory at (the dataset option image_size): "
                             "the model's input size for a small CNN, 224 for transfer learning."))
        if status.state != "present":
            col.caption(status.message)
    elif dataset == "folder":
        data_root = field(col, "text_input", _("Folder (class subfolders, optionally train/, val/ and test/)"),
                          key="train-root", help=help_text("data_root")) or None
    elif status.state != "present":
        col.caption(status.message)
    copied = st.session_state.get(DATA_OPTIONS) or {}
    data_options = dict(copied.get("options") or {}) if copied.get("dataset") == dataset else {}
    if made is not None:
        data_options["image_size"] = int(st.session_state[MADE_SIZE])
        made_box(made, float(kept("train-valfrac")), int(kept("train-seed")))
    return DataPick(dataset, status, data_root, made, data_options)


def optimisation() -> dict[str, Any]:
    """Epochs, batch, optimizer, learning rate, schedule, augmentation, subset and seed."""
    c1, c2, c3, c4 = st.columns(4)
    epochs = number(c1, _("Epochs"), "epochs", key="train-epochs")
    batch = number(c2, _("Batch size"), "batch_size", key="train-batch")
    optimizer = menu(c3, "selectbox", _("Optimizer"), "optimizer", key="train-opt", on_change=_optimizer_changed)
    # no max: a rate TrainConfig refuses is said by its message (and a divergence at 100 is a lesson)
    lr = field(c4, "number_input", _("Learning rate"), min_value=bounds("lr")[0], step=0.0001, format="%g",
               key="train-lr", help=help_text("lr"))
    c1, c2, c3, c4 = st.columns(4)
    scheduler = menu(c1, "selectbox", _("Schedule"), "scheduler", key="train-sched")
    augment = menu(c2, "selectbox", _("Augmentation"), "augment", key="train-aug")
    subset = field(c3, "number_input", _("Training images (0 = all)"), 0, bounds("subset")[1], step=40,
                   key="train-subset",
                   help=_("A stratified subset, as in lecture 003's 160-image experiment on overfitting."))
    seed = number(c4, _("Seed"), "seed", key="train-seed")
    return {"epochs": int(epochs), "batch_size": int(batch), "optimizer": optimizer, "lr": float(lr),
            "scheduler": scheduler, "augment": augment, "subset": int(subset) or None, "seed": int(seed)}


def transfer_weights(model: str) -> tuple[dict[str, Any], str | None]:
    """A transfer model's ImageNet weights and freezing: the settings, and the message when the
    weights asked for cannot be had (None: nothing is missing)."""
    state, message = weights_status(model.removesuffix("_transfer"))
    c1, c2 = st.columns(2)
    # by default a transfer model starts from the ImageNet weights, when they can be had
    pretrained = field(c1, "checkbox", _("Start from ImageNet weights"), key="train-pretrained",
                       default=state != "missing", help=help_text("pretrained"))
    freeze = menu(c2, "selectbox", _("Pretrained layers"), "freeze", key="train-freeze", disabled=not pretrained)
    if state != "present":
        (st.warning if pretrained else st.caption)(message)
    settings = {"pretrained": bool(pretrained), "freeze": freeze if pretrained else "none"}
    return settings, message if pretrained and state == "missing" else None


def start_from_run(model: str) -> str | None:
    """The run whose weights the training starts from (None: a fresh start)."""
    starts = start_runs()
    current = st.session_state.get("train-init-from", st.session_state[FORM].get("train-init-from", NO_RUN))
    gone = current if current != NO_RUN and current not in starts else None
    if gone:  # a copied run's start, or a run deleted since: no checkpoint to start from any more
        st.session_state["train-init-from"] = st.session_state[FORM]["train-init-from"] = NO_RUN
    c1, c2 = st.columns([2, 2], vertical_alignment="bottom")
    init_from = field(c1, "selectbox", _("Start from a run"), [NO_RUN, *starts], key="train-init-from",
                      format_func=lambda r: _("none (a fresh start)") if r == NO_RUN else
                      run_label(starts[r]) if r in starts else r,
                      help=help_text("init_from"))
    c2.caption(_("Starting from a run: every layer whose shape fits is reused; the head for a new class count "
                 "starts fresh (lecture 002: a CIFAR-100 run fine-tuned on CIFAR-10)."))
    if gone:
        c1.caption(_("Run {run} has no checkpoint here any more: starting fresh.").format(run=gone))
    if init_from == NO_RUN:
        return None
    run_model = starts[init_from].meta.get("model", "?")
    if run_model != model:
        c1.warning(_("Run {run} trained {run_model}, not {model}: only the layers with the same name and shape are "
                     "reused.").format(run=init_from, run_model=run_model, model=model))
    return init_from


def input_and_init(spec: ModelSpec, dataset: str, from_weights: bool) -> tuple[dict[str, Any], tuple[int, int]]:
    """Input size and channels, initialisation and weight decay; also the input size the model gets by default."""
    data_spec = next((s for s in list_datasets() if s.name == dataset), None)
    data_shape = data_spec.input_shape if data_spec is not None else spec.input_shape
    own = default_input_size(spec, data_shape[1:])
    c1, c2, c3, c4 = st.columns(4)
    size_typed = field(c1, "text_input", _("Input size (blank = default)"), key="train-size",
                       placeholder=f"{own[0]}x{own[1]}", help=help_text("input_size"))
    designed = tuple(spec.input_shape[1:])
    if own != designed:
        said = _("Default: {size} (the data's size; the model is designed for {designed}).")
    elif spec.fixed_input or spec.family == "transfer":
        said = _("Default: {size} (the model's own size).")
    else:
        said = _("Default: {size} (the data's size).")
    c1.caption(said.format(size=f"{own[0]}x{own[1]}", designed=f"{designed[0]}x{designed[1]}"))
    channel_opts = [0, 1, 3]
    current = st.session_state.get("train-channels", st.session_state[FORM].get("train-channels"))
    if current and current not in channel_opts:  # a copied run's
        channel_opts.append(current)
    # the label of 0 names no number: a label that stays with the model
    channels = field(c2, "selectbox", _("Input channels"), channel_opts, key="train-channels",
                     help=help_text("in_channels"),
                     format_func=lambda c: pgettext("input channels", "The model's own") if c == 0
                     else _("1 (grey)") if c == 1 else _("3 (RGB)") if c == 3 else str(c))
    if not channels:
        c2.caption((_("The model's own: {n} (grey).") if spec.input_shape[0] == 1
                    else _("The model's own: {n} (RGB).")).format(n=spec.input_shape[0]))
    init = menu(c3, "selectbox", _("Weight initialisation"), "init", key="train-init", disabled=from_weights)
    if from_weights:  # the weights it starts from replace the initialisation (fresh layers: the model's own)
        init = "default"
        c3.caption(_("Starts from trained weights: new layers get the model's own initialisation."))
    weight_decay = number(c4, _("Weight decay"), "weight_decay", key="train-wd", step=0.0001, format="%g")
    return {"input_size": parse_size(size_typed), "in_channels": int(channels) or None, "init": init,
            "weight_decay": float(weight_decay)}, own


def optimizer_details(optimizer: str, scheduler: str) -> dict[str, Any]:
    """Momentum and Nesterov (for SGD + momentum), StepLR's step and decay (for the step schedule)."""
    c1, c2, c3, c4 = st.columns(4)
    uses_momentum = optimizer == "momentum"
    momentum = number(c1, _("Momentum"), "momentum", key="train-momentum", step=0.05, format="%g",
                      disabled=not uses_momentum)
    nesterov = field(c2, "checkbox", _("Nesterov"), key="train-nesterov", disabled=not uses_momentum,
                     help=help_text("nesterov"))
    step_size = number(c3, _("StepLR step size"), "step_size", key="train-step", disabled=scheduler != "step")
    gamma = number(c4, _("StepLR: decay factor"), "gamma", key="train-gamma", step=0.05, format="%g",
                   disabled=scheduler != "step")
    if not uses_momentum:
        c1.caption(_("Momentum and Nesterov apply to the optimizer “{optimizer}”.").format(
            optimizer=choice_labels("optimizer")["momentum"]))
    return {"momentum": float(momentum), "nesterov": bool(nesterov), "step_size": int(step_size),
            "gamma": float(gamma)}


def validation(data: DataPick) -> dict[str, Any]:
    """What the training validates on: a hold-out (and its share) or the official test split; and whether the
    training X-ray is recorded."""
    c1, c2, c3 = st.columns([2, 1, 1])
    val_split = menu(c1, "radio", _("Validate on"), "val_split", horizontal=True, key="train-val")
    val_fraction = number(c2, _("Hold-out fraction"), "val_fraction", key="train-valfrac", step=0.05, format="%g",
                          disabled=val_split != "holdout")
    xray = field(c3, "checkbox", label("xray")[:1].upper() + label("xray")[1:], key="train-xray",
                 help=help_text("xray"))
    if val_split == "test" and not has_test_split(data.name, data.root, data.options):
        c1.warning(_("{dataset} has no official test split: validate on a hold-out of the training set.").format(
            dataset=data.name))
    if data.options:
        c3.caption((_("Dataset options: {options}") if data.made is not None
                    else _("Dataset options (copied from a run): {options}")).format(
            options=", ".join(f"{k}={v}" for k, v in data.options.items())))
    return {"val_split": val_split, "val_fraction": float(val_fraction), "xray": bool(xray)}


def advanced(model: str, data: DataPick, chosen: dict[str, Any]) -> tuple[dict[str, Any], tuple[int, int]]:
    """The Advanced expander; ``chosen``: the settings above it. Returns its settings and the model's default input size."""
    with st.expander(_("Advanced: start from a run, input size and channels, momentum, initialisation, validation, "
                       "X-ray")):
        init_from = start_from_run(model)
        inputs, own = input_and_init(get_spec(model), data.name, bool(init_from or chosen["pretrained"]))
        details = optimizer_details(chosen["optimizer"], chosen["scheduler"])
        checks = validation(data)
    return {"init_from": init_from, **inputs, **details, **checks}, own


def model_size(input_size: Any, own: tuple[int, int]) -> tuple[int, int]:
    """The height and width the model trains at: the size typed (when it reads as one), else its default."""
    if isinstance(input_size, int):
        return input_size, input_size
    return input_size if isinstance(input_size, tuple) else own


def augmentation_preview(data: DataPick, spec: ModelSpec, config: TrainConfig, size: tuple[int, int]) -> None:
    """The trainer's own batch augmentation on one training image, at the model's input size."""
    with st.expander(_("Preview the augmentation on one training image")):
        try:
            if data.made is not None:
                bundle = cached_made(data.name, maker.fingerprint(), data.options["image_size"]) \
                    if data.status.state == "present" else None
            else:
                bundle = cached_dataset(data.name) if data.status.state == "present" and data.name != "folder" else None
        except CnnlabError as err:
            bundle = None
            show_error(err)
        if bundle is None:
            st.info(_("The preview needs the dataset on disk."))
            return
        idx = st.slider(_("Image"), 0, len(bundle.train) - 1, 0, key="train-prev-idx")
        image = bundle.train.images[idx]
        img = to_pil(image)
        # The trainer's own batch augmentation at the model's input size, seeded by the run's seed.
        shown = size if isinstance(config.input_size, (int, tuple)) else default_input_size(spec, image.shape[-2:])
        described = _(AUGMENT_DESCRIPTIONS[config.augment]) if config.augment in AUGMENT_DESCRIPTIONS else ""
        st.caption(_("{description} Shown at the model's input size, {size}, as the trainer makes them.").format(
            description=described, size=f"{shown[0]}x{shown[1]}"))
        shots = [img] + preview(image, config.augment, 7, seed=config.seed, out_size=tuple(shown))
        st.image([s.resize((96, 96), Image.NEAREST) for s in shots],
                 caption=[_("original")] + [f"#{i + 1}" for i in range(7)])


def start(config: TrainConfig, weights_missing: str | None) -> None:
    """The Start button: the settings are checked (TrainConfig's messages), then the job is queued."""
    if not st.button(_("Start training"), type="primary", key="train-start"):
        return
    try:
        config.validate()
        if config.dataset == "folder" and not config.data_root:
            raise CnnlabError(_("Give the folder of the image dataset first."))
        if config.val_split == "test" and not has_test_split(config.dataset, config.data_root, config.data_options):
            raise CnnlabError(_("{dataset} has no official test split: choose “{holdout}” under Advanced.")
                              .format(dataset=config.dataset, holdout=choice_labels("val_split")["holdout"]))
        check_subset(config.subset, class_count(config.dataset, config.data_root, config.data_options), config.dataset)
        if weights_missing:
            raise CnnlabError(weights_missing)
        job = get_manager().submit(config)
    except CnnlabError as err:
        show_error(err, context=_("Training not started"))
        return
    st.session_state[LIVE_JOB] = job.id
    st.session_state["train-live-job"] = job.id  # the live view follows the new job
    busy = [j for j in get_manager().active() if j.id != job.id and j.device == job.device
            and j.submitted < job.submitted]
    if busy:  # a toast, not a box that would stay after the queue empties (the live view says the rest)
        st.toast(_("Another training is using the {device}: this one waits in the queue (position {position}) and "
                   "starts when it is free.").format(device=job.device.upper(), position=job.position or len(busy)),
                 icon=":material/schedule:")


def train_form() -> None:
    """The settings, top to bottom as the page shows them, then the Start button."""
    copy_row()
    c1, c2 = st.columns(2)
    model = pick_model(c1)
    data = pick_data(c2)
    chosen = optimisation()
    spec = get_spec(model)
    weights_missing = None
    chosen.update(pretrained=False, freeze="none")
    if spec.family == "transfer":
        weights, weights_missing = transfer_weights(model)
        chosen.update(weights)
    more, own = advanced(model, data, chosen)
    config = TrainConfig(model=model, dataset=data.name, data_root=data.root, data_options=data.options,
                         **chosen, **more)
    size = model_size(config.input_size, own)
    if size[0] >= 96:
        st.warning(_("{model} trains on {size} images: each batch is resized to that size. Without a GPU this is "
                     "very slow; for a classroom minute pick a small model (LeNet, LeNet-5, MiniAlexNet, CIFAR "
                     "ResNet).").format(model=spec.display_name, size=f"{size[0]}x{size[1]}"),
                   icon=":material/hourglass_top:")
    augmentation_preview(data, spec, config, size)
    start(config, weights_missing)


st.session_state.setdefault(FORM, {})
if st.session_state.get(HANDOFF):  # "Train on it" on the Your images page
    apply_suggestion(st.session_state.pop(HANDOFF), automatic=True)
    forget_ended_job()
with st.container(border=True):
    train_form()


def live_metrics(job, step: dict, epochs: list[dict], current: int) -> None:
    """Epoch (the one training now), loss, the best validation accuracy so far (the weights kept), speed, ETA."""
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric(_("Epoch"), f"{current} / {job.config.epochs}")
    m2.metric(_("Train loss"), fmt(step["loss"], ".3f") if "loss" in step else "—")
    vals = [e["val_top1"] for e in epochs if isinstance(e.get("val_top1"), (int, float))]
    m3.metric(_("Best val accuracy"), fmt(max(vals), ".1%") if vals else "—",
              help=_("The best epoch's validation accuracy: its weights are the ones kept. Last epoch: {last}.")
              .format(last=fmt(vals[-1], ".1%")) if vals else _("Appears after the first epoch's validation."))
    m4.metric(_("Images / s"), fmt(step.get("images_per_sec", 0), ",.0f"))
    eta = step.get("eta")
    m5.metric(_("ETA"), "—" if eta is None or job.done else _("{seconds} s").format(seconds=fmt(eta, ",.0f")))


def ended_text(job) -> str:
    """Which ended job the live view shows, and its run."""
    said = {"id": job.id, "model": job.config.model, "dataset": job.config.dataset, "state": state_word(job.state)}
    if job.run_id:
        return _("This is job #{id}, {model} on {dataset}, which has ended ({state}); its run {run} is on the "
                 "**Runs** page. A training you start replaces it here.").format(run=job.run_id, **said)
    return _("This is job #{id}, {model} on {dataset}, which has ended ({state}) without a run. A training you "
             "start replaces it here.").format(**said)


@st.fragment(run_every=1.5)
def live() -> None:
    manager = get_manager()
    jobs = manager.jobs()
    if not jobs:
        st.info(_("No training yet in this server. Configure one above and press **Start training**."))
        return
    active = manager.active()
    default = st.session_state.get(LIVE_JOB)
    ids = [j.id for j in reversed(jobs)]
    if default not in (NO_JOB, *ids):  # a new session: the job training now, else the newest
        default = active[0].id if active else ids[0]
    job_id = st.selectbox(_("Training job"), ids, index=None if default == NO_JOB else ids.index(default),
                          key="train-live-job", placeholder=_("None yet: start one above, or pick an earlier one"),
                          format_func=lambda i: job_label(manager.get(i)))
    st.session_state[LIVE_JOB] = NO_JOB if job_id is None else job_id
    job = manager.get(job_id) if job_id is not None else None
    if job is None:
        st.info(_("No training on {dataset} yet: press **Start training** above and its progress and curves appear "
                  "here. Earlier trainings stay in the box above and on the **Runs** page.").format(
            dataset=st.session_state.get("train-data")))
        return
    events = job.events
    start = next((e for e in events if e["kind"] == "start"), None)
    end = next((e for e in events if e["kind"] == "end"), None)

    # one slot per optional element: the page keeps the same layout at every refresh, so nothing from the
    # previous draw (a second chart, an old Stop button) flashes up while it is redrawn
    notice, bar, metrics, about, stop, charts, outcome = (st.empty(), st.empty(), st.container(), st.empty(),
                                                          st.empty(), st.container(), st.empty())
    if job.state == "queued":
        running = [j for j in manager.active() if j.state == "running" and j.device == job.device]
        notice.info(_("Waiting in the queue for the {device} (position {position}): #{id} {model} is training.")
                    .format(device=job.device.upper(), position=job.position, id=running[0].id,
                            model=running[0].config.model) if running else _("Starting…"))
    elif job.done:  # which training this is, before its curves: it may not be the one on the form
        notice.info(ended_text(job), icon=":material/history:")
    step, epochs = job.latest_step or {}, [e for e in events if e["kind"] == "epoch"]
    total = step.get("total_steps", start["total_steps"] if start else "?")
    done_steps = end.get("steps", step.get("step", 0)) if end else step.get("step", 0)
    current = max(step.get("epoch", 0), epochs[-1]["epoch"] if epochs else 0)
    bar.progress(job.progress, text=_("{state} · step {step} of {total} · epoch {epoch} of {epochs}").format(
        state=state_word(job.state), step=done_steps, total=total, epoch=current, epochs=job.config.epochs))
    with metrics:
        live_metrics(job, step, epochs, current)
    if start:
        about.caption(_("{model} on {dataset} · {device} · {n_train} training and {n_val} validation images · "
                        "{n_params} parameters").format(
            model=start["model"], dataset=start["dataset"], device=start["device"],
            n_train=fmt(start["train_images"], ","), n_val=fmt(start["val_images"], ","),
            n_params=fmt(start["num_params"], ",")) + "".join(f" · {n}" for n in start.get("notes") or []))
    if not job.done and stop.button(_("Stop"), key=f"train-stop-{job.id}", type="secondary"):
        job.cancel()
        st.toast(_("Stopping after the current step; the best weights so far are kept."))
    with charts:
        training_charts(events)
    if end:
        text = end["message"] or state_word(end["status"])
        if end["status"] == "finished":
            outcome.success(_("{message} The run {run} is on the **Runs** page.").format(message=text,
                                                                                          run=end["run_id"]))
        elif end["status"] == "cancelled":
            outcome.warning(_("{message} Run {run} keeps its best weights.").format(message=text,
                                                                                   run=end["run_id"]))
        else:
            with outcome:
                show_error(text, context=_("Training {state}").format(state=state_word(end["status"])))
    elif job.state in FINAL_STATES and job.message:
        with outcome:
            show_error(job.message, context=_("Training {state}").format(state=state_word(job.state)))
    st.markdown(_("#### Training X-ray"))
    xray_view.live(job.id, [e for e in events if e["kind"] == "xray"], job.config.xray)


st.subheader(_("Live"))
live()
