"""Input-pipeline cost of today's recipes: `train_imagenet.py --test-io 1` with plain random-resized-crop 224 (+ mirror)
against the same with `--auto-augment ta_wide --random-erase 0.25`, same .rec, same threads, same cores.

The two settings alternate, one process each, --rounds times, and each keeps its best figure (the machine may be
shared): samples/s of wall time, the target's figure, and samples per CPU-second over all the process's threads,
which holds when other work shares the cores. Also printed: the per-stage lines of the last recipe run, and what
one TrivialAugment-wide draw costs on a 224x224 image with torchvision's tensor kernels and with the suite's
(common/autoaug.py), the reason for the latter.
  python benchmarks/bench_recipes_io.py [--images 2000] [--rounds 3] [--threads 2] [--work DIR]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.bench_io import pack  # noqa: E402

PLAIN = [
    *("--random-resized-crop", "1", "--random-mirror", "1", "--min-random-area", "0.08"),
    *("--max-random-aspect-ratio", str(4 / 3), "--min-random-aspect-ratio", str(3 / 4)),
]
RECIPE = ["--auto-augment", "ta_wide", "--random-erase", "0.25"]


def speed(rec, flags, threads, batch):
    """(samples/s, samples per CPU-second, stage lines) of one `train_imagenet.py --test-io 1` epoch."""
    cmd = [
        *(sys.executable, os.path.join(REPO, "train_imagenet.py"), "--test-io", "1", "--data-train", rec),
        *("--image-shape", "3,224,224", "--data-nthreads", str(threads), "--batch-size", str(batch)),
        *("--data-backend", "python", "--disp-batches", "1000000", "--gpus", "", *PLAIN, *flags),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    text = out.stdout + out.stderr
    found = re.search(r"test-io: \d+ samples in .*\(([\d.]+) samples/sec\)", text)
    cpu = re.search(r"test-io: ([\d.]+) samples per CPU-second", text)
    if out.returncode or not found or not cpu:
        raise SystemExit(f"suite run failed ({out.returncode}):\n{text}")
    stages = [ln.split("Node[0] ")[-1] for ln in text.splitlines() if "test-io: stage" in ln]
    return float(found.group(1)), float(cpu.group(1)), stages


def kernel_costs(draws=300, seed=0):
    """CPU ms per TrivialAugment-wide draw on one 224x224 photo: (torchvision's tensor kernels, the suite's)."""
    import cv2
    import numpy as np
    import skimage.data
    import torch
    from torchvision.transforms import v2

    from common import autoaug

    torch.set_num_threads(1)  # one decode thread's share
    img = np.ascontiguousarray(cv2.resize(skimage.data.astronaut(), (224, 224)))
    tensor = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    ta = v2.TrivialAugmentWide(interpolation=v2.InterpolationMode.BILINEAR)
    recipe = autoaug.Recipe("ta_wide", 9, 3, 0.0, [0, 0, 0], (3, 224, 224))
    rng = np.random.default_rng(seed)
    picks = [(recipe.space[rng.integers(len(recipe.space))], int(rng.integers(31)), rng.random()) for _ in range(draws)]
    costs = []
    for kernel in ("torchvision", "suite"):
        tic = time.process_time()  # CPU time: what holds on a shared machine
        for (name, mags, signed), index, sign in picks:
            m = 0.0 if mags is None else mags[index] * (-1 if signed and sign <= 0.5 else 1)
            if kernel == "torchvision":
                ta._apply_image_or_video_transform(tensor, name, m, interpolation=ta.interpolation, fill=ta._fill)
            else:
                autoaug.KERNELS[name](img, m)
        costs.append(1000 * (time.process_time() - tic) / draws)
    return costs


def main():
    """Print both throughputs and their ratio, the recipe's stage lines, and the kernels' costs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench_recipes_io"))
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rec = pack(args.work, args.images)
    print(
        f"data: {rec} ({args.images} JPEGs, short side 256), 224 random-resized-crop + mirror, "
        f"{args.threads} threads, batch {args.batch_size}, cores: {os.cpu_count()}, best of {args.rounds} rounds"
    )
    best = {"plain": [0.0, 0.0], "recipe": [0.0, 0.0]}
    stages = []
    for _ in range(args.rounds):
        for name, flags in (("plain", []), ("recipe", RECIPE)):
            wall, cpu, stages = speed(rec, flags, args.threads, args.batch_size)
            best[name] = [max(best[name][0], wall), max(best[name][1], cpu)]
    (plain, plain_cpu), (recipe, recipe_cpu) = best["plain"], best["recipe"]
    print(f"plain random-resized-crop:     {plain:8.1f} samples/s   {plain_cpu:8.1f} samples per CPU-second")
    print(f"+ {' '.join(RECIPE)}: {recipe:8.1f} samples/s   {recipe_cpu:8.1f} samples per CPU-second")
    print(f"ratio {recipe / plain:.2f} (wall time; target >= 0.75), {recipe_cpu / plain_cpu:.2f} (CPU time)")
    for line in stages:
        print("  " + line)
    tv, ours = kernel_costs()
    print(
        f"one TrivialAugment-wide draw, 224x224, CPU ms: torchvision's tensor kernels {tv:.3f}, the suite's {ours:.3f}"
    )


if __name__ == "__main__":
    main()
