"""Train CIFAR-10 (or --dataset cifar100) from .rec files with MXNet's example interface; fetches and packs the
dataset when missing."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import flags, options  # noqa: E402 - flags only: --help answers before torch loads
from common.util import main_guard  # noqa: E402
from data import cifar10, cifar100  # noqa: E402

NUM_CLASSES = {"cifar10": len(cifar10.CLASSES), "cifar100": cifar100.NUM_CLASSES}  # by --dataset


def build_parser():
    """MXNet's train_cifar10 flags and defaults."""
    parser = argparse.ArgumentParser(description="train cifar10", formatter_class=options.HelpFormatter)
    parser.add_argument(
        "--dataset",
        choices=tuple(NUM_CLASSES),
        default="cifar10",
        help="cifar10 or cifar100 (its 100 fine labels; --num-classes follows it)",
    )
    parser.add_argument("--data-dir", type=str, help="where the .rec files are made (default: data/DATASET)")
    parser.add_argument("--cifar10-url", type=str, default=cifar10.URL, help="the CIFAR-10 python archive")
    parser.add_argument("--cifar100-url", type=str, default=cifar100.URL, help="the CIFAR-100 python archive")
    options.add_fit_args(parser)
    options.add_data_args(parser)
    aug = options.add_data_aug_args(parser)
    options.set_data_aug_level(aug, 2)
    parser.set_defaults(
        network="resnet",
        num_layers=110,
        num_classes=None,  # not given: the data's count (data.resolve_num_classes); the dataset's for --benchmark
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
    classes = None
    if not args.benchmark and not (args.data_train and args.data_val):
        data_dir = args.data_dir or os.path.join("data", args.dataset)
        if args.dataset == "cifar10":
            train_rec, val_rec = cifar10.prepare(data_dir, args.cifar10_url)
            if not args.data_train:  # CIFAR-10's own training data: its class names go into PREFIX-symbol.json
                classes = list(cifar10.CLASSES)
        else:  # CIFAR-100's class names are in cifar100_train.classes beside the .rec, where the source reads them
            train_rec, val_rec = cifar100.prepare(data_dir, args.cifar100_url)
        args.data_train, args.data_val = args.data_train or train_rec, args.data_val or val_rec
    from common import data, dist, fit, networks  # after the data: torch loads only for a run

    workers = dist.local_workers(args)
    if workers > 1:  # several devices here: this process starts one worker per device and waits for them
        sys.exit(dist.spawn_local(workers))
    data.resolve_num_classes(args, NUM_CLASSES[args.dataset])  # before the network: it has that many outputs
    defaults = options.defaults(build_parser())
    fit.fit(args, networks.get_network(args), data.get_rec_iter, classes=classes, defaults=defaults)


if __name__ == "__main__":
    main()
