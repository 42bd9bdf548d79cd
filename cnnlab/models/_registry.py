"""The model registry: one place that knows every architecture of the zoo.

Every model is built through :func:`create` and described by a :class:`ModelSpec`
(display name, family, year, paper, the seed it comes from, default input and classes).
Models return raw logits; the loss lives in the trainer.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field, replace
from typing import Callable

from torch import nn

from ..errors import ModelConfigError, UnknownModelError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    display_name: str
    family: str
    year: int
    paper: str
    seed: str  # which seed document it comes from ("000".."004") or "" for additions
    input_shape: tuple[int, int, int]  # default (C, H, W)
    num_classes: int  # default number of classes
    notes: str = ""
    # True when the seed hard-codes a flatten size: the model only runs at input_shape's H, W
    # (or, for models sized at creation, at the size given to create()).
    fixed_input: bool = False
    # True when the builder accepts input_size and sizes its flatten layer from it
    # (the seed's own "dry run, then set the FC size" procedure, done automatically).
    sized_at_creation: bool = False
    adaptive: bool = False  # the -adaptive variant of a fixed-input model
    builder: Callable[..., nn.Module] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    tags: tuple[str, ...] = ()


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, adaptive_variant: bool | None = None) -> ModelSpec:
    """Add a spec; fixed-input models also get a ``<name>_adaptive`` twin unless told otherwise."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    if adaptive_variant is None:
        adaptive_variant = spec.fixed_input and not spec.sized_at_creation
    if adaptive_variant:
        twin = replace(
            spec,
            name=f"{spec.name}_adaptive",
            display_name=f"{spec.display_name} (adaptive)",
            fixed_input=False,
            adaptive=True,
            notes=(
                f"Same layers and parameters as {spec.name}, with an adaptive average pooling "
                f"before the flatten so that inputs of other sizes work. Not in the seed. "
                + spec.notes
            ).strip(),
        )
        _REGISTRY[twin.name] = twin
    return spec


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Names of registered models matching a shell-style pattern (timm's ``list_models``)."""
    _ensure_loaded()
    names = [n for n, s in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)]
    if family is not None:
        names = [n for n in names if _REGISTRY[n].family == family]
    return sorted(names, key=_sort_key)


def _sort_key(name: str) -> tuple:
    s = _REGISTRY[name]
    return (s.year, s.family, name)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=4, cutoff=0.5)
    if not close:
        close = [n for n in _REGISTRY if key and (key in n or n in key)][:4]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model {name!r}.{hint} Run `python -m cnnlab models` to list all "
        f"{len(_REGISTRY)} models."
    )


def _normalize_size(input_size, spec: ModelSpec) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    size = tuple(int(v) for v in input_size)
    if len(size) == 3:  # (C, H, W)
        size = size[1:]
    if len(size) != 2:
        raise ModelConfigError(f"input size must be H, (H, W) or (C, H, W); got {input_size!r}")
    return size  # type: ignore[return-value]


def create(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | tuple[int, ...] | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see :func:`list_models`).
        num_classes: outputs of the last layer (default: the spec's).
        in_channels: channels of the input image (default: the spec's).
        input_size: (H, W) the model will see. Models sized at creation use it to size
            their first fully connected layer; fixed-input models check it and raise
            :class:`~cnnlab.errors.InputSizeError` when it is not the size they need.
    """
    spec = get_spec(name)
    num_classes = spec.num_classes if num_classes is None else num_classes
    in_channels = spec.input_shape[0] if in_channels is None else in_channels
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelConfigError(f"{label} must be a whole number, got {value!r}")
    if num_classes < 1:
        raise ModelConfigError(
            f"num_classes must be at least 1, got {num_classes}: a classifier needs classes."
        )
    if num_classes > 100_000:
        raise ModelConfigError(f"num_classes={num_classes} is implausibly large (limit 100,000).")
    if in_channels < 1 or in_channels > 64:
        raise ModelConfigError(
            f"in_channels must be between 1 and 64, got {in_channels} "
            "(1 for grayscale images, 3 for RGB)."
        )
    size = _normalize_size(input_size, spec)
    if size is not None and min(size) < 1:
        raise ModelConfigError(f"input size must be positive, got {size}")
    build_kwargs = dict(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if spec.sized_at_creation:
        build_kwargs["input_size"] = size or spec.input_shape[1:]
    elif spec.fixed_input and size is not None and size != tuple(spec.input_shape[1:]):
        from ..inspect import fixed_input_error

        raise fixed_input_error(spec, size)
    if spec.adaptive:
        build_kwargs["adaptive"] = True
    if spec.sized_at_creation:
        _check_creation_size(spec, build_kwargs, in_channels)
    model = spec.builder(**build_kwargs)
    from ..inspect import _annotate_flatten

    required = (in_channels, *(size or spec.input_shape[1:]))
    _annotate_flatten(model, spec.name, required)
    model.cnnlab_spec = spec  # type: ignore[attr-defined]
    return model


def _check_creation_size(spec: ModelSpec, build_kwargs: dict, in_channels: int) -> None:
    """A model sized at creation must still fit the size: probe it on the meta device."""
    import torch

    from ..inspect import InputTooSmallError, _annotate_flatten, check_input, smallest_input

    with torch.device("meta"):
        probe = spec.builder(**build_kwargs)
    shape = (in_channels, *build_kwargs["input_size"])
    _annotate_flatten(probe, spec.name, shape)
    try:
        check_input(probe, shape, spec.name)
    except InputTooSmallError as e:
        side = smallest_input(probe, in_channels)
        extra = f" The smallest square input that works is {in_channels}x{side}x{side}." if side else ""
        raise InputTooSmallError(f"{e}{extra}") from None


def all_specs() -> list[ModelSpec]:
    return [get_spec(n) for n in list_models()]


_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import zoo  # noqa: F401  (registers every family)
