"""What the training loop reports besides its log lines: progress bar, log file, TensorBoard scalars, a NaN stop."""

import logging
import math
import os

import torch

from common import checkpoint
from common.util import UserError, atomic_path


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
    """A tqdm progress bar over one epoch's batches (rank 0 on a terminal); its ETA is tqdm's."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=f"Epoch[{epoch}]", leave=False, dynamic_ncols=True)


def show(bar, values):
    """Put the loss and accuracy (host values the Speed line already read) on a progress bar; no bar: nothing."""
    if hasattr(bar, "set_postfix"):
        bar.set_postfix(loss=f"{values['_loss']:.4f}", accuracy=f"{values['accuracy']:.4f}", refresh=False)


def changed_settings(args, defaults):
    """'name=value' for each setting of args that differs from defaults (all of them without defaults)."""
    return " ".join(f"{k}={v!r}" for k, v in vars(args).items() if defaults is None or defaults.get(k, v) != v)


def log_to_file(path, settings, fmt, flag="--log-file"):
    """Copy every log line from now on into path (appended: a resumed run continues it), first the full settings.

    flag: the flag that named path, for the error line."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as err:
        blocker = folder
        while blocker != os.path.dirname(blocker) and not os.path.exists(blocker):
            blocker = os.path.dirname(blocker)
        why = f"{blocker} is a file, not a folder" if os.path.isfile(blocker) else (err.strerror or str(err))
        raise UserError(f"{flag} {path}: cannot write the log file: {why}; fix the folder or change {flag}") from None
    handler.setFormatter(logging.Formatter(fmt))
    handler.handle(logging.makeLogRecord({"msg": "all settings %s", "args": (settings,), "levelname": "INFO"}))
    logging.getLogger().addHandler(handler)
    return handler


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


class Profile:
    """--profile-worker-suffix / --profile-server-suffix: a torch profiler trace (Chrome format) of the first steps.

    MXNet's profiler wrote a worker's (or server's) whole run; a trace of every step of a long run is gigabytes,
    so this records STEPS steps after one warm-up step and writes the file then (or when training ends sooner).
    """

    STEPS = 20

    def __init__(self, worker_suffix, server_suffix, kv, device):
        self.paths = []
        if worker_suffix:  # MXNet's name: rankN_SUFFIX when there are several workers
            self.paths.append(f"rank{kv.rank}_{worker_suffix}" if kv.num_workers > 1 else worker_suffix)
        if server_suffix and kv.rank == 0:  # there are no parameter servers: rank 0's steps hold the all-reduce
            self.paths.append(server_suffix)
        self.prof, self.count = None, 0
        if self.paths:
            from torch.profiler import ProfilerActivity, profile

            kinds = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            self.prof = profile(activities=kinds, record_shapes=True)

    def step(self):
        """Count one training step: start after the first, write the trace after STEPS more."""
        if self.prof is None:
            return
        self.count += 1
        if self.count == 1:
            self.prof.__enter__()
        elif self.count == self.STEPS + 1:
            self.finish()

    def finish(self):
        """Stop the profiler (if it runs) and write its trace to every path, atomically."""
        if self.prof is None or self.count < 1:
            return
        self.prof.__exit__(None, None, None)
        trace = None
        for path in self.paths:  # torch writes a trace once: the others are copies of the first
            with atomic_path(path) as tmp:
                if trace is None:
                    self.prof.export_chrome_trace(tmp)
                    with open(tmp, "rb") as f:
                        trace = f.read()
                else:
                    with open(tmp, "wb") as f:
                        f.write(trace)
            logging.info("wrote the profiler trace of %d training steps to %s", min(self.count - 1, self.STEPS), path)
        self.prof = None
