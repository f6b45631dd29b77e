"""CIFAR-100 for train_cifar10.py --dataset cifar100: the python archive, downloaded and checked, packed into .rec
files with the 100 fine labels, and the class names of the archive's meta written beside them (X.classes)."""

import os

from common.sources import CLASSES_EXT, write_classes
from common.util import UserError
from data import cifar10

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
# The CIFAR page publishes this archive's MD5; the SHA-256 is the one Keras's and torchvision's dataset loaders check.
SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
NUM_CLASSES = 100


def class_names(raw):
    """The fine class names (by label) of the archive's pickled meta."""
    names = cifar10.unpickle(raw, "meta", (b"fine_label_names",))[b"fine_label_names"]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def prepare(data_dir, url=URL, sha256=SHA256, md5=MD5):
    """Make data_dir/cifar100_train.rec and cifar100_val.rec (with .idx and .classes), downloading the archive if
    needed; labels are the fine ones (100 classes)."""
    train_rec, val_rec = os.path.join(data_dir, "cifar100_train.rec"), os.path.join(data_dir, "cifar100_val.rec")
    made = (train_rec, val_rec, *(os.path.splitext(r)[0] + CLASSES_EXT for r in (train_rec, val_rec)))
    if all(os.path.isfile(p) for p in made):
        return train_rec, val_rec
    archive = os.path.join(data_dir, "cifar-100-python.tar.gz")
    cifar10.download(url, archive, sha256, md5)
    raw = cifar10.members(archive, ("train", "test", "meta"))
    names = class_names(raw["meta"])
    train, val = (cifar10.read_batch(raw[n], n, label_key=b"fine_labels") for n in ("train", "test"))
    top = max(int(train[1].max(initial=0)), int(val[1].max(initial=0)))
    if top >= len(names):
        raise UserError(f"{archive}: label {top} but its meta names {len(names)} classes; delete it to download again")
    for rec in (train_rec, val_rec):  # the names first: the .rec files are what says the work is done
        write_classes(os.path.splitext(rec)[0] + CLASSES_EXT, names)
    cifar10.pack(*val, val_rec)
    cifar10.pack(*train, train_rec)
    return train_rec, val_rec
