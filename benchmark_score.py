"""Inference speed over networks and batch sizes on synthetic data, with MXNet's benchmark_score.py lines.

    benchmark_score.py --network resnet-50,mobilenet --batch-size 1,2,4,8,16,32 --num-batches 10

Names are the suite's (resnet-50, vgg-16, inception-v3), MXNet's (resnetv1-50, `all`) or Gluon's model-zoo ones
(resnet50_v1, mobilenet0.5, squeezenet1.1). It logs MXNet's lines (`network: X`, `device: cpu(0)`,
`batch size  N, dtype float32, images/sec: S`) and writes OUTPUT/benchmark_score.csv and a PNG of images/sec
against batch size. Where MXNet ran every network on GPU 0 and the CPU, this runs on the device of --gpus
(the CPU by default), one --dtype per run (float16/bfloat16 under autocast).
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import flags  # noqa: E402
from common.util import main_guard  # noqa: E402


def parse_args(argv):
    """MXNet's benchmark_score.py flags (lists allowed), plus the run length, dtype, device and output folder."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--network",
        "--networks",
        dest="networks",
        default="resnet-50,mobilenet",
        help="comma-separated network names, or all (MXNet's twelve)",
    )
    p.add_argument(
        "--batch-size",
        "--batch-sizes",
        dest="batch_sizes",
        default="1,2,4,8,16,32",  # common.scoring_bench.DEFAULT_BATCHES (loaded after parsing)
        help="comma-separated batch sizes (0: this default)",
    )
    p.add_argument(
        "--num-batches", type=flags.count(), default=10, help="timed batches per batch size (after 5 warm-up)"
    )
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (autocast)")
    p.add_argument("--gpus", default="", help="the GPU to use, e.g. 0; empty means the CPU")
    p.add_argument(
        "--output", default="benchmark_score", type=os.path.abspath, help="folder for benchmark_score.csv and .png"
    )
    return p.parse_args(argv)


@main_guard
def main(argv=None):
    """Measure inference images/sec of every network at every batch size; log, write the CSV and the PNG."""
    args = parse_args(argv)
    from common import dist, scoring_bench  # after parsing: --help answers before torch loads

    logging.basicConfig(level=logging.INFO)  # MXNet's format: INFO:root:network: resnet-50
    names = scoring_bench.parse_networks(args.networks)
    sizes = scoring_bench.parse_batch_sizes(args.batch_sizes)
    rows = scoring_bench.run(names, sizes, args.num_batches, args.dtype, dist.get_device(args.gpus))
    os.makedirs(args.output, exist_ok=True)
    print("wrote {} and {}".format(*scoring_bench.report(rows, args.output)))


if __name__ == "__main__":
    main()
