"""Log lines as MXNet printed them: Speedometer windows, every metric on the batch lines, rate changes, test-io."""

import json
import re

from tests.conftest import REPO
from tests.test_train_cli import MLP


def test_batch_lines_and_rate_changes_are_mxnets(tmp_path, cli):
    # 4,000 sample digits in batches of 80: 50 batches (0..49) an epoch. MXNet's Speedometer logs at batch 25 only:
    # the window [0-25] holds batches 0..25, and no window is printed for the 24 batches left at the epoch's end.
    prefix = tmp_path / "m"
    flags = ("--batch-size", "80", "--disp-batches", "25", "--num-epochs", "2", "--lr-step-epochs", "1")
    proc = cli(*MLP, *flags, "--loss", "ce", "--top-k", "3", "--model-prefix", prefix, check=0)
    lines = proc.stderr.splitlines()
    windows = [re.search(r"Epoch\[(\d)\] Batch \[(\d+)-(\d+)\]", ln).groups() for ln in lines if "Batch [" in ln]
    assert windows == [("0", "0", "25"), ("1", "0", "25")]
    batch_line = next(ln for ln in lines if "Batch [0-25]" in ln)
    assert re.search(r"\taccuracy=[\d.]+\ttop_k_accuracy_3=[\d.]+\tcross-entropy=[\d.]+$", batch_line)
    # MultiFactorScheduler's line, numbering the first update at the new rate (50 updates done, the 51st)
    assert sum("Update[51]: Change learning rate to 5.00000e-03" in ln for ln in lines) == 1
    records = [json.loads(ln) for ln in (tmp_path / "m-metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == [0.05, 0.05 * 0.1]  # the rate each epoch trained at
    assert all(r["train-loss"] > 0 and r["validation-loss"] > 0 for r in records)  # recorded with or without --loss


def test_num_examples_that_disagree_with_the_data_are_named(cli):
    proc = cli(*MLP, "--num-epochs", "1", "--num-examples", "50000", "--batch-size", "500", check=0)
    line = "--num-examples 50000 differs from the 4000 records of the training data by more than 1%; "
    assert sum(line in ln for ln in proc.stderr.splitlines()) == 1
    quiet = cli(*MLP, "--num-epochs", "1", "--num-examples", "4020", "--batch-size", "500", check=0)
    assert "--num-examples 4020 differs" not in quiet.stderr  # within 1%


def test_profile_suffixes_write_traces(cli, tmp_path):
    flags = ("--num-epochs", "1", "--batch-size", "500", "--disp-batches", "2")
    suffixes = ("--profile-worker-suffix", "worker.json", "--profile-server-suffix", "server.json")
    script = [str(REPO / MLP[0]), *MLP[1:]]  # run from tmp_path: the traces are relative names, as MXNet's
    proc = cli(*script, *flags, *suffixes, cwd=tmp_path, check=0)
    for name in ("worker.json", "server.json"):
        events = json.loads((tmp_path / name).read_text())["traceEvents"]
        assert any("addmm" in str(e.get("name")) for e in events), name  # the network's matmuls are in it
        assert f"training steps to {name}" in proc.stderr
