"""Seeded, stratified ways of cutting a dataset into splits and subsets.

Everything here works on label vectors and returns index tensors, so the same code splits
MNIST's 60,000 in-memory digits and a folder of 9,145 Caltech101 file names; except
:func:`stable_holdout`, which works on file names, for a folder that grows (your own images).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch

from ..errors import DataError
from ..i18n import _
from ._types import TensorSplit


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def _per_class_permutations(labels: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """For each class present (in label order), its sample indices in a seeded random order."""
    g = _generator(seed)
    out = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c, as_tuple=False).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)])
    return out


def stratified_split(labels: torch.Tensor | Sequence[int], val_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, val)``: ``val_fraction`` of every class goes to val, chosen from ``seed``.

    Each class with at least two samples keeps at least one in each split. Indices come back
    sorted, so the original order of the data is kept inside each split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(_("val_fraction must be in [0, 1), got {value}.").format(value=val_fraction))
    labels = torch.as_tensor(labels, dtype=torch.int64)
    train, val = [], []
    for perm in _per_class_permutations(labels, seed):
        n_val = round(len(perm) * val_fraction)
        if val_fraction > 0 and len(perm) >= 2:
            n_val = min(max(n_val, 1), len(perm) - 1)
        val.append(perm[:n_val])
        train.append(perm[n_val:])
    cat = lambda parts: torch.sort(torch.cat(parts)).values if parts else torch.zeros(0, dtype=torch.int64)  # noqa: E731
    return cat(train), cat(val)


def balanced_split(labels: torch.Tensor | Sequence[int], seed: int = 0, per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seed 000's balanced Caltech101 split: ``per_class`` images of every class, 50/25/25.

    ``per_class`` defaults to the smallest class count. As in the seed, with ``m = per_class``
    the first ``m // 2`` go to train, the next ``m // 4`` to val and the rest to test
    (31 -> 15/7/9), each class sampled at random (reproducibly from ``seed``).
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    perms = _per_class_permutations(labels, seed)
    if not perms:
        raise DataError(_("Cannot split an empty dataset."))
    smallest = min(len(p) for p in perms)
    m = smallest if per_class is None else int(per_class)
    if m > smallest:
        raise DataError(_("Cannot take {n} images per class: the smallest class has {smallest}.").format(
            n=m, smallest=smallest))
    if m < 4:
        raise DataError(_("A balanced 50/25/25 split needs at least 4 images per class; the smallest class has "
                          "{smallest}.").format(smallest=smallest))
    i, j = m // 2, m // 2 + m // 4
    parts = [[p[:i] for p in perms], [p[i:j] for p in perms], [p[j:m] for p in perms]]
    return tuple(torch.sort(torch.cat(part)).values for part in parts)  # type: ignore[return-value]


def take(split: TensorSplit, indices: torch.Tensor) -> TensorSplit:
    """The samples of ``split`` at ``indices`` (a new, contiguous split)."""
    return TensorSplit(split.images[indices].contiguous(), split.labels[indices].clone())


def stratified_subset(split: TensorSplit, n: int, seed: int = 0) -> TensorSplit:
    """A class-balanced subset: ``n // classes`` random samples of each class (seed 003's 160 images).

    With 10 classes ``n=160`` gives 16 per class. A class with fewer samples gives all it has.
    """
    classes = torch.unique(split.labels)
    if n <= 0:
        raise DataError(_("A subset needs a positive size, got {n}.").format(n=n))
    per_class = n // max(len(classes), 1)
    if per_class == 0:
        raise DataError(_("A subset of {n} images cannot hold one image of each of the {classes} classes; use at least "
                          "{classes}.").format(n=n, classes=len(classes)))
    picked = [perm[:per_class] for perm in _per_class_permutations(split.labels, seed)]
    return take(split, torch.sort(torch.cat(picked)).values)


# --------------------------------------------------------------------------------------
# A hold-out that never moves a file: for a folder that grows
# --------------------------------------------------------------------------------------


def stable_score(seed: int, class_name: str, file_name: str) -> float:
    """A number in [0, 1) fixed by ``(seed, class_name, file_name)`` alone: the same in every process
    and on every machine (BLAKE2b, not Python's salted ``hash()``)."""
    text = f"{int(seed)}\x00{class_name}\x00{file_name}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2.0**64


def stable_holdout(class_name: str, file_names: Sequence[str], val_fraction: float, seed: int = 0) -> set[str]:
    """The names of one class's files held out for validation: those whose :func:`stable_score`
    is below ``val_fraction``, whatever other files the class has.

    So adding files never moves an old file between the splits, with two exceptions that keep
    at least one file in each split of a class with two or more (as :func:`stratified_split`):

    - no file scores below ``val_fraction``: the lowest-scoring one is held out. Still leak-free:
      once files are added, the held-out set is either the new natural one (new files only: the
      old ones all scored above) or the lowest-scoring file then, which is new or was held out.
    - every file scores below it: the highest-scoring one is kept for training. This one can
      leak: when files are added, that file can go to validation. It needs every file of a class
      to fall below ``val_fraction`` (chance ``val_fraction ** n`` for ``n`` files: 4% for 2 files
      at 20%, 0.03% for 5), so a class of a handful of images should grow before training on it.

    A class with one file keeps it for training; ``val_fraction`` 0 holds out nothing.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(_("val_fraction must be in [0, 1), got {value}.").format(value=val_fraction))
    names = list(dict.fromkeys(file_names))
    if val_fraction == 0 or len(names) < 2:
        return set()
    scores = {n: stable_score(seed, class_name, n) for n in names}
    held = {n for n, s in scores.items() if s < val_fraction}
    if not held:
        held = {min(names, key=lambda n: (scores[n], n))}
    elif len(held) == len(names):
        held.discard(max(names, key=lambda n: (scores[n], n)))
    return held
