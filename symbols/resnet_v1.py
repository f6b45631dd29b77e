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
    """One residual unit: conv-BN-ReLU twice (thrice, bottleneck) with BN last, a shortcut, then ReLU.

    ResNeXt's unit is this one with other settings (`symbols.resnext`): `width` is out_ch / mid of a bottleneck
    (4 here, 2 there), `stride_3x3` moves the stride from the first 1x1 to the 3x3, `groups` splits the 3x3, and
    `shortcut` names the projection's convolution and BatchNorm as MXNet does for the family.
    """

    def __init__(
        self,
        in_ch,
        out_ch,
        stride,
        dim_match,
        name,
        bottleneck,
        width=4,
        stride_3x3=False,
        groups=1,
        shortcut=("conv1sc", "sc"),
    ):
        super().__init__()
        if bottleneck:
            mid = out_ch // width
            s1, s2 = (1, stride) if stride_3x3 else (stride, 1)
            self.conv1 = conv(in_ch, mid, 1, f"{name}_conv1", stride=s1, bias=False)
            self.bn1 = bn(mid, f"{name}_bn1")
            self.conv2 = conv(mid, mid, 3, f"{name}_conv2", stride=s2, pad=1, groups=groups, bias=False)
            self.bn2 = bn(mid, f"{name}_bn2")
            self.conv3 = conv(mid, out_ch, 1, f"{name}_conv3", bias=False)
            self.bn3 = bn(out_ch, f"{name}_bn3")
        else:
            self.conv1 = conv(in_ch, out_ch, 3, f"{name}_conv1", stride=stride, pad=1, bias=False)
            self.bn1 = bn(out_ch, f"{name}_bn1")
            self.conv2 = conv(out_ch, out_ch, 3, f"{name}_conv2", pad=1, bias=False)
            self.bn2 = bn(out_ch, f"{name}_bn2")
        self.bottleneck, self.shortcut = bottleneck, None if dim_match else shortcut
        if not dim_match:
            conv_name, bn_name = shortcut
            setattr(self, conv_name, conv(in_ch, out_ch, 1, f"{name}_{conv_name}", stride=stride, bias=False))
            setattr(self, bn_name, bn(out_ch, f"{name}_{bn_name}"))

    def forward(self, x):
        """x (N, in_ch, H, W) -> (N, out_ch, H/stride, W/stride)."""
        out = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
        if self.bottleneck:
            out = self.bn3(self.conv3(out.relu()))
        if self.shortcut is not None:
            conv_name, bn_name = self.shortcut
            x = getattr(self, bn_name)(getattr(self, conv_name)(x))
        return (out + x).relu()


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
