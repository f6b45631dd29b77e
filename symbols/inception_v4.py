"""Inception v4 (Szegedy et al. 2016), MXNet's example `inception-v4`, to its layout and parameter names.

Written by hand: timm's Inception v4 has other names and pools globally, and MXNet checkpoints need MXNet's
(in_stem_conv1_3*3_conv2d, in1A_..., fc1). Every convolution is MXNet's `Conv`: no bias, BatchNorm with
fix_gamma and the default eps, ReLU. MXNet's final pooling is an 8x8 window with stride 1 and padding 1, not a
global one: a 299-pixel image leaves a 3x3 map, so fc1 takes 1536 * 3 * 3 inputs (1536 * (side - 5)^2 for a
final side), and the smallest image is 235x235 (a 6x6 map).
"""

from collections import OrderedDict

from torch import nn

from .inception_bn import Concat
from .mxlayers import check_min_size, conv_bn, linear, min_side, mx_pool, parse_image_shape, pooled

FEATURES = 1536  # channels reaching the final pooling
W7, H7, W3, H3 = ((1, 7), (0, 3)), ((7, 1), (3, 0)), ((1, 3), (0, 1)), ((3, 1), (1, 0))  # (kernel, pad) pairs


def unit(in_ch, out_ch, name, kernel=1, stride=1, pad=0):
    """MXNet's Conv(name=...): NAME_conv2d (no bias), NAME_batchnorm (fix_gamma), ReLU."""
    return conv_bn(in_ch, out_ch, kernel, f"{name}_conv2d", f"{name}_batchnorm", stride, pad)


def chain(in_ch, name, specs):
    """Units applied in turn; specs: (layer name, filters, kernel, pad[, stride]) each, named NAME_<layer>."""
    layers = []
    for tag, out_ch, kernel, pad, *stride in specs:
        layers.append(unit(in_ch, out_ch, f"{name}_{tag}", kernel, stride[0] if stride else 1, pad))
        in_ch = out_ch
    return nn.Sequential(*layers)


def pooled_branch(in_ch, name, out_ch):
    """A 3x3 stride-1 average pooling (padded) and its 1x1 convolution NAME_conv1_1*1."""
    return nn.Sequential(mx_pool("avg", 3, 1, 1), unit(in_ch, out_ch, f"{name}_conv1_1*1"))


def stem(channels, name):
    """Inception_stem: three convolutions, then three two-branch concatenations; 384 channels out."""
    return nn.Sequential(
        chain(channels, name, [("conv1_3*3", 32, 3, 0, 2), ("conv2_3*3", 32, 3, 0), ("conv3_3*3", 64, 3, 1)]),
        Concat(pool=mx_pool("max", 3, 2), conv=unit(64, 96, f"{name}_conv4_3*3", 3, 2)),
        Concat(
            a=chain(160, name, [("conv5_1*1", 64, 1, 0), ("conv6_3*3", 96, 3, 0)]),
            b=chain(160, name, [("conv7_1*1", 64, 1, 0), ("conv8_7*1", 64, *H7), ("conv9_1*7", 64, *W7)]).append(
                unit(64, 96, f"{name}_conv10_3*3", 3)
            ),
        ),
        Concat(conv=unit(192, 192, f"{name}_conv11_3*3", 3, 2), pool=mx_pool("max", 3, 2)),
    )


def inception_a(name):
    """InceptionA on 384 channels: pooled 1x1, 1x1, 3x3 and double 3x3 branches of 96 each."""
    return Concat(
        pool=pooled_branch(384, name, 96),
        c1=unit(384, 96, f"{name}_conv2_1*1"),
        c3=chain(384, name, [("conv3_1*1", 64, 1, 0), ("conv4_3*3", 96, 3, 1)]),
        cd=chain(384, name, [("conv5_1*1", 64, 1, 0), ("conv6_3*3", 96, 3, 1), ("conv7_3*3", 96, 3, 1)]),
    )


def reduction_a(name):
    """ReductionA: 384 -> 1024 channels at half the size."""
    return Concat(
        pool=mx_pool("max", 3, 2),
        c3=unit(384, 384, f"{name}_conv1_3*3", 3, 2),
        cd=chain(384, name, [("conv2_1*1", 192, 1, 0), ("conv3_3*3", 224, 3, 1), ("conv4_3*3", 256, 3, 0, 2)]),
    )


def inception_b(name):
    """InceptionB on 1024 channels: pooled 1x1, 1x1, 7x7 and double 7x7 branches (MXNet names kernels loosely)."""
    d7 = [("conv6_1*1", 192, 1, 0), ("conv7_1*7", 192, *W7), ("conv8_7*1", 224, *H7)]
    d7 += [("conv9_1*7", 224, *W7), ("conv10_7*1", 256, *H7)]
    return Concat(
        pool=pooled_branch(1024, name, 128),
        c1=unit(1024, 384, f"{name}_conv2_1*1"),
        c7=chain(1024, name, [("conv3_1*1", 192, 1, 0), ("conv4_1*7", 224, *W7), ("conv5_1*7", 256, *H7)]),
        d7=chain(1024, name, d7),
    )


def reduction_b(name):
    """ReductionB: 1024 -> 1536 channels at half the size."""
    c7 = [("conv3_1*1", 256, 1, 0), ("conv4_1*7", 256, *W7), ("conv5_7*1", 320, *H7), ("conv6_3*3", 320, 3, 0, 2)]
    return Concat(
        pool=mx_pool("max", 3, 2),
        c3=chain(1024, name, [("conv1_1*1", 192, 1, 0), ("conv2_3*3", 192, 3, 0, 2)]),
        c7=chain(1024, name, c7),
    )


def inception_c(name):
    """InceptionC on 1536 channels: pooled 1x1, 1x1 and two branches that each end in a 1x3 and a 3x1 side by side."""
    c3 = chain(1536, name, [("conv3_1*1", 384, 1, 0)])
    c3.append(Concat(a=chain(384, name, [("conv4_3*1", 256, *W3)]), b=chain(384, name, [("conv5_1*3", 256, *H3)])))
    cd = chain(1536, name, [("conv6_1*1", 384, 1, 0), ("conv7_1*3", 448, *W3), ("conv8_3*1", 512, *H3)])
    cd.append(Concat(a=chain(512, name, [("conv9_1*3", 256, *H3)]), b=chain(512, name, [("conv10_3*1", 256, *W3)])))
    return Concat(pool=pooled_branch(1536, name, 256), c1=unit(1536, 256, f"{name}_conv2_1*1"), c3=c3, cd=cd)


def final_size(side):
    """Height (or width) of the feature map reaching the final pooling, for an image side."""
    side = pooled(side, 3, 2) - 2  # conv1 (3x3/2), conv2 (3x3); conv3 keeps the size
    side = pooled(side, 3, 2) - 2  # the first concatenation (3x3/2), conv6 / conv10 (3x3)
    for _ in range(3):  # the last concatenation of the stem, ReductionA, ReductionB: 3x3/2 each
        side = pooled(side, 3, 2)
    return side


MIN_SIZE = min_side(final_size, 6)  # 235: the 8x8 pooling with padding 1 needs a 6x6 map


def get_symbol(num_classes=1000, image_shape="3,299,299", **kwargs):
    """MXNet's Inception v4 as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, width = parse_image_shape(image_shape, "inception-v4")
    check_min_size("inception-v4", height, width, MIN_SIZE)
    layers = [("in_stem", stem(channels, "in_stem"))]
    layers += [(f"in{i}A", inception_a(f"in{i}A")) for i in range(1, 5)]
    layers.append(("re1A", reduction_a("re1A")))
    layers += [(f"in{i}B", inception_b(f"in{i}B")) for i in range(1, 8)]
    layers.append(("re1B", reduction_b("re1B")))
    layers += [(f"in{i}C", inception_c(f"in{i}C")) for i in range(1, 4)]
    side_h, side_w = pooled(final_size(height), 8, 1, 1), pooled(final_size(width), 8, 1, 1)
    layers += [
        ("global_avgpool", mx_pool("avg", 8, 1, 1)),
        ("dropout", nn.Dropout(0.2)),
        ("flatten", nn.Flatten()),
        ("fc1", linear(FEATURES * side_h * side_w, num_classes, "fc1")),
    ]
    return nn.Sequential(OrderedDict(layers))
