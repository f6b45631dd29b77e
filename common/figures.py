"""Figures: matplotlib without a display, one writer that saves a figure as a PNG atomically, and the plots."""

import io
import os

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


def plot_curves(path, records, title=None):
    """Accuracy (left) and loss (right) against epoch, numbered as the log numbers them (Epoch[0] first), as a PNG."""
    plt = pyplot()
    epochs = [r["epoch"] for r in records]
    keys = sorted({k for r in records for k in r if k.startswith(("train-", "validation-"))})
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    # accuracy and top-k on the left; the loss trained on (train-loss, validation-loss) on the right: MXNet's
    # cross-entropy metric is that same loss without label smoothing, so it stays in the metrics file only
    for ax, wanted in ((acc, lambda k: "accuracy" in k), (loss, lambda k: k.endswith("-loss"))):
        for key in filter(wanted, keys):
            style = "-" if key.startswith("train-") else "--"
            ax.plot(epochs, [r.get(key, float("nan")) for r in records], style, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_xticks(_epoch_ticks(epochs))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    acc.set_ylabel("accuracy")
    loss.set_ylabel("loss")
    fig.suptitle(title or os.path.basename(path).removesuffix("-curve.png"))
    save_png(fig, path)


def _epoch_ticks(epochs):
    """Whole-number epoch ticks, at most about 12 of them."""
    if not epochs:
        return []
    step = max(1, -(-(max(epochs) - min(epochs) + 1) // 12))
    return list(range(min(epochs), max(epochs) + 1, step))


def plot_confusion(path, conf, classes, title=None):
    """The confusion matrix (rows true, columns predicted) as a PNG: accuracy in the title, a colour bar, counts
    in black or white by the cell's shade, class names when known."""
    plt = pyplot()
    n = len(conf)
    fig, ax = plt.subplots(figsize=(min(5 + n * 0.3, 15), min(4 + n * 0.3, 14)))
    image = ax.imshow(conf, cmap="Blues")
    fig.colorbar(image, ax=ax, label="images")
    accuracy = np.trace(conf) / max(conf.sum(), 1)
    ax.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.4f} on {int(conf.sum())} images")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        names = classes if classes and len(classes) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize="small")
        ax.set_yticks(range(n), names, fontsize="small")
        dark = conf.max() / 2  # above half the largest count the cell is dark blue: write white on it
        for i, j in zip(*np.nonzero(conf)):
            colour = "white" if conf[i, j] > dark else "black"
            size = "small" if n <= 12 else "x-small"
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=size, color=colour)
    save_png(fig, path)
