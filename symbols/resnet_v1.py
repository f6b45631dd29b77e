"""Original ResNet (He et al., "Deep Residual Learning for Image Recognition"), MXNet's example `resnet-v1`.

Written by hand: torchvision's ResNet strides the 3x3 convolution of a bottleneck (v1.5), while this network
strides the first 1x1, as the paper and MXNet do; MXNet checkpoints also need MXNet's names
(`conv0`, `bn0`, `stageS_unitU_{conv1,bn1,...,conv1sc,sc}`, `fc1`). Depths as in `symbols.resnet`.
"""

from collections import OrderedDict

from torch import nn

from .mxlayers import conv, parse_image_shape
from .resnet import bn, head, resnet_config, stages, stem


class PostActUnit(nn.Module):
    """One residual unit: conv-BN-ReLU twice (thrice, bottleneck) with BN last, a shortcut, then ReLU."""

    def __init__(self, in_ch, out_ch, stride, dim_match, name, bottleneck):
        super().__init__()
        mid = out_ch // 4 if bottleneck else out_ch
        if bottleneck:
            self.conv1 = conv(in_ch, mid, 1, f"{name}_conv1", stride=stride, bias=False)
            self.bn1 = bn(mid, f"{name}_bn1")
            self.conv2 = conv(mid, mid, 3, f"{name}_conv2", pad=1, bias=False)
            self.bn2 = bn(mid, f"{name}_bn2")
            self.conv3 = conv(mid, out_ch, 1, f"{name}_conv3", bias=False)
            self.bn3 = bn(out_ch, f"{name}_bn3")
        else:
            self.conv1 = conv(in_ch, mid, 3, f"{name}_conv1", stride=stride, pad=1, bias=False)
            self.bn1 = bn(mid, f"{name}_bn1")
            self.conv2 = conv(mid, out_ch, 3, f"{name}_conv2", pad=1, bias=False)
            self.bn2 = bn(out_ch, f"{name}_bn2")
        self.bottleneck = bottleneck
        self.conv1sc = None if dim_match else conv(in_ch, out_ch, 1, f"{name}_conv1sc", stride=stride, bias=False)
        self.sc = None if dim_match else bn(out_ch, f"{name}_sc")

    def forward(self, x):
        """x (N, in_ch, H, W) -> (N, out_ch, H/stride, W/stride)."""
        out = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
        if self.bottleneck:
            out = self.bn3(self.conv3(out.relu()))
        shortcut = x if self.sc is None else self.sc(self.conv1sc(x))
        return (out + shortcut).relu()


def get_symbol(num_classes=1000, num_layers=None, image_shape="3,224,224", **kwargs):
    """MXNet's original ResNet as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, _ = parse_image_shape(image_shape, "resnet-v1")
    units, filters, bottleneck = resnet_config("resnet-v1", num_layers, height, small_height=28)
    layers = stem(channels, filters[0], height)
    if height <= 32:
        # MXNet's small-image stem normalises without an activation; kept for identical outputs.
        layers.append(("bn0", bn(filters[0], "bn0")))
    layers += stages(PostActUnit, units, filters, bottleneck)
    layers += head(filters[-1], num_classes)
    return nn.Sequential(OrderedDict(layers))
