"""Layers shared by the zoo: the seeds' hard-coded flatten made explicit, and AlexNet's LRN."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputSizeError
from ..i18n import N_, _


class FixedFlatten(nn.Module):
    """``x.view(N, -1)`` for a layer that expects exactly ``C x H x W`` features.

    The seeds write ``x.view(-1, 256)`` and then a ``Linear(256, ...)``: such a network only
    works at the input size it was written for. This module keeps that behaviour but, instead
    of a shape error deep inside a matrix multiply (or, worse, a silently reshaped batch), it
    raises :class:`InputSizeError` naming the layer and the size it expects.

    With ``adaptive=True`` it first average-pools to ``H x W`` (the ``_adaptive`` variants),
    so any input at least that large (and many smaller ones) works with the same parameters.
    """

    def __init__(self, channels: int, height: int, width: int, adaptive: bool = False):
        super().__init__()
        self.expected = (channels, height, width)
        self.adaptive = adaptive
        # Filled in by the registry so the message can say where and for which input.
        self.layer_name = "flatten"
        self.model_name = "this model"
        self.required_input: tuple[int, ...] | None = None
        # The first sentence of the mismatch message (a message id, translated when it is raised).
        self.mismatch = N_("{model}: layer '{layer}' flattens the features for the next fully connected layer, "
                           "which expects {c}x{h}x{w} = {n:,} values, but this input produced {got} = {got_n:,}.")
        # What to do about a mismatch (a message id and its values); None: resize, or use the ``_adaptive`` twin.
        self.remedy: str | None = None
        self.remedy_values: dict[str, object] = {}

    @property
    def features(self) -> int:
        return math.prod(self.expected)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adaptive and x.dim() == 4:
            x = F.adaptive_avg_pool2d(x, self.expected[1:])
        if tuple(x.shape[1:]) != self.expected:
            raise InputSizeError(self.mismatch_message(tuple(x.shape[1:])))
        return torch.flatten(x, 1)

    def mismatch_message(self, got: tuple[int, ...]) -> str:
        c, h, w = self.expected
        sentences = [_(self.mismatch).format(model=self.model_name, layer=self.layer_name, c=c, h=h, w=w,
                                             n=self.features, got="x".join(map(str, got)), got_n=math.prod(got))]
        if self.required_input:
            sentences.append(_("It needs a {shape} input.").format(shape="x".join(map(str, self.required_input))))
        if self.remedy:
            sentences.append(_(self.remedy).format(**self.remedy_values))
        else:
            sentences.append(_("Resize the input, or use '{model}_adaptive', which pools to {h}x{w} first and "
                               "accepts other sizes.").format(model=self.model_name, h=h, w=w))
        return " ".join(sentences)

    def extra_repr(self) -> str:
        return f"expected={self.expected}, adaptive={self.adaptive}"


class LRN(nn.Module):
    """Local response normalisation as written in seed 000 (across channels via AvgPool3d)."""

    def __init__(self, local_size: int = 1, alpha: float = 1.0, beta: float = 0.75,
                 across_channels: bool = False):
        super().__init__()
        self.across_channels = across_channels
        pad = int((local_size - 1.0) / 2)
        if across_channels:
            self.average = nn.AvgPool3d(kernel_size=(local_size, 1, 1), stride=1, padding=(pad, 0, 0))
        else:
            self.average = nn.AvgPool2d(kernel_size=local_size, stride=1, padding=pad)
        self.alpha = alpha
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.across_channels:
            div = self.average(x.pow(2).unsqueeze(1)).squeeze(1)
        else:
            div = self.average(x.pow(2))
        div = div.mul(self.alpha).add(1.0).pow(self.beta)
        return x.div(div)
