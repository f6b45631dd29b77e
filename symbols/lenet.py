"""LeNet (LeCun et al. 1998), MXNet's example `lenet`: two tanh conv/max-pool stages and two fully connected layers.

Written by hand: MXNet's variant (20 and 50 filters, tanh, 500 hidden units) is in no library. Its layers
are unnamed in MXNet, which numbers them per process; the names here are those of a fresh process
(convolution0, convolution1, fullyconnected0, fullyconnected1), the ones its checkpoints carry.
"""

from collections import OrderedDict

from torch import nn

from .mxlayers import check_min_size, conv, linear, parse_image_shape, pooled


def get_symbol(num_classes=10, image_shape="1,28,28", **kwargs):
    """MXNet's LeNet as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, width = parse_image_shape(image_shape, "lenet")
    check_min_size("lenet", height, width, 16)
    # Two 5x5 valid convolutions, each followed by 2x2/2 max pooling (MXNet's 'valid' = floor).
    out_h = pooled(pooled(pooled(height, 5, 1), 2, 2) - 4, 2, 2)
    out_w = pooled(pooled(pooled(width, 5, 1), 2, 2) - 4, 2, 2)
    layers = [
        ("convolution0", conv(channels, 20, 5, "convolution0")),
        ("activation0", nn.Tanh()),
        ("pooling0", nn.MaxPool2d(2, 2)),
        ("convolution1", conv(20, 50, 5, "convolution1")),
        ("activation1", nn.Tanh()),
        ("pooling1", nn.MaxPool2d(2, 2)),
        ("flatten0", nn.Flatten()),
        ("fullyconnected0", linear(50 * out_h * out_w, 500, "fullyconnected0")),
        ("activation2", nn.Tanh()),
        ("fullyconnected1", linear(500, num_classes, "fullyconnected1")),
    ]
    return nn.Sequential(OrderedDict(layers))
