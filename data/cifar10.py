"""CIFAR-10 for train_cifar10.py: the official python archive, downloaded and checked, packed into .rec files."""

import io
import os
import pickle
import tarfile
import zlib

import numpy as np

from common import recordio
from common.download import fetch
from common.util import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # published for this archive
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


class _ArrayUnpickler(pickle.Unpickler):
    """The archive's batches are pickled dicts of numpy arrays: allow those classes and nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR archive")
        return super().find_class(module, name)


def unpickle(raw, name, keys):
    """The dict (bytes keys) pickled in the archive's member `name`, which must hold `keys`."""
    try:
        d = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise UserError(
            f"{name} of the CIFAR archive does not read ({err}); delete the archive to download it again"
        ) from None
    lacks = [k.decode() for k in keys if not isinstance(d, dict) or k not in d]
    if lacks:
        raise UserError(
            f"{name} of the CIFAR archive lacks {', '.join(lacks)}; delete the archive to download it again"
        )
    return d


def read_batch(raw, name="a batch", label_key=b"labels"):
    """(images uint8 (N, 32, 32, 3) RGB, labels int) of one pickled batch (CIFAR-100: label_key b"fine_labels")."""
    d = unpickle(raw, name, (b"data", label_key))
    images = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(d[label_key], dtype=np.int64)


def pack(images, labels, rec_path):
    """Write images (RGB) and labels as PNG records into rec_path and its .idx (atomically, by recordio)."""
    writer = recordio.MXIndexedRecordIO(os.path.splitext(rec_path)[0] + ".idx", rec_path, "w")
    for i, (img, label) in enumerate(zip(images, labels)):
        header = recordio.IRHeader(0, float(label), i, 0)
        writer.write_idx(i, recordio.pack_img(header, np.ascontiguousarray(img[:, :, ::-1]), img_fmt=".png"))
    writer.close()


def download(url, archive, sha256, md5=None):
    """The archive, downloaded and checked unless a good copy is there; offline: one line saying where to copy it."""
    try:
        fetch(url, archive, sha256, md5)
    except OSError as err:
        raise UserError(
            f"could not download {url} ({err}); copy that archive to {archive}, "
            "or pass --data-train/--data-val .rec files"
        ) from None


def members(archive, names):
    """{name: bytes} of the archive's files with those base names; one line naming what it lacks."""
    found = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.isfile() and name in names:
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise UserError(f"{archive} does not read as a .tar.gz ({err}); delete it to download it again") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise UserError(f"{archive} lacks {', '.join(missing)}; delete it to download it again")
    return found


def prepare(data_dir, url=URL, sha256=SHA256):
    """Make data_dir/cifar10_train.rec and cifar10_val.rec (with .idx), downloading the archive if needed."""
    train_rec, val_rec = os.path.join(data_dir, "cifar10_train.rec"), os.path.join(data_dir, "cifar10_val.rec")
    if os.path.isfile(train_rec) and os.path.isfile(val_rec):
        return train_rec, val_rec
    archive = os.path.join(data_dir, "cifar-10-python.tar.gz")
    download(url, archive, sha256)
    raw = members(archive, (*TRAIN_BATCHES, "test_batch"))
    train = [read_batch(raw[n], n) for n in TRAIN_BATCHES]
    pack(np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]), train_rec)
    pack(*read_batch(raw["test_batch"], "test_batch"), val_rec)
    return train_rec, val_rec
