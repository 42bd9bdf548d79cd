"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in torchvision's on-disk layout.

Downloads go through torchvision's own dataset classes (their mirrors and checksums); reading
is done here, straight from the raw files, so a copy laid out by hand (or by an older
torchvision) loads without checksum games and a bad file ends in a :class:`DataError`.

Layouts under ``root`` (the same as torchvision's)::

    MNIST/raw/train-images-idx3-ubyte (also .gz), train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
    FashionMNIST/raw/...  (same four files)
    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/train, test, meta
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision.datasets

from ..errors import DataError, UnsafeFileError
from ..i18n import N_, _
from ..net import DOWNLOADS_DISABLED, offline_forced
from ..safeload import load_plain_pickle


@dataclass(frozen=True)
class TorchvisionSet:
    """How one torchvision dataset is laid out, downloaded and read."""

    name: str
    display_name: str
    tv_class: str  # torchvision.datasets class used to download
    folder: str  # sub-folder of root holding the files
    files: tuple[str, ...]  # files expected in root/folder
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    description: str
    seed: str = ""

    def expected_paths(self, root: Path) -> list[Path]:
        return [root / self.folder / f for f in self.files]

    def is_present(self, root: Path) -> bool:
        return all(_exists_maybe_gz(p) for p in self.expected_paths(root))


def _exists_maybe_gz(path: Path) -> bool:
    return path.is_file() or path.with_name(path.name + ".gz").is_file()


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

TORCHVISION_SETS: dict[str, TorchvisionSet] = {
    s.name: s
    for s in [
        TorchvisionSet(
            "mnist", "MNIST", "MNIST", "MNIST/raw", _MNIST_FILES, (1, 28, 28), (0.1307,), (0.3081,),
            tuple(str(d) for d in range(10)),
            N_("Handwritten digits, 60,000 train + 10,000 test, 28x28 grayscale (LeNet's dataset)."), "002",
        ),
        TorchvisionSet(
            "fashion_mnist", "Fashion-MNIST", "FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, (1, 28, 28),
            (0.2860,), (0.3530,),
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
            N_("Zalando clothing photos, 60,000 train + 10,000 test, 28x28 grayscale (d2l's dataset)."), "004",
        ),
        TorchvisionSet(
            "cifar10", "CIFAR-10", "CIFAR10", "cifar-10-batches-py",
            tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"), (3, 32, 32),
            (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), _CIFAR10_CLASSES,
            N_("Tiny colour photos of 10 classes, 50,000 train + 10,000 test, 32x32."), "001",
        ),
        TorchvisionSet(
            "cifar100", "CIFAR-100", "CIFAR100", "cifar-100-python", ("train", "test", "meta"), (3, 32, 32),
            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), (),
            N_("Tiny colour photos of 100 classes, 50,000 train + 10,000 test, 32x32."), "002",
        ),
    ]
}


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _read_maybe_gz(path: Path) -> bytes:
    try:
        if path.is_file():
            return path.read_bytes()
        return gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(_("Cannot read '{path}': {error}. Delete it and download the dataset again.").format(
            path=path, error=exc)) from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian header, then unsigned bytes."""
    data = _read_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(_("'{path}' is not an IDX file of unsigned bytes (bad header); download the dataset again.")
                        .format(path=path))
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(_("'{path}' is truncated or corrupt: {size} bytes, expected {expected} for shape {shape}.")
                        .format(path=path, size=len(data), expected=expected, shape=dims))
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist(spec: TorchvisionSet, root: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], list[str]]:
    raw = root / spec.folder
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(raw / f"{prefix}-images-idx3-ubyte")
        labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(_("'{folder}' holds {split} images {images} and labels {labels} that do not match.").format(
                folder=raw, split=prefix, images=images.shape, labels=labels.shape))
        splits.append((torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    return splits[0], splits[1], list(spec.classes)


def _unpickle(path: Path) -> dict:
    """A CIFAR batch: a Python pickle, read by an unpickler that rebuilds plain data and numpy
    arrays only (torchvision's ``pickle.load`` would run any code a planted file asks for)."""
    try:
        entry = load_plain_pickle(path, what=_("the CIFAR file"), remedy=_("Delete it and download the dataset again."))
    except UnsafeFileError as exc:
        raise DataError(str(exc)) from None
    if not isinstance(entry, dict):
        raise DataError(_("'{path}' is not a CIFAR batch (it holds a {kind}); download the dataset again.").format(
            path=path, kind=type(entry).__name__))
    return entry


def _cifar_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    entry = _unpickle(path)
    try:
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(_("'{path}' is not a CIFAR batch (missing or malformed {error}); download the dataset again.")
                        .format(path=path, error=exc)) from None
    if len(data) != len(labels):
        raise DataError(_("'{path}' has {images} images but {labels} labels.").format(
            path=path, images=len(data), labels=len(labels)))
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def _read_cifar(spec: TorchvisionSet, root: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], list[str]]:
    folder = root / spec.folder
    if spec.name == "cifar10":
        train_files, test_file, meta_file, label_key, names_key = spec.files[:5], "test_batch", "batches.meta", "labels", "label_names"
    else:
        train_files, test_file, meta_file, label_key, names_key = ("train",), "test", "meta", "fine_labels", "fine_label_names"
    parts = [_cifar_batch(folder / f, label_key) for f in train_files]
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    test = _cifar_batch(folder / test_file, label_key)
    meta = _unpickle(folder / meta_file)
    classes = [str(c) for c in meta.get(names_key, [])] or list(spec.classes)
    return train, test, classes


READERS: dict[str, Callable] = {"mnist": _read_mnist, "fashion_mnist": _read_mnist, "cifar10": _read_cifar, "cifar100": _read_cifar}


# --------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------


def torchvision_download(tv_class: str, root: Path, **kwargs: object) -> None:
    """Let ``torchvision.datasets.<tv_class>(root, download=True)`` fetch and unpack the files.

    With ``CNNLAB_OFFLINE=1`` nothing is tried and nothing is created. Folders that the attempt
    created are removed again when it fails, so a bad ``--data-root`` leaves no trace.
    """
    if offline_forced():
        raise DataError(_(DOWNLOADS_DISABLED))
    created = _missing_parents(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        getattr(torchvision.datasets, tv_class)(str(root), download=True, **kwargs)
    except BaseException:
        for folder in created:  # deepest first; only what this attempt created, and only if still empty
            _remove_if_empty_tree(folder)
        raise


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    out = []
    path = path.absolute()
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def _remove_if_empty_tree(folder: Path) -> None:
    """Remove ``folder`` if it holds nothing but empty folders."""
    if not folder.is_dir() or folder.is_symlink():
        return
    if any(f for _root, _dirs, files in os.walk(folder) for f in files):
        return
    shutil.rmtree(folder, ignore_errors=True)


def missing_message(display_name: str, root: Path, expected: list[Path], tried: str, **values: object) -> str:
    """The message for "absent and cannot download": what was tried (``tried``, a translated sentence
    with a ``{name}`` placeholder, filled with ``values`` too), where files go, what else to do."""
    shown = "\n".join(f"  {p}" for p in expected[:6]) + ("\n  ..." if len(expected) > 6 else "")
    return tried.format(name=display_name, **values) + "\n" + _(
        "Checked folder: {root}\n"
        "Put the files there (as torchvision lays them out):\n{files}\n"
        "or load it with download=True on a machine with internet, "
        "or use the embedded 'shapes' or 'digits' dataset, which need no download."
    ).format(root=root, files=shown)


def ensure_present(spec: TorchvisionSet, root: Path, download: bool) -> None:
    """Make sure the raw files are in ``root``, downloading them if allowed; else a DataError."""
    if spec.is_present(root):
        return
    expected = spec.expected_paths(root)
    if not download:
        raise DataError(missing_message(spec.display_name, root, expected, _(
            "{name} is not available: the files are not there and download=False.")))
    if offline_forced():
        raise DataError(missing_message(spec.display_name, root, expected, _(
            "{name} is not available: the files are not there and downloads are disabled (CNNLAB_OFFLINE=1).")))
    try:
        torchvision_download(spec.tv_class, root)
    except Exception as exc:  # noqa: BLE001 - no network, proxy, disk full: all end in the same advice
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(missing_message(spec.display_name, root, expected, _(
            "{name} is not available: the files are not there and the download failed ({reason})."), reason=reason)
        ) from None
    if not spec.is_present(root):
        raise DataError(missing_message(spec.display_name, root, expected, _(
            "{name} is not available: the download finished but the files are still missing.")))


def load_raw(spec: TorchvisionSet, root: Path, download: bool):
    """``(train_images, train_labels), (test_images, test_labels), classes`` as uint8/int64 tensors."""
    ensure_present(spec, root, download)
    return READERS[spec.name](spec, root)
