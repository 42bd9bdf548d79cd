"""Device selection (CUDA, then Apple MPS, then CPU) and mixed precision on it."""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError
from .i18n import _, fmt


def pick_device(preference: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; ``cuda``/``cuda:N``/``mps``/``cpu`` are honoured when
    available, with a clear error otherwise. (In a process of a torchrun group, ``auto`` and ``cuda``
    mean the GPU its ``LOCAL_RANK`` names: :func:`cnnlab.distributed.pick_device`.)"""
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(_("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'."))
        try:
            device = torch.device(pref)
        except RuntimeError:
            raise ConfigError(_("unknown device {device!r}: use auto, cuda, cuda:N, mps or cpu.").format(
                device=preference)) from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ConfigError(_("device {device!r} was asked for but this machine has {count} GPU(s), cuda:0 to "
                                "cuda:{last}.").format(device=pref, count=count, last=count - 1))
        return device
    if pref == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(_("device 'mps' was asked for but Apple MPS is not available; use 'auto' or 'cpu'."))
        return torch.device("mps")
    if pref == "cpu":
        return torch.device("cpu")
    raise ConfigError(_("unknown device {device!r}: use auto, cuda, mps or cpu.").format(device=preference))


def describe_device(device: torch.device | None = None) -> str:
    """A one-line human description: 'CUDA GPU: NVIDIA A100 (40 GB)' or 'CPU (2 threads)'."""
    device = device or pick_device()
    if device.type == "cuda":
        idx = device.index or 0
        props = torch.cuda.get_device_properties(idx)
        return _("CUDA GPU: {name} ({memory} GB)").format(name=props.name, memory=fmt(props.total_memory / 2**30, ".0f"))
    if device.type == "mps":
        return _("Apple GPU (MPS)")
    return _("CPU ({threads} threads)").format(threads=torch.get_num_threads())


def native_bf16(device: torch.device) -> bool:
    """True on CUDA GPUs with native bfloat16 (Ampere, compute capability 8.0, and newer).
    Older cards (T4, V100, P100) only emulate it, slower than fp32: they get fp16 + GradScaler."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA GPUs that have it natively, fp16 on older ones; nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if native_bf16(device) else torch.float16)
    return contextlib.nullcontext()
