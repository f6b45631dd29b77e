"""MobileNet v2 (Sandler et al. 2018), MXNet's example `mobilenetv2`; `multiplier` scales the widths.

Written by hand: torchvision's MobileNet v2 rounds widths to multiples of 8 and has no expansion convolution
in its first block, while MXNet's rounds each width to the nearest integer, keeps 1280 filters before the
pooling unless the multiplier exceeds 1, and expands every block (t = 1 too); MXNet checkpoints also need its
names (first-3x3-conv-conv2d, seq-I-blockJ-exp-batchnorm, last-1x1-conv-conv2d, fc). Every BatchNorm trains
gamma with eps 1e-5; the activation is ReLU6 (MXNet's clip to [0, 6]); the pooling is global.
"""

from collections import OrderedDict

from torch import nn

from .errors import UserError
from .mxlayers import MXBatchNorm, check_min_size, conv, linear, parse_image_shape

MIN_SIZE = 32
# (expansion t, output channels c, blocks n, stride s of the first block), MXNet's 224-pixel table.
BOTTLENECKS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def unit(in_ch, out_ch, kernel, prefix, stride=1, groups=1, act=True):
    """MXNet's mobilenet_unit: convolution without bias `PREFIX-conv2d`, BatchNorm `PREFIX-batchnorm`, ReLU6."""
    layers = OrderedDict(
        conv=conv(in_ch, out_ch, kernel, f"{prefix}-conv2d", stride, kernel // 2, groups, bias=False),
        bn=MXBatchNorm(out_ch, f"{prefix}-batchnorm", eps=1e-5, fix_gamma=False),
    )
    if act:
        layers["relu6"] = nn.ReLU6()
    return nn.Sequential(layers)


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; the input is added back when `shortcut`."""

    def __init__(self, in_ch, out_ch, t, stride, prefix, shortcut):
        super().__init__()
        mid = int(round(in_ch * t))
        self.exp = unit(in_ch, mid, 1, f"{prefix}-exp")
        self.depthwise = unit(mid, mid, 3, f"{prefix}-depthwise", stride, groups=mid)
        self.linear = unit(mid, out_ch, 1, f"{prefix}-linear", act=False)
        self.shortcut = shortcut

    def forward(self, x):
        """x (N, in_ch, H, W) -> (N, out_ch, H / stride, W / stride)."""
        out = self.linear(self.depthwise(self.exp(x)))
        return x + out if self.shortcut else out


def get_symbol(num_classes=1000, image_shape="3,224,224", multiplier=1.0, **kwargs):
    """MXNet's MobileNet v2 as an nn.Sequential whose parameters carry MXNet's names."""
    multiplier = float(multiplier)
    if not multiplier > 0:
        raise UserError(f"mobilenetv2: multiplier {multiplier} must be positive, such as 1.0, 0.75 or 0.5")
    channels, height, width = parse_image_shape(image_shape, "mobilenetv2")
    check_min_size("mobilenetv2", height, width, MIN_SIZE)
    in_ch = int(round(32 * multiplier))
    layers = [("first", unit(channels, in_ch, 3, "first-3x3-conv", stride=2))]
    for i, (t, c, n, s) in enumerate(BOTTLENECKS):
        out_ch = int(round(c * multiplier))
        for j in range(n):
            block = InvertedResidual(in_ch, out_ch, t, s if j == 0 else 1, f"seq-{i}-block{j}", shortcut=j > 0)
            layers.append((f"seq{i}_block{j}", block))
            in_ch = out_ch
    last = int(1280 * multiplier) if multiplier > 1.0 else 1280
    layers += [
        ("last", unit(in_ch, last, 1, "last-1x1-conv")),
        ("global_pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", linear(last, num_classes, "fc")),
    ]
    return nn.Sequential(OrderedDict(layers))
