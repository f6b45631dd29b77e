"""Inception v3 (Szegedy et al. 2015), MXNet's example `inception-v3`, from torchvision (no side classifier)."""

from torchvision import models

from .zoo import check_input

MIN_SIZE = 75


def get_symbol(num_classes=1000, image_shape="3,299,299", **kwargs):
    """torchvision's Inception v3 with num_classes outputs, without the auxiliary classifier."""
    check_input("inception-v3", image_shape, MIN_SIZE)
    return models.inception_v3(num_classes=num_classes, aux_logits=False, init_weights=True, transform_input=False)
