"""Tiny in-memory datasets for the trainer tests (no network, no files).

``digits_bundle()`` is sklearn's 8x8 digits upsampled to 1x28x28 uint8, split 1437/360 with
a fixed seed, as a :class:`cnnlab.data.DataBundle` built by hand (so a test can change its
channels or size). Other test modules import it.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from cnnlab.data import DataBundle, DatasetInfo, TensorSplit


@functools.lru_cache(maxsize=None)
def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8)
    return x, torch.tensor(d.target, dtype=torch.int64)


def digits_bundle(n_train: int | None = None, channels: int = 1) -> DataBundle:
    """sklearn digits as 28x28 uint8 (1 or 3 channels): 1437 train / 360 val images."""
    x, y = _digits_tensors()
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, va = perm[:1437], perm[1437:]
    if n_train is not None:
        tr = tr[:n_train]
    info = DatasetInfo(
        name="digits", display_name="Digits (test)", classes=[str(i) for i in range(10)],
        input_shape=(channels, 28, 28), mean=(0.19,) * channels, std=(0.33,) * channels,
        source="embedded",
    )
    return DataBundle(info, TensorSplit(x[tr].clone(), y[tr].clone()),
                      TensorSplit(x[va].clone(), y[va].clone()), None)
