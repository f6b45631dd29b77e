"""Figures: matplotlib without a display, one writer that saves a figure as a PNG atomically, and the plots."""

import io

import numpy as np

from common.util import atomic_write


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use: it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def save_png(fig, path, dpi=100):
    """Write fig to path as a PNG (tight bounding box) through a temporary file; close the figure."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    atomic_write(path, buf.getvalue())


def plot_curves(path, records):
    """Draw accuracy (and loss where logged) against epoch into a PNG."""
    plt = pyplot()
    epochs = [r["epoch"] + 1 for r in records]
    keys = sorted({k for r in records for k in r if k.startswith(("train-", "validation-"))})
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        ax.plot(epochs, [r.get(key, float("nan")) for r in records], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("metric")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_png(fig, path)


def plot_confusion(path, conf, classes):
    """The confusion matrix (rows true, columns predicted) as a PNG, written atomically."""
    plt = pyplot()
    n = len(conf)
    fig, ax = plt.subplots(figsize=(min(4 + n * 0.3, 14),) * 2)
    ax.imshow(conf, cmap="Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        names = classes if classes and len(classes) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize="small")
        ax.set_yticks(range(n), names, fontsize="small")
        for i, j in zip(*np.nonzero(conf)):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize="x-small")
    save_png(fig, path)
