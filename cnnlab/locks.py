"""One lock per model object.

The app caches one model for every browser session, and looking inside a model changes it
for a moment (forward hooks, in-place activations switched off, train/eval mode). Every
function that does so, or that runs a forward pass a hook could observe, holds the model's
lock, so two sessions never see each other's activations.
"""

from __future__ import annotations

import threading
import weakref

from torch import nn

_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock
