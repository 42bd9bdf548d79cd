"""Two things every part of cnnlab does with a model: run it in eval mode for a moment, count its weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block (dropout off, batch-norm statistics frozen), then every
    module back in the mode it had, also when the block raises: looking at a model that is training
    must not change how it trains."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """How many numbers ``model`` learns: all its parameters, or only those with ``requires_grad``
    (a transfer model with frozen features trains only its head)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
