"""Lessons end to end with tiny budgets (a test option, not the quick budget): arms become ordinary
runs, the result is stored and read back, the same seed gives the same numbers, an arm can start
from another's weights, a diverged arm is reported; the command line; damaged stored results; the
transfer stand-in's new head is seeded.

Tests marked "Regression" keep fixed the defects found while writing them.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import LessonError
from cnnlab.jobs import JobManager
from cnnlab.lessons import (
    builtin_names,
    delete_result,
    get_lesson,
    list_results,
    load_result,
    own_lessons_run,
    parse_lesson,
    result_table,
    results_dir,
    start_lesson,
)
from cnnlab.lessons.runner import save_result
from cnnlab.models import create
from cnnlab.runs import list_runs, load_run

TINY = {"epochs": 1, "max_steps": 3}
SMALL_SHAPES = {**TINY, "data_options": {"n_train": 400, "n_val": 300}}  # merged with the lesson's options
WAIT = 600  # a guard against a hang only: the tests wait for the lesson's end event


def run_lesson(lesson, overrides=TINY, budget="quick"):
    run = start_lesson(lesson, budget, manager=JobManager(), overrides=overrides, device="cpu")
    assert run.wait(WAIT), "the lesson did not end"
    assert run.done
    return run


def pct(v):
    return f"{v:.1%}"


# ---- the built-in LeNet lesson ------------------------------------------------------------------------


def test_lenet_lesson_end_to_end():
    lesson = get_lesson("lenet-vs-lenetv2")
    run = run_lesson(lesson)
    assert run.state == "finished", run.message
    assert run.progress == pytest.approx(1.0)
    result = run.result
    assert result["lesson"] == "lenet-vs-lenetv2" and result["budget"] == "quick"
    assert result["state"] == "finished" and result["overrides"] == TINY
    arms = result["arms"]
    assert [a["id"] for a in arms] == ["lenet", "lenet_v2"]

    # one ordinary run per arm, with the lesson's settings and the tiny budget
    runs = {r.run_id: r for r in list_runs()}
    assert sorted(runs) == sorted(a["run_id"] for a in arms)
    for a in arms:
        assert a["status"] == "finished", a["message"]
        r = runs[a["run_id"]]
        assert r.status == "finished"
        assert r.config["model"] == a["id"] and r.config["dataset"] == "shapes"
        assert r.config["epochs"] == 1 and r.config["max_steps"] == 3 and r.config["device"] == "cpu"
        assert r.config["optimizer"] == "momentum" and r.config["lr"] == 0.01 and r.config["momentum"] == 0.99
        assert r.config["data_options"]["channels"] == 1
        assert "lenet-vs-lenetv2" in r.config["tag"] and a["id"] in r.config["tag"]
        # measured: the numbers the table and the conclusion use
        assert a["epochs"] == 1 and a["steps"] == 3
        assert 0.0 <= a["best_val_top1"] <= 1.0 and a["best_val_top1"] == pytest.approx(r.best_val_top1)
        classes = len(r.meta["classes"])
        model = create(a["id"], num_classes=classes, in_channels=1)
        assert a["params"] == sum(p.numel() for p in model.parameters())
        assert a["val_images"] == 1000 and a["train_images"] == 3000
        assert a["seconds"] > 0 and len(a["curves"]) == 1 and a["curves"][0]["epoch"] == 1
        assert a["gap"] == pytest.approx(a["final_train_top1"] - a["final_val_top1"])

    # the conclusion quotes this run's numbers
    text = result["conclusion"]
    assert text.strip()
    assert any(pct(a["best_val_top1"]) in text for a in arms), text
    assert lesson.arms[0].name in text or lesson.arms[1].name in text

    # stored, listed, read back
    rid = run.result_id
    assert rid and rid.startswith("lenet-vs-lenetv2-quick-")
    assert (results_dir() / rid / "result.json").is_file()
    assert [r.id for r in list_results()] == [rid]
    assert [r.id for r in list_results("lenet-vs-lenetv2", "quick")] == [rid]
    assert list_results("lenet-vs-lenetv2", "full") == [] and list_results("other") == []
    assert list_results("lenet-vs-lenetv2")[0].id == rid  # the newest first
    stored = load_result(rid)
    assert stored.conclusion == text
    assert [a["run_id"] for a in stored.arms] == [a["run_id"] for a in arms]
    assert [a["best_val_top1"] for a in stored.arms] == [a["best_val_top1"] for a in arms]
    assert stored.lesson is not None and stored.lesson.arms == lesson.arms and not stored.problem
    rows = result_table(stored.arms, lesson.columns)
    assert [row["arm"] for row in rows] == [a.name for a in lesson.arms]
    assert rows[0]["best val top-1"] == arms[0]["best_val_top1"] and rows[0]["status"] == "finished"

    delete_result(rid)
    assert list_results() == []
    assert len(list_runs()) == 2  # deleting a result keeps its runs


def test_same_seed_same_numbers():
    lesson = get_lesson("lenet-vs-lenetv2")
    first, second = run_lesson(lesson, SMALL_SHAPES), run_lesson(lesson, SMALL_SHAPES)
    assert first.state == second.state == "finished"
    for a, b in zip(first.result["arms"], second.result["arms"]):
        assert a["status"] == b["status"] == "finished"
        assert a["run_id"] != b["run_id"]
        assert a["train_images"] == 400 and a["val_images"] == 300  # the override reached the data
        assert a["best_val_top1"] == b["best_val_top1"]
        assert [e["train_loss"] for e in a["curves"]] == [e["train_loss"] for e in b["curves"]]
        assert [e["val_loss"] for e in a["curves"]] == [e["val_loss"] for e in b["curves"]]
    assert first.result["conclusion"] == second.result["conclusion"]
    assert len(list_results("lenet-vs-lenetv2")) == 2


def test_cancelled_lesson_keeps_a_result():
    run = start_lesson(get_lesson("lenet-vs-lenetv2"), "quick", manager=JobManager(),
                       overrides={"epochs": 200, "data_options": {"n_train": 400, "n_val": 300}}, device="cpu")
    run.cancel()
    assert run.wait(WAIT)
    assert run.state == "cancelled", run.message
    assert run.result["state"] == "cancelled"
    assert all(a["status"] == "cancelled" for a in run.result["arms"]), [a["status"] for a in run.result["arms"]]
    assert load_result(run.result_id).data["state"] == "cancelled"


# ---- a lesson of our own: one arm starts from another's weights, one diverges ---------------------

CUSTOM = '''\
title = "Starting from another arm, and a divergence"
seed = "003"
question = "Does a network trained a little go on from where it was?"

[base]
dataset = "digits"
model = "lenet_v2"
optimizer = "adam"
lr = 0.001

[budget.quick]
epochs = 1
max_steps = 3

[budget.full]
dataset = "mnist"

[[arms]]
id = "first"
name = "From scratch"

[[arms]]
id = "huge"
name = "Huge learning rate"
optimizer = "sgd"
lr = 1000.0
log_every_steps = 1

[[arms]]
id = "then"
name = "Then again, from the first"
init_from = "@first"

[[arms]]
id = "after_huge"
name = "From the diverged one"
init_from = "@huge"

[conclusion]
expect = "then"
expected = "{best.name} came first with {best.best_val_top1:.1%}."
'''


def test_custom_lesson_init_from_divergence_and_skip(tmp_path):
    path = tmp_path / "my_lesson.toml"
    path.write_text(CUSTOM)
    lesson = get_lesson(str(path))
    assert lesson.name == "my_lesson" and not lesson.builtin
    run = run_lesson(lesson, overrides=None)
    assert run.state == "finished", run.message
    arms = {a["id"]: a for a in run.result["arms"]}

    # the arm that starts from "@first" starts from the first arm's run
    first, then = arms["first"], arms["then"]
    assert first["status"] == then["status"] == "finished"
    assert load_run(then["run_id"]).config["init_from"] == first["run_id"]
    assert load_run(first["run_id"]).config["init_from"] is None

    # the huge learning rate diverged, and the arm that starts from it was skipped, without a run
    huge, after = arms["huge"], arms["after_huge"]
    assert huge["status"] == "diverged", huge["message"]
    assert huge["message"].startswith("diverged:") and "training stopped there" in huge["message"]
    assert huge["run_id"] and load_run(huge["run_id"]).status == "diverged"
    assert after["status"] == "skipped" and after["run_id"] is None
    assert "Huge learning rate" in after["message"] and "diverged" in after["message"]
    assert sorted(r.run_id for r in list_runs()) == sorted(a["run_id"] for a in (first, then, huge))

    # the conclusion reports both and still concludes from the two finished arms
    text = run.result["conclusion"]
    assert "cannot answer" not in text
    assert "Huge learning rate diverged:" in text and "training stopped there." in text
    assert "Try a lower learning rate" not in text
    assert "From the diverged one skipped" in text
    assert pct(first["best_val_top1"]) in text or pct(then["best_val_top1"]) in text
    stored = load_result(run.result_id)
    assert [a["status"] for a in stored.arms] == ["finished", "diverged", "finished", "skipped"]


ALL_DIVERGE = '''\
title = "Everything diverges"
seed = "000"
question = "What if the learning rate is far too large?"
[base]
dataset = "digits"
model = "lenet_v2"
optimizer = "sgd"
lr = 1000.0
log_every_steps = 1
[budget.quick]
epochs = 1
max_steps = 3
[budget.full]
dataset = "mnist"
[[arms]]
id = "a"
name = "Arm A"
[[arms]]
id = "b"
name = "Arm B"
[conclusion]
expected = "{best.name} came first."
'''


@pytest.mark.parametrize("diverged", [
    "",
    # Regression (fixed): a `diverged` template naming a role ({best.name}) passes the parse-time check (made with
    # every arm finished), then `conclude` raises TemplateError when no arm finished: the runner marks
    # the lesson "failed" and saves no result (see test_lessons_conclude.py for the details).
    'diverged = "{arm.name} diverged, unlike {best.name}."\n',
], ids=["default-sentence", "template-naming-best"])
def test_a_lesson_where_every_arm_diverges_still_saves_its_result(diverged):
    run = run_lesson(parse_lesson(ALL_DIVERGE + diverged, "all-diverge"), overrides=None)
    assert [run.arm_state(a) for a in run.arms] == ["diverged", "diverged"]
    assert run.state == "finished", run.message
    assert "cannot answer" in run.result["conclusion"]
    assert [r.id for r in list_results()] == [run.result_id]


# ---- the command line ------------------------------------------------------------------------------------


def test_cli_lesson_json(capsys):
    code = main(["lesson", "lenet-vs-lenetv2", "--set", "epochs=1", "--set", "max_steps=3",
                 "--set", 'data_options={"n_train": 400, "n_val": 300}', "--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)  # stdout is one JSON object; the progress went to stderr
    assert result["lesson"] == "lenet-vs-lenetv2" and result["budget"] == "quick"
    assert result["overrides"] == {"epochs": 1, "max_steps": 3, "data_options": {"n_train": 400, "n_val": 300}}
    assert [a["id"] for a in result["arms"]] == ["lenet", "lenet_v2"]
    assert all(a["run_id"] and a["status"] == "finished" for a in result["arms"])
    assert sorted(r.run_id for r in list_runs()) == sorted(a["run_id"] for a in result["arms"])
    assert result["conclusion"].strip()
    assert any(pct(a["best_val_top1"]) in result["conclusion"] for a in result["arms"])
    assert "lesson_source" not in result
    assert load_result(result["id"]).conclusion == result["conclusion"]
    assert "LeNet against LeNetV2" in err  # the title and question go to stderr

    assert main(["lessons", "--results", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [result["id"]]


def test_cli_lesson_table(capsys):
    code = main(["lesson", "lenet-vs-lenetv2", "--set", "epochs=1", "--set", "max_steps=2",
                 "--set", 'data_options={"n_train": 200, "n_val": 100}', "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "best val top-1" in out and "LeNetV2 (ReLU, max pooling)" in out
    assert "Conclusion:" in out and "saved as lesson result" in out
    stored = list_results()[0]
    assert stored.id in out and stored.conclusion in out


def test_cli_lists_every_builtin_lesson(capsys):
    assert main(["lessons"]) == 0
    out = capsys.readouterr().out
    for name in builtin_names():
        assert re.search(rf"^{re.escape(name)}\s", out, re.MULTILINE), name
    assert main(["lessons", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [x["name"] for x in listed] == builtin_names()
    assert all(x["question"] and len(x["arms"]) >= 2 and x["budget"].startswith("quick") for x in listed)


def test_cli_unknown_lesson(capsys):
    assert main(["lesson", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no lesson 'nope'" in err and "lenet-vs-lenetv2" in err and "Traceback" not in err
    assert main(["lesson", "lenet-vs-lenetv"]) == 2
    assert "did you mean lenet-vs-lenetv2" in capsys.readouterr().err


def test_cli_bad_setting(capsys):
    assert main(["lesson", "lenet-vs-lenetv2", "--set", "epochs=0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "epochs" in err and "Traceback" not in err
    assert main(["lesson", "lenet-vs-lenetv2", "--set", "lrr=1", "--device", "cpu"]) == 2
    assert "lrr" in capsys.readouterr().err
    assert list_runs() == []  # nothing trained


def test_cli_broken_lesson_file(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text(CUSTOM.replace('name = "Huge learning rate"', 'name = "Huge learning rate"\nlrr = 1'))
    assert main(["lesson", str(path)]) == 2
    err = capsys.readouterr().err
    assert "broken.toml, line 25: key 'arms[1].lrr'" in err and "'lr'" in err


def test_cli_full_budget_without_its_data(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("CNNLAB_DATA", str(empty))
    assert main(["lesson", "lenet-vs-lenetv2", "--budget", "full", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "MNIST" in err and str(empty) in err
    assert "quick budget" in err and "Traceback" not in err
    assert list_runs() == [] and list_results() == []


# ---- stored results -----------------------------------------------------------------------------------


def fake_result(**changes):
    lesson = get_lesson("lenet-vs-lenetv2")
    arm = {"id": "lenet", "name": "LeNet", "status": "finished", "message": "", "best_val_top1": 0.5,
           "run_id": "20240101-000000-lenet-shapes-abcd", "curves": [{"epoch": 1, "val_top1": 0.5}]}
    return {"version": 1, "lesson": lesson.name, "title": lesson.title, "budget": "quick",
            "created": "2024-01-01T00:00:00", "conclusion": "LeNet won.", "state": "finished",
            "arms": [arm, {**arm, "id": "lenet_v2", "name": "LeNetV2"}], "lesson_source": lesson.source,
            "builtin": True, **changes}


def write_result(folder, content):
    path = results_dir() / folder
    path.mkdir(parents=True)
    (path / "result.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_damaged_results_are_skipped_and_refused(tmp_path):
    good = save_result(fake_result())
    assert [r.id for r in list_results()] == [good]
    damaged = {
        "not-json": "{not json",
        "a-list": "[1, 2]",
        "arms-text": fake_result(arms="lenet"),
        "arm-without-name": fake_result(arms=[{"id": "lenet", "status": "finished", "message": ""}]),
        "title-number": fake_result(title=3),
        "bad-budget": fake_result(budget="medium"),
        "no-conclusion": {k: v for k, v in fake_result().items() if k != "conclusion"},
    }
    for folder, content in damaged.items():
        write_result(folder, content)
    (results_dir() / "binary").mkdir()
    (results_dir() / "binary" / "result.json").write_bytes(b"\xff\xfe\x00garbage")
    (results_dir() / "empty-folder").mkdir()
    (results_dir() / "stray-file").write_text("{}")
    # a folder that is a link to a result elsewhere, and a result.json that is a link
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "result.json").write_text(json.dumps(fake_result()))
    os.symlink(elsewhere, results_dir() / "linked-folder")
    (results_dir() / "linked-file").mkdir()
    os.symlink(elsewhere / "result.json", results_dir() / "linked-file" / "result.json")
    # too large
    write_result("too-large", json.dumps({**fake_result(), "padding": "x" * (4 * 2**20 + 10)}))

    assert [r.id for r in list_results()] == [good]
    for folder in [*damaged, "binary", "empty-folder", "stray-file", "linked-folder", "linked-file", "too-large"]:
        with pytest.raises(LessonError):
            load_result(folder)
    with pytest.raises(LessonError, match="damaged"):
        load_result("not-json")
    with pytest.raises(LessonError, match="larger than"):
        load_result("too-large")


def test_stored_result_numbers_of_the_wrong_type_are_cleaned():
    bad_arm = {"id": "lenet", "name": "LeNet", "status": "finished", "message": "", "best_val_top1": "99%",
               "params": True, "seconds": float("inf"), "run_id": 5, "curves": [{"epoch": "one", "val_top1": 0.5}, 7]}
    rid = save_result(fake_result(arms=[bad_arm, {**bad_arm, "id": "lenet_v2"}]))
    arm = load_result(rid).arms[0]
    assert arm["best_val_top1"] is None and arm["params"] is None and arm["seconds"] is None
    assert arm["run_id"] is None
    assert arm["curves"] == [{"epoch": None, "val_top1": 0.5}]


def test_a_result_whose_lesson_no_longer_parses_is_still_shown():
    rid = save_result(fake_result(lesson_source="title = 3"))
    stored = load_result(rid)
    assert stored.lesson is None and "title" in stored.problem
    assert stored.conclusion == "LeNet won."
    assert [r.id for r in list_results()] == [rid]


def test_each_teachers_lesson_run_before_is_listed_once_from_its_newest_result():
    mine = parse_lesson(CUSTOM, "mine")
    own = {"lesson": "mine", "title": mine.title, "lesson_source": CUSTOM, "builtin": False}
    save_result(fake_result(**own, created="2024-01-01T00:00:00"))
    newer = save_result(fake_result(**own, created="2024-02-01T00:00:00", conclusion="Second run."))
    save_result(fake_result(created="2024-03-01T00:00:00"))  # a built-in lesson's: not a teacher's own
    save_result(fake_result(lesson="gone", lesson_source="title = 3", builtin=False))  # no longer parses
    found = own_lessons_run()
    assert list(found) == ["mine"]
    assert found["mine"].id == newer and found["mine"].conclusion == "Second run."
    assert found["mine"].lesson.arms == mine.arms  # opens and runs again without the file


@pytest.mark.parametrize("rid", ["..", "../x", "a/b", "/etc", ".hidden", "a\\b", "", "x/../y", "a\x00b", None, 3])
def test_result_ids_that_leave_the_folder_are_refused(rid):
    with pytest.raises(LessonError):
        load_result(rid)
    with pytest.raises(LessonError):
        delete_result(rid)


def test_delete_result_never_leaves_the_results_folder():
    save_result(fake_result())
    (results_dir().parent / "runs").mkdir()
    for rid in ("..", "../runs", "."):
        with pytest.raises(LessonError):
            delete_result(rid)
    assert (results_dir().parent / "runs").is_dir() and len(list_results()) == 1


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden"])
def test_a_lesson_name_never_puts_a_result_outside_the_results_folder(name):
    """Regression (a defect found while writing these tests, now fixed): `parse_lesson(text, name)` keeps ``name`` as given (only `read_lesson` cleans a file's
    stem), and `save_result` (runner.py) builds the folder as ``results_dir() / f"{lesson}-{budget}-..."``:
    a lesson parsed with the name "../escape" (e.g. the Lessons page passing an uploaded file's
    name) writes its result in models_cache/ instead of models_cache/lessons/ ("../../x": anywhere).
    A name with "/" makes the save fail; ".." or ".hidden" gives an id that `load_result` refuses,
    so the result is never listed.
    parse_lesson should clean the name as `lesson_name` does (or refuse it), and save_result should
    build the id from a cleaned name."""
    try:
        rid = save_result(fake_result(lesson=name))
    except LessonError:
        rid = None
    if rid is not None:
        assert (results_dir() / rid / "result.json").is_file()
        assert (results_dir() / rid).resolve().parent == results_dir().resolve()
        assert [r.id for r in list_results()] == [rid]
    try:
        lesson = parse_lesson(get_lesson("lenet-vs-lenetv2").source, name)
    except LessonError:
        return
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", lesson.name), lesson.name


def test_a_very_long_result_id_is_refused():
    """Regression (a defect found while writing these tests, now fixed): `load_result("x" * 300)` (runner.py, `load_result`) raises OSError "File name too long"
    from `Path.is_symlink()` instead of LessonError; so does `delete_result`. Ids should be checked
    against a pattern (e.g. `[A-Za-z0-9][A-Za-z0-9_.-]{0,200}`) or OSError caught."""
    save_result(fake_result())  # the results folder exists (else the lookup stops at the missing folder)
    for rid in ("x" * 300, "y" * 5000):
        with pytest.raises(LessonError):
            load_result(rid)
        with pytest.raises(LessonError):
            delete_result(rid)


# ---- the transfer stand-in's new head is seeded -----------------------------------------------------------


def test_standin_transfer_model_is_the_same_whatever_the_random_state():
    from cnnlab.transfer import StandinConfig, standin_transfer_model

    cfg = StandinConfig(source_images=400, source_epochs=1, seed=0, device="cpu")
    torch.manual_seed(123)
    a = standin_transfer_model(cfg).state_dict()  # pretrains (seeded), then builds the new head
    torch.rand(100)  # the global random state moves on: the next model must not depend on it
    torch.manual_seed(987)
    torch.randn(7)
    b = standin_transfer_model(cfg).state_dict()  # the pretrained weights now come from the cache
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(k.startswith("fc3.") for k in a)

    # the head comes from the seed: another seed gives another head
    other = standin_transfer_model(StandinConfig(source_images=400, source_epochs=1, seed=1, device="cpu")).state_dict()
    assert not torch.equal(other["fc3.weight"], a["fc3.weight"])


def test_standin_transfer_model_freeze():
    from cnnlab.transfer import StandinConfig, standin_transfer_model

    cfg = StandinConfig(source_images=400, source_epochs=1, seed=0, device="cpu")
    model = standin_transfer_model(cfg, freeze=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc3.weight", "fc3.bias"}  # only the new head learns: the frozen part is most of it
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen > 0.9 * sum(p.numel() for p in model.parameters())
    unfrozen = standin_transfer_model(cfg, freeze=False)
    assert all(p.requires_grad for p in unfrozen.parameters())
    # freezing changes nothing but requires_grad
    for (k, v), (k2, v2) in zip(model.state_dict().items(), unfrozen.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


# ---- more built-in lessons end to end: the stand-in start and a preparatory arm -----------------------


def test_transfer_lesson_end_to_end_with_a_small_standin():
    """Lesson 7 quick, tiny: the pretrained arm starts from the stand-in (pretrained here on a few
    images), its convolutions frozen; the scratch arm trains every weight."""
    from cnnlab.transfer import StandinConfig

    small = StandinConfig(source_images=400, source_epochs=1)
    run = start_lesson(get_lesson("transfer-vs-scratch"), "quick", manager=JobManager(), overrides=SMALL_SHAPES,
                       device="cpu", standin=small)
    assert run.wait(WAIT) and run.state == "finished", run.message
    arms = {a["id"]: a for a in run.result["arms"]}
    assert {a["status"] for a in arms.values()} == {"finished"}
    assert arms["pretrained"]["start"] == "standin" and arms["pretrained"]["freeze"] == "features"
    assert arms["pretrained"]["trainable_params"] < arms["pretrained"]["params"]
    assert arms["scratch"]["trainable_params"] == arms["scratch"]["params"]
    assert load_run(arms["pretrained"]["run_id"]).meta["prepared_model"] is True
    assert run.result["conclusion"]


def test_reuse_lesson_end_to_end_starts_from_its_own_first_arm():
    """Lesson 9 quick, tiny: the preparatory arm runs first, the reused arm starts from its run, and
    the preparatory arm is never ranked in the conclusion."""
    run = run_lesson(get_lesson("reuse-vs-scratch"), SMALL_SHAPES)
    assert run.state == "finished", run.message
    arms = {a["id"]: a for a in run.result["arms"]}
    assert {a["status"] for a in arms.values()} == {"finished"}
    assert load_run(arms["reused"]["run_id"]).config["init_from"] == arms["source"]["run_id"]
    assert arms["source"]["compare"] is False
    assert "Pretraining on the larger task" not in run.result["conclusion"]
