"""``shapes``: a procedural colour dataset that needs no download.

Every image holds one shape of eight classes (circle, square, triangle, star, cross, ring,
heart, crescent) at a random position, scale, rotation and colour, over a background with a
colour gradient, distractor lines and blobs, and pixel noise. Position and clutter make it
hard for a linear model on raw pixels while a small CNN learns it in seconds, which is the
point of a teaching lab. Images are drawn with vectorised masks on a broadcast grid,
batch by batch (no per-pixel Python), and are a pure function of ``seed``.

Options make the task harder to generalise while it stays easy to memorise (a lesson on
overfitting needs that): smaller shapes (``scale``), more clutter lines (``lines``), stronger
pixel noise (``noise``) and ``distractors``, partial shapes in the shape's own colour that carry
no class. At their defaults the images are exactly those of the original generator.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..i18n import _

SHAPE_CLASSES: list[str] = ["circle", "square", "triangle", "star", "cross", "ring", "heart", "crescent"]
# The offline transfer-learning tasks (cnnlab.transfer's stand-in, and the lessons that use it): a small
# network pretrained on the "large" task, then taught the "small" one, whose shapes it never saw.
STANDIN_MODEL = "lenet5"
SOURCE_CLASSES = ("circle", "square", "triangle", "star", "cross")
TARGET_CLASSES = ("ring", "heart", "crescent")

_BATCH = 1024

# The options of :func:`generate_shapes`: defaults (the original images) and their bounds.
DEFAULT_SCALE: tuple[float, float] = (0.28, 0.42)  # shape radius as a fraction of the image size
SCALE_BOUNDS: tuple[float, float] = (0.08, 0.45)
DEFAULT_LINES, MAX_LINES = 1, 8
DEFAULT_NOISE, MAX_NOISE = 8.0, 64.0
DEFAULT_DISTRACTORS, MAX_DISTRACTORS = 0, 8


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
    for _attempt in range(20):  # rejection sampling on the few that are too close
        close = np.linalg.norm(out - background, axis=1) < min_distance
        if not close.any():
            break
        out[close] = _random_colours(rng, int(close.sum()))
    close = np.linalg.norm(out - background, axis=1) < min_distance
    out[close] = 255.0 - background[close]  # the complement is always far enough in practice
    return out


def check_shape_options(scale: object = DEFAULT_SCALE, lines: object = DEFAULT_LINES,
                        noise: object = DEFAULT_NOISE, distractors: object = DEFAULT_DISTRACTORS
                        ) -> tuple[tuple[float, float], int, float, int]:
    """The options of :func:`generate_shapes` checked and normalised; ``ValueError`` says what is wrong."""
    lo_b, hi_b = SCALE_BOUNDS

    def number(v: object) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(np.isfinite(v))

    def count(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if (not isinstance(scale, (list, tuple)) or len(scale) != 2 or not all(number(x) for x in scale)
            or not lo_b <= float(scale[0]) <= float(scale[1]) <= hi_b):
        raise ValueError(_("scale must be [smallest, largest] shape radius as a fraction of the image size, with "
                           "{low} <= smallest <= largest <= {high} (default {default}); got {value!r}").format(
            low=lo_b, high=hi_b, default=list(DEFAULT_SCALE), value=scale))
    if not count(lines) or not 0 <= int(lines) <= MAX_LINES:  # type: ignore[call-overload]
        raise ValueError(_("lines must be a whole number of clutter lines from 0 to {most} (default {default}); got "
                           "{value!r}").format(most=MAX_LINES, default=DEFAULT_LINES, value=lines))
    if not number(noise) or not 0 <= float(noise) <= MAX_NOISE:  # type: ignore[arg-type]
        raise ValueError(_("noise must be the standard deviation of the pixel noise in grey levels, from 0 to "
                           "{most:g} (default {default:g}); got {value!r}").format(
            most=MAX_NOISE, default=DEFAULT_NOISE, value=noise))
    if not count(distractors) or not 0 <= int(distractors) <= MAX_DISTRACTORS:  # type: ignore[call-overload]
        raise ValueError(_("distractors must be a whole number of partial shapes per image from 0 to {most} "
                           "(default {default}); got {value!r}").format(
            most=MAX_DISTRACTORS, default=DEFAULT_DISTRACTORS, value=distractors))
    return (float(scale[0]), float(scale[1])), int(lines), float(noise), int(distractors)  # type: ignore[call-overload, arg-type]


def _shape_masks(kinds: np.ndarray, xs: np.ndarray, ys: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                 radius: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where shape ``kinds[i]`` (centre, radius, rotation per image) lies on the grid ``xs, ys``; also the
    rotated local coordinates (u, v) in radii, for shading. No random draws."""
    def col(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).astype(np.float32)[:, None, None]

    dx, dy = xs - col(cx), ys - col(cy)
    cos, sin, r = col(np.cos(theta)), col(np.sin(theta)), col(radius)
    u = (cos * dx + sin * dy) / r
    v = (-sin * dx + cos * dy) / r
    masks = np.zeros((len(kinds), xs.shape[-2], xs.shape[-1]), dtype=bool)
    for k, fn in enumerate(_MASKS):
        sel = kinds == k
        if sel.any():
            masks[sel] = fn(u[sel], v[sel])
    return masks, u, v


def _draw_distractors(rng: np.random.Generator, img: np.ndarray, count: int, xs: np.ndarray, ys: np.ndarray,
                      size: int, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``count`` partial shapes per image in the shape's colour, mostly away from the shape.

    Each is a shape of any of the eight classes (drawn independently of the label, so it carries
    no class), 50% to 90% of the shape's size, cut by a random straight line that keeps 30% to 80%
    of it. Drawn under the shape.
    """
    n = len(img)

    def col(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32)[:, None, None]

    for _distractor in range(count):
        r = rng.uniform(0.5, 0.9, n) * radius
        px, py = rng.uniform(0, size, n), rng.uniform(0, size, n)
        for _attempt in range(10):  # rejection sampling: keep the centre outside the shape's disc
            close = np.hypot(px - cx, py - cy) < radius + 0.5 * r
            if not close.any():
                break
            k = int(close.sum())
            px[close], py[close] = rng.uniform(0, size, k), rng.uniform(0, size, k)
        kind = rng.integers(0, len(_MASKS), n)
        theta = rng.uniform(0, 2 * np.pi, n)
        cut_dir = rng.uniform(0, 2 * np.pi, n)
        cut_at = rng.uniform(-0.4, 0.6, n)  # in radii from the centre: keeps about 30% to 80%
        mask, u, v = _shape_masks(kind, xs, ys, px, py, r, theta)
        mask &= u * col(np.cos(cut_dir)) + v * col(np.sin(cut_dir)) <= col(cut_at)
        shade = 1.0 + col(rng.uniform(-0.15, 0.15, n)) * (u + v) / 2
        img = np.where(mask[:, None], colour[:, :, None, None] * shade[:, None], img)
    return img


def _draw_batch(rng: np.random.Generator, labels: np.ndarray, size: int,
                scale: tuple[float, float] = DEFAULT_SCALE, lines: int = DEFAULT_LINES,
                noise: float = DEFAULT_NOISE, distractors: int = DEFAULT_DISTRACTORS) -> tuple[np.ndarray, np.ndarray]:
    """Images (n x 3 x size x size uint8) and masks (n x size x size bool) for ``labels``.

    At the default options the random draws are those of the original generator, in its order."""
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

    # Clutter: thin lines (one by default) and one soft blob in random colours, under the shape.
    for _line in range(lines):
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
    radius = rng.uniform(scale[0], scale[1], n) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    theta = rng.uniform(0, 2 * np.pi, n)
    masks, u, v = _shape_masks(labels, xs, ys, cx, cy, radius, theta)
    under = img.mean(axis=(2, 3))  # average background colour, to keep the shape visible
    colour = _contrasting_colours(rng, under)
    shade = 1.0 + col(rng.uniform(-0.15, 0.15, n)) * (u + v) / 2  # a little shading inside
    shape_px = colour[:, :, None, None] * shade[:, None]
    if distractors:  # no draws at the default (0): the default images stay the original ones
        img = _draw_distractors(rng, img, distractors, xs, ys, size, cx, cy, radius, colour)
    img = np.where(masks[:, None], shape_px, img)

    img += np.float32(noise) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks


def generate_shapes(
    n: int, size: int = 32, seed: int = 0, return_masks: bool = False, *,
    scale: tuple[float, float] = DEFAULT_SCALE, lines: int = DEFAULT_LINES,
    noise: float = DEFAULT_NOISE, distractors: int = DEFAULT_DISTRACTORS,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` shape images (a pure function of ``seed`` and the options).

    Labels are balanced (a seeded shuffle of ``0, 1, ..., 7, 0, 1, ...``).

    Options (defaults: the original images, bit for bit):
        scale: ``(smallest, largest)`` radius of the shape as a fraction of ``size``
            (default ``(0.28, 0.42)``; from 0.08 to 0.45).
        lines: thin clutter lines in random colours under the shape (default 1; 0 to 8).
        noise: standard deviation of the Gaussian pixel noise in grey levels (default 8; 0 to 64).
        distractors: partial shapes per image in the shape's own colour, of any class regardless
            of the label, so they carry no class (default 0; 0 to 8).

    Returns:
        ``(images, labels)``: uint8 ``n x 3 x size x size`` and int64 ``n``; with
        ``return_masks=True`` also the boolean ``n x size x size`` masks of the shapes
        (a shape pixel is ``True`` even where noise changed its colour).
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    scale, lines, noise, distractors = check_shape_options(scale, lines, noise, distractors)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A4E5]))
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for start in range(0, n, _BATCH):
        stop = min(start + _BATCH, n)
        images[start:stop], masks[start:stop] = _draw_batch(
            rng, labels[start:stop], size, scale, lines, noise, distractors)
    out = (torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    return (*out, torch.from_numpy(masks)) if return_masks else out
