"""Per-image torchvision transform presets from the seeds, and the augmentation preview.

These work on PIL images, one at a time (as in the seeds' ``DataLoader`` pipelines). The
trainer augments whole tensor batches instead, with :mod:`cnnlab.data.augment`; the preset
names are the same in both places (:data:`AUGMENTATIONS`).
"""

from __future__ import annotations

import random

import torch
from PIL import Image
from torchvision import transforms as T

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # seed 002's constants
CIFAR_STD = (0.2023, 0.1994, 0.2010)

AUGMENTATIONS: list[str] = ["none", "flip", "cifar", "crop28", "imagenet"]


def imagenet_train(size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> T.Compose:
    """Seed 000's Caltech101 training pipeline (crop 256 at scale 0.8-1, rotate 15, jitter, flip, crop 224)."""
    return T.Compose([
        T.RandomResizedCrop(size=round(size * 256 / 224), scale=(0.8, 1.0)),
        T.RandomRotation(degrees=15),
        T.ColorJitter(),
        T.RandomHorizontalFlip(),
        T.CenterCrop(size=size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def imagenet_eval(size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> T.Compose:
    """Resize the shorter side to 256 and cut the central 224 (seeds 000 and 001)."""
    return T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])


def cifar_train(size: int = 32, padding: int = 4, mean=CIFAR_MEAN, std=CIFAR_STD) -> T.Compose:
    """Pad by ``padding``, take a random ``size`` crop, flip horizontally half the time."""
    return T.Compose([T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def random_crop_train(crop: int = 28, mean=CIFAR_MEAN, std=CIFAR_STD) -> T.Compose:
    """Seed 002's MiniAlexNet V3: a random 28x28 crop of the 32x32 image and a flip."""
    return T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(crop), T.ToTensor(), T.Normalize(mean, std)])


def center_crop_eval(crop: int = 28, mean=CIFAR_MEAN, std=CIFAR_STD) -> T.Compose:
    """Seed 002's test transform: the central 28x28 crop."""
    return T.Compose([T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)])


def _preview_transform(preset: str, image: Image.Image) -> T.Compose:
    """The PIL-only (not normalised) part of ``preset``, sized for ``image``."""
    w, h = image.size
    short = min(w, h)
    if preset == "none":
        return T.Compose([])
    if preset == "flip":
        return T.Compose([T.RandomHorizontalFlip()])
    if preset == "cifar":
        return T.Compose([T.RandomCrop((h, w), padding=max(1, round(4 * short / 32))), T.RandomHorizontalFlip()])
    if preset == "crop28":
        crop = max(1, round(short * 28 / 32))
        return T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(crop)])
    if preset == "imagenet":
        crop = max(1, round(short * 224 / 256))
        return T.Compose([
            T.RandomResizedCrop(size=short, scale=(0.8, 1.0)),
            T.RandomRotation(degrees=15),
            T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
            T.RandomHorizontalFlip(),
            T.CenterCrop(size=crop),
        ])
    raise ConfigError(f"Unknown augmentation {preset!r}; choose one of {', '.join(AUGMENTATIONS)}.")


def preview(image: Image.Image, preset: str, n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` augmented versions of ``image`` under ``preset`` (for the app's augmentation preview).

    Deterministic for a given ``seed``; the global random state is left as it was. The
    "imagenet" preview uses a visible colour jitter (the seed's ``ColorJitter()`` does nothing).
    """
    transform = _preview_transform(preset, image)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    try:
        torch.manual_seed(seed)
        random.seed(seed)
        return [transform(image.copy()) for _ in range(n)]
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)
