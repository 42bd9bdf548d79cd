"""The architecture zoo: ``create(name, num_classes=..., in_channels=...)``, ``list_models()``,
``get_spec(name)``. See ``python -m cnnlab models``.

Importing this package registers every model: one module per family, each calling
:func:`register` when imported, the pretrained torchvision models (family ``"pretrained"``) and
the transfer-learning models built on them included.
"""

from ._registry import PRETRAINED_FAMILY, ModelSpec, all_specs, create, get_spec, list_models, register

# Each family module registers its models when imported (the order does not matter).
from . import alexnet, cifar, densenet, googlenet, lenet, mlp, nin, pretrained, resnet, vgg  # noqa: E402,F401,I001

__all__ = ["PRETRAINED_FAMILY", "ModelSpec", "all_specs", "create", "get_spec", "list_models", "register"]
