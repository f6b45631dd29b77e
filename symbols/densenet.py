"""DenseNet (Huang et al. 2017), MXNet's example `densenet`, from torchvision: 121, 161, 169 or 201 layers."""

from torchvision import models

from .errors import choice_error
from .zoo import check_input

MIN_SIZE = 32
DEPTHS = {121: models.densenet121, 161: models.densenet161, 169: models.densenet169, 201: models.densenet201}


def get_symbol(num_classes=1000, num_layers=121, image_shape="3,224,224", **kwargs):
    """torchvision's DenseNet of num_layers layers with num_classes outputs."""
    if num_layers is None or int(num_layers) not in DEPTHS:
        raise choice_error("densenet num_layers", num_layers, list(DEPTHS))
    check_input("densenet", image_shape, MIN_SIZE)
    return DEPTHS[int(num_layers)](num_classes=num_classes)
