"""The README's first command: `train_mnist.py` with no flags, offline on the bundled sample, from a fresh folder."""

import json
import re

import pytest

from tests.conftest import REPO, run_cli

OFFLINE = "file:///nonexistent-mirror"  # no network in tests: the download fails at once, the sample is used
SCRIPT = str(REPO / "train_mnist.py")
PREFIX = "runs/mnist-sample/lenet"


def _run(tmp_path, *flags):
    """train_mnist.py offline from tmp_path (the script by its absolute path), as a newcomer runs it."""
    return run_cli(SCRIPT, "--mnist-mirror", OFFLINE, *flags, cwd=tmp_path, check=0)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """One epoch of the main job's defaults."""
    cwd = tmp_path_factory.mktemp("main")
    return cwd, _run(cwd, "--num-epochs", "1")


def test_defaults_speed_lines_files_and_closing_line(one_epoch):
    cwd, proc = one_epoch
    err = proc.stderr
    said = re.search(r"defaults for the sample: (.*)", err).group(1)
    assert "--network lenet" in said and f"--model-prefix {PREFIX}" in said and "--num-epochs" not in said
    assert len(re.findall(r"Epoch\[0\] Batch \[\d+-\d+\]\tSpeed: [\d.]+ samples/sec\taccuracy=", err)) >= 2
    for suffix in ("-symbol.json", "-0001.params", "-0001.states", "-metrics.jsonl", "-curve.png", ".log"):
        assert (cwd / f"{PREFIX}{suffix}").is_file(), suffix
    assert [json.loads(x)["epoch"] for x in open(cwd / f"{PREFIX}-metrics.jsonl")] == [0]
    closing = err.strip().splitlines()[-1]
    for name in (f"{PREFIX}-metrics.jsonl", f"{PREFIX}-curve.png", f"{PREFIX}.log", f"{PREFIX}-NNNN.params"):
        assert name in closing, name


def test_start_up_line_is_short_and_the_log_file_has_everything(one_epoch):
    cwd, proc = one_epoch
    start = re.search(r"start with arguments (.*)", proc.stderr).group(1)
    assert "num_epochs=1" in start and "network='lenet'" in start  # a given flag, a sample default
    assert "Namespace" not in start and "data_nthreads" not in start and len(start) < 300
    log = (cwd / f"{PREFIX}.log").read_text()
    settings = re.search(r"all settings (Namespace\(.*\))", log).group(1)
    assert "data_nthreads=4" in settings and "num_epochs=1" in settings and "pad_size=2" in settings
    assert "Speed:" in log and "Epoch[0] Validation-accuracy=" in log and "done: checkpoints" in log


def test_offline_run_leaves_no_data_folder(one_epoch):
    cwd, _ = one_epoch
    assert not (cwd / "data").exists()


def test_log_file_flag_is_appended_on_resume(tmp_path):
    flags = ["--network", "mlp", "--model-prefix", "ck/mlp", "--log-file", "my.log"]
    _run(tmp_path, *flags, "--num-epochs", "1")
    proc = _run(tmp_path, *flags, "--num-epochs", "2", "--load-epoch", "auto")
    log = (tmp_path / "my.log").read_text()
    assert log.count("all settings Namespace(") == 2 and "Epoch[0] Train-accuracy" in log
    assert "Epoch[1] Train-accuracy" in log and "log my.log" in proc.stderr
    assert not (tmp_path / "ck" / "mlp.log").exists()


@pytest.mark.slow
def test_main_job_reaches_098(tmp_path):
    """The first README command's training part, as it is: LeNet reaches 0.98 on the sample (about 1-2 minutes)."""
    proc = _run(tmp_path)
    acc = [float(v) for v in re.findall(r"Epoch\[\d+\] Validation-accuracy=([\d.]+)", proc.stderr)]
    assert len(acc) >= 10 and acc[-1] >= 0.98, acc
