"""ResNeXt (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks"), MXNet's `resnext`.

Written by hand: torchvision's ResNeXt has the same units but no `bn_data` input normalisation and other
parameter names; MXNet checkpoints need MXNet's (`bn_data`, `conv0`, `stageS_unitU_{conv1,...,sc,sc_bn}`,
`fc1`). Depths 50, 101, 152 (and MXNet's others: 18, 34, 200, 269) for images taller than 32 pixels;
the small-image depths of `symbols.resnet` up to 32 pixels. `num_group` (default 32) sets the cardinality.
"""

from collections import OrderedDict

from torch import nn

from .mxlayers import conv, parse_image_shape
from .resnet import bn, head, resnet_config, stages, stem


class AggregatedUnit(nn.Module):
    """One ResNeXt unit: 1x1, grouped 3x3 and 1x1 convolutions with BN, a shortcut, then ReLU."""

    def __init__(self, in_ch, out_ch, stride, dim_match, name, bottleneck, num_group=32):
        super().__init__()
        mid = out_ch // 2 if bottleneck else out_ch
        if bottleneck:
            self.conv1 = conv(in_ch, mid, 1, f"{name}_conv1", bias=False)
            self.bn1 = bn(mid, f"{name}_bn1")
            self.conv2 = conv(mid, mid, 3, f"{name}_conv2", stride=stride, pad=1, groups=num_group, bias=False)
            self.bn2 = bn(mid, f"{name}_bn2")
            self.conv3 = conv(mid, out_ch, 1, f"{name}_conv3", bias=False)
            self.bn3 = bn(out_ch, f"{name}_bn3")
        else:
            self.conv1 = conv(in_ch, mid, 3, f"{name}_conv1", stride=stride, pad=1, bias=False)
            self.bn1 = bn(mid, f"{name}_bn1")
            self.conv2 = conv(mid, out_ch, 3, f"{name}_conv2", pad=1, bias=False)
            self.bn2 = bn(out_ch, f"{name}_bn2")
        self.bottleneck = bottleneck
        self.sc = None if dim_match else conv(in_ch, out_ch, 1, f"{name}_sc", stride=stride, bias=False)
        self.sc_bn = None if dim_match else bn(out_ch, f"{name}_sc_bn")

    def forward(self, x):
        """x (N, in_ch, H, W) -> (N, out_ch, H/stride, W/stride)."""
        out = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
        if self.bottleneck:
            out = self.bn3(self.conv3(out.relu()))
        shortcut = x if self.sc is None else self.sc_bn(self.sc(x))
        return (out + shortcut).relu()


def get_symbol(num_classes=1000, num_layers=None, image_shape="3,224,224", num_group=32, **kwargs):
    """MXNet's ResNeXt as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, _ = parse_image_shape(image_shape, "resnext")
    units, filters, bottleneck = resnet_config("resnext", num_layers, height, small_height=32)
    layers = [("bn_data", bn(channels, "bn_data", fix_gamma=True))]
    layers += stem(channels, filters[0], height)
    layers += stages(AggregatedUnit, units, filters, bottleneck, num_group=int(num_group))
    layers += head(filters[-1], num_classes)
    return nn.Sequential(OrderedDict(layers))
