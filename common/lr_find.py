"""--lr-find 1: the learning-rate range test (L. Smith, 2015; fast.ai's lr_find), a probe like --test-io.

The rate grows exponentially from --lr-find-start to --lr-find-end over --lr-find-steps training batches, each
step through training's own path (device transform, batch mixer, fit's forward under autocast with the criterion,
and fit's optimizer step with SAM, clipping and the EMA), one batch a step;
the sweep ends early once the smoothed loss exceeds four times its lowest value. The suggested rate is where the
smoothed loss falls fastest against log(rate), fast.ai's "steepest" suggestion. Written here rather than taken from
a package because the sweep must run the suite's batch path and hooks, which the finders' loader-and-criterion
interfaces do not take. The networks (the --mutual-learning peer and the EMA too), optimizer, AMP scaler, step
count and RNG are restored afterwards: nothing is trained or saved but the picture.
"""

import copy
import functools
import itertools
import math
import os

import numpy as np
import torch

from common import checkpoint, figures
from common.optim import set_lr
from common.util import UserError

SMOOTHING = 0.98  # fast.ai's: an exponential moving average of the loss, bias-corrected
EXPLODED = 4.0  # fast.ai's: the sweep ends when the smoothed loss passes four times its lowest value
SKIP_START, SKIP_END = 10, 5  # fast.ai's: the suggestion ignores the first and last points of the curve


def run(ctx, train, epoch, forward, update):
    """Sweep the rate on train's batches (its epochs from `epoch` on), draw the curve, print the suggestion.

    forward(ctx, net, x, target) -> (logits, loss) and update(ctx, model, again) are training's (common/fit.py)."""
    a = ctx.args
    if a.lr_find_end <= a.lr_find_start:
        raise UserError(f"--lr-find-end {a.lr_find_end:g} must be above --lr-find-start {a.lr_find_start:g}")
    if ctx.kv.num_workers > 1:
        raise UserError("--lr-find runs in one process: drop --num-workers and tools/launch.py for it")
    path = a.lr_find_plot or (f"{a.model_prefix}-lr-find.png" if a.model_prefix else "lr-find.png")
    saved = _snapshot(ctx)
    try:
        rates, losses, why = _sweep(ctx, train, epoch, forward, update)
    finally:
        _restore(ctx, saved)
    digest = checkpoint.tensors_digest(checkpoint.model_tensors(ctx.raw))
    if digest != saved["digest"]:  # a bug, not a user's mistake: the probe promises the weights back
        raise RuntimeError("--lr-find: the weights differ from those before the sweep")
    if len(rates) < 5:
        at = rates[-1] if rates else a.lr_find_start
        raise UserError(
            f"--lr-find: the loss exploded within {len(rates) + 1} steps, at lr {at:g}; give a lower --lr-find-start"
        )
    smooth = _smoothed(losses)
    best = suggest(rates, smooth)
    if os.path.dirname(path):
        checkpoint.make_folder(path)
    plot(path, rates, losses, smooth, best, f"{a.network}, batch {ctx.batch}, {a.optimizer}")
    ctx.log(
        f"lr-find: {len(rates)} steps from lr {rates[0]:.3g} to {rates[-1]:.3g} ({why}); loss against lr in {path}; "
        f"the weights are as before (sha256 {digest})"
    )
    print(f"suggested lr={best:.3g}", flush=True)
    return best


def _sweep(ctx, train, epoch, forward, update):
    """The rates and raw losses of the sweep's steps, and why it ended."""
    a, model, opt = ctx.args, ctx.model, ctx.opt
    steps, ratio = a.lr_find_steps, a.lr_find_end / a.lr_find_start
    rates, losses, smooth, lowest = [], [], 0.0, math.inf
    model.train()
    for norm in ctx.frozen_norms:  # as training: frozen layers keep their statistics
        norm.eval()
    opt.zero_grad(set_to_none=True)
    ctx.lr_drops = ()  # the schedule's rate changes are not the sweep's: no Update lines
    for x, y in _batches(train, ctx, epoch):
        if not len(x):  # no image of the batch decodes (counted by the iterator)
            continue
        rate = a.lr_find_start * ratio ** (len(rates) / (steps - 1))
        set_lr(opt, rate)
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        y = (y[:, 0] if y.dim() == 2 else y).long()
        x, target = ctx.mix(ctx.train_tf(x), y)
        loss = forward(ctx, model, x, target)[1]
        ctx.scaler.scale(loss).backward()
        update(ctx, model, functools.partial(_backward, ctx, forward, model, x, target))  # SAM's second pass
        value = loss.item()
        if not math.isfinite(value):
            return rates, losses, f"the loss became {value} at lr {rate:.3g}"
        rates.append(rate)
        losses.append(value)
        smooth = SMOOTHING * smooth + (1 - SMOOTHING) * value
        current = smooth / (1 - SMOOTHING ** len(losses))
        lowest = min(lowest, current)
        if len(rates) % a.disp_batches == 0:
            ctx.log(f"lr-find: step [{len(rates)}/{steps}] lr={rate:.3e} smoothed loss={current:f}")
        if current > EXPLODED * lowest:
            return rates, losses, f"the loss exploded at lr {rate:.3g}"
        if len(rates) == steps:
            return rates, losses, "the whole range"
    raise UserError("--lr-find: the training data yields no batch; check --data-train")


def _backward(ctx, forward, model, x, target):
    """The batch's forward and backward once more (--sam-rho's second pass)."""
    ctx.scaler.scale(forward(ctx, model, x, target)[1]).backward()


def _batches(train, ctx, epoch):
    """The training batches, epoch after epoch (a sweep may be longer than one epoch)."""
    for e in itertools.count(epoch):
        train.set_epoch(e)
        ctx.train_tf.set_epoch(e)
        empty = True
        for batch in train:
            empty = False
            yield batch
        if empty:
            return


def _smoothed(losses):
    """The bias-corrected exponential moving average of the losses, as the sweep computed it."""
    out, avg = [], 0.0
    for i, value in enumerate(losses, 1):
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        out.append(avg / (1 - SMOOTHING**i))
    return out


def suggest(rates, smooth):
    """The rate where the smoothed loss falls fastest against log(rate), the curve's ends left out when long."""
    lo, hi = (SKIP_START, len(rates) - SKIP_END) if len(rates) > SKIP_START + SKIP_END + 2 else (0, len(rates))
    slope = np.gradient(np.asarray(smooth[lo:hi]), np.log(np.asarray(rates[lo:hi])))
    return rates[lo + int(np.argmin(slope))]


def plot(path, rates, losses, smooth, best, title):
    """Loss against rate (log scale), the smoothed curve and the suggested rate marked, as a PNG."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(rates, losses, color="0.75", linewidth=0.8, label="loss of the batch")
    ax.plot(rates, smooth, color="C0", label="smoothed loss")
    at = rates.index(best)
    ax.plot([best], [smooth[at]], "o", color="C3", label=f"suggested lr={best:.3g} (steepest fall)")
    ax.set_xscale("log")
    top, low = max(smooth[: max(1, len(smooth) // 10)]), min(losses)  # the explosion stays above the axis's top
    ax.set_ylim(low - 0.05 * (top - low), top + 0.3 * (top - low) + 1e-6)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"lr-find: {title}")
    figures.save_png(fig, path)


def _modules(ctx):
    """The modules a training step changes: the network, the --mutual-learning peer, the EMA."""
    peer = getattr(ctx, "peer", None)
    return [m for m in (ctx.raw, peer.net if peer is not None else None, ctx.ema) if m is not None]


def _snapshot(ctx):
    """Copies of what the sweep changes: weights and buffers, optimizer, scaler, step, RNG (and the weights' digest)."""
    cuda = ctx.device.type == "cuda"
    return {
        "modules": [copy.deepcopy(m.state_dict()) for m in _modules(ctx)],
        "step": (ctx.step, ctx.lr_drops),
        "optimizer": copy.deepcopy(ctx.opt.state_dict()),
        "scaler": copy.deepcopy(ctx.scaler.state_dict()),
        "rng": (torch.get_rng_state(), torch.cuda.get_rng_state(ctx.device) if cuda else None),
        "digest": checkpoint.tensors_digest(checkpoint.model_tensors(ctx.raw)),
    }


def _restore(ctx, saved):
    """Put back what _snapshot copied."""
    for module, state in zip(_modules(ctx), saved["modules"]):
        module.load_state_dict(state)
    ctx.step, ctx.lr_drops = saved["step"]
    ctx.opt.load_state_dict(saved["optimizer"])
    if saved["scaler"]:
        ctx.scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng"][0])
    if saved["rng"][1] is not None:
        torch.cuda.set_rng_state(saved["rng"][1], ctx.device)
