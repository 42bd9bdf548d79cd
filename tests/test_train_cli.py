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


def test_bench_reports_both_loops():
    from cnnlab.bench import bench_train

    r = bench_train(seconds=1.0, rounds=1, our_batch_sizes=(128,))
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
