"""Data-parallel training on this machine: Gloo workers against one worker, exact validation, --kv-store errors,
gradient compression, and --max-restarts. Everything runs on loopback.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sshd_hosts import pid_of_rank

from common import compression

REPO = Path(__file__).resolve().parent.parent
OFFLINE = "file:///nonexistent-mirror"

# A training script on fixed random data: 200 training images (6 full batches of 32 and one of 8) and an
# odd-sized validation set of 101, so the two workers' validation parts differ in size (51 and 50).
TRAINER = """
import argparse, sys
sys.path.insert(0, {repo!r})
import numpy as np
from common import data, dist, fit, networks, options
from common.util import main_guard

rng = np.random.default_rng(7)
train_x, val_x = (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8) for n in (200, 101))
train_y, val_y = (rng.integers(0, 10, n).astype(np.float32) for n in (200, 101))

def loader(args, kv):
    part = dict(part_index=kv.rank, num_parts=kv.num_workers)
    return (data.ArrayIter(train_x, train_y, args.batch_size, shuffle=True, seed=args.seed, **part),
            data.ArrayIter(val_x, val_y, args.batch_size, shuffle=False, **part))

@main_guard
def main():
    p = argparse.ArgumentParser()
    options.add_fit_args(p)
    options.add_data_args(p)
    p.set_defaults(network="mlp", image_shape="1,28,28", num_classes=10, rgb_mean="0,0,0", rgb_std="255,255,255")
    args = p.parse_args()
    if dist.local_workers(args) > 1:  # an entry script starts this host's workers; fit() never does
        sys.exit(dist.spawn_local(dist.local_workers(args)))
    fit.fit(args, networks.get_network(args), loader)

main()
"""


def run_trainer(tmp_path, name, *args):
    """Train with the script above; return (CompletedProcess, prefix)."""
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER.format(repo=str(REPO)))
    prefix = tmp_path / name / "mlp"
    cmd = [sys.executable, str(script), "--gpus", "", "--num-epochs", "2", "--disp-batches", "3", "--lr", "0.1"]
    cmd += ["--model-prefix", str(prefix), *map(str, args)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, prefix


def metrics(prefix):
    """The lines of PREFIX-metrics.jsonl."""
    return [json.loads(line) for line in Path(f"{prefix}-metrics.jsonl").read_text().splitlines()]


def test_two_workers_match_one_with_double_batch_and_validate_exactly(tmp_path):
    """--num-workers 2 --batch-size 64 (32 per worker, Gloo) trains the same weights as one worker with 64."""
    one, p1 = run_trainer(tmp_path, "one", "--batch-size", "64")
    two, p2 = run_trainer(tmp_path, "two", "--batch-size", "64", "--num-workers", "2")
    assert "2 workers on 1 hosts" in two.stdout and "(32 per batch x 2 workers x 1 accumulated)" in two.stdout
    a, b = load_file(f"{p1}-0002.params"), load_file(f"{p2}-0002.params")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    assert not torch.equal(a["fc1.weight"], load_file(f"{p1}-0001.params")["fc1.weight"])  # it did train
    m1, m2 = metrics(p1), metrics(p2)
    for r1, r2 in zip(m1, m2, strict=True):
        # every one of the 101 validation records counted once over the two workers' parts
        hits = r2["validation-accuracy"] * 101
        assert abs(hits - round(hits)) < 1e-6 and r2["validation-accuracy"] == pytest.approx(r1["validation-accuracy"])
        assert r2["train-accuracy"] == pytest.approx(r1["train-accuracy"])
    assert sorted(p.name for p in p2.parent.iterdir() if p.suffix in (".params", ".states")) == [
        "mlp-0001.params",
        "mlp-0001.states",
        "mlp-0002.params",
        "mlp-0002.states",
    ]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--kv-store", "dist_async"], ["dist_async is not offered", "parameter servers", "dist_sync"]),
        (["--kv-store", "dist_sync"], ["dist_sync runs under tools/launch.py", "launch.py -n"]),
        (["--gc-type", "3bit"], ["--gc-type '3bit'", "2bit"]),
    ],
)
def test_kv_store_errors_one_line_exit_2(cli, args, words):
    proc = cli("train_mnist.py", "--mnist-mirror", OFFLINE, "--gpus", "", "--num-epochs", "1", *args)
    lines = [x for x in proc.stderr.splitlines() if "error:" in x]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0]


def test_2bit_quantisation_keeps_what_it_does_not_send():
    """Over several steps, sent values plus the residual add up to the gradients given (error feedback)."""
    g = torch.Generator().manual_seed(0)
    threshold, n = 0.5, 1001  # not a multiple of 4: the packing pads
    residual, sent, given = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    for _ in range(5):
        grad = torch.randn(n, generator=g) * 0.4
        packed = compression.quantize_2bit(grad, residual, threshold)
        assert packed.dtype == torch.uint8 and packed.numel() == (n + 3) // 4
        values = compression.dequantize_2bit(packed, n, threshold)
        assert set(values.unique().tolist()) <= {-threshold, 0.0, threshold}
        sent += values
        given += grad
        assert residual.abs().max() < threshold + 0.4 * 6  # bounded: what reaches the threshold goes out
    torch.testing.assert_close(sent + residual, given, rtol=0, atol=1e-5)
    assert (sent != 0).any() and (residual != 0).any()
    one = torch.tensor([0.7, -0.9, 0.2, 0.0, 0.5])
    res = torch.zeros(5)
    vals = compression.dequantize_2bit(compression.quantize_2bit(one, res, 0.5), 5, 0.5)
    assert vals.tolist() == [0.5, -0.5, 0.0, 0.0, 0.5]
    torch.testing.assert_close(res, torch.tensor([0.2, -0.4, 0.2, 0.0, 0.0]))


@pytest.mark.parametrize("gc_type, tol", [("2bit", None), ("fp16", 1e-3), ("bf16", 1e-2)])
def test_ddp_hooks_in_a_one_worker_group(tmp_path, gc_type, tol):
    """The hooks run inside DDP (Gloo): fp16/bf16 stay close to the exact gradient, 2bit sends +-t/batch or 0."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        net = torch.nn.Linear(50, 3)
        exact = torch.nn.Linear(50, 3)
        exact.load_state_dict(net.state_dict())
        model = torch.nn.parallel.DistributedDataParallel(net)
        compression.register(model, gc_type, 0.05, batch_size=8)
        x = torch.randn(8, 50)
        model(x).square().mean().backward()
        exact(x).square().mean().backward()
        if tol is not None:
            torch.testing.assert_close(net.weight.grad, exact.weight.grad, rtol=tol, atol=tol)
        else:
            levels = set((net.weight.grad * 8 / 0.05).round().unique().tolist())
            assert levels <= {-1.0, 0.0, 1.0} and len(levels) > 1
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_max_restarts_resumes_from_last_checkpoint(tmp_path):
    """A worker killed after epoch 1 makes the launcher restart both; they resume at epoch 1 and finish."""
    prefix = tmp_path / "ck" / "mlp"
    cmd = [sys.executable, str(REPO / "tools" / "launch.py"), "--launcher", "local", "-n", "2", "--max-restarts", "1"]
    cmd += [sys.executable, "train_mnist.py", "--mnist-mirror", OFFLINE, "--gpus", "", "--kv-store", "dist_sync"]
    cmd += ["--num-epochs", "3", "--model-prefix", str(prefix), "--load-epoch", "auto", "--disp-batches", "1000"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not Path(f"{prefix}-0001.states").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    pid = pid_of_rank(str(prefix), 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err
    restart = [line for line in out.splitlines() if line.startswith("launch.py: rank 1 on host localhost")]
    assert len(restart) == 1 and "killed by SIGKILL" in restart[0] and "restarting all workers (1 of 1)" in restart[0]
    assert f"Loaded model {prefix}-0001.params: resuming at epoch 1" in out
    assert [r["epoch"] for r in metrics(prefix)] == [0, 1, 2]
