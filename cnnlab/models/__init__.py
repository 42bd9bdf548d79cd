"""The architecture zoo: ``create(name, num_classes=..., in_channels=...)``, ``list_models()``,
``get_spec(name)``. See ``python -m cnnlab models``."""

from ._registry import ModelSpec, all_specs, create, get_spec, list_models, register

__all__ = ["ModelSpec", "all_specs", "create", "get_spec", "list_models", "register"]
