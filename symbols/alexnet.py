"""AlexNet (Krizhevsky et al. 2012), MXNet's example `alexnet`: one tower, LRN after the first two poolings.

Written by hand: torchvision's AlexNet drops the LRN layers, pools adaptively to 6x6 and has other widths
(64/192 filters in the first two convolutions), so it has 20% more parameters than MXNet's. MXNet leaves
every layer unnamed; a fresh process calls them convolution0-4 and fullyconnected0-2, the names used here.
Its poolings have no padding and round down, so fullyconnected0 takes 256 x s x s inputs, s = 5 at 224 pixels.
"""

from collections import OrderedDict

from torch import nn

from .mxlayers import MXLRN, check_min_size, conv, linear, parse_image_shape, pooled

MIN_SIZE = 67  # the smallest image that leaves the last 3x3/2 pooling a 1x1 map


def spatial(size):
    """Height (or width) of the feature map fullyconnected0 flattens."""
    size = pooled(pooled(size, 11, 4), 3, 2)  # convolution0, pooling0
    return pooled(pooled(size, 3, 2), 3, 2)  # pooling1 (convolution1-4 keep the size), pooling2


def features(channels):
    """The five convolutions, three 3x3/2 max poolings and two LRNs."""
    lrn = dict(alpha=1e-4, beta=0.75, knorm=1.0, nsize=5)
    return [
        ("convolution0", conv(channels, 96, 11, "convolution0", stride=4)),
        ("relu0", nn.ReLU()),
        ("pooling0", nn.MaxPool2d(3, 2)),
        ("lrn0", MXLRN(**lrn)),
        ("convolution1", conv(96, 256, 5, "convolution1", pad=2)),
        ("relu1", nn.ReLU()),
        ("pooling1", nn.MaxPool2d(3, 2)),
        ("lrn1", MXLRN(**lrn)),
        ("convolution2", conv(256, 384, 3, "convolution2", pad=1)),
        ("relu2", nn.ReLU()),
        ("convolution3", conv(384, 384, 3, "convolution3", pad=1)),
        ("relu3", nn.ReLU()),
        ("convolution4", conv(384, 256, 3, "convolution4", pad=1)),
        ("relu4", nn.ReLU()),
        ("pooling2", nn.MaxPool2d(3, 2)),
    ]


def get_symbol(num_classes=1000, image_shape="3,224,224", **kwargs):
    """MXNet's AlexNet as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, width = parse_image_shape(image_shape, "alexnet")
    check_min_size("alexnet", height, width, MIN_SIZE)
    layers = features(channels)
    layers += [
        ("flatten", nn.Flatten()),
        ("fullyconnected0", linear(256 * spatial(height) * spatial(width), 4096, "fullyconnected0")),
        ("relu5", nn.ReLU()),
        ("dropout0", nn.Dropout(0.5)),
        ("fullyconnected1", linear(4096, 4096, "fullyconnected1")),
        ("relu6", nn.ReLU()),
        ("dropout1", nn.Dropout(0.5)),
        ("fullyconnected2", linear(4096, num_classes, "fullyconnected2")),
    ]
    return nn.Sequential(OrderedDict(layers))
