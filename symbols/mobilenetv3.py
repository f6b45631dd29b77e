"""MobileNet v3 (Howard et al. 2019), from torchvision.

The variant is `mode` ('large', the default, or 'small'), or the network name `mobilenetv3-small` /
`mobilenetv3-large`; `num_layers`, which MXNet's scripts pass to every network, is ignored.
"""

from torchvision import models

from .zoo import check_input, pick

MIN_SIZE = 32
VARIANTS = {"large": models.mobilenet_v3_large, "small": models.mobilenet_v3_small}


def get_symbol(num_classes=1000, image_shape="3,224,224", mode="large", variant=None, **kwargs):
    """torchvision's MobileNet v3 (large or small) with num_classes outputs."""
    build = pick("mobilenetv3 mode", variant or mode, VARIANTS)
    check_input("mobilenetv3", image_shape, MIN_SIZE)
    return build(num_classes=num_classes)
