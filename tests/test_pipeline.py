"""The input pipeline (cnnlab.data.pipeline): one set of statistics, one resize rule, one place
for every path that prepares an image for a model (batches, single images, pretrained sources)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import rgb_to_grayscale

from cnnlab import runs
from cnnlab.data import load_bundled_photo, to_model_input
from cnnlab.data.pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LUMA_WEIGHTS,
    InputPipeline,
    measure_stats,
    eval_resize_of,
    model_eval_resize,
    model_space_stats,
    model_stats,
)
from cnnlab.errors import ConfigError

CPU = torch.device("cpu")


def _colour_images(n: int = 64, size: int = 16) -> torch.Tensor:
    """RGB uint8 images whose channels differ a lot (red and blue anti-correlated, green flat):
    the std of their luma is far from any average of the channel stds."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n, 1, size, size, generator=g)
    red, blue = base, 1 - base
    green = torch.full_like(base, 0.5) + 0.05 * torch.rand(n, 1, size, size, generator=g)
    return (torch.cat([red, green, blue], 1) * 255).round().to(torch.uint8)


def test_one_copy_of_the_shared_constants():
    from cnnlab import sources
    from cnnlab.data import augment, registry

    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    assert LUMA_WEIGHTS == (0.299, 0.587, 0.114)
    assert registry.IMAGENET_MEAN is IMAGENET_MEAN and sources.IMAGENET_STD is IMAGENET_STD
    assert augment.LUMA_WEIGHTS is LUMA_WEIGHTS


def test_grey_conversion_normalises_with_the_statistics_of_the_luma_images():
    """Bug 1: RGB data on a grey model was normalised with an average of the channel stds while
    the images were converted with luma weights (recorded 0.2855, actual 0.1917 on one dataset)."""
    images = _colour_images()
    x = images.double() / 255
    luma = rgb_to_grayscale(x)  # torchvision's own conversion, computed independently
    rgb_mean, rgb_std = measure_stats(images, 3)  # the dataset's own statistics
    mean, std = model_space_stats(images, rgb_mean, rgb_std, 1)
    assert mean == pytest.approx([float(luma.mean())], abs=1e-4)
    assert std == pytest.approx([float(luma.std())], abs=1e-4)
    channel_std = x.std(dim=(0, 2, 3))
    weighted = float((torch.tensor(LUMA_WEIGHTS, dtype=torch.float64) * channel_std).sum())
    assert abs(weighted - std[0]) > 0.05 and abs(float(channel_std.mean()) - std[0]) > 0.05  # the old formulas
    # The pipeline with these statistics standardises the adapted training images.
    pipe = InputPipeline((3, 16, 16), (1, 16, 16), mean, std, CPU)
    out = pipe.eval_batch(images)
    assert out.shape == (64, 1, 16, 16)
    assert float(out.mean()) == pytest.approx(0.0, abs=2e-3) and float(out.std()) == pytest.approx(1.0, abs=2e-3)
    assert pipe.model_mean == pytest.approx(mean) and pipe.model_std == pytest.approx(std)


def test_rgb_statistics_for_a_grey_model_are_refused_not_averaged():
    with pytest.raises(ConfigError, match="never averaged"):
        InputPipeline((3, 16, 16), (1, 16, 16), (0.5, 0.4, 0.3), (0.2, 0.2, 0.3), CPU)
    with pytest.raises(ConfigError, match="never averaged"):
        model_stats((0.5, 0.4, 0.3), (0.2, 0.2, 0.3), 1)
    assert model_stats((0.2,), (0.3,), 3) == ((0.2,) * 3, (0.3,) * 3)  # one value: exact for every channel
    with pytest.raises(ConfigError, match="positive"):
        model_stats((0.2,), (0.0,), 1)


def test_the_datasets_own_statistics_stay_when_the_channels_do():
    images = _colour_images()
    assert model_space_stats(images, IMAGENET_MEAN, IMAGENET_STD, 3) == (IMAGENET_MEAN, IMAGENET_STD)
    grey = images[:, :1]
    assert model_space_stats(grey, (0.19,), (0.33,), 3) == ((0.19,) * 3, (0.33,) * 3)  # repeated: exact
    mean1, std1 = measure_stats(grey, 1)
    assert measure_stats(grey, 3) == (mean1 * 3, std1 * 3)
    x = grey.double() / 255
    assert mean1[0] == round(float(x.mean()), 4) and std1[0] == round(float(x.std()), 4)


def test_model_space_stats_read_a_bounded_deterministic_sample():
    images = _colour_images(n=200)
    a = measure_stats(images, 1, max_values=16 * 16 * 3 * 20)  # about 20 images' worth
    assert a == measure_stats(images, 1, max_values=16 * 16 * 3 * 20)
    luma = rgb_to_grayscale(images[:: 200 // 20].double() / 255)
    assert a[0] == pytest.approx([float(luma.mean())], abs=1e-4)
    with pytest.raises(ConfigError):
        measure_stats(images[:0], 1)
    with pytest.raises(ConfigError, match="only 1 -> N"):
        model_space_stats(images, IMAGENET_MEAN, IMAGENET_STD, 2)


def test_single_image_path_uses_the_model_space_statistics_and_refuses_a_mismatch():
    """Bug 4 (the per-image half): RGB statistics for a grey model were averaged silently."""
    img = Image.fromarray(np.asarray(_colour_images(1, 24)[0].permute(1, 2, 0)))
    with pytest.raises(ConfigError, match="never averaged"):
        to_model_input(img, (1, 24, 24), (0.5, 0.4, 0.3), (0.2, 0.2, 0.3))
    x = to_model_input(img, (1, 24, 24), (0.45,), (0.12,))
    batch = InputPipeline((3, 24, 24), (1, 24, 24), (0.45,), (0.12,), CPU).eval_batch(_colour_images(1, 24))
    assert torch.allclose(x, batch, atol=1e-5)  # the same luma and statistics as the batch path


def test_eval_resize_cuts_the_centre_like_the_imagenet_weights():
    """Bug 5 (the batch half): resize the shorter side to 256, then the central 224, as
    torchvision's weights.transforms(); not the whole image squeezed into 224."""
    import torchvision

    tf = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    ratio = eval_resize_of(tf)
    assert ratio == pytest.approx(256 / 224)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(2, 3, 300, 400, generator=g) * 255).to(torch.uint8)
    images = torch.nn.functional.interpolate(images.float(), scale_factor=0.125, mode="bilinear")
    images = torch.nn.functional.interpolate(images, size=(300, 400), mode="bicubic").clamp(0, 255).to(torch.uint8)
    pipe = InputPipeline((3, 300, 400), (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, CPU, eval_resize=ratio)
    ours = pipe.eval_batch(images)
    theirs = torch.stack([tf(im) for im in images])
    assert ours.shape == theirs.shape == (2, 3, 224, 224)
    assert float((ours - theirs).abs().mean()) < 0.01
    squeezed = InputPipeline((3, 300, 400), (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, CPU).eval_batch(images)
    assert float((squeezed - theirs).abs().mean()) > 5 * float((ours - theirs).abs().mean())


def test_models_on_imagenet_weights_are_evaluated_with_their_resize():
    from cnnlab.models.pretrained import transfer_model

    model = transfer_model("resnet18", 2, pretrained=False)
    assert model_eval_resize(model) == pytest.approx(256 / 224)
    assert model_eval_resize(nn.Conv2d(3, 4, 3)) == 1.0


def test_pretrained_source_prepares_images_like_the_weights_transforms(monkeypatch):
    """Bug 5 (the per-image half): a pretrained source's to_input matches weights.transforms()."""
    from cnnlab import sources
    from cnnlab.models import pretrained

    spec = pretrained.get_pretrained_spec("resnet18")
    monkeypatch.setattr(pretrained, "load_pretrained", lambda name, **kw: (nn.Identity(), spec))
    src = sources.load_source("pretrained:resnet18")
    assert src.input_shape == (3, 224, 224) and src.eval_resize == pytest.approx(256 / 224)
    photo = load_bundled_photo("chelsea")  # 451 x 300
    ours = src.to_input(photo)[0]
    theirs = spec.transforms()(photo)
    assert ours.shape == theirs.shape
    # the same field of view (what is left: torchvision scales the long side to int(), not round())
    assert float((ours - theirs).abs().mean()) < 0.08
    old = to_model_input(photo, (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD)[0]  # straight to 224
    assert float((old - theirs).abs().mean()) > 4 * float((ours - theirs).abs().mean())


def test_grey_run_fallback_and_recorded_statistics_in_sources():
    from cnnlab.sources import ModelSource

    src = ModelSource("zoo:x", "zoo", "x", nn.Identity(), ["a"], (3, 8, 8), (0.2,) * 3, (0.3,) * 3)
    x = src.to_input(Image.new("L", (8, 8), 51))  # 0.2 everywhere, repeated to 3 channels
    assert torch.allclose(x, torch.zeros(1, 3, 8, 8), atol=1e-6)


def test_train_page_offers_the_table_of_presets():
    from apphelpers import open_view

    from cnnlab.data.pipeline import AUGMENT_LABELS, AUGMENTATIONS

    at = open_view("train")
    assert at.selectbox(key="train-aug").options == [AUGMENT_LABELS[n] for n in AUGMENTATIONS]


def test_the_trainer_records_the_statistics_of_the_luma_images():
    """Bug 1 through the trainer: RGB data on a grey model is normalised (and recorded in the
    run's meta) with the statistics of the converted images."""
    from cnnlab.data import DataBundle, DatasetInfo, TensorSplit
    from cnnlab.train import TrainConfig, prepare

    images = _colour_images(n=60, size=28)
    labels = torch.arange(60) % 10
    rgb_mean, rgb_std = measure_stats(images, 3)
    info = DatasetInfo("colour", "Colour (test)", [str(i) for i in range(10)], (3, 28, 28), rgb_mean, rgb_std, "embedded")
    bundle = DataBundle(info, TensorSplit(images[:40], labels[:40]), TensorSplit(images[40:], labels[40:]), None, [])
    s = prepare(TrainConfig(model="lenet", epochs=1, device="cpu", in_channels=1), data=bundle)
    luma = rgb_to_grayscale(images[:40].double() / 255)
    assert s.model_shape[0] == 1
    assert runs.run_meta(s)["model_std"] == pytest.approx([float(luma.std())], abs=1e-4)
    assert runs.run_meta(s)["model_mean"] == pytest.approx([float(luma.mean())], abs=1e-4)
    assert s.train_pipe.model_std == s.val_pipe.model_std
