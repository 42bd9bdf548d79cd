"""The model registry: one place that knows every architecture of the zoo.

Every model is built through :func:`create` and described by a :class:`ModelSpec`
(display name, family, year, paper, the seed it comes from, default input and classes).
The torchvision models with ImageNet weights are specs too (family ``"pretrained"``, their
``weights`` a torchvision weights enum); see :mod:`cnnlab.models.pretrained`.
Models return raw logits; the loss lives in the trainer.

This module sits below the inspector: it uses only :mod:`cnnlab.models._input_checks` to refuse
sizes a model cannot take, and never imports :mod:`cnnlab.inspect`.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ..errors import InputSizeError, InputTooSmallError, ModelConfigError, UnknownModelError
from ..i18n import _
from ._input_checks import annotate_flatten, check_input, smallest_input

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

PRETRAINED_FAMILY = "pretrained"  # torchvision models with ImageNet weights


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
    # The torchvision weights enum (address, transforms, class names) of a pretrained model;
    # None for models that start from random initialisation.
    weights: WeightsEnum | None = field(default=None, repr=False)
    adaptive_of: str = ""  # the model an ``_adaptive`` twin is made from ("" for every other model)

    def notes_text(self) -> str:
        """The notes in the language in use, as a page shows them (``notes`` is the English text)."""
        if self.adaptive_of:
            return _("Same layers and parameters as {base}, with an adaptive average pooling before the flatten "
                     "so that inputs of other sizes work. Not in the seed. {notes}").format(
                base=self.adaptive_of, notes=_(_REGISTRY[self.adaptive_of].notes)).strip()
        return _(self.notes)

    @property
    def url(self) -> str | None:
        """Where the weights file is downloaded from (None without weights)."""
        return self.weights.url if self.weights is not None else None

    @property
    def filename(self) -> str | None:
        """The weights file's name in the torch hub cache, e.g. ``vgg16-397923af.pth``."""
        return self.weights.url.rsplit("/", 1)[-1] if self.weights is not None else None

    @property
    def categories(self) -> list[str] | None:
        """The class names the weights predict (None without weights)."""
        return list(self.weights.meta["categories"]) if self.weights is not None else None

    def transforms(self):
        """The weights' own preprocessing (resize, crop, normalisation); None without weights."""
        return self.weights.transforms() if self.weights is not None else None


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}  # other spellings accepted by get_spec, e.g. "pretrained:vgg16"


def register(spec: ModelSpec, *, adaptive_variant: bool | None = None,
             aliases: tuple[str, ...] = ()) -> ModelSpec:
    """Add a spec; fixed-input models also get a ``<name>_adaptive`` twin unless told otherwise.
    ``aliases`` are other names :func:`get_spec` (and so :func:`create`) accepts for it."""
    if spec.name in _REGISTRY or spec.name in _ALIASES:
        raise ValueError(f"model {spec.name!r} registered twice")
    for alias in aliases:
        if alias in _REGISTRY or alias in _ALIASES:
            raise ValueError(f"alias {alias!r} of {spec.name!r} is already a model name")
    _REGISTRY[spec.name] = spec
    _ALIASES.update({alias: spec.name for alias in aliases})
    if adaptive_variant is None:
        adaptive_variant = spec.fixed_input and not spec.sized_at_creation
    if adaptive_variant:
        twin = replace(
            spec,
            name=f"{spec.name}_adaptive",
            display_name=f"{spec.display_name} (adaptive)",
            fixed_input=False,
            adaptive=True,
            adaptive_of=spec.name,
            notes=(
                f"Same layers and parameters as {spec.name}, with an adaptive average pooling "
                f"before the flatten so that inputs of other sizes work. Not in the seed. "
                + spec.notes
            ).strip(),
        )
        _REGISTRY[twin.name] = twin
    return spec


def list_models(pattern: str = "*", family: str | None = None, include_pretrained: bool = False) -> list[str]:
    """Names of registered models matching a shell-style pattern (timm's ``list_models``).

    The torchvision models with ImageNet weights (family ``"pretrained"``) predict ImageNet's
    1000 classes and are not trained from scratch, so the zoo's listings leave them out: they
    are listed with ``family="pretrained"`` or ``include_pretrained=True``.
    """
    names = [n for n, s in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)]
    if family is not None:
        names = [n for n in names if _REGISTRY[n].family == family]
    elif not include_pretrained:
        names = [n for n in names if _REGISTRY[n].family != PRETRAINED_FAMILY]
    return sorted(names, key=_sort_key)


def _sort_key(name: str) -> tuple:
    s = _REGISTRY[name]
    return (s.year, s.family, name)


def get_spec(name: str) -> ModelSpec:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=4, cutoff=0.5)
    if not close:
        close = [n for n in _REGISTRY if key and (key in n or n in key)][:4]
    if close:
        raise UnknownModelError(_("Unknown model {name!r}. Did you mean: {close}? Run `python -m cnnlab models` "
                                  "to list all {count} models.").format(name=name, close=", ".join(close),
                                                                        count=len(_REGISTRY)))
    raise UnknownModelError(_("Unknown model {name!r}. Run `python -m cnnlab models` to list all {count} "
                              "models.").format(name=name, count=len(_REGISTRY)))


def _normalize_size(input_size, spec: ModelSpec) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    size = tuple(int(v) for v in input_size)
    if len(size) == 3:  # (C, H, W)
        size = size[1:]
    if len(size) != 2:
        raise ModelConfigError(_("input size must be H, (H, W) or (C, H, W); got {size!r}").format(size=input_size))
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
            raise ModelConfigError(_("{name} must be a whole number, got {value!r}").format(name=label, value=value))
    if num_classes < 1:
        raise ModelConfigError(
            _("num_classes must be at least 1, got {n}: a classifier needs classes.").format(n=num_classes)
        )
    if num_classes > 100_000:
        raise ModelConfigError(_("num_classes={n} is implausibly large (limit 100,000).").format(n=num_classes))
    if in_channels < 1 or in_channels > 64:
        raise ModelConfigError(
            _("in_channels must be between 1 and 64, got {n} (1 for grayscale images, 3 for RGB).").format(
                n=in_channels)
        )
    size = _normalize_size(input_size, spec)
    if size is not None and min(size) < 1:
        raise ModelConfigError(_("input size must be positive, got {size}").format(size=size))
    build_kwargs = dict(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if spec.sized_at_creation:
        build_kwargs["input_size"] = size or spec.input_shape[1:]
    elif spec.fixed_input and size is not None and size != tuple(spec.input_shape[1:]):
        raise _fixed_input_error(spec, size)
    if spec.adaptive:
        build_kwargs["adaptive"] = True
    if spec.sized_at_creation:
        _check_creation_size(spec, build_kwargs, in_channels)
    model = spec.builder(**build_kwargs)
    required = (in_channels, *(size or spec.input_shape[1:]))
    annotate_flatten(model, spec.name, required)
    model.cnnlab_spec = spec  # type: ignore[attr-defined]
    return model


def _meta_probe(spec: ModelSpec, build_kwargs: dict, input_shape) -> nn.Module:
    """The model built on the meta device (no memory), its flatten layers named for messages."""
    with torch.device("meta"):
        probe = spec.builder(**build_kwargs)
    annotate_flatten(probe, spec.name, input_shape)
    return probe


def _check_creation_size(spec: ModelSpec, build_kwargs: dict, in_channels: int) -> None:
    """A model sized at creation must still fit the size: probe it on the meta device."""
    shape = (in_channels, *build_kwargs["input_size"])
    probe = _meta_probe(spec, build_kwargs, shape)
    try:
        check_input(probe, shape, spec.name)
    except InputTooSmallError as e:
        side = smallest_input(probe, in_channels)
        if not side:
            raise InputTooSmallError(str(e)) from None
        raise InputTooSmallError(_("{error} The smallest square input that works is {c}x{side}x{side}.").format(
            error=e, c=in_channels, side=side)) from None


def _fixed_input_error(spec: ModelSpec, size: tuple[int, int]) -> InputSizeError:
    """The error for creating a fixed-input model at another size: the layer that fails, if any."""
    c, h, w = spec.input_shape
    probe = _meta_probe(spec, dict(num_classes=spec.num_classes, in_channels=c), spec.input_shape)
    try:
        check_input(probe, (c, *size), spec.name)
    except InputTooSmallError as e:
        return InputTooSmallError(_("{error} {model} is built for {c}x{h}x{w} inputs.").format(
            error=e, model=spec.name, c=c, h=h, w=w))
    except InputSizeError as e:
        return e
    return InputSizeError(
        _("{model} is built for {c}x{h}x{w} inputs; {height}x{width} is not supported. "
          "Use '{model}_adaptive' for other sizes.").format(model=spec.name, c=c, h=h, w=w, height=size[0],
                                                            width=size[1])
    )
