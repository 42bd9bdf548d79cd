"""``python -m cnnlab lessons --measure``: each built-in lesson's quick budget timed per seed, the table,
the exit code that follows the lecture's effect, and ``measured.json`` (written only when asked with a
tiny budget, merged, read back as untrusted input).

The runs here use a tiny budget (``--set``) of the LeNet lesson; ``measured.json`` is a file in the
test's own folder (``MEASURED_FILE`` pointed there), never the real one. Where a test needs the effect
to come out one way, the runner's ``effect`` is replaced: a tiny budget shows nothing of the lecture.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import date

import pytest

import cnnlab.lessons.measure as measure
from cnnlab.cli import main
from cnnlab.errors import LessonError
from cnnlab.lessons import builtin_names, load_result, measured_entry, measured_times, read_measured

LESSON = "lenet-vs-lenetv2"
TINY = ["--set", "epochs=1", "--set", "max_steps=2", "--set", 'data_options={"n_train": 200, "n_val": 100}']
MEASURE = ["lessons", "--measure", "--lesson", LESSON, *TINY]


@pytest.fixture(autouse=True)
def measured_file(tmp_path, monkeypatch):
    path = tmp_path / "measured.json"
    monkeypatch.setattr(measure, "MEASURED_FILE", path)
    return path


@pytest.fixture
def effects(monkeypatch):
    """The runner's effect replaced: each lesson run takes the next of ``effects.shown`` (True/False)."""
    import cnnlab.lessons.runner as runner
    from cnnlab.lessons.conclude import conclude

    class Effects:
        shown: list[bool] = []

    def fake(lesson, arms, budget="quick"):
        shown = Effects.shown.pop(0)
        return conclude(lesson, arms, budget), {"shown": shown,
                                                 "why": [] if shown else ["made up reason", "Another one."]}

    monkeypatch.setattr(runner, "conclude_with_effect", fake)
    return Effects


def entry(seconds, **extra):
    return {"seconds": seconds, "seconds_by_seed": {"0": seconds}, "shown": [0], "short": {},
            "arms": {"a": {"0": 0.5}}, "measured": "2026-01-01",
            "machine": {"cpus": 2, "threads": 2, "device": "cpu", "torch": "2.0"}, **extra}


# ---- measuring through the command line ---------------------------------------------------------------


def test_measure_json_reports_each_seed_and_the_exit_code_follows_the_results_own_effect(capsys, measured_file):
    code = main([*MEASURE, "--seeds", "0,1", "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    rows = report["runs"]
    assert [(r["lesson"], r["seed"], r["state"]) for r in rows] == [(LESSON, 0, "finished"), (LESSON, 1, "finished")]
    for r in rows:  # what the row says is what the saved result says
        stored = load_result(r["result_id"]).data
        assert stored["overrides"]["seed"] == r["seed"] and stored["overrides"]["max_steps"] == 2
        assert r["shown"] is stored["effect"]["shown"] and r["why"] == stored["effect"]["why"]
        assert r["seconds"] == stored["seconds"]
        assert sorted(r["arms"]) == ["lenet", "lenet_v2"]
        assert all(0 <= v <= 1 for v in r["arms"].values())
    assert code == (0 if all(r["shown"] for r in rows) else 1)
    # a tiny budget (--set) is not the quick budget: nothing written without --write
    assert report["written"] is None and not measured_file.exists()
    assert f"not written: {measured_file}" in err and "--write" in err
    assert "lesson" in err and "seconds" in err  # the table goes to stderr with --json


def test_measure_table_short_lessons_and_exit_code(capsys, effects, measured_file):
    effects.shown = [True, False]  # seed 0 shows the effect, seed 1 does not
    code = main([*MEASURE, "--seeds", "0,1"])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["lesson", "seed", "seconds", "effect", "best", "val", "top-1"]
    rows = [line.split() for line in lines[2:4]]
    assert [r[:2] for r in rows] == [[LESSON, "0"], [LESSON, "1"]]
    assert [r[3] for r in rows] == ["yes", "no"]
    assert all(float(r[2]) >= 0 for r in rows)
    assert all(r[4] == "lenet" and r[5].endswith("%,") and r[6] == "lenet_v2" and r[7].endswith("%") for r in rows)
    assert f"  {LESSON}: seed 1: made up reason. Another one." in lines
    assert any(line.startswith("total: ") for line in lines)
    assert f"not written: {measured_file}" in out and not measured_file.exists()
    assert "lessons" in err and "effect not shown" in err  # progress and each run's line on stderr

    effects.shown = [True]
    assert main([*MEASURE]) == 0  # every measured seed showed it
    assert "fell short" not in capsys.readouterr().out


def test_write_merges_keeps_other_lessons_and_drops_unknown_and_damaged_entries(capsys, effects, measured_file):
    measured_file.write_text(json.dumps({
        "optimisers": entry(31.0),
        "overfitting": {"seconds": "quick"},  # damaged: dropped
        "gone-lesson": entry(5.0),  # no such lesson any more: dropped
        LESSON: entry(99.0),  # measured again now: replaced
    }))
    effects.shown = [True, True]
    code = main([*MEASURE, "--seeds", "3,0", "--write"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"written: {measured_file} ({LESSON})" in out
    data = json.loads(measured_file.read_text())
    assert list(data) == [LESSON, "optimisers"]  # course order
    assert data["optimisers"] == entry(31.0)
    e = data[LESSON]
    assert set(e["seconds_by_seed"]) == {"3", "0"}
    assert e["seconds"] == e["seconds_by_seed"]["3"]  # the first seed measured
    assert e["shown"] == [3, 0] and e["short"] == {}
    assert set(e["arms"]) == {"lenet", "lenet_v2"} and all(set(v) == {"3", "0"} for v in e["arms"].values())
    assert e["measured"] == date.today().isoformat()
    assert e["machine"]["cpus"] == os.cpu_count() and e["machine"]["device"] == "cpu"
    assert e["machine"]["threads"] and e["machine"]["torch"]
    assert [p.name for p in measured_file.parent.iterdir() if p.name.endswith(".tmp")] == []  # replaced atomically
    assert measured_times() == {LESSON: e["seconds"], "optimisers": 31.0}

    # the list says it, per lesson
    assert main(["lessons"]) == 0
    listing = capsys.readouterr().out
    assert f"measured: {round(e['seconds'])} s on a {os.cpu_count()}-core CPU" in listing
    assert "measured: 31 s on a 2-core CPU" in listing
    assert listing.count("not measured yet") == len(builtin_names()) - 2
    assert main(["lessons", "--json"]) == 0
    listed = {x["name"]: x["measured"] for x in json.loads(capsys.readouterr().out)}
    assert listed["optimisers"]["seconds"] == 31.0 and listed["overfitting"] is None


def test_ctrl_c_stops_after_the_current_lesson_and_keeps_what_was_measured(capsys, effects, measured_file,
                                                                          monkeypatch):
    """The second seed's run is interrupted (SIGINT, as Ctrl-C) as it starts: it ends "cancelled", the
    first seed's measurement is kept and written, the exit code says it was stopped."""
    effects.shown = [True, False]
    started = []
    real_start = measure.start_lesson

    def start_then_interrupt(*args, **kwargs):
        run = real_start(*args, **kwargs)
        started.append(run)
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # handled by cancel_on_signals: the lesson is cancelled
        return run

    monkeypatch.setattr(measure, "start_lesson", start_then_interrupt)
    code = main([*MEASURE, "--seeds", "0,1,2", "--write"])
    out = capsys.readouterr().out
    assert code == 130
    assert len(started) == 2 and started[1].state == "cancelled"  # seed 2 never started
    assert "stopped" in out
    data = json.loads(measured_file.read_text())
    assert set(data[LESSON]["seconds_by_seed"]) == {"0"}  # the stopped run says nothing about the time


# ---- wrong input: one message, nothing trained, nothing written --------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["lessons", "--seeds", "0,1"], "only go with --measure"),
    (["lessons", "--measure", "--results"], "do not go together"),
    (["lessons", "--measure", "--lesson", "lenet-vs-lenet"], "did you mean lenet-vs-lenetv2"),
    (["lessons", "--measure", "--set", "seed=3"], "--seeds"),
    (["lessons", "--measure", "--set", "colour=red"], "--set colour"),
])
def test_wrong_arguments_are_one_message(capsys, measured_file, argv, message):
    from cnnlab.lessons import list_results

    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not measured_file.exists() and not list_results()  # nothing ran


def test_bad_seeds_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["lessons", "--measure", "--seeds", "0,x"])
    assert "'x' is not a non-negative whole number" in capsys.readouterr().err
    with pytest.raises(LessonError):
        measure.parse_seeds("")
    assert measure.parse_seeds("2, 0,2") == [2, 0]


# ---- measured.json: untrusted input -------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b'{"lenet-vs-lenetv2": ' + b"1" * 10,
])
def test_a_damaged_file_reads_as_empty(measured_file, content):
    measured_file.write_bytes(content)
    assert read_measured() == {} and measured_times() == {} and measured_entry(LESSON) is None


def test_missing_and_oversized_files_read_as_empty(measured_file):
    assert read_measured() == {}
    measured_file.write_text(json.dumps({LESSON: entry(1.0, pad="x" * measure.MAX_MEASURED_BYTES)}))
    assert read_measured() == {}


def test_wrong_types_are_dropped_per_field_and_per_entry(measured_file):
    measured_file.write_text(json.dumps({
        LESSON: {"seconds": 12.5, "seconds_by_seed": {"0": 12.5, "x": 3, "1": "slow", "2": -1},
                 "shown": [0, "1", True, 2], "short": {"1": ["why", 3], "2": "not a list"},
                 "arms": {"lenet": {"0": 0.4, "1": 7.0}, "bad": [1], "lenet_v2": {"0": None}},
                 "measured": 20260101, "machine": {"cpus": "2", "threads": [2, 4], "device": "cpu", "torch": 2}},
        "optimisers": {"seconds": float("nan")},
        "minialexnet-regularisation": {"seconds": None},
        "overfitting": {"seconds": True},
        "learning-rate": [1, 2],
        "../evil": entry(1.0),
        "architectures": entry(142.0),
    }))
    found = read_measured()
    assert list(found) == [LESSON, "architectures"]
    e = found[LESSON]
    assert e == {"seconds": 12.5, "seconds_by_seed": {"0": 12.5}, "shown": [0, 2], "short": {"1": ["why"]},
                 "arms": {"lenet": {"0": 0.4}}, "measured": "", "machine": {"threads": [2, 4], "device": "cpu"}}
    assert measured_times() == {LESSON: 12.5, "architectures": 142.0}
    assert measure.measured_label(e) == "measured: 12 s on a CPU"


def test_merging_into_a_damaged_file_replaces_it(measured_file):
    measured_file.write_text("{damaged")
    merged = measure.merge_measured({"optimisers": entry(30.0)})
    assert merged == {"optimisers": entry(30.0)}
    assert json.loads(measured_file.read_text()) == merged


def test_entries_from_rows_keep_finished_runs_only():
    rows = [
        {"lesson": LESSON, "seed": 1, "state": "finished", "seconds": 20.04, "shown": False, "why": ["x."],
         "arms": {"lenet": 0.31234, "lenet_v2": None}, "machine": {"threads": 2, "device": "cpu", "torch": "t"}},
        {"lesson": LESSON, "seed": 2, "state": "finished", "seconds": 22.0, "shown": True, "why": [],
         "arms": {"lenet": 0.5, "lenet_v2": 0.6}, "machine": {"threads": 2, "device": "cpu", "torch": "t"}},
        {"lesson": "optimisers", "seed": 1, "state": "cancelled", "seconds": 3.0, "shown": False, "why": ["stopped"],
         "arms": {}, "machine": {}},
    ]
    entries = measure.entries_from_rows(rows, today="2026-02-03")
    assert list(entries) == [LESSON]
    assert entries[LESSON] == {
        "seconds": 20.0, "seconds_by_seed": {"1": 20.0, "2": 22.0}, "shown": [2], "short": {"1": ["x."]},
        "arms": {"lenet": {"1": 0.3123, "2": 0.5}, "lenet_v2": {"2": 0.6}}, "measured": "2026-02-03",
        "machine": {"cpus": os.cpu_count(), "threads": 2, "device": "cpu", "torch": "t"}}
    assert measure.clean_entry(json.loads(json.dumps(entries[LESSON]))) == entries[LESSON]  # reads back as written
    assert measure.short_lessons(rows) == {LESSON: [(1, ["x."])], "optimisers": [(1, ["stopped"])]}
    assert not measure.all_shown(rows) and measure.all_shown(rows[1:2]) and not measure.all_shown([])


@pytest.mark.parametrize("seconds,said", [
    (3, "about 5 s"), (28.4, "about 30 s"), (57, "about 55 s"), (58, "about 1 min"), (131, "about 2 min"),
    (3000, "about 50 min"), (5400, "about 1.5 h"), (7200, "about 2 h"),
])
def test_about(seconds, said):
    assert measure.about(seconds) == said


def test_the_shipped_file_reads():
    """cnnlab/lessons/measured.json as committed: a JSON object whose entries are built-in lessons and
    all survive the checks."""
    from pathlib import Path

    shipped = Path(measure.__file__).with_name("measured.json")
    raw = json.loads(shipped.read_text())
    assert isinstance(raw, dict)
    assert set(raw) <= set(builtin_names())
    assert set(read_measured(shipped)) == set(raw)
