"""How the weights start and move: MXNet's initializers, the optimizers, the learning-rate schedule.

Parameter groups follow MXNet's multipliers: weight decay on weights and BatchNorm gammas only (wd_mult 0 on
biases and betas) unless --norm-weight-decay / --bias-weight-decay say otherwise, and a parameter's `lr_mult`
attribute (fine-tune.py's --pretrained-lr-mult) scales its rate.
"""

import math
import re

import torch
from torch import nn

from common import mxoptim
from common.options import INITIALIZERS, OPTIMIZERS, WARMUPS
from common.util import UserError, choice_error

# MXNet's rules torch lacks (common/mxoptim.py); MXNet's example gave `momentum` (--mom) to these and sgd/nag only
MX_RULES = {"ftml": mxoptim.FTML, "ftrl": mxoptim.Ftrl, "sgld": mxoptim.SGLD}
MX_MOMENTUM_RULES = {"signum": mxoptim.Signum, "dcasgd": mxoptim.DCASGD, "lbsgd": mxoptim.LBSGD}


def init_weights(model, name, network):
    """MXNet's initializers on every conv / linear weight; biases zero (MXNet's name rules)."""
    if name not in INITIALIZERS:
        raise choice_error("--initializer", name, INITIALIZERS)
    if name == "default":  # Xavier(gaussian, in, 2) is He-normal; MXNet's example special-cases two networks
        # googlenet (no BatchNorm) too: He-normal on 0-255 pixels gives logits near 1500 and a NaN first step
        name = (
            "normal"
            if network == "alexnet"
            else "xavier"
            if "vgg" in (network or "") or network == "googlenet"
            else "he"
        )
    inits = {
        "he": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
        "xavier": lambda w: nn.init.xavier_uniform_(w),  # Xavier(uniform, avg, 3)
        "msra": lambda w: nn.init.kaiming_normal_(w, a=0.25, mode="fan_in", nonlinearity="leaky_relu"),
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=1.414),
        "normal": lambda w: nn.init.normal_(w, 0.0, 0.01),
        "uniform": lambda w: nn.init.uniform_(w, -0.07, 0.07),
        "one": nn.init.ones_,
        "zero": nn.init.zeros_,
    }
    init = inits[name]
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear) and m.weight.dim() >= 2:
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():  # MXNet's initializer gives a spatial transformer the identity (by layer name)
        if hasattr(m, "reset_identity"):
            m.reset_identity()


# A parameter's kind decides its weight decay (group_decay). The groups are (kind, lr_mult) in KINDS order whatever
# the decay flags say, so a checkpoint resumes under other flags: resume_training re-reads each group's decay.
KINDS = ("weight", "norm_weight", "norm_bias", "bias", "other")
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)  # _NormBase: batch and instance


def param_kind(model, name):
    """weight, norm_weight / norm_bias (a normalisation layer's), bias, or other (MXNet's wd_mult 0 by name)."""
    owner, _, leaf = name.rpartition(".")
    if isinstance(model.get_submodule(owner), NORMS):
        return "norm_weight" if leaf == "weight" else "norm_bias"
    if leaf == "bias":
        return "bias"
    return "weight" if name.endswith("weight") else "other"


def group_decay(args, kind):
    """The weight decay of a group of `kind`: MXNet's (--wd on weights and gammas) unless the flags give another."""
    norm, bias = getattr(args, "norm_weight_decay", None), getattr(args, "bias_weight_decay", None)
    if kind in ("norm_weight", "norm_bias") and norm is not None:
        return norm
    if kind == "bias" and bias is not None:
        return bias
    return args.wd if kind in ("weight", "norm_weight") else 0.0


def param_groups(args, model):
    """One group per (kind, lr_mult), KINDS order: its weight decay by group_decay, its rate times `lr_mult`."""
    by_key = {(kind, 1.0): [] for kind in KINDS}  # the plain case's groups always exist, so the layout is stable
    for name, p in model.named_parameters():
        if p.requires_grad:
            by_key.setdefault((param_kind(model, name), float(getattr(p, "lr_mult", 1.0))), []).append(p)
    return [
        {"params": ps, "weight_decay": group_decay(args, kind), "kind": kind, "lr_mult": mult}
        for (kind, mult), ps in sorted(by_key.items(), key=lambda item: (KINDS.index(item[0][0]), item[0][1]))
    ]


def _older_layout(model):
    """A load_state_dict pre-hook: optimizer state of checkpoints with the older groups ([decay, no decay] x
    lr_mult, by name) moved parameter by parameter onto param_groups' layout."""

    def hook(opt, saved):
        if all("kind" in g for g in saved["param_groups"]):
            return None
        old = {(False, 1.0): [], (True, 1.0): []}
        for name, p in model.named_parameters():
            if p.requires_grad:
                old.setdefault((not name.endswith("weight"), float(getattr(p, "lr_mult", 1.0))), []).append(p)
        old = [ps for _, ps in sorted(old.items())]
        if [len(g["params"]) for g in saved["param_groups"]] != [len(ps) for ps in old]:
            return None  # not that layout either: load_state_dict says it does not fit
        index = {id(p): i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
        pairs = zip((p for ps in old for p in ps), (i for g in saved["param_groups"] for i in g["params"]), strict=True)
        state = {index[id(p)]: saved["state"][i] for p, i in pairs if i in saved["state"]}
        groups, start = [], 0
        for g in opt.param_groups:  # this run's settings; resume_training sets decay and momentum from the flags
            settings = {k: v for k, v in g.items() if k != "params"}
            groups.append({**settings, "params": list(range(start, start + len(g["params"])))})
            start += len(g["params"])
        return {"state": state, "param_groups": groups}

    return hook


def set_lr(opt, rate):
    """Give every parameter group `rate` times its lr_mult (groups of checkpoints older than lr_mult: 1)."""
    for g in opt.param_groups:
        g["lr"] = rate * g.get("lr_mult", 1.0)


def make_optimizer(args, model):
    """torch.optim (timm for LARS and LAMB, common/mxoptim.py for MXNet's own rules) over param_groups(args, model)."""
    opt = _make_optimizer(args, model)
    opt.register_load_state_dict_pre_hook(_older_layout(model))
    return opt


def _make_optimizer(args, model):
    """make_optimizer's rule by --optimizer."""
    groups = param_groups(args, model)
    name, lr, mom = args.optimizer.lower(), args.lr, args.mom
    if name in ("sgd", "nag"):
        return torch.optim.SGD(groups, lr=lr, momentum=mom, nesterov=name == "nag" and mom > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "rmsprop":  # MXNet's gamma1 = 0.9, epsilon = 1e-8
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-8)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, eps=1e-7)
    if name == "asgd":  # averaged SGD, torch's defaults (lambd 1e-4, alpha 0.75, t0 1e6)
        return torch.optim.ASGD(groups, lr=lr)
    if name in ("lars", "lamb"):
        from timm.optim import Lamb, Lars

        return Lars(groups, lr=lr, momentum=mom) if name == "lars" else Lamb(groups, lr=lr)
    if name == "adadelta":  # MXNet's rho 0.9, epsilon 1e-5; MXNet's rule takes no learning rate (see the class)
        return mxoptim.AdaDelta(groups, rho=0.9, epsilon=1e-5)
    if name == "adamax":  # torch's eps 1e-8 on |g| where MXNet has none: MXNet's 0/0 turns never-used weights NaN
        return torch.optim.Adamax(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if name == "nadam":  # MXNet's schedule_decay is torch's momentum_decay
        return torch.optim.NAdam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, momentum_decay=0.004)
    if name in MX_RULES:
        return MX_RULES[name](groups, lr=lr)
    if name in MX_MOMENTUM_RULES:
        return MX_MOMENTUM_RULES[name](groups, lr=lr, momentum=mom)
    raise choice_error("--optimizer", args.optimizer, OPTIMIZERS)


def lr_steps(args, steps_per_epoch):
    """The steps after which MXNet's multi-factor schedule multiplies the rate by --lr-factor ([] for the others)."""
    text = (args.lr_step_epochs or "").strip()
    if "pow" in text or args.cosine or not text or args.lr_factor >= 1:
        return []
    try:
        return [int(e) * steps_per_epoch for e in text.split(",") if e.strip()]
    except ValueError:
        raise UserError(f"--lr-step-epochs {text!r} is not a comma-separated list of epochs, e.g. 30,60") from None


def lr_schedule(args, steps_per_epoch, accum):
    """The per-step learning-rate multiplier (MXNet's multi-factor / poly, or cosine; large-batch warm-up)."""
    total = max(1, args.num_epochs * steps_per_epoch)
    text = (args.lr_step_epochs or "").strip()
    if "pow" in text:
        try:
            power = float(re.sub("pow[- ]*", "", text))
        except ValueError:
            raise UserError(f"--lr-step-epochs {text!r}: the poly form is pow<power>, e.g. pow2") from None
        base = lambda s: (1 - min(s, total) / total) ** power  # noqa: E731
    elif args.cosine:
        base = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))  # noqa: E731
    elif text and args.lr_factor < 1:
        bounds = lr_steps(args, steps_per_epoch)
        base = lambda s: args.lr_factor ** sum(s >= b for b in bounds)  # noqa: E731
    else:
        base = lambda s: 1.0  # noqa: E731
    if args.warmup_strategy not in WARMUPS:
        raise choice_error("--warmup-strategy", args.warmup_strategy, WARMUPS)
    ramp = {"linear": lambda f: f, "power2": lambda f: f * f, "sqrt": math.sqrt}[args.warmup_strategy]
    nwarm = args.warmup_epochs * steps_per_epoch if accum > 1 else 0  # MXNet's lbsgd: 1x -> batch_scale
    warm = lambda s: accum if s >= nwarm else 1 + (accum - 1) * ramp(s / nwarm)  # noqa: E731
    return lambda s: base(s) * warm(s)
