"""Looking inside a network: activations, feature maps, kernels, class-activation maps.

* :func:`capture` / :func:`capture_activations` record the outputs of any set of layers,
  named hierarchically (``features.0``, ``layer2.1.conv1``), during one forward pass. The
  hooks are always removed, even when the forward pass raises. A module that runs several
  times in one pass (seed 002's LeNet reuses one ``activation`` module four times) is
  addressed as ``activation``, ``activation#2``, ``activation#3`` ...
* :func:`feature_grid` tiles every channel (or the first N) of a layer's output, each
  normalised, with a colormap; the channel with the strongest response is outlined.
  :func:`layer_stats` gives mean, standard deviation and the fraction of zeros.
* :func:`kernel_grid` shows learned kernels: RGB tiles for a first convolution on colour
  images, one grey tile per input channel otherwise (:func:`kernel_image` draws any such array, e.g.
  a training X-ray's kernel snapshot).
* :func:`grad_cam` and :func:`saliency` compute class-activation maps with captum (Grad-CAM on
  the end of the convolutional part unless a layer is named; vanilla gradient saliency), and
  :func:`overlay` lays a heat map over the image.
"""

from __future__ import annotations

import difflib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from .errors import CnnlabError, LayerNotFoundError
from .i18n import _
from .locks import model_lock
from .models import evaluating


@contextmanager
def _inspecting(model: nn.Module) -> Iterator[None]:
    """Hold the model's lock (see :mod:`cnnlab.locks`) in eval mode; restore the mode after."""
    with model_lock(model), evaluating(model):
        yield


# --- layer names -----------------------------------------------------------------------------


def layer_names(model: nn.Module, leaves_only: bool = False) -> list[str]:
    """Hierarchical names of the model's submodules, in registration order."""
    return [n for n, m in model.named_modules()
            if n and (not leaves_only or not any(True for _ in m.children()))]


def split_call(name: str) -> tuple[str, int]:
    """``conv#2`` is the second call of the module ``conv``: (``"conv"``, 1); a plain name is its first call."""
    if "#" in name:
        base, _, idx = name.partition("#")
        if idx.isdigit() and int(idx) >= 1:
            return base, int(idx) - 1
    return name, 0


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Map names (optionally with ``#k`` for the k-th call) to modules, or raise a clear
    :class:`LayerNotFoundError` listing the closest and the valid names."""
    modules = dict(model.named_modules())
    out: dict[str, nn.Module] = {}
    for name in names:
        base = split_call(name)[0]
        if not base or base not in modules:
            valid = layer_names(model)
            close = difflib.get_close_matches(base, valid, n=3, cutoff=0.4)
            shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
            text = _("No layer named {name!r} in {model}. Closest: {closest}. Valid names: {names}") if close else \
                _("No layer named {name!r} in {model}. Valid names: {names}")
            raise LayerNotFoundError(text.format(name=name, model=type(model).__name__, closest=", ".join(close),
                                                 names=shown))
        out[name] = modules[base]
    return out


@contextmanager
def capture(model: nn.Module, names: Sequence[str], detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Context manager: register forward hooks on the named layers, yield a dict filled during
    the forward passes run inside the block, and remove every hook on exit (even on error)."""
    targets = resolve_layers(model, names)
    wanted: dict[int, list[tuple[str, int]]] = {}
    for name, module in targets.items():
        wanted.setdefault(id(module), []).append((name, split_call(name)[1]))
    result: dict[str, torch.Tensor] = {}
    counts: dict[int, int] = {}
    handles = []

    def hook(module, inputs, output):
        key = id(module)
        call = counts.get(key, 0)
        counts[key] = call + 1
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, torch.Tensor):
            return
        for name, idx in wanted.get(key, []):
            if idx == call:
                result[name] = out.detach().clone() if detach else out

    with model_lock(model):
        try:
            for module in {id(m): m for m in targets.values()}.values():
                handles.append(module.register_forward_hook(hook))
            yield result
        finally:
            for h in handles:
                h.remove()


def capture_activations(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """One forward pass (eval mode, no grad) returning the outputs of the named layers."""
    with _inspecting(model), capture(model, names) as acts, torch.no_grad():
        model(x)
    missing = [n for n in names if n not in acts]
    if missing:
        raise LayerNotFoundError(
            _("Layer(s) {layers} did not run in the forward pass (a '#k' beyond the number of times the layer is "
              "used, or a layer outside the forward path).").format(layers=", ".join(missing))
        )
    return dict(acts)


def _trace(model: nn.Module, x: torch.Tensor, leaves_only: bool) -> list[tuple[str, tuple[int, ...], str, int]]:
    """One no-grad forward pass in eval mode recording, in completion order, every module call
    with a tensor output: (name, output shape with batch, type, 1-based call number)."""
    names = {id(m): n for n, m in model.named_modules() if n}
    calls: dict[int, int] = {}
    trace: list[tuple[str, tuple[int, ...], str, int]] = []

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor):
            k = calls[id(module)] = calls.get(id(module), 0) + 1
            trace.append((names[id(module)], tuple(output.shape), type(module).__name__, k))

    handles = []
    with _inspecting(model):
        try:
            for m in model.modules():
                if id(m) in names and (not leaves_only or not any(True for _ in m.children())):
                    handles.append(m.register_forward_hook(hook))
            with torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
    return trace


def activation_points(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...], str]]:
    """Every leaf layer call of one forward pass in execution order: (name, output shape, type).
    Repeated calls of one module are named ``name#2``, ``name#3``..."""
    return [(name if k == 1 else f"{name}#{k}", shape[1:], kind) for name, shape, kind, k in _trace(model, x, True)]


# --- statistics and pictures -----------------------------------------------------------------


@dataclass
class LayerStats:
    shape: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float  # fraction of exact zeros (dead units after a ReLU)
    strongest_channel: int | None  # channel with the highest mean response

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def layer_stats(act: torch.Tensor) -> LayerStats:
    """Statistics of one image's activation (C x H x W or a vector); a batch uses image 0."""
    a = act.detach().float().cpu()
    if a.dim() == 4:
        a = a[0]
    strongest = int(a.flatten(1).mean(1).argmax()) if a.dim() == 3 else None
    return LayerStats(
        shape=tuple(a.shape), mean=float(a.mean()), std=float(a.std()) if a.numel() > 1 else 0.0,
        min=float(a.min()), max=float(a.max()), zero_fraction=float((a == 0).float().mean()),
        strongest_channel=strongest,
    )


def _colormap(values: np.ndarray, cmap: str) -> np.ndarray:
    import matplotlib  # here, not at the top: 0.2 s to import, and only the colour maps need it

    return (matplotlib.colormaps[cmap](values)[..., :3] * 255).astype(np.uint8)


def _normalise(a: torch.Tensor) -> torch.Tensor:
    """Scale each map (leading dim) to [0, 1]; a constant map becomes 0."""
    flat = a.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(a)


def _tile(tiles: np.ndarray, cols: int, pad: int, background: int = 255) -> np.ndarray:
    n, h, w, c = tiles.shape
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), background, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        canvas[y:y + h, x:x + w] = tiles[i]
    return canvas


def feature_grid(act: torch.Tensor, max_channels: int | None = 64, cmap: str = "viridis",
                 tile_size: int = 64, cols: int | None = None) -> tuple[Image.Image, LayerStats]:
    """All channels (or the first ``max_channels``) of a C x H x W activation as one picture.

    Each channel is normalised on its own and coloured with ``cmap``; small maps are enlarged
    (nearest neighbour) to about ``tile_size`` pixels. The strongest channel (highest mean)
    is outlined in red. Vectors (after a flatten) are drawn as a single strip.
    """
    a = act.detach().float().cpu()
    if a.dim() == 4:
        a = a[0]
    stats = layer_stats(a)
    if a.dim() == 1:
        a = a.view(1, 1, -1)
    elif a.dim() == 2:
        a = a.unsqueeze(0)
    if a.dim() != 3:
        raise CnnlabError(_("cannot draw an activation of shape {shape}").format(shape=tuple(act.shape)))
    n = a.shape[0] if max_channels is None else min(a.shape[0], max_channels)
    maps = _normalise(a[:n])
    h, w = maps.shape[-2:]
    scale = max(1, tile_size // max(h, w))
    maps = maps.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    tiles = _colormap(maps.numpy(), cmap)
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    pad = 2
    grid = _tile(tiles, cols, pad)
    img = Image.fromarray(grid)
    if stats.strongest_channel is not None and stats.strongest_channel < n:
        r, k = divmod(stats.strongest_channel, cols)
        th, tw = tiles.shape[1:3]
        y, x = pad + r * (th + pad), pad + k * (tw + pad)
        ImageDraw.Draw(img).rectangle([x - 2, y - 2, x + tw + 1, y + th + 1], outline=(230, 20, 20), width=2)
    return img, stats


def grid_channel_at(grid_size: tuple[int, int], n: int, x: float, y: float, cols: int | None = None) -> int | None:
    """The channel under the point ``(x, y)`` (pixels of the picture) of a :func:`feature_grid` of
    ``n`` channels, ``grid_size`` = the picture's (width, height); None on the padding between tiles
    or outside. ``cols`` as given to :func:`feature_grid` (default: its square-ish layout)."""
    if n < 1:
        return None
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    pad = 2
    width, height = grid_size
    tw, th = (width - pad) / cols - pad, (height - pad) / rows - pad
    if tw <= 0 or th <= 0 or not (0 <= x < width and 0 <= y < height):
        return None
    k, dx = divmod(x - pad, tw + pad)
    r, dy = divmod(y - pad, th + pad)
    if dx >= tw or dy >= th or k < 0 or r < 0:
        return None
    channel = int(r) * cols + int(k)
    return channel if channel < n else None


MAX_VALUES_SIDE = 16  # the values of at most a 16x16 window are listed (a 112x112 map would be 12,544 numbers)


def channel_view(act: torch.Tensor, channel: int, cmap: str = "viridis", size: int = 320
                 ) -> tuple[Image.Image, np.ndarray, tuple[int, int]]:
    """One channel of a C x H x W activation, large: the picture (nearest-neighbour, about ``size``
    pixels), its values (the whole map when it is at most 16x16, else the central 16x16 window), and
    the window's top-left corner (row, column) in the map."""
    a = act.detach().float().cpu()
    if a.dim() == 4:
        a = a[0]
    if a.dim() != 3:
        raise CnnlabError(_("a single channel is shown for spatial maps (C x H x W), not {shape}.").format(
            shape=tuple(act.shape)))
    if not 0 <= channel < a.shape[0]:
        raise CnnlabError(_("channel {channel} does not exist: this layer has channels 0 to {last}.").format(
            channel=channel, last=a.shape[0] - 1))
    if not 16 <= size <= 2048:
        raise CnnlabError(_("size must be between 16 and 2048 pixels, got {size}.").format(size=size))
    m = a[channel]
    h, w = m.shape
    scale = max(1, size // max(h, w))
    picture = _normalise(m[None]).repeat_interleave(scale, -2).repeat_interleave(scale, -1)[0]
    img = Image.fromarray(_colormap(picture.numpy(), cmap))
    top, left = max(0, (h - MAX_VALUES_SIDE) // 2), max(0, (w - MAX_VALUES_SIDE) // 2)
    values = m[top:top + MAX_VALUES_SIDE, left:left + MAX_VALUES_SIDE].numpy()
    return img, values, (top, left)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise CnnlabError(_("{model} has no convolution layer.").format(model=type(model).__name__))


def last_conv_name(model: nn.Module, x: torch.Tensor | None = None) -> str:
    """The layer Grad-CAM explains by default: the end of the convolutional part.

    With an input, this is the last module (block or layer) to finish whose output is still a
    spatial map at least 7x7 and that runs once per pass: ``features`` for VGG, ``layer4`` for a
    ResNet, the last Inception block for GoogLeNet at 224x224, as pytorch-grad-cam recommends; ``C3``
    (10x10) for LeNet rather than its 5x5 pooling, whose coarse map lights up a corner. When no
    layer is that large, the last map larger than 1x1. Without an input it is the last Conv2d.
    """
    if x is not None:
        trace = _trace(model, x, leaves_only=False)
        repeated = {name for name, _, _, k in trace if k > 1}
        maps = [(name, shape) for name, shape, _, _ in trace
                if len(shape) == 4 and shape[-1] * shape[-2] > 1 and name not in repeated]
        for name, shape in reversed(maps):
            if min(shape[-2:]) >= 7:
                return name
        if maps:
            return maps[-1][0]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise CnnlabError(_("{model} has no convolution layer for Grad-CAM; name a layer.").format(
            model=type(model).__name__))
    return convs[-1]


def kernel_grid(conv: nn.Conv2d, max_filters: int = 64, max_in: int = 8, tile_size: int = 40) -> Image.Image:
    """Learned kernels of one convolution (:func:`kernel_image` of its weights)."""
    return kernel_image(conv.weight, max_filters=max_filters, max_in=max_in, tile_size=tile_size)


def kernel_image(weights: torch.Tensor | np.ndarray, max_filters: int = 64, max_in: int = 8,
                 tile_size: int = 40, gap: int = 2) -> Image.Image:
    """Kernels (filters x input channels x kh x kw, a layer's weights or a training X-ray snapshot) as tiles.

    With 3 input channels, each filter is one RGB tile (the way the first layer of AlexNet is
    usually shown); with 1, one grey tile per filter, in a square grid like the RGB ones (not a
    strip of one tile per row); otherwise each filter is a row of grey tiles, one per input channel
    (the first ``max_in``). Each tile is normalised on its own and enlarged by whole pixels (nearest)
    to about ``tile_size``, so a 5x5 kernel stays sharp; ``gap`` white pixels separate the tiles.
    """
    w = torch.as_tensor(weights).detach().float().cpu()
    if w.ndim != 4:
        raise CnnlabError(_("kernels have 4 dimensions (filters, channels, height, width), not {dims}.").format(
            dims=w.ndim))
    n = min(w.shape[0], max_filters)
    w = w[:n]
    k = max(w.shape[-2:])
    scale = max(1, tile_size // k)
    if w.shape[1] == 3:
        flat = w.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        rgb = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(w)
        rgb = rgb.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        tiles = (rgb.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
        return Image.fromarray(_tile(tiles, max(1, math.ceil(math.sqrt(n))), gap))
    m = min(w.shape[1], max_in)
    grey = _normalise(w[:, :m].reshape(n * m, *w.shape[-2:]))
    grey = grey.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    tiles = np.repeat((grey.numpy()[..., None] * 255).astype(np.uint8), 3, axis=-1)
    columns = max(1, math.ceil(math.sqrt(n))) if m == 1 else m  # one channel: filters side by side
    return Image.fromarray(_tile(tiles, columns, gap))


# --- class-activation maps ---------------------------------------------------------------------


@dataclass
class CamResult:
    heatmap: np.ndarray  # H x W in [0, 1], at the input's resolution
    target: int  # class index explained
    layer: str | None  # layer used (Grad-CAM) or None (saliency)
    method: str
    probabilities: np.ndarray  # softmax over classes for this input


@contextmanager
def _no_inplace(model: nn.Module):
    """Autograd through hooks dislikes in-place activations; switch them off for a while."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in changed:
        m.inplace = False
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True


def _prepare(model: nn.Module, x: torch.Tensor, target: int | None):
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.shape[0] != 1:
        raise CnnlabError(_("class-activation maps are computed for one image at a time"))
    with torch.no_grad():
        logits = model(x)
    probs = torch.softmax(logits.float(), 1)[0].cpu().numpy()
    if target is None:
        target = int(probs.argmax())
    elif not 0 <= int(target) < probs.shape[0]:
        raise CnnlabError(_("class index {target} is out of range: the model has {classes} classes "
                            "(0..{last}).").format(target=target, classes=probs.shape[0], last=probs.shape[0] - 1))
    return x, int(target), probs


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | None = None, layer: str | None = None) -> CamResult:
    """Grad-CAM (Selvaraju et al., 2017) through captum's ``LayerGradCam``.

    ``layer`` defaults to :func:`last_conv_name` (the end of the convolutional part). The map is ReLU-ed, upsampled to
    the input size (bilinear) and scaled to [0, 1].
    """
    from captum.attr import LayerAttribution, LayerGradCam  # here: captum takes 0.7 s to import

    with _inspecting(model), _no_inplace(model):
        x, target, probs = _prepare(model, x, target)
        name = layer or last_conv_name(model, x)
        module = resolve_layers(model, [name])[name]
        cam = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
        if cam.dim() != 4:
            raise CnnlabError(
                _("Grad-CAM needs a layer whose output is a spatial map; '{layer}' gives a vector of shape {shape}. "
                  "Pick a convolution or pooling layer (or leave the layer on auto).").format(
                    layer=name, shape=tuple(cam.shape[1:]))
            )
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    heat = cam.detach()[0].sum(0).float().cpu().numpy()
    heat = np.maximum(heat, 0)
    heat = heat / heat.max() if heat.max() > 0 else heat
    return CamResult(heat, target, name, "grad-cam", probs)


def saliency(model: nn.Module, x: torch.Tensor, target: int | None = None) -> CamResult:
    """Vanilla gradient saliency (Simonyan et al., 2014) through captum's ``Saliency``:
    the largest absolute input gradient over the colour channels, scaled to [0, 1]."""
    from captum.attr import Saliency  # here: captum takes 0.7 s to import

    with _inspecting(model), _no_inplace(model):
        x, target, probs = _prepare(model, x, target)
        grads = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    heat = grads.detach()[0].max(0).values.float().cpu().numpy()
    heat = heat / heat.max() if heat.max() > 0 else heat
    return CamResult(heat, target, None, "saliency", probs)


def overlay(image: Image.Image | np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
            cmap: str = "jet") -> Image.Image:
    """Blend a [0, 1] heat map (resized to the image) over an RGB image."""
    if isinstance(image, np.ndarray):
        base = Image.fromarray(image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).astype(np.uint8))
    else:
        base = image
    base = base.convert("RGB")
    heat_img = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8)).resize(base.size, Image.BILINEAR)
    colored = Image.fromarray(_colormap(np.asarray(heat_img) / 255.0, cmap))
    return Image.blend(base, colored, alpha)


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised 1xCxHxW (or CxHxW) tensor back to an H x W x 3 uint8 picture."""
    t = x.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    m = torch.tensor(list(mean), dtype=t.dtype).view(-1, 1, 1)
    s = torch.tensor(list(std), dtype=t.dtype).view(-1, 1, 1)
    t = (t * s + m).clamp(0, 1)
    if t.shape[0] == 1:
        t = t.repeat(3, 1, 1)
    return (t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


# --- penultimate features ----------------------------------------------------------------------


def penultimate_layer(model: nn.Module) -> str:
    """The layer whose *input* is the network's penultimate features: its last ``nn.Linear`` (the
    classifier). A network without one (NiN ends with convolutions that give one map per class,
    then global pooling) uses the first of its trailing convolutions with as many outputs as the
    last one (the class count): the map it receives, averaged over space."""
    linear = [n for n, m in model.named_modules() if n and isinstance(m, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [(n, m) for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d)]
    if convs:
        k = len(convs) - 1
        while k > 0 and convs[k - 1][1].out_channels == convs[-1][1].out_channels:
            k -= 1
        return convs[k][0]
    raise CnnlabError(_("{model} has neither a linear nor a convolution layer: it has no penultimate features to "
                        "compare images by.").format(model=type(model).__name__))


def penultimate(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass (eval mode, no grad): ``(features, logits)`` for a batch ``x``.

    ``features`` (N x D, float32, on the input's device) is the input of ``layer`` (default
    :func:`penultimate_layer`), captured by a forward hook: flattened, or averaged over space when
    it is a map (the convolution fallback). A layer run several times in one pass keeps its last
    call (the one that feeds the output).
    """
    name = layer or penultimate_layer(model)
    module = resolve_layers(model, [name])[name]
    seen: list[torch.Tensor] = []

    def hook(mod, args):
        if args and isinstance(args[0], torch.Tensor):
            seen.append(args[0].detach())

    with _inspecting(model), torch.no_grad():
        handle = module.register_forward_pre_hook(hook)
        try:
            logits = model(x)
        finally:
            handle.remove()
    if not seen:
        raise LayerNotFoundError(_("Layer {name!r} did not run in the forward pass: it has no input to "
                                   "capture.").format(name=name))
    feats = seen[-1].float()
    feats = feats.mean(dim=(-2, -1)) if feats.dim() == 4 else feats.flatten(1)
    return feats, logits.detach().float()
