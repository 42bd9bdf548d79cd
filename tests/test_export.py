"""From a run or a lesson to code (issue 27): notebooks and scripts that train without cnnlab, ONNX and
TorchScript files that give cnnlab's logits, and exports that fail whole.

Two small runs are trained once per module (LeNet on the digits, one epoch; a CIFAR ResNet on a few
shapes); each test copies them into its own cache. The notebook of the LeNet run is executed by nbclient in
a fresh kernel, offline, where cnnlab cannot be imported.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from apphelpers import copy_runs, train_run, using_cache
from cnnlab import export
from cnnlab.cli import main
from cnnlab.data import InputPipeline
from cnnlab.data.pipeline import AUGMENT_PRESETS, measure_stats, model_space_stats
from cnnlab.export import ExportError
from cnnlab.export.datacode import add_data_code, add_pipeline_code, load_call
from cnnlab.export.modelcode import new_closure
from cnnlab.lessons import builtin_lessons
from cnnlab.runs import load_model, load_run
from cnnlab.train import TrainConfig, load_data
from test_data_datasets import fake_mnist

LENET = TrainConfig(model="lenet", dataset="digits", epochs=1, seed=3, device="cpu")
RESNET = TrainConfig(model="cifar_resnet", dataset="shapes", epochs=1, batch_size=32, seed=1, device="cpu",
                     data_options={"n_train": 160, "n_val": 64})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The module's runs, trained once: (cache, {"lenet": run id, "resnet": run id})."""
    with using_cache(tmp_path_factory.mktemp("export-cache")) as cache:
        ids = {}
        for key, config in (("lenet", LENET), ("resnet", RESNET)):
            result = train_run(config)
            assert result.status == "finished", result.message
            ids[key] = result.run_id
    return cache, ids


@pytest.fixture
def runs_here(trained):
    """The trained runs copied into this test's own cache (free to damage): {"lenet": id, "resnet": id}."""
    copy_runs(trained[0])
    return trained[1]


def code_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def cnnlab_imports(sources: list[str]) -> list[str]:
    found = []
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [n for n in names if n.split(".")[0] == "cnnlab"]
    return found


# ---- a run's notebook ------------------------------------------------------------------------------------------


def test_run_notebook_trains_to_the_runs_accuracy_in_a_fresh_kernel(runs_here, tmp_path, monkeypatch):
    run = load_run(runs_here["lenet"])
    nb = nbformat.reads(export.run_notebook_bytes(run.run_id).decode(), as_version=4)
    assert cnnlab_imports(code_cells(nb)) == []
    assert nb.cells[0].cell_type == "markdown" and run.run_id in nb.cells[0].source
    # the kernel cannot import cnnlab (nor find it on a path), and has no network
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline, as Jupyter does (tests set Agg)
    guard = nbformat.v4.new_code_cell("import sys\nsys.modules['cnnlab'] = None  # any import of cnnlab fails")
    report = nbformat.v4.new_code_cell("import json\nprint('RESULT', json.dumps(history))")
    nb.cells = [guard, *nb.cells, report]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    history = json.loads(printed.split("RESULT", 1)[1])
    assert len(history) == 1
    best = max(h["val_top1"] for h in history)
    assert abs(best - run.best_val_top1) <= 0.03, (best, run.best_val_top1)
    plots = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert plots, "the curves were not drawn"
    assert list(tmp_path.iterdir()) == [], "the notebook wrote files"


def test_run_script_is_the_notebooks_code(runs_here):
    nb = nbformat.reads(export.run_notebook_bytes(runs_here["resnet"]).decode(), as_version=4)
    script = export.run_script_text(runs_here["resnet"])
    for source in code_cells(nb):
        assert source in script
    compile(script, "exported.py", "exec")
    assert "class CifarResNet(nn.Module):" in script and "def generate_shapes(" in script
    assert "model = CifarResNet(num_classes=8, in_channels=3)" in script
    assert cnnlab_imports([script]) == []


# ---- the written-out data and pipeline are cnnlab's ---------------------------------------------------------------

DATA_CONFIGS = [
    TrainConfig(model="lenet", dataset="digits", subset=300, seed=3, val_fraction=0.25),
    TrainConfig(model="lenet", dataset="shapes", seed=2, subset=80,
                data_options={"channels": 1, "classes": ["ring", "heart", "crescent"], "n_train": 200, "n_val": 50}),
    TrainConfig(model="cifar_resnet", dataset="shapes", seed=4, val_split="test", subset=64,
                data_options={"n_train": 120, "n_val": 40, "n_test": 30, "scale": [0.1, 0.2], "lines": 3,
                              "distractors": 2, "image_size": 24}),
]


def written_namespace(closure, data_root: str = "data") -> dict:
    namespace = {"__name__": "exported", "device": torch.device("cpu"), "DATA_ROOT": data_root}
    exec(closure.code.text(), namespace)
    return namespace


def assert_cnnlabs_data(config: TrainConfig, data_root: str = "data") -> dict:
    """The written data code loads what cnnlab loads for ``config``: images, labels, classes, normalisation."""
    closure = new_closure()
    add_data_code(closure, [config])
    add_pipeline_code(closure, [config])
    namespace = written_namespace(closure, data_root)
    exec(load_call(config), namespace)
    bundle = load_data(config, download=False)
    for mine, theirs in (("train_x", bundle.train.images), ("train_y", bundle.train.labels),
                         ("val_x", bundle.val.images), ("val_y", bundle.val.labels)):
        assert torch.equal(namespace[mine], theirs), mine
    for channels in (1, 3):  # a model with the data's channels, and one with the other count
        expected = model_space_stats(bundle.train.images, bundle.info.mean, bundle.info.std, channels)
        assert namespace["model_stats"](namespace["train_x"], namespace["data_stats"], channels) == expected
    return namespace


@pytest.mark.parametrize("config", DATA_CONFIGS, ids=["digits-subset", "shapes-classes-grey", "shapes-test-split"])
def test_the_written_data_code_gives_cnnlabs_images(config):
    namespace = assert_cnnlabs_data(config)
    assert namespace["classes"] == list(load_data(config).info.classes)


def test_the_written_data_code_reads_torchvisions_files_as_cnnlab_does(tmp_path):
    fake_mnist(tmp_path, n_train=60, n_test=20)
    for split in ("holdout", "test"):
        config = TrainConfig(model="lenet5", dataset="mnist", subset=30, seed=6, data_root=str(tmp_path),
                             val_split=split, data_options={"channels": 3, "image_size": 32})
        namespace = assert_cnnlabs_data(config, str(tmp_path))
        assert namespace["train_x"].shape[1:] == (3, 32, 32) and len(namespace["train_y"]) == 30


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_the_written_pipeline_gives_cnnlabs_batches(preset):
    closure = new_closure()
    add_pipeline_code(closure, [TrainConfig(augment=preset)])
    namespace = written_namespace(closure)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8))
    for data, model_shape, resize in (((3, 32, 32), (1, 28, 28), 1.0), ((3, 32, 32), (3, 24, 24), 256 / 224)):
        x = images[:, :data[0]]
        mean, std = (0.4,) * model_shape[0], (0.25,) * model_shape[0]
        theirs = InputPipeline(data, model_shape, mean, std, torch.device("cpu"), augment=preset, eval_resize=resize)
        train_batch, eval_batch = namespace["make_pipeline"](model_shape[1:], preset, mean, std, model_shape[0],
                                                             eval_cut="center" if preset == "crop28" else "resize",
                                                             eval_resize=resize)
        assert torch.equal(train_batch(x, torch.Generator().manual_seed(7)),
                           theirs.train_batch(x, torch.Generator().manual_seed(7)))
        assert torch.equal(eval_batch(x), theirs.eval_batch(x))
    for channels, x in ((3, images[:, :1]), (1, images), (3, images)):  # repeated, luma, as they are
        assert namespace["normalisation_stats"](x, channels) == measure_stats(x, channels)


# ---- ONNX and TorchScript -----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")  # still how a TorchScript file is read
@pytest.mark.parametrize("key", ["lenet", "resnet"])
def test_onnx_and_torchscript_give_cnnlabs_logits(runs_here, key, tmp_path):
    import onnx
    import onnxruntime

    run_id = runs_here[key]
    run = load_run(run_id)
    model = load_model(run_id)
    x = torch.randn(5, *run.meta["input_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
    paths = {"onnx": tmp_path / "model.onnx", "torchscript": tmp_path / "model.pt"}
    assert export.write_exports(run_id, paths) == list(paths.values())

    session = onnxruntime.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert np.abs(logits - expected.numpy()).max() < 1e-4
    props = {p.key: p.value for p in onnx.load(str(paths["onnx"])).metadata_props}
    assert json.loads(props["classes"]) == run.meta["classes"]
    assert json.loads(props["input_shape"]) == run.meta["input_shape"]
    assert json.loads(props["mean"]) == run.meta["model_mean"] and json.loads(props["std"]) == run.meta["model_std"]

    extra = {export.EXTRA_FILE: ""}
    scripted = torch.jit.load(str(paths["torchscript"]), _extra_files=extra)
    with torch.no_grad():
        assert (scripted(x) - expected).abs().max() < 1e-4
    meta = json.loads(extra[export.EXTRA_FILE])
    assert meta["classes"] == run.meta["classes"] and meta["mean"] == run.meta["model_mean"]
    assert meta["run_id"] == run_id and "(x - mean) / std" in meta["preprocessing"]


# ---- lessons -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lesson", builtin_lessons(), ids=lambda lesson: lesson.name)
def test_every_lesson_exports_as_a_notebook(lesson):
    nb = nbformat.reads(export.lesson_notebook_bytes(lesson).decode(), as_version=4)
    texts = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert lesson.question in texts[0] and lesson.title in texts[0]
    for i, arm in enumerate(lesson.arms, 1):
        assert any(t.startswith(f"## {i}. {arm.name}") for t in texts), arm.name
    assert texts[-1].startswith("## Questions for discussion") and lesson.question in texts[-1]
    assert lesson.discuss and all(q in texts[-1] for q in lesson.discuss)  # the lesson's own questions
    sources = code_cells(nb)
    assert cnnlab_imports(sources) == []
    for source in sources:
        compile(source, lesson.name, "exec")
    assert "comparison_table(results)" in sources


def test_a_lesson_script_runs_without_cnnlab(tmp_path):
    # the lesson whose second arm starts from the first's weights, shortened for the test with overrides
    script = export.lesson_script_text("reuse-vs-scratch", overrides={"epochs": 1, "max_steps": 2,
                                                                      "data_options": {"n_train": 300, "n_val": 60}})
    path = tmp_path / "lesson.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['cnnlab'] = None; "
                           f"exec(compile(open({str(path)!r}).read(), 'lesson.py', 'exec'))"],
                          cwd=tmp_path, env={**env, "MPLBACKEND": "Agg"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "New task from the pretrained network" in done.stdout and "best val top-1" in done.stdout
    assert "states['source'] = copy.deepcopy(model.state_dict())" in script
    assert "start = states['source']" in script


# ---- all or nothing, one clear message ---------------------------------------------------------------------------


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_the_command_writes_every_format(runs_here, tmp_path, capsys):
    files = [tmp_path / n for n in ("run.ipynb", "run.py", "run.onnx", "run.pt")]
    code = main(["export", runs_here["lenet"][:-5], "--notebook", str(files[0]), "--script", str(files[1]),
                 "--onnx", str(files[2]), "--torchscript", str(files[3])])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {f}" for f in files]
    assert all(f.stat().st_size > 0 and f.stat().st_mode & 0o044 for f in files)
    assert main(["export", "lenet-vs-lenetv2", "--notebook", str(tmp_path / "lesson.ipynb")]) == 0


def test_a_damaged_run_gives_one_message_and_writes_nothing(runs_here, tmp_path, capsys):
    folder = load_run(runs_here["lenet"]).path
    (folder / "meta.json").write_text("{ not json")
    out = tmp_path / "x.ipynb"
    assert main(["export", runs_here["lenet"], "--notebook", str(out)]) == 2
    assert "meta.json" in one_line(capsys)
    assert main(["export", runs_here["lenet"], "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "meta.json" in one_line(capsys)
    shutil.copy(load_run(runs_here["resnet"]).path / "meta.json", folder / "meta.json")
    (folder / "config.json").write_text("[]")
    assert main(["export", runs_here["lenet"], "--script", str(tmp_path / "x.py")]) == 2
    assert "config.json" in one_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_run_its_settings_cannot_rebuild_is_refused_with_the_way_out(runs_here, tmp_path):
    folder = load_run(runs_here["lenet"]).path
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "init_from": runs_here["resnet"]}))
    with pytest.raises(ExportError, match="started from run .*export the lesson"):
        export.run_notebook_bytes(runs_here["lenet"])
    (folder / "config.json").write_text(json.dumps({**config, "dataset": "folder"}))
    with pytest.raises(ExportError, match="folder of image files.*--onnx"):
        export.run_notebook_bytes(runs_here["lenet"])
    assert export.onnx_bytes(runs_here["lenet"])  # the trained model still exports


def test_a_model_that_cannot_be_exported_writes_nothing(tmp_path, monkeypatch):
    from torch import nn

    from cnnlab.models import _registry

    class Odd(nn.Module):
        """A layer from outside torch and cnnlab whose output depends on its input's values."""

        def forward(self, x):
            return x.flatten(1) if float(x.sum()) > 0 else -x.flatten(1)

    def odd(num_classes=10, in_channels=1):
        return nn.Sequential(Odd(), nn.Linear(in_channels * 28 * 28, num_classes))

    spec = _registry.ModelSpec("odd_export_test", "Odd", "test", 2026, "", "", (1, 28, 28), 10, builder=odd)
    monkeypatch.setitem(_registry._REGISTRY, spec.name, spec)
    result = train_run(TrainConfig(model=spec.name, dataset="digits", epochs=1, max_steps=2, device="cpu"))
    paths = {"notebook": tmp_path / "odd.ipynb", "onnx": tmp_path / "odd.onnx"}
    with pytest.raises(ExportError, match="cannot be written out as plain PyTorch"):
        export.write_exports(result.run_id, paths)
    # TorchScript traces it (one branch), ONNX refuses the data-dependent branch: neither file is written
    with pytest.raises(ExportError, match="cannot be exported to ONNX"):
        export.write_exports(result.run_id, {"torchscript": tmp_path / "odd.pt", "onnx": tmp_path / "odd.onnx"})
    assert list(tmp_path.iterdir()) == []


def test_paths_and_targets_that_cannot_be_written(runs_here, tmp_path, capsys):
    run_id = runs_here["lenet"]
    cases = [
        (["--notebook", str(tmp_path / "missing" / "x.ipynb")], "does not exist"),
        (["--notebook", str(tmp_path)], "is a folder"),
        (["--notebook", str(tmp_path / "a"), "--script", str(tmp_path / "a")], "the same file"),
        ([], "say what to export"),
    ]
    for argv, message in cases:
        assert main(["export", run_id, *argv]) == 2
        assert message in one_line(capsys)
    assert main(["export", "no-such-thing", "--notebook", str(tmp_path / "x.ipynb")]) == 2
    assert "no run 'no-such-thing'" in (line := one_line(capsys)) and "Or name a lesson: lenet-vs-lenetv2" in line
    assert main(["export", "optimisers", "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "no single trained model" in one_line(capsys)
    assert main(["export", "optimisers", "--notebook", str(tmp_path / "x.ipynb"), "--set", "epochs=0"]) == 2
    assert "epochs" in one_line(capsys)
    assert list(tmp_path.iterdir()) == []
