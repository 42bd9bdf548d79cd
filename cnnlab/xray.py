"""The training X-ray: what happens inside a network while it learns, and why it may not.

Every few steps (:func:`choose_every`: often enough for a chart, rarely enough that it costs under 5% of
the training and the run folder grows by at most 2 MB per 10,000 steps) the trainer samples one step
with a :class:`Probe`:

- per layer with weights: the weight norm ``||W||``, the gradient norm ``||dL/dW||`` (unscaled when
  mixed precision scaled the loss), and the update-to-weight ratio ``||W_after - W_before|| / ||W_before||``
  of the step (a rule of thumb wants about 1e-3); batch norm's running mean and variance;
- per call of an activation module (ReLU, tanh, sigmoid): the mean and standard deviation of its
  outputs, the share of dead units (a ReLU channel, or unit, that is zero for the whole batch) and of
  saturated values (a tanh or sigmoid output within 1% of its limits, where its slope is under 0.02).

Hooks are installed only for the sampled steps. Under torchrun every process computes its share and
the sums are exchanged once (the schedule is a pure function of the step number, so all processes
sample the same steps). The samples are :class:`~cnnlab.events.XrayEvent` events, and the first
convolution's kernels at each epoch :class:`~cnnlab.events.KernelsEvent` events: listeners write them
(``xray.jsonl`` and ``kernels.jsonl`` in the run folder, TensorBoard). :func:`diagnose` turns a
series of samples into plain sentences; :func:`read_xray` reads a run folder's files back, bounded.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .activations import first_conv
from .errors import CnnlabError
from .events import KernelsEvent, XrayEvent
from .i18n import _, fmt

# ---- how often ------------------------------------------------------------------------------------

# steps between samples, from the length of the training: a probe costs about 2 ms on LeNet, whose whole step
# takes 3-5 ms on 2 cores (python -m cnnlab bench xray), so every 20 steps costs it about 3%
MIN_EVERY, MAX_EVERY = 20, 100
SAMPLES_WANTED = 100  # about this many samples in a training (a chart's worth)
BYTES_PER_ENTRY = 150  # one layer or activation call in a line of xray.jsonl (4 significant digits)
MAX_BYTES_PER_10K_STEPS = 2 * 2**20
MAX_KERNEL_FILTERS, MAX_KERNEL_IN = 64, 3  # what a kernels snapshot keeps of the first convolution
MAX_KERNEL_SNAPSHOTS = 200

SATURATION = 0.99  # |tanh| or |2 sigmoid - 1| beyond this: the slope is under 0.02
ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.ReLU6: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# ---- what a diagnosis needs -----------------------------------------------------------------------

VANISHING_RATIO = 100.0  # last layer's gradient per weight over the first layer's
SATURATED_SHARE = 0.5
DEAD_SHARE = 0.5
SMALL_UPDATE = 1e-4  # median update-to-weight ratio of the layers
LARGE_UPDATE = 0.1
RULE_OF_THUMB = 1e-3
RECENT = 5  # a diagnosis reads the median of the last samples, not one noisy step

# ---- reading back ---------------------------------------------------------------------------------

MAX_XRAY_BYTES = 64 * 2**20
MAX_KERNELS_BYTES = 64 * 2**20
MAX_ENTRIES = 4096  # layers or activation calls in one sample


def choose_every(total_steps: int, entries: int, requested: int = 0) -> int:
    """Steps between two samples: ``requested`` if given; else about :data:`SAMPLES_WANTED` samples in the
    training, between :data:`MIN_EVERY` and :data:`MAX_EVERY` steps apart, and never so often that ``entries`` per sample would write more
    than :data:`MAX_BYTES_PER_10K_STEPS` per 10,000 steps."""
    if requested:
        return int(requested)
    by_length = min(MAX_EVERY, max(MIN_EVERY, math.ceil(total_steps / SAMPLES_WANTED)))
    by_size = math.ceil(max(entries, 1) * BYTES_PER_ENTRY * 10_000 / MAX_BYTES_PER_10K_STEPS)
    return max(by_length, by_size)


def sampled(step: int, every: int) -> bool:
    """Whether the 1-based ``step`` is sampled: the first, then every ``every``-th."""
    return step == 1 or step % every == 0


# ---- the probe ------------------------------------------------------------------------------------


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers with a trainable ``weight`` of their own, in registration order (about the forward order)."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.requires_grad]


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    return [(n, m, ACTIVATIONS[type(m)]) for n, m in model.named_modules() if type(m) in ACTIVATIONS]


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]


@dataclass(frozen=True)
class Watched:
    """What a probe hooks and measures in a model: found once per training, not at every sampled step."""

    layers: list[tuple[str, nn.Module]]
    activations: list[tuple[str, nn.Module, str]]
    others: list[tuple[str, nn.Module]]  # the other leaves: which layer an activation call comes after

    @classmethod
    def of(cls, model: nn.Module) -> "Watched":
        return cls(weighted_layers(model), activation_modules(model),
                   [(n, m) for n, m in _leaves(model) if type(m) not in ACTIVATIONS])


class NoProbe:
    """A step that is not sampled: every call does nothing."""

    def gradients(self, scale: Any = 1.0) -> None:
        pass

    def updated(self) -> None:
        pass

    def close(self) -> None:
        pass

    def event(self, epoch: int) -> XrayEvent | None:
        return None


class Probe(NoProbe):
    """One sampled step. Created before the forward pass (it hooks the activations), told when the
    gradients are there (:meth:`gradients`, before the optimiser's step) and when the weights have moved
    (:meth:`updated`); :meth:`event` exchanges the sums with the group and builds the event. Always
    :meth:`close` it (the hooks come off)."""

    def __init__(self, model: nn.Module, group: Any, step: int, every: int, watched: Watched | None = None):
        self.model, self.group, self.step, self.every = model, group, step, every
        watched = watched or Watched.of(model)
        self.layers = watched.layers
        self.calls: list[dict[str, Any]] = []  # per activation call: name, kind, after, its sums (tensors)
        self.last_leaf = ""
        self.counts: dict[int, int] = {}
        self.grad: list[torch.Tensor] = []
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []
        self.done = False
        self.handles = [m.register_forward_hook(self._activation_hook(n, kind)) for n, m, kind in watched.activations]
        self.handles += [m.register_forward_hook(self._leaf_hook(n)) for n, m in watched.others]

    def _leaf_hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self.last_leaf = name
        return hook

    def _activation_hook(self, name: str, kind: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim < 2:
                return
            call = self.counts.get(id(module), 0) + 1
            self.counts[id(module)] = call
            with torch.no_grad():
                self.calls.append({"name": name if call == 1 else f"{name}#{call}", "kind": kind,
                                   "after": self.last_leaf, **_activation_sums(output.detach(), kind)})
        return hook

    def gradients(self, scale: Any = 1.0) -> None:
        """Gradient norms (divided by the loss ``scale`` of mixed precision: a number, or the GradScaler, read only
        here, on a sampled step: reading it waits for the GPU), and the weights before the step."""
        if hasattr(scale, "get_scale"):
            scale = scale.get_scale()  # 1.0 when the scaler is disabled
        with torch.no_grad():
            for _name, m in self.layers:
                g = m.weight.grad
                self.grad.append(torch.linalg.vector_norm(g.float()) / scale if g is not None
                                 else torch.zeros((), device=m.weight.device))
                self.before.append(m.weight.detach().clone())

    def updated(self) -> None:
        """The size of each layer's step, once the optimiser has moved the weights."""
        with torch.no_grad():
            self.after = [torch.linalg.vector_norm((m.weight.detach() - w).float())
                          for (_name, m), w in zip(self.layers, self.before)]
            self.before = [torch.linalg.vector_norm(w.float()) for w in self.before]
        self.done = True

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def event(self, epoch: int) -> XrayEvent | None:
        if not self.done:  # the step did not finish (a stop in between): nothing to report
            return None
        device = self.model_device()
        own = [torch.stack(self.before), torch.stack(self.grad), torch.stack(self.after)] if self.layers else []
        own += [torch.stack([c[k] for k in ("sum", "sumsq", "count", "saturated")]) for c in self.calls]
        own += [c["alive"] for c in self.calls]
        flat = torch.cat([t.float().reshape(-1).to(device) for t in own]) if own else torch.zeros(0, device=device)
        summed = self.group.sum(flat, _("summing the X-ray")).cpu()
        world = max(1, int(getattr(self.group, "world", 1)))
        n = len(self.layers)
        # every process holds the same weights and (after DDP's exchange) the same gradients: the sums are
        # `world` times each one's value
        norms = (summed[:3 * n] / world).reshape(3, n).tolist() if n else [[], [], []]
        layers = [_layer_entry(name, m, w, g, u) for (name, m), w, g, u in zip(self.layers, *norms)]
        pos = 3 * n
        stats = summed[pos:pos + 4 * len(self.calls)].reshape(-1, 4).tolist()
        pos += 4 * len(self.calls)
        activations = []
        for c, (s, ss, count, sat) in zip(self.calls, stats):
            units = c["alive"].numel()
            dead = float((summed[pos:pos + units] == 0).float().mean()) if units else 0.0
            pos += units
            activations.append(_activation_entry(c, s, ss, count, sat, dead))
        return XrayEvent(self.step, epoch, layers, activations, self.every)

    def model_device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


def _activation_sums(out: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """This process's sums for one activation call: values, squares, count, saturated values, and per unit
    (a channel of a feature map, a feature of a vector) whether it fired for any image of the batch."""
    x = out.float()
    if kind == "relu":
        saturated = x.new_zeros(())
    else:
        y = x if kind == "tanh" else 2 * x - 1
        saturated = (y.abs() > SATURATION).sum().float()
    # a unit fired if its largest output over the batch (and the positions of a map) is positive
    alive = x.amax(dim=(0, *range(2, x.ndim))) > 0
    return {"sum": x.sum(), "sumsq": torch.linalg.vector_norm(x).square(), "count": x.new_full((), x.numel()),
            "saturated": saturated, "alive": alive.float()}


def _layer_entry(name: str, m: nn.Module, weight: float, grad: float, step: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": type(m).__name__, "n": int(m.weight.numel()),
                             "weight_norm": weight, "grad_norm": grad,
                             "update_ratio": step / weight if weight > 0 else 0.0}
    if isinstance(m, NORMS) and getattr(m, "running_mean", None) is not None:
        entry["bn_mean"] = float(m.running_mean.detach().abs().mean())
        entry["bn_var"] = float(m.running_var.detach().mean())
    return entry


def _activation_entry(c: dict[str, Any], s: float, ss: float, count: float, sat: float, dead: float) -> dict[str, Any]:
    mean = s / count if count else 0.0
    var = max(ss / count - mean * mean, 0.0) if count else 0.0
    return {"name": c["name"], "kind": c["kind"], "after": c["after"], "mean": mean, "std": math.sqrt(var),
            "dead": dead if c["kind"] == "relu" else 0.0,
            "saturated": sat / count if count and c["kind"] != "relu" else 0.0}


class Xray:
    """The trainer's X-ray: which steps to sample, a :class:`Probe` for them, and the kernel snapshots."""

    def __init__(self, model: nn.Module, group: Any, total_steps: int, epochs: int, enabled: bool = True,
                 every: int = 0):
        self.model, self.group, self.enabled = model, group, enabled
        self.watched = Watched.of(model)
        entries = len(self.watched.layers) + 2 * len(self.watched.activations)  # reused modules: about 2 calls
        self.every = choose_every(total_steps, entries, every)
        self.kernel_every = max(1, math.ceil(epochs / MAX_KERNEL_SNAPSHOTS))
        self.epochs = epochs

    def probe(self, step: int) -> NoProbe:
        """A :class:`Probe` for a sampled step, else a :class:`NoProbe`."""
        if self.enabled and sampled(step, self.every):
            return Probe(self.model, self.group, step, self.every, self.watched)
        return NoProbe()

    def kernels(self, epoch: int) -> KernelsEvent | None:
        """The first convolution's kernels after ``epoch`` (0: before training), when it is kept."""
        if not self.enabled or (epoch % self.kernel_every and epoch != self.epochs):
            return None
        return kernels_event(self.model, epoch)


def kernels_event(model: nn.Module, epoch: int) -> KernelsEvent | None:
    """The first 2-D convolution's kernels (at most 64 filters of at most 3 input channels), as bytes."""
    try:
        name, m = first_conv(model)
    except CnnlabError:  # no convolution (an MLP): no kernels to keep
        return None
    w = m.weight.detach()[:MAX_KERNEL_FILTERS, :MAX_KERNEL_IN].float().cpu()
    lo, hi = float(w.min()), float(w.max())
    q = ((w - lo) / (hi - lo) * 255).round() if hi > lo else torch.zeros_like(w)
    data = base64.b64encode(q.to(torch.uint8).numpy().tobytes()).decode("ascii")
    return KernelsEvent(epoch, name, list(w.shape), lo, hi, data)


def kernels_array(event: KernelsEvent | dict[str, Any]) -> np.ndarray:
    """The kernels of a snapshot as floats (filters x channels x kh x kw), back from their bytes."""
    e = event if isinstance(event, dict) else asdict(event)
    shape = [int(v) for v in e["shape"]]
    raw = np.frombuffer(base64.b64decode(e["data"], validate=True), dtype=np.uint8)
    if len(shape) != 4 or raw.size != math.prod(shape):
        raise ValueError(f"a kernels snapshot of {raw.size} values does not fill the shape {shape}")
    lo, hi = float(e["low"]), float(e["high"])
    return lo + raw.reshape(shape).astype(np.float32) / 255.0 * (hi - lo)


# ---- a series of samples, and what it says ---------------------------------------------------------


def _median(values: Iterable[float]) -> float:
    v = [x for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    return statistics.median(v) if v else math.nan


def _recent(samples: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    return samples[-RECENT:]


def _by_name(samples: Sequence[dict[str, Any]], part: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        for entry in s.get(part, []):
            out.setdefault(entry["name"], []).append(entry)
    return out


def _times(ratio: float) -> str:
    return fmt(ratio, ",.0f") if ratio >= 10 else fmt(ratio, ".1f")


def layer_label(name: str, kind: str = "") -> str:
    """A layer's name as a sentence shows it (translated): "S2", or "Linear layer 3" for a bare index in a
    Sequential."""
    bare = name.split("#")[0].replace(".", "").isdigit()
    if bare and kind:
        return _("{kind} layer {name}").format(kind=kind, name=name)
    return _("layer {name}").format(name=name) if bare else name


def diagnose(samples: Sequence[dict[str, Any] | XrayEvent]) -> list[str]:
    """Plain sentences for the clear patterns of the last samples (none when nothing is clear):
    vanishing gradients, saturated tanh/sigmoid units, dead ReLUs, steps far too small or too large."""
    rows = [compact(s) if isinstance(s, XrayEvent) else s for s in samples]
    recent = _recent(rows)
    if not recent:
        return []
    dead = _dead(recent)
    vanishing = _vanishing(recent, blocked=bool(dead))
    # when the gradients vanish, the steps of the first layers are small because of them, not of the learning rate
    return [*vanishing, *_saturated(recent), *dead, *_step_size(recent, small=not vanishing)]


def _vanishing(recent: Sequence[dict[str, Any]], blocked: bool = False) -> list[str]:
    """The first weighted layer's gradient per weight against the last one's; ``blocked``: dead units were found
    (then they are the reason, not the activation function)."""
    layers = _by_name(recent, "layers")
    weights = [n for n, entries in layers.items() if entries[0].get("type") in ("Conv1d", "Conv2d", "Linear")]
    if len(weights) < 3:
        return []
    first, last = weights[0], weights[-1]

    def rms(name: str) -> float:
        return _median(e["grad_norm"] / math.sqrt(max(e.get("n", 1), 1)) for e in layers[name])

    g_first, g_last = rms(first), rms(last)
    if not (g_last > 0 and math.isfinite(g_first)) or g_first * VANISHING_RATIO > g_last:
        return []
    a, b = layer_label(first, layers[first][0].get("type", "")), layer_label(last, layers[last][0].get("type", ""))
    if g_first == 0:
        text = _("The first layer's gradients ({first}) are zero while the last layer's are not: the dead units "
                 "below block them, so the first layers hardly learn.") if blocked else \
            _("The first layer's gradients ({first}) are zero while the last layer's are not: the first layers "
              "hardly learn (vanishing gradients). Activations that keep the gradient (ReLU), batch normalisation "
              "or shortcuts (ResNet) let it through.")
    else:
        text = _("The first layer's gradients ({first}) are {times} times smaller than the last layer's ({last}), "
                 "per weight: the dead units below block them, so the first layers hardly learn.") if blocked else \
            _("The first layer's gradients ({first}) are {times} times smaller than the last layer's ({last}), per "
              "weight: the first layers hardly learn (vanishing gradients). Activations that keep the gradient "
              "(ReLU), batch normalisation or shortcuts (ResNet) let it through.")
    return [text.format(first=a, last=b, times=_times(g_last / g_first) if g_first else "")]


def _shares(recent: Sequence[dict[str, Any]], kinds: tuple[str, ...], key: str, threshold: float
            ) -> list[tuple[float, dict[str, Any]]]:
    """(median share, last entry) of the activation calls of ``kinds`` whose ``key`` share reaches ``threshold``."""
    found = []
    for entries in _by_name(recent, "activations").values():
        if entries[0].get("kind") in kinds:
            share = _median(e.get(key, 0.0) for e in entries)
            if share >= threshold:
                found.append((share, entries[-1]))
    return found


def _listed(found: list[tuple[float, dict[str, Any]]]) -> str:
    """"74% of the tanh units after S2", or "68% of the tanh units after S2, 60% after S4" (translated)."""
    (share, first), rest = found[0], found[1:]
    head = _("{share} of the {kind} units after {layer}") if first.get("after") else \
        _("{share} of the {kind} units of {layer}")
    items = [head.format(share=fmt(share, ".0%"), kind=first["kind"], layer=_where(first))]
    for s, e in rest:
        text = _("{share} after {layer}") if e.get("after") else _("{share} of {layer}")
        items.append(text.format(share=fmt(s, ".0%"), layer=_where(e)))
    return ", ".join(items)


def _where(entry: dict[str, Any]) -> str:
    """The layer an activation call's share is about: the layer it follows, else its own."""
    return layer_label(entry["after"]) if entry.get("after") else layer_label(entry["name"])


def _saturated(recent: Sequence[dict[str, Any]]) -> list[str]:
    found = _shares(recent, ("tanh", "sigmoid"), "saturated", SATURATED_SHARE)
    if not found:
        return []
    return [_("{units} are saturated: their output is within 1% of its limits, where the slope is almost zero, so "
              "little gradient passes through them. Smaller initial weights, normalised inputs or ReLU "
              "help.").format(units=_listed(found))]


def _dead(recent: Sequence[dict[str, Any]]) -> list[str]:
    found = _shares(recent, ("relu",), "dead", DEAD_SHARE)
    if not found:
        return []
    return [_("{units} never fire (zero for every image of a batch: dead ReLUs); they pass no gradient, so they "
              "stay dead. A smaller learning rate, another initialisation or a leaky ReLU help.").format(
        units=_listed(found))]


def _step_size(recent: Sequence[dict[str, Any]], small: bool = True) -> list[str]:
    layers = _by_name(recent, "layers")
    per_layer = [_median(e["update_ratio"] for e in entries) for entries in layers.values()]
    ratio = _median(per_layer)
    if not math.isfinite(ratio) or ratio == 0:
        return []
    if ratio < SMALL_UPDATE and small:
        return [_("Each step changes the weights by {ratio} of their size (the median of the layers): the learning "
                  "rate is far too small for this network (a rule of thumb is about {rule}).").format(
            ratio=f"{ratio:.0e}", rule=f"{RULE_OF_THUMB:.0e}")]
    if ratio > LARGE_UPDATE:
        return [_("Each step changes the weights by {ratio} of their size (the median of the layers): the learning "
                  "rate is too large, the weights jump around (a rule of thumb is about {rule}).").format(
            ratio=fmt(ratio, ".0%"), rule=f"{RULE_OF_THUMB:.0e}")]
    return []


# ---- the run folder's files -----------------------------------------------------------------------


def _short(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.4g}") if math.isfinite(v) else None
    return v


def compact(event: XrayEvent) -> dict[str, Any]:
    """The event as one line of ``xray.jsonl``: numbers to 4 significant digits (built directly: ``asdict``'s
    deep copy of every entry cost more than the sample itself)."""
    return {"step": event.step, "epoch": event.epoch,
            "layers": [{k: _short(v) for k, v in e.items()} for e in event.layers],
            "activations": [{k: _short(v) for k, v in e.items()} for e in event.activations],
            "every": event.every, "kind": event.kind}


@dataclass
class XrayRecord:
    """A run's X-ray as read back: the samples, the kernel snapshots, and what could not be read."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    kernels: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def diagnoses(self) -> list[str]:
        return diagnose(self.samples)

    def series(self) -> dict[str, Any]:
        """Per layer and per activation call, the values over the sampled steps (for charts and ``--json``)."""
        steps = [s["step"] for s in self.samples]
        layers: dict[str, dict[str, list[Any]]] = {}
        acts: dict[str, dict[str, list[Any]]] = {}
        for i, s in enumerate(self.samples):
            for part, target, keys in (("layers", layers, ("weight_norm", "grad_norm", "update_ratio")),
                                       ("activations", acts, ("mean", "std", "dead", "saturated"))):
                for e in s.get(part, []):
                    row = target.setdefault(e["name"], {"step": [], **{k: [] for k in keys}})
                    row["step"].append(steps[i])
                    for k in keys:
                        row[k].append(e.get(k))
        return {"steps": steps, "layers": layers, "activations": acts}


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _valid_sample(obj: Any) -> bool:
    if not isinstance(obj, dict) or not isinstance(obj.get("step"), int):
        return False
    layers, acts = obj.get("layers"), obj.get("activations")
    if not isinstance(layers, list) or not isinstance(acts, list) or len(layers) + len(acts) > MAX_ENTRIES:
        return False
    need = (("weight_norm", "grad_norm", "update_ratio"), ("mean", "std", "dead", "saturated"))
    for entries, keys in zip((layers, acts), need):
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("name"), str) or \
                    not all(_number(e.get(k)) for k in keys):
                return False
    return True


def _valid_kernels(obj: Any) -> bool:
    try:
        kernels_array(obj)
        return isinstance(obj.get("epoch"), int) and isinstance(obj.get("layer"), str)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _read_lines(path: Path, limit: int, valid: Any, what: str, problems: list[str]) -> list[dict[str, Any]]:
    if not path.is_file() or path.is_symlink():
        return []
    if path.stat().st_size > limit:
        problems.append(_("{file} is larger than {limit} MB: not read.").format(file=path.name, limit=limit // 2**20))
        return []
    out, bad = [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except (UnicodeDecodeError, ValueError):
                obj = None
            if valid(obj):
                out.append(obj)
            elif line.strip():
                bad += 1
    if bad:
        problems.append(_("{count} line(s) of {file} could not be read as {what}: left out.").format(
            count=bad, file=path.name, what=what))
    return out


def read_xray(folder: str | Path) -> XrayRecord:
    """The X-ray files of a run folder (``xray.jsonl``, ``kernels.jsonl``), each line checked; a missing
    file is an empty series (a run trained before the X-ray, or with it off)."""
    folder, problems = Path(folder), []
    samples = _read_lines(folder / "xray.jsonl", MAX_XRAY_BYTES, _valid_sample, _("an X-ray sample"), problems)
    kernels = _read_lines(folder / "kernels.jsonl", MAX_KERNELS_BYTES, _valid_kernels, _("a kernels snapshot"),
                          problems)
    return XrayRecord(sorted(samples, key=lambda s: s["step"]), sorted(kernels, key=lambda k: k["epoch"]), problems)
