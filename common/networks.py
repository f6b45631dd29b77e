"""Networks built from flags or from a checkpoint's record, fine-tuning's new classifier, inference forms.

get_network(args)                     --network with the other set flags as its arguments
network_arguments(network, values)    every argument of a family's get_symbol (what PREFIX-symbol.json records)
replace_head(model, layer, classes)   fine-tuning's cut and new classifier, replayed by rebuild() on loading
rebuild(network, arguments, steps)    the network a PREFIX-symbol.json describes
cosine_head(model, scale)             the last linear layer as a cosine classifier (--loss-type am-softmax)
for_inference(model)                  an eval copy with BatchNorm folded into the convolutions
"""

import copy
import importlib
import inspect
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

import symbols
from common import validate
from common.util import UserError, choice_error
from symbols.mxlayers import MXBatchNorm

# What PREFIX-symbol.json records of each classifier replacement fine-tune.py made (checkpoint.write_symbol).
FINE_TUNE_KEYS = ("pretrained_num_classes", "layer_before_fullc", "image_shape", "num_classes")
# The argument PREFIX-symbol.json records for a cosine classifier (its scale); get_symbol never sees it.
COSINE_KEY = "cosine_scale"


def zoo_names():
    """Names of the pretrained classification models (torchvision's, with ImageNet weights)."""
    from torchvision import models

    return sorted(models.list_models(module=models))


def get_network(args):
    """Build --network with the other set flags as keyword arguments (each family ignores those it does not use)."""
    if not args.network:
        raise UserError("no --network given; valid values: " + ", ".join(symbols.list_networks()))
    kwargs = {k: v for k, v in vars(args).items() if k != "network" and v is not None}
    return symbols.get_symbol(args.network, **kwargs)


def network_arguments(network, values):
    """Every argument of the get_symbol of `network`'s family: from values where set, else the family default."""
    name = str(network).lower().replace("_", "-")
    if name not in symbols.list_networks():  # a fine-tuned torchvision zoo network: only its class count varies
        return {"num_classes": values.get("num_classes")}
    family, variant = symbols.resolve(name)
    build = importlib.import_module(f"symbols.{symbols.FAMILIES[family]}").get_symbol
    arguments = {}
    for key, param in inspect.signature(build).parameters.items():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        value = values.get(key)
        arguments[key] = value if value is not None else (None if param.default is param.empty else param.default)
    if variant is not None:  # named in the network name (efficientnet-b3), which symbols.get_symbol also applies
        arguments["variant"] = variant
    return arguments


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
    from torch.fx.experimental.optimization import fuse

    model = plain_batchnorm(copy.deepcopy(model).eval())
    try:
        return fuse(model)
    except Exception:  # a network FX cannot trace (data-dependent control flow) runs unfused
        return model


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


class CosineClassifier(nn.Linear):
    """scale * cos(angle between the feature and each class's weight): AM-softmax's classifier (no bias).

    Written here because neither torch nor timm has this layer. Features and class weights are L2-normalised; the
    additive margin belongs to the loss (common/objective.py), so scoring takes the argmax of these outputs as usual.
    An nn.Linear (same weight shape and name), so fine-tuning finds it as the classifier to replace.
    """

    def __init__(self, in_features, out_features, scale):
        super().__init__(in_features, out_features, bias=False)
        self.scale = float(scale)

    def forward(self, x):
        """x (N, in_features) -> (N, out_features) logits in [-scale, scale]."""
        return self.scale * F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))

    def extra_repr(self):
        return f"{super().extra_repr()}, scale={self.scale:g}"


def cosine_head(model, scale):
    """Make model's last nn.Linear a CosineClassifier of `scale` in place (its weight kept, its bias dropped)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("--loss-type am-softmax: the network has no fully connected classifier to make a cosine one")
    parent, _, leaf = linears[-1].rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    old = getattr(owner, leaf)
    if isinstance(old, CosineClassifier):
        old.scale = float(scale)
        return model
    head = CosineClassifier(old.in_features, old.out_features, scale).to(old.weight.device)
    head.weight = old.weight  # the same Parameter: its lr_mult and requires_grad (fine-tuning's) stay
    if hasattr(old, "mx_name"):
        head.mx_name = old.mx_name
    setattr(owner, leaf, head)
    return model


def check_record(network, arguments, fine_tune, path):
    """UserError naming the field when a symbol file's record is of the wrong type or would build a giant network."""
    if not isinstance(network, str) or not network:
        validate.fail(path, "network", f"is {str(network)[:40]!r}, not a network name")
    validate.arguments(path, arguments)
    validate.of_type(path, "fine_tune", fine_tune, list | tuple, "a list of classifier replacements")
    for step in fine_tune or ():
        if not isinstance(step, dict) or not set(FINE_TUNE_KEYS) <= set(step):
            raise UserError(f"{path}: a fine_tune entry lacks one of {', '.join(FINE_TUNE_KEYS)}; restore the file")
    validate.fine_tune_steps(path, list(fine_tune or ()))


def rebuild(network, arguments, fine_tune=(), path="the symbol file"):
    """The network a PREFIX-symbol.json describes: built from its arguments, then its fine-tune head replacements."""
    check_record(network, arguments, fine_tune, path)
    arguments = {k: v for k, v in arguments.items() if v is not None}
    scale = arguments.pop(COSINE_KEY, None)  # a cosine classifier (--loss-type am-softmax), applied last
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e6):
        validate.fail(path, f"arguments.{COSINE_KEY}", f"is {str(scale)[:40]!r}, not a positive scale")
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
    return cosine_head(model, scale) if scale is not None else model
