"""The training loop's three helpers, lifted out of it: :class:`Meter` (loss and accuracy kept on the
device, throughput, ETA), :class:`DivergenceGuard` (when a training has diverged, and what to try) and
:class:`Best` (the best validation accuracy and its weights)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import distributed
from .config import TrainConfig
from .events import EpochEvent, StepEvent
from .i18n import N_, _, fmt

EXPLODED = 20.0  # a loss this many times the loss of guessing at random means the training diverged


class Meter:
    """Loss and top-1/top-5 counts of a window (for step events) and of the epoch, kept on the
    device; images per second over training time only; ETA.

    With a process ``group`` (data-parallel training) each process counts its own images and the
    counts are summed over the processes whenever an event is made, so every event is about all the
    images of the step or the epoch, each counted once."""

    def __init__(self, device: torch.device, num_classes: int, total_steps: int, config: TrainConfig,
                 group: distributed.Group):
        self.device, self.k, self.total_steps, self.config = device, min(5, num_classes), total_steps, config
        self.group = group
        self.t_start = self.t_loop = time.perf_counter()
        self.train_time, self.images = 0.0, 0
        self.other_images = 0  # images the other processes trained on (known at each step event)
        self.last_t, self.last_step = self.t_start, 0
        self.window = self._zeros()
        self.epoch = self._zeros()
        self.history: list[EpochEvent] = []

    def _zeros(self) -> list[torch.Tensor]:  # loss sum, top-1 hits, top-5 hits, images
        return [torch.zeros((), device=self.device, dtype=d) for d in (torch.float64, torch.int64, torch.int64, torch.int64)]

    def start_epoch(self) -> None:
        self.epoch, self.t_epoch = self._zeros(), time.perf_counter()

    def end_epoch(self) -> None:
        self.train_time += time.perf_counter() - self.t_epoch

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = int(y.shape[0])
        top = logits.topk(self.k, dim=1).indices
        values = (loss.double() * n, (top[:, 0] == y).sum(), (top == y[:, None]).any(dim=1).sum())
        for acc in (self.window, self.epoch):
            for total, v in zip(acc, values):
                total += v
            acc[3] += n
        self.images += n

    def due(self, step: int) -> bool:
        if self.config.log_every_steps:
            return step - self.last_step >= self.config.log_every_steps
        return time.perf_counter() - self.last_t >= self.config.log_interval_s

    def images_per_sec(self, now: float | None = None) -> float:
        t = self.train_time + ((now - self.t_epoch) if now is not None else 0.0)
        return (self.images + self.other_images) / t if t > 0 else 0.0

    def _summed(self, acc: list[torch.Tensor]) -> list[float]:
        """The four counters of ``acc``, summed over the processes of the group."""
        return self.group.sum(torch.stack([v.double() for v in acc])).cpu().tolist()

    def step_event(self, epoch: int, step: int, lr: float) -> "StepEvent":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        own = int(self.window[3])
        loss, c1, _, n = self._summed(self.window)
        self.other_images += int(n) - own
        now = time.perf_counter()
        eta = (now - self.t_loop) / step * (self.total_steps - step)
        self.window, self.last_t, self.last_step = self._zeros(), now, step
        return StepEvent(epoch, step, self.total_steps, loss / max(n, 1), c1 / max(n, 1), float(lr),
                         self.images_per_sec(now), now - self.t_start, eta)

    def reduce_epoch(self) -> int:
        """At the end of an epoch: the epoch's counters summed over the processes; the images trained on."""
        self.epoch_totals = self._summed(self.epoch)
        return int(self.epoch_totals[3])

    def epoch_event(self, epoch: int, step: int, val: dict[str, Any], lr: float, is_best: bool) -> "EpochEvent":
        loss, c1, c5, n = self.epoch_totals
        now = time.perf_counter()
        count = float(val["count"])
        event = EpochEvent(
            epoch=epoch, step=step, train_loss=loss / n, train_top1=c1 / n, train_top5=c5 / n,
            val_loss=float(val["loss_sum"]) / count, val_top1=float(val["correct1"]) / count,
            val_top5=float(val["correct5"]) / count, lr=float(lr), images_per_sec=self.images_per_sec(),
            elapsed=now - self.t_start, eta=(now - self.t_loop) / epoch * (self.config.epochs - epoch), is_best=is_best,
            train_images=int(n), train_seconds=self.train_time,
        )
        self.history.append(event)
        return event


# The first epoch's mean loss includes the start, which can be well above guessing and then fall: MiniAlexNet
# V4 with Adam at 1e-3, 2.1-2.6 against 1.39 for 4 classes; a pretrained network with a fresh head on features
# of large magnitude, 5-6 against 1.10 for 3 classes. After one epoch only a mean loss this many times worse
# than guessing counts as stuck (a window of steps above EXPLODED times guessing is caught at once anyway).
FIRST_EPOCH_WORSE = EXPLODED / 2


def _shown(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")


# What a loss did, per loss the guard watches (a window of steps, an epoch's training, the validation): a loss
# that became NaN or infinite, and one that rose far above guessing.
_LOSS_TEXTS = {
    "window": (N_("the loss became {value} by step {step} (epoch {epoch})"),
               N_("the loss rose to {value} by step {step} (epoch {epoch}), {times} times the {chance} of guessing "
                  "at random")),
    "train": (N_("the training loss became {value} in epoch {epoch}"),
              N_("the training loss rose to {value} in epoch {epoch}, {times} times the {chance} of guessing at "
                 "random")),
    "val": (N_("the validation loss became {value} after epoch {epoch}"),
            N_("the validation loss rose to {value} after epoch {epoch}, {times} times the {chance} of guessing at "
               "random")),
}


class DivergenceGuard:
    """Decides that a training diverged, and says what happened and what to try. Every loss the loop
    sees goes through :meth:`loss`: each step event's, each epoch's training and validation losses.

    - a loss that is not finite: each step's loss is checked through the processes' agreement
      (:class:`cnnlab.distributed.StepAgreement`; on CUDA step k's flag is read while step k+1 is
      already queued, ``lag`` 1, since reading it at once would stall the GPU's queue);
    - a loss that explodes: above :data:`EXPLODED` times the loss of guessing at random, ln(classes)
      (LeNet at learning rate 10 with SGD: 150 against 2.3), whether in a window of steps, over an
      epoch, or on the validation images (a run of a few steps never makes a window of its own);
    - stuck at chance: after an epoch, validation top-1 no better than guessing and a training
      loss worse than guessing, rising.
    """

    def __init__(self, config: TrainConfig, num_classes: int):
        self.config, self.classes = config, num_classes
        self.chance_loss = math.log(max(num_classes, 2))
        self.last_train_loss: float | None = None

    def not_finite(self, step: int, epoch: int, value: float | None = None) -> str:
        """The message for a loss that became NaN or infinite (``value`` None: in another process)."""
        if value is None:
            what = _("the loss became NaN or infinite in one of the processes at step {step} (epoch {epoch})")
        else:
            what = _("the loss became {value} at step {step} (epoch {epoch})")
        return self._message(what.format(value=_shown(value) if value is not None else "", step=step, epoch=epoch))

    def loss(self, value: float, kind: str, epoch: int, step: int = 0) -> str | None:
        """The message if ``value`` (a mean loss, on the host) is not finite or has exploded; ``kind``: which
        loss (a key of :data:`_LOSS_TEXTS`)."""
        became, rose = _LOSS_TEXTS[kind]
        if not math.isfinite(value):
            return self._message(_(became).format(value=_shown(value), step=step, epoch=epoch))
        if value > EXPLODED * self.chance_loss:
            return self._message(_(rose).format(value=fmt(value, ".4g"), step=step, epoch=epoch,
                                                times=fmt(value / self.chance_loss, ".3g"),
                                                chance=fmt(self.chance_loss, ".2f")))
        return None

    def window(self, event: "StepEvent") -> str | None:
        """After a step event: has the loss exploded? (A loss that is not finite is left to the check of
        its own step, which says which step it was, even when the flags are read a step late.)"""
        if not math.isfinite(event.loss):
            return None
        return self.loss(event.loss, "window", event.epoch, event.step)

    def epoch(self, event: "EpochEvent") -> str | None:
        """After an epoch's validation: an exploded loss, or stuck at chance with a loss worse than
        guessing, and rising?"""
        for value, kind in ((event.train_loss, "train"), (event.val_loss, "val")):
            if (bad := self.loss(value, kind, event.epoch)) is not None:
                return bad
        rising = self.last_train_loss is not None and event.train_loss > self.last_train_loss
        self.last_train_loss = event.train_loss
        if (event.val_top1 <= 1.2 / self.classes and event.train_loss > 1.5 * self.chance_loss
                and (rising or (event.epoch == 1 and event.train_loss > FIRST_EPOCH_WORSE * self.chance_loss))):
            what = _("after epoch {epoch} the validation accuracy is {accuracy}, no better than guessing among "
                     "{classes} classes, and the training loss ({loss}) is worse than guessing ({chance}) and "
                     "rising") if rising else \
                _("after epoch {epoch} the validation accuracy is {accuracy}, no better than guessing among {classes} "
                  "classes, and the training loss ({loss}) is worse than guessing ({chance})")
            return self._message(what.format(epoch=event.epoch, accuracy=fmt(event.val_top1, ".1%"),
                                             classes=self.classes, loss=fmt(event.train_loss, ".3g"),
                                             chance=fmt(self.chance_loss, ".2f")))
        return None

    def _message(self, what: str) -> str:
        c = self.config
        text = _("diverged: {what}; training stopped there. Try a lower learning rate (now {lr}; e.g. {lower}), the "
                 "adam optimizer or a model with batch normalisation.") if c.optimizer != "adam" else \
            _("diverged: {what}; training stopped there. Try a lower learning rate (now {lr}; e.g. {lower}) or a "
              "model with batch normalisation.")
        return text.format(what=what, lr=fmt(c.lr, "g"), lower=fmt(c.lr / 10, "g"))


@dataclass
class Best:
    """The best validation top-1 so far and a copy of the weights that reached it."""

    top1: float | None = None
    epoch: int | None = None
    state: dict[str, torch.Tensor] | None = None

    def offer(self, top1: float, epoch: int, model: nn.Module) -> bool:
        if self.top1 is not None and top1 <= self.top1:
            return False
        self.top1, self.epoch = top1, epoch
        self.keep(model)
        return True

    def keep(self, model: nn.Module) -> None:
        """A copy of ``model``'s weights as they are now."""
        self.state = {k: t.detach().clone() for k, t in model.state_dict().items()}
