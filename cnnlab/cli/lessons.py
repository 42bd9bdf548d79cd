"""``lessons`` and ``lesson`` subcommands: the course's comparisons, one command each."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .train import _key_value, cancel_on_signals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lessons", help="list the built-in lessons (and saved lesson results)")
    p.add_argument("--results", action="store_true", help="list the saved results instead")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
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


def cmd_lessons(args: argparse.Namespace) -> int:
    from ..lessons import builtin_lessons, lesson_to_dict, list_results

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
    if args.json:
        print(json.dumps([lesson_to_dict(lesson, "quick") for lesson in lessons], indent=1))
        return 0
    for lesson in lessons:
        print(f"{lesson.name}  (seed {lesson.seed_label})\n  {lesson.title}\n  Q: {lesson.question}")
        print(f"  arms: {'; '.join(a.name for a in lesson.arms)}")
        from ..lessons import budget_summary

        print(f"  {budget_summary(lesson, 'quick')}\n")
    print("Run one: python -m cnnlab lesson NAME [--budget quick|full] [--json]")
    return 0


def cmd_lesson(args: argparse.Namespace) -> int:
    from ..distributed import torchrun_group

    with torchrun_group(args.device):  # under torchrun: every arm trains data-parallel on all the processes
        return _lesson(args)


def _lesson(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..distributed import is_main
    from ..jobs import JobManager
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
                    _update_bars(run, bars, tqdm, err)
            if main_process:
                _update_bars(run, bars, tqdm, err)
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
        print(f"\nsaved as lesson result {run.result_id} ({result['seconds']:.0f} s); runs: "
              + ", ".join(a["run_id"] or "-" for a in result["arms"]))
    return 0 if run.state == "finished" else 130


def _update_bars(run: Any, bars: dict[str, Any], tqdm: Any, err: Any) -> None:
    for a in run.arms:
        key = a.plan.arm.id
        job = a.job
        state = run.arm_state(a)
        if key not in bars and (job is not None and (job.latest_step or job.done) or state == "skipped"):
            total = (job.latest_step or {}).get("total_steps") if job is not None else None
            bars[key] = tqdm(total=total or 1, desc=f"{a.plan.arm.name[:34]:<34}", unit="step", file=err,
                             dynamic_ncols=True, leave=True)
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
