"""The zoo: every count a seed prints, a forward pass of every model, and the errors."""

import pytest
import torch

from cnnlab.errors import CnnlabError, InputSizeError, ModelConfigError, UnknownModelError
from cnnlab.models import count_params, create, evaluating, get_spec, list_models


def meta(name, **kw):
    with torch.device("meta"):
        return create(name, **kw)


# (model, kwargs, count printed by the seed, where)
SEED_COUNTS = [
    ("lenet", {}, 44_426, "seed 002: LeNet on MNIST"),
    ("lenet5", {}, 61_706, "seed 003: LeNet5 on MNIST (FC 400)"),
    ("lenet5", {"in_channels": 3, "input_size": 32}, 83_126, "seed 003: LeNet5 on CIFAR-10 (FC 576)"),
    ("mini_vggnet", {}, 123_502, "seed 003: MiniVGGNet on MNIST (FC 800)"),
    ("cifar_resnet", {}, 195_738, "seed 003: ResNet [2,2,2] on CIFAR-10"),
    ("alexnet", {}, 62_071_144, "seed 000: AlexNet at 227x227"),
    ("vgg16", {}, 138_357_544, "seed 000: VGG16"),
    ("vgg16", {"num_classes": 102}, 134_678_438, "seed 000: VGG16 for Caltech101"),
    ("googlenet", {}, 5_832_378, "seed 000: GoogLeNet, 10 classes"),
    ("resnet34", {}, 21_535_626, "seed 000: ResNet [3,4,6,3] basic, 10 classes"),
    ("mlp_100", {}, 79_510, "seed 001: NeuralNet 784-100-10 on MNIST"),
    ("mlp_64", {}, 50_890, "seed 002: question 2's MLP with 64 hidden units"),
]


@pytest.mark.parametrize("name,kwargs,expected,where", SEED_COUNTS, ids=[c[3] for c in SEED_COUNTS])
def test_seed_parameter_counts(name, kwargs, expected, where):
    assert count_params(meta(name, **kwargs)) == expected


def test_lenet_layer_counts_match_seed_text():
    # seed 002 spells out each layer: C1 156, C3 2416, F5 30840, F6 10164, F7 850
    m = meta("lenet")
    assert [count_params(getattr(m, k)) for k in ("C1", "C3", "F5", "F6", "F7")] == [156, 2416, 30840, 10164, 850]
    assert isinstance(m.activation, torch.nn.Tanh) and isinstance(m.S2, torch.nn.AvgPool2d)
    v2 = meta("lenet_v2")
    assert isinstance(v2.activation, torch.nn.ReLU) and isinstance(v2.S2, torch.nn.MaxPool2d)


def test_seed_structures():
    alex = meta("alexnet")
    assert alex.layer2[0].groups == 2
    assert type(alex.layer1[3]).__name__ == "LRN"
    v4 = meta("mini_alexnet_v4")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in v4.modules()) == 4
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in v4.modules()) == 3
    v2 = meta("mini_alexnet_v2")
    assert sum(isinstance(m, torch.nn.Dropout) for m in v2.modules()) == 2
    assert not any(isinstance(m, torch.nn.Dropout) for m in meta("mini_alexnet_v1").modules())
    assert get_spec("mini_alexnet_v3").input_shape == (3, 28, 28)
    conv = meta("cifar_convnet")
    assert (conv.fc1.out_features, conv.fc2.out_features) == (220, 184)
    small = meta("d2l_vgg11_small")
    assert [m.out_channels for m in small.modules() if isinstance(m, torch.nn.Conv2d)] == [16, 32, 64, 64, 128, 128, 128, 128]


ALL = list_models()
BIG_MACS = 1.5e9  # above this the forward pass runs on the meta device


@pytest.mark.parametrize("name", ALL)
def test_forward_at_default_input(name):
    spec = get_spec(name)
    from cnnlab.inspect import summarize

    s = summarize(name)
    assert s.output_shape == (spec.num_classes,)
    if s.total_macs > BIG_MACS or s.total_params > 30e6:
        model = meta(name)
        x = torch.empty(2, *spec.input_shape, device="meta")
    else:
        torch.manual_seed(0)
        model = create(name)
        x = torch.randn(2, *spec.input_shape)
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == (2, spec.num_classes)
    if y.device.type == "cpu":
        assert torch.isfinite(y).all()


def test_spec_fields_complete():
    for name in ALL:
        s = get_spec(name)
        assert s.display_name and s.family and s.paper and s.year > 1980
        assert s.seed in {"000", "001", "002", "003", "004"}
        assert len(s.input_shape) == 3 and s.num_classes >= 1


def test_models_return_logits_not_log_probabilities():
    torch.manual_seed(0)
    y = create("lenet5").eval()(torch.randn(4, 1, 28, 28))
    # log_softmax rows would exponentiate to a sum of 1
    assert not torch.allclose(y.exp().sum(1), torch.ones(4), atol=1e-3)


def test_adaptive_variant_same_weights_any_size():
    assert count_params(meta("alexnet_adaptive")) == count_params(meta("alexnet"))
    m = create("lenet_adaptive").eval()
    assert m(torch.randn(1, 1, 40, 40)).shape == (1, 10)
    m = create("cifar_resnet_adaptive").eval()
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_num_classes_and_channels():
    m = create("lenet", num_classes=3, in_channels=3).eval()
    assert m(torch.randn(2, 3, 28, 28)).shape == (2, 3)


def test_unknown_model_lists_closest_names():
    with pytest.raises(UnknownModelError) as e:
        create("vgg61")
    msg = str(e.value)
    assert "vgg16" in msg and "python -m cnnlab models" in msg
    with pytest.raises(UnknownModelError, match="lenet"):
        get_spec("LeNett")


@pytest.mark.parametrize("kwargs,words", [
    ({"num_classes": 0}, "at least 1"),
    ({"num_classes": -5}, "at least 1"),
    ({"num_classes": 2.5}, "whole number"),
    ({"in_channels": 0}, "between 1 and 64"),
    ({"in_channels": 1000}, "between 1 and 64"),
])
def test_bad_model_arguments(kwargs, words):
    with pytest.raises(ModelConfigError, match=words):
        create("lenet", **kwargs)


def test_fixed_input_model_at_other_size_names_layer_and_size():
    with pytest.raises(InputSizeError) as e:
        create("alexnet", input_size=224)
    msg = str(e.value)
    assert "'flatten'" in msg and "256x6x6" in msg and "3x227x227" in msg and "alexnet_adaptive" in msg

    model = create("lenet").eval()
    with pytest.raises(InputSizeError) as e:
        model(torch.randn(1, 1, 32, 32))
    msg = str(e.value)
    assert "'flatten'" in msg and "16x4x4" in msg and "16x5x5" in msg and "1x28x28" in msg


def test_sized_at_creation_too_small():
    with pytest.raises(InputSizeError, match="smallest square input that works is 1x12x12"):
        create("lenet5", input_size=8)
    assert isinstance(create("lenet5", input_size=12), torch.nn.Module)


def test_errors_are_user_errors():
    for exc in (UnknownModelError, ModelConfigError, InputSizeError):
        assert issubclass(exc, CnnlabError)


def test_importing_the_package_registers_every_model_without_the_inspector():
    """`import cnnlab.models` registers every family (pretrained and transfer included, no lazy
    loader), and neither the package nor its registry imports the inspector."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import cnnlab.models._registry as r\n"
        "registry_alone = 'cnnlab.inspect' in sys.modules\n"
        "import cnnlab.models as m\n"
        "print(json.dumps({'registry_alone': registry_alone, 'package': 'cnnlab.inspect' in sys.modules,\n"
        "                  'families': sorted({s.family for s in r._REGISTRY.values()}),\n"
        "                  'count': len(r._REGISTRY), 'lazy': hasattr(r, '_ensure_loaded')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["registry_alone"] is False and found["package"] is False
    assert found["lazy"] is False
    assert set(found["families"]) >= {"lenet", "alexnet", "vgg", "nin", "googlenet", "resnet", "densenet",
                                      "cifar", "transfer", "pretrained"}
    assert found["count"] == len(list_models(include_pretrained=True)) > 60


def test_models_package_has_no_import_inside_a_function():
    """Imports in cnnlab/models are written at module level (only type-checking imports are guarded)."""
    import ast
    from pathlib import Path

    import cnnlab.models

    offenders = []
    for path in Path(cnnlab.models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                offenders += [f"{path.name}:{n.lineno}" for n in ast.walk(node)
                              if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert offenders == []


def test_pretrained_models_are_specs_of_the_one_registry():
    from cnnlab.errors import WeightsUnavailableError
    from cnnlab.models import pretrained

    names = list_models(family="pretrained")
    assert sorted(names) == ["alexnet_imagenet", "resnet18_imagenet", "vgg16_imagenet"]
    assert not set(names) & set(list_models())  # the zoo's listings (app pages, `cnnlab models`) leave them out
    assert set(names) <= set(list_models(include_pretrained=True))
    spec = get_spec("vgg16_imagenet")
    assert get_spec("pretrained:vgg16") is spec is pretrained.PRETRAINED["vgg16"]
    assert pretrained.get_pretrained_spec("vgg16") is spec
    assert spec.family == "pretrained" and spec.weights.url.endswith(spec.filename)
    assert len(spec.categories) == spec.num_classes == 1000 and spec.transforms().crop_size == [224]
    assert get_spec("lenet").weights is None and get_spec("lenet").categories is None
    # the same architecture as the zoo's seed VGG-16 (138,357,544 parameters); on the meta device
    # the shapes are built without reading any weights file
    assert count_params(meta("vgg16_imagenet")) == count_params(meta("vgg16")) == 138_357_544
    assert count_params(meta("pretrained:resnet18")) == 11_689_512
    with pytest.raises(ModelConfigError, match="vgg16_transfer"):
        create("vgg16_imagenet", num_classes=10)
    with pytest.raises(ModelConfigError, match="RGB"):
        create("alexnet_imagenet", in_channels=1)
    assert pretrained.WeightsUnavailableError is WeightsUnavailableError


def test_user_errors_live_in_errors_module():
    import cnnlab.errors as errors
    import cnnlab.inspect
    import cnnlab.models.pretrained

    assert issubclass(errors.InputTooSmallError, InputSizeError)
    assert issubclass(errors.WeightsUnavailableError, CnnlabError)
    assert cnnlab.inspect.InputTooSmallError is errors.InputTooSmallError
    assert cnnlab.models.pretrained.WeightsUnavailableError is errors.WeightsUnavailableError
    with pytest.raises(errors.InputTooSmallError):
        create("lenet5", input_size=8)


def test_mlps_are_the_seeds_networks():
    """Seed 001's NeuralNet (l1 784->100, ReLU, l2 100->10) and seed 002's 64-hidden-unit MLP, which
    question 2 compares with LeNet: more parameters than LeNet's 44,426 despite one hidden layer."""
    assert list_models(family="mlp") == ["mlp_100", "mlp_64"]
    assert set(list_models(family="mlp")) <= set(list_models())
    for name, hidden, act, seed in (("mlp_100", 100, torch.nn.ReLU, "001"), ("mlp_64", 64, torch.nn.ReLU, "002")):
        spec = get_spec(name)
        assert spec.family == "mlp" and spec.seed == seed and spec.sized_at_creation
        assert spec.input_shape == (1, 28, 28) and spec.num_classes == 10
        m = meta(name)
        assert [type(c) for c in m.children()][1:] == [torch.nn.Linear, act, torch.nn.Linear]
        assert (m.l1.in_features, m.l1.out_features, m.l2.out_features) == (784, hidden, 10)
        assert [count_params(m.l1), count_params(m.l2)] == [784 * hidden + hidden, hidden * 10 + 10]
    assert count_params(meta("mlp_64")) > count_params(meta("lenet")) == 44_426


def test_mlp_first_layer_sized_from_channels_and_input_size():
    m = meta("mlp_100", in_channels=3, input_size=32, num_classes=100)
    assert m.l1.in_features == 3 * 32 * 32 and count_params(m) == 3072 * 100 + 100 + 100 * 100 + 100
    m = create("mlp_64", in_channels=3, input_size=(16, 20), num_classes=4).eval()
    torch.manual_seed(0)
    y = m(torch.randn(2, 3, 16, 20))
    assert y.shape == (2, 4)
    assert not torch.allclose(y.exp().sum(1), torch.ones(2), atol=1e-3)  # logits, not log-probabilities
    with pytest.raises(InputSizeError) as e:
        m(torch.randn(1, 3, 28, 28))
    msg = str(e.value)
    assert "'flatten'" in msg and "3x16x20" in msg and "input_size" in msg and "_adaptive" not in msg


def test_mlp_summary_and_activations():
    from cnnlab.activations import capture_activations
    from cnnlab.inspect import summarize

    s = summarize("mlp_100")
    assert s.total_params == 79_510 and s.output_shape == (10,)
    assert [(r.name, r.output_shape, r.params) for r in s.rows if r.is_leaf] == [
        ("flatten", (784,), 0), ("l1", (100,), 78_500), ("act", (100,), 0), ("l2", (10,), 1_010)]
    acts = capture_activations(create("mlp_100").eval(), torch.randn(2, 1, 28, 28), ["l1", "act"])
    assert acts["l1"].shape == acts["act"].shape == (2, 100) and (acts["act"] >= 0).all()


def test_sized_at_creation_models_do_not_suggest_a_missing_adaptive_twin():
    with pytest.raises(InputSizeError) as e:
        create("lenet5").eval()(torch.randn(1, 1, 32, 32))
    assert "lenet5_adaptive" not in str(e.value) and "input_size" in str(e.value)
    with pytest.raises(UnknownModelError):
        get_spec("lenet5_adaptive")


def test_count_params_counts_all_or_only_the_trainable():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))  # 15 + 8 weights
    assert count_params(model) == count_params(model, trainable_only=True) == 23
    model[0].requires_grad_(False)
    assert (count_params(model), count_params(model, trainable_only=True)) == (23, 8)


def test_evaluating_restores_every_module_mode_even_on_error():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(3)).train()
    model[1].eval()  # a mixed model: each module gets its own mode back
    with evaluating(model) as same:
        assert same is model and not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False]
    with pytest.raises(RuntimeError, match="inside"), evaluating(model):
        raise RuntimeError("inside")
    assert [m.training for m in model.modules()] == [True, True, False]
