"""Looking at a model's mistakes: which validation images it gets wrong, why it might, and what it
thinks it saw.

fastai's ``plot_top_losses`` and Teachable Machine (issue #164) show the images a model is most
wrong about; a Grad-CAM heat map says where it looked. Heat maps alone can mislead, so each image
also comes with the *nearest training images of the predicted class*: the training examples whose
penultimate features (the input of the last ``Linear`` layer, captured with a forward hook, see
:func:`cnnlab.activations.penultimate`) are most similar (cosine) to the image's. They show what
the network takes the image for.

* :func:`predict_split`: per-image predictions, top-k probabilities and cross-entropy losses of a
  split, in batches (memory: one batch of activations plus ``N x k`` numbers).
* :class:`Predictions`: the confusion matrix, the images of one confusion cell, the top losses;
  :func:`confusion_cells`: a matrix's cells in the order worth looking at.
* :func:`embed_split`: penultimate features of (a bounded, class-stratified sample of) the
  training split: at most :data:`MAX_TRAIN_IMAGES` images, :data:`MAX_TRAIN_VALUES` numbers and
  :data:`MAX_TRAIN_MACS` multiply-accumulates (a big network embeds fewer images).
* :func:`nearest`: cosine nearest neighbours, restricted to one class.
* :func:`explain`: for a handful of images, the picture as the model sees it, the top-3
  probabilities, the Grad-CAM overlay of the predicted class and the nearest training images.
* :class:`RunMistakes`: all of it for a saved run, on its own data and split (the Runs page).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from .activations import denormalize, grad_cam, last_conv_name, overlay, penultimate, penultimate_layer
from .data.pipeline import InputPipeline
from .device import autocast_context, pick_device
from .errors import CnnlabError, ConfigError
from .evaluate import eval_pipeline, run_split
from .i18n import _
from .locks import model_lock
from .models import evaluating
from .runs import Run, load_model

MAX_TRAIN_IMAGES = 3000  # training images embedded for the nearest examples (a class-stratified sample)
MAX_TRAIN_VALUES = 16_000_000  # and at most this many feature values (64 MB of float32) whatever the width
MAX_TRAIN_MACS = 1_500_000_000_000  # and about a minute of a 2-core CPU: 833 images for a ResNet-18 at 224
MAX_EXPLAINED = 48  # images explained at once (a Grad-CAM each)


# --------------------------------------------------------------------------------------
# Per-image predictions
# --------------------------------------------------------------------------------------


@dataclass
class Predictions:
    """A model's verdict on every image of a split, in the split's order."""

    classes: list[str]
    labels: np.ndarray  # N int64: the true classes
    predicted: np.ndarray  # N int64: the top-1 classes
    losses: np.ndarray  # N float64: per-image cross-entropy (the loss the trainer minimises)
    top_classes: np.ndarray  # N x k int64, most probable first
    top_probs: np.ndarray  # N x k float32 (softmax)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def confusion(self) -> np.ndarray:
        """K x K counts, rows true class, columns predicted (as :class:`~cnnlab.evaluate.EvalResult`)."""
        k = len(self.classes)
        return np.bincount(self.labels * k + self.predicted, minlength=k * k).reshape(k, k)

    def _check_class(self, c: int, predicted: bool) -> int:
        if not 0 <= int(c) < len(self.classes):
            text = _("predicted class {c} does not exist: there are classes 0 to {last}.") if predicted else \
                _("true class {c} does not exist: there are classes 0 to {last}.")
            raise ConfigError(text.format(c=c, last=len(self.classes) - 1))
        return int(c)

    def cell(self, true: int, predicted: int) -> np.ndarray:
        """The images (positions in the split) of one confusion-matrix cell, highest loss first: on
        the diagonal the least confident right answers, elsewhere the most confident mistakes."""
        t, p = self._check_class(true, False), self._check_class(predicted, True)
        idx = np.flatnonzero((self.labels == t) & (self.predicted == p))
        return idx[np.argsort(-self.losses[idx], kind="stable")]

    def top_losses(self, k: int | None = None) -> np.ndarray:
        """The ``k`` images with the highest loss (all when ``k`` is None), highest first; equal
        losses keep the split's order (fastai's ``plot_top_losses``)."""
        order = np.argsort(-self.losses, kind="stable")
        return order if k is None else order[:max(0, int(k))]

    def top(self, i: int, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable classes of image ``i``: ``[(class, probability), ...]``."""
        return [(self.classes[int(c)], float(p)) for c, p in zip(self.top_classes[i, :k], self.top_probs[i, :k])]


def confusion_cells(confusion: np.ndarray) -> list[tuple[int, int]]:
    """The non-empty cells of a confusion matrix (rows: true class) as ``(true, predicted)``, in the
    order worth looking at: the mistakes, the most frequent first (equal counts in row order), then
    the right answers class by class."""
    conf = np.asarray(confusion)
    n = conf.shape[0]
    wrong = sorted(((i, j) for i in range(n) for j in range(n) if i != j and conf[i, j]), key=lambda c: -conf[c])
    return wrong + [(i, i) for i in range(n) if conf[i, i]]


def _forward(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    with autocast_context(x.device):  # as in the evaluation loop, so predictions agree with it
        return penultimate(model, x, layer)


def predict_split(
    model: nn.Module,
    split: Any,
    info: Any,
    *,
    pipeline: InputPipeline | None = None,
    batch_size: int = 256,
    k: int = 5,
) -> Predictions:
    """Per-image predictions of ``model`` on a ``TensorSplit`` of ``info``'s dataset, prepared as
    at validation time (:func:`cnnlab.evaluate.eval_pipeline` unless a ``pipeline`` is given).

    Batched: memory holds one batch of activations and ``N x k`` results, never all logits.
    """
    if not 1 <= int(batch_size) <= 4096:
        raise ConfigError(_("batch size must be between 1 and 4096, got {batch}").format(batch=batch_size))
    n = int(split.labels.shape[0])
    if n == 0:
        raise ConfigError(_("the split is empty: there is nothing to predict."))
    classes = list(info.classes)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    pipe = pipeline or eval_pipeline(model, split.images.shape[1:], info, dev)
    k = max(1, min(int(k), len(classes)))
    predicted = np.empty(n, np.int64)
    losses = np.empty(n, np.float64)
    top_c = np.empty((n, k), np.int64)
    top_p = np.empty((n, k), np.float32)
    for start in range(0, n, int(batch_size)):
        stop = min(n, start + int(batch_size))
        x = pipe.eval_batch(split.images[start:stop])
        y = split.labels[start:stop].to(x.device)
        logits = _logits(model, x)
        if logits.shape[1] != len(classes):
            raise ConfigError(_("the model gives {scores} scores but the data has {classes} classes.").format(
                scores=logits.shape[1], classes=len(classes)))
        losses[start:stop] = F.cross_entropy(logits, y, reduction="none").double().cpu().numpy()
        probs, cls = logits.softmax(dim=1).topk(k, dim=1)
        top_c[start:stop] = cls.cpu().numpy()
        top_p[start:stop] = probs.cpu().numpy()
        predicted[start:stop] = top_c[start:stop, 0]
    return Predictions(classes, split.labels.cpu().numpy().astype(np.int64), predicted, losses, top_c, top_p)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Float logits in eval mode, no grad, holding the model's lock (a model the app shares between
    sessions may be inspected at the same time); the model's mode is restored after."""
    with model_lock(model), evaluating(model), torch.no_grad(), autocast_context(x.device):
        return model(x).float()


# --------------------------------------------------------------------------------------
# Penultimate features and nearest examples
# --------------------------------------------------------------------------------------


@dataclass
class Embedding:
    """L2-normalised penultimate features of some images of a split."""

    features: torch.Tensor  # M x D float32, rows of unit length, on the CPU
    labels: np.ndarray  # M int64
    indices: np.ndarray  # M int64: positions in the split
    layer: str  # the layer whose input the features are
    total: int  # images in the split

    @property
    def capped(self) -> bool:
        """Whether only a sample of the split was embedded."""
        return len(self.indices) < self.total


@contextmanager
def _counting_macs(model: nn.Module) -> Iterator[list[int]]:
    """Count the multiply-accumulates of the convolutions and linear layers of the forward passes
    run inside the block, per image (the count is ``[macs]``, complete on exit)."""
    total = [0]

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() == 0:
            return
        per_image = output[0].numel()
        if isinstance(module, nn.modules.conv._ConvNd):
            k = int(np.prod(module.kernel_size))
            total[0] += per_image * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total[0] += per_image * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def stratified_sample(labels: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` positions (at least one per class present), spread evenly over each
    class's images so every class keeps candidates; sorted. All of them when they fit."""
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return np.arange(len(labels))
    present = np.unique(labels)
    quota = max(1, int(limit) // len(present))
    chosen = []
    for c in present:
        idx = np.flatnonzero(labels == c)
        if len(idx) > quota:
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, quota).round().astype(np.int64))]
        chosen.append(idx)
    return np.sort(np.concatenate(chosen))


def embed_split(
    model: nn.Module,
    split: Any,
    pipeline: InputPipeline,
    *,
    layer: str | None = None,
    max_images: int = MAX_TRAIN_IMAGES,
    max_values: int = MAX_TRAIN_VALUES,
    max_macs: int = MAX_TRAIN_MACS,
    batch_size: int = 128,
) -> Embedding:
    """Penultimate features (see :func:`cnnlab.activations.penultimate`) of a split's images, in
    batches, prepared as at validation time (no augmentation).

    Bounded: at most ``max_images`` images, fewer when the features are wide, so that no more than
    ``max_values`` numbers are kept (VGG16's 4096 features: 3,906 images at the default), and fewer
    when the network is heavy, so that the pass costs at most ``max_macs`` multiply-accumulates
    (convolutions and linear layers, counted on the first image). The images are a class-stratified
    sample (:func:`stratified_sample`: at least one per class) when the split is larger.
    """
    n = int(split.labels.shape[0])
    if n == 0:
        raise ConfigError(_("the split is empty: there are no examples to compare with."))
    if max_images < 1 or max_values < 1:
        raise ConfigError(_("max_images and max_values must be positive."))
    name = layer or penultimate_layer(model)
    with model_lock(model), _counting_macs(model) as macs:  # no other session's pass is counted
        first = _forward(model, pipeline.eval_batch(split.images[:1]), name)[0]
    width = int(first.shape[1])
    limit = max(1, min(int(max_images), int(max_values) // max(1, width), int(max_macs) // max(1, macs[0])))
    labels = split.labels.cpu().numpy().astype(np.int64)
    chosen = stratified_sample(labels, limit)
    out = torch.empty(len(chosen), width, dtype=torch.float32)
    for start in range(0, len(chosen), int(batch_size)):
        part = torch.from_numpy(chosen[start:start + int(batch_size)])
        feats = _forward(model, pipeline.eval_batch(split.images[part]), name)[0]
        out[start:start + len(part)] = feats.float().cpu()
    return Embedding(F.normalize(out, dim=1), labels[chosen], chosen, name, n)


def nearest(embedding: Embedding, query: torch.Tensor, cls: int | None = None, k: int = 4) -> list[tuple[int, float]]:
    """The ``k`` embedded images most similar to ``query`` (one feature vector, cosine similarity),
    only among those of class ``cls`` when given: ``[(position in the split, similarity), ...]``,
    most similar first. Empty when no embedded image has that class."""
    q = F.normalize(query.detach().float().cpu().flatten(), dim=0)
    if q.shape[0] != embedding.features.shape[1]:
        raise ConfigError(_("the query has {query} features but the examples have {examples}.").format(
            query=q.shape[0], examples=embedding.features.shape[1]))
    rows = np.arange(len(embedding.indices)) if cls is None else np.flatnonzero(embedding.labels == int(cls))
    if len(rows) == 0 or k < 1:
        return []
    sims = embedding.features[torch.from_numpy(rows)] @ q
    best = torch.topk(sims, min(int(k), len(rows)))
    return [(int(embedding.indices[rows[int(i)]]), float(s)) for s, i in zip(best.values, best.indices)]


# --------------------------------------------------------------------------------------
# Explaining a handful of images
# --------------------------------------------------------------------------------------


@dataclass
class Neighbour:
    index: int  # position in the training split
    similarity: float  # cosine similarity of the penultimate features, in [-1, 1]
    image: np.ndarray  # H x W x 3 uint8, as the model sees it


@dataclass
class Example:
    """One validation image, explained."""

    index: int  # position in the split
    true: str
    predicted: str
    loss: float
    top: list[tuple[str, float]]  # the three most probable classes
    image: np.ndarray  # H x W x 3 uint8, as the model sees it (size, channels)
    heatmap: np.ndarray  # Grad-CAM of the predicted class, H x W in [0, 1]
    cam_layer: str
    overlay: Image.Image  # the heat map over the image
    neighbours: list[Neighbour]  # nearest training images of the predicted class

    @property
    def correct(self) -> bool:
        return self.true == self.predicted


def explain(
    model: nn.Module,
    split: Any,
    predictions: Predictions,
    indices: Sequence[int],
    pipeline: InputPipeline,
    *,
    embedding: Embedding | None = None,
    train: Any = None,
    n_neighbours: int = 4,
    cam_layer: str | None = None,
) -> list[Example]:
    """For each of ``indices`` (positions in ``split``, at most :data:`MAX_EXPLAINED`): the image as
    the model sees it, its top-3, the Grad-CAM overlay of the predicted class (at ``cam_layer``,
    default the end of the convolutional part) and, given the ``embedding`` of the ``train`` split,
    its ``n_neighbours`` nearest training images of the predicted class."""
    idx = [int(i) for i in indices]
    if len(idx) > MAX_EXPLAINED:
        raise ConfigError(_("explain at most {most} images at once, not {count}.").format(
            most=MAX_EXPLAINED, count=len(idx)))
    if any(not 0 <= i < len(predictions) for i in idx):
        raise ConfigError(_("image positions must be between 0 and {last}.").format(last=len(predictions) - 1))
    if not idx:
        return []
    if embedding is not None and train is None:
        raise ConfigError(_("the nearest examples need the training split the embedding was made of."))
    x = pipeline.eval_batch(split.images[torch.tensor(idx)])
    layer = cam_layer or last_conv_name(model, x[:1])
    feats = _forward(model, x, embedding.layer)[0].cpu() if embedding is not None else None
    mean, std = pipeline.model_mean, pipeline.model_std
    classes = predictions.classes
    examples = []
    for row, i in enumerate(idx):
        pred = int(predictions.predicted[i])
        picture = denormalize(x[row], mean, std)
        cam = grad_cam(model, x[row:row + 1], target=pred, layer=layer)
        neighbours: list[Neighbour] = []
        if feats is not None:
            found = nearest(embedding, feats[row], pred, n_neighbours)  # type: ignore[arg-type]
            if found:
                near = pipeline.eval_batch(train.images[torch.tensor([j for j, _ in found])])
                neighbours = [Neighbour(j, s, denormalize(near[r], mean, std)) for r, (j, s) in enumerate(found)]
        examples.append(Example(
            index=i, true=classes[int(predictions.labels[i])], predicted=classes[pred],
            loss=float(predictions.losses[i]), top=predictions.top(i, 3), image=picture,
            heatmap=cam.heatmap, cam_layer=str(cam.layer), overlay=overlay(picture, cam.heatmap),
            neighbours=neighbours,
        ))
    return examples


# --------------------------------------------------------------------------------------
# A saved run
# --------------------------------------------------------------------------------------


class RunMistakes:
    """The mistakes of a saved run's best weights on its own validation split.

    Built once (the model, its data split as in training, the per-image predictions); the
    training images' features are computed on first use (:meth:`embedding`) and kept. Safe to
    share between threads (the app caches one per run).
    """

    def __init__(self, run: Run | str, *, data: Any = None, device: str | torch.device = "cpu",
                 batch_size: int = 256, max_train_images: int = MAX_TRAIN_IMAGES) -> None:
        run, bundle, val = run_split(run, "val", data)
        dev = pick_device(device) if isinstance(device, str) else device
        self.run_id = run.run_id
        self.data = bundle
        self.val = val
        self.model = load_model(run.run_id, device=dev)
        self.pipeline = eval_pipeline(self.model, val.images.shape[1:], bundle.info, dev)
        self.predictions = predict_split(self.model, val, bundle.info, pipeline=self.pipeline, batch_size=batch_size)
        self.max_train_images = int(max_train_images)
        self._embedding: Embedding | None = None
        self._lock = threading.Lock()

    @property
    def classes(self) -> list[str]:
        return self.predictions.classes

    def embedding(self) -> Embedding:
        """The training split's penultimate features (a bounded sample, see :func:`embed_split`)."""
        with self._lock:
            if self._embedding is None:
                train = self.data.train
                if tuple(train.images.shape[1:]) != tuple(self.val.images.shape[1:]):
                    raise CnnlabError(_("the training and validation images differ in shape; they cannot be "
                                        "compared."))
                self._embedding = embed_split(self.model, train, self.pipeline, max_images=self.max_train_images)
            return self._embedding

    def cell(self, true: int, predicted: int) -> np.ndarray:
        return self.predictions.cell(true, predicted)

    def top_losses(self, k: int | None = None) -> np.ndarray:
        return self.predictions.top_losses(k)

    def explain(self, indices: Sequence[int], n_neighbours: int = 4) -> list[Example]:
        """:func:`explain` on this run's validation images, with its training images' features."""
        emb = self.embedding() if n_neighbours > 0 else None
        return explain(self.model, self.val, self.predictions, indices, self.pipeline,
                       embedding=emb, train=self.data.train, n_neighbours=n_neighbours)
