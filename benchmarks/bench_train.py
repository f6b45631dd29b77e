"""Training speed on synthetic data: the suite's train_imagenet.py --benchmark 1 against MXNet 1.9.1, same cores.

For each row both run back to back on the CPU: MXNet builds the same network with mx.sym (pre-activation
ResNet as MXNet's example symbols/resnet.py, or LeNet) and runs Module forward_backward + update on one
random batch; the suite runs its entry script. Prints samples/sec of each and the ratio.
  python benchmarks/bench_train.py [--rows resnet-20,lenet,resnet-50] [--rounds 3] [--max-isa avx2]
"""

import argparse
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import ISAS, isa_env, kernels_in_use, machine  # noqa: E402

PEER = os.environ.get("MXNET_PEER", "/tmp/mxnet-peer") + "/bin/python"
ROWS = {  # name: (network, num_layers, image shape, batch size, batches, warm-up batches)
    "resnet-20": ("resnet", 20, "3,28,28", 128, 30, 5),
    "lenet": ("lenet", 0, "1,28,28", 64, 100, 10),
    "resnet-50": ("resnet", 50, "3,224,224", 32, 8, 2),
}

MXNET_SCRIPT = r"""
import sys, time, mxnet as mx, numpy as np
net, layers, shape, batch, nbatch, warm = sys.argv[1], int(sys.argv[2]), tuple(map(int, sys.argv[3].split(","))), \
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
S = mx.sym
def bn(x, name): return S.BatchNorm(x, fix_gamma=False, eps=2e-5, momentum=0.9, name=name)
def unit(x, nf, stride, match, bottle, name):
    a = S.Activation(bn(x, name + "_bn1"), act_type="relu")
    if bottle:
        c = S.Convolution(a, num_filter=nf // 4, kernel=(1, 1), no_bias=True, name=name + "_c1")
        c = S.Convolution(S.Activation(bn(c, name + "_bn2"), act_type="relu"), num_filter=nf // 4, kernel=(3, 3),
                          stride=stride, pad=(1, 1), no_bias=True, name=name + "_c2")
        c = S.Convolution(S.Activation(bn(c, name + "_bn3"), act_type="relu"), num_filter=nf, kernel=(1, 1),
                          no_bias=True, name=name + "_c3")
    else:
        c = S.Convolution(a, num_filter=nf, kernel=(3, 3), stride=stride, pad=(1, 1), no_bias=True, name=name + "_c1")
        c = S.Convolution(S.Activation(bn(c, name + "_bn2"), act_type="relu"), num_filter=nf, kernel=(3, 3),
                          pad=(1, 1), no_bias=True, name=name + "_c2")
    sc = x if match else S.Convolution(a, num_filter=nf, kernel=(1, 1), stride=stride, no_bias=True, name=name + "_sc")
    return c + sc
x = S.Variable("data")
if net == "lenet":
    x = S.Pooling(S.Activation(S.Convolution(x, kernel=(5, 5), num_filter=20), act_type="tanh"), pool_type="max",
                  kernel=(2, 2), stride=(2, 2))
    x = S.Pooling(S.Activation(S.Convolution(x, kernel=(5, 5), num_filter=50), act_type="tanh"), pool_type="max",
                  kernel=(2, 2), stride=(2, 2))
    x = S.FullyConnected(S.Activation(S.FullyConnected(S.Flatten(x), num_hidden=500), act_type="tanh"), num_hidden=10)
else:
    small = shape[1] <= 32
    if small:
        units, filters, bottle = [(layers - 2) // 6] * 3, [16, 16, 32, 64], False
    else:
        units, filters, bottle = [3, 4, 6, 3], [64, 256, 512, 1024, 2048], True
    x = bn(x, "bn_data")
    if small:
        x = S.Convolution(x, num_filter=filters[0], kernel=(3, 3), pad=(1, 1), no_bias=True, name="conv0")
    else:
        x = S.Convolution(x, num_filter=filters[0], kernel=(7, 7), stride=(2, 2), pad=(3, 3), no_bias=True)
        x = S.Pooling(S.Activation(bn(x, "bn0"), act_type="relu"), kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                      pool_type="max")
    for i, n in enumerate(units):
        stride = (1, 1) if i == 0 else (2, 2)
        x = unit(x, filters[i + 1], stride, False, bottle, "s%d_u1" % i)
        for j in range(n - 1):
            x = unit(x, filters[i + 1], (1, 1), True, bottle, "s%d_u%d" % (i, j + 2))
    x = S.Activation(bn(x, "bn1"), act_type="relu")
    x = S.FullyConnected(S.Flatten(S.Pooling(x, global_pool=True, kernel=(7, 7), pool_type="avg")), num_hidden=10)
sym = S.SoftmaxOutput(x, name="softmax")
mod = mx.mod.Module(sym, context=mx.cpu())
mod.bind(data_shapes=[("data", (batch,) + shape)], label_shapes=[("softmax_label", (batch,))])
mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4})
b = mx.io.DataBatch([mx.nd.random.uniform(0, 255, (batch,) + shape)], [mx.nd.array(np.random.randint(0, 10, batch))])
metric = mx.metric.Accuracy()
for i in range(nbatch + warm):
    if i == warm:
        mx.nd.waitall(); tic = time.time()
    mod.forward_backward(b); mod.update(); mod.update_metric(metric, b.label)
mx.nd.waitall()
print("speed %.2f" % (nbatch * batch / (time.time() - tic)))
"""


def run_peer(env, net, layers, shape, batch, nbatch, warm):
    """MXNet's samples/sec for one row (None if the peer venv is missing)."""
    if not os.path.exists(PEER):
        return None
    cmd = [PEER, "-c", MXNET_SCRIPT, net, str(layers), shape, str(batch), str(nbatch), str(warm)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return float(re.search(r"speed ([\d.]+)", out).group(1))


def run_suite(env, net, layers, shape, batch, nbatch, warm, extra):
    """The suite's samples/sec: train_imagenet.py --benchmark 1, speed over the batches after the warm-up."""
    cmd = [
        sys.executable,
        os.path.join(REPO, "train_imagenet.py"),
        "--benchmark",
        "1",
        "--network",
        net,
        "--image-shape",
        shape,
        "--num-classes",
        "10",
        "--batch-size",
        str(batch),
        "--gpus",
        "",
        "--num-epochs",
        "1",
        "--num-examples",
        str((nbatch + warm) * batch),
        "--disp-batches",
        str(warm),
        *extra,
    ]
    if layers:
        cmd += ["--num-layers", str(layers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    speeds = [float(s) for s in re.findall(r"Speed: ([\d.]+) samples/sec", proc.stderr)]
    if len(speeds) < 2:
        raise SystemExit(f"no speed lines from the suite:\n{proc.stderr[-2000:]}")
    window = speeds[1:]  # the first window holds the warm-up
    return len(window) / sum(1 / s for s in window)  # equal-sized windows: harmonic mean is total throughput


def main():
    """Run the selected rows and print suite, peer and ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ", ".join(ROWS))
    parser.add_argument("--suite-args", default="", help="extra flags for the suite, e.g. '--compile 1'")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of each; the best of each counts")
    parser.add_argument("--max-isa", default="native", help="cap both at an instruction set: " + ", ".join(ISAS))
    args = parser.parse_args()
    env = isa_env(args.max_isa)
    print(f"CPU: {machine(args.max_isa)}")
    print(f"kernels: {kernels_in_use(env, sys.executable, PEER)}")
    print(f"{'row':<10} {'suite':>10} {'mxnet':>10} {'ratio':>6}   (samples/sec)")
    for name in args.rows.split(","):
        row = ROWS[name]
        suite = peer = None
        for _ in range(args.rounds):  # alternate, so a slow spell of the machine hits both; keep the best of each
            suite = max(suite or 0, run_suite(env, *row, args.suite_args.split()))
            got = run_peer(env, *row)
            peer = max(peer or 0, got) if got else None
        ratio = f"{suite / peer:6.2f}" if peer else "   n/a"
        print(f"{name:<10} {suite:10.1f} {peer or float('nan'):10.1f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
