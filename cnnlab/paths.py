"""Where cnnlab keeps what it downloads and produces.

``models_cache/`` at the project root (override with ``CNNLAB_CACHE``) is the torch hub
cache (pretrained weights in ``hub/checkpoints/``), the run registry (``runs/``) and the
decoded-dataset cache (``datasets/``). Raw datasets live under ``data/`` at the project
root (override with ``CNNLAB_DATA``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.hub

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("CNNLAB_CACHE", PROJECT_ROOT / "models_cache")).expanduser()


def runs_dir() -> Path:
    return cache_dir() / "runs"


def hub_dir() -> Path:
    """The torch hub directory (``TORCH_HOME``): weights go in ``hub_dir()/checkpoints``."""
    return cache_dir() / "hub"


def datasets_cache_dir() -> Path:
    return cache_dir() / "datasets"


def data_dir() -> Path:
    return Path(os.environ.get("CNNLAB_DATA", PROJECT_ROOT / "data")).expanduser()


def use_project_hub() -> Path:
    """Point torch hub at ``models_cache/hub`` (unless the user set TORCH_HOME) and return it."""
    hub = Path(os.environ.get("TORCH_HOME", "")) / "hub" if os.environ.get("TORCH_HOME") else hub_dir()
    torch.hub.set_dir(str(hub))
    return hub
