"""Transfer learning: the comparison runner and the offline stand-in."""

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.runs import list_runs, load_model, load_run, load_run_data
from cnnlab.train import TrainConfig
from cnnlab.transfer import (
    CompareConfig,
    _standin_path,
    pretrained_standin,
    standin_cfg_of,
    summarize,
)

# ``standin`` (the comparison, run once per session) and ``standin_config`` are in conftest.py.


def test_pretrained_beats_scratch_at_equal_budget(standin):
    _, c = standin
    assert c.scratch.status == c.pretrained.status == "finished"
    assert c.scratch.steps == c.pretrained.steps  # same budget
    assert c.pretrained.best_val_top1 > c.scratch.best_val_top1 + 0.05, (
        c.pretrained.best_val_top1, c.scratch.best_val_top1)


def test_standin_pretraining_is_cached(standin, standin_config, monkeypatch):
    cache, _ = standin
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    path = _standin_path(standin_config)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    state = pretrained_standin(standin_config)
    assert path.stat().st_mtime_ns == stamp  # read back, not recomputed
    assert state["fc3.weight"].shape == (5, 84)  # five source classes


def test_standin_runs_are_ordinary_runs_with_their_data(standin, standin_config, monkeypatch):
    cache, c = standin
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    ids = {r.run_id for r in list_runs()}
    assert {c.scratch.run_id, c.pretrained.run_id} <= ids
    run = load_run(c.pretrained.run_id)
    cfg = standin_cfg_of(run)  # what the run's data and budget are rebuilt from
    assert (cfg.target_labels, cfg.target_val, cfg.epochs, cfg.seed) == (
        standin_config.target_labels, standin_config.target_val, standin_config.epochs, standin_config.seed)
    data = load_run_data(run)
    assert data.info.classes == ["ring", "heart", "crescent"]
    assert len(data.train) == 30
    model = load_model(run.run_id)
    assert model.fc3.out_features == 3
    summary = summarize(c.scratch.run_id, c.pretrained.run_id, data, split="val")
    assert summary.pretrained.top1 == pytest.approx(c.pretrained.best_val_top1, abs=1e-6)
    assert summary.scratch.top1 == pytest.approx(c.scratch.best_val_top1, abs=1e-6)
    assert len(summary.differences) == 3
    assert abs(summary.differences[0]["difference"]) >= abs(summary.differences[-1]["difference"])
    assert summary.pretrained.curves and summary.pretrained.per_class[0]["count"] > 0


def test_compare_config_builds_the_seed_setup():
    scratch, transfer = CompareConfig().train_configs()
    assert scratch.model == "vgg16" and not scratch.pretrained
    assert transfer.model == "vgg16_transfer" and transfer.pretrained and transfer.freeze == "features"
    finetune = CompareConfig(mode="finetune").train_configs()[1]
    assert finetune.freeze == "none"


def test_pretrained_flags_only_for_transfer_models():
    with pytest.raises(ConfigError, match="transfer-learning models"):
        TrainConfig(model="lenet", pretrained=True).validate()
    with pytest.raises(ConfigError, match="needs pretrained=True"):
        TrainConfig(model="vgg16_transfer", freeze="features").validate()


def test_transfer_model_trains_through_the_config_with_local_weights(monkeypatch, tmp_path):
    """resnet18_transfer with (random-valued) ImageNet-shaped weights in the hub folder: frozen
    features stay equal, the new head learns, and the run rebuilds without the weights file."""
    import urllib.request

    from apphelpers import train_run

    from cnnlab.models.pretrained import get_pretrained_spec, weights_path

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    spec = get_pretrained_spec("resnet18")
    torch.manual_seed(0)
    path = weights_path("resnet18")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(spec.builder(weights=None).state_dict(), path)
    cfg = TrainConfig(model="resnet18_transfer", pretrained=True, freeze="features", dataset="shapes",
                      epochs=1, batch_size=16, input_size=64, max_steps=3, device="cpu",
                      data_options={"n_train": 64, "n_val": 32})
    result = train_run(cfg)
    assert result.status == "finished"
    ref = spec.builder(weights=None)
    ref.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(result.model.conv1.weight.cpu(), ref.conv1.weight)
    path.unlink()  # the run is rebuilt from its own checkpoint, without ImageNet weights
    rebuilt = load_model(result.run_id)
    assert torch.equal(rebuilt.fc.weight, result.model.fc.weight.cpu())
