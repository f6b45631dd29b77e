"""A network's size and cost: parameters and multiply-accumulates of one image's forward pass, in eval mode.

The MACs are those of convolutions, fully connected layers and matrix products (attention included), counted
by torch's own FLOP counter (torch.utils.flop_counter.FlopCounterMode, which counts these operations at two FLOPs
per multiply-accumulate); normalisation, activations, pooling and additions are not counted. These are the figures
torchvision publishes as its models' "GFLOPS" (weights.meta["_ops"], which are multiply-accumulates):
tests/test_complexity.py checks them against it.

The forward pass runs on the meta device (shapes only, no arithmetic, no copy of the weights), so counting costs a
fraction of a second even for the largest networks; a network whose forward pass needs real values (a shape read
back with .item()) is counted on one blank image instead.
"""

import torch
from torch.utils.flop_counter import FlopCounterMode

import symbols
from common.util import UserError


def build(network, arguments):
    """symbols.get_symbol(network, **arguments), built on the meta device (no weights) where the family allows."""
    try:
        with torch.device("meta"):
            return symbols.get_symbol(network, **arguments)
    except UserError:
        raise
    except (NotImplementedError, RuntimeError):  # a family that reads a computed tensor back while it builds
        return symbols.get_symbol(network, **arguments)


def count(model, shape):
    """(parameters, multiply-accumulates) of model on one image of shape (C, H, W), counted in eval mode.

    The model's own training flags are restored afterwards (train-mode extras such as auxiliary heads are not
    part of the published figures); its weights are neither read nor changed.
    """
    params = sum(p.numel() for p in model.parameters())
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        macs = _meta_macs(model, shape)
        if macs is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            macs = _macs(model, {}, torch.zeros(1, *shape, device=device))
    finally:
        for m, training in modes.items():
            m.training = training
    return params, macs


def _meta_macs(model, shape):
    """The MACs counted with every parameter, buffer and the input on the meta device; None if that cannot run."""
    state = {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}
    try:
        return _macs(model, state, torch.empty(1, *shape, device="meta"))
    except (NotImplementedError, RuntimeError):  # the forward pass reads a value back (.item(), .tolist())
        return None


@torch.no_grad()
def _macs(model, state, x):
    """Multiply-accumulates of model(x) with state substituted for its parameters and buffers (FLOPs / 2)."""
    with FlopCounterMode(display=False) as counter:
        torch.func.functional_call(model, state, (x,), strict=False)
    return counter.get_total_flops() // 2


def describe(params, macs):
    """The one-line form: `params=<millions>M gmacs=<G multiply-accumulates>`."""
    return f"params={params / 1e6:.4g}M gmacs={macs / 1e9:.4g}"


def report(params, macs, shape):
    """The figures as a report's JSON object."""
    return {"params": params, "macs": macs, "params_m": params / 1e6, "gmacs": macs / 1e9, "image_shape": list(shape)}
