"""Architecture diagrams of zoo models as Graphviz DOT source.

:func:`model_graph` traces one forward pass with `torchview <https://github.com/mert-kurttutan/torchview>`_
on PyTorch's ``meta`` device (no memory, no arithmetic, so a VGG16 at 224x224 costs nothing) and
writes the graph it records as DOT:

* one node per layer, named as a lecture names it (``3x3 conv, 64, /2``, ``fc, 10``, ``2x2 max pool``;
  the module path under it; other modules as ``layer1.0: BasicBlock``) or per tensor operation
  (``add``, ``cat``, ``flatten``), so residual shortcuts, Inception branches and DenseNet concatenations show as
  edges meeting in an ``add`` or ``cat`` node;
* every edge carries the shape of the tensor it carries, without the batch dimension
  (``64x56x56``);
* ``depth`` says how many levels of nested modules are opened: at depth 1 a ResNet is its stem,
  its four stages and its head; deeper levels open each stage into blocks and each block into
  its layers, drawn inside dashed boxes named after the module they belong to.

The DOT source needs no system binary: ``st.graphviz_chart`` draws it in the browser. Turning it
into SVG here (:func:`to_svg`) needs Graphviz's ``dot`` program.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import torch
from torch import nn
from torchview import draw_graph
from torchview.computation_node import FunctionNode, ModuleNode, TensorNode

from .errors import CnnlabError, ConfigError, InputSizeError
from .i18n import _
from .inspect import _as_shape, _unwrap
from .models import create, get_spec
from .models._input_checks import pair
from .models._layers import FixedFlatten

__all__ = ["MAX_DEPTH", "model_graph", "node_count", "to_svg"]

MAX_DEPTH = 6  # deeper than any zoo model nests; bounds the work and the drawing
_SVG_TIMEOUT_S = 60

_COLORS = {"module": "darkseagreen1", "function": "aliceblue", "tensor": "lightyellow"}


def _check_depth(depth: Any) -> int:
    try:
        d = int(depth)
    except (TypeError, ValueError):
        raise ConfigError(_bad_depth(depth)) from None
    if d != depth or not 0 <= d <= MAX_DEPTH:
        raise ConfigError(_bad_depth(depth))
    return d


def _bad_depth(depth: Any) -> str:
    return _("diagram depth must be a whole number from 0 to {most}, got {depth!r}").format(most=MAX_DEPTH, depth=depth)


def _shape_text(shape: Any) -> str:
    """``(1, 64, 56, 56)`` -> ``64x56x56`` (the batch dimension dropped)."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        texts = list(dict.fromkeys(_shape_text(s) for s in shape))
        return ", ".join(texts)
    dims = tuple(int(v) for v in shape) if shape is not None else ()
    dims = dims[1:] if len(dims) > 1 else dims
    return "x".join(map(str, dims)) if dims else "scalar"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _build(model: str | nn.Module, input_shape, num_classes) -> tuple[nn.Module, tuple[int, int, int], str]:
    if isinstance(model, str):
        spec = get_spec(model)
        shape = _as_shape(input_shape, spec.input_shape)
        with torch.device("meta"):
            net = create(spec.name, num_classes=num_classes, in_channels=shape[0], input_size=shape[1:])
        return net, shape, spec.name
    if not isinstance(model, nn.Module):
        raise ConfigError(_("model_graph needs a model name or a torch module, got {kind}").format(
            kind=type(model).__name__))
    spec = getattr(model, "cnnlab_spec", None)
    shape = _as_shape(input_shape, spec.input_shape if spec else (3, 224, 224))
    net = copy.deepcopy(model).to("meta")  # the caller's module is never modified
    return net, shape, spec.name if spec else type(model).__name__


def _trace(net: nn.Module, shape: tuple[int, int, int], depth: int, name: str):
    try:
        return draw_graph(
            net, input_size=(1, *shape), device="meta", depth=depth, expand_nested=True,
            graph_name=name, mode="eval", show_shapes=False,
        )
    except Exception as e:  # noqa: BLE001 -- torchview wraps the model's own error; dig out ours
        err = _unwrap(e)
        if isinstance(err, CnnlabError):
            raise err from None
        raise InputSizeError(
            _("{model} cannot process a {shape} input: {error}. `python -m cnnlab summary {model} --input CxHxW` "
              "shows which layer refuses it.").format(model=name, shape="x".join(map(str, shape)), error=err)
        ) from None


def layer_words(m: nn.Module) -> str | None:
    """How a lecture names a layer: "3x3 conv, 64, /2", "fc, 10", "3x3 max pool, /2"; None for other modules."""
    if isinstance(m, nn.Conv2d):
        (kh, kw), (sh, _) = pair(m.kernel_size), pair(m.stride)
        return (f"{kh}x{kw} conv, {m.out_channels}" + (f", /{sh}" if sh > 1 else "")
                + (f", groups {m.groups}" if m.groups > 1 else ""))
    if isinstance(m, nn.Linear):
        return f"fc, {m.out_features}"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        (kh, kw), (sh, _) = pair(m.kernel_size), pair(m.stride or m.kernel_size)
        kind = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        return f"{kh}x{kw} {kind} pool" + (f", /{sh}" if sh > 1 else "")
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        kind = "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
        return f"global {kind} pool" if pair(m.output_size) == (1, 1) else f"adaptive {kind} pool"
    words = {nn.BatchNorm1d: "batch norm", nn.BatchNorm2d: "batch norm", nn.ReLU: "ReLU", nn.Tanh: "tanh",
             nn.Sigmoid: "sigmoid", nn.LocalResponseNorm: "LRN", nn.Flatten: "flatten", nn.Softmax: "softmax"}
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        return f"dropout {m.p:g}"
    if isinstance(m, FixedFlatten):
        return "flatten"
    return words.get(type(m))


def _walk(graph, node, cluster: list[Any] | None, clusters: list, placed: dict) -> None:
    """Mirror torchview's own traversal: which visible node goes into which nested box."""
    if isinstance(node, (TensorNode, ModuleNode, FunctionNode)):
        if id(node) in graph.node_set and id(node) not in placed:
            placed[id(node)] = (node, cluster)
        return
    (key, children), = node.items()
    if id(key) in graph.node_set and id(key) not in placed:
        placed[id(key)] = (key, cluster)
    if graph.hide_module_functions and key.is_container:
        for out in key.output_nodes:
            _walk(graph, out, cluster, clusters, placed)
        return
    if 1 <= key.depth < graph.depth and graph.expand_nested:
        box = [key, []]  # [module node, its members (nodes and nested boxes)]
        (cluster[1] if cluster else clusters).append(box)
        cluster = box
    for child in children:
        _walk(graph, child, cluster, clusters, placed)


def model_graph(
    model: str | nn.Module,
    input_shape: str | tuple[int, ...] | None = None,
    depth: int = 2,
    num_classes: int | None = None,
) -> str:
    """Graphviz DOT source of a zoo model (or any module): layers as nodes, tensors as edges
    labelled with their shapes, nested modules opened ``depth`` levels deep (0 to 6)."""
    depth = _check_depth(depth)
    net, shape, name = _build(model, input_shape, num_classes)
    graph = _trace(net, shape, max(depth, 0), name)

    names = {id(m): (n or name) for n, m in net.named_modules()}
    modules = {id(m): m for m in net.modules()}
    placed: dict[int, tuple[Any, Any]] = {}
    top: list = []
    _walk(graph, graph.node_hierarchy, None, top, placed)

    ids = graph.id_dict  # torchview's node_id -> drawn id (aux tensors share their main node's)
    lines: dict[int, str] = {}
    members: dict[int, list[int]] = {}  # id(box) -> drawn ids placed directly in that box
    for node, box in placed.values():
        vid = ids[node.node_id]
        if vid in lines:
            continue
        kind = type(node).__name__
        if kind == "TensorNode":
            role = "input" if node.is_root() else "output"
            label, color = f"{role}\n{_shape_text(node.tensor_shape)}", _COLORS["tensor"]
        elif kind == "ModuleNode":
            qual = names.get(node.compute_unit_id, node.name)
            words = layer_words(modules[node.compute_unit_id]) if node.compute_unit_id in modules else None
            label = f"{words}\n{qual}" if words else node.name if qual == node.name else f"{qual}: {node.name}"
            color = _COLORS["module"]
        else:
            label, color = node.name, _COLORS["function"]
        lines[vid] = f"{vid} [label={_quote(label)} fillcolor={color}]"
        members.setdefault(id(box) if box else 0, []).append(vid)

    out = [
        f"digraph {_quote(name)} {{",
        # compact ranks and projector-sized text: LeNet fits a 720-pixel-high screen
        "\tgraph [rankdir=TB ordering=in fontname=Helvetica ranksep=0.22 nodesep=0.3]",
        "\tnode [shape=box style=\"rounded,filled\" fontname=Helvetica fontsize=14 height=0.3 margin=\"0.12,0.03\"]",
        "\tedge [fontname=Helvetica fontsize=12]",
    ]

    def emit(box: list, indent: str, counter: list[int]) -> None:
        key, inner = box
        counter[0] += 1
        qual = names.get(key.compute_unit_id, key.name)
        out.append(f"{indent}subgraph cluster_{counter[0]} {{")
        out.append(f"{indent}\tlabel={_quote(f'{qual}: {key.name}')} style=dashed labeljust=l fontsize=13")
        for vid in members.get(id(box), []):
            out.append(f"{indent}\t{lines[vid]}")
        for sub in inner:
            emit(sub, indent + "\t", counter)
        out.append(f"{indent}}}")

    for vid in members.get(0, []):
        out.append(f"\t{lines[vid]}")
    counter = [0]
    for box in top:
        emit(box, "\t", counter)

    seen: set[tuple[int, int, str]] = set()
    for tail, head in graph.edge_list:
        shape_of = tail.tensor_shape if type(tail).__name__ == "TensorNode" else tail.output_shape
        edge = (ids[tail.node_id], ids[head.node_id], _shape_text(shape_of))
        if edge in seen:  # one tensor used twice by the same layer
            continue
        seen.add(edge)
        out.append(f"\t{edge[0]} -> {edge[1]} [label={_quote(' ' + edge[2])}]")
    out.append("}")
    return "\n".join(out) + "\n"


def node_count(dot: str) -> int:
    """Number of nodes in DOT source written by :func:`model_graph`."""
    return sum(1 for line in dot.splitlines() if " [label=" in line and "->" not in line)


def to_svg(dot: str) -> str:
    """SVG drawing of DOT source; needs Graphviz's ``dot`` program."""
    exe = shutil.which("dot")
    if exe is None:
        raise ConfigError(
            _("drawing SVG needs Graphviz's `dot` program, which is not installed: write a .dot file instead (it "
              "opens in any Graphviz viewer), or install Graphviz (apt-get install graphviz).")
        )
    try:
        done = subprocess.run([exe, "-Tsvg"], input=dot.encode(), capture_output=True,
                              timeout=_SVG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(_("Graphviz took longer than {seconds} s to draw this graph: choose a lower depth or write "
                            "a .dot file.").format(seconds=_SVG_TIMEOUT_S)) from None
    if done.returncode != 0:
        raise ConfigError(_("Graphviz could not draw the graph: {error}").format(
            error=done.stderr.decode(errors="replace").strip()[:500]))
    return done.stdout.decode()
