"""Every command of the README's "Command line" block, run as written (in order, in a fresh folder,
offline), with only what makes it tiny added: trainings stop after a few steps, benchmarks time one
second. RUN is the run the block's own `train` line made. A command that needs files this machine
does not have (CIFAR-10, the ImageNet weights) must end in one clear line, not a traceback. What the
commands write goes into out/, which git ignores."""

from __future__ import annotations

import re
import shlex
from pathlib import Path


from cnnlab.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {  # command prefix -> what is appended to make it tiny
    "train": ["--max-steps", "3", "--no-tensorboard"],
    "bench train": ["--seconds", "1"],
    "bench app": ["--seconds", "1", "--poll", "0.2"],
    "bench xray": ["--seconds", "0.5", "--rounds", "1"],
    "bench features": ["--repeat", "1", "--steps", "1"],
    "transfer": ["--epochs", "1"],
}
NEEDS_FILES = {  # offline here: these must refuse in one line, naming what is missing
    "fetch vgg16": "vgg16",
    "train --model mini_alexnet_v4 --data cifar10": "CIFAR-10",
}


def block_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Command line"):]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = []
    for line in block.splitlines():
        line = re.split(r"\s{2,}#", line)[0].strip()  # drop the trailing comment
        if line:
            lines.append(line)
    return lines


def test_the_block_is_what_this_test_runs():
    commands = block_commands()
    assert len(commands) >= 15 and commands[0].startswith("python -m cnnlab models")
    assert sum(c.startswith("python -m cnnlab ") for c in commands) == len(commands) - 1  # and tensorboard


def test_every_command_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_id = None
    for line in block_commands():
        if line.startswith("tensorboard "):
            import tensorboard  # noqa: F401  (installed by requirements.txt; the log format is tested elsewhere)

            continue
        argv = shlex.split(line.removeprefix("python -m cnnlab "))
        if "RUN" in argv:
            assert run_id, f"{line}: no run yet (the block's train line comes first)"
            argv = [run_id if a == "RUN" else a for a in argv]
        key = " ".join(argv)
        argv += next((extra for prefix, extra in TINY.items() if key.startswith(prefix)), [])
        try:
            code = main(argv)
        except SystemExit as e:  # --help
            code = e.code or 0
        out = capsys.readouterr()
        missing = next((what for prefix, what in NEEDS_FILES.items() if key.startswith(prefix)), None)
        if missing:
            assert code == 2 and "Traceback" not in out.err and missing.lower() in out.err.lower(), (line, out.err)
            continue
        assert code == 0, (line, out.err[-800:])
        if argv[:1] == ["train"] and run_id is None:
            run_id = re.search(r"run id: (\S+)", out.out).group(1)
    out = tmp_path / "out"  # every picture and diagram goes into out/, which .gitignore covers
    assert (out / "resnet18.dot").is_file()
    assert (out / "kernels.png").is_file() and (out / "grid.png").is_file()
    assert (out / "cam.png").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "the examples write nothing else where they run"


def test_git_ignores_what_the_examples_write():
    ignored = (README.parent / ".gitignore").read_text().splitlines()
    assert "/out/" in ignored
