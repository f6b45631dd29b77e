#!/usr/bin/env python3
"""Packing speed of tools/im2rec.py against MXNet 1.9.1's own im2rec, same flags, same cores, back to back.

Builds a folder of ImageNet-like photos (about 500x375 JPEG, quality 90) from scikit-image's bundled pictures,
makes the .lst with each tool's --list, then times each tool's pack step (best of --repeat runs, alternating).
Each command's start-up (interpreter and imports, measured separately as the best of three) is subtracted, so
the figure is the steady packing rate: images / (pack wall time - start-up time). The CPU time per image (all
processes of the command, start-up subtracted) is printed too: it moves much less than wall time when other
work shares the cores.

    python benchmarks/bench_im2rec.py [--images 400] [--num-thread 2] [--resize 256] [--quality 95]

Measured on a shared 2-core machine (see the project's report for the figures and date).
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import skimage.data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def make_photos(folder, count, seed=0):
    """Write `count` distinct 500x375 (or 375x500) JPEGs in 4 class folders: random crops, flips and scales."""
    rng = np.random.default_rng(seed)
    sources = [getattr(skimage.data, name)()[:, :, :3] for name in PHOTOS]
    for i in range(count):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        tw, th = (375, 500) if rng.random() < 0.25 else (500, 375)
        cw = int(min(w, h * tw / th) * rng.uniform(0.5, 1.0))
        ch = int(cw * th / tw)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = src[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        bgr = cv2.resize(np.ascontiguousarray(crop[:, :, ::-1]), (tw, th), interpolation=cv2.INTER_AREA)
        sub = os.path.join(folder, f"class{i % 4}")
        os.makedirs(sub, exist_ok=True)
        cv2.imwrite(os.path.join(sub, f"img{i:04d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])


def peer_command():
    """[python, path of MXNet's im2rec.py] from the MXNet side venv, or None when it is missing."""
    base = os.environ.get("MXNET_PEER") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "mxnet-peer")
    python = os.path.join(base, "bin", "python")
    if not os.path.exists(python):
        return None
    out = subprocess.run(
        [python, "-c", "import mxnet, os; print(os.path.dirname(mxnet.__file__))"], capture_output=True, text=True
    )
    script = os.path.join(out.stdout.strip(), "tools", "im2rec.py")
    return [python, script] if out.returncode == 0 and os.path.exists(script) else None


def children_cpu():
    """User + system CPU seconds of all waited-for child processes (their own children included) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd, cwd=None):
    """Run cmd (output discarded, failure raised) and return (wall seconds, CPU seconds of its processes)."""
    cpu, start = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start, children_cpu() - cpu


class Tool:
    """One im2rec implementation: its command, its own work folder, and its start-up cost."""

    def __init__(self, name, cmd, import_line, work):
        self.name, self.cmd, self.work = name, cmd, work
        self.prefix = os.path.join(work, "photos")
        os.makedirs(work)
        runs = [timed([cmd[0], "-c", import_line], cwd=REPO) for _ in range(3)]
        self.startup, self.startup_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        self.best = self.best_cpu = float("inf")

    def make_list(self, root):
        """Write the .lst with the tool's own --list."""
        timed([*self.cmd, "--list", "--recursive", self.prefix, root], cwd=REPO)

    def pack(self, root, flags):
        """Pack once; keep the best wall time."""
        for ext in (".rec", ".idx"):
            if os.path.exists(self.prefix + ext):
                os.unlink(self.prefix + ext)
        wall, cpu = timed([*self.cmd, *flags, self.prefix, root], cwd=REPO)
        self.best, self.best_cpu = min(self.best, wall), min(self.best_cpu, cpu)
        if not os.path.exists(self.prefix + ".rec"):
            raise RuntimeError(f"{self.name} wrote no {self.prefix}.rec")

    def rate(self, count):
        """Images per second of the best run, start-up subtracted."""
        return count / max(self.best - self.startup, 1e-6)

    def cpu_ms(self, count):
        """CPU milliseconds per image of the least costly run, start-up subtracted."""
        return 1000 * (self.best_cpu - self.startup_cpu) / count


def main():
    """Build the photos, run both tools back to back, print images/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--num-thread", type=int, default=2)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; the best counts")
    args = parser.parse_args()
    flags = ["--resize", str(args.resize), "--quality", str(args.quality), "--num-thread", str(args.num_thread)]
    tmp = tempfile.mkdtemp(prefix="bench_im2rec.")
    try:
        root = os.path.join(tmp, "images")
        make_photos(root, args.images)
        tools = [Tool("suite", [sys.executable, "tools/im2rec.py"], "import tools.im2rec", os.path.join(tmp, "s"))]
        peer = peer_command()
        if peer:
            tools.append(Tool("mxnet", peer, "import mxnet, cv2", os.path.join(tmp, "m")))
        for tool in tools:
            tool.make_list(root)
        for _ in range(args.repeat):
            for tool in tools:
                tool.pack(root, flags)
        print(f"{args.images} photos ~500x375, flags: {' '.join(flags)}, {os.cpu_count()} CPUs")
        for tool in tools:
            print(
                f"{tool.name:6s} {tool.rate(args.images):8.1f} images/s  {tool.cpu_ms(args.images):6.2f} CPU ms/image  "
                f"(best pack {tool.best:.2f} s, start-up {tool.startup:.2f} s subtracted)"
            )
        if peer:
            suite, mxnet = tools
            print(
                f"ratio suite/mxnet: {suite.rate(args.images) / mxnet.rate(args.images):.2f}x images/s, "
                f"{mxnet.cpu_ms(args.images) / suite.cpu_ms(args.images):.2f}x less CPU per image"
            )
        else:
            print("MXNet peer not found (build it with ../shared/peers/mxnet-venv.sh or set MXNET_PEER); suite only")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
