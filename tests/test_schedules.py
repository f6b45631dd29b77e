"""--lr-plateau, --early-stop and --lr-find through train_mnist.py on the MNIST sample (an MLP, large batches).

A run whose Validation-accuracy stops improving: at --lr 1e-9 the weights (and so the accuracy) stay as they start,
so every epoch after the first counts as not improved.
"""

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from common import checkpoint
from tests.conftest import run_cli

MLP = ["train_mnist.py", "--network", "mlp", "--mnist-mirror", "file:///nonexistent-mirror", "--gpus", ""]
MLP += ["--cosine", "0", "--batch-size", "250", "--disp-batches", "100"]  # 16 batches an epoch
WATCH = ["--lr-plateau", "2", "--early-stop", "3"]
STEPS = 16  # batches of 250 in the sample's 4,000 training digits


def _accuracies(log):
    return [float(v) for v in re.findall(r"Epoch\[\d+\] Validation-accuracy=([\d.]+)", log)]


def _states_extra(prefix, epoch):
    states = checkpoint.load_states(str(prefix), epoch)
    return states["extra"], states["optimizer"]["param_groups"]


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """(prefix, log): up to 10 epochs at --lr 1e-9 (it stops early)."""
    prefix = tmp_path_factory.mktemp("flat") / "mlp"
    proc = run_cli(*MLP, *WATCH, "--num-epochs", "10", "--lr", "1e-9", "--model-prefix", prefix)
    assert proc.returncode == 0, proc.stderr
    return prefix, proc.stderr


def test_plateau_reduces_and_early_stop_stops_at_the_right_epoch(flat):
    prefix, log = flat
    acc = _accuracies(log)
    assert len(acc) == 4 and len(set(acc)) == 1, log  # Epoch[0..3]: flat
    # Epoch[1] and Epoch[2] did not improve: the rate is cut after Epoch[2], from the step after its last on
    assert "Epoch[1] --lr-plateau" not in log
    assert "Epoch[2] --lr-plateau 2: Validation-accuracy has not improved for 2 epochs" in log
    updates = re.findall(r"Update\[(\d+)\]: Change learning rate to (\S+)", log)
    assert updates == [(str(3 * STEPS + 1), "1.00000e-10")]
    extra, groups = _states_extra(prefix, 4)
    assert extra["lr_plateau"]["rate"] == pytest.approx(0.1) and groups[0]["lr"] == pytest.approx(1e-10)
    # three epochs without an improvement: the run stops after Epoch[3] and names Epoch[0] as the best
    stops = [x for x in log.splitlines() if "--early-stop" in x]
    assert len(stops) == 1 and "Epoch[3] --early-stop 3: Validation-accuracy has not improved for 3 epochs" in stops[0]
    assert (
        "The best was Epoch[0] (Validation-accuracy" in stops[0]
        and f"{prefix}-0001.params (--load-epoch best)" in stops[0]
    )
    assert "Epoch[4]" not in log
    assert json.loads(open(f"{prefix}-best.json").read())["epoch"] == 1
    assert extra["early_stop"] == {"best": pytest.approx(acc[0]), "best_epoch": 0, "bad_epochs": 3}


def test_resume_keeps_the_counts_exactly_and_keep_last_keeps_the_best(flat, tmp_path, cli):
    full, log = flat
    prefix = tmp_path / "mlp"
    for name in ("symbol.json", "best.json", "0001.params", "0001.states", "0002.params", "0002.states"):
        shutil.copy(f"{full}-{name}", f"{prefix}-{name}")
    assert _states_extra(prefix, 2)[0]["lr_plateau"]["bad_epochs"] == 1  # Epoch[1] counted
    args = ["--num-epochs", "10", "--lr", "1e-9", "--load-epoch", "2", "--keep-last", "1"]
    proc = cli(*MLP, *WATCH, *args, "--model-prefix", prefix, check=0)
    # the resumed run reduces after its first epoch (Epoch[2]) and stops after its second, as the whole run did
    assert re.findall(r"Update\[\d+\]: Change learning rate to \S+", proc.stderr) == re.findall(
        r"Update\[\d+\]: Change learning rate to \S+", log
    )
    stop = [x.split("Node[0] ")[1] for x in proc.stderr.splitlines() if "--early-stop 3:" in x]
    assert stop == [
        x.split("Node[0] ")[1].replace(str(full), str(prefix)) for x in log.splitlines() if "--early-stop 3:" in x
    ]
    assert _states_extra(prefix, 4)[0] == _states_extra(full, 4)[0]
    a, b = load_file(f"{full}-0004.params"), load_file(f"{prefix}-0004.params")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # --keep-last 1 leaves the newest epoch and the best (Epoch[0]'s checkpoint, number 1)
    assert checkpoint.saved_epochs(str(prefix)) == [1, 4]


def test_lr_find_suggests_a_rate_in_range_and_leaves_the_model(flat, tmp_path, cli):
    full, _ = flat
    prefix = tmp_path / "mlp"
    for name in ("symbol.json", "0001.params", "0001.states"):
        shutil.copy(f"{full}-{name}", f"{prefix}-{name}")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    flags = ["--lr-find", "1", "--lr-find-steps", "40", "--lr-find-start", "1e-5", "--lr-find-end", "1"]
    proc = cli(*MLP, *flags, "--load-epoch", "1", "--model-prefix", prefix, check=0)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"suggested lr=\S+", lines[0]), proc.stdout
    assert 1e-5 <= float(lines[0].split("=")[1]) <= 1
    # the weights after the sweep are those of the checkpoint it loaded (the digest .params records)
    with safe_open(f"{prefix}-0001.params", "pt") as f:
        digest = f.metadata()[checkpoint.DIGEST_KEY]
    assert f"the weights are as before (sha256 {digest})" in proc.stderr
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {k: v for k, v in after.items() if k in before} == before  # checkpoints untouched
    assert sorted(set(after) - set(before)) == ["mlp-lr-find.png", "mlp.log"]
    assert after["mlp-lr-find.png"][:8] == b"\x89PNG\r\n\x1a\n"


BAD = {
    "--lr-plateau": [*MLP, "--lr-plateau", "0"],
    "--early-stop": [*MLP, "--early-stop", "-1"],
    "--lr-find-steps": [*MLP, "--lr-find", "1", "--lr-find-steps", "0"],
    "--lr-find-start": [*MLP, "--lr-find", "1", "--lr-find-start", "0"],
}
# mistakes only a run can see: the pair of rates, no validation data (each one line, exit 2)
LATE = {
    "--lr-find-end": [*MLP, "--lr-find", "1", "--lr-find-start", "1", "--lr-find-end", "0.1"],
    "--data-val": ["train_imagenet.py", "--benchmark", "1", "--network", "mlp", "--image-shape", "1,8,8"]
    + ["--num-classes", "3", "--gpus", "", "--early-stop", "2"],
}


def test_bad_values_are_one_line_naming_the_flag():
    with ThreadPoolExecutor(2) as pool:
        procs = dict(
            zip([*BAD, *LATE], pool.map(lambda argv: run_cli(*argv, timeout=300), [*BAD.values(), *LATE.values()]))
        )
    for flag, proc in procs.items():
        errors = [x for x in proc.stderr.splitlines() if ": error:" in x]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(errors) == 1 and flag in errors[0], proc.stderr
    for flag in BAD:
        assert f"error: argument {flag}:" in procs[flag].stderr  # at parse time, by the flag's range
