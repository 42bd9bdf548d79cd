"""Shared test set-up: an isolated cache and data folder per test, and the slow trainings done once per session.

The learning-dynamics tests (Grad-CAM concentrates on the shape, a CNN beats a linear model,
the transfer stand-in) and the app/demo tests need trained models. Each is trained once per
session here, into its own cache folder, and shared; a test that changes runs works on a copy
(``apphelpers.copy_runs``).
"""

import os
from dataclasses import dataclass

# Tests never touch the network and never write into the real models_cache/.
os.environ.setdefault("CNNLAB_OFFLINE", "1")
# OpenMP threads that wait for each other sleep instead of spinning: with another process busy
# on the same cores, spinning torch threads made training 4-5x slower (measured on 2 cores: one
# epoch of the shapes ResNet 55 s spinning, 12 s passive). Read when torch loads OpenMP, so set
# before the first `import torch`; the app and demo servers the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Trainings use a fixed thread count here: the automatic count follows the machine's load, and a
# different count changes floating-point sums, so "same seed, same numbers" tests would depend on it.
os.environ.setdefault("CNNLAB_THREADS", str(torch.get_num_threads()))

from apphelpers import train_run, using_cache  # noqa: E402  (tests/ is on sys.path: pytest puts a conftest's folder there)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch_home"))
    # and never read or write the real data/ folder (datasets made on the Your images page live there)
    monkeypatch.setenv("CNNLAB_DATA", str(cache / "data"))
    yield


@pytest.fixture
def speak():
    """``speak(code)`` sets the language in use in this test's thread (AppTest formats a widget's options there
    too), put back when the test ends."""
    from cnnlab import i18n

    tokens = []
    yield lambda code: tokens.append(i18n.set_language(code))
    for token in reversed(tokens):
        i18n._language.reset(token)


@pytest.fixture
def data_dir():
    """This test's own data/ folder (CNNLAB_DATA, set above): where datasets made here go."""
    from pathlib import Path

    return Path(os.environ["CNNLAB_DATA"])


# ---- trained once per session ------------------------------------------------------------

SHAPES_OPTIONS = {"n_train": 2000, "n_val": 300, "n_test": 600}


@dataclass
class ShapesCNN:
    """A CIFAR ResNet trained for a few epochs on the procedural shapes (not saved as a run)."""

    model: torch.nn.Module  # eval mode, CPU
    data: object  # the DataBundle: train and val as trained on, a held-out test split, info
    history: list


@pytest.fixture(scope="session")
def shapes_cnn(tmp_path_factory) -> ShapesCNN:
    from cnnlab.data import load_dataset
    from cnnlab.train import TrainConfig, fit

    with using_cache(tmp_path_factory.mktemp("shapes-cnn-cache")):
        data = load_dataset("shapes", seed=0, **SHAPES_OPTIONS)
        res = fit(TrainConfig(model="cifar_resnet", dataset="shapes", epochs=4, lr=2e-3, batch_size=64, seed=0,
                              device="cpu", data_options=SHAPES_OPTIONS), data=data)
    assert res.status == "finished", res.message
    return ShapesCNN(res.model.eval().cpu(), data, res.history)


@pytest.fixture(scope="session")
def standin_config():
    from cnnlab.transfer import StandinConfig

    return StandinConfig(source_images=4000, source_epochs=6, target_labels=10, epochs=12, seed=0, device="cpu")


@pytest.fixture(scope="session")
def standin(tmp_path_factory, standin_config):
    """The offline transfer stand-in, run once: ``(cache, Comparison)``. The cache holds the
    pretrained source model and the scratch and pretrained runs; copy the runs before changing them."""
    from cnnlab.transfer import compare_standin

    cache = tmp_path_factory.mktemp("standin-cache")
    with using_cache(cache):
        result = compare_standin(standin_config)
    return cache, result


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A finished LeNet run on 300 digits, seed 3 (not the datasets' default seed 0, so code that
    ignores the run's seed and split shows other images): ``(cache, TrainResult)``."""
    from cnnlab.train import TrainConfig

    with using_cache(tmp_path_factory.mktemp("digits-run-cache")) as cache:
        result = train_run(TrainConfig(model="lenet", dataset="digits", epochs=2, subset=300, seed=3))
    assert result.status == "finished", result.message
    return cache, result
