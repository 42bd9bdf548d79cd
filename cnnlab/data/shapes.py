"""``shapes``: a procedural colour dataset that needs no download.

Every image holds one shape of eight classes (circle, square, triangle, star, cross, ring,
heart, crescent) at a random position, scale, rotation and colour, over a background with a
colour gradient, distractor lines and blobs, and pixel noise. Position and clutter make it
hard for a linear model on raw pixels while a small CNN learns it in seconds, which is the
point of a teaching lab. Images are drawn with vectorised masks on a broadcast grid,
batch by batch (no per-pixel Python), and are a pure function of ``seed``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

SHAPE_CLASSES: list[str] = ["circle", "square", "triangle", "star", "cross", "ring", "heart", "crescent"]

_BATCH = 1024


# Each mask function takes local coordinates (u, v) in units of the shape's radius
# (already rotated) and returns where the shape is. Shapes fit roughly in the unit disc.
def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.78


def _regular_polygon(u: np.ndarray, v: np.ndarray, sides: int, inradius: float) -> np.ndarray:
    inside = np.ones(u.shape, dtype=bool)
    for k in range(sides):
        a = np.pi / 2 + 2 * np.pi * k / sides + np.pi / sides
        inside &= u * np.cos(a) + v * np.sin(a) <= inradius
    return inside


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _regular_polygon(u, v + 0.2, 3, 0.55)


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    rho = np.sqrt(u * u + v * v)
    t = (np.arctan2(v, u) * (5 / (2 * np.pi))) % 1.0
    return rho <= 0.4 + 0.65 * np.abs(2 * t - 1)  # five tips at radius 1.05, valleys at 0.4


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = 1.2 * u, -1.2 * v + 0.15
    return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.8**2)


_MASKS: list[Callable[[np.ndarray, np.ndarray], np.ndarray]] = [
    _circle, _square, _triangle, _star, _cross, _ring, _heart, _crescent,
]


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 255, size=(n, 3)).astype(np.float32)


def _contrasting_colours(rng: np.random.Generator, background: np.ndarray, min_distance: float = 110.0) -> np.ndarray:
    """Colours at least ``min_distance`` (RGB Euclidean) from each background colour."""
    out = _random_colours(rng, len(background))
    for _ in range(20):  # rejection sampling on the few that are too close
        close = np.linalg.norm(out - background, axis=1) < min_distance
        if not close.any():
            break
        out[close] = _random_colours(rng, int(close.sum()))
    close = np.linalg.norm(out - background, axis=1) < min_distance
    out[close] = 255.0 - background[close]  # the complement is always far enough in practice
    return out


def _draw_batch(rng: np.random.Generator, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n x 3 x size x size uint8) and masks (n x size x size bool) for ``labels``."""
    n = len(labels)
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float32) + 0.5, np.arange(size, dtype=np.float32) + 0.5, indexing="ij")
    xs, ys = xs[None], ys[None]  # 1 x H x W, broadcast against per-sample parameters

    def col(a: np.ndarray) -> np.ndarray:  # per-sample values, broadcast over H x W
        return a.astype(np.float32)[:, None, None]

    # Background: a random colour with a random linear gradient.
    base = _random_colours(rng, n)
    grad_dir = rng.uniform(0, 2 * np.pi, n)
    grad_amp = rng.uniform(0, 60, n)
    ramp = col(np.cos(grad_dir) * grad_amp) * (xs / size - 0.5) + col(np.sin(grad_dir) * grad_amp) * (ys / size - 0.5)
    img = base[:, :, None, None] + ramp[:, None]

    # Clutter: a thin line and one soft blob in random colours, under the shape.
    for _ in range(1):
        p = rng.uniform(0, size, (n, 2))
        ang = rng.uniform(0, np.pi, n)
        dist = np.abs((xs - col(p[:, 0])) * col(np.sin(ang)) - (ys - col(p[:, 1])) * col(np.cos(ang)))
        line = dist < col(rng.uniform(0.4, 1.2, n))
        img = np.where(line[:, None], _random_colours(rng, n)[:, :, None, None], img)
    c = rng.uniform(0, size, (n, 2))
    blob_r = col(rng.uniform(0.08, 0.2, n) * size)
    blob = np.exp(-((xs - col(c[:, 0])) ** 2 + (ys - col(c[:, 1])) ** 2) / (2 * blob_r**2))
    img = img * (1 - 0.6 * blob[:, None]) + 0.6 * blob[:, None] * _random_colours(rng, n)[:, :, None, None]

    # The shape: random radius, centre fully inside the image, rotation, colour.
    radius = rng.uniform(0.28, 0.42, n) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    theta = rng.uniform(0, 2 * np.pi, n)
    dx, dy = xs - col(cx), ys - col(cy)
    cos, sin, r = col(np.cos(theta)), col(np.sin(theta)), col(radius)
    u = (cos * dx + sin * dy) / r
    v = (-sin * dx + cos * dy) / r
    masks = np.zeros((n, size, size), dtype=bool)
    for k, fn in enumerate(_MASKS):
        sel = labels == k
        if sel.any():
            masks[sel] = fn(u[sel], v[sel])
    under = img.mean(axis=(2, 3))  # average background colour, to keep the shape visible
    colour = _contrasting_colours(rng, under)
    shade = 1.0 + col(rng.uniform(-0.15, 0.15, n)) * (u + v) / 2  # a little shading inside
    shape_px = colour[:, :, None, None] * shade[:, None]
    img = np.where(masks[:, None], shape_px, img)

    img += 8.0 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks


def generate_shapes(
    n: int, size: int = 32, seed: int = 0, return_masks: bool = False
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` shape images (a pure function of ``seed``).

    Labels are balanced (a seeded shuffle of ``0, 1, ..., 7, 0, 1, ...``).

    Returns:
        ``(images, labels)``: uint8 ``n x 3 x size x size`` and int64 ``n``; with
        ``return_masks=True`` also the boolean ``n x size x size`` masks of the shapes
        (a shape pixel is ``True`` even where noise changed its colour).
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A4E5]))
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for start in range(0, n, _BATCH):
        stop = min(start + _BATCH, n)
        images[start:stop], masks[start:stop] = _draw_batch(rng, labels[start:stop], size)
    out = (torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    return (*out, torch.from_numpy(masks)) if return_masks else out
