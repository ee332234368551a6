"""The short training runs some checks need, each on a fresh model and its own copy of everything.

- `overfit_batch`: two sequences, the run's optimizer and lr, no weight decay, no dropout, until the
  loss is nearly 0 or the steps run out ("overfit one batch").
- `train_with_and_without_inputs`: the same init trained on real inputs and on zeroed inputs
  ("input-independent baseline"), in rounds of 100 steps while the real model still learns.
- `update_ratio_run`: a few steps at the run's lr, measuring log10 std(update)/std(weight).
- `lr_find`: fastai's learning-rate range test: lr raised exponentially over the steps, the smoothed
  loss watched until it passes 4x its best.
- `losses_of_a_few_steps`: the per-step losses of a few steps, for the determinism check.

Learning rates are held constant (no warmup, no decay), so every figure depends on the lr alone.
"""
import math

import torch

from nanostack.recipe.context import set_lr
from nanostack.train.probes import matrices

UPDATE_EVERY = 10      # update ratios are measured every this many steps of the short run
UPDATE_FROM = 10       # ... from this step on (the first steps of Adam are larger than the rest)


def step(model, optimizer, loss) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def overfit_batch(ctx, steps: int, target_fraction: float, floor: float) -> dict:
    """{"reached": step or None, "losses": [...], "target"}: train on two sequences until the loss is below
    target_fraction x ln V + floor (floor: the loss a model that reads fewer tokens cannot go below)."""
    model = ctx.new_model(dropout=False)
    optimizer = ctx.new_optimizer(model, weight_decay=0.0)
    x, y = ctx.first_batch()
    x, y = x[:2], y[:2]
    target = target_fraction * ctx.ln_vocab + floor
    losses = []
    for i in range(steps + 1):
        loss = ctx.loss(model, x, y)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            return {"reached": None, "losses": losses, "target": target, "problem": f"the loss became {losses[-1]}"}
        if losses[-1] < target:
            return {"reached": i, "losses": losses, "target": target}
        if i == steps:
            break
        if not loss.requires_grad:
            return {"reached": None, "losses": losses, "target": target,
                    "problem": "the loss does not depend on any trainable parameter"}
        step(model, optimizer, loss)
    return {"reached": None, "losses": losses, "target": target}


def train_with_and_without_inputs(ctx, lr: float, steps: int, max_steps: int, margin: float) -> dict:
    """Both models start from the same weights and see the same batches, one with its inputs zeroed; every
    `steps` steps both are evaluated on held-out batches, until the real one is `margin` better, or neither the
    gap between them grows nor the real loss falls (by margin/4 a round), or max_steps are done. Returns {"real", "zero": the last
    held-out losses, "init", "steps", "lr", "history": [(steps, real, zero)], "still_learning" (the gap still
    grew)}."""
    real, zero = ctx.new_model(), ctx.new_model()
    opt_real, opt_zero = ctx.new_optimizer(real, lr=lr), ctx.new_optimizer(zero, lr=lr)
    val = ctx.val_batches()
    init = ctx.eval_loss(real, val)
    history, done, previous_gap, previous_real = [], 0, 0.0, init
    while True:
        for i in range(done, done + steps):
            x, y = ctx.batch("train", i)
            step(real, opt_real, ctx.loss(real, x, y))
            step(zero, opt_zero, ctx.loss(zero, torch.zeros_like(x), y))
        done += steps
        real_loss, zero_loss = ctx.eval_loss(real, val), ctx.eval_loss(zero, val, zero_inputs=True)
        history.append((done, real_loss, zero_loss))
        gap = zero_loss - real_loss
        # a slow model (saturated units, a small lr) may trail the zero-input one while it still learns: the
        # comparison is conclusive only once the real model stops improving or the gap stops growing
        still_learning = gap - previous_gap >= margin / 4 or previous_real - real_loss >= margin / 4
        if gap >= margin or not still_learning or done >= max_steps:
            break
        previous_gap, previous_real = gap, real_loss
    return {"real": real_loss, "zero": zero_loss, "init": init, "steps": done, "lr": lr, "history": history,
            "still_learning": still_learning}


def update_ratio_run(ctx, steps: int) -> list:
    """[{"step", "name", "role", "trained", "update"}]: log10 std(update)/std(weight) of every weight matrix,
    every UPDATE_EVERY steps from UPDATE_FROM, over `steps` steps at the run's learning rate."""
    model = ctx.new_model()
    optimizer = ctx.new_optimizer(model)
    out = []
    for i in range(steps):
        x, y = ctx.batch("train", i)
        measure = i >= UPDATE_FROM and i % UPDATE_EVERY == 0
        before = {name: p.detach().clone() for name, p, _ in matrices(model)} if measure else None
        step(model, optimizer, ctx.loss(model, x, y))
        if measure:
            out.extend(update_ratios(model, before, i))
    return out


def update_ratios(model, before: dict, i: int) -> list:
    out = []
    with torch.no_grad():
        for name, p, role in matrices(model):
            ratio = ((p.detach().float() - before[name].float()).std() / before[name].float().std()).item()
            out.append({"step": i, "name": name, "role": role, "trained": p.requires_grad,
                        "update": math.log10(ratio) if ratio > 0 and math.isfinite(ratio) else None})
    return out


def lr_find(ctx, start: float = 1e-7, end: float = 10.0, steps: int = 100, beta: float = 0.98,
            stop_factor: float = 4.0) -> dict:
    """{"lrs", "losses" (smoothed), "lr_at_min"}: fastai's lr_find on a fresh model and optimizer."""
    model = ctx.new_model()
    optimizer = ctx.new_optimizer(model, lr=start, weight_decay=0.0)
    lrs, smoothed, average, best = [], [], 0.0, math.inf
    for i in range(steps):
        lr = start * (end / start) ** (i / (steps - 1))
        set_lr(optimizer, lr)
        x, y = ctx.batch("train", i)
        loss = ctx.loss(model, x, y)
        value = loss.item()
        if not math.isfinite(value):
            break
        average = beta * average + (1 - beta) * value
        smooth = average / (1 - beta ** (i + 1))  # bias-corrected, as fastai's
        lrs.append(lr)
        smoothed.append(smooth)
        if smooth > stop_factor * best:
            break
        best = min(best, smooth)
        step(model, optimizer, loss)
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__) if smoothed else None
    return {"lrs": lrs, "losses": smoothed, "lr_at_min": lrs[lowest] if lowest is not None else None}


def losses_of_a_few_steps(ctx, steps: int) -> list:
    """The losses of `steps` training steps from the run's seed (dropout on, as in training)."""
    model = ctx.new_model()
    optimizer = ctx.new_optimizer(model)
    losses = []
    for i in range(steps):
        x, y = ctx.batch("train", i)
        loss = ctx.loss(model, x, y)
        losses.append(loss.item())
        step(model, optimizer, loss)
    return losses
