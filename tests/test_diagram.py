"""Architecture diagrams: DOT for every zoo model, and graphs that match the module structure."""

from __future__ import annotations

import collections
import re

import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.diagram import model_graph, node_count, to_svg
from cnnlab.errors import ConfigError, InputSizeError, UnknownModelError
from cnnlab.models import create, list_models


def parse(dot: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Node labels by id, and (tail, head, shape label) edges."""
    labels = dict(re.findall(r'^\s*(\d+) \[label="([^"]*)"', dot, re.MULTILINE))
    edges = re.findall(r'^\s*(\d+) -> (\d+) \[label=" ([^"]*)"\]', dot, re.MULTILINE)
    return labels, edges


def count_modules(name: str, kind: type[nn.Module]) -> int:
    with torch.device("meta"):
        return sum(isinstance(m, kind) for m in create(name).modules())


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_has_a_diagram(name):
    dot = model_graph(name, depth=1)
    labels, edges = parse(dot)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert node_count(dot) == len(labels) >= 3  # input, at least one layer, output
    assert edges and all(shape for _, _, shape in edges)
    assert any(label.startswith("input") for label in labels.values())
    assert any(label.startswith("output") for label in labels.values())


@pytest.mark.parametrize("name", ["resnet18", "d2l_resnet18"])
def test_resnet18_graph_matches_its_modules(name):
    labels, edges = parse(model_graph(name, depth=6))
    convs = [v for v, label in labels.items() if " conv, " in label]
    assert len(convs) == count_modules(name, nn.Conv2d) == 20
    indegree = collections.Counter(head for _, head, _ in edges)
    adds = [v for v, label in labels.items() if label == "add"]
    assert len(adds) == 8  # one residual addition per basic block (4 stages x 2)
    assert all(indegree[v] == 2 for v in adds)  # main path + shortcut
    # every edge joins two drawn nodes, and the whole graph is connected from the input
    assert {t for t, _, _ in edges} | {h for _, h, _ in edges} == set(labels)


@pytest.mark.parametrize("name", ["googlenet", "d2l_googlenet"])
def test_googlenet_graph_matches_its_modules(name):
    labels, edges = parse(model_graph(name, depth=6))
    convs = [v for v, label in labels.items() if " conv, " in label]
    assert len(convs) == count_modules(name, nn.Conv2d)
    indegree = collections.Counter(head for _, head, _ in edges)
    cats = [v for v, label in labels.items() if label == "cat"]
    assert len(cats) == 9  # nine Inception blocks, 3a to 5b
    assert all(indegree[v] == 4 for v in cats)  # four branches meet in each


def test_densenet_concatenations_are_edges():
    labels, edges = parse(model_graph("d2l_densenet", depth=6))
    indegree = collections.Counter(head for _, head, _ in edges)
    cats = [v for v, label in labels.items() if label == "cat"]
    assert cats and all(indegree[v] == 2 for v in cats)


def test_depth_collapses_blocks_and_edges_carry_shapes():
    shallow, deep = model_graph("resnet18", depth=1), model_graph("resnet18", depth=6)
    assert node_count(shallow) < node_count(model_graph("resnet18", depth=2)) < node_count(deep)
    labels, edges = parse(model_graph("resnet18", depth=2))
    assert sum(label.endswith(": ResidualBlock") for label in labels.values()) == 8
    assert "subgraph cluster_" in model_graph("resnet18", depth=2)
    assert edges[0][2] == "3x224x224" and "64x56x56" in {s for _, _, s in edges}
    # another input size changes the shapes on the edges
    _, edges = parse(model_graph("resnet18_adaptive", "3x64x64", depth=1))
    assert edges[0][2] == "3x64x64"


def test_depth_and_input_are_bounded():
    for bad in (-1, 7, 2.5, "x"):
        with pytest.raises(ConfigError, match="depth"):
            model_graph("lenet", depth=bad)
    with pytest.raises(InputSizeError, match="too small"):
        model_graph("lenet", "1x4x4")
    with pytest.raises(UnknownModelError):
        model_graph("no_such_model")


def test_a_module_is_not_modified():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    dot = model_graph(net, "3x8x8", depth=1)
    assert "4x6x6" in dot and next(net.parameters()).device.type == "cpu"


def test_cli_writes_dot_into_a_missing_folder(tmp_path, capsys):
    out = tmp_path / "new" / "folder" / "resnet18.dot"
    assert main(["graph", "resnet18", "--depth", "1", "--out", str(out)]) == 0
    assert out.read_text().startswith('digraph "resnet18"')
    assert main(["graph", "lenet", "--depth", "1"]) == 0
    assert capsys.readouterr().out.count("digraph") == 1  # stdout: the lenet DOT only


def test_cli_errors_are_one_line(capsys):
    assert main(["graph", "lenet", "--depth", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: diagram depth") and err.count("\n") == 1


def test_svg_without_dot_binary_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("cnnlab.diagram.shutil.which", lambda _name: None)
    with pytest.raises(ConfigError, match=r"\.dot.*apt-get install graphviz"):
        to_svg("digraph {}")
    out = tmp_path / "sub" / "lenet.svg"
    assert main(["graph", "lenet", "--out", str(out)]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err and not out.exists()


def test_architectures_page_draws_the_diagram():
    from apphelpers import open_view

    at = open_view()
    at.session_state["arch-tab"] = "Diagram"  # drawn only when its tab is open
    at.run()
    charts = at.get("graphviz_chart")
    assert charts and "digraph" in charts[0].proto.spec
    at.slider(key="diagram-depth").set_value(1).run()
    assert not at.exception and not at.error
    assert at.get("graphviz_chart")


def test_layers_are_named_as_a_lecture_names_them():
    labels, _ = parse(model_graph("lenet", depth=2))
    shown = set(labels.values())
    assert {"5x5 conv, 6\\nC1", "2x2 avg pool, /2\\nS2", "fc, 10\\nF7", "tanh\\nactivation"} <= shown
    labels, _ = parse(model_graph("resnet18", depth=6))
    assert "7x7 conv, 64, /2\\nconv1.0" in labels.values() and "3x3 max pool, /2\\nconv1.3" in labels.values()
    assert any(label.startswith("3x3 conv, 128, /2\\n") for label in labels.values())
