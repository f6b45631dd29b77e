"""MNIST for train_mnist.py: the four idx files, downloaded with SHA-256 checks, or the bundled sample.

The sample (data/mnist-sample/, 4,000 training and 1,000 validation digits) lets the script run offline.
`python data/mnist.py OUT [--per-class N]` writes the sample as PNG class folders (OUT/train/0..9, OUT/val/0..9).
"""

import argparse
import gzip
import logging
import os
import struct
import sys

import numpy as np
from PIL import Image

if __name__ == "__main__" and __package__ in (None, ""):  # `python data/mnist.py`: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.download import fetch
from common.util import UserError

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
# Published SHA-256 of the original gzipped idx files
FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist-sample")
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read a (gzipped) idx file into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
            if zero != 0 or dtype not in IDX_TYPES:
                raise ValueError("bad magic number")
            shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            arr = np.frombuffer(bytearray(f.read()), dtype=IDX_TYPES[dtype])
    except (OSError, ValueError, struct.error, EOFError) as err:
        raise UserError(f"{path}: not an idx file ({err}); delete it to download it again") from None
    if arr.size != int(np.prod(shape)):
        raise UserError(f"{path}: holds {arr.size} values, its header says {shape}; delete it to download it again")
    return arr.reshape(shape)


def write_idx(path, array):
    """Write a uint8 array as a gzipped idx file (mtime 0, so the bytes are reproducible)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header + array.tobytes())


def download(data_dir, mirror=None):
    """Fetch the four files into data_dir (each checked); return their paths. OSError when offline."""
    paths = {}
    for name, sha in FILES.items():
        err = None
        for base in [mirror] if mirror else MIRRORS:
            try:
                paths[name] = fetch(base.rstrip("/") + "/" + name, os.path.join(data_dir, name), sha)
                break
            except OSError as e:
                err = e
        if name not in paths:
            raise err
    return paths


def _missing_folders(path):
    """The folders of path that do not exist yet, innermost first."""
    missing, path = [], os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def load(data_dir, mirror=None):
    """(train images, train labels, val images, val labels, 'full'|'sample'); images uint8 (N, 28, 28, 1)."""
    made = _missing_folders(data_dir)  # the folders a download would create (innermost first)
    try:
        p = download(data_dir, mirror)
        names, kind = [p[n] for n in FILES], "full"
    except OSError as err:
        for folder in made:  # an offline run leaves no empty folder behind
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        logging.getLogger(__name__).warning(
            "MNIST could not be downloaded (%s); training on the bundled 4,000-digit sample", err
        )
        names = [os.path.join(SAMPLE_DIR, n) for n in FILES]
        kind = "sample"
    train_x, train_y, val_x, val_y = (read_idx(n) for n in names)
    return train_x[..., None], train_y.astype(np.float32), val_x[..., None], val_y.astype(np.float32), kind


def write_sample_pngs(out_dir, per_class=None):
    """Write the bundled sample as OUT/{train,val}/<digit>/<n>.png, at most per_class per digit; return the count."""
    count = 0
    for split, stem in (("train", "train"), ("val", "t10k")):
        images = read_idx(os.path.join(SAMPLE_DIR, f"{stem}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(SAMPLE_DIR, f"{stem}-labels-idx1-ubyte.gz"))
        for digit in range(10):
            folder = os.path.join(out_dir, split, str(digit))
            os.makedirs(folder, exist_ok=True)
            for i in np.flatnonzero(labels == digit)[:per_class]:
                Image.fromarray(images[i]).save(os.path.join(folder, f"{i:05d}.png"))
                count += 1
    return count


def main(argv=None):
    """Command line: write the sample's digits as PNG class folders."""
    parser = argparse.ArgumentParser(description="write the bundled MNIST sample as PNG class folders")
    parser.add_argument("out", help="output folder: OUT/train/0..9/*.png and OUT/val/0..9/*.png")
    parser.add_argument("--per-class", type=int, default=None, help="images per class and split (default: all)")
    args = parser.parse_args(argv)
    if args.per_class is not None and args.per_class < 1:
        parser.error("--per-class must be at least 1")
    print(f"wrote {write_sample_pngs(args.out, args.per_class)} PNG images under {args.out}/train and {args.out}/val")


if __name__ == "__main__":
    main()
