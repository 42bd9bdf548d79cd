"""Batch augmentation for the trainer: whole ``N x C x H x W`` float batches, on their device.

Airbench style: every sample draws its own random parameters, but the work is a handful of
tensor operations on the whole batch (no Python loop over samples), so it runs as fast on a
GPU as the model. Inputs are in [0, 1], before normalisation. Every augment is called as
``augment(batch, generator)``; the same generator state gives the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..i18n import N_, _

BatchAugment = Callable[[Tensor, "torch.Generator | None"], Tensor]
BatchEval = Callable[[Tensor], Tensor]

# ITU-R BT.601 luma weights, as PIL's convert("L") and torchvision's rgb_to_grayscale.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def _rand(n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` uniform numbers in [0, 1) on ``x``'s device (drawn on the generator's device)."""
    device = generator.device if generator is not None else x.device
    return torch.rand(n, generator=generator, device=device).to(x.device)


def _randint(high: int, n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    return (_rand(n, x, generator) * high).long().clamp_(max=high - 1)


def resize_center_crop(x: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Resize the shorter side to cover ``out_size`` then take the centre; identity when sizes match."""
    out_h, out_w = out_size
    h, w = x.shape[-2:]
    if (h, w) == (out_h, out_w):
        return x
    scale = max(out_h / h, out_w / w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return x[..., top : top + out_h, left : left + out_w]


def random_flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Flip a random half of the batch horizontally."""
    flip = (_rand(len(x), x, generator) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def _gather_crops(padded: Tensor, top: Tensor, left: Tensor, out_h: int, out_w: int) -> Tensor:
    """Per-sample crops ``padded[i, :, top_i:top_i+out_h, left_i:left_i+out_w]`` with one gather."""
    n, c, h, w = padded.shape
    rows = (top.view(n, 1) + torch.arange(out_h, device=padded.device)).view(n, 1, out_h, 1).expand(n, c, out_h, w)
    x = padded.gather(2, rows)
    cols = (left.view(n, 1) + torch.arange(out_w, device=padded.device)).view(n, 1, 1, out_w).expand(n, c, out_h, out_w)
    return x.gather(3, cols)


def random_translate(x: Tensor, pad: int, generator: torch.Generator | None) -> Tensor:
    """Shift every image by its own random offset in [-pad, pad], filling with zeros."""
    n, _channels, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    top = _randint(2 * pad + 1, n, x, generator)
    left = _randint(2 * pad + 1, n, x, generator)
    return _gather_crops(padded, top, left, h, w)


def random_crop(x: Tensor, out_size: tuple[int, int], generator: torch.Generator | None) -> Tensor:
    """A random ``out_size`` window of every image (images smaller than that are resized first)."""
    out_h, out_w = out_size
    h, w = x.shape[-2:]
    if h < out_h or w < out_w:
        x = resize_center_crop(x, (max(h, out_h), max(w, out_w)))
        h, w = x.shape[-2:]
    n = len(x)
    top = _randint(h - out_h + 1, n, x, generator)
    left = _randint(w - out_w + 1, n, x, generator)
    return _gather_crops(x, top, left, out_h, out_w)


def random_resized_rotate(
    x: Tensor, out_size: tuple[int, int], generator: torch.Generator | None, scale: tuple[float, float] = (0.8, 1.0), degrees: float = 15.0
) -> Tensor:
    """Random resized crop (area ``scale``), rotation and horizontal flip in one ``grid_sample``."""
    n = len(x)
    area = scale[0] + (scale[1] - scale[0]) * _rand(n, x, generator)
    side = area.sqrt()  # fraction of the image each output side spans
    angle = (2 * _rand(n, x, generator) - 1) * math.radians(degrees)
    flip = torch.where(_rand(n, x, generator) < 0.5, -1.0, 1.0)
    tx = (2 * _rand(n, x, generator) - 1) * (1 - side)  # keep the window inside the image
    ty = (2 * _rand(n, x, generator) - 1) * (1 - side)
    cos, sin = torch.cos(angle) * side, torch.sin(angle) * side
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [n, x.shape[1], *out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(x: Tensor, generator: torch.Generator | None, strength: float = 0.4) -> Tensor:
    """Per-sample brightness, contrast and saturation factors in [1 - strength, 1 + strength]."""
    n = len(x)
    factor = lambda: (1 + strength * (2 * _rand(n, x, generator) - 1)).view(n, 1, 1, 1).to(x.dtype)  # noqa: E731
    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    if x.shape[1] == 3:
        gray = (x * torch.tensor(LUMA_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = (x - gray) * factor() + gray
    return x.clamp(0, 1)


def center_crop(x: Tensor, out_size: tuple[int, int]) -> Tensor:
    """The centre ``out_size`` window at full scale (torchvision's CenterCrop); resize-then-crop
    when the image is smaller than the window."""
    out_h, out_w = out_size
    h, w = x.shape[-2:]
    if h < out_h or w < out_w:
        return resize_center_crop(x, out_size)
    top, left = (h - out_h) // 2, (w - out_w) // 2
    return x[..., top : top + out_h, left : left + out_w]


# --------------------------------------------------------------------------------------
# The one table of presets: every list of names, descriptions and labels is a view of it
# --------------------------------------------------------------------------------------


def _none(x: Tensor, out: tuple[int, int], g: torch.Generator | None) -> Tensor:
    return resize_center_crop(x, out)


def _flip(x: Tensor, out: tuple[int, int], g: torch.Generator | None) -> Tensor:
    return random_flip(resize_center_crop(x, out), g)


def _cifar(x: Tensor, out: tuple[int, int], g: torch.Generator | None) -> Tensor:
    return random_flip(random_translate(resize_center_crop(x, out), 4, g), g)


def _crop28(x: Tensor, out: tuple[int, int], g: torch.Generator | None) -> Tensor:
    return random_flip(random_crop(x, out, g), g)


def _imagenet(x: Tensor, out: tuple[int, int], g: torch.Generator | None) -> Tensor:
    return color_jitter(random_resized_rotate(x, out, g), g)


@dataclass(frozen=True)
class AugmentPreset:
    """One augmentation preset: its name (the config value), the label the app shows and a
    description (English, marked for translation: shown through ``_()``), the batch operation
    ``apply(x, out_size, generator)`` and how evaluation cuts the image (``"resize"``: shorter side
    then centre; ``"center"``: the centre window at full scale, matching random crops taken at full
    scale)."""

    name: str
    label: str
    description: str
    apply: Callable[[Tensor, tuple[int, int], "torch.Generator | None"], Tensor]
    eval_cut: str = "resize"


PRESETS: tuple[AugmentPreset, ...] = (
    AugmentPreset("none", N_("None"),
                  N_("No augmentation (images only resized to the model's input size if needed)."), _none),
    AugmentPreset("flip", N_("Horizontal flip"), N_("Random horizontal flip, half the images."), _flip),
    AugmentPreset("cifar", N_("Pad-crop-flip (CIFAR)"),
                  N_("Random translation by up to 4 pixels with zero padding, plus flip (pad-crop-flip, airbench)."),
                  _cifar),
    AugmentPreset("crop28", N_("Random 28x28 crop + flip (seed 002)"),
                  N_("Random crop of the input size (e.g. 28x28 from 32x32, seed 002's MiniAlexNet V3) plus flip."),
                  _crop28, eval_cut="center"),
    AugmentPreset("imagenet", N_("ImageNet-style (seed 000)"),
                  N_("Random resized crop (scale 0.8-1), rotation of +-15 degrees, flip, "
                     "brightness/contrast/saturation jitter (seed 000)."), _imagenet),
)
_BY_NAME: dict[str, AugmentPreset] = {p.name: p for p in PRESETS}

#: Views of :data:`PRESETS` (names in table order; name -> description; name -> label).
AUGMENTATIONS: list[str] = [p.name for p in PRESETS]
AUGMENT_DESCRIPTIONS: dict[str, str] = {p.name: p.description for p in PRESETS}
AUGMENT_LABELS: dict[str, str] = {p.name: p.label for p in PRESETS}


def get_preset(name: str) -> AugmentPreset:
    """The preset called ``name``; a :class:`ConfigError` naming the choices otherwise."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ConfigError(_("Unknown augmentation {name!r}; choose one of {names}.").format(
            name=name, names=", ".join(AUGMENTATIONS))) from None


def make_batch_augment(preset: str, out_size: tuple[int, int]) -> BatchAugment:
    """The batch augmentation named ``preset`` (see :data:`PRESETS`) producing ``out_size`` images."""
    apply = get_preset(preset).apply
    out = (int(out_size[0]), int(out_size[1]))
    return lambda x, generator=None: apply(x, out, generator)


def make_batch_eval(out_size: tuple[int, int], preset: str = "none", resize: float = 1.0) -> BatchEval:
    """Evaluation-time geometry matching the training preset.

    For ``crop28`` the centre window at full scale (seed 002's ``CenterCrop(28)``, the same scale
    as the random training crops); otherwise resize the shorter side then centre-crop (identity
    when sizes match). ``resize`` > 1 first resizes to ``resize`` times the output size and then
    cuts the central ``out_size`` (ImageNet weights: ``Resize(256)`` then ``CenterCrop(224)``,
    ``resize = 256 / 224``).
    """
    out = (int(out_size[0]), int(out_size[1]))
    cut = get_preset(preset).eval_cut
    if not resize >= 1.0:
        raise ConfigError(_("the evaluation resize ratio must be at least 1, got {ratio}").format(ratio=resize))
    if resize != 1.0:
        cover = (round(out[0] * resize), round(out[1] * resize))
        return lambda x: center_crop(resize_center_crop(x, cover), out)
    if cut == "center":
        return lambda x: center_crop(x, out)
    return lambda x: resize_center_crop(x, out)
