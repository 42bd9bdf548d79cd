"""Folders of image files: ImageFolder layouts, Caltech101, decoding in a pool, and the cache.

Files are decoded once (in a thread pool, with a tqdm bar) to a fixed storage size
(shorter side resized, then centre-cropped to a square, RGB) and kept as uint8 tensors in
``cnnlab.paths.datasets_cache_dir()``, keyed by folder, file list, size and seed, and read back
with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import paths
from ..errors import DataError, UnsafeFileError
from ..files import atomic_file
from ..i18n import _, ngettext
from ..net import offline_forced
from ..safeload import load_torch_file
from .images import decode_image, resize_shorter_then_center_crop

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
CACHE_VERSION = 1


@dataclass
class FileList:
    """Image files of one folder tree and their class indices."""

    root: Path
    classes: list[str]
    files: list[Path]
    labels: list[int]


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def class_folders(root: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``root`` (ImageFolder's class order)."""
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise DataError(_("Cannot list the folder '{folder}': {reason}.").format(
            folder=root, reason=exc.strerror or exc)) from None


def scan_image_folder(root: Path, classes: Sequence[str] | None = None) -> FileList:
    """The ``root/<class>/<image>`` files (recursively inside each class folder).

    ``classes`` fixes the class order (e.g. val uses train's); by default the sorted folder names.
    """
    if not root.is_dir():
        raise DataError(_("The image folder '{folder}' does not exist.").format(folder=root))
    found = class_folders(root)
    if classes is None:
        classes = found
    if not classes:
        raise DataError(_(
            "'{folder}' has no class sub-folders. Lay images out as {folder}/<class name>/<image>.jpg "
            "(one folder per class), or use the embedded 'shapes' or 'digits' dataset.").format(folder=root))
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(_("'{folder}' has class folders that the training folder lacks: {classes}.").format(
            folder=root, classes=", ".join(unknown[:5])))
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        folder = root / name
        members = sorted(p for p in folder.rglob("*") if p.is_file() and _is_image_file(p)) if folder.is_dir() else []
        files.extend(members)
        labels.extend([index] * len(members))
    return FileList(root, list(classes), files, labels)


def require_nonempty_classes(files: FileList, what: str) -> None:
    counts = np.bincount(np.asarray(files.labels, dtype=np.int64), minlength=len(files.classes))
    empty = [files.classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(_(
            "{what}: the class folder(s) {classes} in '{folder}' contain no image files ({extensions})."
        ).format(what=what, classes=", ".join(empty[:5]), folder=files.root, extensions=", ".join(IMG_EXTENSIONS)))


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def _decode_for_storage(path: Path, size: int) -> np.ndarray | str:
    """``size x size x 3`` uint8 pixels of ``path``, or the reason it cannot be read."""
    try:
        img = decode_image(path, mode="RGB", draft=(size, size))
    except DataError as exc:
        return str(exc)
    img = resize_shorter_then_center_crop(img, (size, size))
    return np.array(img, dtype=np.uint8)  # a writable copy


def decode_files(files: Sequence[Path], size: int, *, desc: str = "decoding", progress: bool = True, workers: int | None = None) -> tuple[torch.Tensor, list[int], list[Path]]:
    """Decode ``files`` in a thread pool into one uint8 ``N x 3 x size x size`` tensor.

    Returns ``(images, kept, skipped)``: the decoded images, the indices of ``files`` they
    come from, and the files that could not be read (skipped, not fatal).
    """
    out = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    kept: list[int] = []
    skipped: list[Path] = []
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: _decode_for_storage(p, size), files)
        for i, result in enumerate(tqdm(results, total=len(files), desc=desc, unit="img", disable=not progress or len(files) == 0)):
            if isinstance(result, str):
                skipped.append(files[i])
                continue
            out[len(kept)] = torch.from_numpy(result).permute(2, 0, 1)
            kept.append(i)
    return out[: len(kept)].contiguous(), kept, skipped


def skipped_note(skipped: Sequence[Path]) -> str:
    """"skipped 2 unreadable images: a.jpg, b.jpg" (at most five names)."""
    names = ", ".join(p.name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    return ngettext("skipped {n} unreadable image: {names}", "skipped {n} unreadable images: {names}",
                    len(skipped)).format(n=len(skipped), names=names)


# --------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------


def cache_key(kind: str, root: Path, files: Sequence[Path], size: int, seed: int, extra: str = "") -> str:
    """A file name for this folder, file list (names, sizes, times), size and seed."""
    h = hashlib.sha1(f"v{CACHE_VERSION}|{kind}|{root.resolve()}|{size}|{seed}|{extra}".encode())
    for p in files:
        try:
            st = p.stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return f"{kind}-{size}px-seed{seed}-{h.hexdigest()[:16]}.pt"


def cache_load(key: str) -> dict | None:
    """The cached dict for ``key``, or None when absent or unreadable (then it is rebuilt)."""
    path = paths.datasets_cache_dir() / key
    if not path.is_file():
        return None
    try:
        payload = load_torch_file(path, what="the dataset cache file", max_bytes=16 * 2**30)
    except UnsafeFileError:  # damaged or planted: rebuilt from the images, never trusted
        path.unlink(missing_ok=True)
        return None
    return payload if isinstance(payload, dict) else None


def cache_save(key: str, payload: dict) -> None:
    """Write ``payload`` atomically; a full disk only costs the cache, never the load."""
    folder = paths.datasets_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / key) as f:
            torch.save(payload, f)
    except OSError:
        pass


# --------------------------------------------------------------------------------------
# Caltech101
# --------------------------------------------------------------------------------------

CALTECH_FOLDER = "101_ObjectCategories"
CALTECH_ARCHIVE = "101_ObjectCategories.tar.gz"


def caltech_candidates(root: Path) -> list[Path]:
    """Where the ``101_ObjectCategories`` folder may be, in the order they are checked."""
    out = [root / CALTECH_FOLDER, root / "caltech101" / CALTECH_FOLDER]
    return [root, *out] if root.name == CALTECH_FOLDER else out


def find_caltech_folder(root: Path) -> Path | None:
    for candidate in caltech_candidates(root):
        if candidate.is_dir() and class_folders(candidate):
            return candidate
    return None


def find_caltech_archive(root: Path) -> Path | None:
    for folder in (root, root / "caltech101"):
        if (folder / CALTECH_ARCHIVE).is_file():
            return folder / CALTECH_ARCHIVE
    return None


def extract_archive(archive: Path) -> Path:
    """Unpack a ``.tar.gz`` next to itself (refusing paths that escape it) and return the folder."""
    dest = archive.parent
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(_("Cannot extract '{archive}': {error}. Delete it and download it again.").format(
            archive=archive, error=exc)) from None
    folder = dest / CALTECH_FOLDER
    if not folder.is_dir():
        raise DataError(_("'{archive}' did not contain a '{folder}' folder.").format(
            archive=archive, folder=CALTECH_FOLDER))
    return folder


def caltech_missing_message(root: Path, tried: str, **values: object) -> str:
    """Why Caltech101 is not there (``tried``: a translated sentence, filled with ``values``), where its
    files were looked for and where to put them."""
    places = "\n".join(f"  {p}/<class>/image_0001.jpg" for p in caltech_candidates(root))
    return tried.format(**values) + "\n" + _(
        "Checked: {root} (for the folder '{folder}' with its 102 class folders, or '{archive}')\n"
        "Put the images in one of:\n{places}\n"
        "or the archive at {path}, or load with download=True on a machine with internet; "
        "or use the embedded 'shapes' or 'digits' dataset, which need no download."
    ).format(root=root, folder=CALTECH_FOLDER, archive=CALTECH_ARCHIVE, places=places, path=root / CALTECH_ARCHIVE)


def locate_caltech(root: Path, download: bool, downloader) -> Path:
    """The ``101_ObjectCategories`` folder: found, extracted from the archive, or downloaded."""
    folder = find_caltech_folder(root)
    if folder is not None:
        return folder
    archive = find_caltech_archive(root)
    if archive is not None:
        return extract_archive(archive)
    if not download:
        raise DataError(caltech_missing_message(root, _(
            "Caltech101 is not available: no folder or archive there and download=False.")))
    if offline_forced():
        raise DataError(caltech_missing_message(root, _(
            "Caltech101 is not available: no folder or archive there and downloads are disabled (CNNLAB_OFFLINE=1).")))
    try:
        downloader("Caltech101", root)
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(caltech_missing_message(root, _(
            "Caltech101 is not available: no folder or archive there and the download failed ({reason})."),
            reason=reason)) from None
    folder = find_caltech_folder(root)
    if folder is None:
        raise DataError(caltech_missing_message(root, _(
            "Caltech101 is not available: the download finished but the folder is still missing.")))
    return folder
