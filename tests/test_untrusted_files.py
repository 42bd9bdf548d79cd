"""Files on disk are untrusted: a pickle that runs code, planted wherever cnnlab loads from, never
runs, whatever the entry point, and the user gets one line saying what was refused.

The "payload" of every planted file creates a marker file when unpickled by a plain unpickler;
the marker must never appear. Each planted file is also checked to really be dangerous: loading
it the unsafe way creates the marker (so a test cannot pass because the bait was harmless).
"""

from __future__ import annotations

import io
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.errors import CnnlabError, DataError, UnsafeFileError


class Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "code in a planted file ran"


def plant_torch(path: Path, marker: Path, *, valid_state: dict | None = None) -> Path:
    """A ``torch.save`` file: a state dict with one booby-trapped entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(valid_state or {"features.0.weight": torch.zeros(2, 2)})
    state["booby_trap"] = Payload(marker)
    torch.save(state, path)
    return path


def assert_bait_is_live(path: Path, marker: Path) -> None:
    """Loading the planted file the unsafe way does run its code."""
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and len(text) < 600, text
    assert "weights_only=False" not in text and "Traceback" not in text
    return text


# --------------------------------------------------------------------------------------
# The loader itself
# --------------------------------------------------------------------------------------


def test_safeload_refuses_code_empty_truncated_and_devices(tmp_path, marker):
    from cnnlab.safeload import load_plain_pickle, load_state_dict_file, load_torch_file

    evil = plant_torch(tmp_path / "evil.pt", marker)
    assert_bait_is_live(evil, marker)
    with pytest.raises(UnsafeFileError) as e:
        load_torch_file(evil, what="the weights file")
    assert "refused" in one_line(e.value)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(UnsafeFileError, match="empty"):
        load_torch_file(empty)

    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(4.0)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UnsafeFileError, match="truncated"):
        load_torch_file(truncated)
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        load_torch_file("/dev/zero")
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        load_torch_file(tmp_path)

    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(UnsafeFileError, match="state_dict"):
        load_state_dict_file(tmp_path / "list.pt")
    assert torch.equal(load_state_dict_file(good)["w"], torch.arange(4.0))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"data": Payload(marker)}, f)
    with pytest.raises(UnsafeFileError) as e:
        load_plain_pickle(tmp_path / "evil.pkl")
    assert "refused" in one_line(e.value)
    with open(tmp_path / "ok.pkl", "wb") as f:
        pickle.dump({"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2]}, f)
    assert load_plain_pickle(tmp_path / "ok.pkl")["data"].shape == (2, 3)


# --------------------------------------------------------------------------------------
# The torch hub cache: pretrained ImageNet weights
# --------------------------------------------------------------------------------------


@pytest.fixture
def planted_vgg16(marker):
    from cnnlab.models.pretrained import weights_path

    path = plant_torch(weights_path("vgg16"), marker)
    assert_bait_is_live(path, marker)
    return path


def test_pretrained_loaders_refuse_a_planted_weights_file(planted_vgg16, marker):
    from cnnlab.models import create
    from cnnlab.models.pretrained import WeightsUnavailableError, load_pretrained, transfer_model
    from cnnlab.sources import load_source

    for call in (lambda: load_pretrained("vgg16"),
                 lambda: load_source("pretrained:vgg16"),
                 lambda: transfer_model("vgg16", num_classes=3),
                 lambda: create("vgg16_transfer", num_classes=3, pretrained=True)):
        with pytest.raises(WeightsUnavailableError) as e:
            call()
        text = one_line(e.value)
        assert str(planted_vgg16) in text and "refused" in text


@pytest.mark.parametrize("command", [
    ["kernels", "pretrained:vgg16"],
    ["activations", "pretrained:vgg16", "photo:chelsea"],
    ["cam", "pretrained:vgg16", "photo:chelsea"],
])
def test_cli_refuses_a_planted_weights_file(planted_vgg16, marker, tmp_path, command, capsys):
    from cnnlab.cli import main

    code = main([*command, "--out", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "refused" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "out.png").exists()


def test_gradio_demo_refuses_a_planted_weights_file(planted_vgg16, marker):
    gradio_demo = pytest.importorskip("app.gradio_demo")
    import gradio as gr
    from cnnlab.data.images import load_bundled_photo

    buf = io.BytesIO()
    load_bundled_photo("chelsea").save(buf, format="PNG")
    predictor = gradio_demo.Predictor()
    # Whatever the route the demo takes to its model, loading it must fail with a message.
    with pytest.raises((gr.Error, CnnlabError)) as e:
        predictor.source("pretrained:vgg16")
    assert "refused" in str(e.value)


def test_app_pages_refuse_a_planted_weights_file(planted_vgg16, marker):
    from cnnlab.models.pretrained import weights_status

    # A present file is offered (it is a file); loading it is what must be safe.
    assert weights_status("vgg16")[0] == "present"
    from apphelpers import open_view

    for view in ("inside", "predict"):
        at = open_view(view)
        at.radio(key=f"{view}-kind").set_value("pretrained").run()
        at.selectbox(key=f"{view}-pre").set_value("vgg16").run()
        assert not at.exception, at.exception
        assert any("refused" in e.value for e in at.error), [e.value for e in at.error]


# --------------------------------------------------------------------------------------
# Run checkpoints, the transfer stand-in cache, dataset caches
# --------------------------------------------------------------------------------------


def _fake_run(root: Path, marker: Path) -> str:
    from cnnlab.models import create
    from cnnlab.runs import create_run

    writer = create_run({"model": "lenet", "dataset": "digits"},
                        {"model": "lenet", "dataset": "digits", "model_kwargs": {"num_classes": 10},
                         "input_shape": [1, 28, 28], "classes": [str(i) for i in range(10)],
                         "mean": [0.5], "std": [0.5]})
    writer.set_status("finished", "done")
    plant_torch(writer.path / "best.pt", marker, valid_state=create("lenet", num_classes=10).state_dict())
    return writer.run_id


def test_run_checkpoint_is_refused_everywhere(marker, capsys):
    from cnnlab.cli import main
    from cnnlab.paths import runs_dir
    from cnnlab.runs import load_model
    from cnnlab.sources import load_source

    run_id = _fake_run(runs_dir(), marker)
    assert_bait_is_live(runs_dir() / run_id / "best.pt", marker)
    for call in (lambda: load_model(run_id), lambda: load_source(f"run:{run_id}")):
        with pytest.raises(CnnlabError) as e:
            call()
        assert "refused" in one_line(e.value)
    assert main(["eval", run_id]) != 0
    err = capsys.readouterr().err.strip()
    assert "refused" in err and "Traceback" not in err


def test_a_checkpoint_of_random_bytes_is_not_a_checkpoint(tmp_path, marker):
    """Bytes torch.save never writes are said to be no checkpoint, not code that was refused."""
    from cnnlab.paths import runs_dir
    from cnnlab.runs import load_model
    from cnnlab.safeload import load_torch_file

    rng = np.random.default_rng(0)
    noise = bytes([0x01]) + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()  # no zip, pickle or tar start
    (tmp_path / "noise.pt").write_bytes(noise)
    (tmp_path / "text.pt").write_bytes(b"these are my notes, not weights\n")
    for name in ("noise.pt", "text.pt"):
        with pytest.raises(UnsafeFileError) as e:
            load_torch_file(tmp_path / name, what="the weights file")
        text = one_line(e.value)
        assert f"{tmp_path / name} is not a checkpoint (a PyTorch weights file)" in text and "code" not in text
    run_id = _fake_run(runs_dir(), marker)
    (runs_dir() / run_id / "best.pt").write_bytes(noise)
    with pytest.raises(CnnlabError) as e:
        load_model(run_id)
    text = one_line(e.value)
    assert "is not a checkpoint (a PyTorch weights file)" in text and "code" not in text


def test_standin_cache_is_never_trusted(marker):
    from cnnlab.transfer import StandinConfig, _standin_path, pretrained_standin

    cfg = StandinConfig()
    path = plant_torch(_standin_path(cfg), marker)
    cancel = threading.Event()
    cancel.set()  # the planted file must be discarded; rebuilding it is then cancelled at once
    with pytest.raises(CnnlabError):
        pretrained_standin(cfg, cancel=cancel)
    assert not path.exists()


def test_standin_cache_with_foreign_layers_is_rebuilt(marker):
    from cnnlab.transfer import StandinConfig, _standin_path, pretrained_standin

    cfg = StandinConfig()
    path = _standin_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fc3.weight": torch.zeros(2, 2)}, path)  # plain tensors, wrong model
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CnnlabError):
        pretrained_standin(cfg, cancel=cancel)
    assert not path.exists()


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_dataset_cache_is_never_trusted(tmp_path, marker):
    from cnnlab.data import load_dataset
    from cnnlab.paths import datasets_cache_dir

    folder = _image_folder(tmp_path / "pets")
    first = load_dataset("folder", root=folder, image_size=16, progress=False)
    cached = list(datasets_cache_dir().glob("*.pt"))
    assert len(cached) == 1
    plant_torch(cached[0], marker)
    again = load_dataset("folder", root=folder, image_size=16, progress=False)
    assert torch.equal(first.train.images, again.train.images)

    # A well-formed cache of the wrong shape (plain tensors) is not used either.
    torch.save({"train_images": torch.zeros(3, 3, 5, 5, dtype=torch.uint8), "train_labels": torch.tensor([9, 9, 9]),
                "val_images": torch.zeros(0, 3, 16, 16, dtype=torch.uint8),
                "val_labels": torch.zeros(0, dtype=torch.int64)}, cached[0])
    third = load_dataset("folder", root=folder, image_size=16, progress=False)
    assert torch.equal(first.train.images, third.train.images)


def test_cifar_pickles_never_run_code(tmp_path, marker):
    from cnnlab.data import load_dataset

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    bundle = load_dataset("cifar10", root=tmp_path / "data", download=False)
    assert len(bundle.train) + len(bundle.val) == 20

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": Payload(marker), "labels": [0]}, f)
    with open(folder / "data_batch_3", "rb") as f:  # the bait is live for a plain unpickler
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", root=tmp_path / "data", download=False)
    text = one_line(e.value)
    assert "data_batch_3" in text and "refused" in text


# --------------------------------------------------------------------------------------
# CNNLAB_OFFLINE=1: no socket, nothing created outside the cache and data folders
# --------------------------------------------------------------------------------------


@pytest.fixture
def no_sockets(monkeypatch):
    import socket

    attempts = []

    def refuse(self, *args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"a socket was opened while CNNLAB_OFFLINE=1: {args}")

    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert attempts == []


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "caltech101"])
def test_offline_datasets_open_no_socket_and_create_nothing(name, tmp_path, no_sockets):
    from cnnlab.data import dataset_status, load_dataset

    root = tmp_path / "nonexistent" / "x"
    with pytest.raises(DataError) as e:
        load_dataset(name, root=root, download=True)
    assert "downloads are disabled" in str(e.value) and "download failed" not in str(e.value)
    assert not (tmp_path / "nonexistent").exists()
    assert dataset_status(name, root=root).state == "missing"


def test_offline_weights_open_no_socket(no_sockets, capsys):
    from cnnlab.cli import main
    from cnnlab.models.pretrained import WeightsUnavailableError, fetch_weights, load_pretrained, weights_status

    assert weights_status("alexnet")[0] == "missing"
    for call in (lambda: fetch_weights("alexnet"), lambda: load_pretrained("alexnet")):
        with pytest.raises(WeightsUnavailableError, match="downloads are disabled"):
            call()
    assert main(["fetch", "alexnet"]) != 0
    assert "downloads are disabled" in capsys.readouterr().err


def test_online_failed_download_leaves_no_folders(tmp_path, monkeypatch):
    """With the network allowed but failing, the folders the attempt made are removed again."""
    import torchvision.datasets

    from cnnlab.data import load_dataset

    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)

    def failing(root, download=True, **kwargs):
        Path(root, "MNIST", "raw").mkdir(parents=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", failing)
    root = tmp_path / "nonexistent" / "x"
    with pytest.raises(DataError, match="download failed"):
        load_dataset("mnist", root=root, download=True)
    assert not (tmp_path / "nonexistent").exists()
