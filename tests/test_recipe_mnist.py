"""Today's recipe end to end on the MNIST sample: auto-augment, mixup, cutmix, random erasing, label smoothing and EMA
together, through train_mnist.py offline, against the plain recipe of the same sample (the sample's defaults)."""

import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_cli

OFFLINE = "file:///nonexistent-mirror"  # no network in tests: the download fails at once, the sample is used
RECIPE = (
    *("--auto-augment", "ta_wide", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0"),
    *("--random-erase", "0.1", "--label-smoothing", "0.1", "--ema", "0.999"),
)


def _accuracies(stderr):
    return [float(a) for a in re.findall(r"Epoch\[\d+\] Validation-accuracy=([\d.]+)", stderr)]


def _train(tmp_path, name, *flags):
    prefix = tmp_path / name
    proc = run_cli(
        REPO / "train_mnist.py", "--mnist-mirror", OFFLINE, "--model-prefix", prefix, *flags, cwd=tmp_path, check=0
    )
    return proc.stderr


def test_the_recipe_trains_and_resumes_to_the_same_weights(tmp_path):
    """Two epochs of the whole recipe learn (validation of the EMA weights, which lag: above chance and rising);
    the run resumed from its first epoch's checkpoint ends with the same weights."""
    acc = _accuracies(_train(tmp_path, "full", *RECIPE, "--num-epochs", "2"))
    assert len(acc) == 2 and acc[-1] > 0.15 and acc[-1] > acc[0], acc
    # the first epoch's files of the same run (a 1-epoch run's cosine schedule would differ), resumed elsewhere
    for suffix in ("-symbol.json", "-0001.params", "-0001.states"):
        shutil.copy(tmp_path / f"full{suffix}", tmp_path / f"part{suffix}")
    resumed = _train(tmp_path, "part", *RECIPE, "--num-epochs", "2", "--load-epoch", "1")
    assert _accuracies(resumed) == acc[1:], (resumed, acc)
    full, part = load_file(tmp_path / "full-0002.params"), load_file(tmp_path / "part-0002.params")
    assert full.keys() == part.keys() and all(torch.equal(full[k], part[k]) for k in full)


@pytest.mark.slow
def test_the_recipe_reaches_the_plain_recipes_accuracy(tmp_path):
    """The sample's 20 epochs with the whole recipe against the same 20 epochs plain (figures in the closing note)."""
    plain = _accuracies(_train(tmp_path, "plain"))[-1]
    recipe = _accuracies(_train(tmp_path, "recipe", *RECIPE))[-1]
    print(f"plain={plain:.4f} recipe={recipe:.4f}")
    # measured: plain 0.988, recipe 0.964 (EMA 0.999 lags over 1,260 steps; the recipe is for long runs)
    assert plain >= 0.98 and recipe >= 0.95, (plain, recipe)
