"""TensorBoard for every run (seed 001 teaches it): one more listener of the trainer.

:class:`TensorBoardRecorder` writes, through ``torch.utils.tensorboard`` (no hand-written event
files), into the run's own folder, so ``tensorboard --logdir models_cache/runs`` shows every run:

- scalars: train loss and top-1 (per step event and per epoch), validation loss, top-1 and
  top-5, learning rate, images per second;
- a grid of training images (as stored, before augmentation) with their class names;
- the model graph (traced once on one input);
- per-class precision-recall curves of the final model on the validation split;
- the training X-ray (:mod:`cnnlab.xray`): per layer its gradient norm, weight norm and update ratio, per
  activation its dead or saturated share (scalars), a histogram of the update ratios (log10) over the
  layers at each sample, and the first convolution's kernels at each epoch (a histogram of their values).

Nothing here can stop a training: a failure is logged and the recorder goes quiet.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid

from .models import evaluating
from .events import KernelsEvent, XrayEvent
from .train import EndEvent, EpochEvent, Prepared, Recorder, StepEvent
from .xray import kernels_array

log = logging.getLogger(__name__)

MAX_PR_CLASSES = 102  # Caltech101's classes all get their curve
MAX_PR_IMAGES = 4096
GRID_IMAGES = 32


class TensorBoardRecorder(Recorder):
    """Writes a run's TensorBoard log into ``log_dir`` (default: the run folder, set by
    :class:`cnnlab.runs.RunRecorder`, which must come first in the listeners)."""

    def __init__(self, log_dir: str | Path | None = None, graph: bool = True, pr_curves: bool = True):
        self.log_dir, self.graph, self.pr_curves = log_dir, graph, pr_curves
        self.writer: Any = None

    def begin(self, setup: Prepared) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when a run logs

        target = self.log_dir or setup.run_dir
        if target is None:
            log.info("TensorBoardRecorder: no run folder and no log_dir; nothing is written.")
            return
        self.writer = SummaryWriter(log_dir=str(target))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in vars(setup.config).items()))
        self._images(setup)
        if self.graph:
            self._graph(setup)

    def _images(self, setup: Prepared) -> None:
        images = setup.train_x[:GRID_IMAGES].detach().cpu()
        labels = setup.train_y[:GRID_IMAGES].detach().cpu().tolist()
        grid = make_grid(images.float() / 255.0, nrow=8, padding=2)
        self.writer.add_image("train images", grid, 0)
        self.writer.add_text("train images", ", ".join(setup.classes[i] for i in labels))

    def _graph(self, setup: Prepared) -> None:
        try:  # tracing runs one forward pass: in eval mode, so that no batch-norm statistics move
            x = setup.val_pipe.eval_batch(setup.val_x[:1])
            with evaluating(setup.model) as model, torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing's deprecation and TracerWarnings: not the user's concern
                self.writer.add_graph(model, x)
        except Exception as e:  # noqa: BLE001 - some models cannot be traced; the rest of the log can
            log.info("TensorBoard graph of %s not written: %s", setup.config.model, e)

    def __call__(self, event: Any) -> None:
        w = self.writer
        if w is None:
            return
        if isinstance(event, StepEvent):
            w.add_scalar("loss/train (window)", event.loss, event.step)
            w.add_scalar("top1/train (window)", event.top1, event.step)
            w.add_scalar("learning rate", event.lr, event.step)
            w.add_scalar("images per second", event.images_per_sec, event.step)
        elif isinstance(event, EpochEvent):
            for name, value in (("loss/train", event.train_loss), ("loss/val", event.val_loss),
                                ("top1/train", event.train_top1), ("top1/val", event.val_top1),
                                ("top5/val", event.val_top5)):
                w.add_scalar(name, value, event.epoch)
            w.flush()
        elif isinstance(event, XrayEvent):
            self._xray(event)
        elif isinstance(event, KernelsEvent):
            w.add_histogram(f"kernels/{event.layer}", kernels_array(event), event.epoch)

    def _xray(self, event: XrayEvent) -> None:
        w, step = self.writer, event.step
        for layer in event.layers:
            for key in ("grad_norm", "weight_norm", "update_ratio"):
                w.add_scalar(f"xray {key}/{layer['name']}", layer[key], step)
        for act in event.activations:
            key = "dead" if act["kind"] == "relu" else "saturated"
            w.add_scalar(f"xray {key} share/{act['name']}", act[key], step)
        ratios = [math.log10(layer["update_ratio"]) for layer in event.layers if layer["update_ratio"] > 0]
        if ratios:
            w.add_histogram("xray log10 update ratio (layers)", torch.tensor(ratios), step)

    def finish(self, setup: Prepared, end: EndEvent) -> None:
        w = self.writer
        if w is None:
            return
        try:
            if self.pr_curves and end.status in ("finished", "cancelled") and end.steps > 0:
                probs, labels = setup.val_probabilities(limit=MAX_PR_IMAGES)
                for c, name in enumerate(setup.classes[:min(MAX_PR_CLASSES, probs.shape[1])]):
                    w.add_pr_curve(f"precision-recall/{c:03d} {name}", labels == c, probs[:, c], global_step=end.steps,
                                   num_thresholds=101)
            w.add_text("end", f"{end.status}: {end.message}")
        finally:
            w.close()
            self.writer = None
