"""A trained model leaves cnnlab: ONNX (onnxruntime, other languages) and TorchScript (torch without the
class code), each carrying what a program needs to feed it: the class names, the input shape and the
normalisation (ONNX: ``metadata_props``; TorchScript: the extra file ``cnnlab.json``).

The model is the run's best weights in eval mode on the CPU; both files take a float32 batch
``N x C x H x W`` (any N) already prepared as cnnlab prepares an image: pixels in [0, 1], resized
(shorter side, then the centre) to ``H x W``, each channel minus ``mean`` over ``std``, and return one raw
score per class (no softmax).
"""

from __future__ import annotations

import io
import json
import re
import warnings
from typing import Any

import torch
from torch import nn

from ..data.pipeline import model_eval_resize
from ..errors import CnnlabError
from ..i18n import _
from ..runs import Run, load_model, load_run
from .closure import ExportError

EXTRA_FILE = "cnnlab.json"  # the TorchScript extra file that holds the metadata


def metadata(run: Run, model: nn.Module) -> dict[str, Any]:
    """What a program needs to use the exported model, from the run's ``meta.json``."""
    meta = run.meta
    shape = [int(v) for v in meta.get("input_shape") or getattr(model, "cnnlab_input_shape", ())]
    if len(shape) != 3:
        raise ExportError(_("run {run}'s meta.json does not record its input shape; it cannot be exported.").format(
            run=run.run_id))
    mean, std = meta.get("model_mean"), meta.get("model_std")
    if not (mean and std):
        raise ExportError(_("run {run}'s meta.json does not record its normalisation (model_mean, model_std); it "
                            "cannot be exported.").format(run=run.run_id))
    resize = model_eval_resize(model)
    return {
        "producer": "cnnlab", "run_id": run.run_id, "model": meta.get("model"), "dataset": meta.get("dataset"),
        "classes": list(meta.get("classes") or []), "input_shape": shape, "mean": list(mean), "std": list(std),
        "eval_resize": resize, "best_val_top1": run.best_val_top1,
        "preprocessing": (f"float32 N x {shape[0]} x {shape[1]} x {shape[2]}: pixels scaled to [0, 1], the shorter "
                          f"side resized to {round(resize * min(shape[1:]))} and the centre {shape[1]}x{shape[2]} "
                          "cut, then (x - mean) / std per channel; the output is one raw score (logit) per class"),
    }


def _prepared(run_id: str) -> tuple[Run, nn.Module, dict[str, Any], torch.Tensor]:
    run = load_run(run_id)
    model = load_model(run.run_id, "cpu").float()
    meta = metadata(run, model)
    example = torch.zeros(2, *meta["input_shape"])
    return run, model, meta, example


def onnx_bytes(run_id: str) -> bytes:
    """The run's model as an ONNX file (dynamic batch size) with the metadata in ``metadata_props``."""
    run, model, meta, example = _prepared(run_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        verbose=False)
        proto = program.model_proto
    except (CnnlabError, RuntimeError, ValueError, TypeError, NotImplementedError, ImportError) as e:
        raise ExportError(_("the model of run {run} ({model}) cannot be exported to ONNX: {error}").format(
            run=run.run_id, model=meta["model"], error=_first_line(e))) from None
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    proto.doc_string = f"cnnlab run {run.run_id}: {meta['model']} on {meta['dataset']}. {meta['preprocessing']}."
    return proto.SerializeToString()


def torchscript_bytes(run_id: str) -> bytes:
    """The run's model traced to TorchScript, the metadata in the extra file ``cnnlab.json``."""
    run, model, meta, example = _prepared(run_id)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export: still loadable
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(meta)})
    except (CnnlabError, RuntimeError, ValueError, TypeError, NotImplementedError) as e:
        raise ExportError(_("the model of run {run} ({model}) cannot be traced to TorchScript: {error}").format(
            run=run.run_id, model=meta["model"], error=_first_line(e))) from None
    return buffer.getvalue()


def _first_line(e: BaseException) -> str:
    """The error's first line, and its cause's (the exporter wraps the reason), without terminal colours."""
    parts = []
    for err in (e, e.__cause__):
        if err is not None:
            lines = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
            parts.append((lines[0][:300] if lines else type(err).__name__).rstrip("."))
    return ": ".join(parts) + "."
