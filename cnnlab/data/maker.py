"""Your own images as a dataset: ``data/<name>/<class>/0001.png``, made from uploads or a camera.

A teacher names two to ten classes and adds pictures to each (files or camera shots). Every
picture goes through the safe decoder (:func:`cnnlab.data.images.decode_image`), is scaled down
so that its shorter side is at most :data:`STORED_SIDE` pixels, and is written as a PNG (which
also drops any EXIF metadata, such as a phone's location). The result is an ordinary image
folder, the layout ``load_dataset("folder", root=...)`` and ``--data folder --data-root`` read,
plus a small manifest, ``cnnlab-dataset.json``, that makes the dataset known by its name and
records the classes in the order they were named (:func:`class_order`)::

    data/fruits/cnnlab-dataset.json
    data/fruits/apple/0001.png
    data/fruits/pear/0001.png

Every folder under :func:`cnnlab.paths.data_dir` with a manifest is listed by
:func:`cnnlab.data.list_datasets` under its name ("fruits"), so it appears in the app's dataset
pickers and on the command line (``python -m cnnlab train --data fruits``).

Limits (stated by :func:`limits_text`, checked before any pixel memory is allocated): 2 to
:data:`MAX_CLASSES` classes, :data:`MAX_IMAGES_PER_CLASS` images per class,
:data:`MAX_FILE_BYTES` per file, :data:`MAX_PIXELS` pixels per image; at most
:data:`MAX_DATASETS` datasets holding :data:`MAX_TOTAL_BYTES` on disk together. A refused file is
reported with its reason; the others are kept. Adding never overwrites or removes a saved image:
each file is written under a temporary hidden name and linked to its final name only when
complete, so an interrupted save leaves whole images and at most a hidden temporary file (ignored
by every loader, removed by the next save).

The validation hold-out (:func:`holdout`) is decided file by file from a hash of the seed, the
class and the file name (:func:`cnnlab.data.splits.stable_holdout`), so images added later never
move an image a run trained on into its validation set.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

from PIL import Image

from .. import paths
from ..errors import DataError
from ..files import atomic_write_text
from ..i18n import _, fmt, ngettext
from .folders import IMG_EXTENSIONS, class_folders
from .images import decode_image, resize_shorter_then_center_crop
from .splits import stable_holdout

MANIFEST = "cnnlab-dataset.json"
#: Version 2: the manifest's ``classes`` are the label order (the order they were named). A version 1
#: manifest listed them sorted, and its datasets keep the sorted order their runs were trained with.
MANIFEST_VERSION = 2
MAX_RECORDED_CLASSES = 100  # a longer "classes" list in a manifest (edited by hand) is ignored
MIN_CLASSES = 2
MAX_CLASSES = 10
MAX_IMAGES_PER_CLASS = 500
MAX_FILE_BYTES = 20 * 2**20
MAX_PIXELS = 40_000_000
#: At most this many made datasets under one data folder, and this many bytes of images in them all.
MAX_DATASETS = 20
MAX_TOTAL_BYTES = 2 * 2**30
#: Images are stored scaled down so that their shorter side is at most this many pixels.
STORED_SIDE = 256
#: The square size a saved dataset is decoded to for training unless ``image_size`` says otherwise.
DEFAULT_IMAGE_SIZE = 64
#: Fewest images a class needs before training (one to train on, one to validate on).
MIN_IMAGES_TO_TRAIN = 2
#: Images per class a teacher should aim for (shown on the page).
RECOMMENDED_PER_CLASS = 50
MAX_NAME_LENGTH = 40
MAX_MANIFEST_BYTES = 64 * 2**10
#: A dataset this small gets the small-data training suggestions (:func:`suggest_training`).
SMALL_DATASET_IMAGES = 5000

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_FORBIDDEN_IN_CLASS = set('/\\:*?"<>|')
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_FILE_RE = re.compile(r"(\d{1,9})\.png")
_RESERVED: set[str] = set()  # the registry's own dataset names (filled by cnnlab.data.registry)
_LOCK = threading.Lock()  # one writer at a time in this process (two app sessions adding at once)


def reserve(name: str) -> None:
    """Keep ``name`` (a built-in registry key) from being used for a made dataset."""
    _RESERVED.add(name)


def limits_text() -> str:
    """The limits, as the page and the command line state them."""
    return _("{least} to {most} classes; at most {images} images per class; files up to {mb} MB and {mp} megapixels "
             "in PNG, JPEG, BMP, GIF, TIFF, WebP or PPM/PGM; at most {datasets} datasets, {total} of stored images in "
             "all. Images are stored as PNG, scaled down to at most {side} pixels on their shorter side (metadata such "
             "as a photo's location is not kept).").format(
        least=MIN_CLASSES, most=MAX_CLASSES, images=MAX_IMAGES_PER_CLASS, mb=MAX_FILE_BYTES // 2**20,
        mp=MAX_PIXELS // 1_000_000, datasets=MAX_DATASETS, total=_gb(MAX_TOTAL_BYTES), side=STORED_SIDE)


def _gb(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GB".replace(".0 GB", " GB")
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def is_key(name: str) -> bool:
    """Whether ``name`` can be a made dataset's key (the registry asks before looking on disk)."""
    return (isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME_RE.fullmatch(name) is not None
            and name not in _RESERVED)


def dataset_key(name: str) -> str:
    """The registry key and folder name for ``name``: "My Fruits" -> "my_fruits".

    Lower case, spaces and hyphens as underscores; then it must be a letter followed by letters,
    digits and underscores, at most :data:`MAX_NAME_LENGTH` characters, and not a built-in
    dataset's name. Raises :class:`DataError` saying what to change.
    """
    if not isinstance(name, str):
        raise DataError(_("A dataset name must be text, got {kind}.").format(kind=type(name).__name__))
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    if not key:
        raise DataError(_("Give the dataset a name, e.g. 'fruits' (letters, digits and _)."))
    if len(key) > MAX_NAME_LENGTH:
        raise DataError(_("The dataset name {name!r} is {n} characters long; use at most {most}.").format(
            name=name.strip(), n=len(key), most=MAX_NAME_LENGTH))
    if not _NAME_RE.fullmatch(key):
        raise DataError(_("The dataset name {name!r} can only hold letters a-z, digits and _ (spaces become _), and "
                          "must start with a letter, e.g. 'fruits' or 'my_pets_2'.").format(name=name.strip()))
    if key in _RESERVED:
        raise DataError(_("{key!r} is the name of a dataset cnnlab already has; choose another name, e.g. "
                          "'my_{key}'.").format(key=key))
    return key


def class_name(name: str) -> str:
    """A class name as it will be stored (a folder name): trimmed, Unicode NFC.

    Refused: empty, longer than :data:`MAX_NAME_LENGTH`, starting with '.', containing
    ``/ \\ : * ? " < > |`` or control characters (no path can escape the dataset's folder), or a
    name Windows reserves (CON, NUL, COM1, ...).
    """
    if not isinstance(name, str):
        raise DataError(_("A class name must be text, got {kind}.").format(kind=type(name).__name__))
    clean = unicodedata.normalize("NFC", name.strip())
    if not clean:
        raise DataError(_("A class name is empty; give every class a name, e.g. 'apple'."))
    if len(clean) > MAX_NAME_LENGTH:
        raise DataError(_("The class name {start!r}... is {n} characters long; use at most {most}.").format(
            start=clean[:20], n=len(clean), most=MAX_NAME_LENGTH))
    bad = sorted({c for c in clean if c in _FORBIDDEN_IN_CLASS or unicodedata.category(c).startswith("C")})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise DataError(_("The class name {name!r} contains {characters}, which a folder name cannot hold; use "
                          "letters, digits, spaces, - or _.").format(name=clean, characters=shown))
    if clean.startswith(".") or clean.endswith("."):
        raise DataError(_("The class name {name!r} cannot start or end with '.'; use letters, digits, spaces, - or "
                          "_.").format(name=clean))
    if clean.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise DataError(_("{name!r} is a name Windows reserves for devices; choose another class name.").format(
            name=clean))
    return clean


def class_names(names: Sequence[str], existing: Sequence[str] = ()) -> list[str]:
    """``names`` checked one by one (:func:`class_name`), without duplicates (ignoring case, also
    against ``existing``), and with the class count, existing ones included, in 2..10."""
    out: list[str] = []
    seen = {n.casefold(): n for n in existing}
    for raw in names:
        clean = class_name(raw)
        if clean.casefold() in seen:
            raise DataError(_("The class {name!r} is named twice (as {other!r}); class names must differ, ignoring "
                              "case.").format(name=clean, other=seen[clean.casefold()]))
        seen[clean.casefold()] = clean
        out.append(clean)
    total = len(existing) + len(out)
    if total < MIN_CLASSES:
        raise DataError(_("A dataset needs at least {least} classes to tell apart; name {n} more.").format(
            least=MIN_CLASSES, n=MIN_CLASSES - total))
    if total > MAX_CLASSES:
        raise DataError(_("A dataset made here has at most {most} classes; this would make {n}.").format(
            most=MAX_CLASSES, n=total))
    return out


def parse_class_list(text: str) -> list[str]:
    """Class names typed one per line or separated by commas (blank entries dropped)."""
    return [p.strip() for p in re.split(r"[\n,]", text or "") if p.strip()]


# --------------------------------------------------------------------------------------
# The datasets on disk
# --------------------------------------------------------------------------------------


@dataclass
class MadeDataset:
    """A dataset made with this module, as found on disk (counts are the files there now)."""

    key: str
    root: Path
    title: str
    classes: list[str]  # the class folders in the order they were named (class_order): every loader's label order
    counts: dict[str, int]
    image_size: int = DEFAULT_IMAGE_SIZE
    created: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. a damaged manifest that was ignored
    #: each class's image files, as paths relative to its folder ("0001.png"), sorted: what the loader reads
    files: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    bytes: int = 0  # the image files' size on disk

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ready(self) -> bool:
        """Every class has enough images to train on."""
        return len(self.classes) >= MIN_CLASSES and all(self.counts.get(c, 0) >= MIN_IMAGES_TO_TRAIN for c in self.classes)

    def missing(self) -> list[str]:
        """The classes with too few images to train, as "pear (1 image)"."""
        return [ngettext("{name} ({n} image)", "{name} ({n} images)", self.counts.get(c, 0)).format(
                    name=c, n=self.counts.get(c, 0)) for c in self.classes
                if self.counts.get(c, 0) < MIN_IMAGES_TO_TRAIN]

    def description(self) -> str:
        """One sentence on what it holds, as the dataset pickers and the status show it."""
        return _("Your images: {classes} classes, {images} images ({counts}) in {folder}.").format(
            classes=len(self.classes), images=self.total,
            counts=", ".join(f"{c} {self.counts.get(c, 0)}" for c in self.classes), folder=self.root)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMG_EXTENSIONS


def _list_images(folder: Path) -> tuple[tuple[str, ...], int]:
    """The image files in ``folder`` and its visible sub-folders, as sorted relative paths
    ("0001.png", "more/x.jpg"), and their bytes: the one listing the counts, the hold-out and the
    loader all use."""
    names: list[str] = []
    size = 0
    for dirpath, dirnames, filenames in os.walk(folder):  # errors (a folder gone meanwhile) are skipped
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, folder)
        for f in filenames:
            if _is_image(f):
                try:
                    size += os.stat(os.path.join(dirpath, f)).st_size
                except OSError:
                    continue
                names.append(f if rel == "." else Path(rel, f).as_posix())
    return tuple(sorted(names)), size


def _count_images(folder: Path) -> int:
    """Image files in ``folder`` and its sub-folders (what the loader reads)."""
    return len(_list_images(folder)[0])


def _read_manifest(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The manifest's fields that are well formed, and notes on what was ignored (it is untrusted)."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            return {}, [_("{file} is {size:,} bytes (more than {most:,}): ignored").format(
                file=path.name, size=size, most=MAX_MANIFEST_BYTES)]
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, [_("{file} could not be read ({error}): ignored, the folders are used").format(
            file=path.name, error=type(exc).__name__)]
    if not isinstance(data, dict):
        return {}, [_("{file} is not a JSON object: ignored, the folders are used").format(file=path.name)]
    out: dict[str, Any] = {}
    if isinstance(data.get("title"), str) and 0 < len(data["title"].strip()) <= 100:
        out["title"] = data["title"].strip()
    size = data.get("image_size")
    if isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 1024:
        out["image_size"] = size
    if isinstance(data.get("created"), str) and len(data["created"]) <= 40:
        out["created"] = data["created"]
    version, classes = data.get("cnnlab_dataset"), data.get("classes")
    if (isinstance(version, int) and version >= 2 and isinstance(classes, list)
            and len(classes) <= MAX_RECORDED_CLASSES and all(isinstance(c, str) for c in classes)):
        out["classes"] = classes  # only orders the folders found on disk: no path is built from it
    return out, []


def _in_order(found: Sequence[str], recorded: Sequence[str]) -> list[str]:
    """The class folders ``found`` in the ``recorded`` order, any folder it does not list (made by hand)
    after them, sorted. Names are compared in Unicode NFC, as :func:`class_name` stores them (a file
    system may list them decomposed)."""
    by_nfc = {unicodedata.normalize("NFC", f): f for f in found}
    first = list(dict.fromkeys(by_nfc[n] for n in (unicodedata.normalize("NFC", r) for r in recorded) if n in by_nfc))
    listed = set(first)
    return first + [f for f in found if f not in listed]


def class_order(root: str | Path) -> list[str]:
    """The class folders of ``root`` in their label order: for a made dataset, the order its classes
    were named (its manifest's list); for any other folder, or a manifest from before that order was
    kept, the sorted names (ImageFolder's order). The 'folder' loader and :func:`read_made` both use
    it, so a made dataset has the same labels whichever way it is loaded."""
    root = Path(root)
    manifest = _manifest_path(root)
    recorded = _read_manifest(manifest)[0].get("classes", ()) if manifest.is_file() else ()
    return _in_order(class_folders(root), recorded)


def _manifest_path(root: Path) -> Path:
    return root / MANIFEST


def dataset_dir(key: str, data_root: str | Path | None = None) -> Path:
    return (Path(data_root).expanduser() if data_root is not None else paths.data_dir()) / key


def _stamp(root: Path) -> tuple | None:
    """What changes when a made dataset changes (its manifest, rewritten on every add and remove, and
    the times of its class folders, which change when a file is added or removed, even by hand);
    None when ``root`` has no manifest. One directory listing and a few stats."""
    try:
        m = os.stat(_manifest_path(root))
        classes = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(root)
                         if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return None
    return (m.st_mtime_ns, m.st_size, tuple(classes))


_CACHE: dict[str, tuple[tuple, MadeDataset]] = {}  # folder -> (its stamp, what read_made found)


def read_made(key: str, data_root: str | Path | None = None) -> MadeDataset:
    """The made dataset called ``key`` (counts read from disk now). DataError if there is none.

    The listing of its files is kept in memory until the dataset changes (:func:`_stamp`), so
    asking again (every page rerun asks) costs a few stats. The result is shared: do not modify it.
    """
    root = dataset_dir(key, data_root)
    manifest = _manifest_path(root)
    stamp = _stamp(root)
    if stamp is None:
        raise DataError(_("There is no dataset made in cnnlab called {name!r} (no {manifest}). Make one on the 'Your "
                          "images' page, or list them with: python -m cnnlab datasets").format(
            name=key, manifest=manifest))
    cached = _CACHE.get(str(root))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    fields_, notes = _read_manifest(manifest)
    classes = _in_order(class_folders(root), fields_.get("classes", ()))
    files, size = {}, 0
    for c in classes:
        files[c], n = _list_images(root / c)
        size += n
    made = MadeDataset(key, root, fields_.get("title", key), classes, {c: len(files[c]) for c in classes},
                       fields_.get("image_size", DEFAULT_IMAGE_SIZE), fields_.get("created", ""), notes, files, size)
    if len(_CACHE) > 4 * MAX_DATASETS:
        _CACHE.clear()
    _CACHE[str(root)] = (stamp, made)
    return made


def is_made(key: str, data_root: str | Path | None = None) -> bool:
    """Whether ``key`` names a made dataset (a key with a manifest on disk): one stat, for the pickers."""
    return isinstance(key, str) and is_key(key) and _manifest_path(dataset_dir(key, data_root)).is_file()


def find_made(key: str, data_root: str | Path | None = None) -> MadeDataset | None:
    """The made dataset called ``key``, or None when there is none (no error: for pickers and the registry)."""
    if not is_made(key, data_root):
        return None
    try:
        return read_made(key, data_root)
    except DataError:  # removed between the check and the read
        return None


def _made_names(base: Path) -> list[str]:
    """The folders under ``base`` that are made datasets (a valid key and a manifest), sorted."""
    try:
        entries = sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []
    return [n for n in entries if is_key(n) and (base / n / MANIFEST).is_file()]


def list_made(data_root: str | Path | None = None) -> list[MadeDataset]:
    """Every made dataset under ``data_root`` (default :func:`cnnlab.paths.data_dir`), by name.

    A folder needs the manifest to be listed (so the raw folders of MNIST or Caltech101 are not);
    a folder whose name is not a valid dataset key, or is a built-in's, is skipped. Cheap when
    nothing changed (see :func:`read_made`)."""
    base = Path(data_root).expanduser() if data_root is not None else paths.data_dir()
    out = []
    for name in _made_names(base):
        try:
            out.append(read_made(name, base))
        except DataError:
            continue
    return out


def fingerprint(data_root: str | Path | None = None) -> tuple:
    """Changes whenever a made dataset is created, or images are added or removed: a cache key.

    Costs a listing of the data folder and, per made dataset, of its folder and a few stats (no
    image file is looked at)."""
    base = Path(data_root).expanduser() if data_root is not None else paths.data_dir()
    out = []
    for name in _made_names(base):
        stamp = _stamp(base / name)
        if stamp is not None:
            out.append((name, stamp))
    return (str(base), *out)


def disk_usage(data_root: str | Path | None = None) -> int:
    """Bytes of images in all the made datasets under ``data_root`` (checked against :data:`MAX_TOTAL_BYTES`)."""
    return sum(m.bytes for m in list_made(data_root))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _write_manifest(root: Path, key: str, title: str, classes: Sequence[str], created: str, image_size: int) -> None:
    payload = {
        "cnnlab_dataset": MANIFEST_VERSION, "name": key, "title": title, "classes": list(classes),
        "image_size": image_size, "created": created, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "layout": "<class>/<number>.png; read with load_dataset(name) or load_dataset('folder', root=this folder)",
    }
    atomic_write_text(_manifest_path(root), json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _oserror(message: str, where: Path, exc: OSError) -> DataError:
    """The error for a write the disk refused: ``message`` (translated, with ``{where}`` and ``{reason}``)."""
    return DataError(message.format(where=where, reason=exc.strerror or type(exc).__name__))


def create_dataset(name: str, classes: Sequence[str], title: str | None = None,
                   data_root: str | Path | None = None) -> MadeDataset:
    """Make ``data/<key>/`` with one folder per class, or add new classes to a dataset made before.

    Nothing saved is ever removed: classes that exist stay with their images; the ones given
    that are new are created. Refused (DataError): a bad name or class name, fewer than 2 or
    more than 10 classes in all, a folder of that name that is not a made dataset, or a new
    dataset when there are already :data:`MAX_DATASETS`.
    """
    key = dataset_key(name)
    base = Path(data_root).expanduser() if data_root is not None else paths.data_dir()
    root = base / key
    with _LOCK:
        if root.exists() and not _manifest_path(root).is_file():
            raise DataError(_(
                "'{folder}' already exists and was not made here (it has no {manifest}); choose another name. To "
                "train on that folder as it is, use the 'folder' dataset with this path.").format(
                folder=root, manifest=MANIFEST))
        try:
            clash = next((e.name for e in os.scandir(base) if e.name.lower() == key and e.name != key), None)
        except OSError:
            clash = None
        if clash is not None:  # data/MNIST would be the same folder as data/mnist on macOS and Windows
            raise DataError(_("'{folder}' already exists; on some systems it is the same folder as '{name}'. Choose "
                              "another name.").format(folder=base / clash, name=key))
        if not root.exists():
            made = _made_names(base)
            if len(made) >= MAX_DATASETS:
                raise DataError(_("There are already {n} datasets made here (the limit is {most}); add to one of them, "
                                  "or delete one you no longer need (its folder in {folder}).").format(
                    n=len(made), most=MAX_DATASETS, folder=base))
        fields_, _notes = _read_manifest(_manifest_path(root)) if root.is_dir() else ({}, [])
        existing = _in_order(class_folders(root), fields_.get("classes", ())) if root.is_dir() else []
        wanted = [c for c in (class_name(c) for c in classes) if c not in existing]
        new = class_names(wanted, existing)  # in the order typed, after the classes there already
        created = fields_.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S")
        shown = (title or "").strip()[:100] or fields_.get("title") or name.strip()[:100] or key
        try:
            for c in new:
                (root / c).mkdir(parents=True, exist_ok=True)
            root.mkdir(parents=True, exist_ok=True)
            _write_manifest(root, key, shown, [*existing, *new], created,
                            fields_.get("image_size", DEFAULT_IMAGE_SIZE))
        except OSError as exc:
            raise _oserror(_("Could not create '{where}' ({reason}); check that the disk has space and the folder can "
                             "be written. Images already saved are kept."), root, exc) from None
    return read_made(key, base)


@dataclass
class Refused:
    """A file that was not added, and why (cnnlab's own sentence)."""

    name: str
    reason: str


@dataclass
class AddReport:
    """What :func:`add_images` did: the files saved (their new paths) and those refused."""

    dataset: str
    class_name: str
    saved: list[Path] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)

    def headline(self) -> str:
        """The first sentence of :meth:`message`: how many images were added."""
        if not self.saved:
            return _("No image was added to '{name}'.").format(name=self.class_name)
        return ngettext("Added {n} image to '{name}'.", "Added {n} images to '{name}'.", len(self.saved)).format(
            n=len(self.saved), name=self.class_name)

    def message(self) -> str:
        """What was added and, for each file refused (the first ten), why."""
        if not self.refused:
            return self.headline()
        reasons = " ".join(f"{r.reason}" for r in self.refused[:10])
        if len(self.refused) > 10:
            refused = _("Refused {n}: {reasons} (and {more} more)").format(
                n=len(self.refused), reasons=reasons, more=len(self.refused) - 10)
        else:
            refused = _("Refused {n}: {reasons}").format(n=len(self.refused), reasons=reasons)
        return f"{self.headline()} {refused}"


def prepare_image(data: bytes, filename: str | None = None) -> bytes:
    """The PNG bytes that are stored for one uploaded or camera image.

    Decoded by :func:`~cnnlab.data.images.decode_image` (size, pixel count and aspect checked from
    the header before any pixels are allocated; refused formats never parsed), made RGB (or kept
    grey), scaled down so the shorter side is at most :data:`STORED_SIDE`, encoded as PNG.
    Raises DataError naming ``filename`` (by default "the uploaded file") and the reason.
    """
    filename = _("the uploaded file") if filename is None else filename
    if len(data) > MAX_FILE_BYTES:
        raise DataError(_too_large(filename, len(data)))
    source = io.BytesIO(data)
    source.name = filename  # type: ignore[attr-defined]  # decode_image names the file in its messages
    img = decode_image(source, mode="RGB", max_pixels=MAX_PIXELS, max_bytes=MAX_FILE_BYTES, draft=(STORED_SIDE, STORED_SIDE))
    w, h = img.size
    if min(w, h) > STORED_SIDE:
        scale = STORED_SIDE / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _indices(folder: Path) -> list[int]:
    try:
        return [int(m.group(1)) for e in os.scandir(folder) if (m := _FILE_RE.fullmatch(e.name))]
    except OSError:
        return []


def _clean_temporaries(folder: Path) -> None:
    """Hidden ``.*.tmp`` files an interrupted save left behind: this process's (called under the
    lock, so none is being written), and other processes' older than ten minutes."""
    mine = f".{os.getpid()}."
    try:
        for e in os.scandir(folder):
            if not (e.name.startswith(".") and e.name.endswith(".tmp")):
                continue
            try:
                if mine in e.name or time.time() - e.stat().st_mtime > 600:
                    os.unlink(e.path)
            except OSError:
                pass
    except OSError:
        pass


def _link_new(tmp: Path, folder: Path, start: int) -> Path:
    """Give the complete file ``tmp`` the first free name ``<n>.png`` (n >= start), never replacing one."""
    n = start
    while True:
        final = folder / f"{n:04d}.png"
        try:
            os.link(tmp, final)
        except FileExistsError:
            n += 1
            continue
        except OSError:  # a file system without hard links: rename, after checking the name is free
            if final.exists():
                n += 1
                continue
            os.replace(tmp, final)
            return final
        tmp.unlink(missing_ok=True)
        return final


#: An image to add: its bytes, or a function that returns them (read only if the image is not refused by count).
ImageData = Union[bytes, Callable[[], bytes]]


def add_images(key: str, class_: str, files: Iterable[tuple[str, ImageData]],
               data_root: str | Path | None = None) -> AddReport:
    """Add ``files`` (``(file name, bytes or a function returning them)`` pairs) to class ``class_``
    of the made dataset ``key``.

    Each file is checked and converted (:func:`prepare_image`) and saved as the next free
    ``<class>/<n>.png``. A file that cannot be used is reported in the result with its reason and
    the others are still added. Once the class holds :data:`MAX_IMAGES_PER_CLASS` images, or the
    made datasets hold :data:`MAX_TOTAL_BYTES` together, the rest are refused without being read
    (when given as functions) or decoded. Raises DataError only when nothing can be added at all
    (no such dataset or class, or the disk refuses to write: images saved so far are kept).
    """
    made = read_made(key, data_root)
    clean = class_name(class_)
    if clean not in made.classes:
        raise DataError(_("The dataset {name!r} has no class {class_!r}; its classes are {classes}. Add the class "
                          "first.").format(name=key, class_=clean, classes=", ".join(made.classes)))
    folder = made.root / clean
    report = AddReport(key, clean)
    with _LOCK:
        _clean_temporaries(folder)
        count = _count_images(folder)
        used = disk_usage(made.root.parent)
        start = max(_indices(folder), default=0) + 1
        for filename, data in files:
            shown = os.path.basename(str(filename or "")) or _("the uploaded file")
            if count >= MAX_IMAGES_PER_CLASS:
                report.refused.append(Refused(shown, _(
                    "'{file}': the class '{name}' is full ({most} images, the limit); start another class or "
                    "dataset.").format(file=shown, name=clean, most=MAX_IMAGES_PER_CLASS)))
                continue
            if used >= MAX_TOTAL_BYTES:
                report.refused.append(Refused(shown, _full_disk_reason(shown, used)))
                continue
            try:
                png = prepare_image(bytes(data() if callable(data) else data), shown)
            except DataError as exc:
                report.refused.append(Refused(shown, str(exc)))
                continue
            if used + len(png) > MAX_TOTAL_BYTES:
                report.refused.append(Refused(shown, _full_disk_reason(shown, used)))
                used = MAX_TOTAL_BYTES  # full: the rest are refused without being read
                continue
            tmp = folder / f".new.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                with open(tmp, "wb") as f:  # complete and on disk before it gets a name loaders read
                    f.write(png)
                    f.flush()
                    os.fsync(f.fileno())
                final = _link_new(tmp, folder, start)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if report.saved:
                    _touch(made)
                raise _oserror(_("Could not save an image in '{where}' ({reason}); check that the disk has space and "
                                 "the folder can be written. Images already saved are kept."), folder, exc) from None
            report.saved.append(final)
            start = int(final.stem) + 1
            count += 1
            used += len(png)
        if report.saved:
            _touch(made)
    return report


def _full_disk_reason(shown: str, used: int) -> str:
    return _("'{file}': the datasets made here would hold more than {most} of images together (the limit; {now} now); "
             "delete a dataset you no longer need to make room.").format(
        file=shown, most=_gb(MAX_TOTAL_BYTES), now=_gb(min(used, MAX_TOTAL_BYTES)))


def _too_large(name: str, size: int) -> str:
    """Why a file over :data:`MAX_FILE_BYTES` is refused."""
    return _("'{file}' is {size} MB; the limit is {most} MB. Resize or compress it first.").format(
        file=name, size=fmt(size / 2**20, ".1f"), most=MAX_FILE_BYTES // 2**20)


def _touch(made: MadeDataset) -> None:
    """Rewrite the manifest (its time tells the pickers something changed); a failure costs nothing saved."""
    try:
        order = _in_order(class_folders(made.root), made.classes)  # the order kept, a folder made by hand after it
        _write_manifest(made.root, made.key, made.title, order, made.created or time.strftime("%Y-%m-%dT%H:%M:%S"),
                        made.image_size)
    except (OSError, DataError):
        pass


def add_paths(key: str, class_: str, files: Iterable[str | Path], data_root: str | Path | None = None) -> AddReport:
    """:func:`add_images` for files on disk (the command line); a folder adds the image files in it.

    A file larger than :data:`MAX_FILE_BYTES` is refused from its size, without being read."""
    refused: list[Refused] = []

    def pairs():
        for p in files:
            p = Path(p).expanduser()
            members = sorted(q for q in p.rglob("*") if q.is_file() and _is_image(q.name)) if p.is_dir() else [p]
            for q in members:
                try:
                    size = q.stat().st_size
                    if size > MAX_FILE_BYTES:
                        refused.append(Refused(q.name, _too_large(q.name, size)))
                        continue
                except OSError as exc:
                    refused.append(Refused(q.name, _unreadable(q, exc)))
                    continue
                yield q.name, _reader(q)

    report = add_images(key, class_, pairs(), data_root)
    report.refused = refused + report.refused
    return report


def _reader(path: Path) -> Callable[[], bytes]:
    """A function that reads ``path`` (called only for a file that is not refused by count); a file
    that cannot be read becomes a DataError, which refuses that file only."""
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataError(_unreadable(path, exc)) from None
    return read


def _unreadable(path: Path, exc: OSError) -> str:
    return _("'{path}' cannot be read ({reason}).").format(path=path, reason=exc.strerror or type(exc).__name__)


def _class_folder(key: str, class_: str, data_root: str | Path | None) -> Path:
    """The folder of an existing class (any name found on disk, but only those: no path is built
    from anything else)."""
    root = dataset_dir(key, data_root)
    if class_ not in class_folders(root):
        raise DataError(_("The dataset {name!r} has no class {class_!r}.").format(name=key, class_=class_))
    return root / class_


def image_files(key: str, class_: str, data_root: str | Path | None = None) -> list[Path]:
    """The images of one class, oldest first."""
    folder = _class_folder(key, class_, data_root)
    try:
        return sorted((Path(e.path) for e in os.scandir(folder) if e.is_file() and _is_image(e.name)),
                      key=lambda p: (0, int(p.stem)) if p.stem.isdigit() else (1, p.name))
    except OSError:
        return []


def remove_image(key: str, class_: str, filename: str, data_root: str | Path | None = None) -> None:
    """Delete one image of a class (the page's "remove" button); the name must be one of its files."""
    folder = _class_folder(key, class_, data_root)
    name = os.path.basename(filename)
    if name != filename or not _is_image(name) or not (folder / name).is_file():
        raise DataError(_("'{file}' is not an image of the class '{name}'.").format(file=filename, name=class_))
    try:
        (folder / name).unlink()
    except OSError as exc:
        raise _oserror(_("Could not remove '{where}' ({reason}); check that the disk has space and the folder can be "
                         "written. Images already saved are kept."), folder / name, exc) from None
    _touch(read_made(key, data_root))


def thumbnail(path: Path, size: int = 96) -> Image.Image:
    """A ``size`` x ``size`` square of an image (centre cut), decoded safely; DataError if unreadable."""
    return resize_shorter_then_center_crop(decode_image(path, mode="RGB", draft=(size, size)), (size, size))


# --------------------------------------------------------------------------------------
# Training on it
# --------------------------------------------------------------------------------------


def holdout(made: MadeDataset, val_fraction: float, seed: int = 0) -> dict[str, tuple[list[str], list[str]]]:
    """Each class's (training, validation) files, as paths relative to the class folder: the
    split the loader makes (``load_dataset(key, seed=seed, val_fraction=val_fraction)``) and the
    pages preview. A file is held out when its hash of ``(seed, class, file name)`` falls below
    ``val_fraction`` (:func:`cnnlab.data.splits.stable_holdout`), so the split of the files there
    now does not change when images are added: an image a run trained on stays a training image."""
    out = {}
    for c in made.classes:
        names = made.files.get(c, ())
        held = stable_holdout(c, names, val_fraction, seed)
        out[c] = ([n for n in names if n not in held], [n for n in names if n in held])
    return out


def holdout_counts(made: MadeDataset, val_fraction: float, seed: int = 0) -> list[tuple[int, int]]:
    """(train, validation) images of each class, in ``made.classes`` order: :func:`holdout`'s counts."""
    return [(len(t), len(v)) for t, v in holdout(made, val_fraction, seed).values()]


@dataclass
class Suggestion:
    """Training settings for a small image folder (a :class:`~cnnlab.train.TrainConfig`'s fields)
    and the reasons, to be shown next to them."""

    settings: dict[str, Any]
    why: list[str]
    transfer: bool = False


def suggest_training(counts: Sequence[int], transfer_model: str | None = None) -> Suggestion:
    """Settings that train a small CNN on a few hundred images in about a minute on two CPU cores.

    The CIFAR ResNet (195,738 parameters, BatchNorm, global pooling) at 32x32: small enough to run
    hundreds of images per second on a CPU, deep enough to learn objects from a few dozen images
    per class; pad-crop-flip augmentation (a few images per class overfit without it); Adam at
    0.002 with a one-cycle schedule; 20% of every class held out for validation; the number of
    epochs scaled so the run sees about 12,000 images (300 images: 40 epochs; measured with two
    threads: 62 CPU-seconds, i.e. about half a minute of wall time on two otherwise idle cores). With ``transfer_model`` (a transfer model
    whose ImageNet weights are on disk), that network with frozen features instead: only its new
    head learns, at 224x224 on images decoded at 224.
    """
    total = max(1, int(sum(counts)))
    n_classes = len(counts)
    if transfer_model:
        epochs = int(min(10, max(3, 3000 // total)))
        return Suggestion(
            {"model": transfer_model, "pretrained": True, "freeze": "features", "input_size": None,
             "augment": "imagenet", "epochs": epochs, "batch_size": 32, "optimizer": "adam", "lr": 1e-3,
             "scheduler": "none", "val_split": "holdout", "val_fraction": 0.2, "data_options": {"image_size": 224}},
            [_("{model}: features learned on ImageNet, kept frozen; only the new last layer learns the {n} classes, "
               "so a few images per class are enough").format(model=transfer_model, n=n_classes),
             _("224x224 images (the network's own size), ImageNet-style augmentation"),
             _("{epochs} epochs: each is slow on a CPU (every image goes through the whole pretrained network)")
             .format(epochs=epochs)],
            transfer=True)
    epochs = int(min(60, max(8, 12000 // total)))
    return Suggestion(
        {"model": "cifar_resnet", "pretrained": False, "freeze": "none", "input_size": 32, "augment": "cifar",
         "epochs": epochs, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "scheduler": "onecycle",
         "val_split": "holdout", "val_fraction": 0.2, "data_options": {"image_size": 32}},
        [_("a small CNN (CIFAR ResNet, 195,738 parameters) at 32x32: fast on a CPU, enough for {n} classes").format(
            n=n_classes),
         _("pad-crop-flip augmentation: with few images, each epoch shows them shifted and mirrored, so the network "
           "cannot just memorise them"),
         _("{epochs} epochs over the training images (the {total} less the fifth held out for validation), batches "
           "of 32, Adam with a one-cycle schedule").format(epochs=epochs, total=total),
         _("about 20% of every class held out for validation (each image by a hash of its name, so images added "
           "later never move one a run trained on): images the network never trains on")])


def train_command(key: str, suggestion: Suggestion) -> str:
    """The command line that trains on ``key`` with ``suggestion``'s settings."""
    s = suggestion.settings
    parts = [f"python -m cnnlab train --data {key} --model {s['model']}"]
    if s["pretrained"]:
        parts.append("--pretrained")
    if s["freeze"] != "none":
        parts.append(f"--freeze {s['freeze']}")
    if s["input_size"]:
        parts.append(f"--input-size {s['input_size']}")
    parts += [f"--data-option image_size={s['data_options']['image_size']}", f"--augment {s['augment']}",
              f"--epochs {s['epochs']}", f"--batch-size {s['batch_size']}", f"--optimizer {s['optimizer']}",
              f"--lr {s['lr']:g}", f"--scheduler {s['scheduler']}", f"--val-fraction {s['val_fraction']:g}"]
    return " ".join(parts)
