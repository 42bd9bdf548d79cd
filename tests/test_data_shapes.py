"""The embedded datasets: procedural shapes and scikit-learn digits, plus stratified subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data import SHAPE_CLASSES, TensorSplit, generate_shapes, load_dataset, stratified_subset
from cnnlab.errors import DataError


def test_shapes_shapes_dtype_and_classes():
    images, labels, masks = generate_shapes(80, size=32, seed=0, return_masks=True)
    assert images.shape == (80, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (80,) and labels.dtype == torch.int64
    assert masks.shape == (80, 32, 32) and masks.dtype == torch.bool
    assert torch.bincount(labels).tolist() == [10] * len(SHAPE_CLASSES)
    assert 6 <= len(SHAPE_CLASSES) <= 10


def test_shapes_deterministic_per_seed_and_different_across_seeds():
    a, la = generate_shapes(64, seed=3)
    b, lb = generate_shapes(64, seed=3)
    c, lc = generate_shapes(64, seed=4)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert (a != c).float().mean() > 0.5


def test_shapes_other_sizes():
    images, _, masks = generate_shapes(10, size=64, seed=1, return_masks=True)
    assert images.shape == (10, 3, 64, 64) and masks.shape == (10, 64, 64)


def test_shape_masks_align_with_drawn_shapes():
    images, labels, masks = generate_shapes(200, seed=5, return_masks=True)
    x = images.float()
    for i in range(len(images)):
        m = masks[i]
        assert 15 < int(m.sum()) < 32 * 32 // 2  # a visible shape, not the whole image
        inside = x[i][:, m]  # 3 x pixels of the shape
        outside = x[i][:, ~m]
        # Shape pixels share one colour (up to shading and noise)...
        assert inside.std(dim=1).mean() < 30
        # ...which differs from what surrounds it.
        ring = torch.nn.functional.max_pool2d(m[None, None].float(), 5, 1, 2)[0, 0].bool() & ~m
        assert (inside.mean(dim=1) - x[i][:, ring].mean(dim=1)).norm() > 40, f"image {i} ({SHAPE_CLASSES[labels[i]]})"
        assert outside.shape[1] > 0


def test_shapes_bundle_and_options():
    bundle = load_dataset("shapes", seed=2, n_train=160, n_val=40, n_test=16)
    assert bundle.info.name == "shapes" and bundle.info.source == "embedded"
    assert bundle.info.input_shape == (3, 32, 32) and bundle.info.classes == SHAPE_CLASSES
    assert len(bundle.train) == 160 and len(bundle.val) == 40 and len(bundle.test) == 16
    assert len(bundle.info.mean) == 3 and all(0 < s < 1 for s in bundle.info.std)
    again = load_dataset("shapes", seed=2, n_train=160, n_val=40)
    assert torch.equal(bundle.train.images, again.train.images)
    assert not torch.equal(bundle.train.images[:40], bundle.val.images)


def test_unknown_option_and_dataset_are_data_errors():
    with pytest.raises(DataError, match="Unknown option"):
        load_dataset("shapes", n_train=8, n_val=8, colour="red")
    with pytest.raises(DataError, match="Did you mean 'mnist'"):
        load_dataset("mnsit")


def test_a_cnn_clearly_beats_a_linear_model(shapes_cnn):
    """The session's CIFAR ResNet (trained once, see conftest.py) against a linear classifier of
    the raw pixels trained on the same 2000 images, both measured on 600 images neither has seen."""
    from sklearn.linear_model import RidgeClassifierCV

    data = shapes_cnn.data
    flat = lambda split: split.images.reshape(len(split), -1).float().numpy() / 255  # noqa: E731
    linear = RidgeClassifierCV(alphas=(1.0, 10.0, 100.0, 1000.0)).fit(flat(data.train), data.train.labels.numpy())
    linear_acc = linear.score(flat(data.test), data.test.labels.numpy())

    mean = torch.tensor(data.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.info.std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = shapes_cnn.model((data.test.images.float() / 255 - mean) / std)
    cnn_acc = (logits.argmax(1) == data.test.labels).float().mean().item()
    assert linear_acc < 0.25, linear_acc  # chance is 0.125: pixels alone say little
    assert cnn_acc > linear_acc + 0.15, (cnn_acc, linear_acc)


def test_digits_bundle():
    bundle = load_dataset("digits", seed=0)
    assert bundle.info.input_shape == (1, 28, 28) and bundle.info.classes == [str(d) for d in range(10)]
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.shape[1:] == (1, 28, 28)
    assert len(bundle.train) + len(bundle.val) == 1797 and bundle.test is None
    assert int(bundle.train.images.max()) == 255
    # Stratified: every class keeps ~20% in val.
    full = np.bincount(np.concatenate([bundle.train.labels.numpy(), bundle.val.labels.numpy()]))
    val = np.bincount(bundle.val.labels.numpy(), minlength=10)
    assert np.all(np.abs(val - 0.2 * full) <= 1)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(bundle.val.labels, other.val.labels) or not torch.equal(bundle.val.images, other.val.images)


def test_channels_option_converts():
    bundle = load_dataset("digits", channels=3)
    assert bundle.info.input_shape == (3, 28, 28) and len(bundle.info.mean) == 3
    assert bundle.train.images.shape[1] == 3


def test_stratified_subset_160_on_10_classes():
    split = TensorSplit(torch.zeros(1000, 1, 4, 4, dtype=torch.uint8), torch.arange(1000) % 10)
    sub = stratified_subset(split, 160, seed=0)
    assert len(sub) == 160 and torch.bincount(sub.labels).tolist() == [16] * 10
    assert torch.equal(sub.labels, stratified_subset(split, 160, seed=0).labels)
    bundle = load_dataset("digits", subset=160)
    assert torch.bincount(bundle.train.labels).tolist() == [16] * 10
    with pytest.raises(DataError):
        stratified_subset(split, 5)


# Hashes of the original generator's output (images, labels, masks), computed before the drawing
# options existed: at their defaults the options must not change a single pixel.
_ORIGINAL_SHA256 = {
    (80, 32, 0): "d24abd89aaf322be5b38cce6d16c6042243a0ee98f12789dd5bb252073258b25",
    (1100, 32, 3): "7243f962173885f77da2277088831cd292bb9a54bd120c755ecaf9df39983a19",  # two batches of 1024
    (40, 64, 7): "9e919255ffa5f30f997ad8617226d95f196f55f4cc0bc73926554a907362fe90",
}


@pytest.mark.parametrize("n, size, seed", list(_ORIGINAL_SHA256))
def test_shapes_default_output_is_the_original(n, size, seed):
    import hashlib

    images, labels, masks = generate_shapes(n, size=size, seed=seed, return_masks=True)
    digest = hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes() + masks.numpy().tobytes()).hexdigest()
    assert digest == _ORIGINAL_SHA256[(n, size, seed)]
    explicit = generate_shapes(n, size=size, seed=seed, scale=(0.28, 0.42), lines=1, noise=8, distractors=0)
    assert torch.equal(explicit[0], images) and torch.equal(explicit[1], labels)


def test_shapes_bundle_default_options_unchanged():
    plain = load_dataset("shapes", seed=1, n_train=40, n_val=16)
    spelled = load_dataset("shapes", seed=1, n_train=40, n_val=16, scale=[0.28, 0.42], lines=1, noise=8, distractors=0)
    assert torch.equal(plain.train.images, spelled.train.images) and torch.equal(plain.val.images, spelled.val.images)


def test_shapes_options_change_the_images():
    base, labels, masks = generate_shapes(64, seed=2, return_masks=True)
    small, small_labels, small_masks = generate_shapes(64, seed=2, return_masks=True, scale=(0.12, 0.18))
    assert torch.equal(labels, small_labels)  # the labels do not depend on the options
    assert small_masks.sum(dim=(1, 2)).float().mean() < 0.4 * masks.sum(dim=(1, 2)).float().mean()
    noisy = generate_shapes(64, seed=2, noise=40)[0]
    clean = generate_shapes(64, seed=2, noise=0)[0]
    # same draws but the noise: the pixel noise grows with the option
    assert (noisy.float() - base.float()).abs().mean() > 3 * (clean.float() - base.float()).abs().mean()
    assert not torch.equal(generate_shapes(64, seed=2, lines=3)[0], base)
    cluttered, _, cl_masks = generate_shapes(64, seed=2, distractors=3, return_masks=True)
    assert torch.equal(cl_masks, masks)  # distractors are drawn after the shape's own draws, under it
    assert not torch.equal(cluttered, base)
    # deterministic and, like the rest, a pure function of the seed
    assert torch.equal(cluttered, generate_shapes(64, seed=2, distractors=3)[0])


def test_shapes_distractors_take_the_shape_colour_and_stay_off_the_shape():
    base, _, masks = generate_shapes(100, seed=4, noise=0, return_masks=True)
    cluttered = generate_shapes(100, seed=4, noise=0, distractors=2)[0]
    changed = (cluttered != base).any(dim=1)  # pixels a distractor covered
    assert not (changed & masks).any()  # the shape is drawn over them
    assert changed.sum(dim=(1, 2)).gt(0).float().mean() > 0.9  # nearly every image got some
    x, b = cluttered.float(), base.float()
    near = []
    for i in range(len(x)):
        if changed[i].sum() > 3:
            shape_colour = b[i][:, masks[i]].mean(dim=1)
            near.append((x[i][:, changed[i]].mean(dim=1) - shape_colour).norm() < 40)
    assert sum(near) > 0.9 * len(near)


@pytest.mark.parametrize("option, value, message", [
    ("scale", [0.3, 0.2], "scale must be"),
    ("scale", [0.01, 0.2], "scale must be"),
    ("scale", 0.3, "scale must be"),
    ("scale", [0.2, 0.5], "scale must be"),
    ("lines", -1, "lines must be"),
    ("lines", 9, "lines must be"),
    ("lines", 1.5, "lines must be"),
    ("noise", -1, "noise must be"),
    ("noise", 100, "noise must be"),
    ("noise", float("nan"), "noise must be"),
    ("distractors", 9, "distractors must be"),
    ("distractors", True, "distractors must be"),
])
def test_shapes_bad_options_refused(option, value, message):
    with pytest.raises(ValueError, match=message):
        generate_shapes(8, **{option: value})
    with pytest.raises(DataError, match=f"shapes: {message}"):
        load_dataset("shapes", n_train=8, n_val=8, **{option: value})
