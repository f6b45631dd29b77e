"""EfficientNet (Tan and Le 2019), from torchvision: `variant` b0 (default) to b7, or the name `efficientnet-b3`."""

from torchvision import models

from .zoo import check_input, pick

MIN_SIZE = 32
VARIANTS = {f"b{i}": getattr(models, f"efficientnet_b{i}") for i in range(8)}


def get_symbol(num_classes=1000, image_shape="3,224,224", variant="b0", **kwargs):
    """torchvision's EfficientNet of the given variant with num_classes outputs."""
    build = pick("efficientnet variant", variant, VARIANTS)
    check_input("efficientnet", image_shape, MIN_SIZE)
    return build(num_classes=num_classes)
