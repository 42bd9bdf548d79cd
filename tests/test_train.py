"""The trainer: accuracy, events, cancellation, divergence, adaptation, reproducibility, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from apphelpers import train_run
import torch
from torch import nn

from cnnlab import runs
from cnnlab.errors import ConfigError
from cnnlab.events import KernelsEvent, XrayEvent
from cnnlab.train import DivergenceGuard, EndEvent, EpochEvent, StartEvent, StepEvent, TrainConfig, fit
from test_train_data import digits_bundle

FAST = dict(model="lenet", dataset="digits", batch_size=64, optimizer="adam", lr=3e-3, seed=0, device="cpu")


def _record():
    events: list = []
    return events, events.append


def test_lenet_reaches_90_percent_on_digits_and_saves_the_run():
    events, listener = _record()
    result = train_run(TrainConfig(epochs=3, **FAST), data=digits_bundle(), listeners=[listener])
    assert result.status == "finished"
    assert result.best_val_top1 >= 0.90
    assert [type(e) for e in events[:1]] == [StartEvent] and isinstance(events[-1], EndEvent)
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert all(isinstance(e, (StartEvent, StepEvent, EpochEvent, EndEvent, XrayEvent, KernelsEvent)) for e in events)
    # the X-ray: the first step, then every 20th (69 steps); the first convolution before training and after each epoch
    assert [e.step for e in events if isinstance(e, XrayEvent)] == [1, 20, 40, 60]
    assert [e.epoch for e in events if isinstance(e, KernelsEvent)] == [0, 1, 2, 3]
    for e in events:  # every event is JSON-serialisable as is
        json.dumps(asdict(e))
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps and steps[-1].step == result.steps == 3 * 23
    assert all(0 <= e.top1 <= 1 and e.images_per_sec > 0 for e in steps)
    assert epochs[-1].val_top5 >= epochs[-1].val_top1
    assert result.best_epoch == max(epochs, key=lambda e: e.val_top1).epoch

    run = runs.load_run(result.run_id)
    assert run.status == "finished"
    assert [m["epoch"] for m in run.metrics] == [1, 2, 3]
    assert run.meta["classes"] == [str(i) for i in range(10)]
    assert run.meta["input_shape"] == [1, 28, 28] and run.meta["num_params"] == 44_426
    assert run.config["lr"] == 3e-3
    assert run.status_record["best_epoch"] == result.best_epoch
    assert (run.path / "best.pt").is_file()
    assert [r.run_id for r in runs.list_runs()] == [result.run_id]


def _comparable(history):
    keep = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5", "lr")
    return [{k: getattr(e, k) for k in keep} for e in history]


def test_seeded_runs_are_reproducible_on_cpu():
    cfg = TrainConfig(epochs=2, augment="flip", **FAST)
    a = train_run(cfg, data=digits_bundle(n_train=400))
    b = train_run(cfg, data=digits_bundle(n_train=400))
    c = train_run(replace(cfg, seed=1), data=digits_bundle(n_train=400))
    assert _comparable(a.history) == _comparable(b.history)
    assert _comparable(a.history) != _comparable(c.history)
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(p, q)


def test_cancel_from_another_thread_stops_within_one_step():
    cancel = threading.Event()
    reached = threading.Event()
    seen: list[int] = []

    def canceller():
        reached.wait(10)
        cancel.set()

    def listener(event):
        if isinstance(event, StepEvent):
            seen.append(event.step)
            if event.step == 5:
                reached.set()
                assert cancel.wait(10)  # the other thread has cancelled before step 6 starts

    thread = threading.Thread(target=canceller)
    thread.start()
    cfg = TrainConfig(epochs=5, log_every_steps=1, **FAST)
    result = train_run(cfg, data=digits_bundle(), listeners=[listener], cancel=cancel)
    thread.join()
    assert result.status == "cancelled"
    assert result.steps == 5 and seen == [1, 2, 3, 4, 5]
    assert "cancelled at step 5" in result.message
    run = runs.load_run(result.run_id)
    assert run.status == "cancelled" and run.metrics == []
    model = runs.load_model(result.run_id)  # the weights of the moment are kept and loadable
    for k, v in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_cancel_after_an_epoch_keeps_the_best_weights():
    cancel = threading.Event()

    def listener(event):
        if isinstance(event, EpochEvent):
            cancel.set()

    result = train_run(TrainConfig(epochs=4, **FAST), data=digits_bundle(), listeners=[listener], cancel=cancel)
    assert result.status == "cancelled" and result.best_epoch == 1 and len(result.history) == 1
    assert result.steps == 23  # not one step of epoch 2
    assert "Best weights kept from epoch 1" in result.message
    state = torch.load(runs.load_run(result.run_id).path / "best.pt", weights_only=True)
    for k, v in result.model.state_dict().items():
        assert torch.equal(state[k], v)


class _ExplodesAt(nn.Module):
    """LeNet whose logits become infinite at the n-th training forward pass."""

    def __init__(self, n: int):
        super().__init__()
        from cnnlab.models import create

        self.inner = create("lenet")
        self.n = n
        self.train_calls = 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.train_calls += 1
            if self.train_calls >= self.n:
                out = out * float("inf")
        return out


def test_stops_at_the_first_non_finite_loss():
    model = _ExplodesAt(4)
    events, listener = _record()
    cfg = TrainConfig(epochs=3, log_every_steps=1, **FAST)
    result = train_run(cfg, model=model, data=digits_bundle(), listeners=[listener])
    assert result.status == "diverged"
    assert model.train_calls == 4  # no step after the bad one
    assert result.steps == 3
    assert "step 4" in result.message and "lower learning rate" in result.message
    assert max(e.step for e in events if isinstance(e, StepEvent)) == 3
    end = events[-1]
    assert isinstance(end, EndEvent) and end.status == "diverged"
    assert runs.load_run(result.run_id).status == "diverged"


def test_lagged_finiteness_check_as_on_cuda(monkeypatch):
    import cnnlab.train

    monkeypatch.setattr(cnnlab.train, "FINITE_CHECK_LAG", {"cpu": 1})
    model = _ExplodesAt(4)
    result = train_run(TrainConfig(epochs=3, log_every_steps=1, **FAST), model=model, data=digits_bundle())
    assert result.status == "diverged" and "step 4" in result.message
    assert model.train_calls == 5 and result.steps == 4  # one step in flight, no further update
    model = _ExplodesAt(23)  # the last step of the first epoch: caught before validation
    result = train_run(TrainConfig(epochs=3, **FAST), model=model, data=digits_bundle())
    assert result.status == "diverged" and "step 23" in result.message and result.history == []


def test_huge_learning_rate_diverges_with_a_message():
    cfg = TrainConfig(**{**FAST, "model": "lenet_v2", "optimizer": "sgd", "lr": 10.0, "epochs": 2,
                         "log_interval_s": 3600})  # no step event before the loss is NaN, however slow the machine
    result = train_run(cfg, data=digits_bundle())
    assert result.status == "diverged"
    assert "diverged" in result.message and ("NaN" in result.message or "inf" in result.message)
    assert result.steps < 23  # stopped in the first epoch, no validation of NaN weights
    assert result.history == []


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(lr=0), "learning rate"),
        (dict(lr=-1e-3), "learning rate"),
        (dict(lr=2e6), "learning rate"),
        (dict(lr=float("nan")), "learning rate"),
        (dict(batch_size=0), "batch size"),
        (dict(batch_size=4097), "batch size"),
        (dict(epochs=0), "epochs"),
        (dict(epochs=1001), "epochs"),
        (dict(epochs=2.5), "epochs"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(scheduler="plateau"), "scheduler"),
        (dict(augment="mixup"), "augmentation"),
        (dict(subset=5, num_classes=10), "subset"),
        (dict(subset=0), "subset"),
        (dict(weight_decay=-0.1), "weight decay"),
        (dict(model="lenett"), "lenet"),
        (dict(input_size=(4, 4)), "input size"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(scheduler="step", step_size=0), "step size"),
        (dict(freeze="features"), "prepared model"),
        (dict(pretrained=True), "prepared model"),
    ],
)
def test_config_errors(changes, words):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{**FAST, **changes}).validate()
    assert words in str(info.value)


def test_subset_smaller_than_the_classes_of_the_data():
    with pytest.raises(ConfigError, match="at least one image per class"):
        train_run(TrainConfig(subset=7, **FAST), data=digits_bundle())


def test_subset_is_stratified():
    result = train_run(TrainConfig(subset=100, epochs=1, **FAST), data=digits_bundle())
    run = runs.load_run(result.run_id)
    assert run.meta["train_images"] == 100
    assert result.steps == 2


def test_grey_digits_train_a_three_channel_32px_model():
    result = train_run(TrainConfig(**{**FAST, "model": "cifar_convnet", "epochs": 1, "max_steps": 5, "in_channels": 3}),
                       data=digits_bundle())
    assert result.status == "finished"
    meta = runs.load_run(result.run_id).meta
    assert meta["input_shape"] == [3, 32, 32] and meta["data_shape"] == [1, 28, 28]
    assert meta["model_mean"] == pytest.approx([0.19] * 3) and meta["model_std"] == pytest.approx([0.33] * 3)
    assert any("repeated" in n for n in meta["notes"]) and any("resized to 32x32" in n for n in meta["notes"])
    model = runs.load_model(result.run_id)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_colour_data_into_a_grey_model():
    result = train_run(TrainConfig(epochs=1, max_steps=5, in_channels=1, **FAST), data=digits_bundle(channels=3))
    assert result.status == "finished" and result.model.cnnlab_input_shape == (1, 28, 28)


def test_channels_that_cannot_be_adapted():
    bundle = digits_bundle()
    bundle.train.images = bundle.train.images.repeat(1, 2, 1, 1)
    bundle.val.images = bundle.val.images.repeat(1, 2, 1, 1)
    bundle.info.mean, bundle.info.std = (0.2, 0.2), (0.3, 0.3)
    with pytest.raises(ConfigError, match="2 channels"):
        train_run(TrainConfig(epochs=1, in_channels=1, **FAST), data=bundle)


def test_model_that_cannot_take_the_input_size():
    with pytest.raises(ConfigError, match=r"too small for d2l_nin: layer .* input_size=67 or more"):
        train_run(TrainConfig(**{**FAST, "model": "d2l_nin", "epochs": 1}), data=digits_bundle())


@pytest.mark.parametrize("scheduler", ["step", "cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw"])
def test_optimizers_and_schedulers_run(optimizer, scheduler):
    cfg = TrainConfig(**{**FAST, "optimizer": optimizer, "lr": 0.05, "scheduler": scheduler,
                         "epochs": 2, "step_size": 1})
    result = train_run(cfg, data=digits_bundle(n_train=400))
    assert result.status == "finished" and len(result.history) == 2
    if scheduler == "step":
        assert [e.lr for e in result.history] == pytest.approx([0.005, 0.0005])
    else:  # cosine and one-cycle anneal to (almost) zero by the last step
        assert result.history[-1].lr < result.history[0].lr < 0.05
        assert result.history[-1].lr < 0.05 / 50


@pytest.mark.parametrize("augment", ["flip", "cifar", "crop28", "imagenet"])
def test_augmentation_presets_train(augment):
    cfg = TrainConfig(**{**FAST, "model": "lenet5", "augment": augment, "epochs": 1, "max_steps": 3})
    result = train_run(cfg, data=digits_bundle(n_train=200))
    assert result.status == "finished" and result.steps == 3 and len(result.history) == 1


def test_a_prepared_model_with_frozen_layers_trains_only_the_rest():
    from cnnlab.models import create

    model = create("lenet")
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("F7")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_run(TrainConfig(epochs=1, max_steps=5, **FAST), model=model, data=digits_bundle())
    after = result.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("F7"))
    assert not torch.equal(before["F7.weight"], after["F7.weight"])


def test_a_failing_run_is_recorded_as_failed():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            from cnnlab.models import create

            self.inner = create("lenet")

        def forward(self, x):
            if self.training:
                raise RuntimeError("boom")
            return self.inner(x)

    events, listener = _record()
    with pytest.raises(RuntimeError, match="boom"):
        train_run(TrainConfig(epochs=1, **FAST), model=Broken(), data=digits_bundle(), listeners=[listener])
    assert events[-1].status == "failed" and "boom" in events[-1].message
    run = runs.list_runs()[0]
    assert run.status == "failed" and "boom" in run.message


_CHILD = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from cnnlab.runs import recorders
from cnnlab.train import TrainConfig, fit
from test_train_data import digits_bundle
fit(TrainConfig(model="lenet", epochs=1000, batch_size=64, lr=3e-3, device="cpu"), data=digits_bundle(),
    listeners=recorders(tensorboard=False))
"""


def test_a_killed_run_keeps_its_metrics_and_checkpoint(tmp_path):
    root = Path(__file__).resolve().parent.parent
    code = _CHILD.format(root=str(root), tests=str(root / "tests"))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 500  # a safety net only: the wait ends when the child has saved an epoch
        run = None
        while time.time() < deadline and proc.poll() is None:
            found = runs.list_runs()
            if found and found[0].metrics:
                run = found[0]
                break
            time.sleep(0.05)
        assert run is not None, f"the child never finished an epoch (exit code {proc.poll()})"
        assert run.status == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    run = runs.load_run(run.run_id)
    assert run.status == "interrupted" and "killed" in run.message
    assert len(run.metrics) >= 1 and run.metrics[0]["epoch"] == 1
    model = runs.load_model(run.run_id)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_fit_alone_writes_nothing_the_run_folder_is_a_listeners_job():
    from cnnlab.paths import runs_dir

    result = fit(TrainConfig(epochs=1, max_steps=3, **FAST), data=digits_bundle())
    assert result.status == "finished" and result.run_id is None
    assert not runs_dir().exists()


def test_lr_10_with_sgd_on_lenet_ends_diverged_not_finished():
    """Only NaN counted: LeNet at LR 10 ended "finished" with a loss of 150."""
    result = fit(TrainConfig(model="lenet", optimizer="sgd", lr=10, epochs=3, log_every_steps=1, device="cpu"),
                 data=digits_bundle())
    assert result.status == "diverged", result.message
    assert result.message.startswith("diverged: the loss rose to") and "guessing at random" in result.message
    assert "learning rate" in result.message


def test_stuck_at_chance_with_a_rising_loss_is_divergence():
    from cnnlab.train import DivergenceGuard, EpochEvent

    guard = DivergenceGuard(TrainConfig(), num_classes=10)

    def epoch(n, train_loss, val_top1):
        return EpochEvent(n, 10 * n, train_loss, 0.1, 0.5, 2.3, val_top1, 0.5, 0.1, 100.0, 1.0, 1.0, False)

    assert guard.epoch(epoch(1, 2.0, 0.30)) is None  # learning
    assert guard.epoch(epoch(2, 3.0, 0.35)) is None  # loss up, but accuracy well above chance
    assert guard.epoch(epoch(3, 3.6, 0.10)) is not None  # chance, loss worse than guessing, rising
    fresh = DivergenceGuard(TrainConfig(), num_classes=10)
    assert fresh.epoch(epoch(1, 2.4, 0.10)) is None  # a slow start at chance-level loss is not divergence
    # a first epoch whose mean loss includes a high start (MiniAlexNet V4 with Adam 1e-3; a fresh head on pretrained
    # features): not stuck; only a first epoch ten times worse than guessing is
    assert DivergenceGuard(TrainConfig(), num_classes=10).epoch(epoch(1, 13.0, 0.10)) is None
    assert DivergenceGuard(TrainConfig(), num_classes=10).epoch(epoch(1, 24.0, 0.10)) is not None


def test_momentum_nesterov_and_initialisation_reach_the_optimizer_and_the_model():
    from cnnlab.train import init_weights, make_optimizer, prepare

    cfg = TrainConfig(**{**FAST, "optimizer": "momentum", "momentum": 0.5, "nesterov": True, "lr": 0.01})
    opt = make_optimizer(cfg, torch.nn.Linear(2, 2).parameters())
    assert opt.param_groups[0]["momentum"] == 0.5 and opt.param_groups[0]["nesterov"] is True
    a = prepare(TrainConfig(init="xavier", **FAST), data=digits_bundle()).model
    b = prepare(TrainConfig(init="kaiming", **FAST), data=digits_bundle()).model
    default = prepare(TrainConfig(**FAST), data=digits_bundle()).model
    name = next(n for n, p in default.named_parameters() if n.endswith("weight") and p.dim() == 4)
    ws = [dict(m.named_parameters())[name] for m in (a, b, default)]
    assert not torch.equal(ws[0], ws[2]) and not torch.equal(ws[1], ws[2])
    assert all(float(p.detach().abs().sum()) == 0 for n, p in a.named_parameters() if n.endswith("bias"))
    layer = torch.nn.Conv2d(3, 64, 3)
    init_weights(layer, "kaiming")
    assert float(layer.weight.detach().std()) == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)  # He, fan-out


def test_official_test_split_is_the_validation_when_asked():
    from cnnlab.train import load_data

    opts = {"n_train": 300, "n_val": 60, "n_test": 120}
    holdout = load_data(TrainConfig(dataset="shapes", data_options=opts))
    official = load_data(TrainConfig(dataset="shapes", val_split="test", data_options=opts))
    assert torch.equal(official.val.images, holdout.test.images)
    assert len(official.train) == len(holdout.train) + len(holdout.val)  # no hold-out taken away
    with pytest.raises(ConfigError, match="no official test split"):
        load_data(TrainConfig(dataset="digits", val_split="test"))


def test_init_from_a_run_reuses_every_layer_but_the_head(capsys):
    """Seed 002's CIFAR-100 -> CIFAR-10 fine-tuning, here 8 shape classes -> 3, from the command line."""
    from cnnlab.cli import main

    opts = ["--data-option", "n_train=160", "--data-option", "n_val=40"]
    assert main(["train", "--model", "cifar_convnet", "--data", "shapes", "--max-steps", "3", "--epochs", "1",
                 "--device", "cpu", "--no-tensorboard", *opts]) == 0
    (source,) = runs.list_runs()
    assert main(["train", "--model", "cifar_convnet", "--data", "shapes", "--epochs", "1", "--max-steps", "3",
                 "--device", "cpu", "--no-tensorboard", "--init-from", source.run_id, *opts,
                 "--data-option", 'classes=["ring","heart","crescent"]']) == 0
    out = capsys.readouterr().out
    target = runs.list_runs()[0]
    note = next(n for n in target.meta["notes"] if n.startswith("started from run"))
    assert note in out and "fc3" in note
    before = runs.load_checkpoint(source.run_id)
    fresh = [k for k in before if k.startswith("fc3.")]
    assert f"reused {len(before) - len(fresh)} of {len(before)} tensors" in note
    assert target.config["init_from"] == source.run_id and target.meta["model_kwargs"]["num_classes"] == 3


def test_init_from_needs_the_weights():
    with pytest.raises(ConfigError, match="initial_state"):
        fit(TrainConfig(init_from="20260101-000000-lenet-digits-abcd", **FAST), data=digits_bundle())


def test_crop_augmentation_says_crop_not_resize():
    from cnnlab.train import prepare

    setup = prepare(TrainConfig(model="mini_alexnet_v3", dataset="shapes", augment="crop28", device="cpu",
                                data_options={"n_train": 64, "n_val": 16}))
    assert setup.model_shape == (3, 28, 28)
    assert "random 28x28 crops of the 32x32 images (the centre 28x28 at validation)." in setup.notes
    assert not any("resized" in n for n in setup.notes)


def test_models_take_the_datas_channels_by_default():
    """LeNet-5 on RGB CIFAR-10 silently became greyscale (82,826 parameters, not the seed's 83,126)."""
    from cnnlab.data import load_dataset
    from cnnlab.train import prepare

    shapes = load_dataset("shapes", n_train=64, n_val=16)
    setup = prepare(TrainConfig(model="lenet5", dataset="shapes", device="cpu"), data=shapes)
    assert setup.model_shape == (3, 32, 32) and runs.run_meta(setup)["num_params"] == 83_126 - 10 * 84 - 10 + 8 * 84 + 8
    grey = prepare(TrainConfig(model="lenet5", dataset="shapes", in_channels=1, device="cpu"), data=shapes)
    assert grey.model_shape[0] == 1 and any("converted to greyscale" in n for n in grey.notes)


def test_a_short_run_that_explodes_is_diverged_not_finished():
    # 5 steps never make a window of step events of their own: the epoch's and validation's losses go
    # through the same check (issue 23: this run used to end "finished ... best val top-1 35.4%")
    result = fit(TrainConfig(model="lenet", dataset="digits", epochs=1, max_steps=5, lr=1e6, device="cpu",
                             log_interval_s=3600))  # no step event by time, however slow the machine
    assert result.status == "diverged", result.message
    assert "training loss rose to" in result.message and "times the 2.30 of guessing" in result.message
    assert result.best_val_top1 is None and result.best_epoch is None  # a diverged epoch's weights are not the best
    assert len(result.history) == 1 and not result.history[0].is_best  # the curves still show the epoch


def test_an_exploded_validation_loss_is_divergence():
    guard = DivergenceGuard(TrainConfig(), num_classes=10)

    def epoch(train_loss, val_loss):
        return EpochEvent(1, 10, train_loss, 0.5, 0.9, val_loss, 0.5, 0.9, 1e-3, 1.0, 1.0, 0.0, False)

    assert guard.epoch(epoch(1.0, 2.0)) is None
    message = guard.epoch(epoch(1.0, 2.2e7))
    assert message is not None and "validation loss rose to 2.2e+07 after epoch 1" in message
    assert "NaN" in DivergenceGuard(TrainConfig(), num_classes=10).epoch(epoch(float("nan"), 1.0))
