"""Checks shared by the network families that come from torchvision or timm."""

from .errors import UserError, choice_error
from .mxlayers import check_min_size, parse_image_shape


def check_input(network, image_shape, minimum):
    """Raise UserError unless image_shape is a 3-channel image of at least minimum x minimum pixels."""
    channels, height, width = parse_image_shape(image_shape, network)
    if channels != 3:
        raise UserError(f"{network} takes 3-channel images; image_shape {image_shape!r} has {channels}")
    check_min_size(network, height, width, minimum)


def pick(what, value, table):
    """Return table[value] for a string-valued choice (case-insensitive); UserError listing the keys otherwise."""
    key = str(value).lower()
    if key not in table:
        raise choice_error(what, value, list(table))
    return table[key]
