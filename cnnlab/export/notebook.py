"""A run or a lesson as a self-contained notebook (or script) in the seeds' style.

The cells read top to bottom like a lecture notebook: the imports, the data, the input pipeline, the
model class, the training loop, the curves. Every definition is cnnlab's own code copied out
(:mod:`~cnnlab.export.closure`) or written for the export (:mod:`~cnnlab.export.datacode`,
:mod:`~cnnlab.export.training`); no cell imports cnnlab. A lesson's notebook trains each arm in its
own section, then puts them side by side (table and plots) and ends with questions for discussion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..config import TrainConfig
from ..data.shapes import STANDIN_MODEL, TARGET_CLASSES
from ..errors import CnnlabError
from ..i18n import _
from ..lessons import BUDGETS, Lesson
from ..lessons.runner import check_overrides
from ..models import get_spec
from ..runs import Run, run_config
from ..transfer import STANDIN_HEAD, StandinConfig
from .closure import Closure, ExportError
from .datacode import (
    Shapes, add_data_code, add_pipeline_code, check_dataset, data_from_meta, describe, planned_shapes,
)
from .modelcode import ModelCode, model_code, new_closure
from .training import ArmCode, add_training_code, arm_code

RUN_PLOT = '''
epochs = [h["epoch"] for h in history]
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
ax_loss.plot(epochs, [h["train_loss"] for h in history], "-b", label="training")
ax_loss.plot(epochs, [h["val_loss"] for h in history], "--r", label="validation")
ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("loss"), ax_loss.legend()
ax_acc.plot(epochs, [h["train_top1"] for h in history], "-b", label="training")
ax_acc.plot(epochs, [h["val_top1"] for h in history], "--r", label="validation")
ax_acc.set_xlabel("epoch"), ax_acc.set_ylabel("top-1 accuracy"), ax_acc.legend()
plt.show()
'''

SUMMARY = '''
def summary(name, model, history):
    """What the comparison shows of one arm."""
    best = max(history, key=lambda h: h["val_top1"]) if history else {}
    last = history[-1] if history else {}
    return {"name": name, "history": history, "best_val_top1": best.get("val_top1", float("nan")),
            "final_train_top1": last.get("train_top1", float("nan")),
            "gap": last.get("train_top1", float("nan")) - last.get("val_top1", float("nan")),
            "params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "epochs": len(history), "seconds": sum(h["seconds"] for h in history) / max(1, len(history))}


def comparison_table(results):
    """One line per arm: the measurements cnnlab's lesson table shows."""
    print(f"{'arm':<44} {'parameters':>12} {'trained':>12} {'epochs':>6} {'best val top-1':>15} "
          f"{'final train top-1':>18} {'gap':>7} {'s/epoch':>8}")
    for r in results.values():
        print(f"{r['name'][:44]:<44} {r['params']:>12,} {r['trainable_params']:>12,} {r['epochs']:>6} "
              f"{r['best_val_top1']:>15.1%} {r['final_train_top1']:>18.1%} {r['gap']:>7.1%} {r['seconds']:>8.2f}")
'''

LESSON_PLOTS = {
    "curves": '''
fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4))
for r in results.values():  # validation accuracy and loss per epoch, the arms overlaid
    epochs = [h["epoch"] for h in r["history"]]
    ax_acc.plot(epochs, [h["val_top1"] for h in r["history"]], label=r["name"])
    ax_loss.plot(epochs, [h["val_loss"] for h in r["history"]], label=r["name"])
ax_acc.set_xlabel("epoch"), ax_acc.set_ylabel("validation top-1"), ax_acc.legend(fontsize=8)
ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("validation loss")
plt.show()
''',
    "gap": '''
names = [r["name"] for r in results.values()]
positions = range(len(names))
plt.figure(figsize=(10, 4))  # final training against validation accuracy: the overfitting gap
plt.bar([p - 0.2 for p in positions], [r["final_train_top1"] for r in results.values()], 0.4, label="training")
plt.bar([p + 0.2 for p in positions], [r["history"][-1]["val_top1"] if r["history"] else 0 for r in results.values()],
        0.4, label="validation")
plt.xticks(list(positions), names, rotation=20, ha="right"), plt.ylabel("final top-1"), plt.legend()
plt.show()
''',
    "time": '''
plt.figure(figsize=(10, 4))  # training seconds per epoch
plt.bar([r["name"] for r in results.values()], [r["seconds"] for r in results.values()])
plt.xticks(rotation=20, ha="right"), plt.ylabel("seconds per epoch")
plt.show()
''',
    "params": '''
plt.figure(figsize=(6, 4))  # parameters against the best validation accuracy
for r in results.values():
    plt.scatter(r["params"], r["best_val_top1"], label=r["name"])
plt.xscale("log"), plt.xlabel("parameters"), plt.ylabel("best validation top-1"), plt.legend(fontsize=8)
plt.show()
''',
}


@dataclass
class Cell:
    kind: str  # "markdown" or "code"
    text: str


def _md(text: str) -> Cell:
    return Cell("markdown", text.strip())


def _code(text: str) -> Cell:
    return Cell("code", text.strip("\n"))


class _Sections:
    """One closure for the whole notebook, cut into cells: each section's new definitions."""

    def __init__(self) -> None:
        self.closure: Closure = new_closure()
        self.mark = 0

    def cell(self) -> Cell | None:
        """The definitions added since the last cell, as one code cell (None if there are none)."""
        blocks = self.closure.code.blocks[self.mark:]
        self.mark = len(self.closure.code.blocks)
        return _code("\n\n\n".join(blocks)) if blocks else None


def _imports_cell(closure: Closure, configs: Sequence[TrainConfig]) -> Cell:
    """The imports every later cell needs, the device, and where torchvision's files go."""
    lines = sorted(set(closure.code.imports), key=_import_order)
    lines.append("import matplotlib.pyplot as plt")
    roots = {c.data_root or "data" for c in configs if c.dataset not in ("digits", "shapes")}
    body = "\n".join(lines) + "\n\n" + \
        'device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # a GPU if there is one\n'
    if roots:
        body += f"DATA_ROOT = {min(roots)!r}  # where torchvision keeps the dataset files (downloaded once)\n"
    return _code(body + 'print("training on", device)')


def _import_order(line: str) -> tuple[int, bool, str]:
    module = line.split()[1]
    order = ("copy", "math", "time", "collections", "typing", "numpy", "torch", "torchvision", "sklearn")
    top = module.split(".")[0]
    return (order.index(top) if top in order else len(order), not line.startswith("import"), line)


def _model(config: TrainConfig, shapes: Shapes) -> ModelCode:
    kwargs = {"num_classes": shapes.num_classes, "in_channels": shapes.model[0], "input_size": shapes.model[1:]}
    return model_code(config.model, kwargs, config.pretrained, config.freeze == "features")


# ---- a run ---------------------------------------------------------------------------------------------------


def run_cells(run: Run) -> list[Cell]:
    """The notebook of a run: its data, model and settings, trained again from its seed."""
    config = _rebuildable(run)
    shapes = data_from_meta(run.meta)
    model = model_code(run.meta["model"], run.meta["model_kwargs"], config.pretrained, config.freeze == "features")
    code = arm_code(config, shapes, model.build)
    s = _Sections()
    cells = [_md(_run_intro(run, config))]
    add_data_code(s.closure, [config])
    cells += [_md("## The data\n\n" + describe(config) + " The same images, split the same way, as the run.")]
    cells += [c for c in (s.cell(), _code(code.data)) if c]
    add_pipeline_code(s.closure, [config])
    cells += [_md(_PIPELINE_TEXT)] + [c for c in (s.cell(), _code(code.pipeline)) if c]
    s.closure.merge(model.code)
    cells += [_md(_model_text(config, run.meta))] + [c for c in (s.cell(), _code(code.model)) if c]
    add_training_code(s.closure, [config])
    cells += [_md(_TRAINING_TEXT)] + [c for c in (s.cell(), _code(code.optimizer + "\n" + code.train)) if c]
    cells += [_md("## The curves\n\nLoss and accuracy per epoch, on the training images (while they were "
                  "learnt) and on the validation images."), _code(RUN_PLOT)]
    cells += [_md("## Compared with cnnlab's run"), _code(_comparison(run))]
    return [cells[0], _imports_cell(s.closure, [config]), *cells[1:]]


def _rebuildable(run: Run) -> TrainConfig:
    """The run's config, refusing what a notebook cannot start from (its settings alone)."""
    if run.is_link:
        raise ExportError(f"{run.damage}.")
    bad = run.damaged_in("meta.json", "model", "model_kwargs", "input_shape", "data_shape")
    if bad or "model" not in run.meta or not isinstance(run.meta.get("model_kwargs"), dict):
        why = "; ".join(p.text for p in bad) or _("meta.json does not name its model and arguments")
        raise ExportError(_("run {run} cannot be exported: {why}. Delete it (python -m cnnlab runs --delete {run}) or "
                            "train it again.").format(run=run.run_id, why=why))
    config = run_config(run)
    check_dataset(config)
    if config.init_from or run.meta.get("prepared_model"):
        said = {"run": run.run_id, "source": config.init_from}
        raise ExportError((_("run {run} started from run {source}'s weights, which its settings alone do not rebuild: "
                             "export the lesson it belongs to (python -m cnnlab export LESSON --notebook FILE), which "
                             "trains that start too, or the trained model (--onnx, --torchscript).")
                           if config.init_from else
                           _("run {run} started from a network prepared before it (the transfer stand-in's "
                             "pretraining), which its settings alone do not rebuild: export the lesson it belongs to "
                             "(python -m cnnlab export LESSON --notebook FILE), which trains that start too, or the "
                             "trained model (--onnx, --torchscript).")).format(**said))
    return config


def _run_intro(run: Run, config: TrainConfig) -> str:
    spec = get_spec(config.model)
    best = run.best_val_top1
    best_text = f"**{best:.1%}** validation top-1" if isinstance(best, float) else "no validation result yet"
    epoch = max(run.metrics, key=lambda m: m.get("val_top1") or -1).get("epoch") if run.metrics else None
    needs = "PyTorch 2.4 or later, torchvision and matplotlib" + \
        (" (and scikit-learn for the digits)" if config.dataset == "digits" else "")
    where = "a GPU" if str(run.meta.get("device", "")).startswith("cuda") else "a CPU"
    return (f"# {spec.display_name} on {run.meta.get('display_name', config.dataset)}\n\n"
            f"cnnlab run `{run.run_id}`, written out as plain PyTorch: the same data and split, the same model, "
            f"settings and seed ({config.seed}), with no cnnlab inside. Run it top to bottom; it needs {needs}.\n\n"
            f"The run reached {best_text}" + (f" (epoch {epoch} of {config.epochs})" if epoch else "") +
            f". Trained again here on {where}, as the run was, the numbers come out the same or close: the same "
            "images come in the same order, but another number of CPU threads (or cnnlab's mixed precision on a "
            "GPU) changes the last digits of the sums, and a few epochs of training can make more of that.")


_PIPELINE_TEXT = ("## The input pipeline\n\nThe images stay as whole uint8 tensors; each batch is moved to the "
                  "device, scaled to [0, 1], augmented as a whole, adapted to the model's channels and normalised "
                  "(each channel minus its mean, over its standard deviation).")
_TRAINING_TEXT = ("## Training\n\nThe optimiser and, below it, the training loop: shuffle, one optimiser step "
                  "per batch, validation after each epoch, the best validation weights kept.")


def _model_text(config: TrainConfig, meta: dict[str, Any]) -> str:
    spec = get_spec(config.model)
    return (f"## The model: {spec.display_name}\n\n{spec.notes} It reads "
            f"{'x'.join(str(v) for v in meta.get('input_shape', []))} inputs.")


def _comparison(run: Run) -> str:
    best = run.best_val_top1
    cnnlab = f"{best:.4f}" if isinstance(best, float) else "None"
    return (f"RUN_BEST = {cnnlab}  # cnnlab's run: its best validation top-1\n"
            "best_val_top1 = max((h[\"val_top1\"] for h in history), default=float(\"nan\"))\n"
            "print(f\"this notebook: {best_val_top1:.2%} best validation top-1\")\n"
            "if RUN_BEST is not None:\n"
            "    print(f\"cnnlab's run:  {RUN_BEST:.2%}\")")


# ---- a lesson -------------------------------------------------------------------------------------------------


def lesson_cells(lesson: Lesson, budget: str = "quick", overrides: Mapping[str, Any] | None = None) -> list[Cell]:
    """A lesson's notebook: the question, each arm trained in its own section, the comparison, the questions.
    ``overrides``: settings for every arm (a shorter homework: ``{"epochs": 2}``), as ``python -m cnnlab lesson
    --set`` takes them."""
    if budget not in BUDGETS:
        raise ExportError(_("unknown budget {budget!r}: choose {choices}.").format(
            budget=budget, choices=_(" or ").join(BUDGETS)))
    try:
        extra = check_overrides(overrides)
        configs = {arm.id: lesson.config(arm, budget, extra) for arm in lesson.arms}
    except CnnlabError as e:
        raise ExportError(_("lesson {lesson} cannot be exported: {error}").format(lesson=lesson.name, error=e)) from None
    standins = {configs[a.id].seed: StandinConfig(seed=configs[a.id].seed).source_config()
                for a in lesson.arms if a.start_in(budget) == "standin"}
    every = [*standins.values(), *configs.values()]
    shapes = {id(c): planned_shapes(c) for c in every}
    models = {id(c): _model(c, shapes[id(c)]) for c in every}
    s = _Sections()
    add_data_code(s.closure, every)
    cells = [_md("## The data\n\n" + " ".join(dict.fromkeys(describe(c) for c in every))), s.cell()]
    add_pipeline_code(s.closure, every)
    cells += [_md(_PIPELINE_TEXT), s.cell()]
    add_training_code(s.closure, every)
    s.closure.add_source(SUMMARY)
    cells += [_md(_TRAINING_TEXT), s.cell()]
    for m in models.values():
        s.closure.merge(m.code)
    cells += [_md("## The models\n\nThe classes of every arm's network, written out.")] + ([c] if (c := s.cell()) else [])
    cells += [_code("results, states = {}, {}  # each compared arm's measurements; the weights later arms start from"
                    + ("\nstandin_state = {}  # the pretrained network's weights, by seed" if standins else ""))]
    for seed, source in standins.items():
        cells += _standin_cells(source, shapes[id(source)], models[id(source)], seed)
    for i, arm in enumerate(lesson.arms, 1):
        config = configs[arm.id]
        build = models[id(config)].build
        if arm.start_in(budget) == "standin":
            build = ("with torch.random.fork_rng(devices=[]):  # the new head's weights come from the seed alone\n"
                     f"    torch.manual_seed({config.seed})\n" + "\n".join("    " + line for line in build.splitlines()))
        code = arm_code(config, shapes[id(config)], build, _start(lesson, arm, config, budget))
        keep = any(a.depends_on(budget) == arm.id for a in lesson.arms)
        cells += _arm_cells(i, arm, config, code, budget, keep)
    cells += _comparison_cells(lesson)
    cells = [_md(_lesson_intro(lesson, budget)), _imports_cell(s.closure, every), *[c for c in cells if c is not None]]
    return cells


def _lesson_intro(lesson: Lesson, budget: str) -> str:
    seeds = f" (lecture {lesson.seed_label})" if lesson.seeds else ""
    return (f"# {lesson.title}\n\n**The question.** {lesson.question}\n\nA cnnlab lesson{seeds}, written out as "
            f"plain PyTorch for homework: each of its {len(lesson.arms)} arms is trained in its own section with "
            f"the lesson's {budget} settings, then the arms are compared in a table and plots. Before you run it, "
            "write down what you expect. Run it top to bottom; it needs PyTorch 2.4 or later, torchvision and "
            "matplotlib"
            + " (and scikit-learn for the digits).")


def _start(lesson: Lesson, arm: Any, config: TrainConfig, budget: str) -> list[str]:
    """The lines that give an arm its starting weights: another arm's, or the pretrained stand-in's."""
    source = arm.depends_on(budget)
    if source is not None:
        return [f"start = states[{source!r}]  # the best weights of the arm {lesson.arm(source).name!r}",
                "own = model.state_dict()",
                "fits = {k: v for k, v in start.items() if k in own and v.shape == own[k].shape}",
                "model.load_state_dict({**own, **fits})  # every layer whose shape fits starts from them; the others "
                "(a new head) start fresh"]
    if arm.start_in(budget) != "standin":
        return []
    lines = [f"body = {{k: v for k, v in standin_state[{config.seed}].items() if not k.startswith({STANDIN_HEAD + '.'!r})}}",
             f"model.load_state_dict({{**model.state_dict(), **body}})  # every pretrained layer but the last "
             f"({STANDIN_HEAD}), which is new for the {len(TARGET_CLASSES)} new classes"]
    if lesson.standin_freeze(arm, budget):
        lines += ["for name, p in model.named_parameters():  # the pretrained layers stay as they are: only the new "
                  "head learns",
                  f"    p.requires_grad_(name.startswith({STANDIN_HEAD + '.'!r}))"]
    return lines


def _arm_cells(i: int, arm: Any, config: TrainConfig, code: ArmCode, budget: str, keep: bool) -> list[Cell]:
    own = {**arm.settings, **arm.budgets.get(budget, {})}
    shown = ", ".join(f"`{k} = {json.dumps(v)}`" for k, v in own.items()) or "the lesson's shared settings"
    text = (f"## {i}. {arm.name}\n\n{arm.note}\n\nThis arm's own settings: {shown}. Model `{config.model}`, "
            f"{config.epochs} epochs of batch {config.batch_size}, {config.optimizer} at lr {config.lr:g}, "
            f"augmentation {config.augment!r}, seed {config.seed}."
            + ("" if arm.compare else "\n\nNot compared: it prepares the start of another arm."))
    last = code.optimizer + "\n" + code.train
    if arm.compare:
        last += f"\nresults[{arm.id!r}] = summary({arm.name!r}, model, history)"
    if keep:
        last += f"\nstates[{arm.id!r}] = copy.deepcopy(model.state_dict())  # a later arm starts from these weights"
    return [_md(text), _code(code.data + "\n" + code.pipeline), _code(code.model), _code(last)]


def _standin_cells(source: TrainConfig, shapes: Shapes, model: ModelCode, seed: int) -> list[Cell]:
    code = arm_code(source, shapes, model.build)
    text = (f"## The pretrained network\n\nThe arms that start from a pretrained network start from this one: "
            f"{STANDIN_MODEL} trained on other shapes ({', '.join(source.data_options.get('classes', []))}) with "
            f"plenty of images, as cnnlab's offline stand-in for ImageNet weights. Its weights are kept, all but "
            f"the last layer are reused.")
    return [_md(text), _code(code.data + "\n" + code.pipeline), _code(code.model),
            _code(code.optimizer + "\n" + code.train + f"\nstandin_state[{seed}] = copy.deepcopy(model.state_dict())")]


def _comparison_cells(lesson: Lesson) -> list[Cell]:
    cells = [_md("## The comparison\n\nEvery compared arm side by side: the table, then the plots."),
             _code("comparison_table(results)")]
    cells += [_code(LESSON_PLOTS[p]) for p in lesson.plots if p in LESSON_PLOTS]
    questions = [lesson.question, *lesson.discuss,
                 "Which differences in the table are larger than the noise? Run the notebook again with another "
                 "seed (the `seed=` of each arm) and see which ones stay.",
                 "Change one setting of one arm and predict, before you run it, what will change in the table."]
    cells.append(_md("## Questions for discussion\n\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))))
    return cells


# ---- writing ----------------------------------------------------------------------------------------------------


def to_notebook(cells: Sequence[Cell]) -> bytes:
    """An .ipynb file (nbformat 4) of ``cells``."""
    nb = new_notebook(cells=[new_code_cell(c.text) if c.kind == "code" else new_markdown_cell(c.text) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return (nbformat.writes(nb) + "\n").encode("utf-8")


def to_script(cells: Sequence[Cell]) -> str:
    """The same code as one Python file: the text cells as comments."""
    parts = []
    for c in cells:
        if c.kind == "markdown":
            parts.append("\n".join(("# " + line).rstrip() for line in c.text.splitlines()))
        else:
            parts.append(c.text)
    return "\n\n\n".join(parts) + "\n"
