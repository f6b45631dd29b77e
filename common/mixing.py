"""Batch mixing on the device: what the network sees and the targets it learns, from one batch of labels.

make_mixer(args, num_classes) -> a Mixer, called (x, y) -> (x, target): x a normalised float batch (N, C, H, W) on
the device, y integer labels (N,); target is y itself when nothing mixes, else soft targets (N, num_classes) whose
rows sum to one. --mixup-alpha and --cutmix-alpha are torchvision's batched MixUp and CutMix (transforms.v2): each
image is mixed with its neighbour in the (shuffled) batch, by one coefficient per batch; with both, one of the two is
picked per batch. The arithmetic runs where the batch is; the few numbers drawn per batch (the coefficient, the box,
the choice) come from the CPU generator, seeded from (--seed, epoch, batch) so a resumed run mixes exactly as an
uninterrupted one (every worker draws the same numbers for its own batch).
Measured (benchmarks/bench_recipes_step.py, 2 CPU cores): a resnet-20 step at batch 128 takes 1.01x the plain one.
"""

import torch


def make_mixer(args, num_classes):
    """The batch mixer of --mixup-alpha / --cutmix-alpha (0: off; with neither, the batch and its labels pass)."""
    if not (args.mixup_alpha > 0 or args.cutmix_alpha > 0):
        return Mixer(None, args.seed)
    from torchvision.transforms import v2  # loaded only for a run that mixes

    mixes = []
    if args.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=args.mixup_alpha, num_classes=num_classes))
    if args.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=args.cutmix_alpha, num_classes=num_classes))
    transform = v2.RandomChoice(mixes) if len(mixes) > 1 else mixes[0]
    return Mixer(transform, args.seed)


class Mixer:
    """A batch transform (x, y) -> (x, target) whose random draws follow (seed, epoch, batch), not the global RNG."""

    def __init__(self, transform, seed):
        self.transform, self.seed = transform, seed
        self.epoch, self.batch = 0, 0

    def set_epoch(self, epoch):
        """Start an epoch: its batches draw from seeds of (seed, epoch, batch number)."""
        self.epoch, self.batch = epoch, 0

    def __call__(self, x, y):
        if self.transform is None:
            return x, y
        # torchvision's MixUp/CutMix draw from torch's global CPU generator: give it this batch's seed for the call
        # and put the global state back, so nothing else in the run sees a difference
        seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_033 + self.batch) % 2**63
        self.batch += 1
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.transform(x, y)
