"""ResNeXt (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks"), MXNet's `resnext`.

Written by hand: torchvision's ResNeXt has the same units but no `bn_data` input normalisation and other
parameter names; MXNet checkpoints need MXNet's (`bn_data`, `conv0`, `stageS_unitU_{conv1,...,sc,sc_bn}`,
`fc1`). Depths 50, 101, 152 (and MXNet's others: 18, 34, 200, 269) for images taller than 32 pixels;
the small-image depths of `symbols.resnet` up to 32 pixels. `num_group` (default 32) sets the cardinality.
"""

from collections import OrderedDict
from functools import partial

from torch import nn

from .mxlayers import parse_image_shape
from .resnet import bn, head, resnet_config, stages, stem
from .resnet_v1 import PostActUnit


def get_symbol(num_classes=1000, num_layers=None, image_shape="3,224,224", num_group=32, **kwargs):
    """MXNet's ResNeXt as an nn.Sequential whose parameters carry MXNet's names."""
    channels, height, _ = parse_image_shape(image_shape, "resnext")
    units, filters, bottleneck = resnet_config("resnext", num_layers, height, small_height=32)
    layers = [("bn_data", bn(channels, "bn_data", fix_gamma=True))]
    layers += stem(channels, filters[0], height)
    # ResNeXt's unit: a bottleneck half as wide as the output, the stride and the groups on the 3x3
    unit = partial(PostActUnit, width=2, stride_3x3=True, groups=int(num_group), shortcut=("sc", "sc_bn"))
    layers += stages(unit, units, filters, bottleneck)
    layers += head(filters[-1], num_classes)
    return nn.Sequential(OrderedDict(layers))
