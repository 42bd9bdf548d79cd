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
