"""Scoring speed: `score.py` against MXNet 1.9.1's scoring loop (score.py's), same checkpoint, same .rec, same cores.

Both score the MXNet resnet-18 checkpoint of the golden fixtures (3x224x224, 1000 classes) on ImageNet-like JPEGs
packed with --resize 256: centre crop, batch 32, 2 decoding threads, images/s over one whole pass (decode included,
as MXNet's score.py measures), best of --rounds alternated runs. `--suite-dtype int8` times score.py's int8 pass.
`--int8` instead times float32 against int8 (torch.ao, common/qat.DEFAULT_ENGINE) for resnet-18 and resnet-50
on a fixed batch.
  python benchmarks/bench_score.py [--images 256] [--batch-size 32] [--threads 2] [--rounds 2] [--work DIR] [--int8]
  [--max-isa avx2]
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

from benchmarks import ISAS, isa_env, kernels_in_use, machine  # noqa: E402
from benchmarks.bench_io import PEER_PY, pack  # noqa: E402

FIXTURE = os.path.join(REPO, "..", "shared", "fixtures", "mxnet", "resnet-18")
MXNET_SCRIPT = """
import sys, time, mxnet as mx
prefix, rec, bs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, 3)
it = mx.io.ImageRecordIter(path_imgrec=rec, data_shape=(3, 224, 224), batch_size=bs, label_width=1,
    preprocess_threads=threads, rand_crop=False, rand_mirror=False, label_name='softmax_label',
    mean_r=123.68, mean_g=116.779, mean_b=103.939)
mod = mx.mod.Module(symbol=sym, context=mx.cpu(), label_names=['softmax_label'])
mod.bind(for_training=False, data_shapes=it.provide_data, label_shapes=it.provide_label)
mod.set_params(arg_params, aux_params)
acc = mx.metric.create('acc')
n, tic = 0, time.time()
for batch in it:
    mod.forward(batch, is_train=False)
    mod.update_metric(acc, batch.label)
    n += bs - batch.pad
print("SPEED", n / (time.time() - tic), "ACC", acc.get()[1])
"""


def suite(env, rec, bs, threads, dtype):
    """(images/s, accuracy) of score.py on rec; with int8, those of its int8 pass (the last one printed)."""
    cmd = [sys.executable, os.path.join(REPO, "score.py"), "--model", FIXTURE, "--load-epoch", "3"]
    cmd += ["--data-val", rec, "--batch-size", str(bs), "--data-nthreads", str(threads), "--dtype", dtype]
    out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True, env=env).stderr
    speed = float(re.findall(r"Finished with ([\d.]+) images per second", out)[-1])
    return speed, float(re.findall(r"\('accuracy', ([\d.e-]+)\)", out)[-1])


def peer(env, rec, bs, threads):
    """(images/s, accuracy) of MXNet's scoring loop on rec."""
    out = subprocess.run(
        [PEER_PY, "-c", MXNET_SCRIPT, FIXTURE, rec, str(bs), str(threads)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    m = re.search(r"SPEED ([\d.]+) ACC ([\d.e-]+)", out)
    return float(m.group(1)), float(m.group(2))


def int8_speeds(bs, repeats=10):
    """Print float32 (BatchNorm folded) and int8 latency of one batch for resnet-18/50, torchvision and MXNet's."""
    import torch
    import torchvision

    import symbols
    from common import networks
    from common.inference import quantize_int8

    x = torch.randn(bs, 3, 224, 224)
    nets = [(f"torchvision {n}", lambda n=n: torchvision.models.get_model(n)) for n in ("resnet18", "resnet50")]
    nets += [(f"MXNet resnet-{d}", lambda d=d: symbols.get_symbol("resnet", num_layers=d)) for d in (18, 50)]
    for name, build in nets:
        fp32 = networks.for_inference(build().eval())
        int8 = quantize_int8(fp32, [(x, None)], lambda t: t, 1)
        # float32 as score.py runs it: BatchNorm folded, channels_last (its faster layout on the CPU)
        fp32, x_cl = fp32.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        times = [float("inf"), float("inf")]
        with torch.inference_mode():
            fp32(x_cl), int8(x)
            for _ in range(repeats):  # alternate, best of each: the shared machine's load shifts under a run
                for k, (model, inp) in enumerate(((fp32, x_cl), (int8, x))):
                    tic = time.time()
                    model(inp)
                    times[k] = min(times[k], time.time() - tic)
        speeds = f"float32 {bs / times[0]:.1f} img/s, int8 {bs / times[1]:.1f} img/s"
        print(f"{name}: {speeds}, ratio {times[0] / times[1]:.2f}")


def main():
    """Pack the photos once, then score them with the suite and with MXNet back to back."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench_score"))
    p.add_argument("--rounds", type=int, default=2, help="suite and peer runs, alternated; the best of each counts")
    p.add_argument("--suite-dtype", default="float32", help="score.py's --dtype (int8: time its int8 pass)")
    p.add_argument("--int8", action="store_true", help="time float32 against int8 instead")
    p.add_argument("--max-isa", default="native", help="cap both at an instruction set: " + ", ".join(ISAS))
    args = p.parse_args()
    env = isa_env(args.max_isa)
    print(f"CPU: {machine(args.max_isa)}")
    print(f"kernels: {kernels_in_use(env, sys.executable, PEER_PY)}")
    if args.int8:
        os.environ.update(env)  # torch is imported after this, so its kernels see the cap
        int8_speeds(args.batch_size)
        return
    rec = pack(os.path.join(args.work, str(args.images)), args.images)
    s_speed = m_speed = 0.0
    for _ in range(args.rounds):  # alternate, best of each: the shared machine's load shifts under a run
        speed, s_acc = suite(env, rec, args.batch_size, args.threads, args.suite_dtype)
        s_speed = max(s_speed, speed)
        speed, m_acc = peer(env, rec, args.batch_size, args.threads)
        m_speed = max(m_speed, speed)
    print(f"suite score.py ({args.suite_dtype}): {s_speed:.2f} images/s, accuracy {s_acc:.4f}")
    print(f"peer MXNet 1.9.1: {m_speed:.2f} images/s, accuracy {m_acc:.4f}")
    print(f"ratio suite/peer: {s_speed / m_speed:.2f}x")


if __name__ == "__main__":
    main()
