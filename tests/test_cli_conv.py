"""``python -m cnnlab conv``: the sandbox and a real layer from the shell, JSON for scripts, a GIF for
slides, and one clear line (exit 2) for every bad input."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from cnnlab.cli import main


def _json(argv: list[str], capsys) -> dict:
    assert main(["conv", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_is_the_output_and_one_explained_position(capsys):
    found = _json(["--input", "1,2,3;4,5,6;7,8,9", "--kernel", "1,0;0,1", "--bias", "0.5", "--at", "1,0"], capsys)
    assert set(found) == {"output", "output_size", "at"}
    assert found["output"] == [[6.5, 8.5], [12.5, 14.5]] and found["output_size"] == [2, 2]
    assert found["at"] == {"row": 1, "col": 0, "products": [[[4.0, 0.0], [0.0, 8.0]]], "bias": 0.5, "value": 12.5}
    assert _json(["--input", "1,2;3,4", "--kernel", "1"], capsys)["at"] is None  # no --at: no position explained


def test_json_of_a_pooling_names_the_winner_and_writes_padding_as_null(capsys):
    found = _json(["--input", "1,2,3;4,5,6;7,8,9", "--pool", "max", "--padding", "1", "--at", "0,1"], capsys)
    assert found["output"] == [[1, 3], [7, 9]]
    assert found["at"] == {"row": 0, "col": 1, "window": [[None, None], [2.0, 3.0]], "winner": [1, 1], "value": 3.0}
    avg = _json(["--input", "1,2;3,4", "--pool", "avg", "--at", "0,0"], capsys)
    assert avg["at"]["sum"] == 10 and avg["at"]["divisor"] == 4 and avg["at"]["value"] == 2.5


def test_at_prints_the_products_and_the_formula(capsys):
    assert main(["conv", "--input", "1,2,3;4,5,6;7,8,9|1,1,1;1,1,1;1,1,1", "--kernel", "identity",
                 "--padding", "1", "--at", "1,1"]) == 0
    out = capsys.readouterr().out
    assert "rows: (H - F + 2P) / S + 1 = (3 - 3 + 2x1) / 1 + 1 = 3" in out
    assert "input channel 0: 0x1 + 0x2 + 0x3 + 0x4 + 1x5" not in out  # values first, then weights
    assert "input channel 0: 1x0 + 2x0 + 3x0 + 4x0 + 5x1 + 6x0 + 7x0 + 8x0 + 9x0 = 5" in out
    assert "sum over 2 input channel(s): 5 + 1 = 6" in out and "plus the bias: 6 + 0 = 6" in out


def test_the_gif_has_one_readable_frame_per_output(tmp_path, capsys):
    out = tmp_path / "slides" / "conv.gif"  # a missing folder is created
    assert main(["conv", "--input", "digit:2", "--kernel", "sharpen", "--stride", "2", "--gif", str(out)]) == 0
    assert "saved" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.width >= 800 and gif.n_frames == 9  # 8x8 digit, 3x3 kernel, stride 2: 3x3 outputs


def test_a_real_layer_with_its_feature_map_value(capsys):
    found = _json(["--model", "lenet", "--layer", "C3", "--channel", "3", "--at", "2,5", "--image", "photo:camera"],
                  capsys)
    assert set(found) == {"output", "output_size", "at", "feature_map_value"}
    assert found["output_size"] == [8, 8] and len(found["at"]["products"]) == 6
    assert found["output"][2][5] == found["feature_map_value"]
    assert math.isclose(found["at"]["value"], found["feature_map_value"], abs_tol=1e-4)
    assert main(["conv", "--model", "lenet", "--layer", "S2", "--image", "photo:camera"]) == 0
    out = capsys.readouterr().out
    assert "output (6, 6) sees rows 12..17, cols 12..17 of the 28x28 input" in out  # the centre, by default
    assert "they agree" in out


def test_a_trained_run_from_the_command_line(capsys):
    from apphelpers import train_run

    from cnnlab.train import TrainConfig

    run = train_run(TrainConfig(model="lenet", dataset="digits", epochs=1, max_steps=3, subset=100, device="cpu"))
    found = _json(["--model", f"run:{run.run_id}", "--layer", "C1", "--at", "0,0", "--image", "photo:coins"], capsys)
    assert math.isclose(found["at"]["value"], found["feature_map_value"], abs_tol=1e-4)


def test_softmax_worked_out(capsys):
    found = _json(["--softmax", "2, 1, 0.1"], capsys)
    assert sum(found["probabilities"]) == pytest.approx(1.0)
    assert found["probabilities"][0] == pytest.approx(0.659, abs=1e-3)


@pytest.mark.parametrize("argv, words", [
    (["--input", "1,2,3;4,5"], "every row needs the same count"),
    (["--input", "1,2;3,x"], "'x' is not a number"),
    (["--input", ";".join(["1"] * 13)], "at most 12"),
    (["--input", ""], "the input is empty"),
    (["--stride", "0"], "stride 0"),
    (["--stride", "two"], "--stride must be a whole number"),
    (["--input", "1,2;3,4", "--kernel", "sharpen"], "kernel spans 3 rows"),
    (["--input", "1|2|3", "--kernel", "1|2"], "kernel has 2 channels but the input has 3"),
    (["--input", "1|2|3", "--groups", "2"], "groups=2 does not divide"),
    (["--input", "1,2;3,4", "--kernel", "1", "--at", "2,0"], "outside the 2x2 output"),
    (["--input", "1,2;3,4", "--kernel", "1", "--at", "1"], "ROW,COL"),
    (["--kernel", "emboss"], "preset"),
    (["--window", "3"], "add --pool"),
    (["--pool", "max", "--kernel", "1"], "--kernel is for convolutions"),
    (["--pool", "max", "--window", "2", "--padding", "2"], "at most half the window"),
    (["--gif", "out.png"], "ending in .gif"),
    (["--model", "lenet", "--layer", "F5"], "'F5' is a Linear, not a convolution or pooling; these are: C1, S2, C3"),
    (["--model", "lenet", "--layer", "C3", "--at", "9,9"], "outside the 8x8 output"),
    (["--model", "lenet", "--padding", "1"], "--padding: a real layer has its own"),
    (["--model", "lenet", "--gif", "a.gif"], "--gif animates the sandbox only"),
    (["--softmax", "1, nan"], "not a finite number"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["conv", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_benchmark_reports_every_interaction_with_its_baseline(capsys):
    """What each row measured and against which forward pass; no figure is compared with a speed."""
    assert main(["bench", "conv", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "goal: every interaction under 50 ms" in out
    for what in ("sandbox 3x12x12 photo, 3x3 kernel: move the window", "change the padding", "LeNet: pick C3",
                 "LeNet C3 (6x12x12 in): move the window", "VGG16 features.28 at 224 (512x14x14 in)"):
        assert what in out
    assert main(["bench", "conv", "--repeat", "0"]) == 2
