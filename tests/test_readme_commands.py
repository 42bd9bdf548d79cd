"""The README's table of the course's trainings: every command is one the CLI accepts.

Each row's command is parsed exactly as ``python -m cnnlab`` parses it
(``build_parser().parse_args``) and turned into a validated :class:`TrainConfig`
(``config_from_args``: known model, ranges, choices). Nothing is downloaded or trained.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cnnlab.cli import build_parser
from cnnlab.cli.train import config_from_args
from cnnlab.errors import ConfigError
from cnnlab.train import TrainConfig, prepare_model

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## The course's trainings, one command each"
PREFIX = "python -m cnnlab "
SEEDS = ("000", "001", "002", "003", "004")
# The README's placeholder for "the run the previous row made"; any id parses.
PLACEHOLDER = "RUN_ID_OF_THE_PREVIOUS_ROW"
DUMMY_RUN = "20260101-000000-mini_alexnet_v4-cifar100-abcd"


def section_text(readme: str) -> str:
    start = readme.index(SECTION)  # ValueError: the section is missing
    rest = readme[start + len(SECTION):]
    nxt = re.search(r"^## ", rest, flags=re.M)
    return rest[: nxt.start()] if nxt else rest


def table_rows(readme: str) -> list[tuple[str, str, str]]:
    """(seed, what, command) for each body row of the section's table."""
    rows = []
    for line in section_text(readme).splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "seed" or set("".join(cells)) <= set("-: "):
            continue  # header and separator
        assert len(cells) == 3, f"a row needs 3 cells (seed | what | command): {line}"
        command = re.fullmatch(r"`([^`]+)`", cells[2])
        assert command, f"the command cell must be one `code` span: {line}"
        rows.append((cells[0], cells[1], command.group(1)))
    return rows


def config_of(command: str) -> TrainConfig:
    """The TrainConfig that ``python -m cnnlab train ...`` would build, or an AssertionError."""
    assert command.startswith(PREFIX + "train "), f"not a `{PREFIX}train` command: {command}"
    argv = shlex.split(command[len(PREFIX):].replace(PLACEHOLDER, DUMMY_RUN))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: unknown option, bad value
        raise AssertionError(f"the CLI rejects: {command}") from e
    try:
        return config_from_args(args)
    except ConfigError as e:
        raise AssertionError(f"invalid settings ({e}): {command}") from e


ROWS = table_rows(README.read_text(encoding="utf-8"))


def test_the_table_has_every_seed_and_unique_commands():
    seeds = [seed for seed, _, _ in ROWS]
    assert set(seeds) <= set(SEEDS), f"unknown seed in the table: {sorted(set(seeds) - set(SEEDS))}"
    missing = [s for s in SEEDS if s not in seeds]
    assert not missing, f"no training for seed(s) {missing}"
    commands = [c for _, _, c in ROWS]
    dupes = sorted({c for c in commands if commands.count(c) > 1})
    assert not dupes, f"duplicate commands: {dupes}"
    assert all(what for _, what, _ in ROWS), "every row says what it trains"


@pytest.mark.parametrize("seed,what,command", ROWS, ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(ROWS)])
def test_every_command_builds_a_valid_config(seed, what, command):
    config = config_of(command)
    assert config.model and config.dataset


def test_init_from_placeholders_follow_the_run_they_start_from():
    """``--init-from RUN_ID_OF_THE_PREVIOUS_ROW`` reuses the row above: the same model."""
    used = False
    for i, (_, _, command) in enumerate(ROWS):
        if PLACEHOLDER not in command:
            continue
        used = True
        assert i > 0, "the first row cannot start from a previous row"
        this, previous = config_of(command), config_of(ROWS[i - 1][2])
        assert this.init_from == DUMMY_RUN
        assert previous.init_from is None and previous.model == this.model
        assert previous.dataset != this.dataset, "fine-tuning goes to another dataset"
    assert used, "seed 002's CIFAR-100 -> CIFAR-10 fine-tuning is shown with --init-from"


def test_lenet5_cifar10_rows_build_the_seeds_rgb_lenet5():
    """Seed 003's LeNet-5 on CIFAR-10 has 83,126 parameters (RGB input, 32x32)."""
    rows = [c for s, _, c in ROWS if s == "003" and "--model lenet5" in c and "--data cifar10" in c]
    assert len(rows) == 3  # SGD with momentum 0.5, momentum 0.9, Adam
    for command in rows:
        model, shape, _ = prepare_model(config_of(command), (3, 32, 32), 10)
        assert shape == (3, 32, 32)
        assert sum(p.numel() for p in model.parameters()) == 83_126


@pytest.mark.parametrize("command", [
    "python -m cnnlab train --model lenet5 --data mnist --epochs 5 --momentun 0.5",  # misspelled option
    "python -m cnnlab train --model lenet6 --data mnist",                            # unknown model
    "python -m cnnlab train --model lenet5 --data mnist --optimizer rmsprop",        # unknown choice
    "python -m cnnlab train --model lenet5 --data mnist --momentum 1.5",             # out of range
    "python -m cnnlab train --model lenet5 --data mnist --freeze features",          # needs a transfer model
    "python -m cnnlab trian --model lenet5",                                         # not a train command
])
def test_the_check_rejects_a_wrong_command(command):
    with pytest.raises(AssertionError):
        config_of(command)


def test_table_parsing_reads_rows_and_skips_the_header():
    text = (
        f"# x\n\n{SECTION}\n\nintro\n\n| seed | what it trains | command |\n| --- | --- | --- |\n"
        "| 001 | a | `python -m cnnlab train --model lenet` |\n\n## Next\n\n| 009 | b | `c` |\n"
    )
    assert table_rows(text) == [("001", "a", "python -m cnnlab train --model lenet")]
    with pytest.raises(ValueError):
        table_rows("# no such section\n")
