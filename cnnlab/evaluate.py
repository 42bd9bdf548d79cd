"""Evaluation: overall and per-class top-1/top-5, confusion matrix, loss; per-image top-k.

Data stays as tensors: each batch of uint8 images goes to the device, becomes float in
[0, 1], is resized/cropped by the batch eval transform, converted to the model's channels
and normalised. The same :class:`InputPipeline` is used by the trainer, so what a model
sees at evaluation is exactly what it saw at validation time during training.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data.augment import AUGMENTATIONS, make_batch_augment, make_batch_eval
from .errors import ConfigError

# ITU-R BT.601 luma weights, as PIL's convert("L") and torchvision's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)

AUGMENT_PRESETS: tuple[str, ...] = tuple(AUGMENTATIONS)

BatchFn = Callable[..., torch.Tensor]


def batch_transforms(preset: str, out_size: tuple[int, int]) -> tuple[BatchFn, BatchFn]:
    """``(augment(x, generator), eval(x))`` from :mod:`cnnlab.data.augment` for float batches in [0, 1]."""
    if preset not in AUGMENT_PRESETS:
        raise ConfigError(
            f"unknown augmentation preset {preset!r}; choose one of {', '.join(AUGMENT_PRESETS)}."
        )
    return make_batch_augment(preset, out_size), make_batch_eval(out_size, preset)


# --------------------------------------------------------------------------------------
# The input pipeline: uint8 batch on the host -> normalised float batch for the model
# --------------------------------------------------------------------------------------


@dataclass
class InputPipeline:
    """Turns stored uint8 ``N x C x H x W`` batches into what the model expects.

    Channel adaptation: 1 -> C repeats the grey channel; 3 -> 1 converts to luma.
    Size adaptation: the batch transform resizes (or crops) to ``model_size``.
    """

    data_shape: tuple[int, int, int]
    model_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    augment: str = "none"
    channels_last: bool = False
    _augment_fn: BatchFn = field(init=False, repr=False)
    _eval_fn: BatchFn = field(init=False, repr=False)
    _mean: torch.Tensor = field(init=False, repr=False)
    _std: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        dc, mc = self.data_shape[0], self.model_shape[0]
        if dc != mc and not (dc == 1 or (dc == 3 and mc == 1)):
            raise ConfigError(
                f"the data has {dc} channels and the model expects {mc}: only 1 -> N "
                "(repeat the grey channel) and 3 -> 1 (convert to greyscale) can be adapted. "
                f"Create the model with in_channels={dc}."
            )
        if len(self.mean) != dc or len(self.std) != dc:
            raise ConfigError(
                f"mean/std have {len(self.mean)}/{len(self.std)} values for {dc}-channel data."
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {self.std}")
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        if dc == 1 and mc != 1:
            mean, std = mean.repeat(mc), std.repeat(mc)
        elif dc == 3 and mc == 1:
            w = torch.tensor(_GRAY_WEIGHTS)
            # Exact for the mean; for the std, the weighted mean of the stds (an upper bound).
            mean, std = (w * mean).sum().reshape(1), (w * std).sum().reshape(1)
        self._mean = mean.to(self.device).view(1, -1, 1, 1)
        self._std = std.to(self.device).view(1, -1, 1, 1)
        size = (int(self.model_shape[1]), int(self.model_shape[2]))
        if min(size) < 1:
            raise ConfigError(f"the model input size must be positive, got {size}")
        self._augment_fn, self._eval_fn = batch_transforms(self.augment, size)

    @property
    def model_mean(self) -> tuple[float, ...]:
        """The normalisation mean in the model's channels (after channel adaptation)."""
        return tuple(float(v) for v in self._mean.flatten().tolist())

    @property
    def model_std(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self._std.flatten().tolist())

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        dc, mc = x.shape[1], self.model_shape[0]
        if dc == 1 and mc != 1:
            x = x.expand(-1, mc, -1, -1)
        elif dc == 3 and mc == 1:
            w = torch.tensor(_GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * w).sum(dim=1, keepdim=True)
        x = (x - self._mean) / self._std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (host or device) -> float in [0, 1] on the device."""
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            return images.float().div_(255.0)
        return images.float()

    def train_batch(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self._finish(self._augment_fn(self.to_float(images), generator))

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return self._finish(self._eval_fn(self.to_float(images)))


def first_layer_in_channels(model: nn.Module) -> int | None:
    """The input channels of the first convolution (or linear layer) of ``model``."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
        if isinstance(m, nn.Linear):
            return None
    return None


def model_input_shape(model: nn.Module, data_shape: Sequence[int]) -> tuple[int, int, int]:
    """What ``model`` expects: recorded by the trainer or run registry, else inferred.

    Fixed-input registry models need their spec's size; other models take the data's size.
    """
    recorded = getattr(model, "cnnlab_input_shape", None)
    if recorded is not None:
        return tuple(int(v) for v in recorded)  # type: ignore[return-value]
    channels = first_layer_in_channels(model) or int(data_shape[0])
    spec = getattr(model, "cnnlab_spec", None)
    if spec is not None and spec.fixed_input and not spec.sized_at_creation:
        return (channels, int(spec.input_shape[1]), int(spec.input_shape[2]))
    return (channels, int(data_shape[1]), int(data_shape[2]))


def native_bf16(device: torch.device) -> bool:
    """True on CUDA GPUs with native bfloat16 (Ampere, compute capability 8.0, and newer).
    Older cards (T4, V100, P100) only emulate it, slower than fp32: they get fp16 + GradScaler."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA GPUs that have it natively, fp16 on older ones; nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if native_bf16(device) else torch.float16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------
# The evaluation loop
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
    ``per_class``, ``confusion`` (K x K, rows true, columns predicted) and ``class_top5``.
    Returns ``None`` if ``cancel`` is set before the loop ends (checked before each batch).
    """
    device = pipeline.device
    was_training = model.training
    model.eval()
    k = min(5, num_classes)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.int64)
    correct5 = torch.zeros((), device=device, dtype=torch.int64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    class_top5 = torch.zeros(num_classes, device=device, dtype=torch.int64)
    n = int(labels.shape[0])
    try:
        for start in range(0, n, batch_size):
            if cancel is not None and cancel.is_set():
                return None
            x = pipeline.eval_batch(images[start:start + batch_size])
            y = labels[start:start + batch_size].to(device, non_blocking=True)
            with autocast_context(device):
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            topk = logits.topk(k, dim=1).indices
            hit5 = (topk == y[:, None]).any(dim=1)
            pred = topk[:, 0]
            correct1 += (pred == y).sum()
            correct5 += hit5.sum()
            if per_class:
                confusion += torch.bincount(y * num_classes + pred, minlength=num_classes**2)
                class_top5 += torch.bincount(y, weights=hit5.float(), minlength=num_classes).long()
    finally:
        model.train(was_training)
    out: dict[str, Any] = {
        "loss_sum": float(loss_sum), "correct1": int(correct1), "correct5": int(correct5), "count": n,
    }
    if per_class:
        out["confusion"] = confusion.view(num_classes, num_classes).cpu()
        out["class_top5"] = class_top5.cpu()
    return out


@dataclass
class ClassResult:
    name: str
    count: int
    top1: float
    top5: float


@dataclass
class EvalResult:
    """Overall and per-class accuracy (fractions in [0, 1]), mean loss and confusion matrix."""

    loss: float
    top1: float
    top5: float
    count: int
    classes: list[str]
    per_class: list[ClassResult]
    confusion: np.ndarray  # K x K int64, rows = true class, columns = predicted class

    def table(self) -> str:
        """A per-class table like seed 000's (class, images, top1, top5), then overall."""
        width = max([len("class"), len("overall")] + [len(c.name) for c in self.per_class])
        lines = [f"{'class':<{width}}  {'images':>6}  {'top1':>6}  {'top5':>6}"]
        for c in self.per_class:
            t1 = f"{100 * c.top1:5.1f}%" if c.count else "     -"
            t5 = f"{100 * c.top5:5.1f}%" if c.count else "     -"
            lines.append(f"{c.name:<{width}}  {c.count:>6}  {t1:>6}  {t5:>6}")
        lines.append("-" * len(lines[0]))
        lines.append(
            f"{'overall':<{width}}  {self.count:>6}  {100 * self.top1:5.1f}%  {100 * self.top5:5.1f}%"
        )
        return "\n".join(lines)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from .device import pick_device

    return pick_device(device or "auto")


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


def evaluate(
    model: nn.Module,
    split: Any,
    info: Any,
    device: str | torch.device | None = None,
    batch_size: int = 256,
) -> EvalResult:
    """Evaluate ``model`` on a ``TensorSplit`` (uint8 images, int64 labels) of ``info``'s dataset.

    ``device=None`` uses the device the model already lives on. The model's expected input
    (channels, size) is taken from the trainer/run record or inferred (see
    :func:`model_input_shape`); channels and size are adapted as in training.
    """
    if not 1 <= int(batch_size) <= 4096:
        raise ConfigError(f"batch size must be between 1 and 4096, got {batch_size}")
    dev = _model_device(model) if device is None else _resolve_device(device)
    dev = dev or torch.device("cpu")
    model.to(dev)
    classes = list(info.classes)
    num_classes = len(classes)
    if int(split.labels.shape[0]) == 0:
        raise ConfigError("the split to evaluate is empty.")
    data_shape = tuple(int(v) for v in split.images.shape[1:])
    pipeline = InputPipeline(
        data_shape=data_shape,  # type: ignore[arg-type]
        model_shape=model_input_shape(model, data_shape),
        mean=tuple(info.mean), std=tuple(info.std), device=dev,
    )
    r = eval_loop(model, split.images, split.labels, pipeline, num_classes, batch_size, per_class=True)
    confusion = r["confusion"].numpy()
    counts = confusion.sum(axis=1)
    diag = np.diag(confusion)
    top5 = r["class_top5"].numpy()
    per_class = [
        ClassResult(
            name=classes[i], count=int(counts[i]),
            top1=float(diag[i] / counts[i]) if counts[i] else 0.0,
            top5=float(top5[i] / counts[i]) if counts[i] else 0.0,
        )
        for i in range(num_classes)
    ]
    n = r["count"]
    return EvalResult(
        loss=r["loss_sum"] / n, top1=r["correct1"] / n, top5=r["correct5"] / n, count=n,
        classes=classes, per_class=per_class, confusion=confusion,
    )


def _pil_to_model_input(model: nn.Module, image: Any, info: Any) -> torch.Tensor:
    """The data layer's ``to_model_input``: 1 x C x H x W, resized, normalised."""
    from .data.images import to_model_input

    shape = model_input_shape(model, tuple(info.input_shape))
    return to_model_input(image, shape, tuple(info.mean), tuple(info.std))


@torch.no_grad()
def predict_topk(model: nn.Module, image: Any, info: Any, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one image: ``[(class_name, probability), ...]``.

    ``image`` is a PIL image (prepared by :func:`cnnlab.data.images.to_model_input`), a uint8
    ``C x H x W`` tensor, or a float one in [0, 1] (both prepared as in training).
    """
    classes = list(info.classes)
    dev = _model_device(model) or torch.device("cpu")
    k = max(1, min(int(k), len(classes)))
    if hasattr(image, "convert") and hasattr(image, "mode"):
        return _topk(model, _pil_to_model_input(model, image, info).to(dev), classes, k)
    if isinstance(image, torch.Tensor):
        x = image
    else:
        raise ConfigError(f"predict_topk needs a PIL image or a C x H x W tensor, got {type(image).__name__}")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ConfigError(f"expected one image C x H x W, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        x = x.float()
    data_shape = tuple(int(v) for v in x.shape)
    mean, std = tuple(info.mean), tuple(info.std)
    if len(mean) != data_shape[0]:  # e.g. an RGB photo for a greyscale dataset: adapt stats
        if len(mean) == 1:
            mean, std = mean * data_shape[0], std * data_shape[0]
        elif data_shape[0] == 1:
            x = x.expand(len(mean), -1, -1)
            data_shape = (len(mean),) + data_shape[1:]
    pipeline = InputPipeline(
        data_shape=data_shape,  # type: ignore[arg-type]
        model_shape=model_input_shape(model, data_shape),
        mean=mean, std=std, device=dev,
    )
    return _topk(model, pipeline.eval_batch(x[None]), classes, k)


def _topk(model: nn.Module, batch: torch.Tensor, classes: list[str], k: int) -> list[tuple[str, float]]:
    from .locks import model_lock

    with model_lock(model):  # a model shared by app sessions may be inspected at the same time
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), autocast_context(batch.device):
                logits = model(batch)
        finally:
            model.train(was_training)
    probs = logits.float().softmax(dim=1)[0].cpu()
    values, indices = probs.topk(k)
    return [(classes[int(i)], float(v)) for v, i in zip(values, indices)]
