"""A multilayer perceptron, MXNet's example `mlp`: flatten, fc1 (128), ReLU, fc2 (64), ReLU, fc3.

Written by hand: three layers are shorter than any library call, and MXNet checkpoints need its names.
"""

from collections import OrderedDict

from torch import nn

from .mxlayers import linear, parse_image_shape


def get_symbol(num_classes=10, image_shape="1,28,28", **kwargs):
    """MXNet's MLP as an nn.Sequential whose parameters carry MXNet's names (fc1, fc2, fc3)."""
    channels, height, width = parse_image_shape(image_shape, "mlp")
    layers = [
        ("flatten", nn.Flatten()),
        ("fc1", linear(channels * height * width, 128, "fc1")),
        ("relu1", nn.ReLU()),
        ("fc2", linear(128, 64, "fc2")),
        ("relu2", nn.ReLU()),
        ("fc3", linear(64, num_classes, "fc3")),
    ]
    return nn.Sequential(OrderedDict(layers))
