"""Pretrained torchvision weights through the real loading path, from a local hub folder."""

import os
import tempfile
import urllib.request
from pathlib import Path

import pytest
import torch

from cnnlab.models import count_params
from cnnlab.models.pretrained import (
    WeightsUnavailableError,
    fetch_weights,
    get_pretrained_spec,
    load_pretrained,
    transfer_model,
    weights_path,
    weights_status,
)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)


_FILES = {}


def place_fake_weights(name, tmp_path_factory=None):
    """A state dict of the right keys and shapes (random values) where torch hub looks for the
    real file. Written once per session, then linked into each test's cache."""
    spec = get_pretrained_spec(name)
    if name not in _FILES:
        torch.manual_seed(0)
        state = spec.builder(weights=None).state_dict()
        src = Path(tempfile.mkdtemp()) / spec.filename
        torch.save(state, src)
        _FILES[name] = (state, src)
    state, src = _FILES[name]
    path = weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, path)
    return state, path


def test_weights_live_in_models_cache_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("TORCH_HOME")
    assert weights_path("vgg16") == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"


def test_vgg16_loads_through_torchvision_from_local_file(no_network):
    state, path = place_fake_weights("vgg16")
    assert weights_status("vgg16")[0] == "present"
    model, spec = load_pretrained("vgg16")
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert len(spec.categories) == 1000 and spec.categories[0] == "tench"
    assert spec.transforms().crop_size == [224]


def test_missing_weights_message_names_file_and_folder(no_network):
    with pytest.raises(WeightsUnavailableError) as e:
        load_pretrained("vgg16")
    msg = str(e.value)
    path = weights_path("vgg16")
    assert "vgg16-397923af.pth" in msg and str(path.parent) in msg and "download" in msg.lower()
    assert not path.exists()  # no half-written file left behind


def test_offline_flag_skips_the_download(monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    assert weights_status("resnet18")[0] == "missing"
    with pytest.raises(WeightsUnavailableError, match="CNNLAB_OFFLINE"):
        fetch_weights("resnet18")


def test_seed_transfer_head_trainable_count(no_network):
    place_fake_weights("vgg16")
    model = transfer_model("vgg16", num_classes=102)
    assert count_params(model, trainable_only=True) == 1_075_046
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 138_357_544 - (4096 * 1000 + 1000)  # everything but the replaced classifier[6]
    finetune = transfer_model("vgg16", num_classes=102, mode="finetune")
    assert count_params(finetune, trainable_only=True) == sum(p.numel() for p in finetune.parameters())


def test_frozen_parameters_get_no_gradient_and_do_not_change(no_network):
    place_fake_weights("resnet18")
    model = transfer_model("resnet18", num_classes=2)
    assert count_params(model, trainable_only=True) == 512 * 2 + 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 0, 1])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        if name.startswith("fc."):
            assert p.grad is not None
            assert not torch.equal(p, before[name])
        else:
            assert p.grad is None
            assert torch.equal(p, before[name])


def test_create_builds_the_pretrained_spec_with_its_weights(no_network):
    from cnnlab.models import create, get_spec

    state, path = place_fake_weights("resnet18")
    model = create("pretrained:resnet18")
    assert torch.equal(model.conv1.weight, state["conv1.weight"]) and not model.training
    assert model.cnnlab_spec is get_spec("resnet18_imagenet") is get_pretrained_spec("resnet18")
    loaded, spec = load_pretrained("resnet18")
    assert spec is model.cnnlab_spec and torch.equal(loaded.fc.weight, state["fc.weight"])
    scratch = create("resnet18_imagenet", weights=None)  # torchvision's own spelling: no weights
    assert not torch.equal(scratch.conv1.weight, state["conv1.weight"])


def test_pretrained_spec_without_its_file(no_network):
    from cnnlab.inspect import summarize
    from cnnlab.models import create

    with pytest.raises(WeightsUnavailableError, match="not allowed") as e:
        create("vgg16_imagenet", download=False)
    assert "python -m cnnlab fetch vgg16`" in str(e.value)
    assert not weights_path("vgg16").exists()
    s = summarize("vgg16_imagenet")  # the meta device needs no weights
    assert s.total_params == 138_357_544 and s.output_shape == (1000,)
    assert not weights_path("vgg16").exists()


def test_alexnet_transfer_new_last_layer(no_network):
    """Seed 002's exercise 3: torchvision AlexNet with ImageNet weights, classifier[6] replaced by
    Linear(4096, classes); frozen features leave 4096*10+10 trainable parameters for 10 classes."""
    from cnnlab.models import create, get_spec, list_models

    spec = get_spec("alexnet_transfer")
    assert spec.family == "transfer" and spec.seed == "002" and "alexnet_transfer" in list_models(family="transfer")
    state, path = place_fake_weights("alexnet")
    model = create("alexnet_transfer", num_classes=10, pretrained=True)
    assert count_params(model, trainable_only=True) == 40_970 == 4096 * 10 + 10
    head = model.classifier[6]
    assert isinstance(head, torch.nn.Linear) and (head.in_features, head.out_features) == (4096, 10)
    assert all(p.requires_grad == n.startswith("classifier.6.") for n, p in model.named_parameters())
    assert torch.equal(model.features[0].weight, state["features.0.weight"])  # ImageNet weights, read by cnnlab
    assert sum(p.numel() for p in model.parameters()) == 61_100_840 - (4096 * 1000 + 1000) + 40_970
    finetune = create("alexnet_transfer", num_classes=10, pretrained=True, mode="finetune")
    assert count_params(finetune, trainable_only=True) == sum(p.numel() for p in finetune.parameters())
    assert torch.equal(finetune.features[0].weight, state["features.0.weight"])
    assert finetune.cnnlab_transfer == {"base": "alexnet", "mode": "finetune", "pretrained": True, "num_classes": 10}


def test_alexnet_transfer_without_its_weights_file(no_network):
    from cnnlab.models import create

    with pytest.raises(WeightsUnavailableError, match="alexnet-owt-7be5be79.pth"):
        create("alexnet_transfer", num_classes=10, pretrained=True)
    assert not weights_path("alexnet").exists()
    with torch.device("meta"):  # shapes only: no file needed
        assert count_params(create("alexnet_transfer", num_classes=10), trainable_only=True) == 61_100_840 - 4_097_000 + 40_970
