"""Batch mixing on the device: what the network sees and the targets it learns, from one batch of labels.

make_mixer(args, num_classes) -> a callable (x, y) -> (x, target): x a normalised float batch, y integer labels;
target is y itself when nothing mixes, else soft targets (N, num_classes) whose rows sum to one.
"""


def make_mixer(args, num_classes):
    """The batch mixer of the flags (none yet: the batch and its labels pass through)."""
    del args, num_classes
    return _identity


def _identity(x, y):
    return x, y
