"""A network's size and cost: parameters and multiply-accumulates of one image's forward pass, in eval mode.

The MACs are those of convolutions, fully connected layers and matrix products (attention included), counted
by torch's own FLOP counter (torch.utils.flop_counter.FlopCounterMode, which counts these operations at two FLOPs
per multiply-accumulate); normalisation, activations, pooling and additions are not counted. These are the figures
torchvision publishes as its models' "GFLOPS" (weights.meta["_ops"], which are multiply-accumulates):
tests/test_complexity.py checks them against it.

The forward pass runs on a twin of the network on the meta device (shapes only: no arithmetic, no copy of the
weights), so counting costs a fraction of a second even for the largest networks and leaves the network itself
untouched; a network whose forward pass needs real values (a shape read back with .item()) is counted on one blank
image, through a full copy.
"""

import copy

import torch
from torch import nn
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

    The pass runs on a twin of the model (train-mode extras such as auxiliary heads are not part of the published
    figures), so the model itself, its training flags and anything its forward pass keeps, is left as it was.
    """
    params = sum(p.numel() for p in model.parameters())
    try:
        macs = _macs(_meta_twin(model).eval(), torch.empty(1, *shape, device="meta"))
    except (NotImplementedError, RuntimeError):  # the forward pass reads a value back (.item(), .tolist())
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        macs = _macs(copy.deepcopy(model).eval(), torch.zeros(1, *shape, device=device))
    return params, macs


def _meta_twin(model):
    """A copy of model whose parameters and buffers are on the meta device: shapes only, no memory, no copying."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in model.parameters()}
    memo |= {id(b): torch.empty_like(b, device="meta") for b in model.buffers()}
    return copy.deepcopy(model, memo)


@torch.no_grad()
def _macs(model, x):
    """Multiply-accumulates of model(x): the FLOP counter's figure over 2."""
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def describe(params, macs):
    """The one-line form: `params=<millions>M gmacs=<G multiply-accumulates>`."""
    return f"params={params / 1e6:.4g}M gmacs={macs / 1e9:.4g}"


def report(params, macs, shape):
    """The figures as a report's JSON object."""
    return {"params": params, "macs": macs, "params_m": params / 1e6, "gmacs": macs / 1e9, "image_shape": list(shape)}
