"""Every zoo model written out as plain PyTorch (cnnlab.export.modelcode): the same layers and parameter count
(meta device, every model), the same outputs with the same weights (the models small enough to run here,
on small inputs), and the same initial weights from the same seed (the small ones)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.export import ExportError, model_code
from cnnlab.models import count_params, create, get_spec, list_models
from cnnlab.models._input_checks import smallest_input

MODELS = list_models(include_pretrained=True)
MAX_RUN_PARAMS = 30_000_000  # outputs compared below this (both copies in memory, a forward on a small input)
MAX_INIT_PARAMS = 3_000_000  # initial weights compared below this (a seeded random initialisation of both)


def kwargs_of(name: str) -> dict:
    spec = get_spec(name)
    classes = spec.num_classes if spec.family == "pretrained" else 7
    return {"num_classes": classes, "in_channels": spec.input_shape[0], "input_size": spec.input_shape[1:]}


def written(name: str, **kw) -> tuple[dict, str]:
    code = model_code(name, kwargs_of(name), **kw)
    namespace: dict = {"__name__": "exported"}
    exec(code.code.text(), namespace)
    return namespace, code.offline_build  # the ImageNet weights of a pretrained model are not downloaded here


def build(namespace: dict, build_code: str, device: str = "cpu") -> nn.Module:
    with torch.device(device):
        exec(build_code, namespace)
    return namespace["model"]


def layer_types(model: nn.Module) -> list[tuple[str, str]]:
    return [(n, type(m).__name__) for n, m in model.named_modules()]


def test_every_model_of_the_zoo_is_covered():
    assert len(MODELS) > 60
    assert {"lenet", "cifar_resnet", "googlenet", "d2l_densenet", "resnet50", "vgg16_transfer"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_written_model_has_the_same_layers_and_parameter_count(name):
    with torch.device("meta"):
        original = create(name, **kwargs_of(name))
    namespace, build_code = written(name)
    assert "cnnlab" not in build_code
    again = build(namespace, build_code, "meta")
    assert count_params(again) == count_params(original)
    assert [(k, v.shape) for k, v in again.state_dict().items()] == [(k, v.shape) for k, v in original.state_dict().items()]
    assert layer_types(again) == layer_types(original)
    assert not any(m.startswith("cnnlab") for m in {type(x).__module__ for x in again.modules()})


def random_state(model: nn.Module, seed: int) -> dict:
    """Weights that are not the initialisation: any mix-up of layers changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            state[k] = torch.zeros_like(v, device="cpu")
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.05
    return state


def small_input(name: str, model: nn.Module) -> tuple[int, int, int] | None:
    """The model's fixed input, or a small square one for size-free models; None when it is 224 wide."""
    spec = get_spec(name)
    c, h, w = spec.input_shape
    if spec.fixed_input or spec.family == "pretrained":
        return (c, h, w) if h * w <= 64 * 64 else None
    return (c, *(max(32, smallest_input(model, c) or 0),) * 2)


RUNNABLE = [n for n in MODELS if get_spec(n).family != "pretrained"]


def covering_models() -> list[str]:
    """The runnable models, each kind of layer in the first (smallest) one that has it: a model whose every
    layer class was already run (ResNet-34 after ResNet-18) adds nothing but time."""
    kept, seen, sized = [], set(), []
    for name in RUNNABLE:
        with torch.device("meta"):
            model = create(name, **kwargs_of(name))
        if count_params(model) <= MAX_RUN_PARAMS and small_input(name, model) is not None:
            sized.append((count_params(model), name, {type(m).__name__ for m in model.modules()}))
    for _, name, types in sorted(sized):
        if not types <= seen:
            kept.append(name)
            seen |= types
    return [*kept, "lenet_adaptive"]  # and the flatten's adaptive pooling


@pytest.mark.parametrize("name", covering_models())
def test_written_model_gives_the_same_outputs_with_the_same_weights(name):
    with torch.device("meta"):
        shape_probe = create(name, **kwargs_of(name))
    shape = small_input(name, shape_probe)
    original = shape_probe.to_empty(device="cpu").eval()
    namespace, build_code = written(name)
    again = build(namespace, build_code, "meta").to_empty(device="cpu").eval()
    state = random_state(original, 0)
    original.load_state_dict(state)
    again.load_state_dict(state)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(again(x), original(x))


SMALL = [n for n in RUNNABLE if n.startswith(("lenet", "mlp", "cifar", "mini_vggnet", "d2l_densenet"))]


@pytest.mark.parametrize("name", SMALL)
def test_same_seed_same_initial_weights(name):
    # the written classes create their layers in cnnlab's order: a notebook seeded like the run starts where it did
    namespace, build_code = written(name)
    torch.manual_seed(5)
    original = create(name, **kwargs_of(name))
    torch.manual_seed(5)
    again = build(namespace, build_code)
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), again.state_dict().values()))


def test_a_transfer_model_is_written_as_the_seeds_write_it():
    code = model_code("vgg16_transfer", {"num_classes": 5, "in_channels": 3, "input_size": (224, 224)},
                      pretrained=True, freeze=True)
    lines = code.build.splitlines()
    assert lines[0].startswith("model = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)")
    assert lines[1].startswith("for p in model.parameters():") and lines[2].strip() == "p.requires_grad = False"
    assert lines[3].startswith("model.classifier[6] = nn.Sequential(nn.Linear(4096, 256), nn.ReLU(), nn.Dropout(p=0.4), "
                               "nn.Linear(256, 5))")
    scratch = model_code("resnet18_transfer", {"num_classes": 2, "in_channels": 3, "input_size": (224, 224)})
    assert scratch.build.splitlines()[0].startswith("model = torchvision.models.resnet18(weights=None)")
    assert "model.fc = nn.Linear(512, 2)" in scratch.build and "requires_grad" not in scratch.build


def test_a_layer_from_outside_torch_and_cnnlab_is_refused(monkeypatch):
    from cnnlab.models import _registry

    class Odd(nn.Module):
        def forward(self, x):
            return x.flatten(1)

    spec = _registry.ModelSpec("odd_test", "Odd", "test", 2026, "", "", (1, 8, 8), 2,
                               builder=lambda num_classes=2, in_channels=1: nn.Sequential(Odd(), nn.Linear(64, num_classes)))
    monkeypatch.setitem(_registry._REGISTRY, "odd_test", spec)
    with pytest.raises(ExportError, match=r"layer 'model.0' is a .*Odd, which cannot be written out"):
        model_code("odd_test", {"num_classes": 2, "in_channels": 1})
