"""Cost of today's step recipes: a training step plain, with mixup + cutmix, and with SAM, on the same cores.

For each of benchmarks/bench_train.py's CPU rows (network, image shape, batch) the suite's own loop
(common/fit.py train_one_epoch: device transform, mixer, forward, loss, backward, optimizer step) runs one random
batch, as --benchmark 1 feeds it, under three recipes, in one process. The recipes take turns, a block of steps
each, every recipe in every place of the order, so a busy spell of the shared machine hits all three. Each step is
timed alone, by the wall clock and by the process's CPU time (which a process waiting for a core does not
accumulate: on a machine shared with other work, and with --threads 1, the steadier measure of a step's work); the
fastest step of each recipe counts, the median is printed beside it. Prints the step times and the ratios to the
plain step. Targets: mixup + cutmix under 1.05x, SAM at most 2.1x.
  python benchmarks/bench_recipes_step.py [--rows lenet,resnet-20,resnet-50] [--rounds 5] [--steps N] [--threads N]
"""

import argparse
import os
import statistics
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

from benchmarks import machine  # noqa: E402
from benchmarks.bench_train import ROWS  # noqa: E402
from common import fit, networks, options  # noqa: E402

RECIPES = {  # name: extra flags
    "plain": [],
    "mix": ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0"],  # one of the two per batch, as torchvision's recipe
    "sam": ["--sam-rho", "0.05"],
}


class Clock:
    """Stands in for the loop's profiler (called once after every step): the times between calls are the steps."""

    def __init__(self):
        self.marks = []

    def step(self):
        self.marks.append((time.perf_counter(), time.process_time()))


def make_ctx(row, extra):
    """The training context fit() builds for a row's network on the CPU, with the recipe's flags."""
    net, layers, shape, batch = row[:4]
    parser = argparse.ArgumentParser()
    options.add_fit_args(parser)
    options.add_data_args(parser)
    argv = ["--network", net, "--image-shape", shape, "--num-classes", "10", "--batch-size", str(batch)]
    argv += ["--gpus", "", "--benchmark", "1", *(["--num-layers", str(layers)] if layers else []), *extra]
    args = parser.parse_args(argv)
    torch.manual_seed(0)  # every recipe starts from the same weights
    kv = types.SimpleNamespace(rank=0, num_workers=1, local_size=1, share=1, type="local", num_hosts=1)
    ctx = fit._setup(args, kv, torch.device("cpu"), networks.get_network(args), range(1))
    ctx.profile = Clock()
    return ctx


def time_row(row, rounds, steps):
    """{recipe: [(wall seconds, CPU seconds) of each timed step]} for one row."""
    shape, batch = [int(v) for v in row[2].split(",")], row[3]
    x = torch.randint(0, 256, (batch, shape[1], shape[2], shape[0]), dtype=torch.uint8)  # uint8 NHWC, as loaded
    y = torch.randint(0, 10, (batch,))
    ctxs = {recipe: make_ctx(row, extra) for recipe, extra in RECIPES.items()}
    times = {recipe: [] for recipe in RECIPES}
    order = list(RECIPES)
    for r in range(rounds + 1):  # round 0 warms up every recipe
        for recipe in order:
            ctx = ctxs[recipe]
            ctx.profile.marks = []
            fit.train_one_epoch(ctx, r, [(x, y)] * (steps + 1))
            marks = ctx.profile.marks  # the first step of a turn also pays for the turn's start: left out
            if r:
                times[recipe] += [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]
        order = order[1:] + order[:1]  # each recipe in each place of the turn order in turn
    return times


def main():
    """Run the selected rows and print each recipe's step time and its ratio to the plain step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ", ".join(ROWS))
    parser.add_argument("--rounds", type=int, default=5, help="turns of each recipe after a warm-up turn")
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="timed steps of each recipe per turn (default: the row's bench_train batches over the rounds, at least 2)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch's threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {machine()}, torch threads: {torch.get_num_threads()}")
    heads = " ".join(f"{h:>15}" for h in ("plain ms", "mix ms", "sam ms"))
    print(f"{'row':<10} {'batch':>5} {'clock':>5} {heads} {'mix/plain':>9} {'sam/plain':>9}")
    print(f"{'':<22} {'best / median':>15} {'best / median':>15} {'best / median':>15}")
    for name in args.rows.split(","):
        times = time_row(ROWS[name], args.rounds, args.steps or max(2, ROWS[name][4] // args.rounds))
        for clock, i in (("wall", 0), ("cpu", 1)):
            best = {k: 1000 * min(t[i] for t in v) for k, v in times.items()}
            mid = {k: 1000 * statistics.median(t[i] for t in v) for k, v in times.items()}
            cells = " ".join(f"{best[k]:7.1f}/{mid[k]:7.1f}" for k in RECIPES)
            ratios = f"{best['mix'] / best['plain']:9.3f} {best['sam'] / best['plain']:9.3f}"
            print(f"{name:<10} {ROWS[name][3]:>5} {clock:>5} {cells} {ratios}", flush=True)


if __name__ == "__main__":
    main()
