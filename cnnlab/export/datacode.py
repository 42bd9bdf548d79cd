"""The data and the input pipeline of a training, written out without cnnlab.

A notebook gets the same images, in the same order, as cnnlab's training: scikit-learn's digits
upsampled as cnnlab serves them, the procedural shapes drawn by cnnlab's own generator (copied out),
torchvision's sets through torchvision; then the same stratified split, subset and channel conversion
(cnnlab's functions, copied), and the same batch pipeline (the augmentation preset's functions,
copied; the channel adaptation and normalisation written out). Image folders are not written out:
:func:`check_dataset` refuses them with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..config import TrainConfig
from ..data import augment, shapes, splits, stats, tvsets
from ..data.registry import class_count, get_spec as dataset_spec, resize_images
from ..data.pipeline import default_input_size, get_preset
from ..errors import CnnlabError
from ..i18n import _
from ..models import get_spec as model_spec
from .closure import Closure, ExportError

WRITTEN_OUT = ("digits", "shapes", *tvsets.TORCHVISION_SETS)  # the datasets a notebook can load without cnnlab

DIGITS = '''
def load_digits_splits(seed, val_fraction, image_size=28):
    """scikit-learn's 1,797 handwritten 8x8 digits as uint8 images upsampled to image_size (bilinear, as
    cnnlab serves them), split in a stratified way: val_fraction of every digit held out."""
    digits = load_digits()  # 8x8 images with 17 grey levels (0 to 16)
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    splits = {"train": (images[train_idx], labels[train_idx]), "val": (images[val_idx], labels[val_idx])}
    return splits, [str(d) for d in range(10)]
'''

SHAPES = '''
def load_shapes_splits(seed, val_fraction, image_size=32, n_train=6000, n_val=1500, n_test=0, classes=None,
                       **drawing):
    """cnnlab's procedural shapes: every split drawn from its own seed (so val_fraction is not used), only
    the chosen classes if given (relabelled 0, 1, ... in the order given)."""
    chosen = None if classes is None else [SHAPE_CLASSES.index(c) if isinstance(c, str) else c for c in classes]

    def split(n, offset):
        if chosen is None:
            return generate_shapes(n, size=image_size, seed=seed + offset, **drawing)
        # labels cycle through the 8 classes: ceil(n / k) * 8 images hold ceil(n / k) of each chosen class
        images, labels = generate_shapes(-(-n // len(chosen)) * len(SHAPE_CLASSES), size=image_size,
                                         seed=seed + offset, **drawing)
        keep = torch.isin(labels, torch.tensor(chosen))
        remap = torch.full((len(SHAPE_CLASSES),), -1, dtype=torch.int64)
        remap[chosen] = torch.arange(len(chosen))
        return images[keep][:n].clone(), remap[labels[keep]][:n].clone()

    splits = {"train": split(n_train, 0), "val": split(n_val, 1_000_003)}
    if n_test > 0:
        splits["test"] = split(n_test, 2_000_003)
    return splits, list(SHAPE_CLASSES) if chosen is None else [SHAPE_CLASSES[c] for c in chosen]
'''

TORCHVISION = '''
def load_torchvision_splits(name, seed, val_fraction, image_size=None, root=DATA_ROOT):
    """A torchvision dataset as uint8 tensors (downloaded into root on the first run): a stratified
    hold-out of its training set for validation, and its official test set."""
    kind = getattr(torchvision.datasets, TORCHVISION_CLASSES[name])

    def tensors(train):
        ds = kind(root, train=train, download=True)
        x = torch.as_tensor(np.asarray(ds.data))
        x = (x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)).contiguous()  # N x C x H x W
        if image_size is not None and image_size != x.shape[-1]:
            x = resize_images(x, image_size)
        return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64), list(ds.classes)

    x, y, classes = tensors(True)
    test_x, test_y, _ = tensors(False)
    train_idx, val_idx = stratified_split(y, val_fraction, seed)
    return {"train": (x[train_idx], y[train_idx]), "val": (x[val_idx], y[val_idx]), "test": (test_x, test_y)}, classes
'''

COMMON = '''
def class_balanced_subset(images, labels, n, seed):
    """n // classes random images of every class (lecture 003's 160-image subset), kept in their order."""
    per_class = n // len(torch.unique(labels))
    picked = [perm[:per_class] for perm in _per_class_permutations(labels, seed)]
    keep = torch.sort(torch.cat(picked)).values
    return images[keep], labels[keep]


def convert_channels(images, channels):
    """uint8 images with another channel count: grey repeated to 3 channels, or colour to grey (luma)."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images.float() * weights).sum(dim=1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)


def load_data(dataset, seed, val_fraction=0.2, subset=None, val_split="holdout", options=None):
    """Training and validation images (uint8 N x C x H x W) and labels, loaded, split, subset and converted
    as cnnlab does for a training with these settings; and the dataset's statistics (mean, std)."""
    options = dict(options or {})
    channels = options.pop("channels", None)  # 1 or 3: every image converted
    options.pop("progress", None)
    splits, classes = LOADERS[dataset](seed=seed, val_fraction=val_fraction, **options)
    # a torchvision set's published statistics, else those measured on the training split
    stats = DATASET_STATS.get(dataset) or channel_stats(splits["train"][0])
    holdout = val_split != "test"
    if holdout and subset is not None:  # a class-balanced subset of the training images
        splits["train"] = class_balanced_subset(*splits["train"], subset, seed)
    if channels is not None and channels != splits["train"][0].shape[1]:
        splits = {k: (convert_channels(x, channels), y) for k, (x, y) in splits.items()}
        # a grey channel repeated keeps its statistics; the luma's are measured (never an average)
        stats = (stats[0] * 3, stats[1] * 3) if channels == 3 else channel_stats(splits["train"][0])
    (train_x, train_y), (val_x, val_y) = splits["train"], splits["val"]
    if not holdout:  # the lectures' way: train on every training image, validate on the official test set
        train_x, train_y = torch.cat([train_x, val_x]), torch.cat([train_y, val_y])
        val_x, val_y = splits["test"]
        if subset is not None and subset < len(train_y):
            train_x, train_y = class_balanced_subset(train_x, train_y, subset, seed)
    return train_x, train_y, val_x, val_y, classes, stats
'''

PIPELINE = '''
def make_pipeline(size, augment, mean, std, channels, eval_cut="resize", eval_resize=1.0):
    """cnnlab's input pipeline for one model: uint8 images -> float batches on the device. A training batch
    gets the augmentation preset (new random draws for every image), a validation batch only the evaluation
    cut; then the channels are adapted to the model and each one normalised with the training images'
    mean and std."""
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    luma = torch.tensor(LUMA_WEIGHTS, device=device).view(1, 3, 1, 1)

    def to_model(x):
        if x.shape[1] == 1 and channels != 1:
            x = x.expand(-1, channels, -1, -1)  # grey images repeated for a colour model
        elif x.shape[1] == 3 and channels == 1:
            x = (x * luma).sum(dim=1, keepdim=True)  # colour images to grey (luma) for a grey model
        return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)  # the model's layout

    def train_batch(images, generator):
        x = images.to(device).float().div_(255)  # pixels in [0, 1]
        return to_model(AUGMENTATIONS[augment](x, size, generator))

    def eval_batch(images):
        x = images.to(device).float().div_(255)
        if eval_resize != 1.0:  # as ImageNet weights expect: resize to 256/224 of the size, then the centre
            cover = (round(size[0] * eval_resize), round(size[1] * eval_resize))
            x = center_crop(resize_center_crop(x, cover), size)
        elif eval_cut == "center":  # the centre window at full scale, like the random training crops
            x = center_crop(x, size)
        else:  # the shorter side resized to the size, then the centre (nothing to do when the sizes match)
            x = resize_center_crop(x, size)
        return to_model(x)

    return train_batch, eval_batch
'''

STATS = '''
def normalisation_stats(images, channels):
    """Per-channel mean and std of the training images as the model sees them (its channel count)."""
    def adapt(x):
        if x.shape[1] == 1 and channels != 1:
            return x.expand(-1, channels, -1, -1)
        if x.shape[1] == 3 and channels == 1:
            return (x * torch.tensor(LUMA_WEIGHTS, dtype=x.dtype).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        return x
    return channel_stats(images, max_values=2**26, transform=adapt)


def model_stats(train_x, data_stats, channels):
    """The normalisation in the model's channels: the dataset's statistics when the images reach the model
    with their own channels (or one grey channel repeated: the same statistics), else measured on the
    training images as the model sees them (the statistics of a luma image are not an average)."""
    mean, std = data_stats
    if train_x.shape[1] in (channels, 1) and len(mean) in (channels, 1):
        return tuple(mean) * (channels // len(mean)), tuple(std) * (channels // len(std))
    return normalisation_stats(train_x, channels)
'''


@dataclass(frozen=True)
class Shapes:
    """What a training's data and model look like, without loading anything."""

    data: tuple[int, int, int]  # the stored images: channels, height, width
    model: tuple[int, int, int]  # what the model takes
    num_classes: int


def check_dataset(config: TrainConfig) -> None:
    """Refuse a dataset the notebook cannot load without cnnlab (image folders, your own images)."""
    if config.dataset not in WRITTEN_OUT:
        raise ExportError(_("the dataset {dataset!r} is a folder of image files, which the notebook does not write "
                            "out; notebooks and scripts are written for {datasets}. A run's trained model still "
                            "exports (--onnx, --torchscript); a lesson's quick budget uses embedded data.").format(
            dataset=config.dataset, datasets=", ".join(WRITTEN_OUT)))


def planned_shapes(config: TrainConfig) -> Shapes:
    """The data's and the model's shapes for ``config``, as the trainer will find them (no data is loaded)."""
    check_dataset(config)
    options = dict(config.data_options)
    c, h, w = dataset_spec(config.dataset).input_shape
    if options.get("image_size"):
        h = w = int(options["image_size"])
    c = options.get("channels") or c
    classes = config.num_classes or class_count(config.dataset, config.data_root, options)
    if not classes:
        raise ExportError(_("the number of classes of {dataset} with the options {options} is unknown.").format(
            dataset=config.dataset, options=options))
    model = model_spec(config.model)
    channels = config.in_channels or (model.input_shape[0] if model.family in ("transfer", "pretrained") else c)
    if config.input_size is not None:
        size = (config.input_size,) * 2 if isinstance(config.input_size, int) else tuple(config.input_size)
    else:
        size = default_input_size(model, (h, w))
    return Shapes((int(c), int(h), int(w)), (int(channels), int(size[0]), int(size[1])), int(classes))


def add_data_code(closure: Closure, configs: list[TrainConfig]) -> None:
    """The definitions that load every dataset of ``configs`` (``load_data`` and what it needs)."""
    names = sorted({c.dataset for c in configs}, key=WRITTEN_OUT.index)
    closure.define("DATA_ROOT")  # set by the notebook's first cell
    for name in names:
        if name == "digits":
            closure.import_line("from sklearn.datasets import load_digits")
            closure.add(splits.stratified_split)
            closure.add_source(DIGITS)
        elif name == "shapes":
            closure.add(shapes.generate_shapes)
            closure.add_source(SHAPES)
    if any(n in tvsets.TORCHVISION_SETS for n in names):
        closure.add(splits.stratified_split)
        closure.add(resize_images)
        classes = {n: tvsets.TORCHVISION_SETS[n].tv_class for n in names if n in tvsets.TORCHVISION_SETS}
        closure.add_source(f"TORCHVISION_CLASSES = {classes!r}  # cnnlab's name -> torchvision's dataset class")
        closure.add_source(TORCHVISION)
    closure.add(splits._per_class_permutations)
    closure.add(stats.channel_stats)
    closure.add_constant(augment, "LUMA_WEIGHTS")
    published = {n: (tvsets.TORCHVISION_SETS[n].mean, tvsets.TORCHVISION_SETS[n].std)
                 for n in names if n in tvsets.TORCHVISION_SETS}
    closure.add_source(f"DATASET_STATS = {published!r}  # the statistics cnnlab uses for torchvision's sets")
    loaders = ", ".join(f'"{n}": load_{n}_splits' if n in ("digits", "shapes")
                        else f'"{n}": lambda **kw: load_torchvision_splits("{n}", **kw)' for n in names)
    closure.add_source(f"LOADERS = {{{loaders}}}  # dataset name -> its loader")
    closure.add_source(COMMON)


def add_pipeline_code(closure: Closure, configs: list[TrainConfig]) -> None:
    """``make_pipeline`` with the augmentation presets of ``configs``, and ``model_stats``: the normalisation."""
    presets = sorted({c.augment for c in configs}, key=[p.name for p in augment.PRESETS].index)
    closure.define("device")  # set by the notebook's first cell
    entries = []
    for name in presets:
        entries.append(f'"{name}": {closure.add(get_preset(name).apply)}')
    closure.add(augment.center_crop)
    closure.add(augment.resize_center_crop)
    closure.add_constant(augment, "LUMA_WEIGHTS")
    closure.add_source("AUGMENTATIONS = {" + ", ".join(entries) + "}  # cnnlab's augmentation presets (batch functions)")
    closure.add_source(PIPELINE)
    closure.add(stats.channel_stats)
    closure.add_source(STATS)


def load_call(config: TrainConfig) -> str:
    """The notebook's call that loads ``config``'s data."""
    options = {k: v for k, v in config.data_options.items() if k != "progress"}
    return (f"train_x, train_y, val_x, val_y, classes, data_stats = load_data({config.dataset!r}, seed={config.seed}, "
            f"val_fraction={config.val_fraction!r}, subset={config.subset!r}, val_split={config.val_split!r}, "
            f"options={options!r})")


def stats_line(shapes_: Shapes) -> str:
    """The normalisation, found by cnnlab's rule (the dataset's statistics, or measured in the model's channels)."""
    return (f"mean, std = model_stats(train_x, data_stats, {shapes_.model[0]})  # each channel's mean and std, "
            "as the model sees the images")


def pipeline_call(config: TrainConfig, shapes_: Shapes, eval_resize: float) -> str:
    preset = get_preset(config.augment)
    extra = "" if preset.eval_cut == "resize" else f", eval_cut={preset.eval_cut!r}"
    extra += "" if eval_resize == 1.0 else f", eval_resize={eval_resize!r}"
    return (f"train_batch, eval_batch = make_pipeline(size={shapes_.model[1:]!r}, augment={config.augment!r}, "
            f"mean=mean, std=std, channels={shapes_.model[0]}{extra})  # augmentation: {preset.description}")


def data_from_meta(meta: Mapping[str, Any]) -> Shapes:
    """A run's recorded shapes (``meta.json``)."""
    try:
        return Shapes(tuple(meta["data_shape"]), tuple(meta["input_shape"]), int(meta["model_kwargs"]["num_classes"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(_("meta.json does not say the run's data and model shapes ({error}).").format(
            error=e)) from None


def uses_digits(configs: list[TrainConfig]) -> bool:
    return any(c.dataset == "digits" for c in configs)


def describe(config: TrainConfig) -> str:
    """A sentence on the dataset for the notebook's text."""
    try:
        return dataset_spec(config.dataset).description
    except CnnlabError:
        return config.dataset
