"""Inception-ResNet v2 (Szegedy et al. 2016), MXNet's example `inception-resnet-v2`, to its layout and names.

Written by hand: timm's network differs from MXNet's (MXNet's convolutions have biases, its block17 has a
129-filter 1x1 and pads its 1x7 / 7x1 pair by (1, 2) / (2, 1)), and MXNet checkpoints need MXNet's names.
MXNet's example names no layer, so its graph calls them convolution0, batchnorm0, ... in the order the
example creates them (in a fresh process); the modules here are created in that order and named by a counter.
Each residual block adds scale * its branches' projection (0.17, 0.1, 0.2; 1.0 for the last one, which has no
ReLU). The final pooling is global, so fc takes 1536 inputs at any image size from 75x75 up.
"""

from collections import OrderedDict

import torch
from torch import nn

from .inception_bn import Concat
from .mxlayers import check_min_size, conv_bn, linear, mx_pool, parse_image_shape

MIN_SIZE = 75  # the last stride-2 module needs a 3x3 map


class Namer:
    """MXNet's automatic names: the n-th ConvFactory is convolution<n> + batchnorm<n>."""

    def __init__(self):
        self.count = 0

    def unit(self, in_ch, out_ch, kernel=1, stride=1, pad=0, relu=True):
        """MXNet's ConvFactory: Convolution (with bias), BatchNorm (defaults), ReLU unless relu is False."""
        i, self.count = self.count, self.count + 1
        return conv_bn(in_ch, out_ch, kernel, f"convolution{i}", f"batchnorm{i}", stride, pad, bias=True, relu=relu)

    def chain(self, in_ch, specs):
        """Units applied in turn; specs: (filters, kernel, stride, pad) each."""
        layers = []
        for out_ch, kernel, stride, pad in specs:
            layers.append(self.unit(in_ch, out_ch, kernel, stride, pad))
            in_ch = out_ch
        return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + scale * proj(branches(x)), then ReLU unless relu is False: MXNet's block35, block17 and block8."""

    def __init__(self, branches, proj, scale, relu=True):
        super().__init__()
        self.branches, self.proj, self.scale, self.relu = branches, proj, scale, relu

    def forward(self, x):
        """x (N, C, H, W) -> the same shape."""
        out = x + self.scale * self.proj(self.branches(x))
        return torch.relu(out) if self.relu else out


def block35(n, scale):
    """The 35x35 block on 320 channels."""
    branches = Concat(
        a=n.unit(320, 32),
        b=n.chain(320, [(32, 1, 1, 0), (32, 3, 1, 1)]),
        c=n.chain(320, [(32, 1, 1, 0), (48, 3, 1, 1), (64, 3, 1, 1)]),
    )
    return Residual(branches, n.unit(128, 320, relu=False), scale)


def block17(n, scale):
    """The 17x17 block on 1088 channels."""
    branches = Concat(
        a=n.unit(1088, 192), b=n.chain(1088, [(129, 1, 1, 0), (160, (1, 7), 1, (1, 2)), (192, (7, 1), 1, (2, 1))])
    )
    return Residual(branches, n.unit(384, 1088, relu=False), scale)


def block8(n, scale, relu=True):
    """The 8x8 block on 2080 channels."""
    branches = Concat(
        a=n.unit(2080, 192), b=n.chain(2080, [(192, 1, 1, 0), (224, (1, 3), 1, (0, 1)), (256, (3, 1), 1, (1, 0))])
    )
    return Residual(branches, n.unit(448, 2080, relu=False), scale, relu)


def stem(n, channels):
    """Convolutions and poolings down to 35x35 (at 299 pixels), then mixed 5b; 320 channels out."""
    layers = [n.chain(channels, [(32, 3, 2, 0), (32, 3, 1, 0), (64, 3, 1, 1)]), mx_pool("max", 3, 2)]
    layers += [n.chain(64, [(80, 1, 1, 0), (192, 3, 1, 0)]), mx_pool("max", 3, 2)]
    mixed_5b = Concat(
        a=n.unit(192, 96),
        b=n.chain(192, [(48, 1, 1, 0), (64, 5, 1, 2)]),
        c=n.chain(192, [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 1, 1)]),
        d=nn.Sequential(mx_pool("avg", 3, 1, 1), n.unit(192, 64)),
    )
    return nn.Sequential(*layers, mixed_5b)


def mixed_6a(n):
    """Mixed 6a: 320 -> 1088 channels at half the size."""
    return Concat(
        a=n.unit(320, 384, 3, 2),
        b=n.chain(320, [(256, 1, 1, 0), (256, 3, 1, 1), (384, 3, 2, 0)]),
        pool=mx_pool("max", 3, 2),
    )


def mixed_7a(n):
    """Mixed 7a: 1088 -> 2080 channels at half the size."""
    return Concat(
        a=n.chain(1088, [(256, 1, 1, 0), (384, 3, 2, 0)]),
        b=n.chain(1088, [(256, 1, 1, 0), (288, 3, 2, 0)]),
        c=n.chain(1088, [(256, 1, 1, 0), (288, 3, 1, 1), (320, 3, 2, 0)]),
        pool=mx_pool("max", 3, 2),
    )


def get_symbol(num_classes=1000, image_shape="3,299,299", **kwargs):
    """MXNet's Inception-ResNet v2 as an nn.Sequential whose parameters carry MXNet's automatic names."""
    channels, height, width = parse_image_shape(image_shape, "inception-resnet-v2")
    check_min_size("inception-resnet-v2", height, width, MIN_SIZE)
    n = Namer()  # every module below is created in the order MXNet's example creates its layers
    layers = [("stem", stem(n, channels))]
    layers += [(f"block35_{i}", block35(n, 0.17)) for i in range(10)]
    layers.append(("mixed_6a", mixed_6a(n)))
    layers += [(f"block17_{i}", block17(n, 0.1)) for i in range(20)]
    layers.append(("mixed_7a", mixed_7a(n)))
    layers += [(f"block8_{i}", block8(n, 0.2)) for i in range(9)]
    layers += [("block8_9", block8(n, 1.0, relu=False)), ("conv", n.unit(2080, 1536))]
    layers += [
        ("global_pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("dropout", nn.Dropout(0.2)),
        ("fullyconnected0", linear(1536, num_classes, "fullyconnected0")),
    ]
    return nn.Sequential(OrderedDict(layers))
