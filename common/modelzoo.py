"""Pretrained models by name (torchvision's ImageNet weights), and one loader for any model a user can name.

download_model(name)       torchvision's weights file, sha256-prefix checked, cached under TORCH_HOME
zoo_model(name)            a torchvision network with its weights and its evaluation preprocessing
zoo_preprocess(weights)    that preprocessing: the weights' own crop and resize sizes, mean and std
load_checkpoint(prefix, e) one of the suite's checkpoints, rebuilt from PREFIX-symbol.json (networks.rebuild)
load_model(spec, epoch)    a suite checkpoint, an MXNet checkpoint (common/mximport.py), one of MXNet's model-zoo
                           names (common/mxzoo.py) or a torchvision zoo name, with its evaluation preprocessing and
                           class names
"""

import os
import re
import urllib.error
import urllib.parse

import torch

from common import checkpoint, download, mxzoo
from common.mximport import import_mxnet, load_mxnet_checkpoint  # noqa: F401 - modelzoo.load_mxnet_checkpoint: MXNet's example name
from common.networks import rebuild, zoo_names
from common.util import UserError

# Where a mirror of torchvision's weights folder can be named (offline sites, air-gapped clusters).
MIRROR_ENV = "MXTORCH_MODEL_MIRROR"
HASH_RE = re.compile(r"-([a-f0-9]{6,})\.")


def _key(name):
    return re.sub(r"[-_.]", "", str(name).lower())


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


def fetch(url, dst):
    """Download url (http, https or file) into folder dst unless there; check the sha256 prefix in its file name."""
    filename = os.path.basename(urllib.parse.urlparse(url).path)
    m = HASH_RE.search(filename)
    prefix = m.group(1) if m else None
    path = os.path.join(dst, filename)
    if os.path.isfile(path):
        if prefix and not download.sha256_of(path).startswith(prefix):
            raise UserError(f"{path} is damaged (its sha256 does not start with {prefix}); delete it and run again")
        return path
    try:
        return download.fetch(url, path, prefix)
    except OSError as err:  # URLError is one
        reason = getattr(err, "reason", None) or err
        raise UserError(
            f"cannot download {url} ({reason}); offline, copy that file to {path} (or set {MIRROR_ENV})"
        ) from None


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
    info = {"source": f"zoo {arch} ({path})", "network": arch, "arguments": {}, "preprocess": zoo_preprocess(weights)}
    info["classes"] = list(weights.meta.get("categories") or []) or None
    return model.eval(), info


def zoo_preprocess(weights):
    """The evaluation preprocessing of torchvision weights (their transforms()): the centre crop, the short side
    resized to before it (e.g. 232 then 224 for resnet50's V2 weights, 342 then 299 for inception_v3), mean, std."""
    tf = weights.transforms()
    crop = tf.crop_size[0]
    return {
        "image_shape": [3, crop, crop],
        "rgb_mean": [round(v * 255, 4) for v in tf.mean],
        "rgb_std": [round(v * 255, 4) for v in tf.std],
        "resize": tf.resize_size[0],
    }


def load_checkpoint(prefix, epoch=None):
    """(network in eval mode, info) for one of the suite's checkpoints: epoch N, best or (None) the last saved."""
    doc = checkpoint.read_symbol(prefix)
    epoch = checkpoint.pick_epoch(prefix, epoch)
    arguments = {k: v for k, v in (doc.get("arguments") or {}).items() if v is not None}
    fine_tune = doc.get("fine_tune") or []
    model = rebuild(doc["network"], arguments, fine_tune, f"{prefix}-symbol.json")
    checkpoint.load_params(checkpoint.params_path(prefix, epoch), model, doc["network"])
    info = {"source": f"checkpoint {checkpoint.params_path(prefix, epoch)}", "network": doc["network"]}
    info.update(arguments=arguments, preprocess=doc.get("preprocess") or {}, classes=doc.get("classes"), epoch=epoch)
    info["fine_tune"] = fine_tune
    return model.eval(), info


def load_model(spec, epoch=None, flag="--model"):
    """(network, info) for a checkpoint prefix (ours or MXNet's) or, when no such checkpoint exists, a zoo name.

    flag: the command-line flag that named spec, for the error when it names nothing."""
    sym_path = f"{spec}-symbol.json"
    if os.path.isfile(sym_path):
        doc = checkpoint.read_json(sym_path, "pass the prefix the model was saved under")
        if "nodes" in doc:
            return import_mxnet(spec, epoch)
        if str(doc.get("format", "")).startswith("mxtorch"):
            return load_checkpoint(spec, epoch)
        raise UserError(f"{sym_path} is neither an MXNet symbol nor one of this suite's checkpoints")
    if spec in mxzoo.MODELS:  # MXNet's model-zoo names (imagenet1k-resnet-50, ...)
        return mxzoo.load(spec, cache_dir())
    if any(_key(n) == _key(spec) for n in zoo_names()):
        return zoo_model(spec)
    raise UserError(
        f"{flag} {spec}: no checkpoint {sym_path} and no pretrained model of that name; "
        f"pretrained names: {', '.join([*mxzoo.MODELS, *zoo_names()])}"
    )
