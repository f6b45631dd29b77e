#!/usr/bin/env python3
"""Packing speed of tools/im2rec.py against MXNet 1.9.1's own im2rec, same flags, same cores, back to back.

Builds a folder of ImageNet-like photos (about 500x375 JPEG, quality 90) from scikit-image's bundled pictures,
makes the .lst with each tool's --list, then times each tool's pack step (best of --repeat runs, alternating).
The packing time of a run starts when the tool creates its .rec (or the temporary file for it) and ends when the
command exits, so start-up and imports (MXNet's take seconds) are left out: images/s = images / packing time.
The CPU time per image (all processes of the command, a bare start-up's CPU subtracted) is printed too: it moves
much less than wall time when other work shares the cores.

    python benchmarks/bench_im2rec.py [--images 800] [--num-thread 2] [--resize 256] [--quality 95]

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


def timed(cmd, watch=None):
    """Run cmd from the repo root (failure raised); return (wall s, CPU s of its processes, packing s).

    Packing time runs from the moment a `.rec` (or its temporary file) appears in the folder `watch` to the exit,
    so interpreter start-up and imports, which differ a lot between the two tools, are not counted.
    """
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a chatty tool cannot block on a full pipe
        cpu, start = children_cpu(), time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, text=True)
        first = None
        while proc.poll() is None:
            if watch and first is None and any(".rec" in name for name in os.listdir(watch)):
                first = time.perf_counter()
            time.sleep(0.002)
        end = time.perf_counter()
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()[-2000:]}")
    return end - start, children_cpu() - cpu, end - (first or start)


class Tool:
    """One im2rec implementation: its command, its own work folder, its best packing time and CPU cost."""

    def __init__(self, name, cmd, import_line, work):
        self.name, self.cmd, self.work = name, cmd, work
        self.prefix = os.path.join(work, "photos")
        os.makedirs(work)
        self.startup_cpu = min(timed([cmd[0], "-c", import_line])[1] for _ in range(3))
        self.best = self.best_cpu = float("inf")

    def make_list(self, root):
        """Write the .lst with the tool's own --list."""
        timed([*self.cmd, "--list", "--recursive", self.prefix, root])

    def pack(self, root, flags):
        """Pack once; keep the best packing time and the lowest CPU time."""
        for ext in (".rec", ".idx"):
            if os.path.exists(self.prefix + ext):
                os.unlink(self.prefix + ext)
        _, cpu, packing = timed([*self.cmd, *flags, self.prefix, root], watch=self.work)
        self.best, self.best_cpu = min(self.best, packing), min(self.best_cpu, cpu)
        if not os.path.exists(self.prefix + ".rec"):
            raise RuntimeError(f"{self.name} wrote no {self.prefix}.rec")

    def rate(self, count):
        """Images per second of the best run (packing time only)."""
        return count / self.best

    def cpu_ms(self, count):
        """CPU milliseconds per image of the least costly run, the CPU of a bare start-up subtracted."""
        return 1000 * (self.best_cpu - self.startup_cpu) / count


def main():
    """Build the photos, run both tools back to back, print images/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800, help="photos to build (more: less start-up noise)")
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
                f"(best packing time {tool.best:.2f} s)"
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
