"""Cost of today's step recipes: a training step plain, with mixup + cutmix, and with SAM, on the same cores.

Each row runs train_imagenet.py --benchmark 1 (synthetic data, as benchmarks/bench_train.py, on its CPU rows) three
ways, alternated round by round so a slow spell of the machine hits all three; the best of each counts. Prints the
step time of each and the ratios to the plain step. Targets: mixup + cutmix under 1.05x, SAM at most 2.1x.
  python benchmarks/bench_recipes_step.py [--rows resnet-20,lenet,resnet-50] [--rounds 3] [--max-isa avx2]
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import ISAS, isa_env, machine  # noqa: E402
from benchmarks.bench_train import ROWS, run_suite  # noqa: E402

RECIPES = {  # name: extra flags
    "plain": [],
    "mix": ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0"],  # one of the two per batch, as torchvision's recipe
    "sam": ["--sam-rho", "0.05"],
}


def main():
    """Run the selected rows and print each recipe's step time and its ratio to the plain step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ", ".join(ROWS))
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of each recipe; the best counts")
    parser.add_argument("--max-isa", default="native", help="cap at an instruction set: " + ", ".join(ISAS))
    args = parser.parse_args()
    env = isa_env(args.max_isa)
    print(f"CPU: {machine(args.max_isa)}")
    print(f"{'row':<10} {'plain ms':>9} {'mix ms':>9} {'sam ms':>9} {'mix/plain':>10} {'sam/plain':>10}")
    for name in args.rows.split(","):
        net, layers, shape, batch, nbatch, warm = ROWS[name]
        best = dict.fromkeys(RECIPES, 0.0)  # samples/sec
        for _ in range(args.rounds):
            for recipe, extra in RECIPES.items():
                speed = run_suite(env, net, layers, shape, batch, nbatch, warm, extra)
                best[recipe] = max(best[recipe], speed)
        ms = {recipe: 1000 * batch / speed for recipe, speed in best.items()}  # one step of `batch` samples
        print(
            f"{name:<10} {ms['plain']:9.1f} {ms['mix']:9.1f} {ms['sam']:9.1f} "
            f"{ms['mix'] / ms['plain']:10.3f} {ms['sam'] / ms['plain']:10.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
