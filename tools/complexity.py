"""Print a network's size and cost: `params=<millions>M gmacs=<G multiply-accumulates>` for one image.

  python tools/complexity.py --network resnet --num-layers 50 --image-shape 3,224,224

MACs of convolutions, fully connected layers and matrix products, counted by torch.utils.flop_counter's
FlopCounterMode (FLOPs / 2) in eval mode on the meta device (common/complexity.py); the same figures as
torchvision's published "GFLOPS" and as the line training logs at its start.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import symbols  # noqa: E402
from common import flags, options  # noqa: E402
from common.util import main_guard, parse_shape  # noqa: E402


def parse_args(argv):
    """The network and its arguments, as the training scripts take them."""
    p = argparse.ArgumentParser(
        description="parameters and multiply-accumulates of a network", formatter_class=options.HelpFormatter
    )
    p.add_argument("--network", required=True, help="the network: " + ", ".join(symbols.list_networks()))
    p.add_argument("--num-layers", type=flags.count(), help="number of layers, required by resnet etc.")
    p.add_argument("--image-shape", default="3,224,224", help="C,H,W of the input image")
    p.add_argument("--num-classes", type=flags.count(), default=1000, help="the number of classes")
    p.add_argument("--batch-norm", type=int, choices=(0, 1), help="vgg: 1 adds BatchNorm after each convolution")
    p.add_argument("--multiplier", type=flags.number(above=0), help="width of mobilenet, mobilenetv2, shufflenetv2")
    p.add_argument("--num-group", type=flags.count(), help="resnext: groups of the 3x3 bottleneck convolution")
    return p.parse_args(argv)


@main_guard
def main(argv=None):
    """Build --network (without weights where it can) and print its parameters and MACs."""
    args = parse_args(argv)
    shape = parse_shape(args.image_shape)
    from common import complexity  # after parsing: --help answers before torch loads

    arguments = {k: v for k, v in vars(args).items() if k != "network" and v is not None}
    params, macs = complexity.count(complexity.build(args.network, arguments), shape)
    print(complexity.describe(params, macs))
    return params, macs


if __name__ == "__main__":
    main()
