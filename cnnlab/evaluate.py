"""Evaluation: overall and per-class top-1/top-5, confusion matrix, loss; per-image top-k.

Data stays as tensors: each batch of uint8 images goes through
:class:`cnnlab.data.pipeline.InputPipeline`, the one the trainer uses, so what a model sees at
evaluation is exactly what it saw at validation time during training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .data.images import to_model_input
from .data.pipeline import (
    InputPipeline,
    eval_loop,
    model_eval_resize,
    model_input_shape,
    model_stats,
)
from .device import autocast_context, pick_device
from .errors import ConfigError
from .i18n import _
from .locks import model_lock
from .models import evaluating
from .runs import Run, load_model, load_run, load_run_data


def _stats_for(model: nn.Module, info: Any, model_channels: int, mean: Sequence[float] | None,
               std: Sequence[float] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The model-space statistics to normalise with: given ones, else those recorded with the model
    (``cnnlab_norm``: the trainer's and a rebuilt run's), else ``info``'s when they fit the model
    exactly (see :func:`cnnlab.data.pipeline.model_stats`; never averaged)."""
    if (mean is None) != (std is None):
        raise ConfigError(_("give both mean and std (the model-space statistics), or neither."))
    if mean is None:
        recorded = getattr(model, "cnnlab_norm", None)
        if recorded is not None:
            mean, std = recorded
        else:
            mean, std = tuple(info.mean), tuple(info.std)
    return model_stats(mean, std, model_channels)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# The evaluation loop
# --------------------------------------------------------------------------------------


def eval_pipeline(
    model: nn.Module,
    data_shape: Sequence[int],
    info: Any,
    device: torch.device,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    eval_resize: float | None = None,
) -> InputPipeline:
    """The :class:`~cnnlab.data.pipeline.InputPipeline` that shows ``model`` images of
    ``data_shape`` (C x H x W, uint8) as at validation time (see :func:`evaluate` for ``mean``,
    ``std`` and ``eval_resize``). :func:`evaluate` and :mod:`cnnlab.mistakes` share it."""
    data_shape = tuple(int(v) for v in data_shape)
    model_shape = model_input_shape(model, data_shape)
    mean, std = _stats_for(model, info, model_shape[0], mean, std)
    return InputPipeline(
        data_shape=data_shape,  # type: ignore[arg-type]
        model_shape=model_shape, mean=mean, std=std, device=device,
        eval_resize=model_eval_resize(model) if eval_resize is None else float(eval_resize),
    )



@dataclass
class ClassResult:
    name: str
    count: int
    top1: float
    top5: float
    loss: float = float("nan")  # mean cross-entropy over the class's images (seed 000's table)


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
        """A per-class table like seed 000's (class, images, top1, top5, loss), then overall."""
        width = max([len("class"), len("overall")] + [len(c.name) for c in self.per_class])
        lines = [f"{'class':<{width}}  {'images':>6}  {'top1':>6}  {'top5':>6}  {'loss':>7}"]
        for c in self.per_class:
            t1 = f"{100 * c.top1:5.1f}%" if c.count else "     -"
            t5 = f"{100 * c.top5:5.1f}%" if c.count else "     -"
            loss = f"{c.loss:7.4f}" if c.count else "      -"
            lines.append(f"{c.name:<{width}}  {c.count:>6}  {t1:>6}  {t5:>6}  {loss}")
        lines.append("-" * len(lines[0]))
        lines.append(
            f"{'overall':<{width}}  {self.count:>6}  {100 * self.top1:5.1f}%  {100 * self.top5:5.1f}%  {self.loss:7.4f}"
        )
        return "\n".join(lines)


def row_shares(confusion: np.ndarray) -> np.ndarray:
    """Each cell of a K x K confusion matrix (rows: true class) as its share of the row's images, the
    colour of the Runs page's matrix: a class with few images reads like one with many. A row with
    no image stays all zero."""
    counts = np.asarray(confusion, dtype=np.float64)
    return counts / counts.sum(axis=1, keepdims=True).clip(min=1)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
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
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    eval_resize: float | None = None,
) -> EvalResult:
    """Evaluate ``model`` on a ``TensorSplit`` (uint8 images, int64 labels) of ``info``'s dataset.

    ``device=None`` uses the device the model already lives on. The model's expected input
    (channels, size) is taken from the trainer/run record or inferred (see
    :func:`model_input_shape`); channels and size are adapted as in training, through the same
    :class:`~cnnlab.data.pipeline.InputPipeline`.

    ``mean``/``std``: the model-space statistics (a run's ``model_mean``/``model_std``); default:
    the model's ``cnnlab_norm``, else ``info``'s when they fit the model's channels exactly.
    ``eval_resize``: default :func:`~cnnlab.data.pipeline.model_eval_resize` (256/224 for models on
    ImageNet weights, else 1).
    """
    if not 1 <= int(batch_size) <= 4096:
        raise ConfigError(_("batch size must be between 1 and 4096, got {batch}").format(batch=batch_size))
    dev = _model_device(model) if device is None else _resolve_device(device)
    dev = dev or torch.device("cpu")
    model.to(dev)
    classes = list(info.classes)
    num_classes = len(classes)
    if int(split.labels.shape[0]) == 0:
        raise ConfigError(_("the split to evaluate is empty."))
    pipeline = eval_pipeline(model, split.images.shape[1:], info, dev, mean=mean, std=std, eval_resize=eval_resize)
    r = eval_loop(model, split.images, split.labels, pipeline, num_classes, batch_size, per_class=True)
    confusion = r["confusion"].numpy()
    counts = confusion.sum(axis=1)
    diag = np.diag(confusion)
    top5 = r["class_top5"].numpy()
    class_loss = r["class_loss"].numpy()
    per_class = [
        ClassResult(
            name=classes[i], count=int(counts[i]),
            top1=float(diag[i] / counts[i]) if counts[i] else 0.0,
            top5=float(top5[i] / counts[i]) if counts[i] else 0.0,
            loss=float(class_loss[i] / counts[i]) if counts[i] else float("nan"),
        )
        for i in range(num_classes)
    ]
    n = r["count"]
    return EvalResult(
        loss=r["loss_sum"] / n, top1=r["correct1"] / n, top5=r["correct5"] / n, count=n,
        classes=classes, per_class=per_class, confusion=confusion,
    )


@torch.no_grad()
def predict_topk(
    model: nn.Module,
    image: Any,
    info: Any,
    k: int = 5,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one image: ``[(class_name, probability), ...]``.

    ``image`` is a PIL image, a uint8 ``C x H x W`` tensor, or a float one in [0, 1]. ``info``
    gives the class names and statistics: a :class:`~cnnlab.sources.ModelSource` (a PIL image is
    then prepared by its ``to_input``, with the run's model-space statistics and a pretrained
    model's own resize and crop) or a dataset's info. ``mean``/``std`` are model-space statistics
    (a run's ``model_mean``/``model_std``); without them the model's ``cnnlab_norm`` or ``info``'s
    are used when they fit the model's channels exactly; three RGB statistics for a grey model
    are refused (:class:`ConfigError`), never averaged.
    """
    classes = list(info.classes)
    dev = _model_device(model) or torch.device("cpu")
    k = max(1, min(int(k), len(classes)))
    is_pil = hasattr(image, "convert") and hasattr(image, "mode")
    if is_pil and mean is None and callable(getattr(info, "to_input", None)):
        return _topk(model, info.to_input(image).to(dev), classes, k)
    if is_pil:
        shape = model_input_shape(model, tuple(info.input_shape))
        m, s = _stats_for(model, info, shape[0], mean, std)
        return _topk(model, to_model_input(image, shape, m, s).to(dev), classes, k)
    if not isinstance(image, torch.Tensor):
        raise ConfigError(_("predict_topk needs a PIL image or a C x H x W tensor, got {kind}").format(
            kind=type(image).__name__))
    x = image[None] if image.ndim == 2 else image
    if x.ndim != 3:
        raise ConfigError(_("expected one image C x H x W, got shape {shape}").format(shape=tuple(x.shape)))
    if x.dtype != torch.uint8:
        x = x.float()
    data_shape = tuple(int(v) for v in x.shape)
    shape = model_input_shape(model, data_shape)
    m, s = _stats_for(model, info, shape[0], mean, std)
    pipeline = InputPipeline(
        data_shape=data_shape,  # type: ignore[arg-type]
        model_shape=shape, mean=m, std=s, device=dev, eval_resize=model_eval_resize(model),
    )
    return _topk(model, pipeline.eval_batch(x[None]), classes, k)


def _topk(model: nn.Module, batch: torch.Tensor, classes: list[str], k: int) -> list[tuple[str, float]]:
    # a model shared by app sessions may be inspected at the same time
    with model_lock(model), evaluating(model), torch.no_grad(), autocast_context(batch.device):
        logits = model(batch)
    probs = logits.float().softmax(dim=1)[0].cpu()
    values, indices = probs.topk(k)
    return [(classes[int(i)], float(v)) for v, i in zip(values, indices)]


def run_split(run: Run | str, split: str = "val", data: Any = None) -> tuple[Run, Any, Any]:
    """``(run, bundle, part)``: a saved run, its data rebuilt from its config (or ``data`` when the
    caller has it already; never downloading) and the ``split`` ("val", "test" or "train") as the
    trainer split it. A class count that changed since training is refused (:class:`ConfigError`)."""
    run = load_run(run) if isinstance(run, str) else run
    bundle = data if data is not None else load_run_data(run)
    part = getattr(bundle, split, None) if split in ("val", "test", "train") else None
    if part is None:
        text = _("{dataset} has no {split!r} split; use val or test.") if getattr(bundle, "test", None) is not None \
            else _("{dataset} has no {split!r} split; use val.")
        raise ConfigError(text.format(dataset=bundle.info.name, split=split))
    classes = list(run.meta.get("classes") or bundle.info.classes)
    if len(classes) != len(bundle.info.classes):
        raise ConfigError(_("run {run} has {classes} classes but its dataset now has {now}: the data changed since "
                            "training.").format(run=run.run_id, classes=len(classes), now=len(bundle.info.classes)))
    return run, bundle, part


def evaluate_run(run: Run | str, split: str = "val", device: str | torch.device = "cpu",
                 batch_size: int = 256, data: Any = None) -> EvalResult:
    """A saved run's best weights on its own data, split as in training (the one way the Runs page,
    ``cnnlab eval`` and the transfer summaries evaluate a run).

    ``split`` is "val", "test" or "train" (clean: no augmentation). ``data``: the run's dataset if
    the caller has it already (else rebuilt from the run's config, never downloading).
    """
    run, bundle, part = run_split(run, split, data)
    dev = pick_device(device) if isinstance(device, str) else device
    return evaluate(load_model(run.run_id, device=dev), part, bundle.info, device=dev, batch_size=batch_size)
