"""Evaluation: overall and per-class top-1/top-5, confusion matrix, per-image top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.evaluate import evaluate, predict_topk, row_shares
from cnnlab.train import TrainConfig, fit
from test_train_data import digits_bundle


class AlwaysClass(nn.Module):
    """Logits that rank class ``c`` first, then ``c+1``, ... (a model with known accuracy)."""

    def __init__(self, c: int, num_classes: int = 10):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        order = [(c + i) % num_classes for i in range(num_classes)]
        logits = torch.zeros(num_classes)
        for rank, cls in enumerate(order):
            logits[cls] = float(num_classes - rank)
        self.register_buffer("logits", logits)
        self.conv = nn.Conv2d(1, 1, 1)  # declares the input channels

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1) * self.scale


def test_known_accuracies_per_class_and_confusion():
    b = digits_bundle()
    labels = b.val.labels
    r = evaluate(AlwaysClass(3), b.val, b.info, device="cpu")
    n = len(labels)
    counts = torch.bincount(labels, minlength=10).numpy()
    assert r.count == n and r.top1 == pytest.approx(counts[3] / n)
    assert r.top5 == pytest.approx(counts[3:8].sum() / n)  # classes 3..7 are in the top 5
    assert [c.top1 for c in r.per_class] == [1.0 if i == 3 else 0.0 for i in range(10)]
    assert [c.top5 for c in r.per_class] == [1.0 if 3 <= i <= 7 else 0.0 for i in range(10)]
    assert [c.count for c in r.per_class] == counts.tolist()
    assert r.confusion.shape == (10, 10) and r.confusion.sum() == n
    assert (r.confusion[:, 3] == counts).all() and r.confusion[:, [0, 1, 2, 4]].sum() == 0
    p = torch.softmax(torch.arange(10, 0, -1).float(), 0)
    assert r.loss == pytest.approx(float(-torch.log(p[(labels - 3) % 10]).mean()), rel=1e-5)
    table = r.table()
    assert "class" in table and "top5" in table and "overall" in table and len(table.splitlines()) == 13


def test_confusion_row_shares_compare_classes_of_different_sizes():
    confusion = np.array([[90, 10, 0], [1, 3, 0], [0, 0, 0]])  # 100 images of class 0, 4 of class 1, none of 2
    shares = row_shares(confusion)
    np.testing.assert_allclose(shares, [[0.9, 0.1, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 0.0]])
    assert shares[1, 1] < shares[0, 0] < 1  # the small class's 3 right of 4 is a lower share than 90 of 100
    assert confusion.dtype.kind == "i" and confusion[0, 0] == 90  # the counts are left as they are


def test_trained_model_evaluation_matches_training_validation():
    b = digits_bundle(n_train=600)
    result = fit(TrainConfig(model="lenet", epochs=2, lr=3e-3, device="cpu"), data=b)
    r = evaluate(result.model, b.val, b.info, batch_size=37)
    best = max(result.history, key=lambda e: e.val_top1)
    assert r.top1 == pytest.approx(best.val_top1) and r.top5 == pytest.approx(best.val_top5)
    assert r.loss == pytest.approx(best.val_loss, rel=1e-5)
    assert np.diag(r.confusion).sum() / r.count == pytest.approx(r.top1)
    assert r.top1 > 0.8


def test_evaluation_adapts_channels_and_size():
    b = digits_bundle(n_train=300)
    cfg = TrainConfig(model="cifar_convnet", epochs=1, lr=3e-3, device="cpu")
    result = fit(cfg, data=b)
    r = evaluate(result.model, b.val, b.info)
    assert r.top1 == pytest.approx(result.history[0].val_top1)


def test_predict_topk_from_tensor_and_pil():
    from PIL import Image

    b = digits_bundle(n_train=600)
    model = fit(TrainConfig(model="lenet", epochs=2, lr=3e-3, device="cpu"), data=b).model
    img = b.val.images[0]
    top = predict_topk(model, img, b.info, k=3)
    assert len(top) == 3 and [c for c, _ in top][0] == str(int(b.val.labels[0]))
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    pil = Image.fromarray(img[0].numpy(), mode="L")
    top_pil = predict_topk(model, pil, b.info, k=3)
    assert [c for c, _ in top_pil] == [c for c, _ in top]
    assert [p for _, p in top_pil] == pytest.approx(probs, abs=1e-4)
    rgb = pil.convert("RGB")  # a colour photo for a grey model
    assert predict_topk(model, rgb, b.info, k=1)[0][0] == top[0][0]
    assert len(predict_topk(model, img, b.info, k=50)) == 10
    with pytest.raises(ConfigError):
        predict_topk(model, "not an image", b.info)


def _grey_model_and_rgb_info():
    from types import SimpleNamespace

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    model.cnnlab_input_shape = (1, 24, 24)
    info = SimpleNamespace(classes=["a", "b", "c"], input_shape=(3, 24, 24),
                           mean=(0.6, 0.3, 0.2), std=(0.3, 0.1, 0.2))  # the RGB dataset's own statistics
    g = torch.Generator().manual_seed(1)
    rgb = (torch.rand(3, 24, 24, generator=g) * 255).to(torch.uint8)
    return model, info, rgb


def test_predict_topk_on_a_grey_model_uses_the_model_space_statistics():
    """Bug 4: a PIL image on a grey model trained on RGB data was normalised with the average of
    the RGB statistics; now the model-space statistics are used, and RGB ones are refused."""
    from PIL import Image

    from cnnlab.data.pipeline import LUMA_WEIGHTS

    model, info, rgb = _grey_model_and_rgb_info()
    pil = Image.fromarray(rgb.permute(1, 2, 0).numpy())
    with pytest.raises(ConfigError, match="never averaged"):
        predict_topk(model, pil, info, k=3)
    with pytest.raises(ConfigError, match="never averaged"):
        predict_topk(model, rgb, info, k=3)
    mean, std = (0.41,), (0.17,)
    luma = (rgb.float() / 255 * torch.tensor(LUMA_WEIGHTS).view(3, 1, 1)).sum(0, keepdim=True)
    expected = model(((luma - mean[0]) / std[0])[None]).softmax(1)[0]
    for image in (pil, rgb):
        top = predict_topk(model, image, info, k=3, mean=mean, std=std)
        assert [p for _, p in sorted(top)] == pytest.approx(expected.tolist(), abs=1e-5)
    model.cnnlab_norm = (mean, std)  # recorded with the model (trainer, rebuilt run)
    top = predict_topk(model, pil, info, k=3)
    assert [p for _, p in sorted(top)] == pytest.approx(expected.tolist(), abs=1e-5)


def test_evaluate_uses_the_model_space_statistics():
    from types import SimpleNamespace

    from cnnlab.data import TensorSplit
    from cnnlab.data.pipeline import model_space_stats

    model, info, rgb = _grey_model_and_rgb_info()
    g = torch.Generator().manual_seed(2)
    images = (torch.rand(20, 3, 24, 24, generator=g) * 255).to(torch.uint8)
    split = TensorSplit(images, torch.arange(20) % 3)
    with pytest.raises(ConfigError, match="never averaged"):
        evaluate(model, split, info, device="cpu")
    mean, std = model_space_stats(images, info.mean, info.std, 1)
    r = evaluate(model, split, info, device="cpu", mean=mean, std=std)
    model.cnnlab_norm = (mean, std)
    assert evaluate(model, split, info, device="cpu").loss == pytest.approx(r.loss)
    assert isinstance(info, SimpleNamespace) and r.count == 20


def test_per_class_loss_averages_to_the_overall_loss():
    from cnnlab.data import load_dataset
    from cnnlab.evaluate import evaluate
    from cnnlab.models import create

    bundle = load_dataset("digits", seed=0)
    result = evaluate(create("lenet", num_classes=10).eval(), bundle.val, bundle.info, device="cpu")
    weighted = sum(c.loss * c.count for c in result.per_class) / result.count
    assert weighted == pytest.approx(result.loss, rel=1e-6)
    assert len({round(c.loss, 6) for c in result.per_class}) > 1
    assert "loss" in result.table().splitlines()[0]
