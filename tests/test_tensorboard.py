"""Every saved run carries a TensorBoard log next to its files (seed 001 teaches TensorBoard):
scalars, a grid of training images, the model graph and per-class precision-recall curves, read
back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cnnlab.cli import main  # noqa: E402
from cnnlab.paths import runs_dir  # noqa: E402
from cnnlab.runs import list_runs  # noqa: E402


def read_log(run_path):
    acc = EventAccumulator(str(run_path), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_cli_training_writes_scalars_images_graph_and_pr_curves(capsys):
    assert main(["train", "--model", "lenet", "--data", "digits", "--epochs", "2", "--subset", "300",
                 "--lr", "0.003", "--device", "cpu"]) == 0
    (run,) = list_runs()
    assert list(run.path.glob("events.out.tfevents.*")), "no event file in the run folder"
    assert run.path.parent == runs_dir()  # so `tensorboard --logdir models_cache/runs` lists it

    acc = read_log(run.path)
    tags = acc.Tags()
    for tag in ("loss/train", "loss/val", "top1/train", "top1/val", "top5/val", "learning rate",
                "images per second"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
    val = acc.Scalars("top1/val")
    assert [e.step for e in val] == [1, 2]
    assert val[-1].value == pytest.approx(run.metrics[-1]["val_top1"], abs=1e-6)
    assert "train images" in tags["images"]
    assert tags["graph"], "no model graph"
    pr = [t for t in tags["tensors"] if t.startswith("precision-recall/")]
    assert len(pr) == 10 and any(t.endswith(" 7") for t in pr), pr


def test_no_tensorboard_option_writes_no_log(capsys):
    assert main(["train", "--model", "lenet", "--data", "digits", "--epochs", "1", "--subset", "100",
                 "--device", "cpu", "--no-tensorboard"]) == 0
    (run,) = list_runs()
    assert not list(run.path.glob("events.out.tfevents.*"))
