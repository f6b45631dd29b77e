"""ShuffleNet v2 (Ma et al. 2018), from torchvision: `multiplier` 0.5, 1.0 (default), 1.5 or 2.0.

The multiplier may also be given in the network name: `shufflenetv2-0.5`.
"""

from torchvision import models

from .zoo import check_input, pick

MIN_SIZE = 32
VARIANTS = {
    "0.5": models.shufflenet_v2_x0_5,
    "1.0": models.shufflenet_v2_x1_0,
    "1.5": models.shufflenet_v2_x1_5,
    "2.0": models.shufflenet_v2_x2_0,
}


def get_symbol(num_classes=1000, image_shape="3,224,224", multiplier=1.0, variant=None, **kwargs):
    """torchvision's ShuffleNet v2 with the given width multiplier and num_classes outputs."""
    key = variant if variant is not None else multiplier
    if isinstance(key, (int, float)):
        key = f"{float(key):.1f}"
    build = pick("shufflenetv2 multiplier", key, VARIANTS)
    check_input("shufflenetv2", image_shape, MIN_SIZE)
    return build(num_classes=num_classes)
