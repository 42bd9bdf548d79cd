"""The input pipeline: stored uint8 images -> what a model sees. One module, one set of rules.

Every path that prepares an image for a model goes through here: the trainer (training and
validation batches), evaluation, per-image prediction (:func:`cnnlab.data.images.to_model_input`,
``ModelSource.to_input``), the augmentation preview and the app. The steps, in order:

1. **to float**: uint8 ``N x C x H x W`` -> float in [0, 1] on the device;
2. **geometry**: the batch augmentation of the chosen preset (training) or the evaluation cut
   (resize the shorter side and take the centre; ``eval_resize`` > 1 first resizes to that many
   times the model's size, as ImageNet weights' ``Resize(256)`` + ``CenterCrop(224)``);
3. **channels**: 1 -> N repeats the grey channel; 3 -> 1 takes the luma (:data:`LUMA_WEIGHTS`);
4. **normalisation** with the *model-space* statistics: the mean and std of the images after
   step 3 (:func:`model_space_stats`: the dataset's own when the channels are unchanged or one
   grey channel is repeated, measured on the converted training images otherwise). Statistics
   of the data's channels are never converted by a formula: the std of a luma image is not a
   weighted (or plain) average of the channel stds. One value is repeated for every channel
   (exact); any other mismatch is refused (:func:`model_stats`).

The augmentation presets are one table (:data:`PRESETS` in :mod:`cnnlab.data.augment`); the
lists of names, descriptions and labels are views of it. :func:`preview` draws the app's
preview with the very batch function the trainer uses and a seeded generator.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from ..device import autocast_context
from ..errors import ConfigError
from ..i18n import _
from ..models.pretrained import get_pretrained_spec
from ..models.tools import evaluating
from .stats import channel_stats
from .augment import (
    AUGMENT_DESCRIPTIONS,
    AUGMENT_LABELS,
    AUGMENTATIONS,
    LUMA_WEIGHTS,
    PRESETS,
    AugmentPreset,
    BatchAugment,
    BatchEval,
    get_preset,
    make_batch_augment,
    make_batch_eval,
)

__all__ = [
    "AUGMENTATIONS", "AUGMENT_DESCRIPTIONS", "AUGMENT_LABELS", "AUGMENT_PRESETS", "AugmentPreset",
    "IMAGENET_MEAN", "IMAGENET_STD", "LUMA_WEIGHTS", "PRESETS", "InputPipeline", "adapt_channels",
    "check_channels", "default_input_size", "eval_loop", "eval_resize_of", "first_layer_in_channels", "get_preset", "model_eval_resize",
    "measure_stats", "model_input_shape", "model_space_stats", "model_stats", "preview",
]

#: ImageNet's per-channel statistics (torchvision's weights, seeds 000 and 001).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: The preset names, as a tuple (a view of :data:`PRESETS`).
AUGMENT_PRESETS: tuple[str, ...] = tuple(AUGMENTATIONS)


# --------------------------------------------------------------------------------------
# Channels and statistics
# --------------------------------------------------------------------------------------


def check_channels(data_channels: int, model_channels: int) -> None:
    """Refuse channel counts the pipeline cannot adapt (only 1 -> N and 3 -> 1 can be)."""
    dc, mc = int(data_channels), int(model_channels)
    if dc != mc and not (dc == 1 or (dc == 3 and mc == 1)):
        raise ConfigError(_(
            "the data has {data} channels and the model expects {model}: only 1 -> N (repeat the grey channel) and "
            "3 -> 1 (convert to greyscale) can be adapted. Create the model with in_channels={data}."
        ).format(data=dc, model=mc))


def adapt_channels(x: Tensor, model_channels: int) -> Tensor:
    """Float ``N x C x H x W`` in the model's channels: 1 -> N repeats, 3 -> 1 takes the luma."""
    dc, mc = int(x.shape[1]), int(model_channels)
    check_channels(dc, mc)
    if dc == 1 and mc != 1:
        return x.expand(-1, mc, -1, -1)
    if dc == 3 and mc == 1:
        w = torch.tensor(LUMA_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    return x


def measure_stats(
    images: Tensor, model_channels: int, max_images: int = 5000, max_values: int = 2**26, chunk: int = 512,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (pixels in [0, 1]) of ``images`` as the model sees them, measured.

    ``images`` is uint8 ``N x C x H x W`` (the training split); channels are adapted to
    ``model_channels`` exactly as :class:`InputPipeline` adapts them, so the statistics are those
    of the adapted images (a luma image's std is not an average of the channel stds). A bounded,
    deterministic sample: every ``step``-th image, with ``step`` chosen so that at most
    ``max_images`` images and about ``max_values`` values are read (every image of a small
    dataset, as :mod:`cnnlab.data.registry` measures a dataset's own statistics). Accumulated in
    float64 chunk by chunk; values rounded to 4 decimals, as a dataset's.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ConfigError(_("statistics need a non-empty N x C x H x W batch, got shape {shape}").format(
            shape=tuple(images.shape)))
    check_channels(int(images.shape[1]), model_channels)
    return channel_stats(images, max_images, max_values, lambda x: adapt_channels(x, model_channels), chunk)


def model_space_stats(
    images: Tensor, data_mean: Sequence[float], data_std: Sequence[float], model_channels: int,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation statistics for a model with ``model_channels`` channels trained on
    ``images`` (uint8 ``N x C x H x W``, the training split) whose dataset records
    ``data_mean``/``data_std``.

    When the dataset's statistics already describe the images as the model sees them (the same
    channels; or one grey channel repeated, which repeats its statistics exactly) they are used
    as they are, so a dataset's chosen statistics (ImageNet's for photos, a seed's constants)
    stay. When the channels are converted (RGB data, grey model: the luma) they are measured on
    the converted images (:func:`measure_stats`), since no formula on the channel statistics
    gives the std of the luma.
    """
    dc, mc = int(images.shape[1]), int(model_channels)
    check_channels(dc, mc)
    if dc == mc or dc == 1:
        try:
            return model_stats(data_mean, data_std, mc)
        except ConfigError:
            pass  # statistics that do not describe these images: measure them
    return measure_stats(images, mc)


def model_stats(
    mean: Sequence[float], std: Sequence[float], model_channels: int,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``mean``/``std`` as statistics in the model's ``model_channels`` channels.

    The same number of values: as they are. One value: repeated for every channel (exact: a grey
    image repeated). Anything else (three RGB statistics for a grey model) is refused: the
    statistics of the adapted images must be measured (:func:`model_space_stats`; a run records
    them as ``model_mean``/``model_std``), not averaged.
    """
    mc = int(model_channels)
    m, s = [float(v) for v in mean], [float(v) for v in std]
    if len(m) == 1 and mc != 1:
        m = m * mc
    if len(s) == 1 and mc != 1:
        s = s * mc
    if len(m) != mc or len(s) != mc:
        raise ConfigError(_(
            "normalisation statistics with {means}/{stds} values (mean/std) do not fit a {channels}-channel model. "
            "Give the statistics of the images as the model sees them (a run's model_mean/model_std, or "
            "cnnlab.data.pipeline.model_space_stats(train_images, mean, std, {channels})); they are never averaged "
            "across channels.").format(means=len(m), stds=len(s), channels=mc))
    if any(not v > 0 for v in s):
        raise ConfigError(_("std values must be positive, got {std}").format(std=tuple(std)))
    return tuple(m), tuple(s)


# --------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------


def eval_resize_of(transforms: Any) -> float:
    """The evaluation resize ratio of torchvision weights' ``transforms()``: ``resize_size /
    crop_size`` (256 / 224 for the ImageNet classifiers)."""
    resize = transforms.resize_size
    crop = transforms.crop_size
    resize = resize[0] if isinstance(resize, (list, tuple)) else resize
    crop = crop[0] if isinstance(crop, (list, tuple)) else crop
    if not resize or not crop:
        return 1.0
    return max(1.0, float(resize) / float(crop))


def model_eval_resize(model: nn.Module) -> float:
    """The evaluation resize ratio for ``model``: the ImageNet weights' own (256 / 224) for a model
    built on a torchvision architecture with such weights (a ``*_transfer`` model carries
    ``cnnlab_transfer``; the ratio is the architecture's, loaded weights or not, so a run rebuilt
    from its folder is evaluated as it was validated), else 1 (no margin)."""
    transfer = getattr(model, "cnnlab_transfer", None)
    if not transfer or "base" not in transfer:
        return 1.0
    return eval_resize_of(get_pretrained_spec(transfer["base"]).transforms())


def first_layer_in_channels(model: nn.Module) -> int | None:
    """The input channels of the first convolution (or linear layer) of ``model``."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
        if isinstance(m, nn.Linear):
            return None
    return None


def default_input_size(spec: Any, data_size: Sequence[int]) -> tuple[int, int]:
    """The size a registry model is trained at when no ``input_size`` is given: its spec's for
    fixed-input models and models on ImageNet weights (families "transfer" and "pretrained"), else the data's."""
    if spec is not None and (spec.family in ("transfer", "pretrained") or (spec.fixed_input and not spec.sized_at_creation)):
        return (int(spec.input_shape[1]), int(spec.input_shape[2]))
    return (int(data_size[0]), int(data_size[1]))


def model_input_shape(model: nn.Module, data_shape: Sequence[int]) -> tuple[int, int, int]:
    """What ``model`` expects: recorded by the trainer or run registry, else inferred.

    Fixed-input registry models need their spec's size; other models take the data's size.
    """
    recorded = getattr(model, "cnnlab_input_shape", None)
    if recorded is not None:
        return tuple(int(v) for v in recorded)  # type: ignore[return-value]
    channels = first_layer_in_channels(model) or int(data_shape[0])
    h, w = default_input_size(getattr(model, "cnnlab_spec", None), data_shape[1:])
    return (channels, h, w)


# --------------------------------------------------------------------------------------
# The pipeline: uint8 batch on the host -> normalised float batch for the model
# --------------------------------------------------------------------------------------


@dataclass
class InputPipeline:
    """Turns stored uint8 ``N x C x H x W`` batches into what the model expects.

    ``mean``/``std`` are the model-space statistics (see :func:`model_stats`: one value per model
    channel, or one value for all). ``augment`` names the training preset; ``eval_resize`` the
    evaluation margin (1: resize to the model's size; 256/224: ImageNet weights' resize then crop).
    """

    data_shape: tuple[int, int, int]
    model_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    augment: str = "none"
    channels_last: bool = False
    eval_resize: float = 1.0
    _augment_fn: BatchAugment = field(init=False, repr=False)
    _eval_fn: BatchEval = field(init=False, repr=False)
    _mean: Tensor = field(init=False, repr=False)
    _std: Tensor = field(init=False, repr=False)
    _stats: tuple[tuple[float, ...], tuple[float, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        mc = int(self.model_shape[0])
        check_channels(int(self.data_shape[0]), mc)
        mean, std = model_stats(self.mean, self.std, mc)
        self._stats = (mean, std)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        size = (int(self.model_shape[1]), int(self.model_shape[2]))
        if min(size) < 1:
            raise ConfigError(_("the model input size must be positive, got {size}").format(size=size))
        get_preset(self.augment)  # a clear error for an unknown name
        self._augment_fn = make_batch_augment(self.augment, size)
        self._eval_fn = make_batch_eval(size, self.augment, resize=float(self.eval_resize))

    @property
    def model_mean(self) -> tuple[float, ...]:
        """The normalisation mean in the model's channels (as given, one value per channel)."""
        return self._stats[0]

    @property
    def model_std(self) -> tuple[float, ...]:
        return self._stats[1]

    def normalize(self, x: Tensor) -> Tensor:
        """Float [0, 1] images (data channels, model size) -> adapted channels, normalised."""
        x = (adapt_channels(x, int(self.model_shape[0])) - self._mean) / self._std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def to_float(self, images: Tensor) -> Tensor:
        """uint8 (host or device) -> float in [0, 1] on the device."""
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            return images.float().div_(255.0)
        return images.float()

    def augment_batch(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """The training geometry and colour augmentation only: float [0, 1], data channels."""
        return self._augment_fn(self.to_float(images), generator)

    def train_batch(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.normalize(self.augment_batch(images, generator))

    def eval_batch(self, images: Tensor) -> Tensor:
        return self.normalize(self._eval_fn(self.to_float(images)))


# --------------------------------------------------------------------------------------
# The evaluation loop (the trainer's validation and cnnlab.evaluate share it)
# --------------------------------------------------------------------------------------


@torch.no_grad()
def eval_loop(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    pipeline: InputPipeline,
    num_classes: int,
    batch_size: int = 256,
    per_class: bool = False,
    cancel: threading.Event | None = None,
) -> dict[str, Any] | None:
    """Loss and top-1/top-5 counts over a split (one host sync at the end).

    Returns tensors on the host: ``loss_sum``, ``correct1``, ``correct5``, ``count`` and, with
    ``per_class``, ``confusion`` (K x K, rows true, columns predicted), ``class_top5`` and
    ``class_loss`` (the sum of the loss over each class's images).
    Returns ``None`` if ``cancel`` is set before the loop ends (checked before each batch).
    """
    device = pipeline.device
    k = min(5, num_classes)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.int64)
    correct5 = torch.zeros((), device=device, dtype=torch.int64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    class_top5 = torch.zeros(num_classes, device=device, dtype=torch.int64)
    class_loss = torch.zeros(num_classes, device=device, dtype=torch.float64)
    n = int(labels.shape[0])
    with evaluating(model):
        for start in range(0, n, batch_size):
            if cancel is not None and cancel.is_set():
                return None
            x = pipeline.eval_batch(images[start:start + batch_size])
            y = labels[start:start + batch_size].to(device, non_blocking=True)
            with autocast_context(device):
                logits = model(x)
            logits = logits.float()
            losses = F.cross_entropy(logits, y, reduction="none").double()
            loss_sum += losses.sum()
            topk = logits.topk(k, dim=1).indices
            hit5 = (topk == y[:, None]).any(dim=1)
            pred = topk[:, 0]
            correct1 += (pred == y).sum()
            correct5 += hit5.sum()
            if per_class:
                confusion += torch.bincount(y * num_classes + pred, minlength=num_classes**2)
                class_top5 += torch.bincount(y, weights=hit5.float(), minlength=num_classes).long()
                class_loss.index_add_(0, y, losses)
    out: dict[str, Any] = {
        "loss_sum": float(loss_sum), "correct1": int(correct1), "correct5": int(correct5), "count": n,
    }
    if per_class:
        out["confusion"] = confusion.view(num_classes, num_classes).cpu()
        out["class_top5"] = class_top5.cpu()
        out["class_loss"] = class_loss.cpu()
    return out


# --------------------------------------------------------------------------------------
# The augmentation preview
# --------------------------------------------------------------------------------------


def _as_uint8_chw(image: Image.Image | Tensor) -> Tensor:
    if isinstance(image, Tensor):
        x = image if image.ndim == 3 else image[None] if image.ndim == 2 else None
        if x is None:
            raise ConfigError(_("the preview needs one C x H x W image, got shape {shape}").format(
                shape=tuple(image.shape)))
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return x.cpu()
    if not isinstance(image, Image.Image):
        raise ConfigError(_("the preview needs a PIL image or a C x H x W tensor, got {kind}").format(
            kind=type(image).__name__))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    arr = np.asarray(image, dtype=np.uint8)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def preview(
    image: Image.Image | Tensor, preset: str, n: int, seed: int = 0, out_size: tuple[int, int] | None = None,
) -> list[Image.Image]:
    """``n`` augmented versions of ``image`` under ``preset``, exactly as the trainer makes them.

    The same batch function the trainer calls (:meth:`InputPipeline.augment_batch`), on ``n``
    copies of the image, with a generator seeded by ``seed`` (the global random state is not
    touched). ``out_size`` is the model's input size (height, width); default: the image's own.
    Returns PIL images (``"L"`` or ``"RGB"``) before channel adaptation and normalisation.
    """
    x = _as_uint8_chw(image)
    size = tuple(int(v) for v in (out_size or x.shape[-2:]))
    shape = (int(x.shape[0]), size[0], size[1])
    pipe = InputPipeline(data_shape=tuple(x.shape), model_shape=shape, mean=(0.0,), std=(1.0,),  # type: ignore[arg-type]
                         device=torch.device("cpu"), augment=preset)
    n = max(0, int(n))
    if n == 0:
        return []
    batch = x[None].expand(n, -1, -1, -1)
    out = pipe.augment_batch(batch, torch.Generator().manual_seed(int(seed)))
    arr = (out * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[2] == 1 else a) for a in arr]
