"""LeNet (LeCun et al. 1998), MXNet's example `lenet`: two tanh conv/max-pool stages and two fully connected layers.

Written by hand: MXNet's variant (20 and 50 filters, tanh, 500 hidden units) is in no library. Its layers
are unnamed in MXNet, which numbers them per process; the names here are those of a fresh process
(convolution0, convolution1, fullyconnected0, fullyconnected1), the ones its checkpoints carry.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .mxlayers import check_min_size, conv, linear, parse_image_shape, pooled

# MXNet's identity transform for the localisation layer's bias (its initializer's rule for `stn_loc_bias`)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class SpatialTransformer(nn.Module):
    """MXNet's lenet `add_stn`: a localisation net predicts an affine transform; the image is resampled through it.

    Layers as MXNet's example builds them (conv 30 5x5/2, max-pool 2, conv 60 3x3 pad 1, global average pool,
    FullyConnected `stn_loc` with 6 outputs at lr_mult 0.01), sampled bilinearly to the input's own size.
    """

    def __init__(self, channels):
        super().__init__()
        self.conv_a, self.conv_b = (
            conv(channels, 30, 5, "convolution0", stride=2),
            conv(30, 60, 3, "convolution1", pad=1),
        )
        self.loc = linear(60, 6, "stn_loc")
        for p in self.loc.parameters():
            p.lr_mult = 0.01  # common.optim.param_groups gives it a hundredth of the rate, as MXNet's attr did
        self.reset_identity()

    def reset_identity(self):
        """Start at the identity transform (MXNet's initializer: stn_loc weight zero, bias the identity)."""
        with torch.no_grad():
            self.loc.weight.zero_()
            self.loc.bias.copy_(torch.tensor(IDENTITY))

    def forward(self, x):
        """x (N, C, H, W) -> x resampled through the predicted affine transform, same shape."""
        loc = F.max_pool2d(F.relu(self.conv_a(x)), 2, 2)
        loc = F.adaptive_avg_pool2d(F.relu(self.conv_b(loc)), 1).flatten(1)
        theta = self.loc(loc).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def get_symbol(num_classes=10, image_shape="1,28,28", add_stn=False, **kwargs):
    """MXNet's LeNet, an nn.Sequential with MXNet's parameter names; add_stn puts a SpatialTransformer first."""
    channels, height, width = parse_image_shape(image_shape, "lenet")
    check_min_size("lenet", height, width, 16)
    # Two 5x5 valid convolutions, each followed by 2x2/2 max pooling (MXNet's 'valid' = floor).
    out_h = pooled(pooled(pooled(height, 5, 1), 2, 2) - 4, 2, 2)
    out_w = pooled(pooled(pooled(width, 5, 1), 2, 2) - 4, 2, 2)
    first = 2 if add_stn else 0  # MXNet numbers unnamed layers per process: the transformer's convolutions come first
    layers = [("stn", SpatialTransformer(channels))] if add_stn else []
    layers += [
        ("convolution0", conv(channels, 20, 5, f"convolution{first}")),
        ("activation0", nn.Tanh()),
        ("pooling0", nn.MaxPool2d(2, 2)),
        ("convolution1", conv(20, 50, 5, f"convolution{first + 1}")),
        ("activation1", nn.Tanh()),
        ("pooling1", nn.MaxPool2d(2, 2)),
        ("flatten0", nn.Flatten()),
        ("fullyconnected0", linear(50 * out_h * out_w, 500, "fullyconnected0")),
        ("activation2", nn.Tanh()),
        ("fullyconnected1", linear(500, num_classes, "fullyconnected1")),
    ]
    return nn.Sequential(OrderedDict(layers))
