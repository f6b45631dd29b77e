"""MXNet's model-zoo names (those of its example's common/modelzoo.py): MXNet's checkpoint, downloaded and imported.

  imagenet1k-resnet-50, imagenet11k-resnet-152, ...  ->  CACHE/mxnet/NAME-symbol.json + NAME-0000.params
The files come from MXNet's address (data.mxnet.io/models/) or, for sites behind a proxy or offline, from the
folder or server that MXTORCH_MXNET_MIRROR names (the same layout below it); a copy put under the cache name by
hand is used as it is. MXNet published no checksums for these files: the SHA-256 of each is recorded beside it
(FILE.sha256) the first time it is seen, and every later load checks it, so a file damaged since is refused.
"""

import logging
import os

from common import download
from common.mximport import import_mxnet
from common.util import UserError, atomic_write

BASE_URL = "http://data.mxnet.io/models/"
MIRROR_ENV = "MXTORCH_MXNET_MIRROR"
# name -> (symbol file, params file) below BASE_URL; every params file is epoch 0
MODELS = {
    "imagenet1k-inception-bn": ("imagenet/inception-bn/Inception-BN-symbol.json", "Inception-BN-0126.params"),
    "imagenet1k-resnet-18": ("imagenet/resnet/18-layers/resnet-18-symbol.json", "resnet-18-0000.params"),
    "imagenet1k-resnet-34": ("imagenet/resnet/34-layers/resnet-34-symbol.json", "resnet-34-0000.params"),
    "imagenet1k-resnet-50": ("imagenet/resnet/50-layers/resnet-50-symbol.json", "resnet-50-0000.params"),
    "imagenet1k-resnet-101": ("imagenet/resnet/101-layers/resnet-101-symbol.json", "resnet-101-0000.params"),
    "imagenet1k-resnet-152": ("imagenet/resnet/152-layers/resnet-152-symbol.json", "resnet-152-0000.params"),
    "imagenet11k-resnet-152": ("imagenet-11k/resnet-152/resnet-152-symbol.json", "resnet-152-0000.params"),
    "imagenet11k-place365ch-resnet-152": ("imagenet-11k-place365-ch/resnet-152-symbol.json", "resnet-152-0000.params"),
    "imagenet11k-place365ch-resnet-50": ("imagenet-11k-place365-ch/resnet-50-symbol.json", "resnet-50-0000.params"),
}


def urls(name):
    """(symbol URL, params URL) of a zoo name, below MXTORCH_MXNET_MIRROR when it is set, else MXNet's address."""
    symbol, params = MODELS[name]
    base = os.environ.get(MIRROR_ENV) or BASE_URL
    folder = symbol.rsplit("/", 1)[0]
    return f"{base.rstrip('/')}/{symbol}", f"{base.rstrip('/')}/{folder}/{params}"


def _checked(url, path):
    """path, downloaded from url unless there; its SHA-256 recorded at first sight and checked on every later load."""
    record = path + ".sha256"
    if not os.path.isfile(path):
        try:
            download.fetch(url, path, None)
        except OSError as err:
            reason = getattr(err, "reason", None) or err
            raise UserError(
                f"cannot download {url} ({reason}); offline, copy that file to {path}, "
                f"or set {MIRROR_ENV} to a folder or server with the same layout"
            ) from None
    digest = download.sha256_of(path)
    if not os.path.isfile(record):
        logging.info("%s: SHA-256 %s recorded (MXNet published none); later loads check it", path, digest)
        atomic_write(record, digest + "\n", mode="w")
        return path
    with open(record) as f:
        expected = f.read().strip()
    if digest != expected:
        raise UserError(
            f"{path} is damaged: its SHA-256 is {digest}, {expected} when it was first downloaded; "
            f"delete it (and {record}) to download it again"
        )
    return path


def load(name, cache):
    """(network, info) of MXNet zoo model `name`: its checkpoint under cache/mxnet, downloaded if needed, imported."""
    prefix = os.path.join(cache, "mxnet", name)
    symbol_url, params_url = urls(name)
    params = MODELS[name][1]
    epoch = int(params.rsplit("-", 1)[1].split(".")[0])
    _checked(symbol_url, f"{prefix}-symbol.json")
    _checked(params_url, f"{prefix}-{epoch:04d}.params")
    model, info = import_mxnet(prefix, epoch)
    info["source"] = f"MXNet zoo {name} ({info['source']})"
    return model, info
