"""Batch augmentation presets and the per-image preview."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cnnlab.data import load_bundled_photo
from cnnlab.data.augment import AUGMENT_DESCRIPTIONS, AUGMENTATIONS, make_batch_augment, make_batch_eval
from cnnlab.data.transforms import AUGMENTATIONS as PREVIEW_AUGMENTATIONS
from cnnlab.data.transforms import center_crop_eval, cifar_train, imagenet_eval, imagenet_train, preview, random_crop_train
from cnnlab.errors import ConfigError


def _batch(n: int = 16, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_preset_names_agree_and_are_described():
    assert AUGMENTATIONS == PREVIEW_AUGMENTATIONS == ["none", "flip", "cifar", "crop28", "imagenet"]
    assert all(AUGMENT_DESCRIPTIONS[p] for p in AUGMENTATIONS)
    with pytest.raises(ConfigError, match="Unknown augmentation"):
        make_batch_augment("mixup", (32, 32))


def test_none_is_identity_or_resize():
    x = _batch()
    assert torch.equal(make_batch_augment("none", (32, 32))(x, None), x)
    assert make_batch_augment("none", (24, 24))(x, None).shape == (16, 3, 24, 24)
    assert torch.equal(make_batch_eval((32, 32))(x), x)
    y = make_batch_eval((28, 28))(torch.rand(2, 3, 32, 48))
    assert y.shape == (2, 3, 28, 28)


@pytest.mark.parametrize("preset, out", [("flip", 32), ("cifar", 32), ("crop28", 28), ("imagenet", 28)])
def test_shapes_per_sample_difference_and_determinism(preset, out):
    x = _batch(1).expand(32, -1, -1, -1).contiguous()  # 32 copies of one image
    aug = make_batch_augment(preset, (out, out))
    y1 = aug(x, torch.Generator().manual_seed(0))
    y2 = aug(x, torch.Generator().manual_seed(0))
    y3 = aug(x, torch.Generator().manual_seed(1))
    assert y1.shape == (32, 3, out, out) and y1.dtype == x.dtype
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, y3)
    distinct = {tuple(v.flatten()[:64].tolist()) for v in y1}
    assert len(distinct) >= (2 if preset == "flip" else 6), "samples must get their own random parameters"
    assert float(y1.min()) >= 0.0 and float(y1.max()) <= 1.0


def test_flip_and_translate_are_exact_moves():
    x = _batch(64)
    y = make_batch_augment("flip", (32, 32))(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(y, x)])
    same = torch.tensor([torch.equal(a, b) for a, b in zip(y, x)])
    assert bool((flipped | same).all()) and 10 < int(flipped.sum()) < 54
    y = make_batch_augment("crop28", (28, 28))(x, torch.Generator().manual_seed(0))
    # Every crop is a window of the original (or of its mirror image).
    for a, b in zip(y[:8], x[:8]):
        windows = b.unfold(1, 28, 1).unfold(2, 28, 1)  # 3 x 5 x 5 x 28 x 28
        mirror = b.flip(-1).unfold(1, 28, 1).unfold(2, 28, 1)
        hit = (windows == a[:, None, None]).flatten(3).all(-1).all(0).any() or (mirror == a[:, None, None]).flatten(3).all(-1).all(0).any()
        assert bool(hit)


def test_augment_runs_on_generator_device_default():
    y = make_batch_augment("cifar", (32, 32))(_batch(4), None)
    assert y.shape == (4, 3, 32, 32)


def test_torchvision_presets_from_the_seeds():
    img = load_bundled_photo("chelsea")
    assert imagenet_train()(img).shape == (3, 224, 224)
    assert imagenet_eval()(img).shape == (3, 224, 224)
    small = img.resize((32, 32))
    assert cifar_train(32)(small).shape == (3, 32, 32)
    assert random_crop_train(28)(small).shape == (3, 28, 28)
    assert center_crop_eval(28)(small).shape == (3, 28, 28)


def test_preview_is_deterministic_and_varied():
    img = load_bundled_photo("astronaut").resize((64, 64))
    state = torch.get_rng_state()
    a = preview(img, "imagenet", 4, seed=0)
    b = preview(img, "imagenet", 4, seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert all(isinstance(i, Image.Image) for i in a) and len(a) == 4
    assert [i.tobytes() for i in a] == [i.tobytes() for i in b]
    assert len({i.tobytes() for i in a}) == 4
    assert [i.tobytes() for i in preview(img, "none", 2)] == [img.tobytes()] * 2
    with pytest.raises(ConfigError):
        preview(img, "bogus", 1)


def test_crop28_evaluates_on_the_full_scale_centre_like_seed_002():
    from cnnlab.data.augment import make_batch_eval

    x = torch.rand(2, 3, 32, 32)
    out = make_batch_eval((28, 28), "crop28")(x)
    assert torch.equal(out, x[..., 2:30, 2:30])  # CenterCrop(28), no rescaling
    resized = make_batch_eval((28, 28))(x)
    assert resized.shape == (2, 3, 28, 28) and not torch.equal(resized, out)
