"""Per-channel statistics of a stack of images: the one measurement behind every dataset's and
every model's normalisation (:mod:`cnnlab.data.registry`, :func:`cnnlab.data.pipeline.measure_stats`)."""

from __future__ import annotations

from typing import Callable

import torch


def channel_stats(images: torch.Tensor, max_images: int = 5000, max_values: int | None = None,
                  transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  chunk: int = 512) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (for [0, 1] pixels) of up to ``max_images`` evenly spaced images
    (fewer if ``max_values`` bounds the values read), after ``transform`` (e.g. a channel
    conversion). Summed in float64 chunk by chunk, so a sample of large images never becomes one
    float64 copy; rounded to 4 decimals."""
    per_image = max(1, int(images[0].numel())) if len(images) else 1
    limit = max(1, min(int(max_images), int(max_values) // per_image if max_values else int(max_images)))
    sample = images[::max(1, len(images) // limit)]
    total = total_sq = None
    count = 0
    for start in range(0, len(sample), chunk):
        x = sample[start:start + chunk].to("cpu", torch.float64)
        if images.dtype == torch.uint8:
            x = x.div_(255.0)
        if transform is not None:
            x = transform(x)
        s, sq = x.sum(dim=(0, 2, 3)), x.square().sum(dim=(0, 2, 3))
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = ((total_sq - count * mean.square()) / max(1, count - 1)).clamp_min(0).sqrt().clamp_min(1e-4)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
