"""Per-layer inspection: numbers checked by hand, and every bad input."""

import math

import pytest
import torch
from torch import nn

from cnnlab.errors import InputSizeError, InputTooSmallError
from cnnlab.inspect import (
    conv_output_size,
    output_size_formula,
    param_arithmetic,
    smallest_input,
    summarize,
)
from cnnlab.models import create, list_models


def test_lenet_table_by_hand():
    s = summarize("lenet")
    c1, s2, c3, s4 = (s.row(n) for n in ("C1", "S2", "C3", "S4"))
    assert c1.output_shape == (6, 24, 24) and s2.output_shape == (6, 12, 12)
    assert c3.output_shape == (16, 8, 8) and s4.output_shape == (16, 4, 4)
    # MACs of a convolution: H_out * W_out * C_out * C_in * k * k
    assert c1.macs == 24 * 24 * 6 * 1 * 5 * 5 == 86_400
    assert c3.macs == 8 * 8 * 16 * 6 * 5 * 5
    assert s.row("F5").macs == 256 * 120
    assert s.total_macs == 86_400 + 153_600 + 30_720 + 10_080 + 840
    # receptive field of the stack conv5 -> pool2 -> conv5 -> pool2: 5, 6, 14, 16; jumps 1, 2, 2, 4
    assert [r.receptive_field[0] for r in (c1, s2, c3, s4)] == [5, 6, 14, 16]
    assert [r.jump[0] for r in (c1, s2, c3, s4)] == [1, 2, 2, 4]
    assert s.row("F7").global_rf
    assert c1.formula == "floor((28 - 5 + 2*0) / 1) + 1 = 24"
    assert s2.formula == "floor((24 - 2 + 2*0) / 2) + 1 = 12"
    assert s.total_params == s.trainable_params == 44_426
    assert s.param_bytes == 44_426 * 4
    # every leaf output in float32 (C1 3456, S2 864, tanh 864, C3 1024, S4 256, tanh 256,
    # flatten 256, F5 120, tanh 120, F6 84, tanh 84, F7 10)
    assert s.activation_bytes == 4 * (3456 + 864 + 864 + 1024 + 256 + 256 + 256 + 120 + 120 + 84 + 84 + 10)
    assert s.depth() == 5
    assert s.output_shape == (10,)


def test_vgg16_known_numbers():
    s = summarize("vgg16")
    assert s.total_params == 138_357_544
    assert s.row("features.28").receptive_field == (196, 196)  # conv5_3
    assert s.row("features.30").receptive_field == (212, 212)  # pool5
    assert s.row("features.30").jump == (32, 32)
    assert s.row("features.30").output_shape == (512, 7, 7)
    assert round(s.total_macs / 1e9, 2) == 15.47


def test_branches_and_residuals_propagate():
    s = summarize("googlenet")
    assert s.total_params == 5_832_378
    assert s.row("a3").output_shape == (256, 28, 28)
    assert s.row("a3.b2.2").receptive_field is not None
    r = summarize("cifar_resnet")
    assert r.row("layer3").output_shape == (64, 8, 8)
    assert r.row("layer3.1.conv2").receptive_field[0] > r.row("layer1.0.conv1").receptive_field[0]


def test_container_macs_sum_leaves_and_shared_module_params_once():
    s = summarize("cifar_convnet")
    assert s.rows[0].macs == s.total_macs
    # the seed reuses one pooling module twice: it appears twice (its second call as pool#2), parameters once
    assert [r.name for r in s.rows if r.name.split("#")[0] == "pool"] == ["pool", "pool#2"]
    assert sum(r.params for r in s.leaf_rows) == s.total_params


def test_formula_helpers():
    assert conv_output_size(227, 11, 0, 4) == 55
    assert conv_output_size(7, 3, 1, 2) == 4
    assert output_size_formula(227, 11, 0, 4) == "floor((227 - 11 + 2*0) / 4) + 1 = 55"
    assert conv_output_size(5, 2, 0, 2, ceil_mode=True) == 3


def test_model_instance_and_other_sizes():
    s = summarize(create("d2l_resnet18"), "3x64x64")
    assert s.output_shape == (10,)
    assert s.row("4").output_shape == (512, 2, 2)
    s = summarize("lenet5", "3x32x32")
    assert s.total_params == 83_126


def test_too_small_names_first_empty_layer_and_smallest_input():
    with pytest.raises(InputTooSmallError) as e:
        summarize("alexnet", "3x32x32")
    msg = str(e.value)
    assert "layer2.2" in msg and "3x32x32" in msg and "3x227x227" in msg

    with pytest.raises(InputTooSmallError) as e:
        summarize("d2l_nin", "3x40x40")
    msg = str(e.value)
    side = smallest_input(create("d2l_nin"), 3)
    assert f"3x{side}x{side}" in msg
    summarize("d2l_nin", f"3x{side}x{side}")  # the advertised size really works
    with pytest.raises(InputTooSmallError):
        summarize("d2l_nin", f"3x{side - 1}x{side - 1}")


def test_wrong_channels_for_a_built_model():
    with pytest.raises(InputSizeError, match="expects 1 input channels but receives 3"):
        summarize(create("lenet"), "3x28x28")


@pytest.mark.parametrize("shape", ["3x", "axbxc", "0x28x28", "3x-1x28", "1x2x3x4"])
def test_unreadable_shapes(shape):
    with pytest.raises(InputSizeError):
        summarize("lenet", shape)


def test_summary_does_not_touch_callers_model():
    m = create("lenet")
    before = m.C1.weight.detach().clone()
    summarize(m)
    assert m.C1.weight.device.type == "cpu" and torch.equal(m.C1.weight, before)


def test_table_text():
    text = summarize("lenet").format_table()
    assert "C1" in text and "44,426" in text and "86,400" in text and "receptive field" in text


def test_bench_inspect_reports_both_timings(capsys):
    from cnnlab.cli import main

    assert main(["bench", "inspect", "--model", "lenet", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "one real forward pass" in out and "meta device" in out and "faster" in out


def test_shared_modules_and_identity_shortcuts_are_named_for_what_they_are():
    """LeNet's one Tanh, used four times, is listed as its four calls (named as capture_activations
    names them); a ResNet's empty Sequential shortcut says it is an identity."""
    from cnnlab.inspect import summarize

    names = [r.name for r in summarize("lenet").rows]
    assert [n for n in names if n.startswith("activation")] == ["activation", "activation#2", "activation#3",
                                                                "activation#4"]
    rows = {r.name: r for r in summarize("resnet18").rows}
    assert rows["conv2_x.0.shortcut"].type == "Identity (empty Sequential)" and rows["conv2_x.0.shortcut"].params == 0
    assert rows["conv3_x.0.shortcut"].type == "Sequential"  # a projection shortcut keeps its name


def _evaluate_arithmetic(text: str) -> tuple[int, int]:
    """'6x5x5x1+6 = 156' -> (value of the left side computed here, the count on the right)."""
    left, right = text.split(" = ")
    value = sum(math.prod(int(f) for f in term.split("x")) for term in left.split("+"))
    return value, int(right.replace(",", ""))


def test_parameter_arithmetic_reads_like_convnetjs():
    s = summarize("lenet")
    assert s.row("C1").param_formula == "6x5x5x1+6 = 156"
    assert s.row("C1").param_words == "6 filters of 5x5 over 1 input channel, plus 6 biases"
    assert s.row("C3").param_formula == "16x5x5x6+16 = 2,416"
    assert s.row("F5").param_formula == "120x256+120 = 30,840"
    assert s.row("S2").param_formula is None  # pooling learns nothing
    grouped = nn.Conv2d(96, 256, 5, groups=2)
    formula, words = param_arithmetic(grouped)
    assert formula == "256x5x5x48+256 = 307,456" and "96 / 2 groups" in words
    assert param_arithmetic(nn.BatchNorm2d(64))[0] == "64+64 = 128"
    assert param_arithmetic(nn.Conv2d(3, 8, 3, bias=False))[0] == "8x3x3x3 = 216"
    assert param_arithmetic(nn.PReLU(4))[0] == "4 = 4"  # any other layer: its tensors' shapes
    assert param_arithmetic(nn.ReLU()) is None


@pytest.mark.parametrize("name", list_models())
def test_parameter_arithmetic_adds_up_for_every_zoo_model(name):
    s = summarize(name)
    counted = 0
    for row in s.leaf_rows:
        if row.params == 0:
            assert row.param_formula is None, row.name
            continue
        assert row.param_formula, f"{name}: {row.name} ({row.type}) has {row.params} parameters but no arithmetic"
        value, stated = _evaluate_arithmetic(row.param_formula)
        assert value == stated == row.params, (name, row.name, row.param_formula)
        counted += row.params
    assert counted == s.total_params  # every parameter of the model is in some layer's arithmetic
