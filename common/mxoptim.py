"""MXNet 1.9.1's update rules that torch.optim lacks, as torch optimizers (`--optimizer` adadelta, signum, ... lbsgd).

Written by hand because no maintained library has these rules with MXNet's exact arithmetic (torch's own
optimizers are used where the rule is the same: see common/optim.py). As in MXNet, a group's `weight_decay` is
coupled (`grad += wd * weight`) unless the rule says otherwise, and each parameter counts its own updates. State
holds tensors and plain numbers only, so it saves in a .states checkpoint. Gradient rescale and clipping are not
MXNet flags of the example, so they are left out (rescale is 1: the loss is already a mean).
"""

import torch


class _MXOptimizer(torch.optim.Optimizer):
    """One loop over the parameters with a gradient; subclasses give the per-parameter rule `_update`."""

    @torch.no_grad()
    def step(self, closure=None):
        """Apply the rule to every parameter that has a gradient; returns the closure's loss (if any)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    state["step"] = state.get("step", 0) + 1
                    self._update(p, p.grad, state, group)
        return loss

    def _update(self, p, grad, state, group):
        raise NotImplementedError


class AdaDelta(torch.optim.Adadelta):
    """MXNet's AdaDelta: torch's rule at rate 1 with MXNet's decay `w -= delta + wd * w` after it.

    MXNet's rule ignores the learning rate (and so the schedule and lr_mult) and keeps the decay out of the
    accumulators; torch couples the decay into the gradient, so its own decay is turned off here.
    """

    def __init__(self, params, rho=0.9, epsilon=1e-5):
        super().__init__(params, lr=1.0, rho=rho, eps=epsilon, weight_decay=0.0)

    @torch.no_grad()
    def step(self, closure=None):
        """MXNet's step: torch's Adadelta on the plain gradient at rate 1, then the uncoupled decay."""
        kept = [(g["lr"], g["weight_decay"]) for g in self.param_groups]
        decay = [[(p, p * g["weight_decay"]) for p in g["params"] if p.grad is not None] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"], g["weight_decay"] = 1.0, 0.0
        try:
            loss = super().step(closure)
        finally:
            for g, (lr, wd) in zip(self.param_groups, kept, strict=True):
                g["lr"], g["weight_decay"] = lr, wd
        for p, d in (pair for group in decay for pair in group):
            p.sub_(d)  # d = wd * (the weight before the step), as MXNet's `weight -= delta + wd * weight`
        return loss


class Signum(_MXOptimizer):
    """MXNet's Signum: m = mom*m + (1-mom)*(g + wd*w); w = (1 - lr*wd_lh)*w - lr*sign(m) (signSGD at mom 0)."""

    def __init__(self, params, lr=0.01, momentum=0.9, wd_lh=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, wd_lh=wd_lh, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
        if mom > 0:
            buf = state.setdefault("momentum_buffer", torch.zeros_like(p))
            buf.mul_(mom).add_(grad + wd * p, alpha=1 - mom)
            p.mul_(1 - lr * group["wd_lh"]).sub_(torch.sign(buf), alpha=lr)
        else:  # MXNet's signsgd_update: the decay acts on the weight, not inside the sign (it takes no wd_lh)
            p.mul_(1 - lr * wd).sub_(torch.sign(grad), alpha=lr)


class FTML(_MXOptimizer):
    """MXNet's FTML (Follow the Moving Leader): d, v, z per weight; w = -z / d_t."""

    def __init__(self, params, lr=0.01, beta1=0.6, beta2=0.999, epsilon=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, epsilon=epsilon, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        lr, b1, b2, t = group["lr"], group["beta1"], group["beta2"], state["step"]
        g = grad + group["weight_decay"] * p
        for k in ("d", "v", "z"):
            state.setdefault(k, torch.zeros_like(p))
        d, v, z = state["d"], state["v"], state["z"]
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        d_t = (v / (1 - b2**t)).sqrt_().add_(group["epsilon"]).mul_((1 - b1**t) / lr)
        z.mul_(b1).add_(g, alpha=1 - b1).sub_((d_t - b1 * d) * p)
        d.copy_(d_t)
        p.copy_(-z / d_t)


class Ftrl(_MXOptimizer):
    """MXNet's FTRL-proximal: z, n per weight; L1 (lamda1) zeroes weights with |z| <= lamda1; wd is L2."""

    def __init__(self, params, lr=0.1, lamda1=0.01, beta=1.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, lamda1=lamda1, beta=beta, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        lr, l1 = group["lr"], group["lamda1"]
        z = state.setdefault("z", torch.zeros_like(p))
        n = state.setdefault("n", torch.zeros_like(p))
        z.add_(grad - ((n + grad * grad).sqrt() - n.sqrt()) * p / lr)
        n.addcmul_(grad, grad)
        w = (torch.sign(z) * l1 - z) / ((group["beta"] + n.sqrt()) / lr + group["weight_decay"])
        p.copy_(w * (z.abs() > l1))


class SGLD(_MXOptimizer):
    """MXNet's SGLD: w += -lr/2 * (g + wd*w) + N(0, sqrt(lr)); the noise comes from torch's RNG (checkpointed)."""

    def __init__(self, params, lr=0.01, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        lr = group["lr"]
        p.add_(grad + group["weight_decay"] * p, alpha=-lr / 2)
        p.add_(torch.randn_like(p), alpha=lr**0.5)


class DCASGD(_MXOptimizer):
    """MXNet's DCASGD: step = mom*step - lr*(g + wd*w + lamda*g*g*(w - w_prev)); w_prev = w; w += step.

    MXNet 1.9.1 fails with momentum > 0 (it tests an NDArray's truth value); this is the rule that code intends.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, lamda=0.04, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, lamda=lamda, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        prev = state.setdefault("previous_weight", p.clone())  # MXNet's state starts as a copy of the weight
        delta = grad + group["weight_decay"] * p + group["lamda"] * grad * grad * (p - prev)
        delta.mul_(-group["lr"])
        if group["momentum"] > 0:
            delta = state.setdefault("momentum_buffer", torch.zeros_like(p)).mul_(group["momentum"]).add_(delta)
        prev.copy_(p)
        p.add_(delta)


class LBSGD(_MXOptimizer):
    """MXNet's LBSGD step: MXNet's momentum SGD, the rate inside the momentum: m = mom*m - lr*(g + wd*w); w += m.

    MXNet's LBSGD also sums the gradients of `batch_scale` batches and ramps the rate from 1x to batch_scale x over
    the warm-up epochs; here the training loop does both for every optimizer (--macrobatch-size, --warmup-epochs,
    --warmup-strategy: common/optim.py's lr_schedule), so the optimizer is the per-update rule. torch's SGD keeps
    the rate out of the momentum, which differs from this while the rate moves (warm-up, steps).
    """

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        delta = (grad + group["weight_decay"] * p).mul_(-group["lr"])
        if group["momentum"] > 0:
            delta = state.setdefault("momentum_buffer", torch.zeros_like(p)).mul_(group["momentum"]).add_(delta)
        p.add_(delta)
