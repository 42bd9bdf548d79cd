"""One way to name "a model to look at or predict with", for the app, the CLI and the demo.

A reference is one of

* ``run:<id>`` (or a bare run id): a trained run, with its classes and normalisation;
* ``pretrained:<name>``: a torchvision model with ImageNet weights (``vgg16``, ``resnet18``...);
* ``<zoo name>`` (or ``zoo:<name>``): a freshly initialised zoo model — untrained, useful to
  see shapes and what random filters do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from .data import load_dataset
from .data.images import to_model_input
from .data.pipeline import IMAGENET_MEAN, IMAGENET_STD, eval_resize_of, model_eval_resize, model_stats
from .errors import CnnlabError
from .i18n import _
from .models import create, get_spec, pretrained
from .runs import RunNotFoundError, load_model, load_run, load_run_data


@dataclass
class ModelSource:
    """A model with what preparing an image for it needs: ``mean``/``std`` in the model's own
    channels (a run's ``model_mean``/``model_std``) and ``eval_resize`` (a pretrained model's
    ``resize_size / crop_size``, 256/224: resize the shorter side to 256, cut the central 224)."""

    ref: str
    kind: str  # "run" | "pretrained" | "zoo"
    label: str
    model: nn.Module  # eval mode, on CPU
    classes: list[str]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_resize: float = 1.0
    dataset: str | None = None  # what it learned from: a run's dataset, "imagenet" for pretrained weights

    def to_input(self, image: Image.Image) -> torch.Tensor:
        """A decoded image as this model's normalised ``1 x C x H x W`` input (the input pipeline's
        per-image path: the same channel adaptation, statistics and evaluation cut as its runs)."""
        return to_model_input(image, self.input_shape, self.mean, self.std, eval_resize=self.eval_resize)


def _default_norm(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * channels, (0.5,) * channels


def pretrained_source(ref: str, model: nn.Module, spec: "pretrained.PretrainedSpec") -> ModelSource:
    """A source for torchvision ImageNet weights: their own crop size, resize and statistics."""
    tf = spec.transforms()
    crop = int(tf.crop_size[0])
    mean, std = tuple(float(v) for v in tf.mean), tuple(float(v) for v in tf.std)
    return ModelSource(ref, "pretrained", spec.display_name, model, spec.categories,
                       (3, crop, crop), mean, std, eval_resize=eval_resize_of(tf), dataset="imagenet")


def load_source(ref: str, num_classes: int | None = None) -> ModelSource:
    """Resolve a reference (see the module docstring) to a ready model."""
    ref = ref.strip()
    if not ref:
        raise CnnlabError(_("no model given: name a run, 'pretrained:vgg16', or a zoo model such as 'lenet'."))
    kind, _sep, key = ref.partition(":") if ":" in ref else ("", "", ref)
    if kind == "pretrained":
        model, spec = pretrained.load_pretrained(key)
        return pretrained_source(ref, model, spec)
    if kind == "run" or (not kind and _looks_like_run(key)):
        run = load_run(key)
        model = load_model(run.run_id)
        meta = run.meta
        shape = tuple(int(v) for v in meta.get("input_shape") or model.cnnlab_spec.input_shape)
        classes = list(meta.get("classes") or [])
        # model_mean/std: the statistics of the images as the model sees them (after the channel
        # adaptation); a run from before they were recorded falls back on the dataset's mean/std
        # when they fit the model exactly (see model_stats: never averaged)
        mean = tuple(meta.get("model_mean") or meta.get("mean") or ())
        std = tuple(meta.get("model_std") or meta.get("std") or ())
        mean, std = model_stats(mean, std, shape[0]) if mean and std else _default_norm(shape[0])
        label = _("{model} on {dataset} · run {run}").format(
            model=meta.get("model", "?"), dataset=meta.get("dataset", "?"), run=run.run_id)
        dataset = meta.get("dataset")
        return ModelSource(f"run:{run.run_id}", "run", label, model, classes, shape, mean, std,  # type: ignore[arg-type]
                           eval_resize=model_eval_resize(model), dataset=dataset if isinstance(dataset, str) else None)
    if kind not in ("", "zoo"):
        raise CnnlabError(_("unknown model reference {ref!r}: use run:<id>, pretrained:<name> or a zoo model name.")
                          .format(ref=ref))
    spec = get_spec(key)
    model = create(spec.name, num_classes=num_classes).eval()
    n = num_classes or spec.num_classes
    mean, std = _default_norm(spec.input_shape[0])
    return ModelSource(f"zoo:{spec.name}", "zoo", _("{model} (untrained)").format(model=spec.display_name), model,
                       [_("class {i}").format(i=i) for i in range(n)], spec.input_shape, mean, std)


def dataset_of(ref: str) -> str | None:
    """The dataset a model reference learned from, without loading its weights: a run's own (from
    its folder), "imagenet" for pretrained weights; None for an untrained zoo model, anything else,
    or a run that cannot be read."""
    if not isinstance(ref, str):
        return None
    if ref.startswith("pretrained:"):
        return "imagenet"
    if not ref.startswith("run:"):
        return None
    try:
        dataset = load_run(ref[4:]).meta.get("dataset")
    except CnnlabError:  # a missing or damaged run: no dataset to follow (loading it says why)
        return None
    return dataset if isinstance(dataset, str) else None


def validation_images(src: ModelSource, dataset: str | None = None) -> tuple[str, torch.Tensor]:
    """Validation images to look at with ``src`` (uint8 N x C x H x W) and their dataset's name: ``dataset``,
    else a run's own data split as in training, else digits or shapes by the model's channels."""
    if dataset is None and src.kind == "run":
        bundle = load_run_data(load_run(src.ref.split(":", 1)[1]))
    else:
        bundle = load_dataset(dataset or ("digits" if src.input_shape[0] == 1 else "shapes"), seed=0)
    return bundle.info.name, bundle.val.images


def build_kwargs(src: ModelSource) -> dict:
    """The arguments ``src``'s model was built with: a run's ``model_kwargs``; none for a zoo or pretrained
    model (their defaults)."""
    if src.kind != "run":
        return {}
    kwargs = load_run(src.ref.split(":", 1)[1]).meta.get("model_kwargs")
    return dict(kwargs) if isinstance(kwargs, dict) else {}


def _looks_like_run(key: str) -> bool:
    """Whether ``key`` names a saved run (its id or a literal prefix of exactly one id)."""
    if "-" not in key:
        return False
    try:
        load_run(key)
    except RunNotFoundError:
        return False
    except CnnlabError:
        return True  # a run, damaged: loading it says what is wrong
    return True
