"""torchvision datasets, Caltech101 and image folders, from fake copies laid out in tmp_path."""

from __future__ import annotations

import gzip
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import dataset_status, list_datasets, load_dataset
from cnnlab.errors import DataError


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "nodata"))


# --------------------------------------------------------------------------- fakes


def _idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def fake_mnist(root: Path, folder: str = "MNIST", n_train: int = 50, n_test: int = 20, gz: bool = False) -> None:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def fake_cifar10(root: Path, per_batch: int = 20) -> None:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _pickle(folder / name, {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": list(np.arange(per_batch) % 10)})
    _pickle(folder / "batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]})


def fake_cifar100(root: Path, n: int = 300) -> None:
    rng = np.random.default_rng(0)
    folder = root / "cifar-100-python"
    for name in ("train", "test"):
        _pickle(folder / name, {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(np.arange(n) % 100), "coarse_labels": [0] * n})
    _pickle(folder / "meta", {"fine_label_names": [f"class{i:02d}" for i in range(100)]})


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


CALTECH_COUNTS = {"BACKGROUND_Google": 9, "Faces": 12, "accordion": 8, "airplanes": 10}


def fake_caltech(folder: Path) -> None:
    for c, (name, count) in enumerate(CALTECH_COUNTS.items()):
        for i in range(count):
            _jpeg(folder / name / f"image_{i + 1:04d}.jpg", seed=100 * c + i)


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_dataset():
    names = [s.name for s in list_datasets()]
    assert names[:2] == ["shapes", "digits"]
    assert {"mnist", "fashion_mnist", "cifar10", "cifar100", "caltech101", "folder"} <= set(names)
    assert dataset_status("shapes").state == "present"


# --------------------------------------------------------------------------- torchvision sets


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_like_from_fake_local_copy(tmp_path, name, folder, gz):
    fake_mnist(tmp_path, folder, gz=gz)
    assert dataset_status(name, tmp_path).state == "present"
    b = load_dataset(name, root=tmp_path, download=False, val_fraction=0.2)
    assert b.info.input_shape == (1, 28, 28) and b.info.source == "torchvision" and len(b.info.classes) == 10
    assert len(b.train) == 40 and len(b.val) == 10 and len(b.test) == 20
    assert torch.bincount(b.val.labels).tolist() == [1] * 10  # stratified
    assert b.train.images.dtype == torch.uint8 and b.train.images.shape[1:] == (1, 28, 28)
    resized = load_dataset(name, root=tmp_path, download=False, image_size=32)
    assert resized.train.images.shape[1:] == (1, 32, 32) and resized.info.input_shape == (1, 32, 32)


def test_cifar10_and_cifar100_from_fake_local_copy(tmp_path):
    fake_cifar10(tmp_path)
    b = load_dataset("cifar10", root=tmp_path, download=False, seed=1)
    assert b.info.classes[0] == "airplane" and b.info.input_shape == (3, 32, 32)
    assert len(b.train) + len(b.val) == 100 and len(b.test) == 20
    assert b.train.images.shape[1:] == (3, 32, 32)
    fake_cifar100(tmp_path)
    c = load_dataset("cifar100", root=tmp_path, download=False, val_fraction=0.0)
    assert len(c.info.classes) == 100 and c.info.classes[5] == "class05" and len(c.train) == 300


def test_corrupt_files_are_data_errors(tmp_path):
    fake_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("mnist", root=tmp_path, download=False)
    fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, download=False)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("fashion_mnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
    ],
)
def test_absent_without_download_says_where_files_go(tmp_path, name, expected, monkeypatch):
    with pytest.raises(DataError) as exc:
        load_dataset(name, root=tmp_path, download=False)
    msg = str(exc.value)
    assert str(tmp_path / expected) in msg and "download=False" in msg and "'shapes' or 'digits'" in msg
    offline = dataset_status(name, tmp_path)  # the tests run with CNNLAB_OFFLINE=1
    assert offline.state == "missing" and "No network" in offline.message and str(tmp_path) in offline.message
    import cnnlab.net

    monkeypatch.setattr(cnnlab.net, "can_reach", lambda *a, **k: True)
    assert dataset_status(name, tmp_path).state == "downloadable"


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_download_failure_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)  # the network is allowed, but fails
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", _no_network)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", _no_network)
    for name, expected in (("mnist", "MNIST/raw/train-images-idx3-ubyte"), ("cifar10", "cifar-10-batches-py/test_batch")):
        with pytest.raises(DataError) as exc:
            load_dataset(name, root=tmp_path, download=True)
        msg = str(exc.value)
        assert "download failed" in msg and str(tmp_path / expected) in msg and "'shapes' or 'digits'" in msg


# --------------------------------------------------------------------------- Caltech101


def _per_class(split) -> list[int]:
    return torch.bincount(split.labels, minlength=len(CALTECH_COUNTS)).tolist()


def test_caltech101_balanced_reproducible_split(tmp_path):
    fake_caltech(tmp_path / "101_ObjectCategories")
    assert dataset_status("caltech101", tmp_path).state == "present"
    b = load_dataset("caltech101", root=tmp_path, download=False, image_size=24, seed=0, progress=False)
    assert b.info.classes == sorted(CALTECH_COUNTS) and "BACKGROUND_Google" in b.info.classes
    assert b.info.input_shape == (3, 24, 24) and b.train.images.shape[1:] == (3, 24, 24)
    m = min(CALTECH_COUNTS.values())  # 8 -> 4/2/2 as in seed 000 (m//2, m//4, rest)
    assert _per_class(b.train) == [m // 2] * 4 and _per_class(b.val) == [m // 4] * 4
    assert _per_class(b.test) == [m - m // 2 - m // 4] * 4
    again = load_dataset("caltech101", root=tmp_path, download=False, image_size=24, seed=0, progress=False)
    assert torch.equal(b.train.images, again.train.images) and any("cache" in n for n in again.notes)
    other = load_dataset("caltech101", root=tmp_path, download=False, image_size=24, seed=1, progress=False)
    assert not torch.equal(b.train.images, other.train.images)
    # Splits are disjoint: no image appears twice.
    flat = torch.cat([b.train.images, b.val.images, b.test.images]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == len(flat)


def test_caltech101_in_subfolder_and_from_archive(tmp_path):
    fake_caltech(tmp_path / "src" / "101_ObjectCategories")
    archive_root = tmp_path / "arch" / "caltech101"
    archive_root.mkdir(parents=True)
    with tarfile.open(archive_root / "101_ObjectCategories.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "101_ObjectCategories", arcname="101_ObjectCategories")
    b = load_dataset("caltech101", root=tmp_path / "arch", download=False, image_size=16, progress=False)
    assert len(b.info.classes) == 4 and (archive_root / "101_ObjectCategories" / "Faces").is_dir()
    nested = tmp_path / "nested"
    (nested / "caltech101").mkdir(parents=True)
    (tmp_path / "src" / "101_ObjectCategories").rename(nested / "caltech101" / "101_ObjectCategories")
    assert len(load_dataset("caltech101", root=nested, download=False, image_size=16, progress=False).train) == 16


def test_caltech101_absent_and_download_fails(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)  # the network is allowed, but fails
    import torchvision.datasets.caltech as tv_caltech

    with pytest.raises(DataError) as exc:
        load_dataset("caltech101", root=tmp_path, download=False)
    assert str(tmp_path / "101_ObjectCategories") in str(exc.value) and "'shapes' or 'digits'" in str(exc.value)
    monkeypatch.setattr(tv_caltech, "download_and_extract_archive", _no_network)
    with pytest.raises(DataError, match="download failed"):
        load_dataset("caltech101", root=tmp_path, download=True)


# --------------------------------------------------------------------------- image folders


def test_folder_with_train_and_val_subfolders_and_corrupt_file(tmp_path):
    root = tmp_path / "hymenoptera_data"
    for split, n in (("train", 6), ("val", 3)):
        for c, cls in enumerate(("ants", "bees")):
            for i in range(n):
                _jpeg(root / split / cls / f"{cls}{i}.jpg", seed=10 * c + i + (100 if split == "val" else 0))
    (root / "train" / "bees" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "train" / "ants" / "notes.txt").write_text("ignored: not an image extension")
    b = load_dataset("folder", root=root, image_size=32, progress=False)
    assert b.info.classes == ["ants", "bees"] and b.info.input_shape == (3, 32, 32)
    assert len(b.train) == 12 and len(b.val) == 6 and b.test is None
    assert torch.bincount(b.train.labels).tolist() == [6, 6]
    assert any("skipped 1 unreadable image: broken.jpg" in n for n in b.notes)
    assert dataset_status("folder", root).state == "present"


def test_folder_ratio_split(tmp_path):
    for c, cls in enumerate(("cats", "dogs", "owls")):
        for i in range(10):
            _jpeg(tmp_path / "pets" / cls / f"{i}.png", seed=c * 10 + i, size=(50, 20))
    b = load_dataset("folder", root=tmp_path / "pets", image_size=16, val_fraction=0.3, seed=4, progress=False)
    assert torch.bincount(b.val.labels).tolist() == [3, 3, 3] and torch.bincount(b.train.labels).tolist() == [7, 7, 7]
    again = load_dataset("folder", root=tmp_path / "pets", image_size=16, val_fraction=0.3, seed=5, progress=False)
    assert not torch.equal(b.val.images, again.val.images)


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="needs root="):
        load_dataset("folder")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("folder", root=tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset("folder", root=tmp_path / "flat")
    bad = tmp_path / "bad"
    (bad / "a").mkdir(parents=True)
    (bad / "b").mkdir()
    (bad / "a" / "x.jpg").write_bytes(b"nope")
    (bad / "b" / "y.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=str(bad)):
        load_dataset("folder", root=bad, val_fraction=0.0, progress=False)
    _jpeg(bad / "a" / "ok.jpg", seed=1)
    with pytest.raises(DataError, match=r"class\(es\) b .*no training images"):
        load_dataset("folder", root=bad, val_fraction=0.0, progress=False)
