"""The core's dependencies point one way (DESIGN.md): every cnnlab module sits in one layer of
:data:`LAYERS` and imports only from its own layer or those below (imports written inside functions
count too); no import cycle; no streamlit or gradio anywhere in cnnlab; no page imports another page;
an import inside a function says why it is there."""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cnnlab"

# The layers of cnnlab, lowest first: a module may import from its own layer and those below, never
# from above (DESIGN.md: data and models -> input pipeline -> train -> runs -> evaluate and sources ->
# jobs -> transfer and lessons -> cli and app). The lessons run transfer arms, so they sit above it.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["cnnlab", "cnnlab.i18n", "cnnlab.errors", "cnnlab.paths", "cnnlab.net", "cnnlab.locks", "cnnlab.files",
                     "cnnlab.safeload", "cnnlab.threads", "cnnlab.device", "cnnlab.events",
                     "cnnlab.fonts"]),
    ("models", ["cnnlab.models", "cnnlab.models.*"]),
    ("data and the input pipeline", ["cnnlab.data", "cnnlab.data.*"]),
    ("looking at a model", ["cnnlab.inspect", "cnnlab.diagram", "cnnlab.activations", "cnnlab.convolution",
                            "cnnlab.features"]),
    ("settings", ["cnnlab.config"]),
    ("train", ["cnnlab.distributed", "cnnlab.metering", "cnnlab.xray", "cnnlab.train"]),
    ("runs", ["cnnlab.tensorboard_log", "cnnlab.runs"]),
    ("evaluate and sources", ["cnnlab.evaluate", "cnnlab.sources", "cnnlab.mistakes"]),
    ("jobs", ["cnnlab.jobs"]),
    ("transfer", ["cnnlab.transfer"]),
    ("lessons", ["cnnlab.lessons", "cnnlab.lessons.*"]),
    # a run or a lesson as a notebook, a script, ONNX or TorchScript: reads run folders and lesson files
    ("exports", ["cnnlab.export", "cnnlab.export.*"]),
    ("command line", ["cnnlab.bench", "cnnlab.cli", "cnnlab.cli.*", "cnnlab.__main__"]),
]


def layer_of(module: str) -> int:
    found = [i for i, (_, patterns) in enumerate(LAYERS) if any(fnmatch(module, p) for p in patterns)]
    assert len(found) == 1, f"{module} must be in exactly one layer of LAYERS (found {len(found)}): place it there"
    return found[0]


def against_the_layers(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a layer above its own, as 'a (layer) -> b (layer)'."""
    wrong = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                wrong.append(f"{module} ({LAYERS[layer_of(module)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})")
    return wrong


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, source: str | None = None) -> set[str]:
    """Every module named by an import in ``path`` (module level or inside functions), absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    text = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(text, filename=str(path))):
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


def test_every_import_follows_the_layer_table():
    edges = graph()
    assert against_the_layers(edges) == []


def test_the_layer_check_catches_a_planted_wrong_way_import():
    # a model that imported the trainer (models are below train), and a device helper that imported
    # the process group (the foundations are below train): both are refused
    edges = graph()
    planted = {**edges, "cnnlab.models.lenet": edges["cnnlab.models.lenet"] | {"cnnlab.train"},
               "cnnlab.device": edges["cnnlab.device"] | {"cnnlab.distributed"}}
    assert against_the_layers(planted) == [
        "cnnlab.device (foundations) -> cnnlab.distributed (train)",
        "cnnlab.models.lenet (models) -> cnnlab.train (train)",
    ]
    # the same through the real parser: a planted file's import is an edge like the others
    assert "cnnlab.train" in imports_of_source("from ..train import fit\n", "cnnlab.models.planted")


def imports_of_source(source: str, name: str) -> set[str]:
    path = PACKAGE / (name.removeprefix("cnnlab.").replace(".", "/") + ".py")
    return imports_of(path, source)


def test_no_page_imports_another_page():
    views = {p.stem: p for p in (ROOT / "app" / "views").glob("*.py")}
    offenders = {name: sorted(t for t in imports_of(p) if t.startswith("app.views")) for name, p in views.items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def inner_imports(path: Path) -> list[tuple[int, str]]:
    """The imports written inside functions of ``path`` that give no reason (a comment on their line or
    the line above)."""
    lines = path.read_text().splitlines()
    found = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
                    if "#" not in here and not above.startswith("#"):
                        found.append((node.lineno, here.strip()))
    return found


def test_imports_inside_functions_say_why():
    # the habit is an import at the top of the file; one inside a function is kept for a reason it gives
    # (start-up time of the command line, a heavy optional library only one feature needs)
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "app").rglob("*.py")]
    unexplained = {str(p.relative_to(ROOT)): found for p in files if (found := inner_imports(p))}
    assert unexplained == {}


def test_cnnlab_never_imports_the_app_frameworks():
    offenders = {module_name(p): sorted(t for t in imports_of(p) if t.split(".")[0] in ("streamlit", "gradio"))
                 for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
