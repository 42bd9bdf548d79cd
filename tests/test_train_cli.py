"""``python -m cnnlab train | eval | runs | bench train`` through the real data layer (digits)."""

from __future__ import annotations

import pytest

from cnnlab import runs
from cnnlab.cli import main


def test_train_then_eval_then_list(capsys):
    assert main(["train", "--model", "lenet", "--data", "digits", "--epochs", "2", "--lr", "0.003",
                 "--subset", "500", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    (run,) = runs.list_runs()
    assert f"run id: {run.run_id}" in out and "finished" in out
    assert "val top1" in out and len(run.metrics) == 2 and run.meta["train_images"] == 500

    assert main(["eval", run.run_id[:-3]]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "top5" in out
    top1 = float(out.strip().splitlines()[-1].split()[2].rstrip("%")) / 100
    assert top1 == pytest.approx(run.best_val_top1, abs=1e-3)

    assert main(["runs"]) == 0
    assert run.run_id in capsys.readouterr().out
    assert main(["runs", "--delete", run.run_id]) == 0
    assert runs.list_runs() == []


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--lr", "0"], "learning rate"),
        (["train", "--optimizer", "rmsprop"], "optimizer"),
        (["train", "--model", "lenett"], "lenet"),
        (["eval", "no-such-run"], "no run"),
        (["bench", "train", "--seconds", "0.1"], "seconds"),
    ],
)
def test_user_errors_are_one_line_messages(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and "Traceback" not in err


def test_bench_reports_both_loops(monkeypatch):
    """Each figure comes from training that really ran: our trainer's steps at each batch size (its
    last step's reading), and the images the seed-style loop trained on. No figure is compared with
    a speed: the machine's speed is not the test's business."""
    from cnnlab import bench
    from cnnlab.train import StepEvent

    fits: list[tuple[int, list]] = []  # (batch size, step events) of each training the benchmark ran
    real_fit, real_loop = bench.fit, bench._seed_style_loop
    seed_rounds: list[tuple[int, float]] = []  # (images trained on, seconds) of each seed-style round

    def spy_fit(config, **kwargs):
        steps: list = []
        fits.append((config.batch_size, steps))
        listeners = [*kwargs.pop("listeners"), lambda e: steps.append(e) if isinstance(e, StepEvent) else None]
        return real_fit(config, listeners=listeners, **kwargs)

    def spy_loop(*args):
        seed_rounds.append(real_loop(*args))
        return seed_rounds[-1]

    monkeypatch.setattr(bench, "fit", spy_fit)
    monkeypatch.setattr(bench, "_seed_style_loop", spy_loop)
    r = bench.bench_train(seconds=1.0, rounds=1, our_batch_sizes=(128,))
    # one round: ours at 64 and 128, then ours at 64 again beside the busy process
    assert [bs for bs, _ in fits] == [64, 128, 64] and all(steps and steps[-1].step >= 1 for _, steps in fits)
    assert (r.ours[64], r.ours[128], r.busy) == tuple(steps[-1].images_per_sec for _, steps in fits)
    (images, seconds), = seed_rounds
    assert images >= r.batch_size == 64 and r.baseline_images == images  # at least one timed batch after warm-up
    assert r.baseline_images_per_sec == pytest.approx(images / seconds)
    assert set(r.ours) == {64, 128} and r.baseline_images_per_sec > 0 and r.ceiling > 0
    assert r.ratio == pytest.approx(r.ours[64] / r.baseline_images_per_sec)
    assert r.busy > 0 and r.busy_threads >= 1 and r.cores >= 1  # beside a busy process (its own process)
    text = r.report()
    assert "seed-style loop" in text and "cnnlab trainer, quiet" in text and "beside a busy process" in text
    assert "trainer / model alone" in text and "busy process / quiet" in text


def test_bench_app_compares_a_polled_job_with_the_command_line():
    from cnnlab.bench import bench_app

    r = bench_app(seconds=1.0, poll_s=0.1, rounds=1)
    assert r["cli_images_per_sec"] > 0 and r["app_images_per_sec"] > 0 and r["polls"] >= 1
    assert r["ratio"] == pytest.approx(r["app_images_per_sec"] / r["cli_images_per_sec"])


def test_bench_report_on_a_gpu_gives_the_share_of_its_bf16_peak():
    from cnnlab.bench import BenchResult, gpu_bf16_peak

    assert gpu_bf16_peak("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_bf16_peak("NVIDIA H100 PCIe") == 756.0
    assert gpu_bf16_peak("an unknown accelerator") == 0.0
    r = BenchResult("cifar_resnet", "shapes", "cuda:0", 64, 1, 5000.0, 1, {64: 15000.0, 256: 65000.0}, 34000.0,
                    macs_per_image=41_000_000, peak_tflops=989.0)
    text = r.report()
    # 6 FLOPs per MAC and image (forward + backward) at the best batch: 6 * 41e6 * 65000 = 16.0 TFLOP/s
    assert "share of the GPU's bf16 peak" in text and "16.0 of 989 TFLOP/s" in text and "1.6%" in text
    assert "share of the GPU" not in BenchResult("lenet", "digits", "cpu", 64, 2, 100.0, 1, {64: 200.0}).report()


def test_picture_commands_create_a_missing_output_folder(tmp_path, capsys):
    out = tmp_path / "slides" / "week 3" / "kernels.png"
    assert main(["kernels", "lenet", "--out", str(out)]) == 0
    assert out.is_file()
    from PIL import Image

    assert Image.open(out).width >= 800  # readable on a slide by default
    assert main(["kernels", "lenet", "--out", str(out), "--size", "300"]) == 0 and Image.open(out).width >= 300
    assert main(["kernels", "lenet", "--out", str(out), "--size", "10"]) == 2
    assert main(["kernels", "lenet", "--out", str(tmp_path / "kernels.txt")]) == 2
    assert "ending in .png" in capsys.readouterr().err


def test_options_are_made_from_trainconfigs_settings():
    import argparse
    from dataclasses import fields

    from cnnlab import config
    from cnnlab.cli.train import add_config_options, config_from_args

    parser = argparse.ArgumentParser()
    add_config_options(parser)
    text = parser.format_help()
    for f in fields(config.TrainConfig):
        if f.metadata["rule"] is not None and f.metadata["rule"].kind == "choice":
            assert "{" + ",".join(config.choices(f.name)) + "}" in text, f.name
    assert " ".join(config.help_text("val_split").split()[:6]) in " ".join(text.split())
    args = parser.parse_args(["--input-size", "32x28", "--subset", "40", "--lr", "0.1", "--nesterov",
                              "--data-option", "n_train=80", "--seed", "2147483647"])
    c = config_from_args(args)
    assert (c.input_size, c.subset, c.lr, c.nesterov, c.data_options, c.seed) == \
        ((32, 28), 40, 0.1, True, {"n_train": 80}, 2147483647)


def test_a_seed_out_of_range_is_said_with_whole_numbers(capsys):
    assert main(["train", "--seed", str(2**31)]) == 2
    assert "seed must be between 0 and 2147483647, got 2147483648." in capsys.readouterr().err
