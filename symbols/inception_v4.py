"""Inception v4 (Szegedy et al. 2016), MXNet's example `inception-v4`, from timm (torchvision has none)."""

import timm

from .zoo import check_input

MIN_SIZE = 75


def get_symbol(num_classes=1000, image_shape="3,299,299", **kwargs):
    """timm's Inception v4 with num_classes outputs (random weights)."""
    check_input("inception-v4", image_shape, MIN_SIZE)
    return timm.create_model("inception_v4", pretrained=False, num_classes=num_classes)
