"""RegNetX (Radosavovic et al. 2020), from torchvision: `variant` 400mf (default), 800mf, 1.6gf or 3.2gf.

The variant may also be given in the network name: `regnetx-1.6gf`.
"""

from torchvision import models

from .zoo import check_input, pick

MIN_SIZE = 32
VARIANTS = {
    "400mf": models.regnet_x_400mf,
    "800mf": models.regnet_x_800mf,
    "1.6gf": models.regnet_x_1_6gf,
    "3.2gf": models.regnet_x_3_2gf,
}


def get_symbol(num_classes=1000, image_shape="3,224,224", variant="400mf", **kwargs):
    """torchvision's RegNetX of the given variant with num_classes outputs."""
    build = pick("regnetx variant", variant, VARIANTS)
    check_input("regnetx", image_shape, MIN_SIZE)
    return build(num_classes=num_classes)
