"""Running a lesson: its arms as ordinary background jobs, then the measured table and conclusion.

:func:`start_lesson` plans every arm (settings merged and validated, data checked), then a
coordinator thread queues the arms on the job manager (one queue per device, the same queue the
Train page uses: each arm becomes an ordinary run on the Runs page), waits for them, measures each
arm and writes the result folder ``models_cache/lessons/<result id>/result.json``. The command line
and the Lessons page both use it; results are read back by :func:`list_results`.

Under torchrun (``torchrun --nproc_per_node N -m cnnlab lesson NAME --budget full``) every process
runs the same lesson: its one queue (its own GPU) trains the arms one after the other, in the same
order in every process, each arm data-parallel with the others (:mod:`cnnlab.distributed`); rank 0
writes the runs, measures the arms and saves the result, the other processes only train.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .. import distributed
from ..data import dataset_status
from ..data.registry import get_spec as get_dataset_spec
from ..device import pick_device
from ..errors import CnnlabError, LessonError
from ..evaluate import evaluate_run
from ..inspect import summarize
from ..jobs import FINAL_STATES, Job, JobManager, get_manager
from ..models import get_spec as get_model_spec
from ..models.pretrained import weights_status
from ..files import atomic_write_text, unique_folder
from ..i18n import _, ngettext
from ..paths import cache_dir
from ..runs import load_run
from ..train import TrainConfig, load_data
from ..xray import read_xray
from ..transfer import StandinConfig, standin_transfer_model
from .conclude import COLUMN_LABELS, DEFAULT_COLUMNS, conclude_with_effect
from .spec import BUDGETS, CONFIG_FIELDS, MAX_TEXT, Arm, Lesson, lesson_name, parse_lesson

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
MAX_RESULT_BYTES = 4 * 2**20
RESULT_VERSION = 1
RESULT_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,150}")


def results_dir() -> Path:
    return cache_dir() / "lessons"


# ---- the plan -----------------------------------------------------------------------------------


@dataclass
class ArmPlan:
    arm: Arm
    config: TrainConfig  # init_from may still be "@id" (resolved when that arm's run exists)
    start: str
    freeze: bool  # the stand-in's convolutions kept fixed
    depends_on: str | None


def check_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Settings applied on top of every arm (the command line's ``--set``, a test's tiny budget)."""
    out = dict(overrides or {})
    for key, value in out.items():
        if key not in CONFIG_FIELDS or key in ("tag", "init_from"):
            raise LessonError(_("--set {key}: not a training setting a lesson can override "
                                "(python -m cnnlab train --help lists them).").format(key=key))
        try:
            TrainConfig.from_dict({key: value})
        except CnnlabError as e:
            raise LessonError(_("--set {key}={value!r}: {error}").format(key=key, value=value, error=e)) from None
    return out


def plan(lesson: Lesson, budget: str = "quick", overrides: Mapping[str, Any] | None = None,
         device: str = "auto", check_data: bool = True) -> list[ArmPlan]:
    """Every arm's validated config in ``budget``; the full budget's data and weights are checked
    now, so a missing file is one message before anything trains."""
    if budget not in BUDGETS:
        raise LessonError(_("unknown budget {budget!r}: choose {choices}.").format(
            budget=budget, choices=_(" or ").join(BUDGETS)))
    extra = {**check_overrides(overrides), "device": device}
    plans = []
    for arm in lesson.arms:
        try:
            config = lesson.config(arm, budget, extra)
        except CnnlabError as e:
            raise LessonError(_("lesson {lesson}, arm {arm} ({budget} budget): {error}").format(
                lesson=lesson.name, arm=arm.id, budget=budget, error=e)) from None
        plans.append(ArmPlan(arm, config, arm.start_in(budget), lesson.standin_freeze(arm, budget),
                             arm.depends_on(budget)))
    if check_data:
        problems = missing_files(plans)
        if problems:
            said = {"budget": budget, "title": lesson.tr(lesson.title), "problems": " ".join(problems)}
            raise LessonError((_("the {budget} budget of '{title}' needs files this machine does not have: {problems} "
                                 "Run the quick budget (embedded data, offline) instead.") if budget == "full" else
                               _("the {budget} budget of '{title}' needs files this machine does not have: "
                                 "{problems}")).format(**said))
    return plans


def missing_files(plans: Sequence[ArmPlan]) -> list[str]:
    """One sentence per dataset or weights file the plans need and cannot get."""
    seen: set[tuple] = set()
    problems: list[str] = []
    for p in plans:
        c = p.config
        key = ("data", c.dataset, c.data_root)
        if key not in seen:
            seen.add(key)
            status = dataset_status(c.dataset, c.data_root)
            if status.state == "missing":
                problems.append(f"{get_dataset_spec(c.dataset).display_name}: {status.message}")
        if c.pretrained:
            base = c.model.removesuffix("_transfer")
            if ("weights", base) not in seen:
                seen.add(("weights", base))
                state, message = weights_status(base)
                if state == "missing":
                    problems.append(message)
    return problems


def budget_summary(lesson: Lesson, budget: str, overrides: Mapping[str, Any] | None = None) -> str:
    """One line on what a budget trains: data, epochs, where it is meant to run."""
    configs = [lesson.config(a, budget, overrides) for a in lesson.arms]
    names = sorted({get_dataset_spec(c.dataset).display_name for c in configs})
    epochs = sorted({c.epochs for c in configs})
    ep = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
    said = {"datasets": ", ".join(names), "epochs": ep, "arms": len(configs)}
    if budget == "quick":
        return ngettext("quick: {datasets}, {epochs} epoch(s) per arm, {arms} arms; embedded data, runs offline in a "
                        "few minutes on a laptop's CPU.",
                        "quick: {datasets}, {epochs} epoch(s) per arm, {arms} arms; embedded data, runs offline in a "
                        "few minutes on a laptop's CPU.", epochs[-1]).format(**said)
    return ngettext("full: the seed's setting, {datasets}, {epochs} epoch(s) per arm; meant for a GPU (hours on a CPU).",
                    "full: the seed's setting, {datasets}, {epochs} epoch(s) per arm; meant for a GPU (hours on a CPU).",
                    epochs[-1]).format(**said)


def full_budget_state(lesson: Lesson) -> tuple[bool, str]:
    """Whether the full budget can run here, and why not."""
    try:
        plans = plan(lesson, "full", check_data=False)
    except CnnlabError as e:
        return False, str(e)
    problems = missing_files(plans)
    if problems:
        return False, _("the full budget needs: {problems}").format(problems=" ".join(problems))
    if torch.cuda.is_available():
        return True, _("the seed's data is here.")
    return True, _("the seed's data is here; no GPU on this machine, so expect hours.")


# ---- running --------------------------------------------------------------------------------------


@dataclass
class ArmState:
    plan: ArmPlan
    job: Job | None = None
    state: str = "waiting"  # waiting | queued | running | finished | cancelled | diverged | failed | skipped
    message: str = ""

    @property
    def progress(self) -> float:
        if self.job is not None:
            return self.job.progress
        return 1.0 if self.state in FINAL_STATES or self.state == "skipped" else 0.0


_ids = itertools.count(1)


class LessonRun:
    """One run of a lesson (all its arms). Attributes are safe to read from any thread."""

    def __init__(self, lesson: Lesson, budget: str, plans: list[ArmPlan], manager: JobManager,
                 overrides: Mapping[str, Any] | None = None, standin: StandinConfig | None = None):
        self.id = next(_ids)
        self.lesson, self.budget, self.manager = lesson, budget, manager
        self.overrides = dict(overrides or {})
        self.standin = standin or StandinConfig()
        self.arms = [ArmState(p) for p in plans]
        self.state = "running"
        self.message = ""
        self.result: dict[str, Any] | None = None
        self.result_id: str | None = None
        self.started = time.time()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._coordinate, name=f"cnnlab-lesson-{self.id}", daemon=True)

    # ---- control ---------------------------------------------------------------------------

    def start(self) -> "LessonRun":
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop every arm (queued ones leave the queue); measured arms are kept in the result."""
        self._cancel.set()
        for a in self.arms:
            if a.job is not None and not a.job.done:
                a.job.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def progress(self) -> float:
        if self.done:
            return 1.0
        return sum(a.progress for a in self.arms) / max(len(self.arms), 1)

    def arm_state(self, a: ArmState) -> str:
        return a.job.state if a.job is not None else a.state

    # ---- the coordinator thread -------------------------------------------------------------

    def _coordinate(self) -> None:
        try:
            data_cache: dict[str, Any] = {}
            if distributed.is_active():  # under torchrun: the arms one at a time, agreed by all processes
                self._arms_in_group(data_cache)
            else:
                self._arms(data_cache)
            if self._cancel.is_set():
                for a in self.arms:
                    if a.job is None and a.state == "waiting":
                        a.state, a.message = "cancelled", _("the lesson was stopped before this arm started.")
                    elif a.job is not None:
                        a.job.wait()
            if not distributed.is_main():  # under torchrun rank 0 measures and saves; the others trained
                self.state = "cancelled" if self._cancel.is_set() else "finished"
                return
            self.result = measure(self, data_cache)
            data_cache.clear()
            self.result_id = save_result(self.result)
            self.state = "cancelled" if self._cancel.is_set() else "finished"
        except BaseException as e:  # noqa: BLE001 - the page must learn what happened
            log.exception("lesson %s failed", self.lesson.name)
            self.state, self.message = "failed", str(e) or type(e).__name__
            for a in self.arms:
                if a.job is not None and not a.job.done:
                    a.job.cancel()
        finally:
            self._done.set()

    def _arms(self, data_cache: dict[str, Any]) -> None:
        """Queue the arms (independent ones at once) and wait for them all, or for a cancel."""
        for a in self.arms:  # independent arms queue at once, in order
            if a.plan.depends_on is None:
                self._submit(a, a.plan.config, data_cache)
        for a in self.arms:  # an arm that starts from another's weights waits for its run
            if a.plan.depends_on is not None:
                source = next(s for s in self.arms if s.plan.arm.id == a.plan.depends_on)
                if not self._wait_for(source):
                    break
                if self.arm_state(source) != "finished" or source.job is None or not source.job.run_id:
                    a.state, a.message = "skipped", _skipped(source, self.arm_state(source))
                    continue
                config = dataclasses.replace(a.plan.config, init_from=source.job.run_id)
                self._submit(a, config, data_cache)
        for a in self.arms:
            if not self._wait_for(a):
                break

    def _arms_in_group(self, data_cache: dict[str, Any], group: Any = None) -> None:
        """Under torchrun: every process trains the arms one after the other, each data-parallel with the
        others. Before each arm they agree (:func:`cnnlab.distributed.agree_on_task`): the same arm in all
        (else every process stops with one message), a cancel in any one stops all of them, an arm one of
        them cannot start (its source arm did not finish) is skipped by all; the arm's data is loaded in
        turns and its success agreed (:func:`cnnlab.distributed.load_in_turn`). Only one arm at a time
        uses the group: its exchanges never interleave with another arm's."""
        if group is None:
            group = distributed.Group.for_exchanges(pick_device(self.arms[0].plan.config.device if self.arms else "auto"))
        if group.device.type == "cuda":
            torch.cuda.set_device(group.device)  # this thread's GPU for NCCL's exchanges
        names = [a.plan.arm.name for a in self.arms]
        for i, a in enumerate(self.arms):
            config, skip = a.plan.config, ""
            if a.plan.depends_on is not None:
                source = next(s for s in self.arms if s.plan.arm.id == a.plan.depends_on)
                if self.arm_state(source) != "finished" or source.job is None or not source.job.run_id:
                    skip = _skipped(source, self.arm_state(source))
                else:
                    config = dataclasses.replace(config, init_from=source.job.run_id)
            agreed = distributed.agree_on_task(group, i, names, cancel=self._cancel.is_set(), skip=skip)
            if agreed.cancel:
                self.cancel()  # every process stops here (the arms not started: "cancelled")
                return
            if agreed.skip:
                a.state, a.message = "skipped", agreed.skip
                continue
            try:
                data = _data_for(config, data_cache, group)  # agreed: loaded in every process, or failed in all
            except CnnlabError as e:
                a.state, a.message = "failed", str(e)
                continue
            self._submit(a, config, data_cache, data=data)
            while a.job is not None and not a.job.wait(0.2):  # a cancel here is agreed inside the training
                if self._cancel.is_set():
                    a.job.cancel()
        agreed = distributed.agree_on_task(group, len(self.arms), names, cancel=self._cancel.is_set())
        if agreed.cancel:
            self.cancel()

    def _wait_for(self, a: ArmState) -> bool:
        """Wait until arm ``a`` is over; False once the lesson is cancelled."""
        while a.job is not None and not a.job.wait(0.2):
            if self._cancel.is_set():
                a.job.cancel()
        return not self._cancel.is_set()

    def _submit(self, a: ArmState, config: TrainConfig, data_cache: dict[str, Any], data: Any = None) -> None:
        if self._cancel.is_set() and data is None:
            return
        try:
            data = data if data is not None else _data_for(config, data_cache)
        except CnnlabError as e:
            a.state, a.message = "failed", str(e)
            return
        model = None
        if a.plan.start == "standin":
            cfg = dataclasses.replace(self.standin, seed=config.seed, device=config.device)
            model = lambda cancel, cfg=cfg, freeze=a.plan.freeze: standin_transfer_model(  # noqa: E731
                cfg, cancel=cancel, freeze=freeze)
        a.job = self.manager.submit(config, model=model, data=data)
        a.state = "queued"


def _skipped(source: ArmState, state: str) -> str:
    """Why an arm that starts from ``source``'s weights is not trained (``state``: how ``source`` ended)."""
    return _("it starts from the weights of {arm}, which {state}.").format(arm=source.plan.arm.name, state=state)


def _data_key(config: TrainConfig) -> str:
    keys = ("dataset", "data_root", "seed", "subset", "val_fraction", "val_split", "data_options")
    return json.dumps({k: getattr(config, k) for k in keys}, sort_keys=True, default=str)


def _data_for(config: TrainConfig, cache: dict[str, Any], group: Any = None) -> Any:
    """Arms with the same data settings share one loaded dataset (what ``load_data`` would build).
    ``group``: loaded in turns by the processes of a torchrun group (:func:`cnnlab.distributed.load_in_turn`)."""
    key = _data_key(config)
    if key not in cache:
        cache[key] = load_data(config) if group is None else distributed.load_in_turn(
            group, lambda download: load_data(config, download=download), f"the {config.dataset} dataset")
    return cache[key]


_runs: list[LessonRun] = []
_runs_lock = threading.Lock()


def start_lesson(lesson: Lesson, budget: str = "quick", *, manager: JobManager | None = None,
                 overrides: Mapping[str, Any] | None = None, device: str = "auto",
                 standin: StandinConfig | None = None) -> LessonRun:
    """Plan ``lesson`` (errors now) and start it in the background; see :class:`LessonRun`.
    ``standin``: the pretraining of arms with ``start = "standin"`` (default: cnnlab.transfer's)."""
    plans = plan(lesson, budget, overrides, device)
    run = LessonRun(lesson, budget, plans, manager or get_manager(), overrides, standin)
    with _runs_lock:
        _runs.append(run)
        del _runs[:-20]
    return run.start()


def lesson_runs(name: str | None = None) -> list[LessonRun]:
    """Lesson runs started in this process (newest last), optionally of one lesson."""
    with _runs_lock:
        return [r for r in _runs if name is None or r.lesson.name == name]


# ---- measuring --------------------------------------------------------------------------------------


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _macs(model: str, meta: Mapping[str, Any]) -> int | None:
    try:
        shape = tuple(int(v) for v in meta.get("input_shape") or ())
        return int(summarize(model, input_shape=shape or None, num_classes=len(meta.get("classes") or []) or None).total_macs)
    except Exception:  # noqa: BLE001 - a column, never a reason to lose the result
        log.debug("MACs of %s unavailable", model, exc_info=True)
        return None


def measure_arm(a: ArmState, data_cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """One arm's row: what it is, how it ended, and what it measured."""
    p, job = a.plan, a.job
    c = p.config
    row: dict[str, Any] = {
        "id": p.arm.id, "name": p.arm.name, "note": p.arm.note, "model": c.model, "optimizer": c.optimizer,
        "lr": c.lr, "momentum": c.momentum, "batch_size": c.batch_size, "augment": c.augment, "subset": c.subset,
        "freeze": "features" if p.freeze else c.freeze, "start": p.start, "compare": p.arm.compare,
        "status": job.state if job is not None else a.state,
        "message": job.message if job is not None else a.message,
        "run_id": job.run_id if job is not None else None, "curves": [],
    }
    if job is None:
        return row
    result = job.result
    stored = None
    if job.run_id:
        try:
            stored = load_run(job.run_id)
        except CnnlabError:
            stored = None
    meta = stored.meta if stored is not None else {}
    history = [dataclasses.asdict(e) for e in result.history] if result is not None else (stored.metrics if stored else [])
    row["curves"] = [{k: e.get(k) for k in ("epoch", "train_loss", "val_loss", "train_top1", "val_top1", "elapsed",
                                             "train_seconds", "images_per_sec")} for e in history]
    try:
        row["model_name"] = get_model_spec(c.model).display_name
    except CnnlabError:
        row["model_name"] = c.model
    row["dataset"] = meta.get("display_name") or c.dataset
    row["params"] = meta.get("num_params")
    row["trainable_params"] = meta.get("trainable_params")
    row["train_images"] = meta.get("train_images")
    row["val_images"] = meta.get("val_images")
    row["num_classes"] = len(meta.get("classes") or []) or None
    row["epochs"] = len(history)
    if history:
        last = history[-1]
        row["final_train_top1"] = _finite(last.get("train_top1"))
        row["final_val_top1"] = _finite(last.get("val_top1"))
        if row["final_train_top1"] is not None and row["final_val_top1"] is not None:
            row["gap"] = row["final_train_top1"] - row["final_val_top1"]
        vals = [(_finite(e.get("val_top1")), e.get("epoch")) for e in history]
        vals = [v for v in vals if v[0] is not None]
        if vals:
            best = max(vals, key=lambda v: v[0])
            row["best_val_top1"], row["best_epoch"] = best
    if result is not None:
        row["seconds"] = round(result.elapsed, 3)
        row["images_per_sec"] = _finite(result.images_per_sec)
        row["steps"] = result.steps
    elif history:
        row["seconds"] = _finite(history[-1].get("elapsed"))
    if row.get("seconds") and row["epochs"]:
        row["epoch_seconds"] = row["seconds"] / row["epochs"]
    trained = _finite(history[-1].get("train_seconds")) if history else None
    if trained and row["epochs"]:  # training only: validation, events and saving excluded
        row["train_epoch_seconds"] = trained / row["epochs"]
    row["threads"] = result.threads if result is not None else None
    if stored is not None:  # what the X-ray says about why it learnt or not (cnnlab.xray)
        row["diagnoses"] = read_xray(stored.path).diagnoses
    row["macs"] = _macs(c.model, meta) if meta else None
    if stored is not None and stored.has_checkpoint and c.val_split != "test" and row["status"] in ("finished", "cancelled"):
        data = None
        try:
            data = _data_for(c, data_cache if data_cache is not None else {})
            if getattr(data, "test", None) is not None:
                row["test_top1"] = evaluate_run(stored, "test", device=job.device, data=data).top1
                row["test_images"] = len(data.test.labels)
        except CnnlabError as e:
            log.info("no test accuracy for %s: %s", job.run_id, e)
    return row


def measure(run: LessonRun, data_cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole result: arms, conclusion, where and how it ran."""
    arms = [measure_arm(a, data_cache) for a in run.arms]
    try:
        conclusion, shown = conclude_with_effect(run.lesson, arms, run.budget)
    except Exception as e:  # noqa: BLE001 - the measured arms are kept whatever the text does
        log.exception("conclusion of %s failed", run.lesson.name)
        conclusion = _("The conclusion could not be written ({error}); the table above holds the measured "
                       "numbers.").format(error=e)
        shown = {"shown": False, "why": [conclusion]}
    threads = sorted({a["threads"] for a in arms if isinstance(a.get("threads"), int)})
    return {
        "version": RESULT_VERSION, "lesson": run.lesson.name, "title": run.lesson.title, "budget": run.budget,
        "seeds": list(run.lesson.seeds), "question": run.lesson.question,
        "created": datetime.now().isoformat(timespec="seconds"), "seconds": round(time.time() - run.started, 1),
        "state": "cancelled" if run._cancel.is_set() else "finished", "overrides": run.overrides,
        "arms": arms, "conclusion": conclusion, "effect": shown, "lesson_source": run.lesson.source,
        "builtin": run.lesson.builtin,
        "machine": {"device": next((a.job.device for a in run.arms if a.job is not None), "cpu"),
                    "threads": (threads[0] if len(threads) == 1 else threads) if threads else None,
                    "cpus": os.cpu_count(), "torch": torch.__version__},
    }


# ---- results on disk --------------------------------------------------------------------------------


def save_result(result: Mapping[str, Any]) -> str:
    """Write ``result`` as a new result folder (atomically); its id."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        path = unique_folder(results_dir(), f"{lesson_name(str(result['lesson']))}-{lesson_name(str(result['budget']))}-{stamp}")
    except OSError as e:
        raise LessonError(_("cannot create a result folder in {folder}: {error}").format(
            folder=results_dir(), error=e)) from e
    atomic_write_text(path / RESULT_FILE, json.dumps({**result, "id": path.name}, indent=1, default=_json_default))
    return path.name


def attach_guesses(result_id: str, guesses: Mapping[str, Any]) -> StoredResult:
    """Keep a class's guesses (:meth:`cnnlab.lessons.classroom.ClassSession.summary`: counts only, and the
    sentence comparing them with the result) with a saved result, rewritten atomically."""
    stored = load_result(result_id)
    data = {k: v for k, v in stored.data.items() if k != "id"}
    data["guesses"] = _checked_guesses(dict(guesses))
    atomic_write_text(results_dir() / stored.id / RESULT_FILE,
                      json.dumps({**data, "id": stored.id}, indent=1, default=_json_default))
    return load_result(stored.id)


def _checked_guesses(g: Any) -> dict[str, Any] | None:
    """A class's guesses as stored with a result: only these fields, each of its type and bounded."""
    if not isinstance(g, dict) or g.get("kind") not in ("arms", "number"):
        return None
    out: dict[str, Any] = {k: str(g.get(k, ""))[:MAX_TEXT] for k in ("code", "kind", "prompt", "metric", "text", "arm")}
    answers = g.get("answers")
    out["answers"] = answers if isinstance(answers, int) and 0 <= answers <= 10_000 else 0
    counts = g.get("counts") if isinstance(g.get("counts"), dict) else {}
    out["counts"] = {str(k)[:200]: v for k, v in list(counts.items())[:16] if isinstance(v, int) and v >= 0}
    values = g.get("values") if isinstance(g.get("values"), list) else []
    out["values"] = [float(v) for v in values[:10_000] if _finite(v) is not None]
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


@dataclass
class StoredResult:
    id: str
    data: dict[str, Any]
    lesson: Lesson | None  # parsed again from the stored text (None if it no longer parses)
    problem: str = ""

    @property
    def arms(self) -> list[dict[str, Any]]:
        return self.data["arms"]

    @property
    def conclusion(self) -> str:
        return self.data["conclusion"]


_RESULT_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "lesson": str, "title": str, "budget": str, "created": str, "conclusion": str, "arms": list,
    "lesson_source": str, "state": str,
}
_ARM_TEXT = ("id", "name", "status", "message")
_ARM_NUMBERS = ("params", "trainable_params", "macs", "epochs", "best_epoch", "best_val_top1", "final_val_top1",
                "final_train_top1", "gap", "test_top1", "seconds", "epoch_seconds", "train_epoch_seconds",
                "images_per_sec", "train_images", "val_images", "num_classes", "threads", "lr", "momentum",
                "batch_size", "subset")


def _checked(data: Any) -> dict[str, Any]:
    """A result dict with every field of the expected type (a hand-edited or damaged file is refused)."""
    if not isinstance(data, dict):
        raise LessonError(_("not a JSON object."))
    for key, kind in _RESULT_SCHEMA.items():
        if not isinstance(data.get(key), kind):
            raise LessonError(_("'{key}' is missing or not a {kind}.").format(
                key=key, kind=getattr(kind, "__name__", kind)))
    if data["budget"] not in BUDGETS:
        raise LessonError(_("unknown budget {budget!r}.").format(budget=data["budget"]))
    arms = []
    for i, a in enumerate(data["arms"][:16]):
        if not isinstance(a, dict) or not all(isinstance(a.get(k), str) for k in _ARM_TEXT):
            raise LessonError(_("arm {i} is not a measured arm.").format(i=i))
        clean = {k: a.get(k) for k in _ARM_TEXT}
        for k in _ARM_NUMBERS:
            v = a.get(k)
            clean[k] = v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        for k in ("note", "model", "model_name", "optimizer", "augment", "freeze", "start", "run_id", "dataset"):
            clean[k] = a.get(k) if isinstance(a.get(k), str) else None
        clean["compare"] = a.get("compare") is not False
        said = a.get("diagnoses") if isinstance(a.get("diagnoses"), list) else []
        clean["diagnoses"] = [d[:1000] for d in said[:20] if isinstance(d, str)]
        curves = a.get("curves") if isinstance(a.get("curves"), list) else []
        clean["curves"] = [{k: (v if isinstance(v, (int, float)) and not isinstance(v, bool) else None)
                            for k, v in e.items() if isinstance(k, str)} for e in curves[:10_000] if isinstance(e, dict)]
        arms.append(clean)
    effect = data.get("effect")
    if isinstance(effect, dict) and isinstance(effect.get("shown"), bool) and isinstance(effect.get("why"), list):
        effect = {"shown": effect["shown"], "why": [str(w)[:500] for w in effect["why"][:20] if isinstance(w, str)]}
    else:
        effect = None  # results saved before effects were recorded, or a damaged file
    return {**data, "arms": arms, "effect": effect, "guesses": _checked_guesses(data.get("guesses"))}


def load_result(result_id: str) -> StoredResult:
    """A saved result by id (the folder name); its lesson parsed again from the stored text."""
    if not isinstance(result_id, str) or not RESULT_ID.fullmatch(result_id) or ".." in result_id:
        raise LessonError(_("not a lesson result id: {id!r}.").format(id=result_id))
    path = results_dir() / result_id / RESULT_FILE
    if path.is_symlink() or not path.is_file() or (results_dir() / result_id).is_symlink():
        raise LessonError(_("no lesson result {id!r} in {folder}.").format(id=result_id, folder=results_dir()))
    if path.stat().st_size > MAX_RESULT_BYTES:
        raise LessonError(_("lesson result {id}: the file is larger than {mb} MB.").format(
            id=result_id, mb=MAX_RESULT_BYTES >> 20))
    try:
        data = _checked(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError, LessonError) as e:
        raise LessonError(_("lesson result {id} is damaged: {error}").format(id=result_id, error=e)) from None
    lesson, problem = None, ""
    try:
        lesson = parse_lesson(data["lesson_source"], data["lesson"],
                              source=_("{lesson} (as run)").format(lesson=data["lesson"]),
                              builtin=bool(data.get("builtin")))
    except CnnlabError as e:
        problem = str(e)
    return StoredResult(result_id, data, lesson, problem)


def list_results(lesson: str | None = None, budget: str | None = None,
                 builtin: bool | None = None) -> list[StoredResult]:
    """Saved results, newest first (damaged folders are skipped and logged); ``builtin``: only those
    of built-in lessons (True) or of teachers' own files (False)."""
    root = results_dir()
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name, reverse=True)[:500]:
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            r = load_result(entry.name)
        except LessonError as e:
            log.warning("%s", e)
            continue
        if ((lesson is None or r.data["lesson"] == lesson) and (budget is None or r.data["budget"] == budget)
                and (builtin is None or bool(r.data.get("builtin")) == builtin)):
            found.append(r)
    found.sort(key=lambda r: r.data["created"], reverse=True)
    return found


def delete_result(result_id: str) -> None:
    """Remove a saved result's folder (the Lessons page's delete); the runs of its arms are kept."""
    load_result(result_id)  # checks the id and that it is a result folder
    shutil.rmtree(results_dir() / result_id)


def result_table(arms: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows for a side-by-side table: arm name, then the default and the lesson's extra columns."""
    cols = [*DEFAULT_COLUMNS[:-1], *[c for c in columns if c not in DEFAULT_COLUMNS], DEFAULT_COLUMNS[-1]]
    rows = []
    for a in arms:
        row: dict[str, Any] = {"arm": a["name"]}
        for c in cols:
            row[COLUMN_LABELS[c]] = a.get(c)
        rows.append(row)
    return rows


def lesson_to_dict(lesson: Lesson, budget: str) -> dict[str, Any]:
    """What ``python -m cnnlab lessons --json`` and the page list for one lesson."""
    return {"name": lesson.name, "title": lesson.title, "seeds": list(lesson.seeds), "question": lesson.question,
            "arms": [a.name for a in lesson.arms], "budget": budget_summary(lesson, budget),
            "builtin": lesson.builtin}


__all__ = [
    "ArmPlan", "ArmState", "LessonRun", "StoredResult", "attach_guesses", "budget_summary", "check_overrides", "delete_result",
    "full_budget_state", "lesson_runs", "lesson_to_dict", "list_results", "load_result",
    "measure", "measure_arm", "missing_files", "plan", "result_table", "results_dir", "save_result",
    "start_lesson",
]
