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
import csv
import io
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common.util import UserError, atomic_write, choice_error, main_guard  # noqa: E402

REPO = os.path.dirname(os.path.abspath(__file__))
MODES = ("native",)  # MXNet's gluon modes (symbolic, imperative, hybrid) have no counterpart: one code path
SPEED_RE = re.compile(r"Epoch\[\d+\] Batch \[\d+-\d+\]\tSpeed: ([0-9.]+) samples/sec")
SIMULATED = (8, 16, 32, 64, 128, 256)


def parse_network(text):
    """'mode:network:batch:size' (or MXNet's older 'network:batch:size') -> dict; errors name the field."""
    import symbols

    parts = text.split(":")
    if len(parts) == 3:
        parts = ["native", *parts]
    if len(parts) != 4:
        raise UserError(
            f"--networks {text!r}: expected mode:network:batch_size:image_size, e.g. native:resnet-50:32:224"
        )
    mode, name, batch, size = parts
    if mode not in MODES:
        raise choice_error("mode in --networks", mode, MODES)
    if not (batch.isdigit() and size.isdigit() and int(batch) > 0 and int(size) > 0):
        raise UserError(f"--networks {text!r}: batch size and image size must be positive integers")
    known = symbols.list_networks()
    base, _, layers = name.rpartition("-")
    if name in known:
        network, num_layers = name, None
    elif base in known and layers.isdigit():
        network, num_layers = base, int(layers)
    else:
        raise choice_error("network in --networks", name, known)
    return {"name": name, "network": network, "num_layers": num_layers, "batch": int(batch), "size": int(size)}


def series(most):
    """1, 2, 4, ... up to most, with most itself at the end."""
    out = [1]
    while out[-1] * 2 <= most:
        out.append(out[-1] * 2)
    return out + ([most] if out[-1] != most else [])


def train_command(args, net, devices, kv_store):
    """The train_imagenet.py command line of one run with `devices` devices per host."""
    import torch

    cmd = [sys.executable, os.path.join(REPO, "train_imagenet.py"), "--network", net["network"]]
    if net["num_layers"] is not None:
        cmd += ["--num-layers", str(net["num_layers"])]
    host_batch = net["batch"] * devices  # MXNet's --batch-size is per host, split over its devices
    cmd += ["--batch-size", str(host_batch), "--image-shape", f"3,{net['size']},{net['size']}"]
    cmd += ["--num-epochs", "1", "--benchmark", "1", "--kv-store", kv_store, "--disp-batches", str(args.disp)]
    cmd += ["--num-examples", str(host_batch * args.batches), "--dtype", args.dtype]
    cmd += ["--lr", "0.01", "--rgb-std", "58.393,57.12,57.375"]  # random pixels: keep small nets finite
    if torch.cuda.is_available():
        return cmd + ["--gpus", ",".join(map(str, range(devices)))]
    return cmd + ["--gpus", "", "--num-workers", str(devices)]


def host_file(args, hosts, path):
    """The first `hosts` lines of --worker_file, each with slots=gpu_count unless it sets its own."""
    lines = []
    with open(args.worker_file) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if line:
                lines.append(line if "slots=" in line else f"{line} slots={args.gpu_count}")
    if len(lines) < hosts:
        raise UserError(f"--worker_file {args.worker_file} names {len(lines)} hosts; --worker_count asks for {hosts}")
    atomic_write(path, "\n".join(lines[:hosts]) + "\n", mode="w")
    return path


def run(args, cmd, log_path):
    """Run one benchmark command, its output to log_path; return samples/s of one host (median after warm-up)."""
    print("running: " + shlex.join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        proc, out = None, (err.stdout or b"").decode(errors="replace") + (err.stderr or b"").decode(errors="replace")
    atomic_write(log_path, out, mode="w")
    speeds = [float(s) for s in SPEED_RE.findall(out)]
    if proc is None or proc.returncode or not speeds:
        why = "timed out" if proc is None else f"exit status {proc.returncode}"
        last = (out.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"benchmark run failed ({why}); see {log_path}; its last line: {last}")
    return statistics.median(speeds[1:] or speeds)


def simulate(args, net, base):
    """Predicted rows for 8..256 devices from the 1-device step time and the gradient size (ring all-reduce)."""
    import symbols

    kwargs = {"num_layers": net["num_layers"], "image_shape": f"3,{net['size']},{net['size']}"}
    model = symbols.get_symbol(net["network"], num_classes=1000, **kwargs)
    grad_bytes = 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    step = net["batch"] / base
    bandwidth, latency = args.link_gbps * 1e9 / 8, args.latency_us * 1e-6
    print(
        f"simulate {net['name']}: step time {step * 1e3:.2f} ms at batch {net['batch']} (measured, 1 device), "
        f"gradient {grad_bytes / 2**20:.1f} MiB (float32), ring all-reduce over a {args.link_gbps:g} Gbit/s link, "
        f"{args.latency_us:g} us per hop, {args.overlap:.0%} hidden behind backward, no other slowdown"
    )
    rows = []
    for n in SIMULATED:
        comm = 2 * (n - 1) / n * grad_bytes / bandwidth + 2 * (n - 1) * latency
        eff = step / (step + (1 - args.overlap) * comm)
        rows.append({"devices": n, "hosts": "", "samples_per_sec": base * n * eff, "kind": "simulated"})
    return rows


def measure(args, net):
    """Measured rows for one network: devices on this host, then hosts."""
    rows, tag = [], re.sub(r"[^A-Za-z0-9_.-]", "_", net["name"])
    for d in series(args.gpu_count):
        speed = run(args, train_command(args, net, d, "device"), os.path.join(args.output, f"{tag}_{d}_log"))
        rows.append({"devices": d, "hosts": 1, "samples_per_sec": speed, "kind": "measured"})
    for h in series(args.worker_count)[1:]:
        n = h * args.gpu_count
        hosts = host_file(args, h, os.path.join(args.output, f"{tag}_{n}_workers"))
        launch = [sys.executable, os.path.join(REPO, "tools", "launch.py"), "-n", str(h), "-H", hosts]
        launch += ["--env", "OMP_NUM_THREADS"] if "OMP_NUM_THREADS" in os.environ else []
        cmd = launch + shlex.split(args.launch_args) + train_command(args, net, args.gpu_count, "dist_sync_device")
        speed = run(args, cmd, os.path.join(args.output, f"{tag}_{n}_log")) * h
        rows.append({"devices": n, "hosts": h, "samples_per_sec": speed, "kind": "measured"})
    return rows


def finish(rows, net, base):
    """Add the network's columns, speedup and efficiency (against 1 device) to its rows."""
    for r in rows:
        r.update(network=net["name"], batch_per_device=net["batch"], image_size=net["size"])
        r["speedup"] = r["samples_per_sec"] / base
        r["efficiency"] = r["speedup"] / r["devices"]
    return rows


def report(rows, output):
    """Print the table; write benchmark.csv and speedup.png (atomically)."""
    cols = ["network", "batch_per_device", "image_size", "devices", "hosts", "samples_per_sec", "speedup"]
    cols += ["efficiency", "kind"]
    print(f"{'network':<16}{'devices':>8}{'hosts':>6}{'samples/s':>12}{'speedup':>9}{'efficiency':>11}  kind")
    for r in rows:
        print(
            f"{r['network']:<16}{r['devices']:>8}{r['hosts']!s:>6}{r['samples_per_sec']:>12.1f}"
            f"{r['speedup']:>9.2f}{r['efficiency']:>10.1%}  {r['kind']}"
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in cols} for r in rows)
    atomic_write(os.path.join(output, "benchmark.csv"), buf.getvalue(), mode="w")
    atomic_write(os.path.join(output, "speedup.png"), plot(rows))
    print(f"wrote {os.path.join(output, 'benchmark.csv')} and {os.path.join(output, 'speedup.png')}")


def plot(rows):
    """PNG bytes: speedup against devices for each network, measured and simulated, with the ideal line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    most = max(r["devices"] for r in rows)
    ax.plot([1, most], [1, most], "k--", label="ideal")
    for i, name in enumerate(dict.fromkeys(r["network"] for r in rows)):
        for kind, style in (("measured", "o-"), ("simulated", "s:")):
            pts = [(r["devices"], r["speedup"]) for r in rows if r["network"] == name and r["kind"] == kind]
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i}", label=f"{name} ({kind})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("devices")
    ax.set_ylabel("speedup over 1 device")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def parse_args(argv):
    """MXNet's benchmark.py flags, plus the run length, the output folder and the simulation's assumptions."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--networks", nargs="+", default=["native:resnet-50:32:224"], help="mode:network:batch:size")
    p.add_argument("--worker_file", help="hosts file for tools/launch.py (needed when --worker_count > 1)")
    p.add_argument("--worker_count", type=int, default=1, help="hosts to scale to: 1, 2, 4, ... this many")
    p.add_argument("--gpu_count", type=int, default=1, help="devices per host (CPU worker processes without CUDA)")
    p.add_argument("--batches", type=int, default=30, help="batches per run (the first display window is warm-up)")
    p.add_argument("--disp", type=int, default=5, help="batches per Speed line")
    p.add_argument("--dtype", default="float32", help="--dtype of the runs: float32, float16 or bfloat16")
    p.add_argument("--launch-args", default="", help="extra tools/launch.py flags for the host runs, e.g. ssh ones")
    p.add_argument("--output", default="benchmark", help="folder for the CSV, the PNG and the run logs")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed for one run")
    p.add_argument("--simulate", action="store_true", help="also predict efficiency at 8-256 devices")
    p.add_argument("--link-gbps", type=float, default=100.0, help="simulated link bandwidth in Gbit/s")
    p.add_argument("--latency-us", type=float, default=10.0, help="simulated latency per ring hop in microseconds")
    p.add_argument("--overlap", type=float, default=0.0, help="simulated share of all-reduce hidden by backward")
    args = p.parse_args(argv)
    if args.worker_count < 1 or args.gpu_count < 1 or args.batches < 2 or args.disp < 1:
        raise UserError("--worker_count and --gpu_count must be at least 1, --batches at least 2, --disp at least 1")
    if args.worker_count > 1 and not args.worker_file:
        raise UserError(f"--worker_count {args.worker_count} needs --worker_file, the hosts to run on")
    if args.worker_file and not os.path.isfile(args.worker_file):
        raise UserError(f"--worker_file {args.worker_file}: no such file")
    if not 0 <= args.overlap < 1:
        raise UserError(f"--overlap {args.overlap}: a share in [0, 1)")
    return args


@main_guard
def main(argv=None):
    """Measure (and optionally simulate) scaling for every --networks entry; print and write the results."""
    args = parse_args(argv)
    nets = [parse_network(t) for t in args.networks]
    os.makedirs(args.output, exist_ok=True)
    import torch

    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // args.gpu_count))
        print(f"no CUDA: a device is a CPU worker process with {os.environ['OMP_NUM_THREADS']} threads", flush=True)
    args.output = os.path.abspath(args.output)
    rows, start = [], time.time()
    for net in nets:
        measured = measure(args, net)
        base = measured[0]["samples_per_sec"]
        rows += finish(measured + (simulate(args, net, base) if args.simulate else []), net, base)
    print(f"benchmark: {len(rows)} rows in {time.time() - start:.0f} s")
    report(rows, args.output)


if __name__ == "__main__":
    main()
