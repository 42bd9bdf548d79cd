"""The dataset registry: :func:`load_dataset`, :func:`list_datasets`, :func:`dataset_status`,
and what a dataset has without loading it (:func:`has_test_split`, :func:`class_count`).

Every dataset, embedded or downloaded, is served the same way: a :class:`DataBundle` of
whole uint8 splits in memory. Errors a person can cause (a missing folder, no network, a
corrupt file) are :class:`~cnnlab.errors.DataError` with a message that says what was tried,
where the files must go and what to do instead.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import net, paths
from ..errors import DataError
from ..i18n import N_, _, fmt
from . import folders, maker, tvsets
from .augment import LUMA_WEIGHTS
from .stats import channel_stats
from ._types import DataBundle, DatasetInfo, DatasetSpec, DatasetStatus, TensorSplit
from .shapes import SHAPE_CLASSES, check_shape_options, generate_shapes
from .splits import balanced_split, stratified_split, stratified_subset, take

from .pipeline import IMAGENET_MEAN, IMAGENET_STD  # the one copy
DEFAULT_STORAGE_SIZE = 256

_SPECS: dict[str, DatasetSpec] = {}
_LOADERS: dict[str, Callable[..., DataBundle]] = {}


def _register(spec: DatasetSpec, loader: Callable[..., DataBundle]) -> None:
    _SPECS[spec.name] = spec
    _LOADERS[spec.name] = loader
    maker.reserve(spec.name)  # no dataset made in the app may take a built-in's name


def _made_spec(made: maker.MadeDataset) -> DatasetSpec:
    """The registry entry of a dataset made from your own images (``data/<name>/`` with a manifest)."""
    return DatasetSpec(made.key, made.title, "yours", made.description(),
                       (3, made.image_size, made.image_size), len(made.classes) or None)


def list_datasets() -> list[DatasetSpec]:
    """Every dataset cnnlab can load: embedded ones first, then the ones made from your own images
    (found under ``cnnlab.paths.data_dir()`` now, see :mod:`cnnlab.data.maker`), then the others."""
    order = {"embedded": 0, "yours": 1, "torchvision": 2, "folder": 3}
    made = [_made_spec(m) for m in maker.list_made()]
    builtins = sorted(_SPECS.values(), key=lambda s: (order.get(s.source, 4), list(_SPECS).index(s.name)))
    return sorted([*builtins, *made], key=lambda s: order.get(s.source, 4))  # stable: keeps each group's order


def get_spec(name: str, root: str | Path | None = None) -> DatasetSpec:
    """The registry entry of ``name``; a dataset made from your images is looked for in ``root``
    (default ``cnnlab.paths.data_dir()``)."""
    key = name.strip().lower().replace("-", "_")
    if key not in _SPECS:
        made = _find_made(key, root)
        if made is not None:
            return _made_spec(made)
        known = [*_SPECS, *(m.key for m in maker.list_made())]
        close = difflib.get_close_matches(key, known, n=3)
        if close:
            raise DataError(_("Unknown dataset {name!r}. Did you mean {close}? Available: {known}.").format(
                name=name, close=", ".join(repr(c) for c in close), known=", ".join(known)))
        raise DataError(_("Unknown dataset {name!r}. Available: {known}.").format(name=name, known=", ".join(known)))
    return _SPECS[key]


def _find_made(key: str, root: str | Path | None = None) -> maker.MadeDataset | None:
    return maker.find_made(key, root)


# --------------------------------------------------------------------------------------
# Helpers shared by the loaders
# --------------------------------------------------------------------------------------


def resize_images(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 ``N x C x H x W`` resized to ``size x size`` (bilinear, antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    shrinking = size < min(images.shape[-2:])
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
        out[start : start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _convert_channels(split: TensorSplit | None, channels: int) -> TensorSplit | None:
    if split is None or split.images.shape[1] == channels:
        return split
    if channels == 3:
        return TensorSplit(split.images.expand(-1, 3, -1, -1).contiguous(), split.labels)
    weights = torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    gray = (split.images.float() * weights).sum(dim=1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    return TensorSplit(gray, split.labels)


def _root_or_default(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root is not None else paths.data_dir()


def _progress(options: dict[str, Any]) -> bool:
    return bool(options.pop("progress", True))


# --------------------------------------------------------------------------------------
# Embedded datasets
# --------------------------------------------------------------------------------------


def _load_shapes(root: Path | None, image_size: int | None, seed: int, download: bool, val_fraction: float, options: dict) -> DataBundle:
    size = image_size or 32
    n_train = int(options.pop("n_train", 6000))
    n_val = int(options.pop("n_val", 1500))
    n_test = int(options.pop("n_test", 0))
    chosen = _shape_classes(options.pop("classes", None))
    drawing = _shape_drawing(options)

    def split(n: int, offset: int) -> TensorSplit:
        if chosen is None:
            return TensorSplit(*generate_shapes(n, size=size, seed=seed + offset, **drawing))
        # labels cycle through the 8 classes: ceil(n / k) * 8 images hold ceil(n / k) of each
        images, labels = generate_shapes(-(-n // len(chosen)) * len(SHAPE_CLASSES), size=size, seed=seed + offset,
                                         **drawing)
        keep = torch.isin(labels, torch.tensor(chosen))
        remap = torch.full((len(SHAPE_CLASSES),), -1, dtype=torch.int64)
        remap[chosen] = torch.arange(len(chosen))
        return TensorSplit(images[keep][:n].clone(), remap[labels[keep]][:n].clone())

    train = split(n_train, 0)
    val = split(n_val, 1_000_003)
    test = split(n_test, 2_000_003) if n_test > 0 else None
    mean, std = channel_stats(train.images)
    classes = list(SHAPE_CLASSES) if chosen is None else [SHAPE_CLASSES[c] for c in chosen]
    name = "Shapes (procedural)" if chosen is None else f"Shapes: {', '.join(classes)}"
    info = DatasetInfo(
        "shapes", name, classes, (3, size, size), mean, std, "embedded",
        _("{n} coloured shapes at random position, scale and rotation over clutter; generated from seed {seed}.")
        .format(n=len(classes), seed=seed),
    )
    note = _("generated {train} train / {val} val shape images from seed {seed}").format(
        train=n_train, val=n_val, seed=seed)
    return DataBundle(info, train, val, test, [note])


def _shape_drawing(options: dict) -> dict[str, Any]:
    """The drawing options of 'shapes' (``scale``, ``lines``, ``noise``, ``distractors``), checked; only
    those given (the others keep :func:`generate_shapes`'s defaults, the original images)."""
    given = {k: options.pop(k) for k in ("scale", "lines", "noise", "distractors") if k in options}
    try:
        checked = dict(zip(("scale", "lines", "noise", "distractors"), check_shape_options(**given)))
    except ValueError as e:
        raise DataError(_("shapes: {error}.").format(error=e)) from None
    return {k: checked[k] for k in given}


def _shape_classes(value: Any) -> list[int] | None:
    """The ``classes`` option of 'shapes': names or indices of a subset of the 8 shapes, in order."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= len(SHAPE_CLASSES):
        raise DataError(_("classes must list 2 to {n} of the shapes {shapes}; got {value!r}.").format(
            n=len(SHAPE_CLASSES), shapes=", ".join(SHAPE_CLASSES), value=value))
    out = []
    for v in value:
        index = SHAPE_CLASSES.index(v) if isinstance(v, str) and v in SHAPE_CLASSES else v
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(SHAPE_CLASSES) or index in out:
            raise DataError(_("classes: {value!r} is not one of the shapes {shapes} (each at most once).").format(
                value=v, shapes=", ".join(SHAPE_CLASSES)))
        out.append(index)
    return out


def _load_digits(root: Path | None, image_size: int | None, seed: int, download: bool, val_fraction: float, options: dict) -> DataBundle:
    from sklearn.datasets import load_digits  # here, not at the top: scikit-learn takes 1 s to import

    size = image_size or 28
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)  # N x 1 x 8 x 8
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    full = TensorSplit(images, labels)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    train, val = take(full, train_idx), take(full, val_idx)
    mean, std = channel_stats(train.images)
    info = DatasetInfo(
        "digits", "Digits (scikit-learn, 8x8)", [str(d) for d in range(10)], (1, size, size), mean, std, "embedded",
        _("scikit-learn's 1,797 handwritten 8x8 digits, upsampled to {size}x{size}; stratified {train}/{val} split.")
        .format(size=size, train=fmt(1 - val_fraction, ".0%"), val=fmt(val_fraction, ".0%")),
    )
    note = _("split 1797 digits into {train} train / {val} val (seed {seed})").format(
        train=len(train), val=len(val), seed=seed)
    return DataBundle(info, train, val, None, [note])


# --------------------------------------------------------------------------------------
# torchvision datasets
# --------------------------------------------------------------------------------------


def _make_torchvision_loader(key: str) -> Callable[..., DataBundle]:
    spec = tvsets.TORCHVISION_SETS[key]

    def load(root: Path | None, image_size: int | None, seed: int, download: bool, val_fraction: float, options: dict) -> DataBundle:
        base = _root_or_default(root)
        (x_train, y_train), (x_test, y_test), classes = tvsets.load_raw(spec, base, download)
        full = TensorSplit(x_train, y_train)
        test = TensorSplit(x_test, y_test)
        train_idx, val_idx = stratified_split(y_train, val_fraction, seed)
        train, val = take(full, train_idx), take(full, val_idx)
        notes = [_("loaded from {folder}").format(folder=base / spec.folder),
                 _("val = {share} of the official train set (stratified, seed {seed}); test = the official test set")
                 .format(share=fmt(val_fraction, ".0%"), seed=seed)]
        c, h, w = spec.input_shape
        if image_size is not None and image_size != h:
            train, val, test = (TensorSplit(resize_images(s.images, image_size), s.labels) for s in (train, val, test))
            h = w = image_size
            notes.append(_("resized from {h}x{w} to {size}x{size}").format(
                h=spec.input_shape[1], w=spec.input_shape[2], size=image_size))
        info = DatasetInfo(key, spec.display_name, classes, (c, h, w), spec.mean, spec.std, "torchvision",
                           _(spec.description))
        return DataBundle(info, train, val, test, notes)

    return load


# --------------------------------------------------------------------------------------
# Image folders (Caltech101 and any ImageFolder layout)
# --------------------------------------------------------------------------------------


def _decode_parts(
    kind: str,
    key_root: Path,
    parts: dict[str, tuple[list[Path], list[int]]],
    classes: list[str],
    size: int,
    seed: int,
    progress: bool,
) -> tuple[dict[str, TensorSplit], list[str]]:
    """Decode the files of each named split (cached), returning splits and notes."""
    all_files = [f for files, _ in parts.values() for f in files]
    key = folders.cache_key(kind, key_root, all_files, size, seed, extra="|".join(f"{k}:{len(v[0])}" for k, v in parts.items()))
    cached = folders.cache_load(key)
    if cached is not None and _cache_fits(cached, parts, len(classes), size):
        splits = {k: TensorSplit(cached[f"{k}_images"], cached[f"{k}_labels"]) for k in parts}
        notes = [str(n) for n in cached.get("notes", []) if isinstance(n, str)][:10]
        return splits, notes + [_("decoded images read from the cache ({key})").format(key=key)]
    images, kept, skipped = folders.decode_files(all_files, size, desc=f"{kind} {size}px", progress=progress)
    all_labels = torch.tensor([l for _files, labels in parts.values() for l in labels], dtype=torch.int64)
    kept_t = torch.tensor(kept, dtype=torch.int64)
    splits: dict[str, TensorSplit] = {}
    start = 0
    for name, (files, _labels) in parts.items():
        stop = start + len(files)
        sel = torch.nonzero((kept_t >= start) & (kept_t < stop), as_tuple=False).flatten()
        splits[name] = TensorSplit(images[sel].contiguous(), all_labels[kept_t[sel]])
        start = stop
    notes = [folders.skipped_note(skipped)] if skipped else []
    payload: dict[str, Any] = {"notes": notes, "classes": list(classes)}
    for name, split in splits.items():
        payload[f"{name}_images"], payload[f"{name}_labels"] = split.images, split.labels
    if len(kept) > 0:
        folders.cache_save(key, payload)
    return splits, notes + [_("decoded {n} images to {size}x{size} and cached them").format(n=len(kept), size=size)]


def _cache_fits(cached: dict, parts: dict, num_classes: int, size: int) -> bool:
    """Whether a cache file holds what this load would have written (the file is untrusted:
    anything else is ignored and the images are decoded again)."""
    for k, (files, _labels) in parts.items():
        images, labels = cached.get(f"{k}_images"), cached.get(f"{k}_labels")
        if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
            return False
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            return False
        if labels.dtype != torch.int64 or labels.dim() != 1 or len(labels) != len(images) or len(images) > len(files):
            return False
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            return False
    return True


def _check_decoded(train: TensorSplit, classes: list[str], folder: Path) -> None:
    if len(train) == 0:
        raise DataError(_("No readable images in '{folder}': every file failed to decode. Check the files, or use the "
                          "embedded 'shapes' dataset.").format(folder=folder))
    counts = torch.bincount(train.labels, minlength=len(classes))
    empty = [classes[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
    if empty:
        raise DataError(_("After skipping unreadable files, the class(es) {classes} in '{folder}' have no training "
                          "images; add readable images there.").format(classes=", ".join(empty[:5]), folder=folder))


def _load_caltech101(root: Path | None, image_size: int | None, seed: int, download: bool, val_fraction: float, options: dict) -> DataBundle:
    size = image_size or DEFAULT_STORAGE_SIZE
    progress = _progress(options)
    base = _root_or_default(root)
    folder = folders.locate_caltech(base, download, tvsets.torchvision_download)
    files = folders.scan_image_folder(folder)
    folders.require_nonempty_classes(files, "Caltech101")
    labels = torch.tensor(files.labels, dtype=torch.int64)
    per_class = options.pop("per_class", None)
    train_idx, val_idx, test_idx = balanced_split(labels, seed, per_class)
    parts = {
        name: ([files.files[i] for i in idx.tolist()], [files.labels[i] for i in idx.tolist()])
        for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))
    }
    splits, notes = _decode_parts("caltech101", folder, parts, files.classes, size, seed, progress)
    _check_decoded(splits["train"], files.classes, folder)
    m = len(train_idx) // len(files.classes)
    counts = np.bincount(np.asarray(files.labels), minlength=len(files.classes))
    notes.insert(0, _(
        "{classes} classes, {images} images (min {least}, max {most} per class); balanced split of {per_class} per "
        "class: {train}/{val}/{test} train/val/test (seed {seed})").format(
        classes=len(files.classes), images=len(files.files), least=counts.min(), most=counts.max(),
        per_class=counts.min() if per_class is None else per_class, train=m,
        val=len(val_idx) // len(files.classes), test=len(test_idx) // len(files.classes), seed=seed))
    info = DatasetInfo(
        "caltech101", "Caltech101", files.classes, (3, size, size), IMAGENET_MEAN, IMAGENET_STD, "torchvision",
        _("101 object categories plus BACKGROUND_Google (102 folders), balanced 50/25/25 split as in seed 000; "
          "ImageNet statistics."),
    )
    return DataBundle(info, splits["train"], splits["val"], splits["test"], notes)


def _load_folder(root: Path | None, image_size: int | None, seed: int, download: bool, val_fraction: float, options: dict) -> DataBundle:
    if root is None:
        raise DataError(_(
            "The 'folder' dataset needs root=<a folder with one sub-folder of images per class> "
            "(e.g. hymenoptera_data with train/ants, train/bees, val/ants, val/bees); "
            "or use the embedded 'shapes' or 'digits' dataset."
        ))
    size = image_size or DEFAULT_STORAGE_SIZE
    progress = _progress(options)
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(_("The image folder '{folder}' does not exist. Point root at a folder laid out as "
                          "<root>/<class>/<image>.jpg.").format(folder=base))
    notes: list[str] = []
    if (base / "train").is_dir() and (base / "val").is_dir():
        train_files = folders.scan_image_folder(base / "train")
        folders.require_nonempty_classes(train_files, _("Folder dataset"))
        val_files = folders.scan_image_folder(base / "val", train_files.classes)
        parts = {"train": (train_files.files, train_files.labels), "val": (val_files.files, val_files.labels)}
        if (base / "test").is_dir():
            test_files = folders.scan_image_folder(base / "test", train_files.classes)
            parts["test"] = (test_files.files, test_files.labels)
        classes = train_files.classes
        notes.append(_("used the train/ and val/ sub-folders of {folder}").format(folder=base))
    else:
        all_files = folders.scan_image_folder(base, maker.class_order(base))
        folders.require_nonempty_classes(all_files, _("Folder dataset"))
        train_idx, val_idx = stratified_split(all_files.labels, val_fraction, seed)
        parts = {
            name: ([all_files.files[i] for i in idx.tolist()], [all_files.labels[i] for i in idx.tolist()])
            for name, idx in (("train", train_idx), ("val", val_idx))
        }
        classes = all_files.classes
        notes.append(_("split {folder} into train/val with val_fraction={fraction} (stratified, seed {seed})").format(
            folder=base, fraction=val_fraction, seed=seed))
    splits, decode_notes = _decode_parts("folder", base, parts, classes, size, seed, progress)
    _check_decoded(splits["train"], classes, base)
    info = DatasetInfo(
        "folder", f"Image folder ({base.name})", classes, (3, size, size), IMAGENET_MEAN, IMAGENET_STD, "folder",
        _("Images from {folder}, one sub-folder per class; ImageNet statistics (as in seeds 000 and 001).").format(
            folder=base),
    )
    return DataBundle(info, splits["train"], splits["val"], splits.get("test"), notes + decode_notes)


def _made_loader(key: str) -> Callable[..., DataBundle]:
    """The loader of a dataset made from your own images (``data/<key>/<class>/*.png``), decoded at
    the dataset's own size (64x64 unless its manifest says otherwise).

    Its validation hold-out is :func:`cnnlab.data.maker.holdout`: decided file by file from a hash
    of (seed, class, file name), so adding images never moves an image a run trained on into the
    validation set that rebuilds it (the 'folder' dataset keeps its seeded shuffle)."""

    def load(root: Path | None, image_size: int | None, seed: int, download: bool, val_fraction: float, options: dict) -> DataBundle:
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(_("val_fraction must be in [0, 1), got {value}.").format(value=val_fraction))
        made = maker.read_made(key, root)
        if len(made.classes) < maker.MIN_CLASSES:
            raise DataError(_("Your dataset {name!r} has {n} class(es); it needs at least {least}. Add classes on the "
                              "'Your images' page.").format(name=key, n=len(made.classes), least=maker.MIN_CLASSES))
        if not made.ready:
            raise DataError(_("Your dataset {name!r} needs at least {least} images in every class (one to train on, "
                              "one to validate on); too few in: {classes}. Add images on the 'Your images' "
                              "page.").format(
                name=key, least=maker.MIN_IMAGES_TO_TRAIN, classes=", ".join(made.missing())))
        size = image_size or made.image_size
        progress = _progress(options)
        split = maker.holdout(made, val_fraction, seed)
        parts: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "val": ([], [])}
        for label, c in enumerate(made.classes):
            for part, names in zip(("train", "val"), split[c]):
                parts[part][0].extend(made.root / c / n for n in names)
                parts[part][1].extend([label] * len(names))
        splits, notes = _decode_parts("yours", made.root, parts, made.classes, size, seed, progress)
        _check_decoded(splits["train"], made.classes, made.root)
        n_train, n_val = len(parts["train"][0]), len(parts["val"][0])
        notes.insert(0, _("{images} images in {classes} classes: {train} train / {val} val, each image held out or "
                          "not from a hash of its name (about {share} of every class, seed {seed}; images added later "
                          "never move an earlier one into validation)").format(
            images=made.total, classes=len(made.classes), train=n_train, val=n_val, share=fmt(val_fraction, ".0%"),
            seed=seed))
        info = DatasetInfo(key, made.title, list(made.classes), (3, size, size), IMAGENET_MEAN, IMAGENET_STD, "yours",
                           _("Your images in {folder}, one folder per class; ImageNet statistics.").format(
                               folder=made.root))
        return DataBundle(info, splits["train"], splits["val"], None, notes + list(made.notes))

    return load


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    subset: int | None = None,
    val_fraction: float = 0.2,
    **options: Any,
) -> DataBundle:
    """Load a dataset by registry name as whole uint8 tensor splits.

    Args:
        name: a key of :func:`list_datasets` ("shapes", "digits", "mnist", "fashion_mnist",
            "cifar10", "cifar100", "caltech101", "folder", or the name of a dataset made from
            your own images, :mod:`cnnlab.data.maker`).
        root: where raw files live (default ``cnnlab.paths.data_dir()``); for "folder", the
            image folder itself; for a dataset made from your images, the folder that holds it.
        image_size: stored square size (default: the dataset's own; 256 for folders).
        seed: drives generation, splits and subsets (same seed, same data).
        download: fetch missing torchvision/Caltech files (only if the network allows).
        subset: keep a class-balanced subset of this many training images (seed 003's 160).
        val_fraction: share of the training data held out for validation (stratified).
        **options: per dataset: ``n_train``, ``n_val``, ``n_test``, ``classes``, ``scale``, ``lines``,
            ``noise``, ``distractors`` (shapes, see :func:`~cnnlab.data.shapes.generate_shapes`); ``per_class``
            (caltech101); ``progress`` (folders, default True); ``channels`` (1 or 3, any dataset).

    Raises:
        DataError: unknown name, files missing and not downloadable, unreadable data, bad options.
    """
    spec = get_spec(name, root)
    if image_size is not None and int(image_size) < 8:
        raise DataError(_("image_size must be at least 8 pixels, got {size}.").format(size=image_size))
    options = dict(options)
    channels = options.pop("channels", None)
    if channels not in (None, 1, 3):
        raise DataError(_("channels must be 1 or 3, got {n}.").format(n=channels))
    loader = _LOADERS.get(spec.name) or _made_loader(spec.name)
    bundle = loader(Path(root).expanduser() if root is not None else None, image_size, int(seed), download, float(val_fraction), options)
    options.pop("progress", None)  # meaningful only for decoded folders
    if options:
        raise DataError(_("Unknown option(s) for the {name!r} dataset: {options}.").format(
            name=spec.name, options=", ".join(sorted(options))))
    if subset is not None:
        bundle.train = stratified_subset(bundle.train, int(subset), seed)
        bundle.notes.append(_("training on a class-balanced subset of {n} images (seed {seed})").format(
            n=len(bundle.train), seed=seed))
    if channels is not None and channels != bundle.info.input_shape[0]:
        bundle.train, bundle.val, bundle.test = (_convert_channels(s, channels) for s in (bundle.train, bundle.val, bundle.test))  # type: ignore[assignment]
        info = bundle.info
        # repeated grey keeps its statistics exactly; the luma's are measured (never an average)
        mean, std = (info.mean * 3, info.std * 3) if channels == 3 else channel_stats(bundle.train.images)
        bundle.info = DatasetInfo(info.name, info.display_name, info.classes, (channels, *info.input_shape[1:]), mean, std, info.source, info.description)  # type: ignore[arg-type]
        bundle.notes.append(_("converted to 3 channels") if channels == 3 else _("converted to 1 channel"))
    return bundle


def dataset_status(name: str, root: str | Path | None = None) -> DatasetStatus:
    """Whether ``name`` can be loaded now without a download ("present"), with one ("downloadable"), or not ("missing")."""
    spec = get_spec(name, root)
    if spec.source == "embedded":
        return DatasetStatus(spec.name, "present", _("Built in: no files or download needed."))
    if spec.source == "yours":
        return _made_status(spec.name, root)
    if spec.name == "folder":
        if root is None:
            return DatasetStatus(spec.name, "missing", _("Choose a folder laid out as <root>/<class>/<image>.jpg "
                                                         "(optionally with train/ and val/)."))
        base = Path(root).expanduser()
        layout = base / "train" if (base / "train").is_dir() else base
        if base.is_dir() and folders.class_folders(layout):
            return DatasetStatus(spec.name, "present", _("Found class folders in {folder}.").format(folder=layout),
                                 str(base))
        return DatasetStatus(spec.name, "missing", _("'{folder}' has no class sub-folders; lay images out as "
                                                     "{folder}/<class>/<image>.jpg.").format(folder=base), str(base))
    base = _root_or_default(root)
    if spec.name == "caltech101":
        found = folders.find_caltech_folder(base) or folders.find_caltech_archive(base)
        if found is not None:
            return DatasetStatus(spec.name, "present", _("Found {path}.").format(path=found), str(base))
        return DatasetStatus(spec.name, *_download_state(
            _("Not in {folder}. Loading it downloads it, or put '{name}' (or its .tar.gz) in {folder}."),
            _("Not in {folder}. No network to download it: put '{name}' (or its .tar.gz) in {folder} (from a machine "
              "with internet), or use the embedded 'shapes' or 'digits' dataset."),
            folder=base, name=folders.CALTECH_FOLDER), str(base))
    tv = tvsets.TORCHVISION_SETS[spec.name]
    if tv.is_present(base):
        return DatasetStatus(spec.name, "present", _("Found in {folder}.").format(folder=base / tv.folder), str(base))
    return DatasetStatus(spec.name, *_download_state(
        _("Not in {folder}. Loading it downloads it, or copy {files}, ... into {folder}."),
        _("Not in {folder}. No network to download it: copy {files}, ... into {folder} (from a machine with "
          "internet), or use the embedded 'shapes' or 'digits' dataset."),
        folder=base / tv.folder, files=", ".join(tv.files[:2])), str(base))


def _made_status(name: str, root: str | Path | None) -> DatasetStatus:
    """Whether a dataset made from your images has enough of them to train on."""
    made = maker.read_made(name, root)
    if made.ready:
        return DatasetStatus(name, "present", made.description(), str(made.root))
    names = dict(folder=made.root, least=maker.MIN_IMAGES_TO_TRAIN, classes=maker.MIN_CLASSES)
    if made.missing():
        message = _("Your images in {folder}: too few images to train in {missing} (at least {least} per class and "
                    "{classes} classes); add some on the 'Your images' page.").format(
            missing=", ".join(made.missing()), **names)
    else:
        message = _("Your images in {folder}: too few images to train in any class (at least {least} per class and "
                    "{classes} classes); add some on the 'Your images' page.").format(**names)
    return DatasetStatus(name, "missing", message, str(made.root))


def has_test_split(name: str, root: str | Path | None = None, options: dict[str, Any] | None = None) -> bool:
    """Whether ``name`` comes with an official test split, from its registry entry and options alone
    (nothing is loaded): the torchvision sets (Caltech101: its balanced 25% test part), an image
    folder with a ``test/`` sub-folder, and 'shapes' with ``n_test`` images."""
    try:
        spec = get_spec(name, root)
    except DataError:
        return False
    if spec.source == "torchvision":
        return True
    if spec.name == "folder":
        return bool(root) and (Path(root).expanduser() / "test").is_dir()
    if spec.name == "shapes":
        return int((options or {}).get("n_test", 0) or 0) > 0
    return False


def class_count(name: str, root: str | Path | None = None, options: dict[str, Any] | None = None) -> int | None:
    """How many classes ``name`` has with these options, from its registry entry (nothing is loaded);
    None when only loading tells (an image folder, an unknown name, a bad ``classes`` option)."""
    try:
        spec = get_spec(name, root)
        if spec.name == "shapes" and (options or {}).get("classes") is not None:
            return len(_shape_classes(options["classes"]))
    except DataError:
        return None
    return spec.num_classes


def _download_state(downloadable: str, missing: str, **values: object) -> tuple[str, str]:
    """("downloadable", ...) when the download servers answer, else ("missing", what to do): the message
    given for that state (translated), filled with ``values``."""
    if net.can_reach("download.pytorch.org") or net.can_reach("ossci-datasets.s3.amazonaws.com"):
        return "downloadable", downloadable.format(**values)
    return "missing", missing.format(**values)


_register(DatasetSpec("shapes", "Shapes (procedural)", "embedded", N_("Coloured shapes over clutter, generated offline from a seed; 8 classes."), (3, 32, 32), len(SHAPE_CLASSES)), _load_shapes)
_register(DatasetSpec("digits", "Digits (scikit-learn)", "embedded", N_("scikit-learn's 1,797 handwritten 8x8 digits served as 28x28 grayscale."), (1, 28, 28), 10), _load_digits)
for _key, _tv in tvsets.TORCHVISION_SETS.items():
    _register(DatasetSpec(_key, _tv.display_name, "torchvision", _tv.description, _tv.input_shape, 100 if _key == "cifar100" else 10, _tv.seed), _make_torchvision_loader(_key))
_register(DatasetSpec("caltech101", "Caltech101", "torchvision", N_("101 object categories + background (102 folders, 9,145 photos); balanced 50/25/25 split."), (3, DEFAULT_STORAGE_SIZE, DEFAULT_STORAGE_SIZE), 102, "000"), _load_caltech101)
_register(DatasetSpec("folder", "Image folder", "folder", N_("Any ImageFolder layout (<root>/<class>/*.jpg, optionally train/ and val/), e.g. hymenoptera ants/bees."), (3, DEFAULT_STORAGE_SIZE, DEFAULT_STORAGE_SIZE), None, "001"), _load_folder)
