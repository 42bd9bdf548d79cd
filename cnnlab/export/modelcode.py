"""A zoo model written out as plain ``torch.nn`` code: the classes a student would write, no cnnlab.

:func:`model_code` builds the model through the registry on the meta device (no memory) while it
records the arguments every cnnlab layer class was constructed with, then writes:

- a torch.nn layer as its constructor call (``nn.Conv2d(1, 6, 5)``), checked against the original's
  ``repr``; an ``nn.Sequential`` as the call holding its children;
- a cnnlab class (LeNet, the residual and Inception blocks, DenseNet's dense block...) as its own
  source, copied with what it needs (:class:`~cnnlab.export.closure.Closure`), and the model as the
  call of that class with the recorded arguments: the forward is cnnlab's own, so it is faithful,
  and the layers are created in the same order, so the same seed gives the same initial weights;
- a transfer-learning model as the seeds write it: torchvision's architecture (with its ImageNet
  weights when the run used them), the pretrained layers frozen, the new head assigned.

The written code is run once on the meta device before it is returned: its parameters must have
the names and shapes of the original's, or the export is refused (:class:`ExportError`).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torchvision
from torch import nn

from ..models import count_params, create, get_spec
from ..models._layers import FixedFlatten
from ..models.pretrained import get_pretrained_spec
from ..i18n import _
from .closure import Closure, Code, ExportError

# FixedFlatten's own message names cnnlab's pages; the written-out one says the same in plain words.
PLAIN_FIXED_FLATTEN = '''
class FixedFlatten(nn.Module):
    """Flattens ``C x H x W`` features for a fully connected layer that expects exactly that many (the
    lectures' ``x.view(-1, C * H * W)``); ``adaptive=True`` average-pools to ``H x W`` first, so that other
    input sizes work with the same weights."""

    def __init__(self, channels, height, width, adaptive=False):
        super().__init__()
        self.expected = (channels, height, width)
        self.adaptive = adaptive
        self.remedy = "Resize the images to the size the network was built for."

    def forward(self, x):
        if self.adaptive and x.dim() == 4:
            x = F.adaptive_avg_pool2d(x, self.expected[1:])
        if tuple(x.shape[1:]) != self.expected:
            raise ValueError(f"the flatten expects {self.expected} features, got {tuple(x.shape[1:])}. {self.remedy}")
        return torch.flatten(x, 1)
'''

_CONV_PAIRS = ("kernel_size", "stride", "padding", "dilation")
_RECORDING = threading.Lock()


@dataclass
class ModelCode:
    """``code``: the imports and class definitions; ``build``: statements that create ``model``;
    ``offline_build``: the same without pretrained weights (nothing to download, as the check runs it)."""

    code: Code
    build: str
    name: str
    offline_build: str


def model_code(name: str, kwargs: Mapping[str, Any], pretrained: bool = False, freeze: bool = False) -> ModelCode:
    """The plain-PyTorch code of the zoo model ``name`` built with ``kwargs`` (a run's ``model_kwargs``:
    ``num_classes``, ``in_channels``, ``input_size``). ``pretrained``/``freeze``: a transfer model starts
    from torchvision's ImageNet weights, its pretrained layers frozen. Checked before it is returned."""
    spec = get_spec(name)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    model, records = _build_recorded(spec.name, kwargs)
    writer = _Writer(records)
    if spec.family in ("transfer", "pretrained"):
        build, check = _torchvision_build(writer, model, spec.family, pretrained, freeze)
    else:
        build = f"model = {writer.expr(model, 'model')}"
        check = build
    result = ModelCode(writer.closure.code, build, spec.name, check)
    _check(result.code, check, model, spec.name)
    return result


# ---- building while recording each cnnlab layer's arguments ---------------------------------------------


def _cnnlab_classes() -> list[type]:
    """Every nn.Module class defined in cnnlab that has its own ``__init__``."""
    found, todo = [], [nn.Module]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("cnnlab.") and "__init__" in vars(sub):
                found.append(sub)
    return found


@contextlib.contextmanager
def _recording(records: dict[int, tuple[nn.Module, inspect.BoundArguments]]) -> Iterator[None]:
    """Each cnnlab layer created in the block records the arguments of its outermost ``__init__`` call."""
    originals = {cls: vars(cls)["__init__"] for cls in _cnnlab_classes()}

    def wrap(original: Any) -> Any:
        signature = inspect.signature(original)

        def __init__(self: nn.Module, *args: Any, **kw: Any) -> None:
            if id(self) not in records:  # the most derived class's call: the one the code makes
                bound = signature.bind(self, *args, **kw)
                records[id(self)] = (self, bound)  # the instance is kept: no id is reused meanwhile
            original(self, *args, **kw)

        return __init__

    with _RECORDING:
        try:
            for cls, original in originals.items():
                cls.__init__ = wrap(original)
            yield
        finally:
            for cls, original in originals.items():
                cls.__init__ = original


def _build_recorded(name: str, kwargs: Mapping[str, Any]) -> tuple[nn.Module, dict]:
    records: dict[int, tuple[nn.Module, inspect.BoundArguments]] = {}
    try:
        with _recording(records), torch.device("meta"):
            model = create(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise ExportError(_("{model} cannot be rebuilt from the arguments {arguments}: {error}").format(
            model=name, arguments=dict(kwargs), error=e)) from None
    return model, records


# ---- writing expressions ---------------------------------------------------------------------------------


def new_closure() -> Closure:
    """A closure that writes cnnlab's layers as the exported code has them (FixedFlatten in plain words),
    with the imports every notebook has."""
    closure = Closure({FixedFlatten: PLAIN_FIXED_FLATTEN})
    closure.import_line("import torch")
    closure.import_line("from torch import nn")
    closure.import_line("import torch.nn.functional as F")
    return closure


class _Writer:
    """Writes modules as constructor expressions, copying the cnnlab classes they need."""

    def __init__(self, records: dict[int, tuple[nn.Module, inspect.BoundArguments]]):
        self.records = records
        self.closure = new_closure()

    def expr(self, m: nn.Module, path: str) -> str:
        if id(m) in self.records:
            return self._recorded(m, path)
        if type(m) in (nn.Sequential, nn.ModuleList):
            return self._container(m, path)
        if getattr(nn, type(m).__name__, None) is type(m):
            return _leaf(m, path)
        raise ExportError(_("layer {path!r} is a {kind}, which cannot be written out as plain PyTorch code.").format(
            path=path, kind=f"{type(m).__module__}.{type(m).__name__}"))

    def _recorded(self, m: nn.Module, path: str) -> str:
        bound = self.records[id(m)][1]
        name = self.closure.add(type(m))
        args: list[str] = []
        for key, value in list(bound.arguments.items())[1:]:  # [0] is self
            kind = bound.signature.parameters[key].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                args += [self.value(v, f"{path}.{key}") for v in value]
            elif kind is inspect.Parameter.VAR_KEYWORD:
                args += [f"{k}={self.value(v, f'{path}.{k}')}" for k, v in value.items()]
            else:
                args.append(f"{key}={self.value(value, f'{path}.{key}')}")
        return _call(name, args)

    def _container(self, m: nn.Module, path: str) -> str:
        kind = "nn.Sequential" if isinstance(m, nn.Sequential) else "nn.ModuleList"
        children = list(m.named_children())
        if all(n == str(i) for i, (n, _layer) in enumerate(children)):
            parts = [self.expr(c, f"{path}.{n}") for n, c in children]
            return _call(kind, parts) if kind == "nn.Sequential" else _call(kind, [_call("", parts, "[]")])
        self.closure.import_line("from collections import OrderedDict")
        items = [_call("", [repr(n), self.expr(c, f"{path}.{n}")], "()") for n, c in children]
        return _call(kind, [_call("OrderedDict", [_call("", items, "[]")])])

    def value(self, v: Any, path: str) -> str:
        """A constructor argument as code: a layer, a layer class, or a plain value."""
        if isinstance(v, nn.Module):
            return self.expr(v, path)
        if isinstance(v, type) and issubclass(v, nn.Module):
            if getattr(nn, v.__name__, None) is v:
                return f"nn.{v.__name__}"
            if v.__module__.startswith("cnnlab"):
                return self.closure.add(v)
        if isinstance(v, (list, tuple)):
            inner = [self.value(x, path) for x in v]
            return f"({inner[0]},)" if isinstance(v, tuple) and len(v) == 1 else \
                (f"({', '.join(inner)})" if isinstance(v, tuple) else f"[{', '.join(inner)}]")
        if isinstance(v, dict):
            return "{" + ", ".join(f"{self.value(k, path)}: {self.value(x, path)}" for k, x in v.items()) + "}"
        if v is None or isinstance(v, (bool, int, float, str)):
            return repr(v)
        raise ExportError(_("the argument {path!r} ({kind}) cannot be written out as code.").format(
            path=path, kind=type(v).__name__))


def _call(head: str, args: list[str], brackets: str = "()") -> str:
    """``head(a, b)`` on one line when short, else one argument a line."""
    left, right = brackets
    one = f"{head}{left}{', '.join(args)}{right}"
    if len(one) <= 100 and "\n" not in one:
        return one
    inner = ",\n".join("    " + a.replace("\n", "\n    ") for a in args)
    return f"{head}{left}\n{inner},\n{right}"


def _leaf(m: nn.Module, path: str) -> str:
    """A torch.nn layer as its constructor call, only the arguments that differ from the defaults."""
    cls = type(m)
    args: list[str] = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.name in ("device", "dtype") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "bias" and isinstance(getattr(m, "bias", None), (torch.Tensor, type(None))):
            value: Any = m.bias is not None
        elif hasattr(m, p.name):
            value = getattr(m, p.name)
        elif p.default is p.empty:
            raise ExportError(_("layer {path!r} ({kind}) keeps no {name!r}: it cannot be written out.").format(
                path=path, kind=cls.__name__, name=p.name))
        else:
            continue
        if isinstance(m, nn.modules.conv._ConvNd) and p.name in _CONV_PAIRS and isinstance(value, tuple) \
                and len(set(value)) == 1:
            value = value[0]
        if p.default is p.empty:
            args.append(repr(value))
        elif value != p.default and not (p.name == "stride" and p.default is None
                                          and value == getattr(m, "kernel_size", None)):
            args.append(f"{p.name}={value!r}")
    text = f"nn.{cls.__name__}({', '.join(args)})"
    with torch.device("meta"):
        again = eval(text, {"nn": nn})  # noqa: S307 - our own constructor call, checked against the layer
    if repr(again) != repr(m):
        raise ExportError(_("layer {path!r} ({layer!r}) cannot be written out as a constructor call.").format(
            path=path, layer=m))
    return text


# ---- torchvision's transfer-learning models -------------------------------------------------------------


def _torchvision_name(weights: Any) -> str:
    """torchvision's builder name for a weights enum (``VGG16_Weights`` -> ``vgg16``)."""
    for name in torchvision.models.list_models(module=torchvision.models):
        if torchvision.models.get_model_weights(name) is type(weights):
            return name
    raise ExportError(_("no torchvision model has the weights {weights}.").format(weights=weights))


def _torchvision_build(writer: _Writer, model: nn.Module, family: str, pretrained: bool,
                       freeze: bool) -> tuple[str, str]:
    """The seeds' code for a model on torchvision's architecture, and the same code without weights
    (for the check, which must not download)."""
    writer.closure.import_line("import torchvision")
    transfer = getattr(model, "cnnlab_transfer", None) or {}
    base = get_pretrained_spec(transfer.get("base") or model.cnnlab_spec.name)  # type: ignore[attr-defined]
    arch = _torchvision_name(base.weights)
    enum = f"torchvision.models.{type(base.weights).__name__}.{base.weights.name}"
    weights = enum if pretrained or family == "pretrained" else "None"
    with torch.device("meta"):
        plain = getattr(torchvision.models, arch)(weights=None, num_classes=1000)
    what = f"torchvision's {arch}" + (" with its ImageNet weights (downloaded once)" if weights != "None"
                                       else ", from random weights")
    lines = [f"model = torchvision.models.{arch}(weights={weights})  # {what}"]
    if family == "transfer":
        if pretrained and freeze:
            lines += ["for p in model.parameters():  # feature extraction: the pretrained layers stay as they are",
                      "    p.requires_grad = False"]
        for path in _replaced(plain, model):
            target = "model" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path.split("."))
            head = model.get_submodule(path)
            lines.append(f"{target} = {writer.expr(head, path)}  # the new head (it learns)")
    build = "\n".join(lines)
    return build, build.replace(f"(weights={enum})", "(weights=None)")


def _replaced(base: nn.Module, new: nn.Module, path: str = "") -> list[str]:
    """The paths of the layers of ``new`` that are not those of torchvision's ``base`` (the new heads)."""
    if type(base) is not type(new):
        return [path]
    children, others = dict(base.named_children()), dict(new.named_children())
    if not children and not others:
        return [] if repr(base) == repr(new) else [path]
    if children.keys() != others.keys():
        return [path]
    return [p for k in children for p in _replaced(children[k], others[k], f"{path}.{k}" if path else k)]


# ---- the check ---------------------------------------------------------------------------------------------


def _check(code: Code, build: str, model: nn.Module, name: str) -> None:
    """Run the written code on the meta device: its parameters and buffers must be the original's."""
    namespace: dict[str, Any] = {"__name__": "exported"}
    try:
        exec(compile(code.text(), f"<{name} code>", "exec"), namespace)  # noqa: S102 - code written above
        with torch.device("meta"):
            exec(compile(build, f"<{name} build>", "exec"), namespace)  # noqa: S102
    except Exception as e:  # noqa: BLE001 - any failure means the written code is wrong
        raise ExportError(_("the plain-PyTorch code written for {model} does not run ({kind}: {error}).").format(
            model=name, kind=type(e).__name__, error=e)) from None
    again = namespace.get("model")
    want = OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())
    got = OrderedDict((k, tuple(v.shape)) for k, v in again.state_dict().items()) if isinstance(again, nn.Module) else {}
    if got != want or count_params(again) != count_params(model):
        differ = next((k for k in [*want, *got] if want.get(k) != got.get(k)), "?")
        raise ExportError(_("the plain-PyTorch code written for {model} does not have its layers (first difference: "
                            "{differ!r}); it cannot be exported.").format(model=name, differ=differ))
