"""Inference speed over networks and batch sizes on synthetic data: the logic of benchmark_score.py.

As MXNet's benchmark_score.py: each network gets uniform(-1, 1) images, 5 warm-up batches, then num_batches timed
forward passes; images/sec = num_batches x batch size / seconds. Here the network is the eager PyTorch one in eval
mode with BatchNorm folded into the convolutions (common.networks.for_inference), channels_last when it is
convolutional, run under torch.inference_mode (and autocast for float16/bfloat16).
"""

import csv
import io
import logging
import os
import time

import torch

from common.figures import pyplot, save_png
from common.networks import for_inference
from common.scaling import build, resolve_name
from common.util import UserError, atomic_write, choice_error

# MXNet 1.x's `--network all`
MXNET_ALL = ("alexnet", "vgg-16", "resnetv1-50", "resnet-50", "resnet-152", "inception-bn", "inception-v3")
MXNET_ALL += ("inception-v4", "inception-resnet-v2", "mobilenet", "densenet121", "squeezenet1.1")
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)
DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
DRY_RUN = 5  # MXNet's warm-up batches
# (channels, size) of the input where not 3 x 224 x 224
IMAGE = {"inception-v3": (3, 299), "inception-v4": (3, 299), "mlp": (1, 28), "lenet": (1, 28)}
COLUMNS = ("network", "device", "dtype", "batch_size", "images_per_sec")


def parse_networks(text):
    """--network: comma-separated names (the suite's or Gluon's model-zoo ones) or MXNet's `all`; checked now."""
    names = list(MXNET_ALL) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--network is empty; give names such as resnet-50,mobilenet (or all)")
    for name in names:
        resolve_name(name, what="network in --network")
    return names


def parse_batch_sizes(text):
    """--batch-size: comma-separated positive integers; MXNet's 0 means the default list."""
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if sizes == [0]:
        return list(DEFAULT_BATCHES)
    if not sizes or min(sizes) < 1:
        raise UserError(f"--batch-size {text!r}: expected positive integers such as 1,2,4,8")
    return sizes


def autocast_dtype(dtype, device):
    """The autocast dtype of --dtype (None for float32); UserError where the device cannot run it."""
    if dtype not in DTYPES:
        raise choice_error("--dtype", dtype, DTYPES)
    if device.type == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bfloat16: {torch.cuda.get_device_name(device)} has no bfloat16; use float16")
    return DTYPES[dtype]


def mx_name(device):
    """The device as MXNet named it: cpu(0), gpu(N)."""
    return f"gpu({device.index or 0})" if device.type == "cuda" else "cpu(0)"


def prepare(name, device):
    """(eval network on device, input shape, memory format) of a --network name."""
    network, arguments = resolve_name(name, what="network in --network")
    channels, size = IMAGE.get(network, (3, 224))
    model = for_inference(build(network, arguments, size, channels=channels))
    conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    fmt = torch.channels_last if conv else torch.preserve_format
    return model.to(device, memory_format=fmt), (channels, size, size), fmt


@torch.inference_mode()
def score(model, device, shape, fmt, batch_size, num_batches, amp):
    """Images/sec of model over num_batches batches of random images, after DRY_RUN warm-up batches."""
    x = torch.empty(batch_size, *shape, device=device).uniform_(-1, 1).to(memory_format=fmt)
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        for i in range(DRY_RUN + num_batches):
            if i == DRY_RUN:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                tic = time.perf_counter()
            model(x)
    if device.type == "cuda":  # the forward passes are queued; wait for the last one
        torch.cuda.synchronize(device)
    return num_batches * batch_size / (time.perf_counter() - tic)


def run(names, batch_sizes, num_batches, dtype, device):
    """Measure every network at every batch size; log MXNet's lines; return the rows."""
    amp, rows = autocast_dtype(dtype, device), []
    for name in names:
        logging.info("network: %s", name)
        model, shape, fmt = prepare(name, device)
        logging.info("device: %s", mx_name(device))
        for b in batch_sizes:
            speed = score(model, device, shape, fmt, b, num_batches, amp)
            logging.info("batch size %2d, dtype %s, images/sec: %f", b, dtype, speed)
            rows.append(dict(network=name, device=mx_name(device), dtype=dtype, batch_size=b, images_per_sec=speed))
    return rows


def report(rows, output):
    """Write OUTPUT/benchmark_score.csv and OUTPUT/benchmark_score.png (atomically); return their paths."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "images_per_sec": f"{r['images_per_sec']:.2f}"} for r in rows)
    csv_path, png_path = os.path.join(output, "benchmark_score.csv"), os.path.join(output, "benchmark_score.png")
    atomic_write(csv_path, buf.getvalue(), mode="w")
    plot(rows, png_path)
    return csv_path, png_path


def plot(rows, path):
    """Images/sec against batch size, one line per network, into a PNG."""
    from matplotlib import ticker

    fig, ax = pyplot().subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["network"] for r in rows):
        pts = [(r["batch_size"], r["images_per_sec"]) for r in rows if r["network"] == name]
        ax.plot(*zip(*pts), "o-", label=name)
    ax.set_xscale("log", base=2)
    sizes = sorted({r["batch_size"] for r in rows})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_yscale("log")  # networks differ by orders of magnitude; ticks at 1, 2, 5 x 10^k written plainly
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_title(f"Inference speed, synthetic data ({rows[0]['dtype']}, {rows[0]['device']})")
    ax.set_xlabel("batch size")
    ax.set_ylabel("images/sec")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    save_png(fig, path)
