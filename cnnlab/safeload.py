"""The one way cnnlab reads a saved file: weights, checkpoints, caches and CIFAR's pickles.

Every file on disk is untrusted, whoever wrote it: a weights file dropped into
``models_cache/hub/checkpoints/``, a run's ``best.pt``, the transfer stand-in's cache, the decoded
dataset cache, a CIFAR batch. Python pickles can run code while they load, so:

- PyTorch files go through :func:`load_torch_file`, which always calls
  ``torch.load(..., weights_only=True)`` (tensors, dicts, lists, numbers and strings only), after
  checking that the path is a regular, non-empty file of a bounded size;
- CIFAR's pickles go through :func:`load_plain_pickle`, an unpickler that knows no class except
  the three numpy needs to rebuild an array.

Anything refused or unreadable ends in one :class:`~cnnlab.errors.UnsafeFileError` line that
names the file, says what was wrong and what to do; never torch's long advice to turn
``weights_only`` off.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UnsafeFileError
from .i18n import _

MAX_WEIGHTS_BYTES = 4 * 2**30  # VGG-19 (the largest model cnnlab loads) is 548 MB
MAX_PICKLE_BYTES = 512 * 2**20  # a CIFAR batch is 31 MB, CIFAR-100's train file 155 MB


def _check_file(path: Path, what: str, max_bytes: int, remedy: str) -> int:
    """The file's size, after refusing what is not a readable regular file of sensible size."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UnsafeFileError(_("{what} {path} does not exist. {remedy}").format(
            what=_cap(what), path=path, remedy=remedy)) from None
    except OSError as exc:
        raise UnsafeFileError(_unreadable(what, path, exc, remedy)) from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(_("{what} {path} is not a regular file (a folder, device or pipe); refused. "
                                "{remedy}").format(what=_cap(what), path=path, remedy=remedy))
    if st.st_size == 0:
        raise UnsafeFileError(_("{what} {path} is empty (0 bytes). {remedy}").format(
            what=_cap(what), path=path, remedy=remedy))
    if st.st_size > max_bytes:
        raise UnsafeFileError(
            _("{what} {path} is {size:.3g} GB, more than the {limit:.3g} GB cnnlab reads; refused. {remedy}").format(
                what=_cap(what), path=path, size=st.st_size / 2**30, limit=max_bytes / 2**30, remedy=remedy)
        )
    return st.st_size


def _cap(what: str) -> str:
    return what[:1].upper() + what[1:]


def _unreadable(what: str, path: Path, exc: OSError, remedy: str) -> str:
    return _("{what} {path} cannot be read ({reason}). {remedy}").format(
        what=_cap(what), path=path, reason=exc.strerror or exc, remedy=remedy)


def _damaged(what: str, path: Path, exc: BaseException, remedy: str) -> str:
    return _("{what} {path} is damaged ({reason}). {remedy}").format(
        what=_cap(what), path=path, reason=_one_line(exc), remedy=remedy)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _is_torch_file(path: Path) -> bool:
    """Whether the file starts as ``torch.save`` writes: a zip archive (PyTorch 1.6 and later), a
    pickle (older versions: the protocol opcode 0x80) or a tar archive (the oldest). Anything else is
    not a PyTorch file at all, whatever the unpickler would say about its bytes."""
    with open(path, "rb") as f:
        head = f.read(262)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head[257:262] == b"ustar"


def load_torch_file(
    path: str | os.PathLike[str],
    *,
    what: str | None = None,
    remedy: str | None = None,
    map_location: str | torch.device = "cpu",
    max_bytes: int = MAX_WEIGHTS_BYTES,
) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as one clear line.

    ``what`` names the file for the user ("the weights file", "the checkpoint of run X"; by default
    "the file"); ``remedy`` says what to do about it. Both are shown as given: translated by the caller.
    """
    path = Path(path)
    what = what or _("the file")
    remedy = remedy or _("Delete it and create or download it again.")
    _check_file(path, what, max_bytes, remedy)
    try:
        if not _is_torch_file(path):
            raise UnsafeFileError(_("{what} {path} is not a checkpoint (a PyTorch weights file). {remedy}").format(
                what=_cap(what), path=path, remedy=remedy))
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported" in str(exc):
            raise UnsafeFileError(
                _("{what} {path} holds more than tensors (objects that could run code when loaded); cnnlab loads "
                  "weights files only as plain tensors and refused it. {remedy}").format(
                    what=_cap(what), path=path, remedy=remedy)
            ) from None
        raise UnsafeFileError(_damaged(what, path, exc, remedy)) from None
    except (EOFError, RuntimeError, ValueError, OSError, KeyError, IndexError, AttributeError, TypeError) as exc:
        if isinstance(exc, OSError) and getattr(exc, "errno", None):
            raise UnsafeFileError(_unreadable(what, path, exc, remedy)) from None
        raise UnsafeFileError(
            _("{what} {path} is truncated or is not a PyTorch file. {remedy}").format(
                what=_cap(what), path=path, remedy=remedy)
        ) from None


def load_state_dict_file(path: str | os.PathLike[str], *, what: str | None = None, remedy: str | None = None,
                         map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A ``state_dict`` (names to tensors) from ``path``, refusing anything else (``what``: by default
    "the weights file"; both texts translated by the caller)."""
    what = what or _("the weights file")
    remedy = remedy or _("Delete it and create or download it again.")
    state = load_torch_file(path, what=what, remedy=remedy, map_location=map_location)
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UnsafeFileError(_("{what} {path} does not hold a state_dict (layer names to tensors). {remedy}").format(
            what=_cap(what), path=path, remedy=remedy))
    return dict(state)


# --------------------------------------------------------------------------------------
# CIFAR's Python pickles
# --------------------------------------------------------------------------------------

def _numpy_global(module: str, name: str) -> Any:
    """The few numpy callables a pickled array or scalar needs; None for anything else."""
    if (module, name) == ("numpy", "ndarray"):
        return np.ndarray
    if (module, name) == ("numpy", "dtype"):
        return np.dtype
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        from numpy._core import multiarray  # numpy >= 2; older pickles name numpy.core

        return getattr(multiarray, name)
    return None


class _PlainUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, strings, bytes, numbers and numpy arrays; refuses every other class."""

    def find_class(self, module: str, name: str) -> Any:
        found = _numpy_global(module, name)
        if found is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return found


def load_plain_pickle(path: str | os.PathLike[str], *, what: str | None = None, remedy: str | None = None,
                      max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """A Python pickle of plain data (CIFAR's format) without running any code it may ask for (``what``:
    by default "the file"; both texts translated by the caller)."""
    path = Path(path)
    what = what or _("the file")
    remedy = remedy or _("Delete it and download it again.")
    _check_file(path, what, max_bytes, remedy)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnsafeFileError(_unreadable(what, path, exc, remedy)) from None
    try:
        return _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        if "is not allowed" in str(exc):
            raise UnsafeFileError(
                _("{what} {path} asks for {name} while loading, which a dataset file never needs (it could run "
                  "code); refused. {remedy}").format(what=_cap(what), path=path,
                                                    name=_one_line(exc).replace(" is not allowed", ""), remedy=remedy)
            ) from None
        raise UnsafeFileError(_damaged(what, path, exc, remedy)) from None
    except Exception as exc:  # noqa: BLE001 - truncated or garbage pickles raise many kinds
        raise UnsafeFileError(_("{what} {path} is truncated or damaged ({error}). {remedy}").format(
            what=_cap(what), path=path, error=type(exc).__name__, remedy=remedy)) from None
