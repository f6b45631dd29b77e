"""Pretrained models: torchvision's ImageNet weights by name, MXNet checkpoints, and the suite's own checkpoints.

  download_model(name)                  torchvision's weights file, sha256-prefix checked, cached under TORCH_HOME
  load_mxnet_checkpoint(prefix, epoch)  an MXNet prefix-symbol.json + prefix-%04d.params as our network
  load_model(spec, epoch)               any of the three, with its evaluation preprocessing and class names
  replace_head(model, layer, classes)   fine-tuning's cut and new classifier, replayed by rebuild() on loading
An MXNet graph is recognised by its layer names (each of MXNet's example families names its layers its own way),
rebuilt with symbols.get_symbol and filled through symbols.mxnet_param_map, so every array is checked by name
and shape and the network's output is the logits (the input of MXNet's SoftmaxOutput).
"""

import glob
import hashlib
import os
import re
import urllib.error
import urllib.parse
from collections import OrderedDict

import torch
from torch import nn

import symbols
from common import checkpoint, mxparams
from common.util import UserError, choice_error
from symbols.mxlayers import MXBatchNorm

# Where a mirror of torchvision's weights folder can be named (offline sites, air-gapped clusters).
MIRROR_ENV = "MXTORCH_MODEL_MIRROR"
HASH_RE = re.compile(r"-([a-f0-9]{6,})\.")
IMPORTABLE = ("resnet", "resnet-v1", "resnext", "inception-bn", "mobilenet", "vgg", "lenet", "mlp")
# MXNet's example defaults for data that carries no preprocessing (its train_imagenet / score.py mean).
MXNET_MEAN, MXNET_STD = [123.68, 116.779, 103.939], [1.0, 1.0, 1.0]
# What PREFIX-symbol.json records of each classifier replacement fine-tune.py made (checkpoint.write_symbol).
FINE_TUNE_KEYS = ("pretrained_num_classes", "layer_before_fullc", "image_shape", "num_classes")


def _key(name):
    return re.sub(r"[-_.]", "", str(name).lower())


def zoo_names():
    """Names of the pretrained classification models (torchvision's, with ImageNet weights)."""
    from torchvision import models

    return sorted(models.list_models(module=models))


def zoo_weights(name):
    """(torchvision model name, its default Weights entry) for a zoo name; UserError listing the names."""
    from torchvision import models

    names = zoo_names()
    match = [n for n in names if _key(n) == _key(name)]
    if not match:
        raise UserError(f"unknown pretrained model {name!r}; valid names: {', '.join(names)}")
    return match[0], models.get_model_weights(match[0]).DEFAULT


def cache_dir():
    """The folder pretrained weights are cached in: torch.hub's (TORCH_HOME, default ~/.cache/torch)/checkpoints."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url, dst):
    """Download url (http, https or file) into folder dst unless there; check the sha256 prefix in its file name."""
    filename = os.path.basename(urllib.parse.urlparse(url).path)
    m = HASH_RE.search(filename)
    prefix = m.group(1) if m else None
    path = os.path.join(dst, filename)
    if os.path.isfile(path):
        if prefix and not _sha256(path).startswith(prefix):
            raise UserError(f"{path} is damaged (its sha256 does not start with {prefix}); delete it and run again")
        return path
    os.makedirs(dst, exist_ok=True)
    try:
        # torch.hub writes to a temporary name, checks the hash and renames, so a broken download leaves nothing.
        torch.hub.download_url_to_file(url, path, hash_prefix=prefix, progress=False)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(
            f"cannot download {url} ({reason}); offline, copy that file to {path} (or set {MIRROR_ENV})"
        ) from None
    except RuntimeError as err:
        raise UserError(f"download of {url} failed its hash check ({err}); try again or fetch it by hand") from None
    return path


def download_model(name, dst=None):
    """Download the pretrained weights of zoo model `name` into dst (default: the cache); return the file path."""
    _, weights = zoo_weights(name)
    url = weights.url
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        url = mirror.rstrip("/") + "/" + url.rsplit("/", 1)[1]
    return fetch(url, dst or cache_dir())


def zoo_model(name, dst=None):
    """(torchvision network with its pretrained weights, info) for zoo model `name`."""
    from torchvision import models

    arch, weights = zoo_weights(name)
    path = download_model(name, dst)
    model = models.get_model(arch, weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    tf = weights.transforms()
    crop = tf.crop_size[0]
    preprocess = {
        "image_shape": [3, crop, crop],
        "rgb_mean": [round(v * 255, 4) for v in tf.mean],
        "rgb_std": [round(v * 255, 4) for v in tf.std],
        "resize": tf.resize_size[0],
    }
    info = {"source": f"zoo {arch} ({path})", "network": arch, "arguments": {}, "preprocess": preprocess}
    info["classes"] = list(weights.meta.get("categories") or []) or None
    return model.eval(), info


def plain_batchnorm(model):
    """Replace MXNet-semantics BatchNorm layers by equal nn.BatchNorm2d ones (eval only), in place; return model."""
    for name, child in list(model.named_children()):
        if isinstance(child, MXBatchNorm):
            bn = nn.BatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                bn.weight.copy_(torch.ones_like(child.weight) if child.fix_gamma else child.weight)
                bn.bias.copy_(child.bias)
                bn.running_mean.copy_(child.running_mean)
                bn.running_var.copy_(child.running_var)
            setattr(model, name, bn.to(child.bias.device).train(child.training))
        else:
            plain_batchnorm(child)
    return model


def for_inference(model):
    """An eval-mode copy of model with every BatchNorm that follows a convolution folded into it (FX)."""
    import copy

    from torch.fx.experimental.optimization import fuse

    model = plain_batchnorm(copy.deepcopy(model).eval())
    try:
        return fuse(model)
    except Exception:  # a network FX cannot trace (data-dependent control flow) runs unfused
        return model


# ---------------------------------------------------------------- MXNet checkpoints


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


def describe_mxnet(path, nodes, params):
    """(network, get_symbol keyword arguments) for an MXNet graph, from its layer names and array shapes."""
    names = {n["name"] for n in nodes}
    ops = [n for n in nodes if n["op"] != "null"]
    fcs = [n for n in ops if n["op"] == "FullyConnected"]
    if not fcs:
        raise UserError(f"{path}: the graph has no FullyConnected classifier, so it is no image classifier")
    kwargs = {"num_classes": int(_attrs(fcs[-1])["num_hidden"])}

    def shape(name):
        arr = params.get(f"arg:{name}")
        if arr is None:
            raise UserError(f"{path}: parameter arg:{name} of layer {name.rsplit('_', 1)[0]} is not in the .params")
        return arr.shape

    if "stage1_unit1_conv1" in names:
        network, stages = _resnet_family(names, ops, kwargs)
        # A 3x3 conv0 is MXNet's stem up to 32 pixels; there 4 stages mean 29-32 pixels (ImageNet depths above 28).
        side = 224 if shape("conv0_weight")[2] != 3 else 32 if stages == 4 or network == "resnext" else 28
        kwargs["image_shape"] = f"{shape('conv0_weight')[1]},{side},{side}"
    elif "conv_1_conv2d" in names and "conv_2_dw_conv2d" in names:
        network = "mobilenet"
        kwargs["multiplier"] = shape("conv_1_conv2d_weight")[0] / 32
        pool = next((n for n in ops if n["name"] == "global_pool"), {})
        kwargs["resolution"] = 32 * int(re.findall(r"\d+", _attrs(pool).get("kernel", "7"))[0])  # window = res / 32
        # Images larger than the resolution leave fc a (side/32 - window + 1)^2 times wider input.
        fc_side = _square(shape("fc_weight")[1], shape("conv_1_conv2d_weight")[0] * 32, path, "fc")
        side = kwargs["resolution"] + 32 * (fc_side - 1)
        kwargs["image_shape"] = f"{shape('conv_1_conv2d_weight')[1]},{side},{side}"
    elif "conv1_1" in names and "fc8" in names:
        network = "vgg"
        kwargs["num_layers"] = sum(1 for n in names if re.fullmatch(r"conv\d+_\d+", n)) + 3
        kwargs["batch_norm"] = "bn1_1" in names
        side = 32 * _square(shape("fc6_weight")[1], 512, path, "fc6")
        kwargs["image_shape"] = f"{shape('conv1_1_weight')[1]},{side},{side}"
    elif "conv_1" in names and ("conv_3a_1x1" in names or "conv_in3a_1x1" in names):
        network = "inception-bn"
        side = 28 if "conv_in3a_1x1" in names else 224
        kwargs["image_shape"] = f"{shape('conv_1_weight')[1]},{side},{side}"
    elif (
        "convolution0" in names and "fullyconnected1" in names and any(_attrs(n).get("act_type") == "tanh" for n in ops)
    ):
        network = "lenet"
        side = (_square(shape("fullyconnected0_weight")[1], 50, path, "fullyconnected0") * 2 + 4) * 2 + 4
        kwargs["image_shape"] = f"{shape('convolution0_weight')[1]},{side},{side}"
    elif {"fc1", "fc2", "fc3"} <= names and not any(n["op"] == "Convolution" for n in ops):
        network = "mlp"
        n = shape("fc1_weight")[1]
        channels = 1 if round(n**0.5) ** 2 == n else 3
        side = _square(n, channels, path, "fc1")
        kwargs["image_shape"] = f"{channels},{side},{side}"
    else:
        first = ", ".join(n["name"] for n in ops[:4])
        raise UserError(
            f"{path}: not a network family this suite imports (first layers: {first}); "
            f"importable families: {', '.join(IMPORTABLE)}"
        )
    return network, kwargs


def mxnet_epochs(prefix):
    """Epochs with a PREFIX-%04d.params file, ascending."""
    found = []
    for p in glob.glob(glob.escape(prefix) + "-*.params"):
        m = re.fullmatch(r"(\d{4,})\.params", p[len(prefix) + 1 :])
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def _pick_epoch(prefix, epoch):
    """The epoch asked for, or the last one saved when none is given."""
    if epoch is not None:
        return int(epoch)
    epochs = mxnet_epochs(prefix)
    if not epochs:
        raise UserError(f"no {prefix}-NNNN.params next to {prefix}-symbol.json; pass --load-epoch")
    return epochs[-1]


def import_mxnet(prefix, epoch=None):
    """(network as an nn.Module in eval mode, info) for an MXNet checkpoint; every array checked by name and shape."""
    sym_path = f"{prefix}-symbol.json"
    doc = checkpoint.read_json(sym_path, "pass the prefix the model was saved under")
    if "nodes" not in doc:
        raise UserError(f"{sym_path} is not an MXNet symbol file (it has no 'nodes')")
    epoch = _pick_epoch(prefix, epoch)
    params_file = f"{prefix}-{epoch:04d}.params"
    params = mxparams.load(params_file)
    network, kwargs = describe_mxnet(sym_path, doc["nodes"], params)
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


# ---------------------------------------------------------------- the suite's checkpoints and fine-tuning


def _output_shape(modules, shape):
    """Shape of the output of the modules run on one blank image of `shape`."""
    with torch.no_grad():
        return tuple(nn.Sequential(*modules).eval()(torch.zeros(1, *shape)).shape)


def replace_head(model, layer, num_classes, shape):
    """Keep model up to `layer`, add a new classifier; return (model, new head name, names of dropped layers)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("the pretrained network has no fully connected classifier to replace")
    if not isinstance(model, nn.Sequential):
        if layer != "auto":  # only the Sequential networks expose a cut point by name
            raise choice_error("--layer-before-fullc", layer, ["auto"])
        parent, _, leaf = linears[-1].rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        old = getattr(owner, leaf)
        setattr(owner, leaf, nn.Linear(old.in_features, num_classes))
        return model, linears[-1], [linears[-1]]
    names = [n for n, _ in model.named_children()]
    if layer == "auto":  # the layer before the child holding the last Linear (itself, or a Flatten + Linear head)
        cut = names.index(linears[-1].split(".")[0]) - 1
    elif layer in names[:-1]:
        cut = names.index(layer)
    else:
        raise choice_error("--layer-before-fullc", layer, names[:-1])
    kept = [(n, model.get_submodule(n)) for n in names[: cut + 1]]
    head = linears[-1].split(".")[0]
    if head in dict(kept):
        head = f"{head}_new"
    out = _output_shape([m for _, m in kept], shape)
    fc = nn.Linear(int(torch.tensor(out[1:]).prod()), num_classes)
    layers = OrderedDict(kept)
    layers[head] = fc if len(out) == 2 else nn.Sequential(nn.Flatten(), fc)  # a feature map is flattened first
    return nn.Sequential(layers), head, names[cut + 1 :]


def rebuild(network, arguments, fine_tune=(), path="the symbol file"):
    """The network a PREFIX-symbol.json describes: built from its arguments, then its fine-tune head replacements."""
    arguments = {k: v for k, v in arguments.items() if v is not None}
    for step in fine_tune:
        if not isinstance(step, dict) or not set(FINE_TUNE_KEYS) <= set(step):
            raise UserError(f"{path}: a fine_tune entry lacks one of {', '.join(FINE_TUNE_KEYS)}; restore the file")
    if fine_tune:  # the pretrained network had its own class count; each replacement sets the next one
        arguments["num_classes"] = fine_tune[0]["pretrained_num_classes"]
    # alexnet and googlenet are both zoo and symbols names: a fine-tune entry says which one was the pretrained one.
    zoo = fine_tune[0].get("pretrained_source") == "zoo" if fine_tune else network not in symbols.list_networks()
    if zoo and network in zoo_names():  # a fine-tuned torchvision network
        from torchvision import models

        model = models.get_model(network, num_classes=arguments.get("num_classes", 1000))
    else:
        model = symbols.get_symbol(network, **arguments)
    for step in fine_tune:
        model = replace_head(model, step["layer_before_fullc"], step["num_classes"], tuple(step["image_shape"]))[0]
    return model


def load_checkpoint(prefix, epoch=None):
    """(network in eval mode, info) for one of the suite's checkpoints; the last epoch saved when none is given."""
    doc = checkpoint.read_symbol(prefix)
    epoch = _pick_epoch(prefix, epoch)
    arguments = {k: v for k, v in (doc.get("arguments") or {}).items() if v is not None}
    fine_tune = doc.get("fine_tune") or []
    model = rebuild(doc["network"], arguments, fine_tune, f"{prefix}-symbol.json")
    checkpoint.load_params(checkpoint.params_path(prefix, epoch), model, doc["network"])
    info = {"source": f"checkpoint {checkpoint.params_path(prefix, epoch)}", "network": doc["network"]}
    info.update(arguments=arguments, preprocess=doc.get("preprocess") or {}, classes=doc.get("classes"), epoch=epoch)
    info["fine_tune"] = fine_tune
    return model.eval(), info


def load_model(spec, epoch=None):
    """(network, info) for a checkpoint prefix (ours or MXNet's) or, when no such checkpoint exists, a zoo name."""
    sym_path = f"{spec}-symbol.json"
    if os.path.isfile(sym_path):
        doc = checkpoint.read_json(sym_path, "pass the prefix the model was saved under")
        if "nodes" in doc:
            return import_mxnet(spec, epoch)
        if str(doc.get("format", "")).startswith("mxtorch"):
            return load_checkpoint(spec, epoch)
        raise UserError(f"{sym_path} is neither an MXNet symbol nor one of this suite's checkpoints")
    if any(_key(n) == _key(spec) for n in zoo_names()):
        return zoo_model(spec)
    raise UserError(
        f"--model {spec}: no checkpoint {sym_path} and no pretrained model of that name; "
        f"pretrained names: {', '.join(zoo_names())}"
    )
