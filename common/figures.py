"""Figures: matplotlib without a display, and one writer that saves a figure as a PNG atomically."""

import io

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
