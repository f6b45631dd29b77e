"""Layers that keep MXNet's semantics and parameter names, shared by the hand-written network families.

MXNet's example networks are written by hand here because no maintained library has their exact layouts
(filter lists, BatchNorm placement, the `bn_data` input normalisation, fix_gamma) or their parameter names,
which MXNet checkpoints need in order to import. Every layer that owns parameters carries `mx_name`, the
name MXNet gives it, so `mxnet_param_map` can name each torch parameter and buffer the way MXNet does.
"""

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from .errors import UserError

# MXNet's BatchNorm defaults (mx.sym.BatchNorm): eps 1e-3, momentum 0.9, fix_gamma True.
MX_BN_EPS = 1e-3


class MXBatchNorm(nn.BatchNorm2d):
    """BatchNorm with MXNet's eps, momentum and fix_gamma meaning; no batch counter, so it maps onto MXNet's arrays."""

    def __init__(self, num_features, name, eps=MX_BN_EPS, momentum=0.9, fix_gamma=True):
        # MXNet's momentum weighs the old moving average (0.9); torch's weighs the new batch (0.1).
        super().__init__(num_features, eps=eps, momentum=1.0 - momentum)
        self.mx_name = name
        self.fix_gamma = fix_gamma
        # MXNet keeps no batch counter; without one the state dict maps one-to-one onto MXNet's arrays.
        self.num_batches_tracked = None
        if fix_gamma:
            # MXNet holds gamma at 1 and zeroes its gradient: the array exists but is not trained.
            self.weight.requires_grad_(False)

    def forward(self, x):
        """Normalise x (N, C, H, W); with fix_gamma the stored gamma is ignored, as MXNet does."""
        if not self.fix_gamma:
            return super().forward(x)
        use_batch = self.training
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, use_batch, self.momentum, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Skip _NormBase's upgrade step, which would add the batch counter this layer does not keep.
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)


def conv(in_ch, out_ch, kernel, name, stride=1, pad=0, groups=1, bias=True):
    """An nn.Conv2d that MXNet calls `name` (its weight is NAME_weight, its bias NAME_bias)."""
    layer = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, groups=groups, bias=bias)
    layer.mx_name = name
    return layer


def linear(in_features, out_features, name):
    """An nn.Linear that MXNet calls `name` (a FullyConnected layer)."""
    layer = nn.Linear(in_features, out_features)
    layer.mx_name = name
    return layer


def parse_image_shape(image_shape, network):
    """Return (channels, height, width) from MXNet's '3,224,224' string or a 3-tuple; UserError otherwise."""
    try:
        dims = (
            [int(v) for v in image_shape.split(",")] if isinstance(image_shape, str) else [int(v) for v in image_shape]
        )
    except (TypeError, ValueError):
        dims = []
    if len(dims) != 3 or min(dims) < 1:
        raise UserError(f"{network}: bad image_shape {image_shape!r}; give channels,height,width such as 3,224,224")
    return tuple(dims)


def pooled(size, kernel, stride, pad=0):
    """Output length of a convolution or a 'valid' (floor) MXNet pooling along one axis."""
    return (size + 2 * pad - kernel) // stride + 1


def check_min_size(network, height, width, minimum):
    """Raise UserError when the image is smaller than the network can take."""
    if min(height, width) < minimum:
        raise UserError(
            f"{network}: image_shape {height}x{width} is too small; this network needs at least {minimum}x{minimum}"
        )


class MXLRN(nn.Module):
    """MXNet's LRN: x / (knorm + alpha / nsize * sum of x^2 over nsize channels centred on c) ** beta."""

    def __init__(self, alpha=1e-4, beta=0.75, knorm=2.0, nsize=5):
        super().__init__()
        self.alpha, self.beta, self.knorm, self.nsize = alpha, beta, knorm, nsize

    def forward(self, x):
        """x (N, C, H, W) -> the same shape; torch's local_response_norm also divides alpha by the window size."""
        return F.local_response_norm(x, self.nsize, alpha=self.alpha, beta=self.beta, k=self.knorm)

    def extra_repr(self):
        """MXNet's LRN parameters, shown in print(model)."""
        return f"alpha={self.alpha}, beta={self.beta}, knorm={self.knorm}, nsize={self.nsize}"


_SUFFIXES = {
    nn.Conv2d: {"weight": "arg:{}_weight", "bias": "arg:{}_bias"},
    nn.Linear: {"weight": "arg:{}_weight", "bias": "arg:{}_bias"},
    MXBatchNorm: {
        "weight": "arg:{}_gamma",
        "bias": "arg:{}_beta",
        "running_mean": "aux:{}_moving_mean",
        "running_var": "aux:{}_moving_var",
    },
}


def mxnet_param_map(model):
    """Return {torch state-dict name: 'arg:NAME' or 'aux:NAME'}, MXNet's name for every array of a hand-written net."""
    names = {}
    for path, module in model.named_modules():
        if not hasattr(module, "mx_name"):
            continue
        suffixes = _SUFFIXES[type(module)]
        prefix = f"{path}." if path else ""
        for key, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            names[prefix + key] = suffixes[key].format(module.mx_name)
    missing = [key for key in model.state_dict() if key not in names]
    if missing:
        raise UserError(
            f"network {type(model).__name__} has no MXNet layout ({missing[0]} has no MXNet name); "
            "only MXNet's own example networks import MXNet parameters"
        )
    return names


def param_count(model):
    """Return (number of parameter elements, number of running-statistic elements) of a model."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers() if torch.is_floating_point(b))
    return params, buffers


def conv_bn(in_ch, out_ch, kernel, conv_name, bn_name, stride=1, pad=0, bias=False, relu=True):
    """MXNet's Convolution + BatchNorm (its default eps 1e-3 and fix_gamma) + optional ReLU, named as MXNet names them.

    kernel, stride and pad are ints or (height, width) pairs; the result records its out_channels.
    """
    layers = OrderedDict(
        conv=conv(in_ch, out_ch, kernel, conv_name, stride=stride, pad=pad, bias=bias),
        bn=MXBatchNorm(out_ch, bn_name),
    )
    if relu:
        layers["relu"] = nn.ReLU()
    block = nn.Sequential(layers)
    block.out_channels = out_ch
    return block


def mx_pool(pool_type, kernel, stride=1, pad=0):
    """MXNet's 'valid' Pooling: max, or avg counting the padding (MXNet's count_include_pad default)."""
    if pool_type == "max":
        return nn.MaxPool2d(kernel, stride, pad)
    return nn.AvgPool2d(kernel, stride, pad, count_include_pad=True)


def min_side(final_size, needed, start=1):
    """The smallest image side whose final feature map (final_size(side), monotone) is at least `needed`."""
    side = start
    while final_size(side) < needed:
        side += 1
    return side
