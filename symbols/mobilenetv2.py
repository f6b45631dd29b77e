"""MobileNet v2 (Sandler et al. 2018), MXNet's example `mobilenetv2`, from torchvision; `multiplier` scales widths."""

from torchvision import models

from .zoo import check_input

MIN_SIZE = 32


def get_symbol(num_classes=1000, image_shape="3,224,224", multiplier=1.0, **kwargs):
    """torchvision's MobileNet v2 with num_classes outputs and width multiplier `multiplier` (MXNet's name)."""
    check_input("mobilenetv2", image_shape, MIN_SIZE)
    return models.mobilenet_v2(num_classes=num_classes, width_mult=float(multiplier))
