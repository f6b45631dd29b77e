"""The networks, by MXNet's names: `get_symbol(network, **kwargs)` returns an nn.Module, `list_networks()` the names.

Each family lives in its own module with `get_symbol(num_classes, **kwargs)`, as in MXNet's example; keyword
arguments a family does not use (dtype, conv_workspace, ...) are ignored, so one set of command-line values
can be passed to any network. MXNet's own example networks are written to MXNet's layout and names
(`mxnet_param_map` gives the MXNet name of each array); the others come from torchvision or timm.
"""

import importlib

from .errors import choice_error

__all__ = ["get_symbol", "list_networks", "mxnet_param_map", "MXNET_LAYOUT"]

# network name -> module in this package
FAMILIES = {
    "mlp": "mlp",
    "lenet": "lenet",
    "alexnet": "alexnet",
    "vgg": "vgg",
    "googlenet": "googlenet",
    "inception-bn": "inception_bn",
    "inception-v3": "inception_v3",
    "inception-v4": "inception_v4",
    "inception-resnet-v2": "inception_resnet_v2",
    "resnet": "resnet",
    "resnet-v1": "resnet_v1",
    "resnext": "resnext",
    "mobilenet": "mobilenet",
    "mobilenetv2": "mobilenetv2",
    "mobilenetv3": "mobilenetv3",
    "densenet": "densenet",
    "efficientnet": "efficientnet",
    "regnetx": "regnetx",
    "shufflenetv2": "shufflenetv2",
}
# Families whose variant may be named in the network name, e.g. `efficientnet-b3` (each module's VARIANTS).
VARIANTS = {
    "mobilenetv3": ("large", "small"),
    "efficientnet": tuple(f"b{i}" for i in range(8)),
    "regnetx": ("400mf", "800mf", "1.6gf", "3.2gf"),
    "shufflenetv2": ("0.5", "1.0", "1.5", "2.0"),
}
# The families built to MXNet's layout, whose parameters carry MXNet's names.
MXNET_LAYOUT = (
    "mlp",
    "lenet",
    "alexnet",
    "vgg",
    "googlenet",
    "inception-bn",
    "inception-v3",
    "inception-v4",
    "inception-resnet-v2",
    "resnet",
    "resnet-v1",
    "resnext",
    "mobilenet",
    "mobilenetv2",
)


def list_networks():
    """Return every network name get_symbol accepts, families first, then family-variant names."""
    return list(FAMILIES) + [f"{family}-{variant}" for family, names in VARIANTS.items() for variant in names]


def resolve(network):
    """Return (family, variant or None) for a network name; underscores count as dashes, case is ignored."""
    name = str(network).lower().replace("_", "-")
    if name in FAMILIES:
        return name, None
    for family, names in VARIANTS.items():
        for variant in names:
            if name == f"{family}-{variant}":
                return family, variant
    raise choice_error("network", network, list_networks())


def get_symbol(network, **kwargs):
    """Build the network named `network` (MXNet's names: resnet, inception-bn, mobilenetv2, ...) as an nn.Module."""
    family, variant = resolve(network)
    if variant is not None:
        kwargs["variant"] = variant
    module = importlib.import_module(f".{FAMILIES[family]}", __name__)
    return module.get_symbol(**kwargs)


def mxnet_param_map(model):
    """{parameter name: MXNet array name} of a network built to MXNet's layout (symbols.mxlayers)."""
    from .mxlayers import mxnet_param_map as param_map  # torch is imported with the first network, not before

    return param_map(model)
