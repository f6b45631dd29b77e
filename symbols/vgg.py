"""VGG (Simonyan and Zisserman 2014), MXNet's example `vgg`: 11, 13, 16 or 19 layers, optionally with BatchNorm.

Written by hand: torchvision's VGG pools adaptively to 7x7 before its classifier, and its BatchNorm keeps a
trained gamma with eps 1e-5, while MXNet's flattens whatever the last pooling gives and uses its default
BatchNorm (fix_gamma, eps 1e-3); MXNet checkpoints also need its names (convS_L, bnS_L, fc6, fc7, fc8).
"""

from collections import OrderedDict

from torch import nn

from .errors import choice_error
from .mxlayers import MXBatchNorm, check_min_size, conv, linear, parse_image_shape

LAYERS = {11: [1, 1, 2, 2, 2], 13: [2, 2, 2, 2, 2], 16: [2, 2, 3, 3, 3], 19: [2, 2, 4, 4, 4]}
FILTERS = [64, 128, 256, 512, 512]


def features(channels, num_layers, batch_norm):
    """The five convolution groups, each closed by 2x2/2 max pooling."""
    layers = []
    for group, (count, width) in enumerate(zip(LAYERS[num_layers], FILTERS), start=1):
        for i in range(1, count + 1):
            layers.append((f"conv{group}_{i}", conv(channels, width, 3, f"conv{group}_{i}", pad=1)))
            if batch_norm:
                layers.append((f"bn{group}_{i}", MXBatchNorm(width, f"bn{group}_{i}")))
            layers.append((f"relu{group}_{i}", nn.ReLU()))
            channels = width
        layers.append((f"pool{group}", nn.MaxPool2d(2, 2)))
    return layers


def get_symbol(num_classes=1000, num_layers=16, image_shape="3,224,224", batch_norm=False, **kwargs):
    """MXNet's VGG as an nn.Sequential whose parameters carry MXNet's names."""
    if num_layers is None or int(num_layers) not in LAYERS:
        raise choice_error("vgg num_layers", num_layers, list(LAYERS))
    channels, height, width = parse_image_shape(image_shape, "vgg")
    check_min_size("vgg", height, width, 32)
    flat = FILTERS[-1] * (height // 32) * (width // 32)
    layers = features(channels, int(num_layers), bool(batch_norm))
    layers += [
        ("flatten", nn.Flatten()),
        ("fc6", linear(flat, 4096, "fc6")),
        ("relu6", nn.ReLU()),
        ("drop6", nn.Dropout(0.5)),
        ("fc7", linear(4096, 4096, "fc7")),
        ("relu7", nn.ReLU()),
        ("drop7", nn.Dropout(0.5)),
        ("fc8", linear(4096, num_classes, "fc8")),
    ]
    return nn.Sequential(OrderedDict(layers))
