"""The code stays easy to read (issue 23): no function in cnnlab/ or app/ over 120 lines, no block of
module-level statements in a page over 80 lines (a page is named functions, read top to bottom), and
the trainer under 800 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION, MAX_PAGE_BLOCK, MAX_TRAINER = 120, 80, 800


def long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path.name}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > limit]


def page_blocks(path: Path) -> list[tuple[int, int]]:
    """(first line, lines) of each run of consecutive module-level statements other than imports,
    functions and classes."""
    blocks: list[tuple[int, int]] = []
    start = end = None
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            if start is not None:
                blocks.append((start, end - start + 1))
            start = None
            continue
        start = node.lineno if start is None else start
        end = node.end_lineno
    if start is not None:
        blocks.append((start, end - start + 1))
    return blocks


def test_no_function_is_over_120_lines():
    files = [*(ROOT / "cnnlab").rglob("*.py"), *(ROOT / "app").rglob("*.py")]
    assert len(files) > 60
    assert [f"{p.parent.name}/{f}" for p in files for f in long_functions(p, MAX_FUNCTION)] == []


def test_no_page_runs_over_80_lines_of_module_level_statements():
    pages = sorted((ROOT / "app" / "views").glob("*.py"))
    assert len(pages) >= 9
    too_long = {p.name: [b for b in page_blocks(p) if b[1] > MAX_PAGE_BLOCK] for p in pages}
    assert {k: v for k, v in too_long.items() if v} == {}


def test_the_trainer_is_under_800_lines():
    assert len((ROOT / "cnnlab" / "train.py").read_text().splitlines()) < MAX_TRAINER


def test_the_checks_see_what_they_measure(tmp_path):
    # a planted long function and a planted long page block are found
    body = "\n".join(f"    x{i} = {i}" for i in range(130))
    (tmp_path / "f.py").write_text(f"def long():\n{body}\n")
    assert long_functions(tmp_path / "f.py", MAX_FUNCTION) == ["f.py:1 long (131 lines)"]
    (tmp_path / "page.py").write_text("import os\n" + "\n".join(f"y{i} = {i}" for i in range(90)) + "\ndef f():\n    pass\nz = 1\n")
    assert page_blocks(tmp_path / "page.py") == [(2, 90), (94, 1)]
