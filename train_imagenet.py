"""Train ImageNet (or any class-folder / .rec dataset) with MXNet's example interface and defaults."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import flags, options  # noqa: E402 - flags only: --help answers before torch loads
from common.util import main_guard  # noqa: E402


def build_parser():
    """MXNet's train_imagenet flags and defaults (augmentation level 3)."""
    parser = argparse.ArgumentParser(description="train imagenet-1k", formatter_class=options.HelpFormatter)
    options.add_fit_args(parser)
    options.add_data_args(parser)
    aug = options.add_data_aug_args(parser)
    options.set_data_aug_level(aug, 3)
    parser.set_defaults(
        network="resnet",
        num_layers=50,
        num_classes=None,  # not given: the data's count (data.resolve_num_classes); 1000 for --benchmark
        num_examples=1281167,
        image_shape="3,224,224",
        min_random_scale=1,  # for images whose short side is k, 256/k (e.g. 0.533 for 480)
        num_epochs=80,
        lr_step_epochs="30,60",
        dtype="float32",
    )
    return parser


def parse_args(argv=None):
    """The parsed command line."""
    parser = build_parser()
    return flags.at_most(parser, options.parse_args(parser, argv), "top_k", "num_classes")


@main_guard
def main(argv=None):
    """Build the network and train it on --data-train / --data-val (or synthetic data with --benchmark 1)."""
    args = parse_args(argv)
    from common import data, dist, fit, networks  # after parsing: torch loads only for a run

    workers = dist.local_workers(args)
    if workers > 1:  # several devices here: this process starts one worker per device and waits for them
        sys.exit(dist.spawn_local(workers))
    data.resolve_num_classes(args, 1000)  # before the network: its classifier has that many outputs
    fit.fit(args, networks.get_network(args), data.get_rec_iter, defaults=options.defaults(build_parser()))


if __name__ == "__main__":
    main()
