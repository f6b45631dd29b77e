"""Inception with BatchNorm (Ioffe and Szegedy 2015), MXNet's example `inception-bn`.

Written by hand: no library has this network (torchvision's GoogLeNet is Inception v1 with other widths),
and MXNet checkpoints need its names (conv_NAME, bn_NAME). Images up to 28 pixels take MXNet's smaller
variant (3x3 stem, simple 1x1 + 3x3 modules); larger ones the 224-pixel network. MXNet leaves the
classifier unnamed; a fresh process calls it `fullyconnected0`, the name used here.
"""

from collections import OrderedDict

import torch
from torch import nn

from .mxlayers import MXBatchNorm, check_min_size, conv, linear, parse_image_shape, pooled

BN_EPS = 1e-10 + 1e-5  # MXNet's inception-bn passes this eps to every BatchNorm.

# (name, 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool type, projection); None 1x1 = stride-2 module
MODULES = [
    ("3a", 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 64, 64, 96, 64, 96, "avg", 64),
    ("3c", None, 128, 160, 64, 96, "max", None),
    ("4a", 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 96, 128, 192, 160, 192, "avg", 128),
    ("4e", None, 128, 192, 192, 256, "max", None),
    ("5a", 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 352, 192, 320, 192, 224, "max", 128),
]
# The small-image variant: (name, 1x1, 3x3) simple modules; (name, None, 3x3) downsampling ones.
SMALL_MODULES = [
    ("in3a", 32, 32),
    ("in3b", 32, 48),
    ("in3c", None, 80),
    ("in4a", 112, 48),
    ("in4b", 96, 64),
    ("in4c", 80, 80),
    ("in4d", 48, 96),
    ("in4e", None, 96),
    ("in5a", 176, 160),
    ("in5b", 176, 160),
]


class ConvFactory(nn.Sequential):
    """MXNet's ConvFactory: convolution (with bias) `conv_NAME`, BatchNorm `bn_NAME`, ReLU."""

    def __init__(self, in_ch, out_ch, kernel, name, stride=1, pad=0):
        super().__init__(
            OrderedDict(
                conv=conv(in_ch, out_ch, kernel, f"conv_{name}", stride=stride, pad=pad),
                bn=MXBatchNorm(out_ch, f"bn_{name}", eps=BN_EPS, fix_gamma=False),
                relu=nn.ReLU(),
            )
        )
        self.out_channels = out_ch


class Concat(nn.Module):
    """Branches applied to the same input, concatenated along channels."""

    def __init__(self, **branches):
        super().__init__()
        self.branches = nn.ModuleDict(branches)

    def forward(self, x):
        """x (N, C, H, W) -> (N, sum of branch channels, H', W')."""
        return torch.cat([branch(x) for branch in self.branches.values()], dim=1)


def inception(in_ch, name, n1, n3r, n3, nd3r, nd3, pool, proj):
    """Module A (stride 1, four branches) or, when n1 is None, module B (stride 2, three branches)."""
    stride = 1 if n1 is not None else 2
    branches = {}
    if n1 is not None:
        branches["c1x1"] = ConvFactory(in_ch, n1, 1, f"{name}_1x1")
    branches["c3x3"] = nn.Sequential(
        ConvFactory(in_ch, n3r, 1, f"{name}_3x3_reduce"), ConvFactory(n3r, n3, 3, f"{name}_3x3", stride, 1)
    )
    branches["cd3x3"] = nn.Sequential(
        ConvFactory(in_ch, nd3r, 1, f"{name}_double_3x3_reduce"),
        ConvFactory(nd3r, nd3, 3, f"{name}_double_3x3_0", 1, 1),
        ConvFactory(nd3, nd3, 3, f"{name}_double_3x3_1", stride, 1),
    )
    pooling = nn.AvgPool2d(3, 1, 1) if pool == "avg" else nn.MaxPool2d(3, stride, 1)
    if proj is None:
        branches["pool"] = pooling
        return Concat(**branches), n3 + nd3 + in_ch
    branches["proj"] = nn.Sequential(pooling, ConvFactory(in_ch, proj, 1, f"{name}_proj"))
    return Concat(**branches), n1 + n3 + nd3 + proj


def small_network(channels):
    """The variant for images up to 28 pixels; returns (layers, output channels)."""
    layers = [("conv1", ConvFactory(channels, 96, 3, "1", pad=1))]
    in_ch = 96
    for name, ch1, ch3 in SMALL_MODULES:
        if ch1 is None:
            block = Concat(conv=ConvFactory(in_ch, ch3, 3, f"{name}_conv", 2, 1), pool=nn.MaxPool2d(3, 2, 1))
            in_ch += ch3
        else:
            block = Concat(
                c1x1=ConvFactory(in_ch, ch1, 1, f"{name}_1x1"), c3x3=ConvFactory(in_ch, ch3, 3, f"{name}_3x3", pad=1)
            )
            in_ch = ch1 + ch3
        layers.append((name, block))
    return layers, in_ch


def large_network(channels):
    """The 224-pixel network; returns (layers, output channels)."""
    layers = [
        ("conv1", ConvFactory(channels, 64, 7, "1", stride=2, pad=3)),
        ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2red", ConvFactory(64, 64, 1, "2_red")),
        ("conv2", ConvFactory(64, 192, 3, "2", pad=1)),
        ("pool2", nn.MaxPool2d(3, 2)),
    ]
    in_ch = 192
    for name, *widths in MODULES:
        block, in_ch = inception(in_ch, name, *widths)
        layers.append((f"in{name}", block))
    return layers, in_ch


def spatial(size, small):
    """Height (or width) of the feature map that reaches the 7x7 average pooling."""
    if small:
        return pooled(pooled(size, 3, 2, 1), 3, 2, 1)
    size = pooled(pooled(pooled(size, 7, 2, 3), 3, 2), 3, 2)
    return pooled(pooled(size, 3, 2, 1), 3, 2, 1)


def get_symbol(num_classes=1000, image_shape="3,224,224", **kwargs):
    """MXNet's Inception-BN as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, width = parse_image_shape(image_shape, "inception-bn")
    small = height <= 28
    check_min_size("inception-bn", height, width, 25 if small else 205)
    layers, out_ch = small_network(channels) if small else large_network(channels)
    out_h, out_w = spatial(height, small) - 6, spatial(width, small) - 6
    layers += [
        ("global_pool", nn.AvgPool2d(7, 1)),
        ("flatten", nn.Flatten()),
        ("fullyconnected0", linear(out_ch * out_h * out_w, num_classes, "fullyconnected0")),
    ]
    return nn.Sequential(OrderedDict(layers))
