"""Peak activation memory and step time of training with and without --activation-checkpointing 1, in one run.

Each variant runs in a fresh process: the network (resnet-50 of MXNet's example by default), SGD with momentum,
one warm-up step (gradients and momentum now exist), then --steps timed steps of forward, backward and update on
one random batch. Activation memory is the peak over the timed steps minus the memory held before them
(weights, gradients, momentum):
  GPU: torch.cuda.max_memory_allocated (peak statistics reset after the warm-up step);
  CPU: the process's peak resident set (VmHWM, reset through /proc/self/clear_refs after the warm-up step), with
       glibc told to map every block of 128 KiB or more on its own (MALLOC_MMAP_THRESHOLD_), so freed tensors
       leave the resident set at once and it follows the live tensors.
The variants alternate for --rounds rounds (off, on, off, on, ...), and a step's time is the fastest timed step
of its variant: on shared cores, the least disturbed one; on the CPU the processor time of a step is printed
too, as other processes on the same cores sway it less than the wall clock.
Prints both figures, the cut and the step-time cost.
  python benchmarks/bench_memory.py [--network resnet --num-layers 50 --batch-size 32 --image-shape 3,224,224]
      [--steps 2] [--rounds 2] [--device auto|cpu|cuda] [--dtype float32|bfloat16]
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import machine  # noqa: E402

MIB = 2**20


def _rss_now_and_peak():
    """(VmRSS, VmHWM) of this process in bytes."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def measure(args):
    """One variant here: {'activation': bytes, 'held': bytes, 'step': [s], 'cpu': [CPU s], 'blocks': n}."""
    import torch
    import torch.nn.functional as F

    import symbols
    from common import memory

    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = tuple(int(v) for v in args.image_shape.split(","))
    model = symbols.get_symbol(
        args.network, num_classes=1000, num_layers=args.num_layers, image_shape=args.image_shape
    ).to(device, memory_format=torch.channels_last)
    blocks = len(memory.checkpoint_blocks(model)) if args.variant == "on" else 0
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, *shape, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    amp = {"float32": None, "bfloat16": torch.bfloat16}[args.dtype]
    model.train()

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)  # the gradients stay allocated: they are not activations
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: kernels chosen, gradients and momentum allocated
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        held = _rss_now_and_peak()[0]
    times, cpu = [], []
    for _ in range(args.steps):
        tic, cpu_tic = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - tic)
        cpu.append(time.process_time() - cpu_tic)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _rss_now_and_peak()[1]
    return {"activation": peak - held, "held": held, "step": times, "cpu": cpu, "blocks": blocks}


def run_variant(args, variant):
    """Measure one variant in a fresh process; its result dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--variant", variant, "--device", args.device]
    for name in ("network", "num_layers", "batch_size", "image_shape", "steps", "dtype"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise SystemExit(f"the {variant} variant failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    """Run both variants, each in a fresh process, and print memory, time and the ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", default="resnet")
    p.add_argument("--num-layers", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-shape", default="3,224,224")
    p.add_argument("--steps", type=int, default=2, help="timed steps per process (after one warm-up step)")
    p.add_argument("--rounds", type=int, default=2, help="processes per variant, alternating")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="autocast dtype")
    p.add_argument("--variant", choices=("off", "on"), help=argparse.SUPPRESS)  # the child process's part
    args = p.parse_args()
    if args.variant:
        print(json.dumps(measure(args)))
        return
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda":
        import torch

        where = f"GPU: {torch.cuda.get_device_name()} (torch.cuda.max_memory_allocated)"
    else:
        where = f"CPU: {machine()} (peak resident set)"
    print(where)
    print(
        f"{args.network}-{args.num_layers}, batch {args.batch_size}, {args.image_shape}, {args.dtype}, "
        f"{args.rounds} fresh processes per variant, alternating, {args.steps} timed steps each"
    )
    runs = {"off": [], "on": []}
    for _ in range(args.rounds):
        for variant in runs:
            runs[variant].append(run_variant(args, variant))
    # memory: the largest peak of the variant's processes; time: its fastest step
    off, on = ({**r[0], "activation": max(x["activation"] for x in r)} for r in runs.values())
    t_off, t_on = (min(t for x in r for t in x["step"]) for r in runs.values())
    c_off, c_on = (min(t for x in r for t in x["cpu"]) for r in runs.values())
    print(f"{'':<28} {'without':>10} {'with':>10} {'ratio':>7}")
    print(f"{'weights+grads+momentum MiB':<28} {off['held'] / MIB:10.0f} {on['held'] / MIB:10.0f}")
    ratio = on["activation"] / off["activation"]
    print(f"{'peak activation MiB':<28} {off['activation'] / MIB:10.0f} {on['activation'] / MIB:10.0f} {ratio:7.3f}")
    print(f"{'step s (fastest)':<28} {t_off:10.3f} {t_on:10.3f} {t_on / t_off:7.3f}")
    if args.device == "cpu":  # the processor time a step took: less swayed by other processes on shared cores
        print(f"{'step CPU s (fastest)':<28} {c_off:10.3f} {c_on:10.3f} {c_on / c_off:7.3f}")
    print(
        f"activation checkpointing ({on['blocks']} blocks): peak activation memory cut by {100 * (1 - ratio):.1f}%, "
        f"step time {100 * (t_on / t_off - 1):+.1f}%"
    )


if __name__ == "__main__":
    main()
