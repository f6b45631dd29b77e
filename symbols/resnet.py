"""Pre-activation ResNet (He et al., "Identity Mappings in Deep Residual Networks"), MXNet's example `resnet`.

Written by hand: torchvision's ResNet is the post-activation v1 network, and MXNet checkpoints need MXNet's
layout and names (`bn_data`, `conv0`, `stageS_unitU_{bn1,conv1,...,sc}`, `bn1`, `fc1`).
Images of height <= 28 take the small-image network (3 stages, depths 6n+2 below 164 or 9n+2 from 164
on, e.g. 20, 56, 110, 164, 1001); taller images take the ImageNet one (depths 18, 34, 50, 101, 152, 200, 269).
Heights 29-32 take a 3x3 stem without pooling, as in MXNet, and accept either list of depths.
"""

from collections import OrderedDict

from torch import nn

from .errors import UserError
from .mxlayers import MXBatchNorm, conv, linear, parse_image_shape

BN_EPS = 2e-5
IMAGENET_UNITS = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
    200: [3, 24, 36, 3],
    269: [3, 30, 48, 8],
}
SMALL_DEPTHS = "6n+2 below 164 (20, 32, 44, 56, 110, ...) or 9n+2 from 164 on (164, 1001, ...)"


def small_image_config(num_layers):
    """Return (units per stage, filter list, bottleneck) of MXNet's 3-stage small-image ResNet, or None."""
    if num_layers >= 164 and (num_layers - 2) % 9 == 0:
        return [(num_layers - 2) // 9] * 3, [16, 64, 128, 256], True
    if 8 <= num_layers < 164 and (num_layers - 2) % 6 == 0:
        return [(num_layers - 2) // 6] * 3, [16, 16, 32, 64], False
    return None


def resnet_config(network, num_layers, height, small_height):
    """Return (units, filter list, bottleneck) the way MXNet's example picks them; UserError for other depths."""
    if num_layers is None:
        raise UserError(
            f"{network} needs num_layers (--num-layers); valid values: {valid_depths(height, small_height)}"
        )
    num_layers = int(num_layers)
    # MXNet picks the list of depths by height; depths such as 50 are in both lists, so the ImageNet one wins.
    if height > small_height and num_layers in IMAGENET_UNITS:
        wide = [64, 256, 512, 1024, 2048] if num_layers >= 50 else [64, 64, 128, 256, 512]
        return IMAGENET_UNITS[num_layers], wide, num_layers >= 50
    config = small_image_config(num_layers) if height <= 32 else None
    if config is None:
        raise UserError(
            f"{network} has no {num_layers}-layer network for {height}-pixel images; "
            f"valid num_layers: {valid_depths(height, small_height)}"
        )
    return config


def valid_depths(height, small_height):
    """Describe the depths MXNet's example accepts for images of this height."""
    imagenet = ", ".join(str(d) for d in IMAGENET_UNITS)
    if height <= small_height:
        return SMALL_DEPTHS
    if height <= 32:
        return f"{imagenet}, or {SMALL_DEPTHS}"
    return imagenet


def bn(channels, name, fix_gamma=False):
    """MXNet's ResNet BatchNorm: eps 2e-5, momentum 0.9."""
    return MXBatchNorm(channels, name, eps=BN_EPS, fix_gamma=fix_gamma)


class PreActUnit(nn.Module):
    """One pre-activation residual unit: BN-ReLU-conv twice (or thrice, bottleneck), plus a shortcut."""

    def __init__(self, in_ch, out_ch, stride, dim_match, name, bottleneck):
        super().__init__()
        mid = out_ch // 4 if bottleneck else out_ch
        self.bn1 = bn(in_ch, f"{name}_bn1")
        if bottleneck:
            self.conv1 = conv(in_ch, mid, 1, f"{name}_conv1", bias=False)
            self.bn2 = bn(mid, f"{name}_bn2")
            self.conv2 = conv(mid, mid, 3, f"{name}_conv2", stride=stride, pad=1, bias=False)
            self.bn3 = bn(mid, f"{name}_bn3")
            self.conv3 = conv(mid, out_ch, 1, f"{name}_conv3", bias=False)
        else:
            self.conv1 = conv(in_ch, mid, 3, f"{name}_conv1", stride=stride, pad=1, bias=False)
            self.bn2 = bn(mid, f"{name}_bn2")
            self.conv2 = conv(mid, out_ch, 3, f"{name}_conv2", pad=1, bias=False)
        self.bottleneck = bottleneck
        # The projection shortcut reads the activated input (act1), as MXNet's unit does.
        self.sc = None if dim_match else conv(in_ch, out_ch, 1, f"{name}_sc", stride=stride, bias=False)

    def forward(self, x):
        """x (N, in_ch, H, W) -> (N, out_ch, H/stride, W/stride)."""
        # in-place ReLU on BatchNorm outputs: their backward needs only the BN input, and it saves a copy per layer
        act1 = self.bn1(x).relu_()
        out = self.conv2(self.bn2(self.conv1(act1)).relu_())
        if self.bottleneck:
            out = self.conv3(self.bn3(out).relu_())
        return out.add_(x if self.sc is None else self.sc(act1))


def stem(channels, first, height):
    """MXNet's stem: 3x3 conv for images up to 32 pixels, else 7x7/2 conv, BN, ReLU and 3x3/2 max pooling."""
    if height <= 32:
        return [("conv0", conv(channels, first, 3, "conv0", pad=1, bias=False))]
    return [
        ("conv0", conv(channels, first, 7, "conv0", stride=2, pad=3, bias=False)),
        ("bn0", bn(first, "bn0")),
        ("relu0", nn.ReLU(inplace=True)),
        ("pool0", nn.MaxPool2d(3, 2, 1)),
    ]


def stages(unit, units, filters, bottleneck, **unit_kwargs):
    """The residual stages: stage S's first unit changes width (stride 2 after stage 1), the others keep it."""
    layers = []
    in_ch = filters[0]
    for s, count in enumerate(units):
        for u in range(count):
            name = f"stage{s + 1}_unit{u + 1}"
            stride = 2 if s > 0 and u == 0 else 1
            layers.append((name, unit(in_ch, filters[s + 1], stride, u > 0, name, bottleneck, **unit_kwargs)))
            in_ch = filters[s + 1]
    return layers


def head(channels, num_classes):
    """Global average pooling, flatten and the `fc1` classifier."""
    return [
        ("pool1", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc1", linear(channels, num_classes, "fc1")),
    ]


def get_symbol(num_classes=1000, num_layers=None, image_shape="3,224,224", **kwargs):
    """MXNet's pre-activation ResNet as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, _ = parse_image_shape(image_shape, "resnet")
    units, filters, bottleneck = resnet_config("resnet", num_layers, height, small_height=28)
    layers = [("bn_data", bn(channels, "bn_data", fix_gamma=True))]
    layers += stem(channels, filters[0], height)
    layers += stages(PreActUnit, units, filters, bottleneck)
    layers += [("bn1", bn(filters[-1], "bn1")), ("relu1", nn.ReLU(inplace=True))]
    layers += head(filters[-1], num_classes)
    return nn.Sequential(OrderedDict(layers))
