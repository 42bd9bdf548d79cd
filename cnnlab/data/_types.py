"""The plain data types of :mod:`cnnlab.data`.

A dataset is served as a :class:`DataBundle`: its :class:`DatasetInfo` plus whole splits
decoded in memory as uint8 tensors (:class:`TensorSplit`, airbench style), so the trainer
normalises and augments whole batches on its device instead of running a per-image
``DataLoader`` pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DatasetInfo:
    """What a model and a page need to know about a dataset."""

    name: str  # registry key: "shapes", "digits", "mnist", "cifar10", "caltech101", "folder", ...
    display_name: str
    classes: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W) of the stored images
    mean: tuple[float, ...]  # per channel, for images scaled to [0, 1]
    std: tuple[float, ...]
    source: str  # "embedded" | "torchvision" | "folder"
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class TensorSplit:
    """One split decoded in memory: uint8 ``N x C x H x W`` images and int64 labels, on CPU."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(f"labels must be a vector of {len(self.images)} entries, got {tuple(self.labels.shape)}")
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self, num_classes: int | None = None) -> list[int]:
        """How many images of each class (``bincount`` of the labels)."""
        minlength = num_classes or 0
        return torch.bincount(self.labels, minlength=minlength).tolist()


@dataclass
class DataBundle:
    """A loaded dataset: info, train/val splits, the test split when there is one, and notes."""

    info: DatasetInfo
    train: TensorSplit
    val: TensorSplit
    test: TensorSplit | None
    notes: list[str] = field(default_factory=list)  # e.g. "skipped 2 unreadable images: a.jpg, b.jpg"


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: what :func:`cnnlab.data.list_datasets` shows before anything is loaded."""

    name: str
    display_name: str
    source: str  # "embedded" | "torchvision" | "folder"
    description: str
    input_shape: tuple[int, int, int]  # default (C, H, W) of the stored images
    num_classes: int | None  # None when it depends on the folder
    seed: str = ""  # which seed document uses it ("000".."004"), "" for additions


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset can be loaded now: ``state`` is "present", "downloadable" or "missing"."""

    name: str
    state: str
    message: str  # what to do (or where the files were found)
    root: str | None = None
