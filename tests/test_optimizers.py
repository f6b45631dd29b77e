"""MXNet's optimizers (adadelta ... lbsgd): the same steps as MXNet 1.9.1 on the same gradients, and exact resume."""

import argparse
import json
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from common import checkpoint
from common.optim import make_optimizer, set_lr
from common.options import OPTIMIZERS
from common.util import UserError

LR, WD, STEPS = 0.1, 0.05, 6
# (case, --optimizer, --mom, keyword arguments MXNet's example gave: learning_rate, wd, momentum where it takes one)
CASES = [
    ("adadelta", "adadelta", 0.0, {}),
    ("adamax", "adamax", 0.0, {}),
    ("nadam", "nadam", 0.0, {}),
    ("signum", "signum", 0.9, {"momentum": 0.9}),
    ("signsgd", "signum", 0.0, {"momentum": 0.0}),
    ("ftml", "ftml", 0.0, {}),
    ("ftrl", "ftrl", 0.0, {}),
    ("sgld", "sgld", 0.0, {}),
    ("dcasgd", "dcasgd", 0.0, {"momentum": 0.0}),  # MXNet 1.9.1's dcasgd fails with momentum > 0 (see DCASGD)
    ("lbsgd", "lbsgd", 0.9, {"momentum": 0.9}),
]

# The peer: one MXNet optimizer per case over the same weights (index 0 decayed, index 1 a bias: wd_mult 0 and
# lr_mult 0.5, as param_groups gives them); nadam gets one optimizer per weight, since MXNet's nadam multiplies one
# momentum schedule shared by all weights (a quirk the suite's torch NAdam, per weight as in the paper, lacks).
# sgld's noise is set to zero on both sides: its deterministic part is compared here, its noise below.
MX_CODE = r"""
import json, sys
import numpy as np
import mxnet as mx
import mxnet.optimizer.optimizer as mxopt
mxopt.normal = lambda loc, scale, shape, dtype, ctx: mx.nd.zeros(shape, ctx=ctx, dtype=dtype)
folder, cases = sys.argv[1], json.loads(sys.argv[2])
lr, wd, steps = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def make(name, kw):
    opt = mx.optimizer.create(name, learning_rate=lr, wd=wd, **kw)
    opt.set_wd_mult({1: 0.0})
    opt.set_lr_mult({1: 0.5})
    return mx.optimizer.get_updater(opt)
for case, name, kw in cases:
    weights = [mx.nd.array(np.load(f"{folder}/w{i}.npy")) for i in range(2)]
    per_weight = [make(name, kw) for _ in weights] if name == "nadam" else [make(name, kw)] * 2
    for t in range(steps):
        for i, w in enumerate(weights):
            per_weight[i](i, mx.nd.array(np.load(f"{folder}/g{t}_{i}.npy")), w)
    for i, w in enumerate(weights):
        np.save(f"{folder}/{case}_{i}.npy", w.asnumpy())
"""


def _model():
    """A fixed linear layer: weight (decayed group) and bias (no decay, lr_mult 0.5)."""
    model = nn.Linear(5, 4)
    with torch.no_grad():
        rng = np.random.default_rng(7)
        model.weight.copy_(torch.from_numpy(rng.normal(size=(4, 5)).astype(np.float32)))
        model.bias.copy_(torch.from_numpy(rng.normal(size=4).astype(np.float32)))
    model.bias.lr_mult = 0.5
    return model


def _grads():
    rng = np.random.default_rng(11)
    return [[rng.normal(scale=0.5, size=s).astype(np.float32) for s in ((4, 5), (4,))] for _ in range(STEPS)]


def _suite_run(name, mom, tmp_path, case):
    """STEPS steps of the suite's optimizer; halfway its state goes through a .states file into a new optimizer."""
    model, args = _model(), argparse.Namespace(optimizer=name, lr=LR, mom=mom, wd=WD)
    opt = make_optimizer(args, model)
    for t, grads in enumerate(_grads()):
        if t == STEPS // 2:
            checkpoint.save_states(str(tmp_path / case), 1, {"optimizer": opt.state_dict()})
            opt = make_optimizer(args, model)
            opt.load_state_dict(checkpoint.load_states(str(tmp_path / case), 1)["optimizer"])
        set_lr(opt, LR)
        for p, g in zip((model.weight, model.bias), grads, strict=True):
            p.grad = torch.from_numpy(g)
        opt.step()
    return [model.weight.detach().numpy(), model.bias.detach().numpy()]


@pytest.fixture(scope="module")
def mxnet_results(mxnet_python, tmp_path_factory):
    """{case: [weight, bias]} after STEPS of MXNet 1.9.1's updater on the same start and gradients."""
    folder = tmp_path_factory.mktemp("mxopt")
    model = _model()
    np.save(folder / "w0.npy", model.weight.detach().numpy())
    np.save(folder / "w1.npy", model.bias.detach().numpy())
    for t, grads in enumerate(_grads()):
        for i, g in enumerate(grads):
            np.save(folder / f"g{t}_{i}.npy", g)
    cases = json.dumps([(case, name, kw) for case, name, _, kw in CASES])
    proc = subprocess.run(
        [str(mxnet_python), "-c", MX_CODE, str(folder), cases, str(LR), str(WD), str(STEPS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {case: [np.load(folder / f"{case}_{i}.npy") for i in range(2)] for case, *_ in CASES}


@pytest.mark.mxnet
@pytest.mark.parametrize("case,name,mom,kw", CASES, ids=[c[0] for c in CASES])
def test_steps_match_mxnet(case, name, mom, kw, mxnet_results, tmp_path, monkeypatch):
    if name == "sgld":  # the noise-free part (MXNet's side draws zeros too)
        monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    ours = _suite_run(name, mom, tmp_path, case)
    start = _model()
    for mine, theirs, first in zip(ours, mxnet_results[case], (start.weight, start.bias), strict=True):
        assert not np.allclose(theirs, first.detach().numpy()), "the steps moved nothing: the test tests nothing"
        # 1e-5 relative, and float32 rounding of the weights' scale where a value is a difference (ftml's -z/d_t
        # cancels: measured 6e-7 absolute, 3e-7 of the largest weight, on an element of 0.019)
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())


def test_sgld_noise_is_langevin():
    """SGLD adds N(0, sqrt(lr)) to each weight per step: with no gradient the step's statistics are the noise's."""
    w = nn.Parameter(torch.zeros(200_000))
    opt = make_optimizer(argparse.Namespace(optimizer="sgld", lr=0.04, mom=0.0, wd=0.0), nn.ParameterList([w]))
    w.grad = torch.zeros_like(w)
    opt.step()
    assert abs(w.mean().item()) < 0.002 and abs(w.std().item() - 0.2) < 0.002


def test_unknown_optimizer_lists_the_valid_values():
    with pytest.raises(UserError) as err:
        make_optimizer(argparse.Namespace(optimizer="adamz", lr=0.1, mom=0.9, wd=0.0), nn.Linear(2, 2))
    assert "adamz" in str(err.value) and all(name in str(err.value) for name in OPTIMIZERS)


def test_unknown_optimizer_on_the_command_line(cli):
    proc = cli(*MLP, "--num-epochs", "1", "--optimizer", "adamz")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "ftml" in proc.stderr and "lbsgd" in proc.stderr


OFFLINE = "file:///nonexistent-mirror"
# a schedule that does not depend on --num-epochs (the sample's cosine does), so 1 + 1 epochs can equal 2
MLP = [
    *("train_mnist.py", "--network", "mlp", "--mnist-mirror", OFFLINE, "--gpus", ""),
    "--disp-batches",
    "50",
    "--cosine",
    "0",
]
SLOW = {"adamax", "nadam", "ftml", "ftrl", "dcasgd", "signum"}
RESUME = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in OPTIMIZERS[8:]]


@pytest.mark.parametrize("name", RESUME)
def test_trains_and_resumes_exactly(name, tmp_path, cli):
    """One epoch, then resume to two, gives the weights of an uninterrupted two-epoch run."""
    opts = [*MLP, "--optimizer", name, "--lr", "0.01" if name == "sgld" else "0.05", "--batch-size", "200"]
    full, part = tmp_path / "full" / "mlp", tmp_path / "part" / "mlp"
    cli(*opts, "--num-epochs", "2", "--model-prefix", full, check=0)
    cli(*opts, "--num-epochs", "1", "--model-prefix", part, check=0)
    proc = cli(*opts, "--num-epochs", "2", "--model-prefix", part, "--load-epoch", "1", check=0)
    assert "resuming at epoch 1" in proc.stderr
    a, b = load_file(f"{full}-0002.params"), load_file(f"{part}-0002.params")
    first = load_file(f"{part}-0001.params")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], first[k]) for k in a), "the second epoch changed nothing"
