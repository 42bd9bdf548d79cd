"""Looking at the mistakes of a saved run: per-image losses, confusion cells, top losses, the
nearest training images (penultimate features) and Grad-CAM, on the session's trained digits run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from apphelpers import colour_folder, train_run, using_cache
from PIL import Image
from torch.nn import functional as F

from cnnlab.activations import denormalize, penultimate, penultimate_layer
from cnnlab.errors import CnnlabError, ConfigError, DataError
from cnnlab.evaluate import evaluate_run
from cnnlab.mistakes import (
    MAX_EXPLAINED,
    RunMistakes,
    confusion_cells,
    embed_split,
    nearest,
    stratified_sample,
)
from cnnlab.train import TrainConfig


@pytest.fixture(scope="module")
def found(digits_run):
    """The mistakes of the session's LeNet run on 300 digits (seed 3), training features included."""
    cache, result = digits_run
    with using_cache(cache):
        m = RunMistakes(result.run_id)
        m.embedding()
    return m


def hooked_features(model, x: torch.Tensor) -> torch.Tensor:
    """The input of the last Linear layer, captured here with a plain torch hook (not cnnlab's)."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen = []
    handle = last.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return seen[0].flatten(1)


def test_nearest_examples_are_training_images_of_the_predicted_class(found):
    train, preds = found.data.train, found.predictions
    emb = found.embedding()
    assert emb.layer == penultimate_layer(found.model) == "F7" and not emb.capped and len(emb.indices) == len(train)
    shown = found.top_losses(6)
    examples = found.explain(shown, n_neighbours=4)
    assert [ex.index for ex in examples] == list(shown)
    all_train = F.normalize(hooked_features(found.model, found.pipeline.eval_batch(train.images)), dim=1)
    for ex in examples:
        pred = int(preds.predicted[ex.index])
        assert ex.predicted == found.classes[pred] and len(ex.neighbours) == 4
        positions = [nb.index for nb in ex.neighbours]
        assert all(int(train.labels[j]) == pred for j in positions)  # of the predicted class, true or not
        sims = [nb.similarity for nb in ex.neighbours]
        assert sims == sorted(sims, reverse=True)
        # the same ranking from an independent brute force over every training image of that class
        query = F.normalize(hooked_features(found.model, found.pipeline.eval_batch(found.val.images[[ex.index]])), dim=1)[0]
        of_class = torch.nonzero(train.labels == pred).flatten()
        brute = all_train[of_class] @ query
        best = of_class[brute.argsort(descending=True)[:4]].tolist()
        assert positions == best
        assert sims == pytest.approx(brute.sort(descending=True).values[:4].tolist(), abs=1e-4)
        # the picture shown is that training image as the model sees it (the run's own split)
        j = positions[0]
        seen = denormalize(found.pipeline.eval_batch(train.images[[j]]), found.pipeline.model_mean, found.pipeline.model_std)
        assert np.array_equal(ex.neighbours[0].image, seen)
        # Grad-CAM of the predicted class, over the image as the model sees it
        assert ex.heatmap.shape == (28, 28) and ex.heatmap.max() == pytest.approx(1.0) and ex.heatmap.min() >= 0
        assert isinstance(ex.overlay, Image.Image) and ex.overlay.size == (28, 28) and ex.cam_layer == "C3"
        assert ex.image.shape == (28, 28, 3) and ex.top[0][0] == ex.predicted and len(ex.top) == 3

    # The features say which digit it is: the single nearest training image, over all classes, has the
    # true class of most validation images (chance: 10%). Wrong features would fail this.
    feats, _ = penultimate(found.model, found.pipeline.eval_batch(found.val.images))
    agree = [int(train.labels[nearest(emb, f, None, 1)[0][0]]) == int(y) for f, y in zip(feats, found.val.labels)]
    assert np.mean(agree) > 0.6


def test_training_features_are_bounded_and_keep_every_class(found):
    train = found.data.train
    small = embed_split(found.model, train, found.pipeline, max_images=50)
    assert small.capped and len(small.indices) <= 50 and small.total == len(train)
    assert set(small.labels.tolist()) == set(train.labels.tolist())  # every class keeps candidates
    assert np.array_equal(small.labels, train.labels.numpy()[small.indices])
    full = found.embedding()
    rows = np.searchsorted(full.indices, small.indices)
    assert torch.allclose(small.features, full.features[torch.from_numpy(rows)], atol=1e-5)
    # a wide or heavy network embeds fewer images: 84 features, about 0.28 M multiply-adds per LeNet image
    assert len(embed_split(found.model, train, found.pipeline, max_values=84 * 40).indices) <= 40
    assert len(embed_split(found.model, train, found.pipeline, max_macs=30 * 290_000).indices) <= 30
    labels = np.array([0] * 90 + [1] * 10)
    picked = stratified_sample(labels, 20)
    assert len(picked) == 20 and (labels[picked] == 1).sum() == 10
    assert list(stratified_sample(labels, 500)) == list(range(100))


def test_top_losses_are_sorted_and_are_the_per_image_cross_entropy(found):
    preds = found.predictions
    x = found.pipeline.eval_batch(found.val.images)
    with torch.no_grad():
        logits = found.model.eval()(x)
    expected = F.cross_entropy(logits, found.val.labels, reduction="none").double().numpy()
    np.testing.assert_allclose(preds.losses, expected, rtol=1e-5, atol=1e-6)
    top = found.top_losses(10)
    assert len(top) == 10 and np.all(np.diff(preds.losses[top]) <= 0)
    assert preds.losses[top[-1]] >= np.sort(expected)[-10] - 1e-6  # they are the ten largest
    probs = logits.softmax(1)
    i = int(top[0])
    assert [c for c, _ in preds.top(i)] == [found.classes[int(k)] for k in probs[i].topk(3).indices]
    assert [p for _, p in preds.top(i)] == pytest.approx(probs[i].topk(3).values.tolist(), abs=1e-5)
    assert np.array_equal(preds.predicted, logits.argmax(1).numpy())


def test_confusion_cells_list_the_mistakes_most_frequent_first_then_the_right_answers():
    confusion = np.array([[5, 2, 0],
                          [7, 0, 2],
                          [0, 0, 9]])
    # mistakes: 7 (1->0), then the two 2s in row order (0->1 before 1->2); right answers class by class,
    # the empty diagonal cell of class 1 and the empty mistakes left out
    assert confusion_cells(confusion) == [(1, 0), (0, 1), (1, 2), (0, 0), (2, 2)]
    assert confusion_cells(np.zeros((2, 2), dtype=np.int64)) == []


def test_a_confusion_cell_holds_exactly_its_images(found, digits_run):
    with using_cache(digits_run[0]):
        result = evaluate_run(found.run_id, data=found.data)  # the Runs page's matrix
    preds = found.predictions
    n = len(found.classes)
    assert np.array_equal(preds.confusion(), result.confusion)
    seen = []
    for t in range(n):
        for p in range(n):
            cell = found.cell(t, p)
            assert len(cell) == result.confusion[t, p]
            assert np.all(preds.labels[cell] == t) and np.all(preds.predicted[cell] == p)
            assert np.all(np.diff(preds.losses[cell]) <= 0)  # highest loss first
            seen += cell.tolist()
    assert sorted(seen) == list(range(len(preds)))  # every image in exactly one cell
    assert result.confusion.trace() < len(preds)  # this run makes mistakes, so off-diagonal cells are not empty
    with pytest.raises(ConfigError, match="does not exist"):
        found.cell(0, n)
    with pytest.raises(ConfigError, match="at most"):
        found.explain(range(MAX_EXPLAINED + 1))
    with pytest.raises(ConfigError, match="between 0 and"):
        found.explain([len(preds)])


def test_missing_data_and_damaged_checkpoint_give_clear_messages(tmp_path, digits_run):
    folder = tmp_path / "colours"
    colour_folder(folder, per_class=8, seed=0)
    gone = train_run(TrainConfig(model="lenet", dataset="folder", data_root=str(folder), epochs=1, batch_size=8,
                                 data_options={"image_size": 32, "progress": False}))
    assert gone.status == "finished", gone.message
    assert len(RunMistakes(gone.run_id).predictions) > 0  # while its images are there
    shutil.rmtree(folder)
    with pytest.raises(DataError, match="does not exist"):
        RunMistakes(gone.run_id)

    cache, result = digits_run
    target = tmp_path / "cache-copy"
    shutil.copytree(cache, target)
    best = target / "runs" / result.run_id / "best.pt"
    best.write_bytes(best.read_bytes()[:100])  # a truncated checkpoint
    with using_cache(target), pytest.raises(CnnlabError, match=result.run_id) as err:
        RunMistakes(result.run_id)
    assert "checkpoint" in str(err.value)


def test_penultimate_features_of_a_network_without_a_linear_layer():
    from cnnlab import models

    model = models.create("d2l_nin", num_classes=10).eval()  # NiN: convolutions, then global pooling
    name = penultimate_layer(model)
    layer = dict(model.named_modules())[name]
    assert isinstance(layer, torch.nn.Conv2d) and layer.out_channels == 10 and layer.in_channels == 384
    seen = []
    handle = layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    x = torch.randn(2, 3, 96, 96)
    try:
        feats, logits = penultimate(model, x)
    finally:
        handle.remove()
    assert torch.allclose(feats, seen[0].mean(dim=(2, 3))) and feats.shape == (2, 384)
    with torch.no_grad():
        assert torch.allclose(logits, model(x), atol=1e-5)
