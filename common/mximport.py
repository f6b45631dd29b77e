"""The MXNet import: an MXNet prefix-symbol.json + prefix-%04d.params as one of the suite's networks.

An MXNet graph is recognised by its layer names (each of MXNet's example families names its layers its own way),
rebuilt with symbols.get_symbol and filled through symbols.mxnet_param_map, so every array is checked by name
and shape and the network's output is the logits (the input of MXNet's SoftmaxOutput). The .params binary is
read by common/mxparams.py; MXNet itself is not needed.

  describe_mxnet(path, nodes, params)   (network, get_symbol arguments) of an MXNet graph
  import_mxnet(prefix, epoch)           (network in eval mode, info with preprocessing) of an MXNet checkpoint
  load_mxnet_checkpoint(prefix, epoch)  the network alone
"""

import re

import torch

import symbols
from common import checkpoint, mxparams, validate
from common.util import UserError
from symbols import inception_v3, inception_v4
from symbols.mxlayers import min_side

# MXNet's example defaults for data that carries no preprocessing (its train_imagenet / score.py mean).
MXNET_MEAN, MXNET_STD = [123.68, 116.779, 103.939], [1.0, 1.0, 1.0]
IMPORTABLE = ("resnet", "resnet-v1", "resnext", "inception-bn", "mobilenet", "vgg", "lenet", "mlp")
IMPORTABLE += ("alexnet", "googlenet", "mobilenetv2")
IMPORTABLE += ("inception-v3", "inception-v4", "inception-resnet-v2")


def _attrs(node):
    """A node's attributes (MXNet renamed the key over versions: param, attr, attrs)."""
    return node.get("attrs") or node.get("attr") or node.get("param") or {}


def _square(n, per_pixel, path, what):
    """The side s with per_pixel * s * s == n, or UserError."""
    side = round((n / per_pixel) ** 0.5)
    if side * side * per_pixel != n:
        raise UserError(f"{path}: cannot infer the image size from {what} ({n} inputs); give --image-shape")
    return side


def _resnet_family(names, ops, kwargs):
    """(resnet, resnet-v1 or resnext by their shortcut names, number of stages); sets num_layers and num_group."""
    units = {}
    for name in names:
        m = re.fullmatch(r"stage(\d+)_unit(\d+)_conv1", name)
        if m:
            units[int(m.group(1))] = max(units.get(int(m.group(1)), 0), int(m.group(2)))
    bottleneck = any(name.endswith("_conv3") for name in names)
    kwargs["num_layers"] = (3 if bottleneck else 2) * sum(units.values()) + 2
    if "stage1_unit1_conv1sc" in names:
        return "resnet-v1", len(units)
    if "stage1_unit1_sc_bn" in names:
        conv2 = next(n for n in ops if n["name"] == "stage1_unit1_conv2")
        kwargs["num_group"] = int(_attrs(conv2).get("num_group", 1))
        return "resnext", len(units)
    return "resnet", len(units)


class Graph:
    """An MXNet graph as its family recognisers read it: layer names, operators, and the shapes of its arrays."""

    def __init__(self, path, nodes, params):
        self.path, self.params = path, params
        self.names = {n["name"] for n in nodes}
        self.ops = [n for n in nodes if n["op"] != "null"]

    def shape(self, name):
        """The shape of parameter arg:NAME; UserError naming the layer when the .params lacks it."""
        arr = self.params.get(f"arg:{name}")
        if arr is None:
            layer = name.rsplit("_", 1)[0]
            raise UserError(f"{self.path}: parameter arg:{name} of layer {layer} is not in the .params")
        return arr.shape

    def image_shape(self, first_weight, side):
        """'C,side,side' with C the input channels of the first layer's weight."""
        return f"{self.shape(first_weight)[1]},{side},{side}"


# Each recogniser: (graph, kwargs) -> the network name, having set kwargs (get_symbol's arguments), or None when
# the graph is not of its family. A new family is one function and one entry of RECOGNISERS.


def _resnets(g, kwargs):
    if "stage1_unit1_conv1" not in g.names:
        return None
    network, stages = _resnet_family(g.names, g.ops, kwargs)
    # A 3x3 conv0 is MXNet's stem up to 32 pixels; there 4 stages mean 29-32 pixels (ImageNet depths above 28).
    side = 224 if g.shape("conv0_weight")[2] != 3 else 32 if stages == 4 or network == "resnext" else 28
    kwargs["image_shape"] = g.image_shape("conv0_weight", side)
    return network


def _mobilenet(g, kwargs):
    if not {"conv_1_conv2d", "conv_2_dw_conv2d"} <= g.names:
        return None
    kwargs["multiplier"] = g.shape("conv_1_conv2d_weight")[0] / 32
    pool = next((n for n in g.ops if n["name"] == "global_pool"), {})
    kwargs["resolution"] = 32 * int(re.findall(r"\d+", _attrs(pool).get("kernel", "7"))[0])  # window = res / 32
    # Images larger than the resolution leave fc a (side/32 - window + 1)^2 times wider input.
    fc_side = _square(g.shape("fc_weight")[1], g.shape("conv_1_conv2d_weight")[0] * 32, g.path, "fc")
    kwargs["image_shape"] = g.image_shape("conv_1_conv2d_weight", kwargs["resolution"] + 32 * (fc_side - 1))
    return "mobilenet"


def _vgg(g, kwargs):
    if not {"conv1_1", "fc8"} <= g.names:
        return None
    kwargs["num_layers"] = sum(1 for n in g.names if re.fullmatch(r"conv\d+_\d+", n)) + 3
    kwargs["batch_norm"] = "bn1_1" in g.names
    kwargs["image_shape"] = g.image_shape("conv1_1_weight", 32 * _square(g.shape("fc6_weight")[1], 512, g.path, "fc6"))
    return "vgg"


def _inception_bn(g, kwargs):
    if "conv_1" not in g.names or not {"conv_3a_1x1", "conv_in3a_1x1"} & g.names:
        return None
    kwargs["image_shape"] = g.image_shape("conv_1_weight", 28 if "conv_in3a_1x1" in g.names else 224)
    return "inception-bn"


def _lenet(g, kwargs):
    tanh = any(_attrs(n).get("act_type") == "tanh" for n in g.ops)
    if not ({"convolution0", "fullyconnected1"} <= g.names and tanh):
        return None
    side = (_square(g.shape("fullyconnected0_weight")[1], 50, g.path, "fullyconnected0") * 2 + 4) * 2 + 4
    kwargs["image_shape"] = g.image_shape("convolution0_weight", side)
    return "lenet"


def _mlp(g, kwargs):
    if not {"fc1", "fc2", "fc3"} <= g.names or any(n["op"] == "Convolution" for n in g.ops):
        return None
    n = g.shape("fc1_weight")[1]
    channels = 1 if round(n**0.5) ** 2 == n else 3
    side = _square(n, channels, g.path, "fc1")
    kwargs["image_shape"] = f"{channels},{side},{side}"
    return "mlp"


def _alexnet(g, kwargs):
    if not {"convolution4", "fullyconnected2"} <= g.names or not any(n["op"] == "LRN" for n in g.ops):
        return None
    # fullyconnected0 takes 256 x s x s inputs; images of 32s+35 to 32s+66 pixels give s (224 gives 5).
    side = 32 * _square(g.shape("fullyconnected0_weight")[1], 256, g.path, "fullyconnected0") + 64
    kwargs["image_shape"] = g.image_shape("convolution0_weight", side)
    return "alexnet"


def _googlenet(g, kwargs):
    if not {"conv_conv1", "conv_in3a_5x5"} <= g.names:
        return None
    # fullyconnected0 takes 1024 x s x s inputs; images of 32s+221 to 32s+252 pixels give s (MXNet needs >= 253).
    side = 32 * _square(g.shape("fullyconnected0_weight")[1], 1024, g.path, "fullyconnected0") + 224
    kwargs["image_shape"] = g.image_shape("conv_conv1_weight", side)
    return "googlenet"


def _mobilenetv2(g, kwargs):
    if "first-3x3-conv-conv2d" not in g.names:
        return None
    # Widths are round(c * multiplier); the last 1x1 has int(1280 * multiplier) filters only above 1.
    last = g.shape("last-1x1-conv-conv2d_weight")[0]
    kwargs["multiplier"] = last / 1280 if last > 1280 else g.shape("seq-6-block0-linear-conv2d_weight")[0] / 320
    # The pooling is global, so the arrays do not tell the image size: MXNet's example builds for 224 pixels.
    kwargs["image_shape"] = g.image_shape("first-3x3-conv-conv2d_weight", 224)
    return "mobilenetv2"


def _inception_v3(g, kwargs):
    if not {"conv_conv2d", "mixed_10_conv_conv2d"} <= g.names:
        return None
    # fc1 takes 2048 x s x s inputs, s = the final map's side - 7; take the smallest image giving it (299 for s = 1).
    final = _square(g.shape("fc1_weight")[1], 2048, g.path, "fc1") + 7
    kwargs["image_shape"] = g.image_shape("conv_conv2d_weight", min_side(inception_v3.final_size, final))
    return "inception-v3"


def _inception_v4(g, kwargs):
    if not {"in_stem_conv1_3*3_conv2d", "in1C_conv1_1*1_conv2d"} <= g.names:
        return None
    # fc1 takes 1536 x s x s inputs, s = the final map's side - 5 (an 8x8 pooling padded by 1); 299 gives s = 3.
    final = _square(g.shape("fc1_weight")[1], 1536, g.path, "fc1") + 5
    kwargs["image_shape"] = g.image_shape("in_stem_conv1_3*3_conv2d_weight", min_side(inception_v4.final_size, final))
    return "inception-v4"


def _inception_resnet_v2(g, kwargs):
    # MXNet's example names no layer: a fresh process calls its 244 ConvFactory layers convolution0-243.
    if not {"convolution0", "convolution243", "batchnorm243", "_mulscalar0", "fullyconnected0"} <= g.names:
        return None
    # The pooling is global, so the arrays do not tell the image size: the example is built for 299 pixels.
    kwargs["image_shape"] = g.image_shape("convolution0_weight", 299)
    return "inception-resnet-v2"


RECOGNISERS = (_resnets, _mobilenet, _vgg, _inception_bn, _lenet, _mlp)
RECOGNISERS += (_alexnet, _googlenet, _mobilenetv2)
RECOGNISERS += (_inception_v3, _inception_v4, _inception_resnet_v2)


def describe_mxnet(path, nodes, params):
    """(network, get_symbol keyword arguments) for an MXNet graph, from its layer names and array shapes."""
    g = Graph(path, nodes, params)
    fcs = [n for n in g.ops if n["op"] == "FullyConnected"]
    if not fcs:
        raise UserError(f"{path}: the graph has no FullyConnected classifier, so it is no image classifier")
    try:
        kwargs = {"num_classes": int(_attrs(fcs[-1])["num_hidden"])}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: the last FullyConnected layer has no whole-number num_hidden") from None
    validate.class_count(path, f"{fcs[-1]['name']}.num_hidden", kwargs["num_classes"])
    for recognise in RECOGNISERS:
        network = recognise(g, kwargs)
        if network:
            return network, kwargs
    first = ", ".join(n["name"] for n in g.ops[:4])
    raise UserError(
        f"{path}: not a network family this suite imports (first layers: {first}); "
        f"importable families: {', '.join(IMPORTABLE)}"
    )


def check_nodes(path, nodes):
    """UserError naming the node when an MXNet graph's nodes are not a list of objects with a name and an op."""
    validate.of_type(path, "nodes", nodes, list, "a list of graph nodes", optional=False)
    for i, node in enumerate(nodes):
        ok = isinstance(node, dict) and isinstance(node.get("name"), str) and isinstance(node.get("op"), str)
        if not ok or not isinstance(_attrs(node), dict):
            validate.fail(path, f"nodes[{i}]", "is not an object with a string name and op and an attrs object")


def describe_checked(sym_path, nodes, params):
    """describe_mxnet, with a graph whose arrays have impossible shapes and an absurd image size refused."""
    check_nodes(sym_path, nodes)
    try:
        network, kwargs = describe_mxnet(sym_path, nodes, params)
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise UserError(f"{sym_path}: its layers and arrays do not describe an importable network ({err!r})") from None
    validate.image_shape(sym_path, "the image shape its arrays imply", kwargs["image_shape"])
    return network, kwargs


def import_mxnet(prefix, epoch=None):
    """(network as an nn.Module in eval mode, info) for an MXNet checkpoint; every array checked by name and shape."""
    sym_path = f"{prefix}-symbol.json"
    doc = checkpoint.read_json(sym_path, "pass the prefix the model was saved under")
    if "nodes" not in doc:
        raise UserError(f"{sym_path} is not an MXNet symbol file (it has no 'nodes')")
    epoch = checkpoint.pick_epoch(prefix, epoch)
    params_file = f"{prefix}-{epoch:04d}.params"
    params = mxparams.load(params_file)
    network, kwargs = describe_checked(sym_path, doc["nodes"], params)
    model = symbols.get_symbol(network, **kwargs)
    names = symbols.mxnet_param_map(model)
    state = model.state_dict()
    for torch_name, mx_name in names.items():
        if mx_name not in params:
            raise UserError(
                f"{params_file} does not match {network} {kwargs}: parameter {mx_name} is not in the file "
                f"(first unmatched parameter)"
            )
        if tuple(params[mx_name].shape) != tuple(state[torch_name].shape):
            raise UserError(
                f"{params_file} does not match {network} {kwargs}: parameter {mx_name} has shape "
                f"{tuple(params[mx_name].shape)} in the file but {tuple(state[torch_name].shape)} in the network"
            )
    extra = [k for k in params if k not in set(names.values())]
    if extra:
        raise UserError(f"{params_file} does not match {network} {kwargs}: parameter {extra[0]} has no place in it")
    model.load_state_dict({t: torch.from_numpy(params[m]).float() for t, m in names.items()})
    shape = [int(v) for v in kwargs["image_shape"].split(",")]
    # MXNet's example fed ImageNet-style networks mean-subtracted 0-255 pixels, and MNIST's (one channel) 0-1 ones
    mean, std = (MXNET_MEAN, MXNET_STD) if shape[0] != 1 else ([0.0] * 3, [255.0] * 3)
    preprocess = {"image_shape": shape, "rgb_mean": mean, "rgb_std": std}
    info = {"source": f"MXNet checkpoint {params_file}", "network": network, "arguments": kwargs}
    info.update(preprocess=preprocess, classes=None, epoch=epoch)
    return model.eval(), info


def load_mxnet_checkpoint(prefix, epoch):
    """The network of an MXNet prefix-symbol.json + prefix-%04d.params, as an nn.Module whose output is the logits."""
    return import_mxnet(prefix, epoch)[0]
