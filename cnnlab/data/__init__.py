"""cnnlab's data layer: datasets as in-memory uint8 tensors, the input pipeline, safe decoding.

>>> from cnnlab.data import load_dataset
>>> bundle = load_dataset("shapes", seed=0)            # embedded, offline
>>> bundle.train.images.shape, bundle.info.classes[:3]
(torch.Size([6000, 3, 32, 32]), ['circle', 'square', 'triangle'])

Registry keys: "shapes", "digits" (embedded); "mnist", "fashion_mnist", "cifar10", "cifar100",
"caltech101" (torchvision layouts, downloaded when possible); "folder" (any ImageFolder); and,
by their own names, the datasets made from your own images (:mod:`cnnlab.data.maker`, the app's
"Your images" page): ``data/<name>/<class>/0001.png`` with a ``cnnlab-dataset.json``.
"""

from ._types import DataBundle, DatasetInfo, DatasetSpec, DatasetStatus, TensorSplit
from .images import bundled_photos, decode_image, load_bundled_photo, to_model_input
from .pipeline import AUGMENTATIONS, IMAGENET_MEAN, IMAGENET_STD, LUMA_WEIGHTS, PRESETS, InputPipeline, measure_stats, model_space_stats
from .registry import class_count, dataset_status, has_test_split, list_datasets, load_dataset
from .shapes import SHAPE_CLASSES, generate_shapes
from .splits import balanced_split, stratified_split, stratified_subset

__all__ = [
    "AUGMENTATIONS",
    "InputPipeline",
    "LUMA_WEIGHTS",
    "PRESETS",
    "measure_stats",
    "model_space_stats",
    "DataBundle",
    "DatasetInfo",
    "DatasetSpec",
    "DatasetStatus",
    "TensorSplit",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_CLASSES",
    "balanced_split",
    "bundled_photos",
    "class_count",
    "dataset_status",
    "decode_image",
    "generate_shapes",
    "has_test_split",
    "list_datasets",
    "load_bundled_photo",
    "load_dataset",
    "stratified_split",
    "stratified_subset",
    "to_model_input",
]
