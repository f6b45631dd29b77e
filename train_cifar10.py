"""Train CIFAR-10 from .rec files with MXNet's example interface; fetches and packs the dataset when missing."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import flags, options  # noqa: E402 - flags only: --help answers before torch loads
from common.util import main_guard  # noqa: E402
from data import cifar10  # noqa: E402


def build_parser():
    """MXNet's train_cifar10 flags and defaults."""
    parser = argparse.ArgumentParser(description="train cifar10", formatter_class=options.HelpFormatter)
    parser.add_argument("--data-dir", type=str, default="data/cifar10", help="where the .rec files are made")
    parser.add_argument("--cifar10-url", type=str, default=cifar10.URL, help="the CIFAR-10 python archive")
    options.add_fit_args(parser)
    options.add_data_args(parser)
    aug = options.add_data_aug_args(parser)
    options.set_data_aug_level(aug, 2)
    parser.set_defaults(
        network="resnet",
        num_layers=110,
        num_classes=None,  # not given: the data's count (data.resolve_num_classes); 10 for --benchmark
        num_examples=50000,
        image_shape="3,28,28",
        pad_size=4,
        batch_size=128,
        num_epochs=300,
        lr=0.05,
        lr_step_epochs="200,250",
    )
    return parser


def parse_args(argv=None):
    """The parsed command line."""
    parser = build_parser()
    return flags.at_most(parser, options.parse_args(parser, argv), "top_k", "num_classes")


@main_guard
def main(argv=None):
    """Make the .rec files if they are missing, build the network, train."""
    args = parse_args(argv)
    from common import data, dist, fit, networks  # after parsing: torch loads only for a run

    classes = None
    if not args.benchmark and not (args.data_train and args.data_val):
        train_rec, val_rec = cifar10.prepare(args.data_dir, args.cifar10_url)
        if not args.data_train:  # CIFAR-10's own training data: its class names go into PREFIX-symbol.json
            classes = list(cifar10.CLASSES)
        args.data_train, args.data_val = args.data_train or train_rec, args.data_val or val_rec
    workers = dist.local_workers(args)
    if workers > 1:  # several devices here: this process starts one worker per device and waits for them
        sys.exit(dist.spawn_local(workers))
    data.resolve_num_classes(args, 10)  # before the network: its classifier has that many outputs
    defaults = options.defaults(build_parser())
    fit.fit(args, networks.get_network(args), data.get_rec_iter, classes=classes, defaults=defaults)


if __name__ == "__main__":
    main()
