import os

import pytest
import torch

# Tests never touch the network and never write into the real models_cache/.
os.environ.setdefault("CNNLAB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch_home"))
    yield
