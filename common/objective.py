"""The training loss: make_criterion(args) -> criterion(logits, target), target integer labels or soft rows."""

import torch.nn.functional as F


def make_criterion(args):
    """Softmax cross-entropy with --label-smoothing; takes integer labels or soft targets (rows summing to one)."""
    smoothing = args.label_smoothing

    def criterion(logits, target):
        return F.cross_entropy(logits.float(), target, label_smoothing=smoothing)

    return criterion
