"""Batch augmentation: the one table of presets, the batch operations, and the preview made by them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_bundled_photo
from cnnlab.data.augment import (
    AUGMENT_DESCRIPTIONS,
    AUGMENT_LABELS,
    AUGMENTATIONS,
    PRESETS,
    make_batch_augment,
    make_batch_eval,
)
from cnnlab.data.pipeline import AUGMENT_PRESETS, InputPipeline, preview
from cnnlab.errors import ConfigError


def _batch(n: int = 16, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_every_list_of_presets_is_a_view_of_the_one_table():
    names = [p.name for p in PRESETS]
    assert names == ["none", "flip", "cifar", "crop28", "imagenet"]
    assert AUGMENTATIONS == names and list(AUGMENT_PRESETS) == names
    assert list(AUGMENT_DESCRIPTIONS) == names and list(AUGMENT_LABELS) == names
    assert all(p.description and p.label for p in PRESETS)
    assert AUGMENT_DESCRIPTIONS["crop28"] == PRESETS[3].description and AUGMENT_LABELS["imagenet"] == PRESETS[4].label
    with pytest.raises(ConfigError, match="Unknown augmentation"):
        make_batch_augment("mixup", (32, 32))
    with pytest.raises(ConfigError, match="Unknown augmentation"):
        InputPipeline((3, 32, 32), (3, 32, 32), (0.5,), (0.5,), torch.device("cpu"), augment="mixup")


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


def test_preview_is_deterministic_and_leaves_the_global_random_state_alone():
    img = load_bundled_photo("astronaut").resize((64, 64))
    state = torch.get_rng_state()
    a = preview(img, "imagenet", 4, seed=0)
    b = preview(img, "imagenet", 4, seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert all(isinstance(i, Image.Image) for i in a) and len(a) == 4
    assert [i.tobytes() for i in a] == [i.tobytes() for i in b]
    assert len({i.tobytes() for i in a}) == 4
    assert [i.tobytes() for i in preview(img, "imagenet", 4, seed=1)] != [i.tobytes() for i in a]
    assert [i.tobytes() for i in preview(img, "none", 2)] == [img.tobytes()] * 2
    with pytest.raises(ConfigError):
        preview(img, "bogus", 1)


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("preset", AUGMENTATIONS)
def test_preview_is_the_trainers_batch_augmentation(preset):
    """Bug 6: the preview is made by the very function the trainer calls, so it cannot show what
    training never does (the old "imagenet" preview cut a centre crop that training never applies)."""
    img = load_bundled_photo("chelsea").resize((48, 40))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)  # 3 x 40 x 48 uint8
    out = (32, 32)
    shots = preview(img, preset, 6, seed=3, out_size=out)
    pipe = InputPipeline((3, 40, 48), (3, *out), (0.5,), (0.25,), torch.device("cpu"), augment=preset)
    trained = _uint8(pipe.augment_batch(x[None].expand(6, -1, -1, -1), torch.Generator().manual_seed(3)))
    assert [s.size for s in shots] == [(32, 32)] * 6  # the model's size, never a smaller centre crop
    for shot, t in zip(shots, trained):
        assert torch.equal(torch.from_numpy(np.asarray(shot).copy()).permute(2, 0, 1), t)
    # and the trainer's batch is exactly these images, normalised
    normalised = pipe.train_batch(x[None].expand(6, -1, -1, -1), torch.Generator().manual_seed(3))
    assert torch.allclose(normalised * 0.25 + 0.5, trained.float() / 255, atol=0.5 / 255 + 1e-6)


def test_imagenet_preview_keeps_the_full_field_of_view():
    img = load_bundled_photo("astronaut").resize((64, 64))
    shots = preview(img, "imagenet", 8, seed=0)
    assert {s.size for s in shots} == {(64, 64)}  # the old preview: 56x56 centre crops


def test_preview_of_a_grey_uint8_tensor():
    x = (torch.arange(28 * 28) % 256).to(torch.uint8).view(1, 28, 28)
    shots = preview(x, "crop28", 3, seed=0, out_size=(24, 24))
    assert [(s.mode, s.size) for s in shots] == [("L", (24, 24))] * 3


def test_crop28_evaluates_on_the_full_scale_centre_like_seed_002():
    from cnnlab.data.augment import make_batch_eval

    x = torch.rand(2, 3, 32, 32)
    out = make_batch_eval((28, 28), "crop28")(x)
    assert torch.equal(out, x[..., 2:30, 2:30])  # CenterCrop(28), no rescaling
    resized = make_batch_eval((28, 28))(x)
    assert resized.shape == (2, 3, 28, 28) and not torch.equal(resized, out)
