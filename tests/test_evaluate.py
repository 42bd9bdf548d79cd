"""Evaluation: overall and per-class top-1/top-5, confusion matrix, per-image top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.evaluate import evaluate, predict_topk
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


def test_trained_model_evaluation_matches_training_validation():
    b = digits_bundle(n_train=600)
    result = fit(TrainConfig(model="lenet", epochs=2, lr=3e-3, device="cpu"), data=b, save=False)
    r = evaluate(result.model, b.val, b.info, batch_size=37)
    best = max(result.history, key=lambda e: e.val_top1)
    assert r.top1 == pytest.approx(best.val_top1) and r.top5 == pytest.approx(best.val_top5)
    assert r.loss == pytest.approx(best.val_loss, rel=1e-5)
    assert np.diag(r.confusion).sum() / r.count == pytest.approx(r.top1)
    assert r.top1 > 0.8


def test_evaluation_adapts_channels_and_size():
    b = digits_bundle(n_train=300)
    cfg = TrainConfig(model="cifar_convnet", epochs=1, lr=3e-3, device="cpu")
    result = fit(cfg, data=b, save=False)
    r = evaluate(result.model, b.val, b.info)
    assert r.top1 == pytest.approx(result.history[0].val_top1)


def test_predict_topk_from_tensor_and_pil():
    from PIL import Image

    b = digits_bundle(n_train=600)
    model = fit(TrainConfig(model="lenet", epochs=2, lr=3e-3, device="cpu"), data=b, save=False).model
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
