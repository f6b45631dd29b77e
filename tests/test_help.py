"""--help of every script: answered before any heavy library loads, each default said once, choices listed."""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = [
    "train_mnist.py",
    "train_cifar10.py",
    "train_imagenet.py",
    "fine-tune.py",
    "score.py",
    "predict.py",
    "benchmark.py",
    "benchmark_score.py",
    "tools/im2rec.py",
    "tools/rec2idx.py",
    "tools/verify_rec.py",
    "tools/launch.py",
    "tools/export.py",
    "tools/convert_mxnet.py",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_loads_no_heavy_library_and_says_each_default_once(script):
    # -X importtime lists every module imported: deterministic, where a timing would depend on the machine's load
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "torchvision", "timm", "onnx", "matplotlib"}, script
    assert "(default: None)" not in proc.stdout
    assert not re.search(r"default[^\n]*\(default: ", proc.stdout)  # a default given in the text is not repeated


def test_enumerated_flags_list_their_choices():
    out = subprocess.run(
        [sys.executable, "train_imagenet.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    ).stdout
    flat = " ".join(out.split())
    for needle in ("dist_sync", "nccl", "adadelta", "lbsgd", "linear, power2, sqrt", "xavier", "bfloat16", "dali"):
        assert needle in flat, needle
    assert "resnet-v1" in flat and "inception-resnet-v2" in flat  # --network lists the networks


def test_im2rec_help_says_it_shuffles():
    out = subprocess.run(
        [sys.executable, "tools/im2rec.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    ).stdout
    flat = " ".join(out.split())
    assert "shuffle the .lst (seed 100), the default" in flat and "(default: False)" not in flat
