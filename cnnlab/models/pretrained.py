"""Pretrained torchvision models (ImageNet weights) and the transfer-learning heads of the seeds.

Weights are described by torchvision's weights enums (address, transforms, class names) and live
in the torch hub cache, pointed at ``models_cache/hub`` (see :mod:`cnnlab.paths`), so a file such
as ``models_cache/hub/checkpoints/vgg16-397923af.pth`` is found without any network. cnnlab reads
the file itself, through :func:`cnnlab.safeload.load_state_dict_file` (``weights_only=True``),
never through ``torch.hub.load_state_dict_from_url``, whose default unpickles anything: a planted
file can hold code. When the file is absent, it is downloaded with ``torch.hub.download_url_to_file``
and checked against the hash in its name (unless ``CNNLAB_OFFLINE=1``); when that is impossible
the error names the exact file, the folder to put it in, and the address to get it from.

Seed 000's transfer setup for VGG16: every pretrained parameter frozen and ``classifier[6]``
replaced by ``Linear(4096, 256) - ReLU - Dropout(0.4) - Linear(256, classes)``: 1,075,046
trainable parameters for Caltech101's 102 classes. Seed 001's for ResNet18: ``fc`` replaced by
``Linear(512, classes)``, either frozen (feature extraction) or fully fine-tuned. Seed 002's
exercise 3 for AlexNet: ``classifier[6]`` replaced by ``Linear(4096, classes)`` (40,970 trainable
parameters for 10 classes when the rest is frozen).

In the registry, each pretrained model is a :class:`~cnnlab.models.ModelSpec` of family
``"pretrained"`` whose ``weights`` is the torchvision enum: ``create("vgg16_imagenet")`` (or
``create("pretrained:vgg16")``) builds it with its weights, ``weights=None`` without them;
:data:`PRETRAINED` holds the same specs by short name (``vgg16``, as in ``pretrained:vgg16`` and
``python -m cnnlab fetch vgg16``). ``vgg16_transfer``, ``resnet18_transfer`` and
``alexnet_transfer`` (family ``"transfer"``) put the seeds' new heads on them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torch.hub
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from ..errors import ModelConfigError, UnsafeFileError, WeightsUnavailableError
from ..i18n import N_, _
from ..net import can_reach, offline_forced
from ..paths import use_project_hub
from ..safeload import load_state_dict_file
from ._registry import PRETRAINED_FAMILY, ModelSpec, create, register

__all__ = [
    "PRETRAINED", "PretrainedSpec", "WeightsUnavailableError", "fetch_weights",
    "get_pretrained_spec", "load_pretrained", "seed_vgg16_head", "transfer_model", "weights_path",
    "weights_status",
]

PretrainedSpec = ModelSpec  # the former name of a pretrained model's spec (now a ModelSpec with weights)

IMAGENET_SUFFIX = "_imagenet"  # registry name of a pretrained model: vgg16 -> vgg16_imagenet

# The pretrained models by their short name ("vgg16"), as in ``pretrained:vgg16`` and
# ``python -m cnnlab fetch vgg16``; each is also in the registry as ``<short name>_imagenet``.
PRETRAINED: dict[str, ModelSpec] = {}


def _short_name(spec: ModelSpec) -> str:
    return spec.name.removesuffix(IMAGENET_SUFFIX)


def get_pretrained_spec(name: str) -> ModelSpec:
    """The spec of a pretrained model: ``vgg16``, ``vgg16_imagenet`` or ``pretrained:vgg16``."""
    key = name.strip().lower().removeprefix("pretrained:").removesuffix(IMAGENET_SUFFIX)
    if key not in PRETRAINED:
        raise ModelConfigError(
            _("No pretrained weights for {name!r}. Available: {names}.").format(name=name, names=", ".join(PRETRAINED))
        )
    return PRETRAINED[key]


def weights_path(name: str) -> Path:
    """Where the weights file of ``name`` lives (or must be put)."""
    hub = use_project_hub()
    return hub / "checkpoints" / get_pretrained_spec(name).filename


def weights_status(name: str) -> tuple[str, str]:
    """("present" | "downloadable" | "missing", what it means for the user)."""
    spec = get_pretrained_spec(name)
    name = _short_name(spec)
    path = weights_path(name)
    names = dict(model=spec.display_name, path=path, file=spec.filename, url=spec.url, folder=path.parent, name=name)
    if path.is_file():
        return "present", _("{model}: weights present at {path}.").format(**names)
    if not can_reach(urlparse(spec.url).hostname or ""):
        return "missing", _(
            "{model}: weights not found and no network to download them. Put {file} (from {url}) in {folder}/, "
            "or run `python -m cnnlab fetch {name}` on a machine with internet.").format(**names)
    return "downloadable", _(
        "{model}: weights not downloaded yet; `python -m cnnlab fetch {name}` downloads {file} (from {url}) "
        "into {folder}/.").format(**names)


def fetch_weights(name: str, progress: bool = True) -> Path:
    """Make sure the weights file is on disk: download it (with a progress bar) if needed.

    The download goes to a temporary file next to the target, is checked against the SHA-256
    prefix in the file name (as ``torch.hub`` does with ``check_hash``), then renamed into place;
    nothing is unpickled here.
    """
    spec = get_pretrained_spec(name)
    path = weights_path(name)
    if path.is_file():
        return path
    if offline_forced():
        raise _missing_error(spec, path, _(
            "Pretrained weights for {model} are not at {path} and downloads are disabled (CNNLAB_OFFLINE=1)."))
    found = re.search(r"-([a-f0-9]+)\.", spec.filename)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # torch.hub writes ``<path>.<random>.partial`` and renames it to ``path`` only after the hash
        # check; a failed download removes it.
        torch.hub.download_url_to_file(spec.url, str(path), hash_prefix=found.group(1) if found else None,
                                       progress=progress)
    except Exception as e:  # URLError, timeouts, HTTP errors, interrupted downloads, hash mismatch
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise _missing_error(spec, path, _(
            "Pretrained weights for {model} are not at {path} and the download failed ({reason})."),
            reason=reason) from None
    return path


def _missing_error(spec: ModelSpec, path: Path, why: str, **values: object) -> WeightsUnavailableError:
    """The error for weights that are not on disk: ``why`` (a translated sentence with ``{model}`` and
    ``{path}`` placeholders, and ``values``'s), then where to get the file and where to put it."""
    return WeightsUnavailableError(" ".join((
        why.format(model=spec.display_name, path=path, **values),
        _("Download {url} on a machine with internet and copy the file {file} into the folder {folder}/ "
          "(or run `python -m cnnlab fetch {name}` there).").format(
            url=spec.url, file=spec.filename, folder=path.parent, name=_short_name(spec)),
    )))


def _read_weights(spec: ModelSpec, download: bool) -> dict:
    """The state dict of ``spec``'s weights file, read with ``weights_only=True`` (fetched first
    when absent and ``download`` allows it)."""
    name = _short_name(spec)
    path = weights_path(name)
    if not path.is_file():
        if not download:
            raise _missing_error(spec, path, _(
                "Pretrained weights for {model} are not at {path} and downloading was not allowed."))
        fetch_weights(name)
    try:
        return load_state_dict_file(
            path, what=_("the {model} weights file").format(model=spec.display_name),
            remedy=_("Delete it and fetch it again (`python -m cnnlab fetch {name}`, or copy {file} from "
                     "{url}).").format(name=name, file=spec.filename, url=spec.url))
    except UnsafeFileError as e:
        raise WeightsUnavailableError(str(e)) from None


def _imagenet_builder(short_name: str, architecture: Callable[..., nn.Module],
                      imagenet: WeightsEnum) -> Callable[..., nn.Module]:
    """The registry builder of a pretrained model: torchvision's ``architecture`` with the spec's
    ImageNet weights, read by cnnlab (:func:`_read_weights`), or, with ``weights=None``, from random
    initialisation (as torchvision's own builders). On the meta device (shapes only, e.g. for
    :func:`cnnlab.inspect.summarize`) no file is read: a meta tensor holds no values."""
    def build(num_classes: int = 1000, in_channels: int = 3, weights: WeightsEnum | None = imagenet,
              download: bool = True) -> nn.Module:
        spec = PRETRAINED[short_name]
        if in_channels != 3:
            raise ModelConfigError(
                _("{model} takes RGB images (its ImageNet weights have 3 input channels); got in_channels={n}.")
                .format(model=spec.name, n=in_channels)
            )
        if weights is None:
            return architecture(weights=None, num_classes=num_classes)
        if weights != spec.weights:
            raise ModelConfigError(_("{model} has the weights {weights}, not {given}.").format(
                model=spec.name, weights=spec.weights, given=weights))
        if num_classes != len(spec.categories or ()):
            raise ModelConfigError(
                _("{model} predicts the {n} ImageNet classes of its weights; got num_classes={given}. For other "
                  "classes use a transfer-learning model ({models}) or weights=None.").format(
                    model=spec.name, n=len(spec.categories or ()), given=num_classes, models=", ".join(_TRANSFER))
            )
        if torch.get_default_device().type == "meta":
            return architecture(weights=None, num_classes=num_classes)
        state = _read_weights(spec, download)
        model = architecture(weights=None, num_classes=num_classes)
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise WeightsUnavailableError(
                _("The weights file {path} does not fit {model} (other layer names or shapes): it is for another "
                  "model or incomplete. Delete it and fetch it again (`python -m cnnlab fetch {name}`).").format(
                    path=weights_path(short_name), model=spec.display_name, name=short_name)
            ) from None
        return model.eval()
    return build


def load_pretrained(name: str, download: bool = True) -> tuple[nn.Module, ModelSpec]:
    """The torchvision model with its ImageNet weights, read with ``weights_only=True``:
    ``create("<name>_imagenet", download=download)``, with its spec."""
    spec = get_pretrained_spec(name)
    model = create(spec.name, download=download).eval()
    model.cnnlab_pretrained = spec  # type: ignore[attr-defined]
    return model, spec


def seed_vgg16_head(num_classes: int) -> nn.Sequential:
    """Seed 000's new ``classifier[6]`` (without the seed's LogSoftmax: models return logits)."""
    return nn.Sequential(nn.Linear(4096, 256), nn.ReLU(), nn.Dropout(0.4), nn.Linear(256, num_classes))


def transfer_model(
    name: str = "vgg16",
    num_classes: int = 102,
    mode: str = "feature_extract",
    pretrained: bool = True,
    download: bool = True,
) -> nn.Module:
    """A torchvision model with a new head for ``num_classes``.

    ``mode="feature_extract"``: every pretrained parameter frozen (seed 000), only the new head
    trains. ``mode="finetune"``: everything trains (seed 001's second experiment).
    ``pretrained=False`` gives the same architecture from random initialisation (the
    from-scratch baseline).
    """
    if mode not in ("feature_extract", "finetune"):
        raise ModelConfigError(_("mode must be 'feature_extract' or 'finetune', got {mode!r}").format(mode=mode))
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelConfigError(_("num_classes must be a whole number of at least 1, got {n!r}").format(n=num_classes))
    spec = get_pretrained_spec(name)
    name = _short_name(spec)
    # the registry's builder reads the ImageNet weights with weights_only=True (see _read_weights)
    model = create(spec.name, download=download) if pretrained else create(spec.name, weights=None)
    if mode == "feature_extract" and pretrained:
        for p in model.parameters():
            p.requires_grad = False
    if name == "vgg16" or name == "alexnet":
        model.classifier[6] = seed_vgg16_head(num_classes) if name == "vgg16" else nn.Linear(4096, num_classes)
    elif name == "resnet18":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.cnnlab_transfer = {"base": name, "mode": mode, "pretrained": pretrained,  # type: ignore[attr-defined]
                             "num_classes": num_classes}
    return model


def _transfer_builder(base: str):
    def build(num_classes: int = 102, in_channels: int = 3, pretrained: bool = False,
              mode: str = "feature_extract", download: bool = True) -> nn.Module:
        if in_channels != 3:
            raise ModelConfigError(
                _("{model} takes RGB images (ImageNet weights have 3 input channels); got in_channels={n}. Grey "
                  "images are repeated to 3 channels by the trainer.").format(model=f"{base}_transfer", n=in_channels)
            )
        return transfer_model(base, num_classes, mode=mode, pretrained=pretrained, download=download)
    return build


# --- the registry entries ----------------------------------------------------------------------


def _register_pretrained(short_name: str, display_name: str, architecture: Callable[..., nn.Module],
                         weights: WeightsEnum, year: int, paper: str, seed: str, notes: str) -> None:
    PRETRAINED[short_name] = register(ModelSpec(
        name=f"{short_name}{IMAGENET_SUFFIX}", display_name=display_name, family=PRETRAINED_FAMILY,
        year=year, paper=paper, seed=seed, input_shape=(3, 224, 224),
        num_classes=len(weights.meta["categories"]), notes=notes, weights=weights,
        builder=_imagenet_builder(short_name, architecture, weights),
    ), aliases=(f"pretrained:{short_name}",))


_register_pretrained(
    "vgg16", "VGG-16 (ImageNet)", torchvision.models.vgg16, torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    2014, "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015", "000",
    N_("Seed 000's pretrained model: ImageNet top-1 71.6%."),
)
_register_pretrained(
    "resnet18", "ResNet-18 (ImageNet)", torchvision.models.resnet18,
    torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    2015, "He et al., Deep Residual Learning for Image Recognition, CVPR 2016", "001",
    N_("Seed 001's transfer-learning model (ants and bees): ImageNet top-1 69.8%."),
)
_register_pretrained(
    "alexnet", "AlexNet (ImageNet)", torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    2012, "Krizhevsky et al., ImageNet Classification with Deep CNNs, NeurIPS 2012",
    "002", N_("Seed 002's exercise on a pretrained AlexNet: ImageNet top-1 56.5%."),
)

_TRANSFER = ("vgg16_transfer", "resnet18_transfer", "alexnet_transfer")

def _register_transfer(base: str, display_name: str, year: int, paper: str, seed: str, num_classes: int,
                       notes: str) -> None:
    register(ModelSpec(
        name=f"{base}_transfer", display_name=display_name, family="transfer", year=year, paper=paper, seed=seed,
        input_shape=(3, 224, 224), num_classes=num_classes, builder=_transfer_builder(base), notes=notes,
    ))


_register_transfer(
    "vgg16", "VGG-16 + seed head (torchvision)", 2014,
    "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015", "000", 102,
    N_("torchvision's VGG-16 with classifier[6] replaced by Linear(4096, 256)-ReLU-Dropout(0.4)-"
       "Linear(256, classes), as in seed 000. With pretrained=True the ImageNet weights are loaded "
       "and frozen (1,075,046 trainable parameters for 102 classes)."),
)
_register_transfer(
    "resnet18", "ResNet-18 + new fc (torchvision)", 2015,
    "He et al., Deep Residual Learning for Image Recognition, CVPR 2016", "001", 2,
    N_("torchvision's ResNet-18 with fc replaced by Linear(512, classes), as in seed 001 (ants and "
       "bees). pretrained=True loads ImageNet weights; mode 'feature_extract' freezes them."),
)
_register_transfer(
    "alexnet", "AlexNet + new last layer (torchvision)", 2012,
    "Krizhevsky et al., ImageNet Classification with Deep CNNs, NeurIPS 2012", "002", 8,
    N_("torchvision's AlexNet with classifier[6] replaced by Linear(4096, classes), as in seed 002's "
       "exercise 3 (pretrained AlexNet fine-tuned on the 8 classes of 8Scenes). pretrained=True loads "
       "ImageNet weights; mode 'feature_extract' freezes them (40,970 trainable parameters for 10 "
       "classes), 'finetune' trains everything, as the exercise asks."),
)
