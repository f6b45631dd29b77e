"""The scaling benchmark behind benchmark.py: the runs over devices and hosts, the --simulate model, the report.

A run is train_imagenet.py --benchmark 1 in a subprocess (through tools/launch.py for several hosts); its
samples/s is read back from the MXNet-style Speed lines of its output, which is kept as a log beside the report.
"""

import csv
import io
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

import symbols
from common.figures import pyplot, save_png
from common.util import UserError, atomic_write, choice_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MXNet's benchmark.py modes: native (its symbol API) and Gluon's three; all run one eager PyTorch network here.
MODES = ("native", "symbolic", "imperative", "hybrid")
# Gluon model-zoo networks the suite's families lack, built from torchvision's same architecture. Gluon's alexnet
# (64-192-384-256-256 filters, 61.1M parameters) is torchvision's, not MXNet's symbol AlexNet (96-256-..., 50.8M).
TORCHVISION = {"alexnet": "alexnet", "squeezenet1.0": "squeezenet1_0", "squeezenet1.1": "squeezenet1_1"}
SPEED_RE = re.compile(r"Epoch\[\d+\] Batch \[\d+-\d+\]\tSpeed: ([0-9.]+) samples/sec")
SIMULATED = (8, 16, 32, 64, 128, 256)
COLUMNS = ("network", "batch_per_device", "image_size", "devices", "hosts", "samples_per_sec", "speedup")
COLUMNS += ("efficiency", "kind")


def gluon_names():
    """MXNet's Gluon model-zoo names -> (the suite's network, its get_symbol arguments): the same architecture."""
    names = {"inceptionv3": ("inception-v3", {})}
    for n in (18, 34, 50, 101, 152):
        names[f"resnet{n}_v1"] = ("resnet-v1", {"num_layers": n})
        names[f"resnet{n}_v2"] = ("resnet", {"num_layers": n})  # Gluon's v2 is MXNet's pre-activation resnet
    for n in (11, 13, 16, 19):
        names[f"vgg{n}"] = ("vgg", {"num_layers": n})
        names[f"vgg{n}_bn"] = ("vgg", {"num_layers": n, "batch_norm": 1})
    for n in (121, 161, 169, 201):
        names[f"densenet{n}"] = ("densenet", {"num_layers": n})
    for m in ("1.0", "0.75", "0.5", "0.25"):
        names[f"mobilenet{m}"] = ("mobilenet", {"multiplier": float(m)})
        names[f"mobilenetv2_{m}"] = ("mobilenetv2", {"multiplier": float(m)})
    return names | {name: ("torchvision:" + tv, {}) for name, tv in TORCHVISION.items()}


def resolve_name(name, gluon_first=False, what="network in --networks"):
    """A Gluon model-zoo name or the suite's (resnet-50, vgg-16, MXNet's resnetv1-50) -> (network, arguments).

    Only `alexnet` is both; gluon_first picks Gluon's (MXNet's Gluon modes) over the symbol one (native mode)."""
    gluon, known = gluon_names(), symbols.list_networks()
    base, _, layers = name.rpartition("-")
    base = {"resnetv1": "resnet-v1"}.get(base, base)  # the name of MXNet 1.x's benchmark_score.py
    if name in gluon and (gluon_first or name not in known):
        return gluon[name]
    if name in known:
        return name, {}
    if base in known and layers.isdigit():
        return base, {"num_layers": int(layers)}
    raise choice_error(what, name, list(dict.fromkeys(known + list(gluon))))


def build(network, arguments, size, num_classes=1000, channels=3):
    """The network resolve_name named, for images of size x size: a symbols family or torchvision's model."""
    if network.startswith("torchvision:"):
        from torchvision import models

        return models.get_model(network.split(":")[1], num_classes=num_classes)
    return symbols.get_symbol(network, num_classes=num_classes, image_shape=f"{channels},{size},{size}", **arguments)


def parse_network(text):
    """'mode:network:batch:size' (or MXNet's older 'network:batch:size') -> dict; errors name the field."""
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
    network, arguments = resolve_name(name, gluon_first=mode != "native")
    if network.startswith("torchvision:"):
        hint = "; native:alexnet trains MXNet's symbol AlexNet" if name == "alexnet" else ""
        raise UserError(
            f"--networks {text!r}: train_imagenet.py cannot build Gluon's {name} (torchvision's, no symbols family); "
            f"benchmark_score.py measures its inference speed{hint}"
        )
    return {
        "name": name,
        "mode": mode,
        "network": network,
        "arguments": arguments,
        "batch": int(batch),
        "size": int(size),
    }


def parse_networks(texts):
    """Every --networks entry parsed; one line saying MXNet's modes are one code path here."""
    nets = [parse_network(t) for t in texts]
    gluon = [m for m in MODES[1:] if any(n["mode"] == m for n in nets)]
    if gluon:
        print(
            f"mode {', '.join(gluon)}: MXNet's native, symbolic, imperative and hybrid modes all run the same eager "
            "PyTorch network here (no separate symbolic or hybridized graph)"
        )
    return nets


def series(most):
    """1, 2, 4, ... up to most, with most itself at the end."""
    out = [1]
    while out[-1] * 2 <= most:
        out.append(out[-1] * 2)
    return out + ([most] if out[-1] != most else [])


def share_cpu(gpu_count):
    """Without CUDA, give each of the gpu_count worker processes cores / gpu_count threads (unless set already)."""
    import torch

    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // gpu_count))
        print(f"no CUDA: a device is a CPU worker process with {os.environ['OMP_NUM_THREADS']} threads", flush=True)


def train_command(args, net, devices, kv_store):
    """The train_imagenet.py command line of one run with `devices` devices per host."""
    import torch

    cmd = [sys.executable, os.path.join(REPO, "train_imagenet.py"), "--network", net["network"]]
    for key, value in net["arguments"].items():  # num_layers, batch_norm, multiplier: train_imagenet.py's flags
        cmd += ["--" + key.replace("_", "-"), str(value)]
    host_batch = net["batch"] * devices  # MXNet's --batch-size is per host, split over its devices
    cmd += ["--batch-size", str(host_batch), "--image-shape", f"3,{net['size']},{net['size']}"]
    cmd += ["--num-epochs", "1", "--benchmark", "1", "--kv-store", kv_store, "--disp-batches", str(args.disp)]
    cmd += ["--num-examples", str(host_batch * args.batches), "--dtype", args.dtype]
    cmd += ["--lr", "0.01", "--rgb-std", "58.393,57.12,57.375"]  # random pixels: keep small nets finite
    if torch.cuda.is_available():
        return cmd + ["--gpus", ",".join(map(str, range(devices)))]
    return cmd + ["--gpus", "", "--num-workers", str(devices)]


def host_file(args, hosts, path):
    """Write the first `hosts` lines of --worker_file to path, each with slots=gpu_count unless it sets its own."""
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


def run_speed(cmd, log_path, timeout):
    """Run one benchmark command, its output to log_path; return samples/s of one host (median after warm-up)."""
    print("running: " + shlex.join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
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


def measure(args, net):
    """Measured rows for one network: devices on this host, then hosts."""
    rows, tag = [], re.sub(r"[^A-Za-z0-9_.-]", "_", net["name"])
    for d in series(args.gpu_count):
        cmd = train_command(args, net, d, "device")
        speed = run_speed(cmd, os.path.join(args.output, f"{tag}_{d}.log"), args.timeout)
        rows.append({"devices": d, "hosts": 1, "samples_per_sec": speed, "kind": "measured"})
    for h in series(args.worker_count)[1:]:
        n = h * args.gpu_count
        hosts = host_file(args, h, os.path.join(args.output, f"{tag}_{n}_workers"))
        launch = [sys.executable, os.path.join(REPO, "tools", "launch.py"), "-n", str(h), "-H", hosts]
        launch += ["--env", "OMP_NUM_THREADS"] if "OMP_NUM_THREADS" in os.environ else []
        cmd = launch + shlex.split(args.launch_args) + train_command(args, net, args.gpu_count, "dist_sync_device")
        speed = run_speed(cmd, os.path.join(args.output, f"{tag}_{n}.log"), args.timeout) * h
        rows.append({"devices": n, "hosts": h, "samples_per_sec": speed, "kind": "measured"})
    return rows


def simulate(args, net, measured):
    """Predicted rows for 8..256 devices: the 1-device step time plus a ring all-reduce of the gradient, the
    all-reduce cost scaled so the model meets the measured efficiencies (least squares over the measured runs)."""
    model = build(net["network"], net["arguments"], net["size"])
    grad_bytes = 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = measured[0]["samples_per_sec"]
    step = net["batch"] / base
    bandwidth, latency = args.link_gbps * 1e9 / 8, args.latency_us * 1e-6

    def cost(n):  # the link model's time per step not hidden behind backward, seconds
        return (1 - args.overlap) * (2 * (n - 1) / n * grad_bytes / bandwidth + 2 * (n - 1) * latency)

    # measured: extra time per step over the 1-device step, from efficiency e = step / (step + extra)
    points = [(cost(r["devices"]), step * (r["devices"] * base / r["samples_per_sec"] - 1)) for r in measured[1:]]
    scale = sum(c * x for c, x in points) / sum(c * c for c, _ in points) if points else 1.0
    scale = max(scale, 1.0)  # never predict better than the link model itself
    print(
        f"simulate {net['name']}: step time {step * 1e3:.2f} ms at batch {net['batch']} (measured, 1 device), "
        f"gradient {grad_bytes / 2**20:.1f} MiB (float32), ring all-reduce over a {args.link_gbps:g} Gbit/s link, "
        f"{args.latency_us:g} us per hop, {args.overlap:.0%} hidden behind backward; "
        + (
            f"calibrated to {len(points)} measured run(s): the overhead seen is {scale:.3g}x the link model's"
            if points
            else "not calibrated (no run on more than 1 device was measured)"
        )
    )
    rows = []
    for n in SIMULATED:
        eff = step / (step + scale * cost(n))
        rows.append({"devices": n, "hosts": "", "samples_per_sec": base * n * eff, "kind": "simulated"})
    return rows


def finish(rows, net, base):
    """Add the network's columns, speedup and efficiency (against 1 device) to its rows."""
    for r in rows:
        r.update(network=net["name"], batch_per_device=net["batch"], image_size=net["size"])
        r["speedup"] = r["samples_per_sec"] / base
        r["efficiency"] = r["speedup"] / r["devices"]
    return rows


def scale(args, nets):
    """All rows: each network measured (and simulated with --simulate), speedup against its 1-device run."""
    rows, start = [], time.time()
    for net in nets:
        measured = measure(args, net)
        base = measured[0]["samples_per_sec"]
        rows += finish(measured + (simulate(args, net, measured) if args.simulate else []), net, base)
    print(f"benchmark: {len(rows)} rows in {time.time() - start:.0f} s")
    return rows


def report(rows, output):
    """Print the table; write benchmark.csv and speedup.png (atomically) into the output folder."""
    print(f"{'network':<16}{'devices':>8}{'hosts':>6}{'samples/s':>12}{'speedup':>9}{'efficiency':>11}  kind")
    for r in rows:
        print(
            f"{r['network']:<16}{r['devices']:>8}{r['hosts']!s:>6}{r['samples_per_sec']:>12.1f}"
            f"{r['speedup']:>9.2f}{r['efficiency']:>10.1%}  {r['kind']}"
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in COLUMNS} for r in rows)
    csv_path, png_path = os.path.join(output, "benchmark.csv"), os.path.join(output, "speedup.png")
    atomic_write(csv_path, buf.getvalue(), mode="w")
    import torch

    names = ", ".join(dict.fromkeys(r["network"] for r in rows))
    batches = ", ".join(str(b) for b in dict.fromkeys(r["batch_per_device"] for r in rows))
    kind = f"{torch.cuda.get_device_name(0)} GPUs" if torch.cuda.is_available() else "CPU worker processes"
    plot(rows, png_path, f"{names}: speedup, batch {batches} per device, devices = {kind}")
    print(f"wrote {csv_path} and {png_path}")


def plot(rows, path, title):
    """Write a PNG of speedup against devices for each network, measured and simulated, with the ideal line."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    ax.set_title(title, fontsize="medium")
    most = max(r["devices"] for r in rows)
    ax.plot([1, most], [1, most], "k--", label="ideal")
    for i, name in enumerate(dict.fromkeys(r["network"] for r in rows)):
        for kind, style in (("measured", "o-"), ("simulated", "s:")):
            pts = [(r["devices"], r["speedup"]) for r in rows if r["network"] == name and r["kind"] == kind]
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i}", label=f"{name} ({kind})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    low = math.floor(math.log2(min([1.0] + [r["speedup"] for r in rows])))
    for axis, first in ((ax.xaxis, 0), (ax.yaxis, low)):  # 1, 2, 4, ... (and 0.5, 0.25 below 1) as numbers, not 2^k
        ticks = [2.0**k for k in range(first, most.bit_length())]
        axis.set_ticks(ticks, [f"{t:g}" for t in ticks])
        axis.set_minor_locator(pyplot().NullLocator())
    ax.set_xlabel("devices")
    ax.set_ylabel("speedup over 1 device")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_png(fig, path)
