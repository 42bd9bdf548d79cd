"""Damaged run folders and hostile run ids: listing, evaluating and deleting survive them.

One tiny run is trained once per module; each test copies it (twice: the run to damage and an
intact neighbour) into its own cache, damages one file by hand and checks the registry, the
command line (in-process, exit code and a one-line stderr) and the Runs page.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from apphelpers import train_run, open_view, using_cache
from cnnlab import runs
from cnnlab.cli import main
from cnnlab.paths import runs_dir
from cnnlab.train import TrainConfig
from test_train_data import digits_bundle


@pytest.fixture(scope="module")
def _trained(tmp_path_factory):
    with using_cache(tmp_path_factory.mktemp("damage-cache")) as cache:
        result = train_run(TrainConfig(model="lenet", dataset="digits", epochs=1, batch_size=64, lr=3e-3, device="cpu"),
                     data=digits_bundle(n_train=200))
    assert result.status == "finished", result.message
    return cache / "runs" / result.run_id


@pytest.fixture
def pair(_trained):
    """(damaged-to-be, intact) copies of the trained run in this test's cache: paths."""
    root = runs_dir()
    root.mkdir(parents=True)
    victim = root / "20260101-000000-lenet-digits-dead"
    intact = root / "20260101-000001-lenet-digits-good"
    shutil.copytree(_trained, victim)
    shutil.copytree(_trained, intact)
    return victim, intact


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_clear_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


def edit_json(path: Path, **changes) -> None:
    obj = json.loads(path.read_text())
    obj.update(changes)
    write_json(path, obj)


# --------------------------------------------------------------------------------------
# One damaged folder never hides the others; it is listed, marked and deletable
# --------------------------------------------------------------------------------------

DAMAGES = {
    "status-string": ("status.json", lambda p: write_json(p, "finished"), "damaged"),
    "status-list": ("status.json", lambda p: write_json(p, ["running", 1]), "damaged"),
    "status-empty": ("status.json", lambda p: p.write_bytes(b""), "damaged"),
    "status-unknown-word": ("status.json", lambda p: edit_json(p, status="exploded"), "damaged"),
    "text-pid": ("status.json", lambda p: edit_json(p, status="running", pid="1234"), "interrupted"),
    "metrics-line-list": ("metrics.jsonl", lambda p: p.write_text(p.read_text() + "[1, 2]\n"), "finished"),
    "metrics-line-number": ("metrics.jsonl", lambda p: p.write_text("42\n" + p.read_text()), "finished"),
    "text-val-top1": ("metrics.jsonl", lambda p: p.write_text(
        p.read_text().replace('"val_top1": ', '"val_top1": "high", "x": ', 1)), "finished"),
    "metrics-not-utf8": ("metrics.jsonl", lambda p: p.write_bytes(b"\xff\xfe\x00{bad\n" + p.read_bytes()), "finished"),
    "meta-list": ("meta.json", lambda p: write_json(p, ["lenet", "digits"]), "finished"),
    "text-created-ts": ("meta.json", lambda p: edit_json(p, created_ts="yesterday"), "finished"),
    "meta-not-json": ("meta.json", lambda p: p.write_text("{not json"), "finished"),
    "config-not-json": ("config.json", lambda p: p.write_bytes(b"\x80\x81 garbage"), "finished"),
    "config-wrong-type": ("config.json", lambda p: edit_json(p, data_options=["x"]), "finished"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_run_is_listed_marked_and_deletable(pair, damage, capsys):
    victim, intact = pair
    file, spoil, status = DAMAGES[damage]
    spoil(victim / file)

    found = {r.run_id: r for r in runs.list_runs()}
    assert set(found) == {victim.name, intact.name}
    bad, good = found[victim.name], found[intact.name]
    assert bad.damaged and file in bad.damage and "\n" not in bad.damage
    assert bad.status == status
    assert not good.damaged and good.status == "finished" and good.best_val_top1 is not None
    if file == "metrics.jsonl":
        assert len(bad.metrics) == 1 and all(isinstance(m["epoch"], int) for m in bad.metrics)
    bad.best_val_top1, bad.created, bad.message  # noqa: B018 - none of them raises
    assert runs.load_run(victim.name).damage == bad.damage

    code, out, err = cli(capsys, "runs")
    assert code == 0 and err == ""
    assert victim.name in out and intact.name in out and f"damaged: {bad.damage}" in out

    code, out, err = cli(capsys, "runs", "--delete", victim.name)
    assert code == 0 and f"deleted {victim.name}" in out, err
    assert not victim.exists() and intact.is_dir()


def test_sort_survives_bad_created_ts_and_created(pair):
    victim, intact = pair
    edit_json(victim / "meta.json", created_ts=float("nan"), created=["2026"])
    assert [r.run_id for r in runs.list_runs()] == [intact.name, victim.name]


def test_run_without_meta_or_empty_folder_is_listed_damaged(pair, capsys):
    victim, intact = pair
    (victim / "meta.json").unlink()
    empty = runs_dir() / "20250101-000000-empty"
    empty.mkdir()
    old = 1_700_000_000
    os.utime(victim, (old, old))
    os.utime(empty, (old, old))
    found = {r.run_id: r for r in runs.list_runs()}
    assert "meta.json is missing" in found[victim.name].damage
    assert found[empty.name].status == "damaged" and "status.json is missing" in found[empty.name].damage
    runs.delete_run(empty.name)
    assert not empty.exists()


def test_special_files_in_a_run_are_not_read(pair, tmp_path):
    victim, intact = pair
    (victim / "meta.json").unlink()
    os.mkfifo(victim / "meta.json")  # reading a pipe would block for ever
    secret = tmp_path / "secret.json"
    write_json(secret, {"status": "finished", "message": "read through a link"})
    (victim / "status.json").unlink()
    (victim / "status.json").symlink_to(secret)
    run = runs.load_run(victim.name)
    assert "meta.json is not a regular file" in run.damage
    assert "status.json is a symbolic link" in run.damage
    assert run.status == "damaged" and "read through a link" not in run.message
    runs.delete_run(victim.name)
    assert secret.exists() and not victim.exists()


def test_gradio_choices_survive_damaged_runs(pair):
    pytest.importorskip("gradio")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from app import gradio_demo

    victim, intact = pair
    write_json(victim / "status.json", "x")
    write_json(victim / "meta.json", [1])
    (victim / "metrics.jsonl").write_text('{"epoch": 1, "val_top1": "high"}\n')
    refs = [c.ref for c in gradio_demo.available_choices()]
    assert f"run:{intact.name}" in refs


# --------------------------------------------------------------------------------------
# Evaluating a damaged run: one clear line, never a default in place of what is lost
# --------------------------------------------------------------------------------------

EVAL_DAMAGES = {
    "epochs-text": ("config.json", {"epochs": "three"}, "epochs"),
    "seed-text": ("config.json", {"seed": "0"}, "seed"),
    "val-fraction-list": ("config.json", {"val_fraction": [0.2]}, "val_fraction"),
    "input-shape-text": ("meta.json", {"input_shape": "abc"}, "input_shape"),
    "model-kwargs-bad": ("meta.json", {"model_kwargs": {"num_classes": "ten"}}, "num_classes"),
    "model-kwargs-unknown": ("meta.json", {"model_kwargs": {"bogus": 1}}, "bogus"),
    "model-kwargs-list": ("meta.json", {"model_kwargs": [1]}, "model_kwargs"),
}


def test_eval_of_the_intact_run_works(pair, capsys):
    code, out, err = cli(capsys, "eval", pair[1].name)
    assert code == 0, err
    assert "top-1" in out.lower() or "top1" in out.lower()


@pytest.mark.parametrize("damage", list(EVAL_DAMAGES))
def test_eval_of_a_damaged_run_says_what_is_wrong(pair, damage, capsys):
    victim, _ = pair
    file, changes, word = EVAL_DAMAGES[damage]
    edit_json(victim / file, **changes)
    code, out, err = cli(capsys, "eval", victim.name)
    line = one_clear_line(err)
    assert code == 2 and word in line and victim.name in line, line


def test_eval_without_dataset_in_config_does_not_guess(pair, capsys):
    victim, _ = pair
    config = json.loads((victim / "config.json").read_text())
    del config["dataset"]
    write_json(victim / "config.json", config)
    code, out, err = cli(capsys, "eval", victim.name)
    line = one_clear_line(err)
    assert code == 2 and "has no dataset" in line and "digits" not in out
    with pytest.raises(runs.RunError, match="has no dataset"):
        runs.load_run_data(runs.load_run(victim.name))


def test_eval_of_a_config_that_is_not_an_object(pair, capsys):
    victim, _ = pair
    write_json(victim / "config.json", ["lenet"])
    code, out, err = cli(capsys, "eval", victim.name)
    assert code == 2 and "config.json" in one_clear_line(err)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_booby_trapped_and_empty_checkpoints_give_one_line(pair, capsys):
    victim, _ = pair
    (victim / "best.pt").write_bytes(pickle.dumps({"conv.weight": _Boom()}))
    code, out, err = cli(capsys, "eval", victim.name)
    line = one_clear_line(err)
    assert code == 2 and "refused" in line and "weights_only" not in line and len(line) < 600
    assert f"checkpoint of run {victim.name}" in line
    (victim / "best.pt").write_bytes(b"")
    code, out, err = cli(capsys, "eval", victim.name)
    line = one_clear_line(err)
    assert "is empty" in line and not line.rstrip().endswith("best.pt:")


# --------------------------------------------------------------------------------------
# Run ids are matched literally; links in runs/ are never followed
# --------------------------------------------------------------------------------------


def test_glob_characters_are_literal(pair, capsys):
    victim, intact = pair
    shapes = runs_dir() / "20260101-000002-lenet-shapes-abcd"
    shutil.copytree(intact, shapes)
    for pattern in ("*shapes", "*", "2026*", "[2]0260101", "20260101-00000?"):
        code, out, err = cli(capsys, "runs", "--delete", pattern)
        assert code == 2 and "no run" in one_clear_line(err), (pattern, out, err)
        with pytest.raises(runs.RunNotFoundError):
            runs.load_run(pattern)
    assert shapes.is_dir() and victim.is_dir() and intact.is_dir()
    assert runs.load_run("20260101-000002").run_id == shapes.name  # a literal unique prefix still works
    with pytest.raises(runs.RunNotFoundError, match="matches 3 runs"):
        runs.load_run("20260101-00000")


@pytest.mark.parametrize("run_id", ["**", "x" * 5000, "../runs", ".hidden", "a\x00b", "a\nb", ""],
                         ids=["glob", "5000-chars", "parent", "hidden", "nul", "newline", "empty"])
def test_hostile_ids_give_one_line(pair, run_id, capsys):
    for argv in (["eval", run_id], ["runs", "--delete", run_id]):
        code, out, err = cli(capsys, *argv)
        line = one_clear_line(err)
        assert code == 2 and len(line) < 400, line
    with pytest.raises(runs.RunNotFoundError):
        runs.load_run(run_id)
    assert pair[0].is_dir() and pair[1].is_dir()


@pytest.mark.parametrize("where", ["outside", "alias"])
def test_symlink_in_runs_is_not_followed(pair, tmp_path, where, capsys):
    victim, intact = pair
    if where == "outside":
        target = tmp_path / "elsewhere"
        shutil.copytree(intact, target)
    else:
        target = intact
    link = runs_dir() / "20260101-000003-lenet-digits-link"
    link.symlink_to(target, target_is_directory=True)

    found = {r.run_id: r for r in runs.list_runs()}
    assert set(found) == {victim.name, intact.name, link.name}
    assert found[link.name].status == "damaged" and "symbolic link" in found[link.name].damage
    assert found[link.name].config == {} and not found[link.name].has_checkpoint
    for call in (runs.load_model, runs.load_checkpoint, lambda i: runs.run_config(runs.load_run(i))):
        with pytest.raises(runs.RunError, match="symbolic link"):
            call(link.name)
    code, out, err = cli(capsys, "eval", link.name)
    assert code == 2 and "symbolic link" in one_clear_line(err)

    code, out, err = cli(capsys, "runs", "--delete", link.name)
    assert code == 0 and "removed the link" in out, err
    assert not os.path.lexists(link)
    assert (target / "best.pt").is_file() and (target / "meta.json").is_file()  # never followed
    assert intact.is_dir() and victim.is_dir()


def test_symlinked_checkpoint_is_refused(pair, tmp_path):
    victim, intact = pair
    (victim / "best.pt").unlink()
    (victim / "best.pt").symlink_to(intact / "best.pt")
    run = runs.load_run(victim.name)
    assert not run.has_checkpoint and "best.pt is a symbolic link" in run.damage
    with pytest.raises(runs.RunError, match="symbolic link"):
        runs.load_checkpoint(victim.name)
    runs.delete_run(victim.name)
    assert (intact / "best.pt").is_file()


# --------------------------------------------------------------------------------------
# Leftovers: temporary files of dead writers, recycled pids
# --------------------------------------------------------------------------------------


def test_stale_temp_files_of_dead_writers_are_removed(pair):
    victim, intact = pair
    leftovers = [victim / ".best.pt.k1ll3d.tmp", victim / ".status.json.abc123.tmp"]
    for p in leftovers:
        p.write_bytes(b"half a checkpoint")
    unrelated = victim / "notes.tmp"
    unrelated.write_text("mine")
    runs.list_runs()
    assert not any(p.exists() for p in leftovers) and unrelated.exists()


def test_temp_files_of_a_live_writer_are_kept():
    w = runs.create_run({"model": "lenet", "dataset": "digits"}, {"model": "lenet", "dataset": "digits"})
    tmp = w.path / ".best.pt.inflight.tmp"
    tmp.write_bytes(b"being written")
    assert runs.load_run(w.run_id).status == "running"
    runs.list_runs()
    assert tmp.exists()
    status = json.loads((w.path / "status.json").read_text())
    status["pid"] = 2**22 + 4321  # the writer is gone
    write_json(w.path / "status.json", status)
    assert runs.load_run(w.run_id).status == "interrupted"
    assert not tmp.exists()


@pytest.fixture
def live_stranger():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("identity", ["pid-only", "wrong-start", "wrong-boot"])
def test_status_naming_an_unrelated_live_process_is_interrupted(pair, live_stranger, identity, capsys):
    victim, _ = pair
    real = runs._process_identity()
    assert real["pid_start"] is not None, "this test needs /proc"
    status = {"status": "running", "message": "training", "hostname": socket.gethostname(), "pid": live_stranger}
    if identity == "wrong-start":
        status.update(pid=os.getpid(), pid_start=real["pid_start"] + 1, boot_id=real["boot_id"])
    elif identity == "wrong-boot":
        status.update(pid=os.getpid(), pid_start=real["pid_start"], boot_id="another-boot")
    write_json(victim / "status.json", status)
    assert runs.load_run(victim.name).status == "interrupted"
    code, out, err = cli(capsys, "runs", "--delete", victim.name)
    assert code == 0 and not victim.exists(), err


def test_status_with_the_real_identity_is_running(pair, capsys):
    victim, _ = pair
    write_json(victim / "status.json", {"status": "running", "message": "training",
                                        "hostname": socket.gethostname(), **runs._process_identity()})
    assert runs.load_run(victim.name).status == "running"
    code, out, err = cli(capsys, "runs", "--delete", victim.name)
    assert code == 2 and "still training" in one_clear_line(err) and victim.is_dir()


def test_writer_records_its_process_identity():
    w = runs.create_run({}, {"model": "lenet", "dataset": "digits"})
    status = json.loads((w.path / "status.json").read_text())
    assert status["pid"] == os.getpid()
    assert status["pid_start"] == runs._proc_start(os.getpid()) and status["boot_id"] == runs._boot_id()


# --------------------------------------------------------------------------------------
# The Runs page
# --------------------------------------------------------------------------------------


def test_runs_page_lists_damaged_runs_and_deletes_one(pair):
    victim, intact = pair
    write_json(victim / "status.json", ["oops"])
    (victim / "metrics.jsonl").write_text('[1]\n{"epoch": 1, "val_top1": "high"}\n')
    write_json(victim / "meta.json", {"model": "lenet", "created_ts": "soon", "input_shape": "abc"})
    link = runs_dir() / "20250101-000000-link"
    link.symlink_to(intact, target_is_directory=True)

    at = open_view("runs")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert set(table["run"]) == {victim.name, intact.name, link.name}
    problems = dict(zip(table["run"], table["problem"]))
    assert "status.json" in problems[victim.name] and "symbolic link" in problems[link.name]
    assert problems[intact.name] == ""
    assert any("damaged files" in w.value for w in at.warning)

    at.selectbox(key="runs-detail").set_value(victim.name).run()
    assert not at.exception, at.exception
    assert any("**damaged**" in e.value and "status.json" in e.value for e in at.error)
    at.button(key="runs-delete").click().run()
    at.checkbox(key=f"runs-sure-{victim.name}").check().run()
    at.button(key="runs-delete-confirm").click().run()
    assert not at.exception, at.exception
    assert not victim.exists() and intact.is_dir()

    at.selectbox(key="runs-detail").set_value(link.name).run()
    assert not at.exception, at.exception
    at.button(key="runs-delete").click().run()
    at.checkbox(key=f"runs-sure-{link.name}").check().run()
    at.button(key="runs-delete-confirm").click().run()
    assert not at.exception, at.exception
    assert not os.path.lexists(link) and (intact / "best.pt").is_file()
