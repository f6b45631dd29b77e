"""What the training loop reports besides its log lines: the progress bar, TensorBoard scalars, a NaN stop."""

import math

import torch

from common import checkpoint
from common.util import UserError


def _last_good(prefix):
    """'; the last good checkpoint P is intact' for the newest saved epoch under prefix, or ''."""
    saved = checkpoint.saved_epochs(prefix) if prefix else []
    return f"; the last good checkpoint {checkpoint.params_path(prefix, saved[-1])} is intact" if saved else ""


def check_finite(prefix, value, epoch, where):
    """Stop on a NaN/inf loss before anything is written, naming the last good checkpoint."""
    if math.isfinite(value):
        return
    raise UserError(
        f"loss is {value} in epoch {epoch} ({where}); training stopped{_last_good(prefix)}; "
        "lower --lr or check the data"
    )


def check_weights(prefix, model, epoch):
    """Stop before saving when a weight is NaN/inf (an epoch's last steps can diverge while its mean loss is finite)."""
    named = list(model.named_parameters())
    finite = torch.stack([torch.isfinite(p).all() for _, p in named]).tolist() if named else []  # one host sync
    if all(finite):
        return
    bad = named[finite.index(False)][0]
    raise UserError(
        f"parameter {bad} is NaN or inf after epoch {epoch}; training stopped{_last_good(prefix)}; lower --lr"
    )


def progress(iterable, total, epoch):
    """A tqdm progress bar over one epoch's batches (rank 0 on a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=f"Epoch[{epoch}]", leave=False, dynamic_ncols=True)


def board(folder):
    """A function(group, values, step) that writes TensorBoard scalars into folder."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
    writer = SummaryWriter(folder)

    def board(group, values, step):
        for k, v in values.items():
            if isinstance(v, int | float):
                writer.add_scalar(f"{group}/{k}", v, step)
        writer.flush()

    return board
