"""The architecture zoo: ``create(name, num_classes=..., in_channels=...)``, ``list_models()``,
``get_spec(name)``. See ``python -m cnnlab models``.

Importing this package registers every model: one module per family, each calling
:func:`register` when imported, the pretrained torchvision models (family ``"pretrained"``) and
the transfer-learning models built on them included. :func:`evaluating` and :func:`count_params`
are what the rest of cnnlab does with any model: run it in eval mode for a moment, count its weights.
"""

from ._registry import PRETRAINED_FAMILY, ModelSpec, create, get_spec, list_models, register
from .tools import count_params, evaluating

# Each family module registers its models when imported (the order does not matter).
from . import alexnet, cifar, densenet, googlenet, lenet, mlp, nin, pretrained, resnet, vgg  # noqa: E402,F401,I001

__all__ = [
    "PRETRAINED_FAMILY", "ModelSpec", "count_params", "create", "evaluating", "get_spec", "list_models", "register",
]
