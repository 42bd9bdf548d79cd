"""``python -m cnnlab features``: a zoo model's or a run's channels as top patches or optimised inputs
beside their random-weights twins, a PNG and JSON, and one clear line (exit 2, nothing written) for each
bad input."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cnnlab.cli import main


def _json(argv: list[str], capsys) -> dict:
    assert main(["features", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_top_patches_of_a_zoo_model_as_json_and_a_png(tmp_path, capsys):
    out = tmp_path / "pictures" / "c3.png"  # a missing folder is created
    found = _json(["lenet", "--layer", "C3", "--channels", "0-3", "--images", "60", "--out", str(out)], capsys)
    assert (found["model"], found["layer"], found["method"], found["dataset"]) == ("zoo:lenet", "C3", "patches",
                                                                                 "digits")
    assert found["images"] == 60 and found["out"] == str(out)
    assert [c["channel"] for c in found["channels"]] == [0, 1, 2, 3]
    for c in found["channels"]:
        values = [p["value"] for p in c["patches"]]
        assert len(values) == 9 and values == sorted(values, reverse=True)
        assert len({p["image"] for p in c["patches"]}) == 9 and all(0 <= p["image"] < 60 for p in c["patches"])
        assert all(len(p["box"]) == 4 for p in c["patches"])
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 800


def test_optimised_inputs_of_a_run_beside_random_weights(digits_run, tmp_path, capsys):
    from apphelpers import copy_runs

    cache, result = digits_run
    copy_runs(cache)
    argv = [result.run_id, "--layer", "C1", "--channels", "0,2", "--method", "optimise", "--steps", "6",
            "--images", "40"]
    found = _json([*argv, "--out", str(tmp_path / "a.png")], capsys)
    assert found["model"] == f"run:{result.run_id}" and found["dataset"] == "digits"  # the run's own data
    assert (found["objective"], found["steps"], found["seed"]) == ("mean", 6, 0)
    for c in found["channels"]:
        assert c["validation_mean"] is not None and c["value"] > c["start"]
        assert c["random_weights"]["value"] != c["value"]
    assert main(["features", *argv, "--out", str(tmp_path / "b.png")]) == 0  # the same seed: the same picture
    text = capsys.readouterr().out
    assert "channel 2: " in text and "random weights" in text and f"saved {tmp_path / 'b.png'}" in text
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_three_channel_models_and_adapted_channels(tmp_path, capsys):
    out = tmp_path / "colour.png"
    found = _json(["lenet_color", "--layer", "feature_extractor.3", "--channels", "5", "--images", "30",
                   "--out", str(out)], capsys)
    assert found["dataset"] == "shapes" and found["channels"][0]["channel"] == 5
    with Image.open(out) as img:
        assert img.mode == "RGB"
    # a one-channel model on three-channel images: they go through the input pipeline's luma, as in training
    found = _json(["lenet", "--layer", "C1", "--channels", "1", "--dataset", "shapes", "--images", "20",
                   "--method", "optimise", "--steps", "3", "--out", str(out)], capsys)
    assert found["dataset"] == "shapes" and found["channels"][0]["validation_mean"] is not None


@pytest.mark.parametrize("argv, message", [
    (["--layer", "C4"], "error: no layer named 'C4' in LeNet. Closest: C3, C1. Its convolutions: C1, C3."),
    (["--layer", "S2"], "error: layer 'S2' (AvgPool2d) is not a convolution; pick one of: C1, C3."),
    (["--layer", "C1", "--channels", "0-7"], "error: channel 6 does not exist: C1 has 6 channels, 0 to 5."),
    (["--layer", "C1", "--channels", "two"], "error: channels 'two': give numbers and ranges like 0-7 or 0,3,5-6."),
    ([], "error: name a convolution with --layer; LeNet (untrained) has: C1, C3."),
    (["--layer", "C1", "--images", "0"], "error: the number of images must be between 1 and 20,000, got 0."),
    (["--layer", "C1", "--method", "optimise", "--steps", "5000"], "error: steps must be between 1 and 2048"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys):
    assert main(["features", "lenet", *argv, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_or_wrong_path_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder.png").mkdir()
    for out, message in ((tmp_path / "file.txt" / "x.png", "cannot create the folder"),
                         (tmp_path / "x.jpg", "give a file name ending in .png"),
                         (tmp_path / "folder.png", "is a folder")):
        assert main(["features", "no-such-model", "--layer", "C1", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder.png"]


def test_the_benchmark_reports_every_measurement():
    from cnnlab.bench import bench_features, features_report

    result = bench_features(repeat=1, steps=1, images=64)  # every row, small: no timing is compared
    assert result["patches"]["forward_s"] > 0 and result["patches"]["seconds"] > 0
    assert [r["what"].split(" ")[0] for r in result["optimise"]] == ["LeNet", "CIFAR", "VGG-16"]
    text = features_report(result)
    assert "forward passes alone" in text and "batch passes" in text and text.count("goal < ") == 3
