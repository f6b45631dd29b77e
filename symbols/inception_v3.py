"""Inception v3 (Szegedy et al. 2015), MXNet's example `inception-v3`, to its layout and parameter names.

Written by hand: torchvision's Inception v3 has other names and its own pooling, and MXNet checkpoints need
MXNet's (NAME_conv2d, NAME_batchnorm, fc1). Every convolution is MXNet's `Conv`: no bias, BatchNorm with
fix_gamma and the default eps, ReLU. The final 8x8 average pooling has no padding, so the network needs at
least 299x299 pixels, as in MXNet; larger images widen fc1 (2048 * (side - 7)^2 inputs per final side).
The torchvision network with ImageNet weights stays reachable as the pretrained zoo name `inception_v3`.
"""

from collections import OrderedDict

from torch import nn

from .inception_bn import Concat
from .mxlayers import check_min_size, conv_bn, linear, min_side, mx_pool, parse_image_shape, pooled

FEATURES = 2048  # channels reaching the final pooling


def unit(in_ch, out_ch, name, kernel=1, stride=1, pad=0):
    """MXNet's Conv(name=...): NAME_conv2d (no bias), NAME_batchnorm (fix_gamma), ReLU."""
    return conv_bn(in_ch, out_ch, kernel, f"{name}_conv2d", f"{name}_batchnorm", stride, pad)


def chain(in_ch, name, specs):
    """Units applied in turn; specs: (name suffix, filters, kernel, stride, pad) each."""
    layers = []
    for suffix, out_ch, kernel, stride, pad in specs:
        layers.append(unit(in_ch, out_ch, name + suffix, kernel, stride, pad))
        in_ch = out_ch
    return nn.Sequential(*layers)


def pool_proj(in_ch, pool, proj, name):
    """The 3x3 stride-1 pooling branch and its 1x1 projection NAME_tower_2_conv."""
    return nn.Sequential(mx_pool(pool, 3, 1, 1), unit(in_ch, proj, f"{name}_tower_2_conv"))


def block_a(in_ch, n1, n3r, n3a, n3b, n5r, n5, pool, proj, name):
    """Inception7A: 1x1, 5x5, double 3x3 and pooling branches; returns (module, out channels)."""
    return Concat(
        c1=unit(in_ch, n1, f"{name}_conv"),
        c5=chain(in_ch, f"{name}_tower", [("_conv", n5r, 1, 1, 0), ("_conv_1", n5, 5, 1, 2)]),
        c3=chain(
            in_ch, f"{name}_tower_1", [("_conv", n3r, 1, 1, 0), ("_conv_1", n3a, 3, 1, 1), ("_conv_2", n3b, 3, 1, 1)]
        ),
        proj=pool_proj(in_ch, pool, proj, name),
    ), n1 + n5 + n3b + proj


def block_b(in_ch, n3, ndr, nd1, nd2, name):
    """Inception7B, the first stride-2 module: 3x3, double 3x3 and max pooling; returns (module, out channels)."""
    return Concat(
        c3=unit(in_ch, n3, f"{name}_conv", 3, 2),
        cd=chain(
            in_ch, f"{name}_tower", [("_conv", ndr, 1, 1, 0), ("_conv_1", nd1, 3, 1, 1), ("_conv_2", nd2, 3, 2, 0)]
        ),
        pool=mx_pool("max", 3, 2),
    ), n3 + nd2 + in_ch


def block_c(in_ch, n1, d7r, d71, d72, q7r, q71, q72, q73, q74, pool, proj, name):
    """Inception7C: 1x1, factorised 7x7, doubly factorised 7x7 and pooling branches; returns (module, out channels)."""
    w, h = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, pad) of a 1x7 and a 7x1 convolution
    d7 = [("_conv", d7r, 1, 0), ("_conv_1", d71, *w), ("_conv_2", d72, *h)]
    q7 = [("_conv", q7r, 1, 0), ("_conv_1", q71, *h), ("_conv_2", q72, *w), ("_conv_3", q73, *h), ("_conv_4", q74, *w)]
    return Concat(
        c1=unit(in_ch, n1, f"{name}_conv"),
        d7=chain(in_ch, f"{name}_tower", [(s, n, k, 1, p) for s, n, k, p in d7]),
        q7=chain(in_ch, f"{name}_tower_1", [(s, n, k, 1, p) for s, n, k, p in q7]),
        proj=pool_proj(in_ch, pool, proj, name),
    ), n1 + d72 + q74 + proj


def block_d(in_ch, n3r, n3, nd7r, nd71, nd72, nd73, name):
    """Inception7D, the second stride-2 module; returns (module, out channels)."""
    d7 = [("_conv", nd7r, 1, 1, 0), ("_conv_1", nd71, (1, 7), 1, (0, 3))]
    d7 += [("_conv_2", nd72, (7, 1), 1, (3, 0)), ("_conv_3", nd73, 3, 2, 0)]
    return Concat(
        c3=chain(in_ch, f"{name}_tower", [("_conv", n3r, 1, 1, 0), ("_conv_1", n3, 3, 2, 0)]),
        d7=chain(in_ch, f"{name}_tower_1", d7),
        pool=mx_pool("max", 3, 2),
    ), n3 + nd73 + in_ch


def split(in_ch, a, b, name):
    """A 1x3 and a 3x1 convolution (NAME_mixed_conv, NAME_mixed_conv_1) side by side on the same input."""
    return Concat(
        a=unit(in_ch, a, f"{name}_mixed_conv", (1, 3), 1, (0, 1)),
        b=unit(in_ch, b, f"{name}_mixed_conv_1", (3, 1), 1, (1, 0)),
    )


def block_e(in_ch, n1, d3r, d31, d32, t3r, t3, t31, t32, pool, proj, name):
    """Inception7E: 1x1, split 3x3, 3x3 then split 3x3, and pooling branches; returns (module, out channels)."""
    tower, tower_1 = f"{name}_tower", f"{name}_tower_1"
    return Concat(
        c1=unit(in_ch, n1, f"{name}_conv"),
        d3=nn.Sequential(unit(in_ch, d3r, f"{tower}_conv"), split(d3r, d31, d32, tower)),
        t3=nn.Sequential(
            unit(in_ch, t3r, f"{tower_1}_conv"),
            unit(t3r, t3, f"{tower_1}_conv_1", 3, 1, 1),
            split(t3, t31, t32, tower_1),
        ),
        proj=pool_proj(in_ch, pool, proj, name),
    ), n1 + d31 + d32 + t31 + t32 + proj


# (builder, widths..., name) of MXNet's modules, in order
MODULES = [
    (block_a, 64, 64, 96, 96, 48, 64, "avg", 32, "mixed"),
    (block_a, 64, 64, 96, 96, 48, 64, "avg", 64, "mixed_1"),
    (block_a, 64, 64, 96, 96, 48, 64, "avg", 64, "mixed_2"),
    (block_b, 384, 64, 96, 96, "mixed_3"),
    (block_c, 192, 128, 128, 192, 128, 128, 128, 128, 192, "avg", 192, "mixed_4"),
    (block_c, 192, 160, 160, 192, 160, 160, 160, 160, 192, "avg", 192, "mixed_5"),
    (block_c, 192, 160, 160, 192, 160, 160, 160, 160, 192, "avg", 192, "mixed_6"),
    (block_c, 192, 192, 192, 192, 192, 192, 192, 192, 192, "avg", 192, "mixed_7"),
    (block_d, 192, 320, 192, 192, 192, 192, "mixed_8"),
    (block_e, 320, 384, 384, 384, 448, 384, 384, 384, "avg", 192, "mixed_9"),
    (block_e, 320, 384, 384, 384, 448, 384, 384, 384, "max", 192, "mixed_10"),
]


def final_size(side):
    """Height (or width) of the feature map reaching the 8x8 average pooling, for an image side."""
    side = pooled(side, 3, 2) - 2  # conv (3x3/2), conv_1 (3x3); conv_2 keeps the size
    side = pooled(side, 3, 2) - 2  # pool (3x3/2), conv_4 (3x3)
    for _ in range(3):  # pool1, mixed_3, mixed_8: 3x3/2 each
        side = pooled(side, 3, 2)
    return side


MIN_SIZE = min_side(final_size, 8)  # 299: the 8x8 pooling needs an 8x8 map


def get_symbol(num_classes=1000, image_shape="3,299,299", **kwargs):
    """MXNet's Inception v3 as an nn.Sequential whose parameters carry MXNet's names (dtype is autocast's concern)."""
    channels, height, width = parse_image_shape(image_shape, "inception-v3")
    check_min_size("inception-v3", height, width, MIN_SIZE)
    layers = [
        ("conv", unit(channels, 32, "conv", 3, 2)),
        ("conv_1", unit(32, 32, "conv_1", 3)),
        ("conv_2", unit(32, 64, "conv_2", 3, 1, 1)),
        ("pool", mx_pool("max", 3, 2)),
        ("conv_3", unit(64, 80, "conv_3")),
        ("conv_4", unit(80, 192, "conv_4", 3)),
        ("pool1", mx_pool("max", 3, 2)),
    ]
    in_ch = 192
    for build, *widths in MODULES:
        block, in_ch = build(in_ch, *widths)
        layers.append((widths[-1], block))
    side_h, side_w = final_size(height) - 7, final_size(width) - 7
    layers += [
        ("global_pool", mx_pool("avg", 8)),
        ("flatten", nn.Flatten()),
        ("fc1", linear(FEATURES * side_h * side_w, num_classes, "fc1")),
    ]
    return nn.Sequential(OrderedDict(layers))
