"""Per-layer inspection of any zoo model without real arithmetic.

:func:`summarize` builds the model on PyTorch's ``meta`` device (no memory, no compute), runs
one forward pass through `torchinfo <https://github.com/TylerYep/torchinfo>`_ for the
hierarchy, output shapes and parameter counts, and adds what torchinfo does not give:

* multiply-accumulates (MACs) counted the textbook way, weights only:
  convolution ``H_out * W_out * C_out * (C_in / groups) * k_h * k_w``, linear
  ``in_features * out_features`` (biases, activations, pooling and batch norm count 0);
* the receptive field and its jump (effective stride) for every layer of the spatial part,
  propagated through any graph (branches, concatenations, residual additions) by a
  :class:`~torch.overrides.TorchFunctionMode`;
* for each convolution and pooling, the output-size formula ``floor((W - F + 2P) / S) + 1``
  with the layer's own numbers;
* a clear :class:`~cnnlab.errors.InputSizeError` when an input is too small (naming the first
  layer whose output would be empty and the smallest square input that works) or has the
  wrong channel count.

The per-layer size checks themselves live in :mod:`cnnlab.models._input_checks`, below both this
module and the model registry (which uses them to refuse sizes at creation); this module builds
on the registry, never the other way round.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torchinfo import summary as torchinfo_summary

from .errors import CnnlabError, InputSizeError, InputTooSmallError
from .i18n import _, fmt, ngettext
from .models import count_params, create, get_spec
from .models._input_checks import (
    CONV,
    POOL,
    check_input,
    check_layer_input,
    conv_output_size,
    layer_geometry,
    smallest_input,
)
from .models._layers import FixedFlatten

__all__ = [
    "LayerRow", "ModelSummary", "check_input", "conv_output_size", "output_size_formula",
    "param_arithmetic", "smallest_input", "summarize",
]

_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_BYTES_PER_VALUE = 4  # float32


@dataclass
class LayerRow:
    name: str  # hierarchical name, e.g. "features.0"
    type: str  # class name, e.g. "Conv2d"
    depth: int
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int
    trainable: int
    macs: int
    is_leaf: bool
    receptive_field: tuple[int, int] | None = None  # (h, w) in input pixels; None: not spatial
    jump: tuple[int, int] | None = None  # distance in input pixels between adjacent outputs
    global_rf: bool = False  # the layer sees the whole input (after flatten/global pooling)
    formula: str | None = None  # output-size formula with this layer's numbers
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    param_formula: str | None = None  # this layer's count as the product it comes from: "6x5x5x1+6 = 156"
    param_words: str | None = None  # the same in words: "6 filters of 5x5 over 1 input channel, plus 6 biases"

    @property
    def rf_text(self) -> str:
        if self.global_rf:
            return _("whole input")
        if self.receptive_field is None:
            return ""
        (h, w), (jh, jw) = self.receptive_field, self.jump or (1, 1)
        size = f"{h}" if h == w else f"{h}x{w}"
        jump = f"{jh}" if jh == jw else f"{jh}x{jw}"
        return _("{size} (jump {jump})").format(size=size, jump=jump)


@dataclass
class ModelSummary:
    model_name: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_macs: int
    activation_bytes: int  # per image, float32, sum of every leaf layer's output
    param_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def leaf_rows(self) -> list[LayerRow]:
        return [r for r in self.rows if r.is_leaf]

    def row(self, name: str) -> LayerRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def depth(self) -> int:
        """Number of layers with weights (convolutions and fully connected)."""
        return sum(1 for r in self.leaf_rows if r.type.startswith(("Conv", "Linear")))

    def to_records(self, leaves_only: bool = False) -> list[dict[str, Any]]:
        rows = self.leaf_rows if leaves_only else self.rows
        return [
            {
                "layer": r.name or _("(model)"),
                "type": r.type,
                "depth": r.depth,
                "output shape": " x ".join(map(str, r.output_shape)),
                "params": r.params,
                "trainable": r.trainable,
                "MACs": r.macs,
                "receptive field": r.rf_text,
                "params =": r.param_formula or "",
                "size =": r.formula or "",
            }
            for r in rows
        ]

    def format_table(self, leaves_only: bool = False) -> str:
        recs = self.to_records(leaves_only)
        cols = ["layer", "type", "output shape", "params", "trainable", "MACs", "receptive field"]
        fmt = {k: (lambda v: f"{v:,}" if isinstance(v, int) else str(v)) for k in cols}
        cells = [[fmt[c](rec[c]) for c in cols] for rec in recs]
        # indent names by depth for the hierarchy
        for rec, cell in zip(recs, cells):
            cell[0] = "  " * max(rec["depth"] - 1, 0) + cell[0]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        right = {"params", "trainable", "MACs"}
        lines = [
            "  ".join(c.rjust(w) if c in right else c.ljust(w) for c, w in zip(cols, widths)),
            "  ".join("-" * w for w in widths),
        ]
        for cell in cells:
            lines.append("  ".join(v.rjust(w) if c in right else v.ljust(w)
                                   for c, v, w in zip(cols, cell, widths)))
        lines.append("")
        lines.append(self.format_totals())
        return "\n".join(lines)

    def format_totals(self) -> str:
        c, h, w = self.input_shape
        return "\n".join([
            _("Input {input} -> output {output}").format(input=f"{c}x{h}x{w}",
                                                         output=" x ".join(map(str, self.output_shape))),
            _("Parameters:        {total} ({trainable} trainable)").format(
                total=fmt(self.total_params, ","), trainable=fmt(self.trainable_params, ",")),
            _("MACs per image:    {macs} ({millions} M)").format(
                macs=fmt(self.total_macs, ","), millions=fmt(self.total_macs / 1e6, ",.1f")),
            _("Activations/image: {size} (float32, forward)").format(size=format_bytes(self.activation_bytes)),
            _("Parameter memory:  {size} (float32)").format(size=format_bytes(self.param_bytes)),
        ])


def format_bytes(n: int) -> str:
    """Bytes with one decimal in the largest unit below 1024: 12 B, 2.0 KB, 527.8 MB (the decimal mark of the
    language in use)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{fmt(n, ',.1f')} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def output_size_formula(w: int, f: int, p: int, s: int, d: int = 1, ceil_mode: bool = False) -> str:
    """The formula of seed 001 with numbers filled in, e.g.
    ``floor((28 - 5 + 2*0) / 1) + 1 = 24``."""
    rnd = "ceil" if ceil_mode else "floor"
    f_txt = f"{d}*({f}-1)+1" if d != 1 else f"{f}"
    return f"{rnd}(({w} - {f_txt} + 2*{p}) / {s}) + 1 = {conv_output_size(w, f, p, s, d, ceil_mode)}"


def _n(text: str, n: int) -> str:
    """A counted phrase from :func:`ngettext` with ``{n}`` the count, grouped ("1,024 inputs")."""
    return text.format(n=fmt(n, ","))


def param_arithmetic(module: nn.Module) -> tuple[str, str] | None:
    """A layer's own parameter count as the product it comes from, and the same in words.

    ConvNetJS's notation ``filters x kh x kw x in + biases``: LeNet's C1 gives
    ``("6x5x5x1+6 = 156", "6 filters of 5x5 over 1 input channel, plus 6 biases")``. A grouped
    convolution's filters see ``in / groups`` channels; a linear layer is ``out x in + out``;
    batch norm learns a scale and a shift per channel. Any other layer lists its parameter
    tensors' shapes. None for a layer without parameters. The left side always evaluates to the
    count (``x`` read as a product): the tests check it for every zoo model.
    """
    own = list(module.named_parameters(recurse=False))
    if not own:
        return None
    total = sum(p.numel() for _p, p in own)
    bias = getattr(module, "bias", None)
    nb = bias.numel() if isinstance(bias, torch.Tensor) else 0
    plus_bias = f"+{nb}" if nb else ""
    biases = _n(ngettext("{n} bias", "{n} biases", nb), nb)
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.modules.conv._ConvNd) and isinstance(weight, torch.Tensor) and len(own) == 1 + bool(nb):
        out_c, in_per_group, *kernel = weight.shape
        k_txt = "x".join(map(str, kernel))
        groups = module.groups
        if isinstance(module, nn.modules.conv._ConvTransposeNd):  # weight is (in, out/groups, k...)
            in_c, out_per_group = out_c, in_per_group
            arith = f"{in_c}x{k_txt}x{out_per_group}{plus_bias}"
            outputs = _n(ngettext("{n} output channel", "{n} output channels", out_per_group), out_per_group)
            text = _("{channels} input channels each spread by a {kernel} kernel over {outputs}, plus {biases}") if nb \
                else _("{channels} input channels each spread by a {kernel} kernel over {outputs}, no bias")
            words = text.format(channels=in_c, kernel=k_txt, outputs=outputs, biases=biases)
        else:
            arith = f"{out_c}x{k_txt}x{in_per_group}{plus_bias}"
            inputs = _n(ngettext("{n} input channel", "{n} input channels", in_per_group), in_per_group)
            if groups > 1:
                inputs = _("{channels} (its group's share: {total} / {groups} groups)").format(
                    channels=inputs, total=module.in_channels, groups=groups)
            text = _("{filters} of {kernel} over {inputs}, plus {biases}") if nb else \
                _("{filters} of {kernel} over {inputs}, no bias")
            words = text.format(filters=_n(ngettext("{n} filter", "{n} filters", out_c), out_c), kernel=k_txt,
                                inputs=inputs, biases=biases)
    elif isinstance(module, nn.Linear) and isinstance(weight, torch.Tensor) and len(own) == 1 + bool(nb):
        out_f, in_f = weight.shape
        arith = f"{out_f}x{in_f}{plus_bias}"
        text = _("{outputs} outputs, each a weighted sum of {inputs}, plus {biases}") if nb else \
            _("{outputs} outputs, each a weighted sum of {inputs}, no bias")
        words = text.format(outputs=fmt(out_f, ","), inputs=_n(ngettext("{n} input", "{n} inputs", in_f), in_f),
                            biases=biases)
    elif isinstance(module, nn.modules.batchnorm._NormBase) and isinstance(weight, torch.Tensor) and len(own) == 2:
        c = weight.numel()
        arith = f"{c}+{c}"
        words = _("a scale and a shift for each of {channels} (running mean and variance are not learned)").format(
            channels=_n(ngettext("{n} channel", "{n} channels", c), c))
    else:
        arith = "+".join("x".join(map(str, p.shape)) or "1" for _p, p in own)
        scalar = _("scalar")
        words = ", ".join(f"{n} {'x'.join(map(str, p.shape)) or scalar}" for n, p in own)
    return f"{arith} = {total:,}", words


# --- receptive-field propagation -------------------------------------------------------------

_RF_ATTR = "_cnnlab_rf"  # (rf_h, rf_w, jump_h, jump_w) or "global"


def _get_rf(t: Any):
    return getattr(t, _RF_ATTR, None) if isinstance(t, torch.Tensor) else None


def _merge(infos: Iterable):
    infos = [i for i in infos if i is not None]
    if not infos:
        return None
    if any(i == "global" for i in infos):
        return "global"
    return tuple(max(i[k] for i in infos) for k in range(4))


class CarryMode(TorchFunctionMode):
    """Carries a tag (the tensor attribute ``attr``) from the inputs of every tensor operation to its
    outputs: ``merge`` combines the tags of several inputs (a residual addition, a concatenation), and
    an output of fewer than 3 dimensions (flattened) gets ``flat``. Layers' hooks then change the tag
    where a layer changes it: the receptive-field column here, the convolution explorer's field."""

    def __init__(self, attr: str, merge: Callable[[list], Any], flat: Any):
        super().__init__()
        self.attr, self.merge, self.flat = attr, merge, flat

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.Tensor.__getattribute__ or getattr(func, "__name__", "") in ("__get__", "size", "dim", "numel"):
            return out
        tags = [tag for t in tree_flatten((args, kwargs or {}))[0]
                if isinstance(t, torch.Tensor) and (tag := getattr(t, self.attr, None)) is not None]
        if tags:
            merged = self.merge(tags)
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    try:
                        setattr(t, self.attr, merged if t.dim() >= 3 else self.flat)
                    except (AttributeError, RuntimeError):  # a tensor that takes no attributes keeps none
                        pass
        return out


# --- the meta pass ---------------------------------------------------------------------------


class _Recorder:
    """Forward hooks that check sizes before each layer and measure it after."""

    def __init__(self, model: nn.Module, model_name: str, input_shape: tuple[int, ...]):
        self.model_name = model_name
        self.input_shape = input_shape
        self.names = {m: n for n, m in model.named_modules()}
        self.calls: dict[int, list[dict[str, Any]]] = {}
        self.handles: list = []
        for m in model.modules():
            if len(list(m.children())) == 0:
                self.handles.append(m.register_forward_pre_hook(self._pre))
                self.handles.append(m.register_forward_hook(self._post))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _pre(self, module: nn.Module, inputs):
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor):
            check_layer_input(module, x, self.names.get(module, "?"), self.model_name, self.input_shape)

    def _post(self, module: nn.Module, inputs, output):
        x = inputs[0] if inputs else None
        rec: dict[str, Any] = {"macs": 0}
        out = output if isinstance(output, torch.Tensor) else None
        if out is not None:
            rec["numel"] = out[0].numel() if out.dim() > 0 else 1
            rec["inplace"] = isinstance(x, torch.Tensor) and out is x
        if isinstance(module, CONV) and out is not None:
            k = math.prod(module.kernel_size)
            rec["macs"] = out[0].numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear) and out is not None:
            rec["macs"] = (out[0].numel() // module.out_features) * module.in_features * module.out_features
        rf_in = _get_rf(x)
        rf_out = rf_in
        if isinstance(module, CONV + POOL) and isinstance(rf_in, tuple):
            k, s, p, d, ceil = layer_geometry(module)
            rh, rw, jh, jw = rf_in
            rf_out = (rh + d[0] * (k[0] - 1) * jh, rw + d[1] * (k[1] - 1) * jw, jh * s[0], jw * s[1])
            if p is not None and isinstance(x, torch.Tensor) and x.dim() == 4:
                ih, iw = x.shape[-2:]
                formulas = [output_size_formula(ih, k[0], p[0], s[0], d[0], ceil)]
                if (iw, k[1], p[1], s[1]) != (ih, k[0], p[0], s[0]):
                    formulas.append(output_size_formula(iw, k[1], p[1], s[1], d[1], ceil))
                rec["formula"] = "; ".join(
                    f"{axis}: {f}" for axis, f in zip(("H", "W"), formulas)
                ) if len(formulas) > 1 else formulas[0]
                rec["geometry"] = (k, s, p)
        elif isinstance(module, _ADAPTIVE + (nn.Linear, nn.Flatten, FixedFlatten)):
            rf_out = "global"
        if isinstance(out, torch.Tensor) and rf_out is not None:
            try:
                setattr(out, _RF_ATTR, rf_out)
            except (AttributeError, RuntimeError):
                pass
        rec["rf"] = rf_out
        self.calls.setdefault(id(module), []).append(rec)


def _unwrap(exc: BaseException) -> BaseException:
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, CnnlabError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return exc


def _as_shape(input_shape, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if input_shape is None:
        return default
    if isinstance(input_shape, str):
        parts = input_shape.lower().replace(",", "x").split("x")
        try:
            input_shape = tuple(int(p) for p in parts if p.strip())
        except ValueError:
            raise InputSizeError(_("cannot read input shape {shape!r}: write it as CxHxW, e.g. 3x224x224").format(
            shape=input_shape)) from None
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 1:
        shape = (default[0], shape[0], shape[0])
    elif len(shape) == 2:
        shape = (default[0], *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputSizeError(_("input shape must be three positive numbers CxHxW, got {shape!r}").format(
            shape=input_shape))
    if shape[1] * shape[2] > 4096 * 4096:
        raise InputSizeError(_("input {size} is larger than this tool inspects (4096x4096).").format(
            size=f"{shape[1]}x{shape[2]}"))
    return shape  # type: ignore[return-value]


def _meta_model(name: str, num_classes: int | None, in_channels: int, size: tuple[int, int]) -> nn.Module:
    with torch.device("meta"):
        return create(name, num_classes=num_classes, in_channels=in_channels, input_size=size)


def summarize(
    model: str | nn.Module,
    input_shape: str | tuple[int, ...] | None = None,
    num_classes: int | None = None,
    model_name: str | None = None,
) -> ModelSummary:
    """Per-layer table and totals for a registered model name (built on the meta device) or a
    given module (moved to meta; the caller's module is deep-copied, never modified)."""
    if isinstance(model, str):
        spec = get_spec(model)
        shape = _as_shape(input_shape, spec.input_shape)
        model_name = model_name or spec.name
        net = _meta_model(spec.name, num_classes, shape[0], shape[1:])
    else:
        net = copy.deepcopy(model).to("meta")
        spec = getattr(model, "cnnlab_spec", None)
        shape = _as_shape(input_shape, spec.input_shape if spec else (3, 224, 224))
        model_name = model_name or (spec.name if spec else type(model).__name__)

    recorder = _Recorder(net, model_name, shape)
    x = torch.empty(1, *shape, device="meta")
    setattr(x, _RF_ATTR, (1, 1, 1, 1))
    try:
        with CarryMode(_RF_ATTR, _merge, "global"):
            stats = torchinfo_summary(
                net, input_data=[x], device="meta", verbose=0, mode="eval",
                col_names=("output_size", "num_params", "trainable"), depth=100,
            )
    except Exception as e:  # torchinfo wraps the real error; dig out ours
        err = _unwrap(e)
        if isinstance(err, InputTooSmallError):
            side = smallest_input(net, shape[0])
            if side is not None:
                text = _("{error} The smallest square input that passes every layer is {smallest}; this model is "
                         "built for exactly {shape}.") if spec is not None and spec.fixed_input else \
                    _("{error} The smallest square input that passes every layer is {smallest}.")
                raise InputTooSmallError(text.format(error=err, smallest=f"{shape[0]}x{side}x{side}",
                                                     shape="x".join(map(str, spec.input_shape if spec else ())))) \
                    from None
            raise err from None
        if isinstance(err, CnnlabError):
            raise err from None
        raise InputSizeError(_("{model} cannot process a {shape} input: {error}").format(
            model=model_name, shape="x".join(map(str, shape)), error=err)) from None
    finally:
        recorder.remove()

    names = {id(m): n for n, m in net.named_modules()}
    counters: dict[int, int] = {}
    uses: dict[int, int] = {}
    for info in stats.summary_list:
        uses[id(info.module)] = uses.get(id(info.module), 0) + 1
    rows: list[LayerRow] = []
    for info in stats.summary_list:
        module = info.module
        key = id(module)
        idx = counters.get(key, 0)
        counters[key] = idx + 1
        calls = recorder.calls.get(key, [])
        rec = calls[idx] if idx < len(calls) else {}
        out_shape = tuple(info.output_size[1:]) if info.output_size else ()
        rf = rec.get("rf")
        geom = rec.get("geometry")
        is_leaf = not any(True for _ in module.children())
        own_params, own_trainable = count_params(module), count_params(module, trainable_only=True)
        name = names.get(key, info.var_name)
        if idx > 0:  # a module used several times (LeNet's one Tanh): its calls as capture names them
            name = f"{name}#{idx + 1}"
        kind = type(module).__name__
        arithmetic = param_arithmetic(module) if idx == 0 and is_leaf else None
        if isinstance(module, nn.Sequential) and len(module) == 0:
            kind = "Identity (empty Sequential)"  # a ResNet's identity shortcut: x passes unchanged
        rows.append(LayerRow(
            name=name,
            type=kind,
            depth=info.depth,
            output_shape=out_shape,
            params=own_params if idx == 0 else 0,  # a module called twice owns its weights once
            trainable=own_trainable if idx == 0 else 0,
            macs=rec.get("macs", 0),
            is_leaf=is_leaf,
            receptive_field=(rf[0], rf[1]) if isinstance(rf, tuple) else None,
            jump=(rf[2], rf[3]) if isinstance(rf, tuple) else None,
            global_rf=rf == "global",
            formula=rec.get("formula"),
            kernel=geom[0] if geom else None,
            stride=geom[1] if geom else None,
            padding=geom[2] if geom else None,
            param_formula=arithmetic[0] if arithmetic else None,
            param_words=arithmetic[1] if arithmetic else None,
        ))
    # containers: MACs are the sum of their leaves' (computed bottom-up over the call order)
    _sum_container_macs(rows)
    leaves = [r for r in rows if r.is_leaf]
    total_params, trainable = count_params(net), count_params(net, trainable_only=True)
    activation_values = 0
    for key, calls in recorder.calls.items():
        activation_values += sum(c.get("numel", 0) for c in calls if not c.get("inplace"))
    out_rows = [r for r in rows if r.depth == 0]
    output_shape = out_rows[0].output_shape if out_rows else (leaves[-1].output_shape if leaves else ())
    notes = []
    if spec is not None and spec.notes:
        notes.append(spec.notes)
    return ModelSummary(
        model_name=model_name,
        input_shape=shape,
        output_shape=output_shape,
        rows=rows,
        total_params=total_params,
        trainable_params=trainable,
        total_macs=sum(r.macs for r in leaves),
        activation_bytes=activation_values * _BYTES_PER_VALUE,
        param_bytes=total_params * _BYTES_PER_VALUE,
        notes=notes,
    )


def _sum_container_macs(rows: list[LayerRow]) -> None:
    # rows are in torchinfo's pre-order: a container is followed by its descendants (deeper rows)
    for i, row in enumerate(rows):
        if row.is_leaf:
            continue
        total = 0
        for later in rows[i + 1:]:
            if later.depth <= row.depth:
                break
            if later.is_leaf:
                total += later.macs
        row.macs = total
