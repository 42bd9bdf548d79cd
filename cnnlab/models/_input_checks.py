"""Whether an input fits a network, found on PyTorch's ``meta`` device (no memory, no arithmetic).

The bottom layer of the model checks, shared by the registry (``create`` refuses a size a model
cannot take) and the inspector (:mod:`cnnlab.inspect` builds its per-layer table on top of it).
It imports neither of them.

* :func:`check_layer_input`: the check made before every layer runs: the channel count a
  convolution expects, the features a linear layer expects, and the output-size formula
  ``floor((W - F + 2P) / S) + 1`` of a convolution or pooling, which must stay at least 1;
* :func:`check_input`: one meta pass of a whole model with that check before every leaf layer;
* :func:`smallest_input`: the smallest square side that passes every layer;
* :func:`annotate_flatten`: tells each :class:`~cnnlab.models._layers.FixedFlatten` its name, its
  model's name and the input the model needs, so that its message can say them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import CnnlabError, InputSizeError, InputTooSmallError
from ..i18n import _
from ._layers import FixedFlatten
from .tools import evaluating

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL = (nn.MaxPool2d, nn.AvgPool2d)


def pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def conv_output_size(w: int, f: int, p: int, s: int, d: int = 1, ceil_mode: bool = False) -> int:
    """``floor((W - F_eff + 2P) / S) + 1`` with ``F_eff = D (F - 1) + 1`` (ceil for ceil_mode pools)."""
    f_eff = d * (f - 1) + 1
    num = w - f_eff + 2 * p
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= w + p:  # PyTorch drops a last window starting in padding
        out -= 1
    return out


def layer_geometry(module: nn.Module):
    """(kernel, stride, padding, dilation, ceil_mode) of a conv/pool, each as (h, w); padding is
    None for the strings "same"/"valid"."""
    k = pair(module.kernel_size)
    s = pair(module.stride if module.stride is not None else module.kernel_size)
    p = pair(module.padding) if not isinstance(module.padding, str) else None
    d = pair(getattr(module, "dilation", 1))
    ceil = bool(getattr(module, "ceil_mode", False))
    return k, s, p, d, ceil


def check_layer_input(module: nn.Module, x: torch.Tensor, layer_name: str, model_name: str,
                      input_shape: tuple[int, int, int]) -> None:
    """Raise :class:`InputSizeError` (or :class:`InputTooSmallError`) if ``x`` cannot go through
    ``module``; ``input_shape`` is the model's input, named in the message."""
    c, h, w = input_shape
    if isinstance(module, CONV) and x.dim() >= 3 and x.shape[1] != module.in_channels:
        names = dict(model=model_name, layer=layer_name, kind=type(module).__name__, expected=module.in_channels,
                     got=x.shape[1], c=c)
        if x.shape[1] == c:
            raise InputSizeError(_(
                "{model}: layer '{layer}' ({kind}) expects {expected} input channels but receives {got} (the first "
                "layer: the image itself). Create the model with in_channels={c}, or give it {expected}-channel "
                "images.").format(**names))
        raise InputSizeError(_("{model}: layer '{layer}' ({kind}) expects {expected} input channels but receives "
                               "{got}.").format(**names))
    if isinstance(module, nn.Linear) and x.shape[-1] != module.in_features:
        raise InputSizeError(_(
            "{model}: layer '{layer}' (Linear) expects {expected:,} input features but receives {got:,} from a "
            "{c}x{h}x{w} input. Use the input size the model was built for.").format(
            model=model_name, layer=layer_name, expected=module.in_features, got=x.shape[-1], c=c, h=h, w=w))
    if isinstance(module, CONV + POOL) and x.dim() == 4:
        k, s, p, d, ceil = layer_geometry(module)
        if p is None:  # padding="same"/"valid" strings
            return
        ih, iw = x.shape[-2:]
        oh = conv_output_size(ih, k[0], p[0], s[0], d[0], ceil)
        ow = conv_output_size(iw, k[1], p[1], s[1], d[1], ceil)
        if oh < 1 or ow < 1:
            raise InputTooSmallError(_(
                "Input {c}x{h}x{w} is too small for {model}: layer '{layer}' ({kind} {kh}x{kw}, stride {stride}, "
                "padding {pad}) receives {ic}x{ih}x{iw} and its output would be {oh}x{ow} "
                "(floor(({ih} - {span} + 2*{pad}) / {stride}) + 1 = {oh}).").format(
                c=c, h=h, w=w, model=model_name, layer=layer_name, kind=type(module).__name__, kh=k[0], kw=k[1],
                stride=s[0], pad=p[0], ic=x.shape[1], ih=ih, iw=iw, oh=oh, ow=ow, span=d[0] * (k[0] - 1) + 1))


def device_of(model: nn.Module) -> str:
    for p in model.parameters():
        return p.device.type
    return "cpu"


def check_input(model: nn.Module, input_shape: tuple[int, int, int], model_name: str = "this model") -> None:
    """Run a meta-device pass; raise :class:`InputSizeError` if ``input_shape`` cannot go through.
    A model that is not on the meta device is deep-copied there first (the caller's is untouched)."""
    if device_of(model) != "meta":
        model = copy.deepcopy(model).to("meta")
    names = {m: n for n, m in model.named_modules()}

    def before_layer(module: nn.Module, inputs) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor):
            check_layer_input(module, inputs[0], names.get(module, "?"), model_name, input_shape)

    handles = [m.register_forward_pre_hook(before_layer)
               for m in model.modules() if not any(True for _ in m.children())]
    try:
        with evaluating(model), torch.no_grad():
            model(torch.empty(1, *input_shape, device="meta"))
    except CnnlabError:
        raise
    except Exception as e:  # any other failure is still the input's fault here
        raise InputSizeError(_("{model} cannot process a {shape} input: {error}").format(
            model=model_name, shape="x".join(map(str, input_shape)), error=e)) from e
    finally:
        for handle in handles:
            handle.remove()


def smallest_input(model: nn.Module, channels: int, limit: int = 1024) -> int | None:
    """Smallest square side that passes every layer (ignoring a fixed flatten size), or None."""
    def ok(side: int) -> bool:
        try:
            check_input(model, (channels, side, side))
            return True
        except InputTooSmallError:
            return False
        except InputSizeError:
            return True  # gets through every layer; only the fixed flatten size differs

    if not ok(limit):
        return None
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def annotate_flatten(model: nn.Module, model_name: str, input_shape) -> None:
    """Name every :class:`FixedFlatten` of ``model`` and the input it needs, for its message."""
    for name, m in model.named_modules():
        if isinstance(m, FixedFlatten):
            m.layer_name = name
            m.model_name = model_name
            m.required_input = tuple(input_shape) if not m.adaptive else None
