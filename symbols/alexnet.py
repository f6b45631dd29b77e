"""AlexNet (Krizhevsky et al. 2012), MXNet's example `alexnet`, from torchvision (which drops the LRN layers)."""

from torchvision import models

from .zoo import check_input

MIN_SIZE = 63


def get_symbol(num_classes=1000, image_shape="3,224,224", **kwargs):
    """torchvision's AlexNet with num_classes outputs."""
    check_input("alexnet", image_shape, MIN_SIZE)
    return models.alexnet(num_classes=num_classes)
