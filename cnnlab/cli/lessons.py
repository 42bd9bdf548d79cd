"""``lessons`` and ``lesson`` subcommands: the course's comparisons, one command each."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from tqdm import tqdm

from ..distributed import is_main, torchrun_group
from ..errors import LessonError
from .train import _key_value, cancel_on_signals

# cnnlab.lessons (and cnnlab.jobs) are imported inside the commands: only these two commands need them,
# and on top of what the parser loads anyway (torch, the models, the data) they add about 0.07 s to
# every `python -m cnnlab` start, --help included.


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lessons", help="list the built-in lessons (and saved lesson results); --measure times them",
                       description="List the built-in lessons with their measured time, or the saved results "
                       "(--results). With --measure, run every built-in lesson's quick budget once per seed, one "
                       "after the other, print how long each took and whether it showed the effect the lecture "
                       "teaches, and keep that in cnnlab/lessons/measured.json (the Lessons page shows the times). "
                       "Exit code 1 when a lesson fell short of its effect on some seed.")
    p.add_argument("--results", action="store_true", help="list the saved results instead")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.add_argument("--measure", action="store_true",
                   help="run each built-in lesson's quick budget and record its time and effect")
    p.add_argument("--seeds", type=_seeds, default=None, metavar="0,1,2",
                   help="with --measure: the seeds to run each lesson with (default: 0)")
    p.add_argument("--lesson", dest="lessons", action="append", default=None, metavar="NAME",
                   help="with --measure: only this built-in lesson (repeatable; default: all, in course order)")
    p.add_argument("--set", dest="overrides", type=_key_value, action="append", default=None, metavar="KEY=VALUE",
                   help="with --measure: a training setting for every arm, e.g. --set epochs=1 (repeatable); "
                   "measured.json is then written only with --write")
    p.add_argument("--write", action="store_true",
                   help="with --measure and --set: write measured.json all the same")
    p.add_argument("--device", default="auto", help="with --measure: auto, cpu, cuda or mps")
    p.set_defaults(func=cmd_lessons)

    p = sub.add_parser("lesson", help="run one lesson: every arm, then the table and the conclusion",
                       description="Run a lesson (a built-in name from `python -m cnnlab lessons`, or the path "
                       "of a .toml lesson file): its arms train one after the other, then the side-by-side table "
                       "and the conclusion written from the measured numbers are printed. The result is saved "
                       "in models_cache/lessons/ and shown on the app's Lessons page. Started by torchrun "
                       "(torchrun --nproc_per_node N -m cnnlab lesson NAME --budget full), every arm trains "
                       "data-parallel on the N processes, one arm after the other.")
    p.add_argument("lesson", help="lesson name or path to a .toml lesson file")
    p.add_argument("--budget", choices=["quick", "full"], default="quick",
                   help="quick: embedded data, minutes on a CPU (default); full: the seed's dataset and epochs")
    p.add_argument("--set", dest="overrides", type=_key_value, action="append", default=None, metavar="KEY=VALUE",
                   help="a training setting for every arm, e.g. --set epochs=2 (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object on stdout (progress stays on stderr)")
    p.set_defaults(func=cmd_lesson)


def _seeds(text: str) -> list[int]:
    # lazy: only the lesson commands need cnnlab.lessons (start-up time of the others)
    from ..lessons.measure import parse_seeds

    try:
        return parse_seeds(text)
    except LessonError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_lessons(args: argparse.Namespace) -> int:
    # lazy: only the lesson commands need cnnlab.lessons (start-up time of the others)
    from ..lessons import budget_summary, builtin_lessons, lesson_to_dict, list_results, measured_label, read_measured

    if args.measure:
        if args.results:
            print("error: --measure and --results do not go together.", file=sys.stderr)
            return 2
        return _measure(args)
    given = [flag for flag, v in (("--seeds", args.seeds), ("--lesson", args.lessons), ("--set", args.overrides),
                                  ("--write", args.write)) if v]
    if given:
        print(f"error: {', '.join(given)} only go with --measure.", file=sys.stderr)
        return 2
    if args.results:
        found = list_results()
        if args.json:
            print(json.dumps([{"id": r.id, "lesson": r.data["lesson"], "budget": r.data["budget"],
                               "created": r.data["created"], "conclusion": r.conclusion} for r in found], indent=1))
            return 0
        if not found:
            print("no saved lesson results yet: run one with `python -m cnnlab lesson NAME`.")
        for r in found:
            print(f"{r.id}\n  {r.data['title']} ({r.data['budget']}, {r.data['created']})\n  {r.conclusion[:160]}")
        return 0
    lessons = builtin_lessons()
    measured = read_measured()
    if args.json:
        print(json.dumps([{**lesson_to_dict(lesson, "quick"), "measured": measured.get(lesson.name)}
                          for lesson in lessons], indent=1))
        return 0
    for lesson in lessons:
        print(f"{lesson.name}  (seed {lesson.seed_label})\n  {lesson.title}\n  Q: {lesson.question}")
        print(f"  arms: {'; '.join(a.name for a in lesson.arms)}")
        print(f"  {budget_summary(lesson, 'quick')}")
        print(f"  {measured_label(measured.get(lesson.name))}\n")
    print("Run one: python -m cnnlab lesson NAME [--budget quick|full] [--json]\n"
          "Time them all: python -m cnnlab lessons --measure [--seeds 0,1,2] [--lesson NAME]")
    return 0


def _measure(args: argparse.Namespace) -> int:
    """``lessons --measure``: every chosen lesson's quick budget per seed, the table, measured.json."""
    # lazy: only the lesson commands need cnnlab.lessons (start-up time of the others)
    from ..lessons.measure import (
        all_shown, measure_lessons, measured_path, merge_measured, prepare_measure, short_lessons,
    )

    overrides = dict(args.overrides or [])
    seeds = args.seeds or [0]
    # a wrong name or setting is one message before anything trains
    lessons, _ = prepare_measure(args.lessons, seeds, overrides, args.device)
    write = not overrides or args.write
    err = sys.stderr
    stop = threading.Event()
    current: list[Any] = []
    bars: dict[str, Any] = {}
    total = tqdm(total=len(lessons) * len(seeds), desc="lessons", unit="run", file=err, dynamic_ncols=True,
                 position=0)

    def watch(run: Any) -> None:
        current[:] = [run]
        if stop.is_set():  # Ctrl-C while it was starting
            run.cancel()
        bars.clear()
        total.set_postfix_str(f"{run.lesson.name}, seed {run.overrides.get('seed')}")
        while not run.wait(0.25):
            _update_bars(run, bars, err, leave=False)
        _update_bars(run, bars, err, leave=False)
        for bar in bars.values():
            bar.close()

    def on_row(row: dict[str, Any]) -> None:
        total.update(1)
        tqdm.write(f"{row['lesson']} seed {row['seed']}: {_seconds(row['seconds'])}, "
                   + ("effect shown" if row["shown"] else f"effect not shown ({row['state']})"), file=err)

    def cancel() -> None:
        stop.set()
        if current:
            current[0].cancel()

    if overrides:
        print(f"settings for every arm: {overrides}", file=err)
    began = time.monotonic()
    with cancel_on_signals(cancel):
        try:
            rows = measure_lessons([x.name for x in lessons], seeds, overrides, device=args.device, watch=watch,
                                   stop=stop, on_row=on_row)
        finally:
            for bar in bars.values():
                bar.close()
            total.close()
    stopped = stop.is_set()
    path = measured_path()
    written = None
    if write and any(r["state"] == "finished" for r in rows):
        merged = merge_measured(rows, path)
        written = {name: merged[name] for name in dict.fromkeys(r["lesson"] for r in rows) if name in merged}
    if args.json:
        print(json.dumps({"runs": rows, "written": str(path) if written is not None else None,
                          "entries": written or {}, "stopped": stopped}, indent=1, default=str))
        out = err
    else:
        out = sys.stdout
    print(measure_table(rows), file=out)
    short = short_lessons(rows)
    if short:
        print("\nfell short of the effect the lecture teaches:", file=out)
        for name, cases in short.items():
            by_why: dict[str, list[str]] = {}  # seeds with the same reasons said once
            for seed, why in cases:
                by_why.setdefault(_sentences(why), []).append(str(seed))
            print(f"  {name}: " + " ".join(f"seed{'s' if len(s) > 1 else ''} {', '.join(s)}: {why}"
                                           for why, s in by_why.items()), file=out)
    print(f"\ntotal: {_seconds(time.monotonic() - began)} for {len(rows)} lesson run(s)"
          + (" (stopped: the lessons not run are not in the table)" if stopped else ""), file=out)
    if written is not None:
        print(f"written: {path} ({', '.join(written)})", file=out)
    elif not write:
        print(f"not written: {path} (a run with --set settings is not the quick budget; add --write to keep it)",
              file=out)
    else:
        print(f"not written: {path} (no lesson run finished)", file=out)
    if stopped:
        return 130
    return 0 if all_shown(rows) else 1


def _sentences(why: list[str]) -> str:
    """The why sentences as one text, each ending in a full stop."""
    said = [w.strip() for w in why if w.strip()]
    return " ".join(w if w[-1] in ".!?:" else w + "." for w in said) or "no reason given."


def _seconds(v: Any) -> str:
    # lazy: only the lesson commands need cnnlab.lessons (start-up time of the others)
    from ..lessons.measure import exact

    return exact(v) if isinstance(v, (int, float)) else "-"


def measure_table(rows: list[dict[str, Any]]) -> str:
    """lesson, seed, seconds, effect shown, each arm's best validation top-1 (short)."""
    table = []
    for r in rows:
        arms = ", ".join(f"{arm_id} {_cell(best, 'top-1')}" for arm_id, best in r["arms"].items())
        table.append({"lesson": r["lesson"], "seed": str(r["seed"]),
                      "seconds": f"{r['seconds']:.1f}" if r["seconds"] is not None else "-",
                      "effect": ("yes" if r["shown"] else "no") + ("" if r["state"] == "finished" else f" ({r['state']})"),
                      "best val top-1": arms or "-"})
    if not table:
        return "no lesson was measured."
    cols = list(table[0])
    widths = [max(len(c), *(len(row[c]) for row in table)) for c in cols]
    left = {"lesson", "best val top-1", "effect"}
    fmt = [(str.ljust if c in left else str.rjust) for c in cols]
    lines = ["  ".join(f(c, w) for f, c, w in zip(fmt, cols, widths)).rstrip()]
    lines.append("-" * len(lines[0]))
    for row in table:
        lines.append("  ".join(f(row[c], w) for f, c, w in zip(fmt, cols, widths)).rstrip())
    return "\n".join(lines)


def cmd_lesson(args: argparse.Namespace) -> int:
    with torchrun_group(args.device):  # under torchrun: every arm trains data-parallel on all the processes
        return _lesson(args)


def _lesson(args: argparse.Namespace) -> int:
    # lazy: only the lesson commands need cnnlab.jobs (start-up time of the others)
    from ..jobs import JobManager
    # lazy: only the lesson commands need cnnlab.lessons (start-up time of the others)
    from ..lessons import budget_summary, get_lesson, result_table, start_lesson

    lesson = get_lesson(args.lesson)
    overrides = dict(args.overrides or [])
    main_process = is_main()  # under torchrun only rank 0 prints (and saves the result)
    run = start_lesson(lesson, args.budget, manager=JobManager(), overrides=overrides, device=args.device)
    err = sys.stderr
    if main_process:
        print(f"{lesson.title} (seed {lesson.seed_label})\nQ: {lesson.question}\n"
              f"{budget_summary(lesson, args.budget, overrides)}"
              + (f"\nsettings for every arm: {overrides}" if overrides else ""), file=err)

    bars: dict[str, Any] = {}
    # first Ctrl-C (or torchrun's SIGTERM) stops the lesson (measured arms kept), a second one interrupts
    with cancel_on_signals(run.cancel):
        try:
            while not run.wait(0.25):
                if main_process:
                    _update_bars(run, bars, err)
            if main_process:
                _update_bars(run, bars, err)
        finally:
            for bar in bars.values():
                bar.close()
    if run.state == "failed":
        print(f"error: the lesson stopped: {run.message}", file=err)
        return 1
    if not main_process:
        return 0 if run.state == "finished" else 130
    result = run.result or {}
    if args.json:
        print(json.dumps({**{k: v for k, v in result.items() if k != "lesson_source"}, "id": run.result_id},
                         indent=1, default=str))
    else:
        print(_table(result_table(result["arms"], lesson.columns)))
        for a in result["arms"]:
            if a["status"] != "finished":
                message = str(a["message"] or "")
                print(f"  {a['name']}: " + (message if message.startswith(a["status"]) else f"{a['status']}: {message}"))
        print(f"\nConclusion: {result['conclusion']}")
        said = [(a["name"], d) for a in result["arms"] for d in a.get("diagnoses") or ()]
        if said:  # why an arm learnt or not, from its training X-ray (python -m cnnlab xray RUN)
            print("\nInside the networks (training X-ray):")
            for name, sentence in said:
                print(f"  {name}: {sentence}")
        print(f"\nsaved as lesson result {run.result_id} ({result['seconds']:.0f} s); runs: "
              + ", ".join(a["run_id"] or "-" for a in result["arms"]))
    return 0 if run.state == "finished" else 130


def _update_bars(run: Any, bars: dict[str, Any], err: Any, leave: bool = True) -> None:
    for a in run.arms:
        key = a.plan.arm.id
        job = a.job
        state = run.arm_state(a)
        if key not in bars and (job is not None and (job.latest_step or job.done) or state == "skipped"):
            total = (job.latest_step or {}).get("total_steps") if job is not None else None
            bars[key] = tqdm(total=total or 1, desc=f"{a.plan.arm.name[:34]:<34}", unit="step", file=err,
                             dynamic_ncols=True, leave=leave)
        bar = bars.get(key)
        if bar is None:
            continue
        step = (job.latest_step or {}) if job is not None else {}
        if step.get("total_steps"):
            bar.total = step["total_steps"]
            bar.set_postfix(loss=f"{step.get('loss', 0):.3f}", acc=f"{100 * step.get('top1', 0):.0f}%", refresh=False)
            bar.update(step["step"] - bar.n)
        if state in ("finished", "cancelled", "diverged", "failed", "skipped") and not getattr(bar, "_closed", False):
            if state == "finished":
                bar.update(bar.total - bar.n)
            bar.set_postfix_str(state)
            bar.close()
            bar._closed = True  # type: ignore[attr-defined]
    time.sleep(0)


def _cell(v: Any, column: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and ("top-1" in column or "gap" in column):
        return f"{v:.1%}"
    if column in ("parameters", "trainable", "MACs/image"):
        return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v:,}"
    if column == "images/s":
        return f"{v:,.0f}"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[_cell(r[c], c) if c != "arm" else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    out = [line, "-" * len(line)]
    for row in cells:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(out)
