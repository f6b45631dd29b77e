"""GoogLeNet (Szegedy et al. 2014), MXNet's example `googlenet`, from torchvision (with BatchNorm, no side heads)."""

from torchvision import models

from .zoo import check_input

MIN_SIZE = 32


def get_symbol(num_classes=1000, image_shape="3,224,224", **kwargs):
    """torchvision's GoogLeNet with num_classes outputs, without the auxiliary classifiers."""
    check_input("googlenet", image_shape, MIN_SIZE)
    return models.googlenet(num_classes=num_classes, aux_logits=False, init_weights=True, transform_input=False)
