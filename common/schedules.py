"""Schedules that watch Validation-accuracy: --lr-plateau (the rate) and --early-stop (the run).

"Not improved for N epochs" counts the validated epochs since the best one: a higher accuracy than every epoch
before is an improvement, an equal one is not (as PREFIX-best.json keeps the first of equals). The plateau is a
multiplier on top of the step schedule (warm-up, multi-factor, poly, cosine), so the rate of step s is
--lr * lr_mult(s) * plateau. Both states travel in PREFIX-NNNN.states ("extra"): a resumed run counts on exactly
where the saved one stood. Every worker sees the same Validation-accuracy (summed over all), so all decide alike.
"""

import math

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from common.checkpoint_files import params_path
from common.optim import set_lr
from common.util import UserError


class Plateau:
    """--lr-plateau N: torch's ReduceLROnPlateau (mode max) on Validation-accuracy, as a rate multiplier."""

    def __init__(self, patience, factor):
        # torch's scheduler multiplies an optimizer's rate: it drives a one-parameter holder here, whose rate is the
        # multiplier, so the step schedule and the parameter groups' lr_mult stay as they are. N epochs without an
        # improvement reduce: torch's patience counts the epochs tolerated, one fewer.
        self._holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        self._torch = ReduceLROnPlateau(
            self._holder, mode="max", factor=factor, patience=patience - 1, threshold=0.0, threshold_mode="abs", eps=0
        )

    @property
    def rate(self):
        """The multiplier: --lr-factor to the number of reductions so far."""
        return self._holder.param_groups[0]["lr"]

    @property
    def best(self):
        """The best Validation-accuracy so far (None before the first validated epoch)."""
        return self._torch.best if math.isfinite(self._torch.best) else None

    def step(self, accuracy):
        """Count one validated epoch; True when it reduced the rate."""
        before = self.rate
        self._torch.step(accuracy)
        return self.rate < before

    def state_dict(self):
        """Where the count stands (the flags, patience and factor, are the resumed run's own)."""
        t = self._torch
        return {"rate": self.rate, "best": self.best, "bad_epochs": t.num_bad_epochs, "epochs": t.last_epoch}

    def load_state_dict(self, state):
        """Continue from state_dict()."""
        t = self._torch
        self._holder.param_groups[0]["lr"] = float(state["rate"])
        t.best = t.mode_worse if state["best"] is None else float(state["best"])
        t.num_bad_epochs, t.last_epoch = int(state["bad_epochs"]), int(state["epochs"])


class EarlyStop:
    """--early-stop N: stop after N validated epochs without an improvement; remembers the best epoch."""

    def __init__(self, patience):
        self.patience, self.best, self.best_epoch, self.bad_epochs = patience, None, None, 0

    def step(self, epoch, accuracy):
        """Count one validated epoch (numbered as the log numbers it); True when the run should stop."""
        if self.best is None or accuracy > self.best:
            self.best, self.best_epoch, self.bad_epochs = accuracy, epoch, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self):
        """The best epoch, its accuracy and the epochs since."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        """Continue from state_dict()."""
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], int(state["bad_epochs"])


class Watch:
    """What fit() does after each epoch for --lr-plateau and --early-stop (nothing when neither is given)."""

    def __init__(self, ctx, validated):
        """Register the states in ctx.extra_states (before a resume loads them); the plateau scales ctx.lr_mult."""
        a = ctx.args
        self.ctx, self.plateau, self.stopper, self.improved = ctx, None, None, False
        for flag, value in (("--lr-plateau", a.lr_plateau), ("--early-stop", a.early_stop)):
            if value and not validated:
                raise UserError(f"{flag} {value} watches Validation-accuracy: give validation data (--data-val)")
        if a.lr_plateau:
            if a.lr_factor >= 1:
                raise UserError(f"--lr-plateau needs --lr-factor below 1 to reduce the rate (it is {a.lr_factor:g})")
            self.plateau = ctx.extra_states["lr_plateau"] = Plateau(a.lr_plateau, a.lr_factor)
            base, plateau = ctx.lr_mult, self.plateau
            ctx.lr_mult = lambda s: base(s) * plateau.rate
        if a.early_stop:
            self.stopper = ctx.extra_states["early_stop"] = EarlyStop(a.early_stop)

    def after_epoch(self, epoch, accuracy):
        """Count the epoch's Validation-accuracy (None: not validated, not counted); True when the run stops here."""
        ctx, a = self.ctx, self.ctx.args
        self.improved = False
        if accuracy is None:
            return False
        if self.plateau is not None:
            best = self.plateau.best
            if self.plateau.step(accuracy):
                ctx.log(
                    f"Epoch[{epoch}] --lr-plateau {a.lr_plateau}: Validation-accuracy has not improved for "
                    f"{a.lr_plateau} epochs (best {best:f}); the rate is multiplied by --lr-factor {a.lr_factor:g}"
                )
                set_lr(ctx.opt, a.lr * ctx.lr_mult(ctx.step))  # from the next step on, as MXNet's schedulers say
                ctx.log(f"Update[{ctx.step + 1}]: Change learning rate to {a.lr * ctx.lr_mult(ctx.step):0.5e}")
        if self.stopper is None:
            return False
        stop = self.stopper.step(epoch, accuracy)
        self.improved = self.stopper.bad_epochs == 0
        return stop

    def must_save(self):
        """--early-stop saves the best epoch and the one it stops at, whatever --save-period says."""
        return self.stopper is not None and (self.improved or self.stopper.bad_epochs >= self.stopper.patience)

    def stop_line(self, epoch):
        """The one line that ends an early-stopped run: why, and the best epoch."""
        s, prefix = self.stopper, self.ctx.args.model_prefix
        where = f"its checkpoint {params_path(prefix, s.best_epoch + 1)} (--load-epoch best)" if prefix else "unsaved"
        return (
            f"Epoch[{epoch}] --early-stop {s.patience}: Validation-accuracy has not improved for {s.bad_epochs} "
            f"epochs; stopping. The best was Epoch[{s.best_epoch}] (Validation-accuracy {s.best:f}), {where}"
        )
