"""Layer-hook capture, pictures and class-activation maps."""

import gc

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.activations import (
    LayerNotFoundError,
    activation_points,
    capture,
    capture_activations,
    feature_grid,
    grad_cam,
    kernel_grid,
    layer_stats,
    overlay,
    saliency,
)
from cnnlab.errors import CnnlabError, InputSizeError
from cnnlab.inspect import summarize
from cnnlab.models import create


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name", ["lenet", "cifar_resnet", "d2l_googlenet", "mini_alexnet_v4"])
def test_captured_shapes_equal_inspection(name):
    torch.manual_seed(0)
    model = create(name).eval()
    table = summarize(name)
    x = torch.randn(1, *model.cnnlab_spec.input_shape)
    leaves = [r for r in table.leaf_rows if r.params or r.type.endswith("Pool2d")]
    wanted = list(dict.fromkeys(r.name for r in leaves))
    acts = capture_activations(model, x, wanted)
    for r in leaves:
        if r.name in acts:
            assert tuple(acts[r.name].shape[1:]) == r.output_shape, r.name
    assert _hook_count(model) == 0


def test_repeated_module_calls_are_numbered():
    model = create("lenet").eval()
    x = torch.randn(1, 1, 28, 28)
    points = activation_points(model, x)
    names = [p[0] for p in points]
    assert names.count("activation") == 1 and "activation#4" in names
    acts = capture_activations(model, x, ["activation", "activation#2", "activation#4"])
    assert acts["activation"].shape == (1, 6, 12, 12)
    assert acts["activation#2"].shape == (1, 16, 4, 4)
    assert acts["activation#4"].shape == (1, 84)
    with pytest.raises(LayerNotFoundError, match="did not run"):
        capture_activations(model, x, ["activation#9"])


def test_hooks_removed_even_when_forward_raises():
    model = create("lenet").eval()
    with pytest.raises(InputSizeError, match="needs a 1x28x28 input"):
        with capture(model, ["C1", "F5"]):
            model(torch.randn(1, 1, 32, 32))  # wrong size: the flatten raises
    assert _hook_count(model) == 0
    with pytest.raises(RuntimeError, match="channels"):  # torch's own error inside the captured forward
        capture_activations(model, torch.randn(1, 3, 28, 28), ["C1"])
    assert _hook_count(model) == 0


def test_unknown_layer_lists_valid_names():
    model = create("lenet")
    with pytest.raises(LayerNotFoundError) as e:
        capture_activations(model, torch.randn(1, 1, 28, 28), ["C9"])
    msg = str(e.value)
    assert "C9" in msg and "Closest: C3, C1" in msg and "F7" in msg
    assert _hook_count(model) == 0


def test_memory_does_not_grow_over_repeated_captures():
    model = create("cifar_convnet").eval()
    x = torch.randn(1, 3, 32, 32)

    def tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is torch.Tensor or type(o) is nn.Parameter)

    capture_activations(model, x, ["conv1", "conv2"])
    before = tensors()
    for _ in range(30):
        acts = capture_activations(model, x, ["conv1", "conv2", "fc1"])
        del acts
    assert tensors() <= before + 2
    assert _hook_count(model) == 0


def test_feature_grid_and_stats():
    act = torch.zeros(1, 8, 5, 5)
    act[0, 5] = 3.0  # strongest channel
    act[0, 2, 0, 0] = 1.0
    img, stats = feature_grid(act, tile_size=20)
    assert stats.strongest_channel == 5
    assert stats.zero_fraction == pytest.approx(1 - 26 / 200)
    arr = np.asarray(img)
    assert arr.ndim == 3 and arr.shape[2] == 3
    # the strongest tile is outlined in red
    assert ((arr[..., 0] > 200) & (arr[..., 1] < 60) & (arr[..., 2] < 60)).sum() > 40
    img4, _ = feature_grid(torch.randn(64, 4, 4), max_channels=16)
    assert img4.size[0] < feature_grid(torch.randn(64, 4, 4), max_channels=64)[0].size[0]
    s = layer_stats(torch.relu(torch.randn(1000)))
    assert 0.4 < s.zero_fraction < 0.6


def test_kernel_grids():
    rgb = kernel_grid(create("cifar_convnet").conv1)  # 6 RGB 5x5 filters
    assert rgb.mode == "RGB"
    deep = kernel_grid(create("cifar_convnet").conv2, max_filters=4, max_in=6)
    w, h = deep.size
    assert w > h  # 4 rows of 6 grey tiles


def test_grad_cam_and_saliency_shapes_and_ranges():
    torch.manual_seed(0)
    model = create("cifar_resnet").eval()
    x = torch.randn(1, 3, 32, 32)
    cam = grad_cam(model, x)
    assert cam.layer == "layer3" and cam.heatmap.shape == (32, 32)
    assert 0 <= cam.heatmap.min() and cam.heatmap.max() <= 1
    assert cam.target == int(np.argmax(cam.probabilities))
    cam3 = grad_cam(model, x, target=3, layer="layer2")
    assert cam3.target == 3 and cam3.layer == "layer2"
    sal = saliency(model, x, target=1)
    assert sal.heatmap.shape == (32, 32) and sal.heatmap.max() == pytest.approx(1.0)
    with pytest.raises(CnnlabError, match="out of range"):
        grad_cam(model, x, target=10)
    with pytest.raises(LayerNotFoundError):
        grad_cam(model, x, layer="layer9")
    # in-place ReLUs are restored after the computation
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert _hook_count(model) == 0
    pic = overlay(np.zeros((32, 32, 3), np.uint8), cam.heatmap)
    assert pic.size == (32, 32)


def test_grad_cam_concentrates_on_the_shape(shapes_cnn):
    """A CIFAR ResNet trained for a few seconds on the procedural shapes (once per session, see
    conftest.py): the top 20% of its Grad-CAM heat lies on the shape far more often than the top
    20% of a random map."""
    from cnnlab.data import generate_shapes

    model, info = shapes_cnn.model, shapes_cnn.data.info
    images, labels, masks = generate_shapes(40, seed=123, return_masks=True)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    x = (images.float() / 255 - mean) / std
    rng = np.random.default_rng(0)
    cam_hits, random_hits = [], []
    for i in range(len(x)):
        heat = grad_cam(model, x[i:i + 1], target=int(labels[i])).heatmap
        k = int(0.2 * heat.size)
        mask = masks[i].numpy().ravel()
        cam_hits.append(mask[np.argsort(heat.ravel())[::-1][:k]].mean())
        random_hits.append(mask[rng.permutation(heat.size)[:k]].mean())
    cam, rand = float(np.mean(cam_hits)), float(np.mean(random_hits))
    assert cam > rand + 0.15, (cam, rand)


def test_shared_model_is_safe_across_threads():
    """The app shares one cached model between sessions: captures and Grad-CAMs from several
    threads at once must each see their own image, and none may fail."""
    import threading

    torch.manual_seed(0)
    model = create("cifar_resnet").eval()
    xa, xb = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    expected = capture_activations(model, xa, ["layer1"])["layer1"]
    wrong, errors = [], []

    def captures():
        for _ in range(40):
            got = capture_activations(model, xa, ["layer1"])["layer1"]
            if not torch.allclose(got, expected):
                wrong.append(1)

    def cams():
        try:
            for _ in range(8):
                grad_cam(model, xb)
        except Exception as e:  # noqa: BLE001 — any failure is the finding
            errors.append(e)

    threads = [threading.Thread(target=captures), threading.Thread(target=cams), threading.Thread(target=cams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong and not errors, (len(wrong), errors[:1])
    assert _hook_count(model) == 0


def test_grad_cam_on_a_vector_layer_says_so():
    model = create("lenet").eval()
    with pytest.raises(CnnlabError, match="spatial map"):
        grad_cam(model, torch.randn(1, 1, 28, 28), layer="F5")


def test_default_grad_cam_layer_is_the_last_map_of_at_least_7x7():
    """LeNet's 5x5 pooling output made a map that lit up a corner; the default is now C3 (10x10),
    while ResNet's and VGG's ends (7x7 at 224) stay the default."""
    from cnnlab.activations import last_conv_name
    from cnnlab.models import create

    assert last_conv_name(create("lenet").eval(), torch.zeros(1, 1, 28, 28)) == "C3"
    assert last_conv_name(create("vgg11").eval(), torch.zeros(1, 3, 224, 224)) == "features"
    assert last_conv_name(create("cifar_resnet").eval(), torch.zeros(1, 3, 32, 32)) == "layer3"


@pytest.mark.parametrize("in_channels, out_channels, columns", [(1, 6, 3), (1, 16, 4), (3, 16, 4), (64, 4, 8)])
def test_kernel_layout_for_one_three_and_many_input_channels(in_channels, out_channels, columns):
    """One grey tile per filter in a square grid (1 channel: no more 3,900-pixel strips), one RGB
    tile per filter (3 channels), a row of per-channel tiles per filter (more)."""
    from torch import nn

    from cnnlab.activations import kernel_grid

    conv = nn.Conv2d(in_channels, out_channels, 5)
    img = kernel_grid(conv, max_in=8, tile_size=40)
    tile = 40 + 2  # tile plus the 2-pixel gap
    rows = -(-out_channels // columns) if in_channels in (1, 3) else out_channels
    assert abs(img.width - columns * tile) <= 2 and abs(img.height - rows * tile) <= 2


def test_channel_view_shows_one_channel_large_with_its_values():
    from cnnlab.activations import MAX_VALUES_SIDE, channel_view
    from cnnlab.errors import CnnlabError

    act = torch.arange(2 * 8 * 8, dtype=torch.float32).view(1, 2, 8, 8)
    img, values, corner = channel_view(act, 1, size=320)
    assert img.size == (320, 320) and corner == (0, 0)
    assert np.array_equal(values, act[0, 1].numpy())  # a small map: every value
    big = torch.randn(3, 40, 30)
    _, values, (top, left) = channel_view(big, 2)
    assert values.shape == (MAX_VALUES_SIDE, MAX_VALUES_SIDE) and (top, left) == (12, 7)
    assert np.array_equal(values, big[2, 12:28, 7:23].numpy())  # the central window, exactly
    for bad in (-1, 3):
        with pytest.raises(CnnlabError, match="channels 0 to 2"):
            channel_view(big, bad)
    with pytest.raises(CnnlabError):
        channel_view(torch.randn(10), 0)


def test_a_click_on_the_feature_grid_finds_its_channel():
    from cnnlab.activations import feature_grid, grid_channel_at

    act = torch.zeros(10, 6, 6)
    for c in range(10):
        act[c, c % 6, c // 2] = 1.0 + c  # every channel different
    grid, _ = feature_grid(act, max_channels=10, tile_size=60)  # 4 columns of 60-pixel tiles, 2 px apart
    assert grid.size == (4 * 62 + 2, 3 * 62 + 2)
    # the centre of every tile is its channel; the padding and the empty last cells are none
    for c in range(10):
        r, k = divmod(c, 4)
        assert grid_channel_at(grid.size, 10, 2 + k * 62 + 30, 2 + r * 62 + 30) == c
    assert grid_channel_at(grid.size, 10, 1, 1) is None  # the outer padding
    assert grid_channel_at(grid.size, 10, 62.5, 30) is None  # between channel 0 and 1
    assert grid_channel_at(grid.size, 10, 2 + 3 * 62 + 30, 2 + 2 * 62 + 30) is None  # cell 11 of 10
    assert grid_channel_at(grid.size, 10, -5, 30) is None and grid_channel_at(grid.size, 10, 30, 9999) is None
    # a click scaled to the picture as displayed maps back (the page scales by width / shown width)
    shown = 125
    x, y = (2 + 62 + 30) * shown / grid.size[0], (2 + 30) * shown / grid.size[0]
    assert grid_channel_at(grid.size, 10, x * grid.size[0] / shown, y * grid.size[0] / shown) == 1
