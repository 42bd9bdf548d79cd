"""What a channel responds to (issue 25): its top dataset patches, an input optimised to excite it,
and the same picture for the same architecture with random weights.

A feature map shows what one image does to a layer; a 5x5 kernel of a deep layer says little. Two
classic pictures answer "what does channel c of layer L look for?", for any convolution of any model:

* :func:`top_patches`: over up to ``max_images`` validation images, the ``k`` positions (one per image
  at most) where the channel's output is largest, as receptive-field crops of the images the model saw
  (:class:`TopPatches`). The images go through the model in batches, without gradients, and a forward
  hook stops each pass at the layer (nothing after it runs); only a running top-k per channel is kept,
  never the activations. The boxes are the convolution explorer's receptive fields
  (:meth:`cnnlab.convolution.LayerCapture.receptive_field`).
* :func:`optimise`: activation maximisation (Erhan et al. 2009; Olah et al. 2017, as Lucid and Lucent
  do it): an input, at the model's own size and channels, changed by gradient ascent until the
  channel's *mean* output over the map (or its *centre* unit) is as large as it gets. What makes the
  picture readable rather than high-frequency noise: the image is a Fourier spectrum scaled by 1/f
  (natural images' spectrum), three colour channels are decorrelated with ImageNet's colour matrix, and
  every step sees it shifted, scaled and rotated at random, so only patterns that survive small moves
  count. The image lives in [0, 1] (a sigmoid) and is normalised with the model's own statistics before
  each pass. Deterministic from a seed (on the CPU; a GPU adds its float rounding). The model stays in
  eval mode and its weights are frozen for the optimisation (``requires_grad`` given back after) and
  never changed.
* :func:`random_twin`: the sanity check of Adebayo et al. (2018). Some explanation pictures look the
  same for a network with random weights: the method draws them, not the training. The same
  architecture, built through the registry with the same arguments (pretrained weights switched off)
  and a seed, shows what the method alone draws.
* :func:`patches_picture`, :func:`optimised_picture` and :func:`save_png`: a grid of channels (patches
  with their values as captions; optimised inputs beside their random-weights twins), written atomically.

The activation is the convolution's own output, before any activation function after it.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from .activations import split_call
from .convolution import capture_layer
from .data.pipeline import InputPipeline
from .errors import ConfigError, LayerNotFoundError
from .files import atomic_file
from .fonts import font as text_font
from .i18n import _, fmt
from .locks import model_lock
from .models import PRETRAINED_FAMILY, create, evaluating

__all__ = [
    "DEFAULT_IMAGES", "DEFAULT_STEPS", "MAX_CHANNELS", "MAX_IMAGES", "MAX_STEPS", "OBJECTIVES", "TOP_K",
    "ChannelPatches", "Optimised", "Patch", "TopPatches", "check_images", "check_steps", "conv_layer", "conv_layers",
    "optimise", "optimised_picture", "parse_channels", "patches_picture", "png_path", "random_twin", "save_png",
    "top_patches",
]

TOP_K = 9
DEFAULT_IMAGES, MAX_IMAGES = 1000, 20_000
MAX_CHANNELS = 64  # channels in one picture: 64 rows of 9 patches is already a poster
# Adam on the Fourier coefficients: Lucent takes 512 steps at 0.05. 64 steps at 0.1 draw the same pictures as
# 128 at 0.05 (measured on a trained MiniAlexNet's channels: values within 10%), and keep VGG16 at 224 under
# a minute on two CPU cores; more steps mostly saturate the colours further.
DEFAULT_STEPS, MAX_STEPS = 64, 2048
LEARNING_RATE = 0.1
OBJECTIVES = ("mean", "centre")  # the channel's mean output over its map, or its centre unit

# Lucid's colour decorrelation: the square root of ImageNet's colour covariance (its SVD), columns scaled
# so the largest has norm 1. Optimising in these decorrelated colours keeps pictures from going grey-green.
_COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()
_TWIN_SEEDS = 0x7715_0000  # random twins draw from seeds far from the trainer's (it seeds torch with config.seed)
_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))  # Lucent's random_scale: 0.90 ... 1.10
_ANGLES = tuple(range(-10, 11)) + (0,) * 5  # Lucent's random_rotate, in degrees, unrotated more often


# --- layers and channels ---------------------------------------------------------------------


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's convolutions (``nn.Conv2d``), in registration order."""
    return [n for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d)]


def _listed(names: list[str], limit: int = 40) -> str:
    shown = ", ".join(names[:limit])
    return _("{names} ... ({count} in all)").format(names=shown, count=len(names)) if len(names) > limit else shown


def conv_layer(model: nn.Module, layer: str) -> nn.Conv2d:
    """The convolution ``layer`` names (``name`` or ``name#k`` for its k-th call), or a one-line error
    naming the model's convolutions (and the closest names)."""
    convs = conv_layers(model)
    if not convs:
        raise ConfigError(_("{model} has no convolution layer: a channel's picture needs one.").format(
            model=type(model).__name__))
    base = split_call(layer)[0]
    modules = dict(model.named_modules())
    if not base or base not in modules:
        close = difflib.get_close_matches(base, convs, n=3, cutoff=0.4)
        text = _("no layer named {layer!r} in {model}. Closest: {closest}. Its convolutions: {convolutions}.") \
            if close else _("no layer named {layer!r} in {model}. Its convolutions: {convolutions}.")
        raise LayerNotFoundError(text.format(layer=layer, model=type(model).__name__, closest=", ".join(close),
                                             convolutions=_listed(convs)))
    module = modules[base]
    if not isinstance(module, nn.Conv2d):
        raise ConfigError(_("layer {layer!r} ({kind}) is not a convolution; pick one of: {convolutions}.").format(
            layer=layer, kind=type(module).__name__, convolutions=_listed(convs)))
    return module


def _check_channels(channels: Sequence[int], count: int, layer: str) -> list[int]:
    chosen = [int(c) for c in channels]
    if not chosen:
        raise ConfigError(_("no channel given: name at least one, e.g. 0 or 0-7."))
    if len(chosen) > MAX_CHANNELS:
        raise ConfigError(_("{count} channels asked; at most {most} fit in one picture.").format(
            count=len(chosen), most=MAX_CHANNELS))
    wrong = [c for c in chosen if not 0 <= c < count]
    if wrong:
        raise ConfigError(_("channel {channel} does not exist: {layer} has {count} channels, 0 to {last}.").format(
            channel=wrong[0], layer=layer, count=count, last=count - 1))
    if len(set(chosen)) != len(chosen):
        raise ConfigError(_("channel {channel} is named twice.").format(
            channel=next(c for c in chosen if chosen.count(c) > 1)))
    return chosen


def parse_channels(text: str, count: int, layer: str = "") -> list[int]:
    """``"0-7"``, ``"3"`` or ``"0,2,5-9"`` as channel numbers, each checked against the layer's ``count``
    (``layer``: its name in a message; by default "the layer")."""
    chosen: list[int] = []
    for part in str(text).split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError:
            raise ConfigError(_("channels {text!r}: give numbers and ranges like 0-7 or 0,3,5-6.").format(
                text=text)) from None
        if last < first:
            raise ConfigError(_("channels {part!r}: a range goes up, e.g. {last}-{first}.").format(
                part=part.strip(), last=last, first=first))
        if last - first >= MAX_CHANNELS:
            raise ConfigError(_("channels {part!r}: at most {most} fit in one picture.").format(
                part=part.strip(), most=MAX_CHANNELS))
        chosen += range(first, last + 1)
    return _check_channels(chosen, count, layer or _("the layer"))


def check_images(count: int) -> None:
    """How many validation images to scan: 1 to :data:`MAX_IMAGES`."""
    if not 1 <= int(count) <= MAX_IMAGES:
        raise ConfigError(_("the number of images must be between 1 and {most:,}, got {count}.").format(
            most=MAX_IMAGES, count=count))


def check_steps(steps: int) -> None:
    """Optimisation steps: 1 to :data:`MAX_STEPS`."""
    if not 1 <= int(steps) <= MAX_STEPS:
        raise ConfigError(_("steps must be between 1 and {most}, got {steps}.").format(most=MAX_STEPS, steps=steps))


# --- running a model up to one layer ---------------------------------------------------------


class _Reached(Exception):
    """Raised by the hook once the layer has run: nothing after it is needed."""


@contextmanager
def _up_to(model: nn.Module, layer: str) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """A function ``x -> the layer's output for x`` that runs the model only as far as the layer: a
    forward hook keeps the output and stops the pass. The hook is removed on exit (also on error)."""
    module = conv_layer(model, layer)
    call = split_call(layer)[1]
    state: dict = {}

    def hook(mod: nn.Module, inputs, output) -> None:
        if state["calls"] == call:
            state["out"] = output
            raise _Reached
        state["calls"] += 1

    def run(x: torch.Tensor) -> torch.Tensor:
        state.update(calls=0, out=None)
        try:
            model(x)
        except _Reached:
            return state.pop("out")
        raise LayerNotFoundError(_("layer {layer!r} did not run in the forward pass (a '#k' beyond the number of "
                                   "times it is used, or a layer outside the forward path).").format(layer=layer))

    handle = module.register_forward_hook(hook)
    try:
        yield run
    finally:
        handle.remove()


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextmanager
def _plain(device: torch.device) -> Iterator[None]:
    """Float32 throughout: no autocast a caller may have around us."""
    kind = device.type if device.type in ("cuda", "cpu", "mps", "xpu") else None
    with torch.autocast(kind, enabled=False) if kind else nullcontext():
        yield


# --- top patches -----------------------------------------------------------------------------


@dataclass
class Patch:
    """One of a channel's strongest positions: its value, where it is, and what the channel saw there."""

    value: float
    image: int  # index of the image in the images given
    row: int  # position in the layer's map
    col: int
    box: tuple[int, int, int, int]  # top, left, bottom, right on the model's input (inclusive, inside it)
    field: tuple[int, int, int, int]  # the same before clipping: padding lets a field reach outside the image
    crop: np.ndarray  # uint8 h x w x C: the image as the model saw it, inside ``box``

    def as_dict(self) -> dict:
        return {"value": self.value, "image": self.image, "row": self.row, "col": self.col,
                "box": list(self.box), "field": list(self.field)}


@dataclass
class ChannelPatches:
    channel: int
    patches: list[Patch]  # strongest first
    mean: float  # the channel's output averaged over every position of every image scanned
    centre_mean: float  # its centre unit's, averaged over the images
    best_mean: float  # the largest mean over one image's map: the most any one image excites the whole map
    best_centre: float  # the largest centre unit of one image

    def baseline(self, objective: str) -> float:
        """The validation average of what ``objective`` measures."""
        return self.centre_mean if objective == "centre" else self.mean

    def best(self, objective: str) -> float:
        """The largest value of what ``objective`` measures on one validation image."""
        return self.best_centre if objective == "centre" else self.best_mean

    def as_dict(self) -> dict:
        return {"channel": self.channel, "mean": self.mean, "centre_mean": self.centre_mean,
                "best_mean": self.best_mean, "best_centre": self.best_centre,
                "patches": [p.as_dict() for p in self.patches]}


@dataclass
class TopPatches:
    layer: str
    images: int  # how many images were scanned
    input_size: tuple[int, int]  # the model's input, where the boxes are
    map_size: tuple[int, int]  # the layer's output
    channels: list[ChannelPatches]

    def of(self, channel: int) -> ChannelPatches:
        for c in self.channels:
            if c.channel == channel:
                return c
        raise KeyError(channel)


@dataclass
class _Running:
    """A running top-k per channel (values, image indices, flat positions), sums for the means and the
    largest per-image mean and centre unit."""

    k: int
    values: torch.Tensor  # K x <=k
    images: torch.Tensor
    positions: torch.Tensor
    sums: torch.Tensor  # K, float64
    centres: torch.Tensor
    best_means: torch.Tensor  # K
    best_centres: torch.Tensor

    @classmethod
    def empty(cls, channels: int, k: int, device: torch.device) -> "_Running":
        def none(dtype):
            return torch.zeros(channels, 0, dtype=dtype, device=device)
        zeros = torch.zeros(channels, dtype=torch.float64, device=device)
        lowest = torch.full((channels,), -math.inf, device=device)
        return cls(k, none(torch.float32), none(torch.long), none(torch.long), zeros, zeros.clone(), lowest,
                   lowest.clone())

    def add(self, act: torch.Tensor, first_image: int) -> None:
        """One batch of the chosen channels' maps (B x K x h x w), images numbered from ``first_image``."""
        b, _, h, w = act.shape
        flat = act.flatten(2)
        best, where = flat.max(2)  # B x K: each image's strongest position
        centre = act[:, :, h // 2, w // 2]
        self.sums += flat.sum((0, 2), dtype=torch.float64)
        self.centres += centre.sum(0, dtype=torch.float64)
        self.best_means = torch.maximum(self.best_means, flat.mean(2).max(0).values)
        self.best_centres = torch.maximum(self.best_centres, centre.max(0).values)
        index = torch.arange(first_image, first_image + b, device=act.device).expand(act.shape[1], b)
        values = torch.cat([self.values, best.T], 1)
        images = torch.cat([self.images, index], 1)
        positions = torch.cat([self.positions, where.T], 1)
        top = values.topk(min(self.k, values.shape[1]), dim=1).indices
        self.values, self.images = values.gather(1, top), images.gather(1, top)
        self.positions = positions.gather(1, top)


def _scan(model: nn.Module, layer: str, chans: list[int], images: torch.Tensor, pipeline: InputPipeline, n: int,
          k: int, batch_size: int, progress: Callable[[int, int], None] | None) -> tuple[_Running, tuple[int, int]]:
    """Every image once through the model up to the layer, keeping the running top-k of each channel."""
    index = torch.tensor(chans, device=pipeline.device)
    running = _Running.empty(len(chans), k, pipeline.device)
    size = (0, 0)
    with model_lock(model), evaluating(model), torch.no_grad(), _plain(pipeline.device), \
            _up_to(model, layer) as run:
        for start in range(0, n, batch_size):
            act = run(pipeline.eval_batch(images[start:min(n, start + batch_size)]))
            running.add(act.index_select(1, index).float(), start)
            size = tuple(act.shape[-2:])
            if progress is not None:
                progress(min(n, start + batch_size), n)
    return running, size  # type: ignore[return-value]


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """N x C x H x W float images in [0, 1] as uint8 N x H x W x C."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _seen(pipeline: InputPipeline, images: torch.Tensor) -> np.ndarray:
    """Images as the model sees them (cut, resized, channels adapted), back to uint8 N x H x W x C."""
    x = pipeline.eval_batch(images)
    mean = torch.tensor(pipeline.model_mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(pipeline.model_std, device=x.device).view(1, -1, 1, 1)
    return _to_uint8(x * std + mean)


def _patches(model: nn.Module, layer: str, running: _Running, images: torch.Tensor, pipeline: InputPipeline,
             map_size: tuple[int, int], batch_size: int) -> list[list[Patch]]:
    """The receptive-field crop of every kept position, from its image prepared again (in batches)."""
    geometry = capture_layer(model, layer, pipeline.eval_batch(images[:1]))  # the layer's receptive fields
    fields = {p: geometry.receptive_field(*divmod(p, map_size[1])) for p in set(running.positions.flatten().tolist())}
    kept = [[(float(v), int(i), fields[p]) for v, i, p in zip(values, found, where)]
            for values, found, where in zip(running.values.tolist(), running.images.tolist(),
                                            running.positions.tolist())]
    wanted = sorted({i for row in kept for _, i, _ in row})
    crops: dict[tuple[int, int], np.ndarray] = {}
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start:start + batch_size]
        seen = dict(zip(chunk, _seen(pipeline, images[chunk])))
        for c, row in enumerate(kept):
            for _value, i, rf in row:
                if i in seen:
                    crops[(c, i)] = seen[i][rf.top:rf.bottom + 1, rf.left:rf.right + 1].copy()
    return [[Patch(v, i, rf.row, rf.col, (rf.top, rf.left, rf.bottom, rf.right), rf.unclipped, crops[(c, i)])
             for v, i, rf in row] for c, row in enumerate(kept)]


def top_patches(model: nn.Module, layer: str, channels: Sequence[int], images: torch.Tensor,
                pipeline: InputPipeline, *, k: int = TOP_K, max_images: int = DEFAULT_IMAGES, batch_size: int = 64,
                progress: Callable[[int, int], None] | None = None) -> TopPatches:
    """The ``k`` strongest positions of each channel of ``layer`` over the first ``max_images`` of
    ``images`` (uint8 N x C x H x W, e.g. a validation split), at most one per image, with the
    receptive-field crop of each. ``pipeline`` prepares the images as at validation time (the model's
    size, channels and statistics). ``progress(done, total)`` is called after each batch."""
    chans = _check_channels(channels, conv_layer(model, layer).out_channels, layer)
    check_images(max_images)
    if not 1 <= int(k) <= 100 or not 1 <= int(batch_size) <= 4096:
        raise ConfigError(_("k must be between 1 and 100 and the batch size between 1 and 4096, got {k}, "
                            "{batch}.").format(k=k, batch=batch_size))
    n = min(int(max_images), int(images.shape[0]))
    if n == 0:
        raise ConfigError(_("no images to look through: the split is empty."))
    running, map_size = _scan(model, layer, chans, images, pipeline, n, int(k), int(batch_size), progress)
    rows = _patches(model, layer, running, images, pipeline, map_size, int(batch_size))
    per_map = n * map_size[0] * map_size[1]
    found = [ChannelPatches(c, row, float(running.sums[j]) / per_map, float(running.centres[j]) / n,
                            float(running.best_means[j]), float(running.best_centres[j]))
             for j, (c, row) in enumerate(zip(chans, rows))]
    size = tuple(int(v) for v in pipeline.model_shape[1:])
    return TopPatches(layer, n, size, map_size, found)  # type: ignore[arg-type]


# --- activation maximisation -----------------------------------------------------------------


@dataclass
class Optimised:
    """An input optimised to excite one channel, and how much it does."""

    channel: int
    image: np.ndarray  # uint8 H x W x C: the model's input size and channels
    value: float  # the objective on the finished image, seen as it is (no shift, scale or rotation)
    start: float  # on the starting image (grey, faint noise)
    objective: str  # "mean" or "centre"
    baseline: float | None = None  # the same measure averaged over validation images, when known
    history: list[float] = field(default_factory=list)  # the objective at each step (on the moved image)

    @property
    def ratio(self) -> float | None:
        """``value`` over the validation average; None when that average is unknown or not positive."""
        return self.value / self.baseline if self.baseline is not None and self.baseline > 0 else None

    def as_dict(self) -> dict:
        return {"channel": self.channel, "value": self.value, "start": self.start, "objective": self.objective,
                "validation_mean": self.baseline, "ratio": self.ratio}


def _frequencies(h: int, w: int) -> torch.Tensor:
    """The spatial frequency of each coefficient of a real 2-D FFT of an h x w image (cycles per pixel)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return (fx * fx + fy * fy).sqrt()


class _Picture:
    """The image parametrisation: Fourier coefficients scaled by 1/f (or plain pixels), decorrelated
    colours, a sigmoid to [0, 1]. Lucent's ``fft_image`` + ``to_valid_rgb``."""

    def __init__(self, shape: tuple[int, int, int], fourier: bool, device: torch.device):
        c, h, w = shape
        self.shape, self.fourier = shape, fourier
        self.size = (c, h, w // 2 + 1, 2) if fourier else (c, h, w)  # one image's parameters
        low = 1.0 / max(h, w)  # the lowest frequency kept from growing without bound
        self.scale = (1.0 / _frequencies(h, w).clamp_min(low)).to(device)[None, None, :, :, None]

    def start(self, generators: list[torch.Generator]) -> torch.Tensor:
        """Noise, one image per generator, ready for gradients: strong enough that a network whose first ReLUs
        are all off for a uniform grey picture (negative biases) still passes a gradient to its input (a start of
        Lucid's faint 0.01 left such channels at their starting value, a plain grey picture)."""
        noise = torch.stack([torch.randn(self.size, generator=g) for g in generators])
        return (noise * 0.1).to(self.scale.device).requires_grad_(True)

    def image(self, param: torch.Tensor) -> torch.Tensor:
        """The parameters as N x C x H x W images in [0, 1]."""
        c, h, w = self.shape
        if self.fourier:
            spectrum = torch.view_as_complex((self.scale * param).contiguous())
            x = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / 4.0  # Lucid's 4: less saturated colours
        else:
            x = param
        if c == 3:
            x = torch.einsum("nchw,dc->ndhw", x, _COLOUR.to(x.device))
        return torch.sigmoid(x)


def _random_views(x: torch.Tensor, generators: list[torch.Generator], jitter: int) -> torch.Tensor:
    """Each image shifted by up to ``jitter`` pixels, scaled by 0.9-1.1 and rotated by up to 10 degrees
    (its own draw from its own generator), what leaves the frame filled with grey. One bilinear resampling
    for the three moves (Lucent's pad, jitter, random_scale, random_rotate, jitter)."""
    n, _, h, w = x.shape
    thetas = []
    for g in generators[:n]:
        s = _SCALES[int(torch.randint(len(_SCALES), (1,), generator=g))]
        a = math.radians(_ANGLES[int(torch.randint(len(_ANGLES), (1,), generator=g))])
        dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=g) * 2.0 / torch.tensor([h, w])).tolist()
        cos, sin = math.cos(a) / s, math.sin(a) / s
        thetas.append([[cos, -sin * h / w, dx], [sin * w / h, cos, dy]])  # rotation in pixels, not in [-1, 1]^2
    theta = torch.tensor(thetas, dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def _measure(act: torch.Tensor, index: torch.Tensor, objective: str) -> torch.Tensor:
    """Image i's objective for channel ``index[i]``: its mean output, or its centre unit."""
    rows = torch.arange(act.shape[0], device=act.device)
    maps = act[rows, index]  # N x h x w
    if objective == "centre":
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]
    return maps.flatten(1).mean(1)


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Gradients flow to the input only; every parameter's ``requires_grad`` is given back afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _flag in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _generators(seed: int, chans: list[int]) -> list[torch.Generator]:
    """One generator per channel, from the seed and the channel: a channel's picture does not depend on
    which other channels are optimised beside it."""
    return [torch.Generator().manual_seed(int(seed) * 1_000_003 + c) for c in chans]


def optimise(model: nn.Module, layer: str, channels: Sequence[int], input_shape: Sequence[int],
             mean: Sequence[float], std: Sequence[float], *, steps: int = DEFAULT_STEPS, seed: int = 0,
             objective: str = "mean", fourier: bool = True, lr: float = LEARNING_RATE,
             reference: TopPatches | None = None,
             progress: Callable[[int, int], None] | None = None) -> list[Optimised]:
    """An input optimised to excite each channel of ``layer`` (see the module docstring), one per channel,
    optimised together as a batch. ``input_shape`` (C, H, W), ``mean`` and ``std`` are the model's own
    input and normalisation (a run's ``model_mean``/``model_std``, the model's ``cnnlab_norm``). ``objective``:
    "mean" (the channel's mean output over its map) or "centre" (its centre unit). ``reference``: top
    patches of the same layer and channels, whose validation averages become each result's ``baseline``."""
    if objective not in OBJECTIVES:
        raise ConfigError(_("objective {objective!r}: use one of {choices}.").format(
            objective=objective, choices=", ".join(OBJECTIVES)))
    check_steps(steps)
    chans = _check_channels(channels, conv_layer(model, layer).out_channels, layer)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or len(mean) != shape[0] or len(std) != shape[0] or min(shape) < 1:
        raise ConfigError(_("input shape {shape} with {means}/{stds} mean/std values: give C, H, W and one mean and "
                            "std per input channel.").format(shape=shape, means=len(mean), stds=len(std)))
    device = _device(model)
    m = torch.tensor([float(v) for v in mean], device=device).view(1, -1, 1, 1)
    s = torch.tensor([float(v) for v in std], device=device).view(1, -1, 1, 1)
    generators = _generators(seed, chans)
    picture = _Picture(shape, fourier, device)  # type: ignore[arg-type]
    param = picture.start(generators)
    index = torch.tensor(chans, device=device)
    jitter = max(1, round(0.06 * min(shape[1:])))
    history: list[list[float]] = []
    with model_lock(model), evaluating(model), _frozen(model), _plain(device), _up_to(model, layer) as run:
        with torch.no_grad():
            start = _measure(run((picture.image(param) - m) / s), index, objective).tolist()
        optimiser = torch.optim.Adam([param], lr=lr)
        for step in range(int(steps)):
            with torch.enable_grad():
                seen = _random_views(picture.image(param), generators, jitter)
                values = _measure(run((seen - m) / s), index, objective)
                optimiser.zero_grad(set_to_none=True)
                (-values.sum()).backward()
            optimiser.step()
            history.append(values.detach().tolist())
            if progress is not None:
                progress(step + 1, int(steps))
        with torch.no_grad():
            final = picture.image(param)
            reached = _measure(run((final - m) / s), index, objective).tolist()
    pictures = _to_uint8(final)
    return [Optimised(c, pictures[j], reached[j], start[j], objective,
                      reference.of(c).baseline(objective) if reference is not None else None,
                      [h[j] for h in history])
            for j, c in enumerate(chans)]


def random_twin(model: nn.Module, seed: int = 0, registry_kwargs: Mapping | None = None) -> nn.Module:
    """The same architecture with random weights (the sanity check), in eval mode on the model's device.

    A registry model (``cnnlab_spec``) is built again through :func:`cnnlab.models.create` with
    ``registry_kwargs`` (a run's ``model_kwargs``; nothing for a zoo model with its defaults), ImageNet
    weights switched off (``weights=None``, ``pretrained=False``): the architecture's own initialisation.
    Any other model is copied and each layer's ``reset_parameters`` called. Seeded without touching the
    global random state, and apart from training seeds: a training with seed ``seed`` starts from other
    weights (else a briefly trained model would look like its own twin). The twin keeps the model's input
    shape and normalisation (it is shown the same images)."""
    spec = getattr(model, "cnnlab_spec", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TWIN_SEEDS + int(seed))
        if spec is None:
            twin = copy.deepcopy(model)
            for module in twin.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
        else:
            kwargs = dict(registry_kwargs or {})
            if spec.family == PRETRAINED_FAMILY:
                kwargs["weights"] = None
            elif spec.family == "transfer":
                kwargs["pretrained"] = False
            twin = create(spec.name, **kwargs)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if {k: tuple(v.shape) for k, v in twin.state_dict().items()} != shapes:
        name = spec.name if spec else type(model).__name__
        raise ConfigError(_("{model} built again with {kwargs} has other layers or shapes than this model: give the "
                            "arguments it was created with (a run's model_kwargs).").format(
            model=name, kwargs=dict(registry_kwargs or {})))
    for attr in ("cnnlab_norm", "cnnlab_input_shape"):
        if hasattr(model, attr):
            setattr(twin, attr, getattr(model, attr))
    return twin.to(_device(model)).eval()


# --- pictures --------------------------------------------------------------------------------

_OUTSIDE = (214, 222, 236)  # where a receptive field reaches past the image's edge (the layers' zero padding)
_INK, _GREY = (20, 20, 20), (90, 90, 90)
_PAD = 12


def _text(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, size: int, fill: tuple[int, int, int] = _INK) -> None:
    """``text`` in a font that has its characters (the labels are in the reader's language)."""
    draw.text(at, text, fill=fill, font=text_font(size, text))


def _num(v: float) -> str:
    return fmt(v, ".3g") if abs(v) < 1e4 else fmt(v, ".2e")


def _rgb(pixels: np.ndarray) -> Image.Image:
    """uint8 H x W x C as an RGB picture: three channels as colours, any other count as grey (their mean)."""
    if pixels.shape[2] != 3:
        pixels = np.repeat(pixels.mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def _enlarged(img: Image.Image, side: int) -> Image.Image:
    """``img`` scaled to fit ``side`` x ``side``: nearest neighbour (every pixel a sharp square)."""
    scale = side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.NEAREST)


def _patch_tile(p: Patch, side: int) -> Image.Image:
    """A patch in its whole receptive field: the part outside the image tinted, the crop where it lies."""
    top, left, bottom, right = p.field
    field = Image.new("RGB", (right - left + 1, bottom - top + 1), _OUTSIDE)
    field.paste(_rgb(p.crop), (p.box[1] - left, p.box[0] - top))
    return _enlarged(field, side)


def _canvas(title: list[str], width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    """A white picture with the title lines on top; returns it, its pen and the first free row."""
    head = _PAD + len(title) * 22
    img = Image.new("RGB", (max(width, 400), head + height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(title):
        _text(draw, (_PAD, _PAD + i * 22), line, 16 if i else 18)
    return img, draw, head + _PAD


def patches_picture(result: TopPatches, title: Sequence[str] = (), tile: int = 96) -> Image.Image:
    """One row per channel: its name and validation mean, then its top patches, strongest first, each
    with its value and the image it comes from. Fields reaching past the image's edge show that part
    tinted blue-grey."""
    if not 24 <= tile <= 512:
        raise ConfigError(_("tile size must be between {low} and {high} pixels, got {tile}.").format(
            low=24, high=512, tile=tile))
    label_w, caption = 150, 40
    k = max((len(c.patches) for c in result.channels), default=1)
    lines = list(title) or [_("{layer}: the {k} strongest positions over {n} images").format(
        layer=result.layer, k=k, n=fmt(result.images, ","))]
    lines.append(_("each: the receptive field of one position (value, image #); blue-grey: beyond the image's edge"))
    width = _PAD + label_w + k * (tile + _PAD)
    img, draw, y = _canvas(lines, width, len(result.channels) * (tile + caption + _PAD))
    for c in result.channels:
        _text(draw, (_PAD, y + 4), _("channel {channel}").format(channel=c.channel), 16)
        _text(draw, (_PAD, y + 26), _("mean {value}").format(value=_num(c.mean)), 14, _GREY)
        for j, p in enumerate(c.patches):
            x = _PAD + label_w + j * (tile + _PAD)
            img.paste(_patch_tile(p, tile), (x, y))
            _text(draw, (x, y + tile + 4), _num(p.value), 14)
            _text(draw, (x, y + tile + 21), _("image #{index}").format(index=p.image), 12, _GREY)
        y += tile + caption + _PAD
    return img


def _versus(o: Optimised) -> str:
    if o.ratio is not None:
        return _("{value}  ({ratio}x the val. mean)").format(value=_num(o.value), ratio=fmt(o.ratio, ".1f"))
    if o.baseline is not None:
        return _("{value}  (val. mean {mean})").format(value=_num(o.value), mean=_num(o.baseline))
    return _num(o.value)


def optimised_picture(trained: Sequence[Optimised], twins: Sequence[Optimised] | None = None,
                      title: Sequence[str] = (), tile: int = 160, columns: int = 4) -> Image.Image:
    """The optimised inputs in a grid, each beside its random-weights twin when given, with the
    activation each reaches (and how it compares with the validation mean)."""
    if not 24 <= tile <= 1024:
        raise ConfigError(_("tile size must be between {low} and {high} pixels, got {tile}.").format(
            low=24, high=1024, tile=tile))
    if twins is not None and [t.channel for t in twins] != [o.channel for o in trained]:
        raise ConfigError(_("the random-weights pictures must be of the same channels, in the same order."))
    pair = 2 if twins is not None else 1
    cols = max(1, min(columns, len(trained)))
    cell_w, cell_h = max(240, pair * tile + (pair - 1) * 6 + 2 * _PAD), tile + 70  # captions fit
    rows = math.ceil(len(trained) / cols)
    objective = trained[0].objective if trained else "mean"
    if objective == "mean":
        what = (_("maximised: the mean activation of the channel; left these weights, right the same layers "
                  "with random weights") if twins else _("maximised: the mean activation of the channel"))
    else:
        what = (_("maximised: the activation of the channel's centre unit; left these weights, right the same "
                  "layers with random weights") if twins else _("maximised: the activation of the channel's centre unit"))
    lines = [*title, what]
    img, draw, top = _canvas(lines, _PAD + cols * cell_w, rows * cell_h)
    for i, o in enumerate(trained):
        x, y = _PAD + (i % cols) * cell_w, top + (i // cols) * cell_h
        _text(draw, (x, y), _("channel {channel}").format(channel=o.channel), 16)
        img.paste(_enlarged(_rgb(o.image), tile), (x, y + 22))
        _text(draw, (x, y + 26 + tile), _versus(o), 13)
        if twins is not None:
            twin = twins[i]
            img.paste(_enlarged(_rgb(twin.image), tile), (x + tile + 6, y + 22))
            _text(draw, (x, y + 43 + tile), _("random weights: {value}").format(value=_num(twin.value)), 13, _GREY)
    return img


def png_path(path: str | Path, create_folder: bool = False) -> Path:
    """``path`` checked before any work is done: a name ending in .png, not a folder, in a folder that
    exists (or is created, with ``create_folder``) and takes new files. Errors are one clear line."""
    out = Path(path).expanduser()
    if out.suffix.lower() != ".png":
        raise ConfigError(_("{path}: the picture is a PNG; give a file name ending in .png.").format(path=path))
    if out.is_dir():
        raise ConfigError(_("{path} is a folder; give a file name ending in .png.").format(path=path))
    if create_folder:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(_("{path}: cannot create the folder {folder} ({reason}).").format(
                path=path, folder=out.parent, reason=e.strerror or e)) from None
    if not out.parent.is_dir():
        raise ConfigError(_("{path}: the folder {folder} does not exist; create it first.").format(
            path=path, folder=out.parent))
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ConfigError(_("{path}: the folder {folder} cannot be written to; choose another.").format(
            path=path, folder=out.parent))
    return out


def save_png(img: Image.Image, path: str | Path) -> Path:
    """Write ``img`` as a PNG atomically (:func:`cnnlab.files.atomic_file`): the file appears whole or
    not at all, and one already there is kept until the new one is complete."""
    out = png_path(path)
    try:
        with atomic_file(out) as f:
            img.save(f, format="PNG")
    except OSError as e:
        raise ConfigError(_("cannot write {path}: {reason}. Choose a folder you can write to.").format(
            path=path, reason=e.strerror or e)) from None
    return out
