"""Test helpers: opening the Streamlit app in AppTest, training saved runs, sharing them between tests."""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def open_view(view: str | None = None, timeout: float = 120) -> AppTest:
    """Run app/main.py, switch to ``app/views/<view>.py`` if given, and check nothing raised."""
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    at.run()
    if view:
        at.switch_page(f"views/{view}.py").run()
    assert not at.exception, at.exception
    return at


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at this moment, for a server a test starts."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def using_cache(cache: Path) -> Iterator[Path]:
    """Point CNNLAB_CACHE at ``cache`` for a block (e.g. to train runs once per test module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(cache))
        yield cache


def copy_runs(cache: Path) -> Path:
    """Copy the runs trained in ``cache`` into the current test's own cache (safe to delete)."""
    target = Path(os.environ["CNNLAB_CACHE"]) / "runs"
    shutil.copytree(cache / "runs", target)
    return target


def train_run(config, **kwargs):
    """``fit`` saving the run folder, as the app, the jobs and the CLI do (no TensorBoard log:
    it is tested on its own)."""
    from cnnlab.runs import recorders
    from cnnlab.train import fit

    listeners = [*recorders(tensorboard=False), *kwargs.pop("listeners", ())]
    return fit(config, listeners=listeners, **kwargs)


def colour_folder(folder: Path, per_class: int, seed: int) -> Path:
    """An image folder of two classes, noisy red and noisy blue 32x32 squares: a run on it learns
    quickly, and deleting the folder afterwards leaves a run whose data is gone."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.integers(0, 60, (32, 32, 3)) + np.array(colour)).clip(0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder
