"""cnnlab.files: a file is replaced whole or not at all; a new folder is never shared."""

import pytest
import torch

from cnnlab.files import atomic_file, atomic_write_bytes, atomic_write_text, unique_folder


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "status.json"
    atomic_write_text(path, "first\n")
    atomic_write_bytes(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    with atomic_file(tmp_path / "best.pt") as f:
        torch.save({"w": torch.arange(3)}, f)
    assert torch.equal(torch.load(tmp_path / "best.pt", weights_only=True)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "status.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "meta.json"
    atomic_write_text(path, "kept")
    with pytest.raises(RuntimeError, match="disk"), atomic_file(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("disk gone")
    assert path.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_unique_folder_never_reuses_a_name(tmp_path, monkeypatch):
    from cnnlab import files

    suffixes = iter(["ab12", "ab12", "cd34"])  # the second try collides with the first folder
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(suffixes))
    first = unique_folder(tmp_path / "runs", "20261123-142501-lenet")
    second = unique_folder(tmp_path / "runs", "20261123-142501-lenet")
    assert (first.name, second.name) == ("20261123-142501-lenet-ab12", "20261123-142501-lenet-cd34")
    assert first.is_dir() and second.is_dir()
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: "ab12")
    with pytest.raises(FileExistsError, match="100 names were taken"):
        unique_folder(tmp_path / "runs", "20261123-142501-lenet")
