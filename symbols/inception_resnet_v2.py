"""Inception-ResNet v2 (Szegedy et al. 2016), MXNet's example `inception-resnet-v2`, from timm (not in torchvision)."""

import timm

from .zoo import check_input

MIN_SIZE = 75


def get_symbol(num_classes=1000, image_shape="3,299,299", **kwargs):
    """timm's Inception-ResNet v2 with num_classes outputs (random weights)."""
    check_input("inception-resnet-v2", image_shape, MIN_SIZE)
    return timm.create_model("inception_resnet_v2", pretrained=False, num_classes=num_classes)
