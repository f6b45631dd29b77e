"""What the training loop reports besides its log lines: the progress bar, TensorBoard scalars, a NaN stop."""

import math

import torch

from common import checkpoint
from common.util import UserError


def check_finite(prefix, value, epoch, where):
    """Stop on a NaN/inf loss before anything is written, naming the last good checkpoint."""
    if math.isfinite(value):
        return
    saved = checkpoint.saved_epochs(prefix) if prefix else []
    last = f"; the last good checkpoint {checkpoint.params_path(prefix, saved[-1])} is intact" if saved else ""
    raise UserError(f"loss is {value} in epoch {epoch} ({where}); training stopped{last}; lower --lr or check the data")


def check_weights(prefix, model, epoch):
    """Stop before saving when a weight is NaN/inf (an epoch's last steps can diverge while its mean loss is finite)."""
    bad = next((name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)
    if bad is None:
        return
    saved = checkpoint.saved_epochs(prefix) if prefix else []
    last = f"; the last good checkpoint {checkpoint.params_path(prefix, saved[-1])} is intact" if saved else ""
    raise UserError(f"parameter {bad} is NaN or inf after epoch {epoch}; training stopped{last}; lower --lr")


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
