"""MobileNet v1 (Howard et al. 2017), MXNet's example `mobilenet`, with width multiplier 0.25, 0.5, 0.75 or 1.

Written by hand: torchvision has no MobileNet v1, and MXNet checkpoints need its names (conv_1_conv2d,
conv_1_batchnorm, conv_K_dw_*, conv_K_*, fc). MXNet takes the multiplier as `alpha`; `multiplier` is
accepted too. MXNet pools with a (resolution/32)-wide window, resolution defaulting to 224; here the
resolution defaults to the image height, so the pooling window fits the images given.
"""

from collections import OrderedDict

from torch import nn

from .errors import UserError, choice_error
from .mxlayers import MXBatchNorm, check_min_size, conv, linear, parse_image_shape, pooled

MULTIPLIERS = (0.25, 0.5, 0.75, 1.0)


def conv_bn_relu(in_ch, out_ch, kernel, name, stride=1, groups=1):
    """MXNet's Conv block: convolution without bias, BatchNorm (fix_gamma, eps 1e-3), ReLU."""
    pad = kernel // 2
    return [
        (
            f"{name}_conv2d",
            conv(in_ch, out_ch, kernel, f"{name}_conv2d", stride=stride, pad=pad, groups=groups, bias=False),
        ),
        (f"{name}_batchnorm", MXBatchNorm(out_ch, f"{name}_batchnorm")),
        (f"{name}_relu", nn.ReLU()),
    ]


def plan(base):
    """(index, depth, width factor of the pointwise conv, stride of the depthwise conv) for blocks 2-14."""
    steps = [(base, 2, 1), (base * 2, 2, 2), (base * 4, 1, 1), (base * 4, 2, 2), (base * 8, 1, 1), (base * 8, 2, 2)]
    steps += [(base * 16, 1, 1)] * 5 + [(base * 16, 2, 2), (base * 32, 1, 1)]
    return [(index, *step) for index, step in enumerate(steps, start=2)]


def get_symbol(num_classes=1000, image_shape="3,224,224", alpha=None, multiplier=1.0, resolution=None, **kwargs):
    """MXNet's MobileNet v1 as an nn.Sequential whose parameters carry MXNet's names."""
    width = float(alpha if alpha is not None else multiplier)
    if width not in MULTIPLIERS:
        raise choice_error("mobilenet multiplier", width, MULTIPLIERS)
    channels, height, img_width = parse_image_shape(image_shape, "mobilenet")
    check_min_size("mobilenet", height, img_width, 32)
    base = int(32 * width)
    layers = conv_bn_relu(channels, base, 3, "conv_1", stride=2)
    for index, depth, factor, stride in plan(base):
        layers += conv_bn_relu(depth, depth, 3, f"conv_{index}_dw", stride=stride, groups=depth)
        layers += conv_bn_relu(depth, depth * factor, 1, f"conv_{index}")
    # Five stride-2 3x3 convolutions with padding 1 each halve the size, rounding up.
    out_h, out_w = height, img_width
    for _ in range(5):
        out_h, out_w = pooled(out_h, 3, 2, 1), pooled(out_w, 3, 2, 1)
    window = int(resolution or height) // 32
    if window > min(out_h, out_w):
        raise UserError(f"mobilenet: resolution {resolution} needs images of at least {resolution}x{resolution}")
    layers += [
        ("global_pool", nn.AvgPool2d(window, 1)),
        ("flatten", nn.Flatten()),
        ("fc", linear(base * 32 * (out_h - window + 1) * (out_w - window + 1), num_classes, "fc")),
    ]
    return nn.Sequential(OrderedDict(layers))
