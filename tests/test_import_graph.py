"""The core's dependencies point one way (DESIGN.md): no import cycle among cnnlab modules, counting
imports written inside functions too, and no streamlit or gradio anywhere in cnnlab."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnnlab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module named by an import in ``path`` (module level or inside functions), absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import runs`
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in imports_of(path) if t in modules and t != name}
        # importing a submodule runs its packages' __init__ first; those edges are not choices
        edges[name] = {t for t in targets if not name.startswith(t + ".")}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_cnnlab_modules():
    edges = graph()
    assert len(edges) > 30  # the walk really found the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("lower, upper", [
    ("cnnlab.models._registry", "cnnlab.inspect"),
    ("cnnlab.train", "cnnlab.runs"),
    ("cnnlab.runs", "cnnlab.transfer"),
    ("cnnlab.runs", "cnnlab.jobs"),
    ("cnnlab.train", "cnnlab.jobs"),
    ("cnnlab.data.registry", "cnnlab.train"),
    ("cnnlab.transfer", "cnnlab.lessons.runner"),
    ("cnnlab.jobs", "cnnlab.lessons"),
])
def test_layers_point_one_way(lower, upper):
    edges = graph()
    seen, todo = set(), [lower]
    while todo:  # everything `lower` depends on, directly or not
        node = todo.pop()
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert upper not in seen, f"{lower} depends on {upper}"


def test_cnnlab_never_imports_the_app_frameworks():
    offenders = {module_name(p): sorted(t for t in imports_of(p) if t.split(".")[0] in ("streamlit", "gradio"))
                 for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
