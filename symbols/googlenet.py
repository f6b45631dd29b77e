"""GoogLeNet (Szegedy et al. 2014), MXNet's example `googlenet`: Inception v1 without BatchNorm or side heads.

Written by hand: torchvision's GoogLeNet adds BatchNorm and uses 3x3 convolutions where the paper (and MXNet)
has 5x5 ones, so its parameters differ; MXNet checkpoints also need its names (conv_conv1, conv_in3a_1x1,
conv_in3a_5x5_reduce, ...). MXNet leaves the classifier unnamed; a fresh process calls it `fullyconnected0`.
MXNet's poolings round down, so its final 7x7 average pooling needs a 7x7 map, that is images of at least 253
pixels (MXNet refuses 224 ones). Where MXNet would refuse the image, the pooling here takes the whole map,
so 224-pixel training works and the network keeps MXNet's parameters.
"""

from collections import OrderedDict

from torch import nn

from .inception_bn import Concat
from .mxlayers import check_min_size, conv, linear, parse_image_shape, pooled

MIN_SIZE = 61  # the smallest image that leaves inception 5 a 1x1 map

# (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, projection); "pool" marks a 3x3/2 max pooling between modules.
MODULES = [
    ("in3a", 64, 96, 128, 16, 32, 32),
    ("in3b", 128, 128, 192, 32, 96, 64),
    "pool",
    ("in4a", 192, 96, 208, 16, 48, 64),
    ("in4b", 160, 112, 224, 24, 64, 64),
    ("in4c", 128, 128, 256, 24, 64, 64),
    ("in4d", 112, 144, 288, 32, 64, 64),
    ("in4e", 256, 160, 320, 32, 128, 128),
    "pool",
    ("in5a", 256, 160, 320, 32, 128, 128),
    ("in5b", 384, 192, 384, 48, 128, 128),
]


def conv_relu(in_ch, out_ch, kernel, name, stride=1, pad=0):
    """MXNet's ConvFactory here: convolution `conv_NAME` (with bias) and ReLU, no BatchNorm."""
    return nn.Sequential(OrderedDict(conv=conv(in_ch, out_ch, kernel, f"conv_{name}", stride, pad), relu=nn.ReLU()))


def inception(in_ch, name, n1, n3r, n3, n5r, n5, proj):
    """MXNet's InceptionFactory: 1x1, 1x1 + 3x3, 1x1 + 5x5 and 3x3 max pooling + 1x1 branches, concatenated."""
    block = Concat(
        c1x1=conv_relu(in_ch, n1, 1, f"{name}_1x1"),
        c3x3=nn.Sequential(conv_relu(in_ch, n3r, 1, f"{name}_3x3_reduce"), conv_relu(n3r, n3, 3, f"{name}_3x3", 1, 1)),
        c5x5=nn.Sequential(conv_relu(in_ch, n5r, 1, f"{name}_5x5_reduce"), conv_relu(n5r, n5, 5, f"{name}_5x5", 1, 2)),
        proj=nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_relu(in_ch, proj, 1, f"{name}_proj")),
    )
    return block, n1 + n3 + n5 + proj


def spatial(size):
    """Height (or width) of the map inception 5 gives: convolution 7x7/2 pad 3, then four 3x3/2 poolings."""
    size = pooled(size, 7, 2, 3)
    for _ in range(4):
        size = pooled(size, 3, 2)
    return size


def body(channels):
    """The stem and the nine inception modules; returns (layers, output channels)."""
    layers = [
        ("conv1", conv_relu(channels, 64, 7, "conv1", 2, 3)),
        ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2", conv_relu(64, 64, 1, "conv2")),
        ("conv3", conv_relu(64, 192, 3, "conv3", 1, 1)),
        ("pool3", nn.MaxPool2d(3, 2)),
    ]
    in_ch, pools = 192, 4
    for module in MODULES:
        if module == "pool":
            layers.append((f"pool{pools}", nn.MaxPool2d(3, 2)))
            pools += 1
        else:
            block, in_ch = inception(in_ch, *module)
            layers.append((module[0], block))
    return layers, in_ch


def get_symbol(num_classes=1000, image_shape="3,224,224", **kwargs):
    """MXNet's GoogLeNet as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, width = parse_image_shape(image_shape, "googlenet")
    check_min_size("googlenet", height, width, MIN_SIZE)
    layers, out_ch = body(channels)
    # MXNet's 7x7/1 average pooling; a map smaller than 7 (which MXNet refuses) is pooled whole.
    side_h, side_w = spatial(height), spatial(width)
    window = (min(7, side_h), min(7, side_w))
    flat = out_ch * (side_h - window[0] + 1) * (side_w - window[1] + 1)
    layers += [
        ("pool6", nn.AvgPool2d(window, 1)),
        ("flatten", nn.Flatten()),
        ("fullyconnected0", linear(flat, num_classes, "fullyconnected0")),
    ]
    return nn.Sequential(OrderedDict(layers))
