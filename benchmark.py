"""Scaling benchmark on synthetic data, with MXNet's benchmark.py command line.

    benchmark.py --networks native:resnet-50:32:224 [more ...] --gpu_count 4 [--worker_file hosts --worker_count 2]

For each network (mode:network:batch per device:image size) it trains train_imagenet.py with --benchmark 1 on
1, 2, 4, ... gpu_count devices of this host (--kv-store device), then on 2, 4, ... worker_count hosts of
--worker_file with gpu_count devices each (tools/launch.py, --kv-store dist_sync_device). Without CUDA a device
is a CPU worker process (Gloo) with cores / gpu_count threads (OMP_NUM_THREADS), a fixed slice of the host in
every run, so the benchmark runs anywhere. Samples/s is the median of the Speed lines after
the first (warm-up) window, times the number of hosts (a Speed line is one host's figure, as in MXNet).
It prints a table of samples/s, speedup and scaling efficiency (samples/s at n devices / (n x at 1 device)),
and writes OUTPUT/benchmark.csv, OUTPUT/speedup.png and one log per run.

--simulate adds predictions for 8..256 devices: the measured 1-device step time T plus a ring all-reduce of the
gradient (G bytes, float32) over n devices, 2 (n-1)/n G / bandwidth + 2 (n-1) latency, of which --overlap is
hidden behind backward; efficiency = T / (T + exposed all-reduce time). Its assumptions are printed.

Measured (2 CPU cores shared with other jobs, resnet-20 3x32x32, 32 per device, 40 batches, Gloo):
1 process 193 samples/s, 2 processes 354 samples/s: speedup 1.84, scaling efficiency 92%.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import flags, scaling  # noqa: E402
from common.util import UserError, main_guard  # noqa: E402


def parse_args(argv):
    """MXNet's benchmark.py flags, plus the run length, the output folder and the simulation's assumptions."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--networks",
        nargs="+",
        default=["native:resnet-50:32:224"],
        help="mode:network:batch:size; mode native, symbolic, imperative or hybrid (one code path); network the "
        "suite's (resnet-50) or Gluon's model-zoo name (resnet50_v1)",
    )
    p.add_argument("--worker_file", help="hosts file for tools/launch.py (needed when --worker_count > 1)")
    p.add_argument("--worker_count", type=flags.count(), default=1, help="hosts to scale to: 1, 2, 4, ... this many")
    p.add_argument(
        "--gpu_count", type=flags.count(), default=1, help="devices per host (CPU worker processes without CUDA)"
    )
    p.add_argument(
        "--batches", type=flags.count(min=2), default=30, help="batches per run (the first display window is warm-up)"
    )
    p.add_argument("--disp", type=flags.count(), default=5, help="batches per Speed line")
    p.add_argument("--dtype", default="float32", help="--dtype of the runs: float32, float16 or bfloat16")
    p.add_argument("--launch-args", default="", help="extra tools/launch.py flags for the host runs, e.g. ssh ones")
    p.add_argument(
        "--output", default="benchmark", type=os.path.abspath, help="folder for the CSV, the PNG and the run logs"
    )
    p.add_argument("--timeout", type=flags.count(), default=600, help="seconds allowed for one run")
    p.add_argument("--simulate", action="store_true", help="also predict efficiency at 8-256 devices")
    p.add_argument("--link-gbps", type=flags.number(above=0), default=100.0, help="simulated link bandwidth in Gbit/s")
    p.add_argument(
        "--latency-us", type=flags.number(min=0), default=10.0, help="simulated latency per ring hop in microseconds"
    )
    p.add_argument(
        "--overlap",
        type=flags.fraction(below=True),
        default=0.0,
        help="simulated share of all-reduce hidden by backward",
    )
    args = p.parse_args(argv)
    if args.worker_count > 1 and not args.worker_file:
        raise UserError(f"--worker_count {args.worker_count} needs --worker_file, the hosts to run on")
    if args.worker_file and not os.path.isfile(args.worker_file):
        raise UserError(f"--worker_file {args.worker_file}: no such file")
    return args


@main_guard
def main(argv=None):
    """Measure (and optionally simulate) scaling for every --networks entry; print and write the results."""
    args = parse_args(argv)
    nets = scaling.parse_networks(args.networks)
    os.makedirs(args.output, exist_ok=True)
    scaling.share_cpu(args.gpu_count)
    scaling.report(scaling.scale(args, nets), args.output)


if __name__ == "__main__":
    main()
