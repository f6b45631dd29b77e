"""Input-pipeline speed: `train_imagenet.py --test-io 1` against MXNet 1.9.1's ImageRecordIter, same .rec, same cores.

Both decode ImageNet-like JPEGs (about 500x375, packed with --resize 256 --quality 95) into 224x224 random-resized
crops with random mirror, with 2 decoding threads, and the figure is samples/s over whole epochs after a warm-up.
  python benchmarks/bench_io.py [--images 1000] [--epochs 3] [--threads 2] [--work DIR]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.photos import make_photos  # noqa: E402

PEER = os.path.join(os.environ.get("MXNET_PEER") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "mxnet-peer"))
PEER_PY = os.path.join(PEER, "bin", "python")

MXNET_SCRIPT = """
import sys, time, mxnet as mx
rec, epochs, threads, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
it = mx.io.ImageRecordIter(path_imgrec=rec, data_shape=(3, 224, 224), batch_size=bs, shuffle=True,
    random_resized_crop=True, rand_mirror=True, min_random_area=0.08, max_random_area=1.0,
    min_aspect_ratio=3.0 / 4.0, max_aspect_ratio=4.0 / 3.0, preprocess_threads=threads,
    mean_r=123.68, mean_g=116.779, mean_b=103.939, std_r=58.393, std_g=57.12, std_b=57.375)
speeds = []
for epoch in range(epochs + 1):
    it.reset()
    n, tic = 0, time.time()
    for batch in it:
        batch.data[0].wait_to_read()
        n += bs - batch.pad
    if epoch:  # epoch 0 warms up
        speeds.append(n / (time.time() - tic))
print("SPEED", max(speeds))
"""


def pack(work, images):
    """Photos -> .lst -> .rec/.idx, packed by MXNet's im2rec when the peer is here, else by ours."""
    prefix = os.path.join(work, "imagenet_like")
    if os.path.exists(prefix + ".rec"):
        return prefix + ".rec"
    root = make_photos(os.path.join(work, "photos"), count=images)
    if os.path.exists(PEER_PY):
        cmd = [PEER_PY, os.path.join(peer_site(), "mxnet", "tools", "im2rec.py")]
    else:
        cmd = [sys.executable, os.path.join(REPO, "tools", "im2rec.py")]
    subprocess.run([*cmd, "--list", "--recursive", prefix, root], check=True, capture_output=True)
    subprocess.run(
        [*cmd, "--resize", "256", "--quality", "95", "--num-thread", "2", prefix, root], check=True, capture_output=True
    )
    return prefix + ".rec"


def peer_site():
    """The peer venv's site-packages."""
    out = subprocess.run(
        [PEER_PY, "-c", "import mxnet, os; print(os.path.dirname(os.path.dirname(mxnet.__file__)))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def suite_speed(rec, epochs, threads, batch, backend):
    """Best whole-epoch samples/s of `train_imagenet.py --test-io 1` (epoch 0 warms up)."""
    cmd = [
        sys.executable,
        os.path.join(REPO, "train_imagenet.py"),
        "--test-io",
        "1",
        "--data-train",
        rec,
        "--image-shape",
        "3,224,224",
        "--random-resized-crop",
        "1",
        "--random-mirror",
        "1",
        "--min-random-area",
        "0.08",
        "--max-random-aspect-ratio",
        str(4 / 3),
        "--min-random-aspect-ratio",
        str(3 / 4),
        "--data-nthreads",
        str(threads),
        "--batch-size",
        str(batch),
        "--num-epochs",
        str(epochs + 1),
        "--data-backend",
        backend,
        "--disp-batches",
        "1000000",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    speeds = [float(s) for s in re.findall(r"test-io: .*\(([\d.]+) samples/sec\)", out.stdout + out.stderr)]
    if out.returncode or not speeds:
        raise SystemExit(f"suite run failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return max(speeds[1:] or speeds)


def mxnet_speed(rec, epochs, threads, batch):
    """Best whole-epoch samples/s of MXNet's ImageRecordIter, or None without the peer."""
    if not os.path.exists(PEER_PY):
        return None
    out = subprocess.run(
        [PEER_PY, "-c", MXNET_SCRIPT, rec, str(epochs), str(threads), str(batch)], capture_output=True, text=True
    )
    found = re.search(r"SPEED ([\d.]+)", out.stdout)
    if not found:
        raise SystemExit(f"MXNet run failed:\n{out.stdout}\n{out.stderr}")
    return float(found.group(1))


def main():
    """Print samples/s of the suite (each backend) and of MXNet, and the ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backends", default="dali,python")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench_io"))
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rec = pack(args.work, args.images)
    print(
        f"data: {rec} ({args.images} JPEGs, short side 256), 224 random-resized-crop + mirror, "
        f"{args.threads} threads, batch {args.batch_size}, cores: {os.cpu_count()}"
    )
    peer = mxnet_speed(rec, args.epochs, args.threads, args.batch_size)
    print(f"MXNet 1.9.1 ImageRecordIter: {peer:.1f} samples/s" if peer else "MXNet peer not found: no ratio")
    for backend in args.backends.split(","):
        ours = suite_speed(rec, args.epochs, args.threads, args.batch_size, backend)
        ratio = f"   ratio {ours / peer:.2f}x" if peer else ""
        print(f"suite --test-io ({backend}): {ours:.1f} samples/s{ratio}")


if __name__ == "__main__":
    main()
