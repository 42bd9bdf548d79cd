"""One training written out in plain PyTorch: the loop, the optimiser, the scheduler, the arm's code.

The loop is cnnlab's (``cnnlab.train.Training``) as a student would write it: the images shuffled by a
generator seeded with the run's seed, each batch through the input pipeline (augmentation drawn from
a second generator), cross-entropy on the raw scores, the optimiser's step, the scheduler by step or
by epoch, validation after each epoch, the best weights kept. Mixed precision, the X-ray, the thread
governor and the events are left out: they change how fast it runs, not what it learns.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import TrainConfig
from ..data.pipeline import eval_resize_of
from ..models import get_spec
from ..models.pretrained import get_pretrained_spec
from ..train import init_weights
from .closure import Closure
from .datacode import Shapes, load_call, pipeline_call, stats_line

TRAINING = '''
def steps_per_epoch(n_train, batch_size):
    """Optimiser steps in one pass over n_train images (a last batch of a single image is dropped: batch
    norm cannot learn from one image)."""
    if n_train <= 1:
        return 1
    full, rest = divmod(n_train, batch_size)
    return max(1, full) if rest == 1 else full + (1 if rest else 0)


def evaluate(model, images, labels, eval_batch, batch_size):
    """Mean loss, top-1 and top-5 accuracy on a split: eval mode (no dropout, batch norm's running
    statistics), no gradients."""
    model.eval()
    loss_sum, hits1, hits5 = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = model(eval_batch(images[start:start + batch_size])).float()
            y = labels[start:start + batch_size].to(device)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # the five highest scores
            hits1 += (top[:, 0] == y).sum().item()
            hits5 += (top == y[:, None]).any(dim=1).sum().item()
    return loss_sum / len(labels), hits1 / len(labels), hits5 / len(labels)


def train_val_model(model, optimizer, scheduler, scheduler_every, data, pipeline, epochs, batch_size, seed,
                    eval_batch_size, max_steps=None):
    """Train for `epochs` passes over the training images, validating after each; returns the model with
    its best validation weights, and one dict of measurements per epoch."""
    train_x, train_y, val_x, val_y = data
    train_batch, eval_batch = pipeline
    shuffle = torch.Generator().manual_seed(seed)  # the order of the images, epoch after epoch
    augment = torch.Generator(device=device).manual_seed(seed + 1)  # the random augmentations
    per_epoch = steps_per_epoch(len(train_y), batch_size)
    total = per_epoch * epochs if max_steps is None else min(per_epoch * epochs, max_steps)
    history, best_top1, best_state, step, diverged = [], None, None, 0, False
    for epoch in range(1, epochs + 1):
        model.train()  # dropout on; batch norm normalises with each batch and updates its statistics
        start, loss_sum, hits, seen = time.perf_counter(), 0.0, 0, 0
        order = torch.randperm(len(train_y), generator=shuffle)
        for i in range(per_epoch):
            if step >= total:
                break
            idx = order[i * batch_size:(i + 1) * batch_size]
            x, y = train_batch(train_x[idx], augment), train_y[idx].to(device)
            logits = model(x)  # raw scores, one per class
            loss = F.cross_entropy(logits.float(), y)  # softmax and negative log-likelihood in one
            if not torch.isfinite(loss):  # a step far too large: the numbers overflowed
                print(f"diverged at step {step + 1}: the loss is {loss.item()}")
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # the gradient of the loss for every weight
            optimizer.step()  # one step of the optimiser
            if scheduler_every == "step" and step < total - 1:
                scheduler.step()
            step += 1
            loss_sum += loss.item() * len(y)
            hits += (logits.argmax(dim=1) == y).sum().item()
            seen += len(y)
        if diverged or seen == 0:
            break
        seconds = time.perf_counter() - start
        val_loss, val_top1, val_top5 = evaluate(model, val_x, val_y, eval_batch, eval_batch_size)
        if scheduler_every == "epoch":
            scheduler.step()
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_top1": hits / seen,
                        "val_loss": val_loss, "val_top1": val_top1, "val_top5": val_top5, "seconds": seconds})
        if best_top1 is None or val_top1 > best_top1:  # keep a copy of the best weights so far
            best_top1, best_state = val_top1, copy.deepcopy(model.state_dict())
        print(f"epoch {epoch}/{epochs}: train loss {loss_sum / seen:.4f}, train top-1 {hits / seen:.2%}, "
              f"val loss {val_loss:.4f}, val top-1 {val_top1:.2%} ({seconds:.1f} s)")
        if step >= total:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, history
'''


@dataclass
class ArmCode:
    """The code of one training, by step: load the data, prepare the input pipeline, build the model,
    choose the optimiser, train."""

    data: str
    pipeline: str
    model: str
    optimizer: str
    train: str


def add_training_code(closure: Closure, configs: list[TrainConfig]) -> None:
    """The training loop's definitions (and cnnlab's initialisation, if an arm asks for one)."""
    closure.define("device")  # set by the notebook's first cell
    closure.import_line("import copy")
    closure.import_line("import time")
    if any(c.init != "default" for c in configs):
        closure.add(init_weights)
    closure.add_source(TRAINING)


def eval_resize(config: TrainConfig) -> float:
    """The evaluation margin of the model (ImageNet weights' 256/224 for a transfer model, else 1)."""
    spec = get_spec(config.model)
    if spec.family != "transfer":
        return 1.0
    return eval_resize_of(get_pretrained_spec(spec.name.removesuffix("_transfer")).transforms())


def arm_code(config: TrainConfig, shapes: Shapes, build: str, start: list[str] | None = None) -> ArmCode:
    """``config``'s training as notebook code. ``build``: the statements that create ``model``; ``start``:
    lines run after the model is built (the weights it starts from)."""
    seed = config.seed
    data = "\n".join([
        f"{load_call(config)}  # {config.dataset}",
        'print(f"{len(train_y)} training and {len(val_y)} validation images of {tuple(train_x.shape[1:])}, '
        '{len(classes)} classes")',
    ])
    pipeline = "\n".join([stats_line(shapes), pipeline_call(config, shapes, eval_resize(config))])
    model_lines = [f"torch.manual_seed({seed})  # the initial weights (and later the dropout masks) come from the seed",
                   build]
    if config.init != "default":
        model_lines.append(f"init_weights(model, {config.init!r})  # weight initialisation: {config.init}")
    model_lines += [*(start or []),
                    "model = model.to(device, memory_format=torch.channels_last)  # the layout convolutions run "
                    "fastest in",
                    'print(f"{sum(p.numel() for p in model.parameters()):,} parameters, '
                    '{sum(p.numel() for p in model.parameters() if p.requires_grad):,} of them trained")']
    train = (f"model, history = train_val_model(model, optimizer, scheduler, scheduler_every, "
             f"(train_x, train_y, val_x, val_y), (train_batch, eval_batch), epochs={config.epochs}, "
             f"batch_size={config.batch_size}, seed={seed}, "
             f"eval_batch_size={config.eval_batch_size or min(2 * config.batch_size, 1024)}"
             + (f", max_steps={config.max_steps}" if config.max_steps else "") + ")")
    return ArmCode(data, pipeline, "\n".join(model_lines), optimizer_code(config), train)


def optimizer_code(config: TrainConfig) -> str:
    """The optimiser over the weights that learn, and the learning-rate schedule with when it steps."""
    params = "[p for p in model.parameters() if p.requires_grad]"
    rest = (f", weight_decay={config.weight_decay!r}" if config.weight_decay else "") + ", fused=True"
    fused = "fused: one step for all the weights at once"
    if config.optimizer == "sgd":
        line = f"optimizer = torch.optim.SGD({params}, lr={config.lr!r}{rest})  # plain gradient descent ({fused})"
    elif config.optimizer == "momentum":
        nesterov = ", nesterov=True" if config.nesterov and config.momentum > 0 else ""
        line = (f"optimizer = torch.optim.SGD({params}, lr={config.lr!r}, momentum={config.momentum!r}{nesterov}"
                f"{rest})  # SGD with momentum ({fused})")
    else:
        kind = "Adam" if config.optimizer == "adam" else "AdamW"
        line = f"optimizer = torch.optim.{kind}({params}, lr={config.lr!r}{rest})  # {kind} ({fused})"
    lines = [line]
    total = (f"min(steps_per_epoch(len(train_y), {config.batch_size}) * {config.epochs}, {config.max_steps})"
             if config.max_steps else f"steps_per_epoch(len(train_y), {config.batch_size}) * {config.epochs}")
    if config.scheduler == "step":
        lines.append(f"scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size={config.step_size}, "
                     f"gamma={config.gamma!r})  # the learning rate times {config.gamma:g} every "
                     f"{config.step_size} epochs")
        lines.append('scheduler_every = "epoch"')
    elif config.scheduler in ("cosine", "onecycle"):
        lines.append(f"total_steps = {total}  # optimiser steps in the whole training")
        lines.append("scheduler = torch.optim.lr_scheduler." + (
            "CosineAnnealingLR(optimizer, T_max=max(1, total_steps))  # the learning rate follows a half cosine to 0"
            if config.scheduler == "cosine" else
            f"OneCycleLR(optimizer, max_lr={config.lr!r}, total_steps=max(1, total_steps))  # up, then down"))
        lines.append('scheduler_every = "step"')
    else:
        lines.append('scheduler, scheduler_every = None, ""  # a constant learning rate')
    return "\n".join(lines)
