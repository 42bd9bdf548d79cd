"""cnnlab.convolution: every explained output is PyTorch's own number, worked out from listed products.

The property tests draw random sizes, channels, kernels, padding, stride, dilation and groups (a seeded
loop): the sandbox's output is torch.nn.functional's, each explained value is the sum of its products
plus the bias (or the pooling's max, or sum over divisor), and the formula's size is the real size. On
real layers (every convolution and pooling of every zoo model, and a trained run) the explained value
equals the feature map captured by a forward hook; the receptive field matches the Architectures
table's column and the gradient's support.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cnnlab import convolution as cv
from cnnlab.errors import ConfigError, InputSizeError, LayerNotFoundError
from cnnlab.inspect import summarize
from cnnlab.models import count_params, create, get_spec, list_models
from cnnlab.models._input_checks import check_input


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: these tensors are tiny, and waking a second thread for each microsecond-long
    operation made the loops 14 times slower on a busy 2-core machine (measured: 3.4 s against 0.24 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- typed numbers, presets and inputs -----------------------------------------------------------


def test_typed_numbers_become_channels_rows_and_columns():
    t = cv.parse_matrix("1,2,3;4,5,6|7,8,9;1,2,3")
    assert t.shape == (2, 2, 3) and t.dtype == torch.float64
    assert t[1].tolist() == [[7, 8, 9], [1, 2, 3]]
    assert cv.parse_matrix(" 1 2 ; 3 -0.5 ;").tolist() == [[[1, 2], [3, -0.5]]]  # spaces, a trailing ';'
    assert cv.parse_matrix("1/9")[0, 0, 0].item() == pytest.approx(1 / 9)


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("   ", "empty"),
    ("1,2,3;4,5", "same count"),
    ("1,2;3,4|1,2,3;4,5,6", "same size"),
    ("1,x;3,4", "'x' is not a number"),
    ("1,nan", "not a finite number"),
    ("1,1e400", "not a finite number"),
    ("1;;2", "row 2 of channel 1 of the input is empty"),
    (";".join(["1"] * 13), "13 rows; at most 12"),
    (",".join(["1"] * 13), "13 numbers; at most 12"),
    ("|".join(["1"] * 4), "4 channels; at most 3"),
    ("1," * 20_000, "characters long"),
])
def test_a_bad_matrix_says_what_is_wrong(text, words):
    with pytest.raises(ConfigError, match=words):
        cv.parse_matrix(text)


def test_presets_kernels_and_inputs():
    assert set(cv.PRESETS) == {"identity", "box_blur", "sharpen", "vertical_edges", "horizontal_edges"}
    for name in cv.PRESETS:
        assert cv.read_kernel(name).shape == (1, 3, 3)
    assert cv.read_kernel("box blur").sum().item() == pytest.approx(1.0)
    assert cv.read_kernel("1,0,-1").shape == (1, 1, 3)
    with pytest.raises(ConfigError, match="preset"):
        cv.read_kernel("blur")
    with pytest.raises(ConfigError, match="at most 7"):
        cv.read_kernel(";".join(["1,1"] * 8))
    digit = cv.read_input("digit:5")
    assert digit.shape == (1, 8, 8) and 0 <= digit.min() and digit.max() <= 16
    assert torch.equal(cv.read_input("digit"), cv.digit_input(0))
    photo, grey = cv.read_input("photo"), cv.read_input("photo:camera")
    assert photo.shape == (3, 12, 12) and grey.shape == (1, 12, 12) and 0 <= photo.min() and photo.max() <= 255
    with pytest.raises(ConfigError, match="between 0 and 1796, got 5000"):
        cv.read_input("digit:5000")
    with pytest.raises(ConfigError, match="photo:NAME"):
        cv.read_input("picture")


# --- the formula -----------------------------------------------------------------------------------


def test_the_formula_is_written_with_the_numbers():
    f = cv.size_formula("W", 7, 3, 1, 1)
    assert f.text == "(W - F + 2P) / S + 1 = (7 - 3 + 2x1) / 1 + 1 = 7" and f.result == 7 and f.note == ""
    dilated = cv.size_formula("H", 7, 3, 0, 1, dilation=2)
    assert dilated.text == "(H - (D(F-1)+1) + 2P) / S + 1 = (7 - (2x(3-1)+1) + 2x0) / 1 + 1 = 3"
    floor = cv.size_formula("W", 8, 3, 0, 2)
    assert floor.text.startswith("floor((W - F + 2P) / S) + 1 = floor((8 - 3 + 2x0) / 2) + 1 = floor(2.5) + 1 = 3")
    assert "1 column(s)" in floor.note
    ceil = cv.size_formula("H", 3, 2, 1, 2, ceil_mode=True)  # the last window would start in the padding
    assert ceil.result == F.max_pool2d(torch.zeros(1, 1, 3, 3), 2, 2, 1, ceil_mode=True).shape[-2] == 2
    assert ceil.text.endswith("= 3, less the last window = 2") and "drops it" in ceil.note


# --- the property tests ----------------------------------------------------------------------------


def _conv_case(rng: random.Random) -> dict:
    c = rng.randint(1, 3)
    groups = rng.choice([g for g in (1, 2, 3) if c % g == 0])
    return dict(c=c, h=rng.randint(1, 12), w=rng.randint(1, 12), kh=rng.randint(1, 5), kw=rng.randint(1, 5),
                padding=rng.randint(0, 3), stride=rng.randint(1, 4), dilation=rng.randint(1, 3), groups=groups,
                out=groups * rng.randint(1, 2))


def _check_explained(op: cv.Operation, x: torch.Tensor, expected: torch.Tensor, rng: random.Random) -> None:
    """Every output (or 12 random ones) explained: PyTorch's value, from the listed numbers."""
    positions = [(k, r, c) for k in range(expected.shape[0]) for r in range(expected.shape[1])
                 for c in range(expected.shape[2])]
    for k, r, c in rng.sample(positions, min(12, len(positions))):
        e = op.explain(x, k, r, c)
        assert e.value == pytest.approx(expected[k, r, c].item(), abs=1e-9)
        if e.op == "conv":
            terms = [p for w in e.windows for row in w.products for p in row]
            assert e.value == pytest.approx(math.fsum(terms) + e.bias, abs=1e-9)
            assert [w.channel for w in e.windows] == list(range(e.group * x.shape[0] // op.groups,
                                                               (e.group + 1) * x.shape[0] // op.groups))
        elif e.op.endswith("max"):
            i, j = e.winner
            assert e.windows[0].values[i][j] == e.value == max(v for row in e.windows[0].values for v in row)
        else:
            assert e.value == pytest.approx(math.fsum(v for row in e.windows[0].values for v in row) / e.divisor)


def test_random_convolutions_are_pytorchs_and_add_up():
    rng = random.Random(0)
    checked = 0
    for _ in range(200):
        s = _conv_case(rng)
        x = torch.randn(s["c"], s["h"], s["w"], dtype=torch.float64)
        weight = torch.randn(s["out"], s["c"] // s["groups"], s["kh"], s["kw"], dtype=torch.float64)
        bias = torch.randn(s["out"], dtype=torch.float64)
        geometry = cv.Geometry((s["kh"], s["kw"]), (s["stride"],) * 2, (s["padding"],) * 2, (s["dilation"],) * 2)
        try:
            expected = F.conv2d(x[None], weight, bias, s["stride"], s["padding"], s["dilation"], s["groups"])[0]
        except RuntimeError:  # the kernel does not fit: the formula says so with a size below 1
            assert min(geometry.output_size((s["h"], s["w"]))) < 1
            continue
        op = cv.Operation("conv", geometry, weight, bias, s["groups"])
        assert geometry.output_size((s["h"], s["w"])) == tuple(expected.shape[-2:])
        assert torch.equal(op.forward(x), expected)
        _check_explained(op, x, expected, rng)
        checked += 1
    assert checked > 120  # most cases fit


def test_the_sandbox_refuses_exactly_what_pytorch_cannot_do():
    """A sandbox is made whenever PyTorch computes a non-empty output (within the sandbox's limits), and
    refused with a reason otherwise; its output is then F.conv2d's."""
    rng = random.Random(1)
    for _ in range(200):
        s = _conv_case(rng)
        x = torch.randn(s["c"], s["h"], s["w"], dtype=torch.float64)
        kernel = torch.randn(rng.choice([1, s["c"]]), s["kh"], s["kw"], dtype=torch.float64)
        try:
            sb = cv.conv_sandbox(x, kernel, 0.5, s["stride"], s["padding"], s["dilation"], s["groups"])
        except ConfigError as e:
            assert "kernel spans" in str(e)
            with pytest.raises(RuntimeError):
                F.conv2d(x[None], kernel.expand(s["c"], -1, -1)[None], None, s["stride"], s["padding"], s["dilation"])
            continue
        weight = kernel.expand(s["c"], -1, -1).reshape(s["groups"], s["c"] // s["groups"], s["kh"], s["kw"])
        expected = F.conv2d(x[None], weight, torch.full((s["groups"],), 0.5, dtype=torch.float64), s["stride"],
                            s["padding"], s["dilation"], s["groups"])[0]
        assert torch.equal(sb.output, expected)
        assert [f.result for f in sb.formulas()] == list(expected.shape[-2:]) == list(sb.output_size)
        _check_explained(sb.operation, x, expected, rng)


def test_random_poolings_are_pytorchs():
    rng = random.Random(2)
    for case in range(200):
        kind = rng.choice(["max", "avg"])
        k = rng.randint(1, 4)
        stride, padding, ceil = rng.randint(1, 4), rng.randint(0, k // 2), rng.random() < 0.5
        dilation = rng.randint(1, 2) if kind == "max" else 1
        x = torch.randn(rng.randint(1, 3), rng.randint(1, 12), rng.randint(1, 12), dtype=torch.float64)
        include = rng.random() < 0.5
        try:
            sb = cv.pool_sandbox(x, kind, k, stride, padding, dilation, ceil, include)
        except ConfigError as e:
            assert "kernel spans" in str(e)
            continue
        if kind == "max":
            expected = F.max_pool2d(x[None], k, stride, padding, dilation, ceil)[0]
        else:
            expected = F.avg_pool2d(x[None], k, stride, padding, ceil, include)[0]
        assert torch.equal(sb.output, expected), case
        assert [f.result for f in sb.formulas()] == list(expected.shape[-2:])
        _check_explained(sb.operation, x, expected, rng)


def test_adaptive_pooling_bins_are_pytorchs():
    rng = random.Random(3)
    for _ in range(50):
        x = torch.randn(2, rng.randint(1, 12), rng.randint(1, 12), dtype=torch.float64)
        bins = (rng.randint(1, 7), rng.randint(1, 7))
        for op, pool in (("adaptive_avg", F.adaptive_avg_pool2d), ("adaptive_max", F.adaptive_max_pool2d)):
            operation = cv.Operation(op, None, bins=bins)
            expected = pool(x[None], bins)[0]
            assert torch.equal(operation.forward(x), expected)
            _check_explained(operation, x, expected, rng)


# --- what the sandbox says ---------------------------------------------------------------------------


def test_one_output_in_words_with_padding_marked():
    sb = cv.conv_sandbox("1,2,3;4,5,6;7,8,9", "1,1;1,1", bias=0.5, padding=1)
    e = sb.explain(0, 0, 0)
    assert e.rows == [0, 1] and e.cols == [0, 1] and e.padding == (1, 1)
    assert e.cells == [["padding", "padding"], ["padding", "input"]]
    assert e.windows[0].values == [[0, 0], [0, 1]] and e.value == 1.5 == sb.output[0, 0, 0].item()
    lines = e.lines()
    assert "0(pad)x1 + 0(pad)x1 + 0(pad)x1 + 1x1 = 1" in lines[1] and lines[-1] == "plus the bias: 1 + 0.5 = 1.5"
    assert sb.padded_input()[0][0] == [0.0] * 5 and len(sb.positions()) == 16


def test_three_channels_add_their_sums_into_one_number():
    """Seed 001's question: the three per-channel sums, side by side, then one number."""
    sb = cv.conv_sandbox("1;2|10;20|100;200", "1;1")
    e = sb.explain(0, 0, 0)
    assert [w.total for w in e.windows] == [3, 30, 300] and e.total == 333 == sb.output[0, 0, 0]
    assert "sum over 3 input channel(s): 3 + 30 + 300 = 333" in e.lines()


def test_groups_give_each_filter_its_share_of_the_channels():
    sb = cv.conv_sandbox("1|2|3", "1", groups=3)
    assert sb.output.flatten().tolist() == [1, 2, 3]
    e = sb.explain(2, 0, 0)
    assert e.group == 2 and [w.channel for w in e.windows] == [2]
    assert "group 2 of 3: this filter sees input channels 2..2 only" in e.lines()
    own = cv.conv_sandbox("1|2|3", "1|10|100", groups=3)  # one kernel channel per input channel
    assert own.output.flatten().tolist() == [1, 20, 300]


@pytest.mark.parametrize("make, words", [
    (lambda: cv.conv_sandbox("1,2;3,4", "1", stride=0), "stride 0: the window must move"),
    (lambda: cv.conv_sandbox("1,2;3,4", "1", stride=-1), "stride -1"),
    (lambda: cv.conv_sandbox("1,2;3,4", "1", padding=-1), "padding -1"),
    (lambda: cv.conv_sandbox("1,2;3,4", "1", dilation=0), "dilation 0"),
    (lambda: cv.conv_sandbox("1|2|3", "1", groups=2), "groups=2 does not divide the 3 input channel"),
    (lambda: cv.conv_sandbox("1,2;3,4", "1,2,3;4,5,6;7,8,9"), "kernel spans 3 rows .* only 2 \\+ 2x0 = 2"),
    (lambda: cv.conv_sandbox("1,2,3;4,5,6;7,8,9", "1,2;3,4", dilation=3), "dilation 3"),
    (lambda: cv.conv_sandbox("1|2|3", "1|2"), "kernel has 2 channels but the input has 3"),
    (lambda: cv.conv_sandbox(torch.zeros(1, 13, 2), "1"), "at most 3 channels of 12x12"),
    (lambda: cv.conv_sandbox("1,2;3,4", "1").explain(0, 2, 0), "outside the 2x2 output"),
    (lambda: cv.conv_sandbox("1,2;3,4", "1").explain(1, 0, 0), "channels 0 to 0"),
    (lambda: cv.pool_sandbox("1,2;3,4", "max", 2, padding=2), "at most half the window"),
    (lambda: cv.pool_sandbox("1,2;3,4", "avg", 1, dilation=2), "average pooling has no dilation"),
    (lambda: cv.pool_sandbox("1,2;3,4", "min"), "choose max or avg"),
])
def test_impossible_settings_say_why(make, words):
    with pytest.raises(ConfigError, match=words):
        make()


def test_pooling_explained_which_cell_wins_and_what_divides():
    sb = cv.pool_sandbox("1,2,3;4,5,6;7,8,9", "max", 2, padding=1)
    e = sb.explain(0, 0, 1)
    assert e.windows[0].values[0] == [-math.inf, -math.inf] and e.winner == (1, 1) and e.value == 3
    assert "padding never wins" in e.lines()[1]
    avg = cv.pool_sandbox("1,2,3;4,5,6;7,8,9", "avg", 2, padding=1, count_include_pad=False)
    a = avg.explain(0, 0, 0)
    assert a.divisor == 1 and a.value == 1 and "count_include_pad=False" in a.lines()[-1]
    assert cv.pool_sandbox("1,2,3;4,5,6;7,8,9", "avg", 2, padding=1).explain(0, 0, 0).divisor == 4


def test_relu_and_softmax_worked_out():
    assert cv.explain_relu(-3).line == "ReLU(-3) = max(0, -3) = 0" and cv.explain_relu(2.5).result == 2.5
    sb = cv.conv_sandbox("1,-2", "1", relu=True)
    assert sb.output.flatten().tolist() == [1, 0] and sb.explain(0, 0, 1).result == 0
    s = cv.explain_softmax("1000, 999, 0")  # exp(1000) overflows: the largest is subtracted first
    assert s.shifted == [0, -1, -1000] and s.probabilities == pytest.approx(
        torch.softmax(torch.tensor([1000.0, 999.0, 0.0], dtype=torch.float64), 0).tolist())
    assert "subtract the largest logit, 1000" in s.lines()[0]
    with pytest.raises(ConfigError, match="not a number"):
        cv.explain_softmax("1, two")


def test_the_sliding_window_gif_has_a_frame_per_output(tmp_path):
    sb = cv.conv_sandbox("photo", "sharpen", padding=1, stride=3)
    path = tmp_path / "conv.gif"
    assert cv.write_gif(sb, path) == len(sb.positions()) == 16
    with Image.open(path) as gif:
        assert gif.width >= 800 and gif.n_frames == 16
        gif.seek(5)  # a frame drawn as the part that changed, laid over the ones before
        shown = gif.convert("RGB")
    assert np.array_equal(np.asarray(shown), np.asarray(cv.draw_frame(sb, 0, 1, 1).convert("RGB")))


# --- real layers -------------------------------------------------------------------------------------


def test_a_real_layer_explained_equals_its_feature_map():
    torch.manual_seed(0)
    model = create("lenet")
    x = torch.randn(1, 1, 28, 28)
    found = cv.explain_layer(model, "C3", x, 5, 3, 7)
    assert found.agrees and found.difference < 1e-5
    assert len(found.explanation.windows) == 6 and found.explanation.bias == model.C3.bias[5].item()
    from cnnlab.activations import capture_activations

    assert found.feature_map_value == capture_activations(model, x, ["C3"])["C3"][0, 5, 3, 7].item()
    assert model.training  # the mode it had is given back


def test_the_capture_runs_without_autocast():
    """Inside a caller's bfloat16 autocast the layer still runs in float32: the explanation agrees."""
    torch.manual_seed(0)
    model = create("lenet")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        found = cv.explain_layer(model, "C3", torch.randn(1, 1, 28, 28), 2, 4, 4)
    assert found.agrees and found.difference < 1e-5


def test_a_layer_that_does_not_compute_windows_lists_those_that_do():
    model = create("lenet")
    with pytest.raises(ConfigError, match="'F5' is a Linear, not a convolution or pooling; these are: C1, S2, C3, S4"):
        cv.explain_layer(model, "F5", torch.randn(1, 1, 28, 28), 0, 0, 0)
    with pytest.raises(LayerNotFoundError, match="C9"):
        cv.explain_layer(model, "C9", torch.randn(1, 1, 28, 28), 0, 0, 0)
    with pytest.raises(ConfigError, match="outside the 8x8 output"):
        cv.explain_layer(model, "C3", torch.randn(1, 1, 28, 28), 0, 10, 0)


def test_alexnets_groups_say_which_channels_a_filter_sees():
    with torch.device("meta"):
        model = create("alexnet")
    grouped = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 2]
    assert grouped
    name, conv = grouped[0]
    cap = cv.capture_layer(model, name, torch.empty(1, 3, 227, 227, device="meta"))
    half = conv.in_channels // 2
    assert cap.group_channels(0) == list(range(half)) and cap.group_channels(conv.out_channels - 1) == list(
        range(half, 2 * half))


def _materialised(module: nn.Module) -> nn.Module:
    """A layer built on the meta device, given real random weights (no whole model needed)."""
    layer = module.to_empty(device="cpu")
    if hasattr(layer, "reset_parameters"):
        layer.reset_parameters()
    return layer.eval()


def _layer_calls(name: str) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """Every convolution and pooling call of a zoo model at its own input: (layer, input shape), on meta."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = create(name)
    x = torch.empty(1, *spec.input_shape, device="meta")
    caps = cv.capture_layers(model, cv.explainable_layers(model, x), x)
    return [(c.module, tuple(c.input.shape)) for c in caps.values()]


def test_every_layer_of_every_zoo_model_is_explained_exactly():
    """Each distinct (layer, input size) of the zoo, built alone with random weights at the size it
    receives in its model: the explained values equal the layer's own output."""
    seen: dict[tuple[str, tuple[int, ...]], nn.Module] = {}
    for name in list_models():
        for module, shape in _layer_calls(name):
            seen.setdefault((repr(module), shape), module)
    assert len(seen) > 200
    rng = random.Random(4)
    torch.manual_seed(4)
    for (_, shape), module in seen.items():
        layer = _materialised(module)
        x = torch.randn(1, *shape)
        with torch.no_grad():
            out = layer(x)[0]
        op = cv.Operation.of_module(layer)
        for _ in range(3):
            k, r, c = (rng.randrange(n) for n in out.shape)
            value = op.explain(x[0], k, r, c).value
            assert abs(value - out[k, r, c].item()) <= cv.TOLERANCE * max(1.0, abs(out[k, r, c].item())), layer


def _small_enough(name: str) -> tuple[int, int, int] | None:
    """An input a whole forward pass of this model takes quickly on a CPU, or None."""
    spec = get_spec(name)
    with torch.device("meta"):
        meta_model = create(name)
    params = count_params(meta_model)
    c, h, _ = spec.input_shape
    if params > 25_000_000:
        return None
    if h <= 96:
        return spec.input_shape
    if spec.fixed_input:
        return None
    try:
        check_input(meta_model, (c, 64, 64))
    except InputSizeError:
        return None
    return (c, 64, 64)


def test_whole_models_explained_through_hooks_equal_their_feature_maps():
    """Through explain_layer's own path (forward hooks, eval mode), on every zoo model a CPU runs in a
    moment: every convolution and pooling, at random positions."""
    rng = random.Random(5)
    models = 0
    for name in list_models():
        shape = _small_enough(name)
        if shape is None:
            continue
        torch.manual_seed(0)
        model = create(name, num_classes=10, input_size=shape[1:])
        x = torch.randn(1, *shape)
        names = cv.explainable_layers(model, x)
        for layer, cap in cv.capture_layers(model, names, x).items():
            k, r, c = (rng.randrange(n) for n in cap.output.shape)
            found = cap.explain(k, r, c)
            assert found.agrees, (name, layer, found.explanation.value, found.feature_map_value)
        models += bool(names)
    assert models >= 25


def test_a_trained_run_explained_equals_its_feature_maps():
    from apphelpers import train_run

    from cnnlab.sources import load_source
    from cnnlab.train import TrainConfig

    result = train_run(TrainConfig(model="lenet", dataset="digits", epochs=1, max_steps=5, subset=200,
                                   device="cpu", seed=0))
    src = load_source(f"run:{result.run_id}")
    digit = (cv.digit_input(3)[0] * 255 / 16).round().to(torch.uint8).numpy()
    x = src.to_input(Image.fromarray(digit))
    rng = random.Random(6)
    for layer, cap in cv.capture_layers(src.model, cv.explainable_layers(src.model), x).items():
        for _ in range(5):
            k, r, c = (rng.randrange(n) for n in cap.output.shape)
            assert cap.explain(k, r, c).agrees, layer


# --- receptive fields --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet", "alexnet", "vgg16", "googlenet", "resnet50", "d2l_densenet",
                                  "d2l_nin", "cifar_resnet"])
def test_the_receptive_field_is_the_architecture_tables(name):
    spec = get_spec(name)
    with torch.device("meta"):
        model = create(name)
    x = torch.empty(1, *spec.input_shape, device="meta")
    table = summarize(name)
    for layer, cap in cv.capture_layers(model, cv.explainable_layers(model), x).items():
        row = table.row(layer)
        if row.global_rf:
            continue
        field = cap.receptive_field(0, 0)
        assert field.size == row.receptive_field and field.jump == row.jump, layer
        assert field.steps[-1].layer == layer and field.steps[-1].size_out == field.size


def _gradient_box(model: nn.Module, layer: str, x: torch.Tensor, row: int, col: int) -> tuple[int, int, int, int]:
    """The smallest box holding every input pixel the output's gradient reaches."""
    from cnnlab.activations import capture

    x = x.clone().requires_grad_(True)
    with capture(model, [layer], detach=False) as acts:
        model(x)
    acts[layer][0, 0, row, col].backward()
    ys, xs = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())


def test_the_receptive_field_box_is_where_the_gradient_reaches():
    torch.manual_seed(0)
    model = create("lenet").eval()  # tanh and average pooling: every pixel of the field counts
    x = torch.randn(1, 1, 28, 28)
    for layer, row, col in (("C1", 3, 4), ("S2", 0, 11), ("C3", 6, 2), ("S4", 3, 3)):
        f = cv.capture_layer(model, layer, x).receptive_field(row, col)
        assert (f.top, f.left, f.bottom, f.right) == _gradient_box(model, layer, x, row, col), layer
        assert "size 1 + (5-1)x1x1 = 5, jump 1x1 = 1, start 0 - 0x1 = 0" in f.lines()[1]
    net = create("cifar_resnet").eval()  # padding: the box is clipped to the image
    y = torch.randn(1, 3, 32, 32)
    f = cv.capture_layer(net, "layer1.0.conv1", y).receptive_field(0, 0)
    assert f.unclipped[:2] == (-2, -2) and (f.top, f.left) == (0, 0)
    top, left, bottom, right = _gradient_box(net, "layer1.0.conv1", y, 0, 0)
    assert f.top <= top and f.left <= left and bottom <= f.bottom and right <= f.right
