"""cnnlab.data.gallery: class counts, the labelled grid of samples, an image's channels and pixel values."""

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.gallery import (
    MAX_GRID_CLASSES,
    MAX_PATCH,
    channel_patch,
    channel_views,
    class_counts,
    count_summary,
    grid_classes,
    mark_patch,
    sample_grid,
    zoom_patch,
)
from cnnlab.errors import CnnlabError, ConfigError


def pixels(img):
    """A PIL image's pixels as a uint8 tensor (H x W, or H x W x 3)."""
    return torch.from_numpy(np.array(img))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n_train=400, n_val=80, n_test=40)


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_counts_sum_to_the_split_sizes(name, digits, shapes):
    bundle = digits if name == "digits" else shapes
    counts = class_counts(bundle)
    assert [r["class"] for r in counts] == bundle.info.classes
    assert [r["index"] for r in counts] == list(range(bundle.info.num_classes))
    assert count_summary(counts, "train")["total"] == len(bundle.train)
    assert count_summary(counts, "val")["total"] == len(bundle.val)
    assert count_summary(counts, "test")["total"] == (len(bundle.test) if bundle.test is not None else 0)
    per_class = torch.bincount(bundle.train.labels, minlength=bundle.info.num_classes).tolist()
    assert [r["train"] for r in counts] == per_class
    summary = count_summary(counts)
    assert summary["total"] == len(bundle.train)
    assert (summary["min"], summary["max"]) == (min(per_class), max(per_class))
    assert all(per_class[bundle.info.classes.index(c)] == min(per_class) for c in summary["min_classes"])
    assert all(per_class[bundle.info.classes.index(c)] == max(per_class) for c in summary["max_classes"])
    assert summary["balanced"] == (min(per_class) == max(per_class))


def test_count_summary_refuses_an_unknown_split(digits):
    with pytest.raises(ConfigError, match="Unknown split 'training'"):
        count_summary(class_counts(digits), "training")


@pytest.mark.parametrize("name, per_class, size", [("digits", 6, 64), ("shapes", 3, 32), ("shapes", 1, 16)])
def test_grid_size_matches_classes_and_samples(name, per_class, size, digits, shapes):
    bundle = digits if name == "digits" else shapes
    grid = sample_grid(bundle.train, bundle.info.classes, per_class=per_class, size=size, seed=1)
    label_w = grid.width - per_class * (size + 4)
    assert 48 <= label_w <= 200  # the class names' column
    assert grid.height == bundle.info.num_classes * (size + 4)
    assert grid.mode == "RGB"
    # seeded: the same grid again, another with another seed
    again = sample_grid(bundle.train, bundle.info.classes, per_class=per_class, size=size, seed=1)
    assert again.tobytes() == grid.tobytes()
    if per_class > 1:
        other = sample_grid(bundle.train, bundle.info.classes, per_class=per_class, size=size, seed=2)
        assert other.tobytes() != grid.tobytes()


def test_grid_cells_are_samples_of_their_row(shapes):
    """With one image per class in a tiny split, each row's cell is exactly that class's image."""
    picks = [int(torch.nonzero(shapes.train.labels == c)[0]) for c in range(shapes.info.num_classes)]
    from cnnlab.data import TensorSplit

    split = TensorSplit(shapes.train.images[picks], shapes.train.labels[picks])
    grid = sample_grid(split, shapes.info.classes, per_class=2, size=32)
    label_w = grid.width - 2 * 36
    for row, i in enumerate(picks):
        cell = grid.crop((label_w + 2, row * 36 + 2, label_w + 34, row * 36 + 34))
        assert torch.equal(pixels(cell).permute(2, 0, 1),
                           shapes.train.images[i])
        empty = grid.crop((label_w + 38, row * 36 + 2, label_w + 70, row * 36 + 34))
        assert bool((pixels(empty) == 225).all())  # no second sample: a grey cell


def test_grid_bounds_the_classes_shown():
    labels = torch.arange(45) % 45
    from cnnlab.data import TensorSplit

    split = TensorSplit(torch.zeros(45, 1, 8, 8, dtype=torch.uint8), labels)
    classes = [f"class {i}" for i in range(45)]
    assert sample_grid(split, classes, per_class=1, size=16).height == MAX_GRID_CLASSES * 20
    assert sample_grid(split, classes, per_class=1, size=16, first=40).height == 5 * 20
    assert list(grid_classes(45, 20)) == list(range(20, 40))
    with pytest.raises(ConfigError, match="first class shown must be between 0 and 44"):
        grid_classes(45, 45)
    long = sample_grid(split, ["a very long class name " * 5] * 45, per_class=1, size=16)
    assert long.width == 200 + 20  # the label column is capped (the name shortened with "...")


@pytest.mark.parametrize("kwargs, message", [
    ({"per_class": 0}, "Samples per class must be between 1 and 16"),
    ({"per_class": 17}, "Samples per class must be between 1 and 16"),
    ({"size": 8}, "cell size must be between 16 and 256"),
    ({"size": 1000}, "cell size must be between 16 and 256"),
    ({"max_classes": 50}, "1 to 20 classes"),
])
def test_grid_refuses_out_of_bounds_requests(digits, kwargs, message):
    with pytest.raises(CnnlabError, match=message):
        sample_grid(digits.train, digits.info.classes, **kwargs)


def test_grid_refuses_labels_without_names(digits):
    with pytest.raises(ConfigError, match="only 3 class names"):
        sample_grid(digits.train, digits.info.classes[:3])


def test_channel_views_of_a_grey_image(digits):
    image = digits.train.images[0]
    views = channel_views(image)
    assert [name for name, _ in views] == ["grey"]
    img = views[0][1]
    assert img.mode == "L" and img.size == (28, 28)
    assert torch.equal(pixels(img), image[0])


def test_channel_views_of_a_colour_image(shapes):
    image = shapes.train.images[0]
    views = channel_views(image)
    assert [name for name, _ in views] == ["R", "G", "B"]
    for c, (name, img) in enumerate(views):
        assert img.mode == "RGB" and img.size == (32, 32)
        arr = pixels(img).permute(2, 0, 1)
        assert torch.equal(arr[c], image[c])  # its own colour carries the channel...
        assert int(arr[[k for k in range(3) if k != c]].max()) == 0  # ...the others are black
    grey = channel_views(image, tint=False)
    assert all(img.mode == "L" for _, img in grey)
    assert torch.equal(pixels(grey[1][1]), image[1])


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(2, 8, 8, dtype=torch.uint8), "1 \\(grey\\) or 3 \\(RGB\\) channels, got 2"),
    (torch.zeros(3, 8, 8), "uint8 C x H x W image"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "uint8 C x H x W image"),
])
def test_channel_views_refuse_what_is_not_an_image(bad, message):
    with pytest.raises(ConfigError, match=message):
        channel_views(bad)


def test_patch_values_are_the_tensors_values(digits, shapes):
    grey = digits.train.images[5]
    [(name, patch)] = channel_patch(grey, 10, 12, 8)
    assert name == "grey" and len(patch) == 8 and all(len(r) == 8 for r in patch)
    assert patch == grey[0, 12:20, 10:18].tolist()
    colour = shapes.train.images[3]
    per_channel = channel_patch(colour, 20, 3, 4)
    assert [n for n, _ in per_channel] == ["R", "G", "B"]
    for c, (_, rows) in enumerate(per_channel):
        assert rows == colour[c, 3:7, 20:24].tolist()
    last = channel_patch(colour, 31, 31, 1)  # the last pixel
    assert [rows for _, rows in last] == [[[v]] for v in colour[:, 31, 31].tolist()]


def test_zoomed_patch_and_marked_image(shapes):
    image = shapes.train.images[0]
    zoom = zoom_patch(image, 4, 6, 8, scale=10)
    assert zoom.size == (80, 80)
    assert zoom.getpixel((5, 5)) == tuple(image[:, 6, 4].tolist())
    marked = mark_patch(image, 4, 6, 8, scale=4)
    assert marked.size == (128, 128)
    assert marked.getpixel((16, 24)) == (255, 0, 0)  # the frame's corner


@pytest.mark.parametrize("x, y, size, message", [
    (25, 0, 8, "x must be between 0 and 24, y between 0 and 24"),
    (0, -1, 8, "does not fit in the 32x32 image"),
    (0, 0, 0, "patch size must be between 1 and 16"),
    (0, 0, MAX_PATCH + 1, "patch size must be between 1 and 16"),
])
def test_patch_out_of_bounds_is_refused(shapes, x, y, size, message):
    with pytest.raises(ConfigError, match=message):
        channel_patch(shapes.train.images[0], x, y, size)
    with pytest.raises(ConfigError, match=message):
        zoom_patch(shapes.train.images[0], x, y, size)
