"""Every flag value out of range ends at parse time: argparse's one error line naming the flag, exit 2, no traceback."""

import argparse
import importlib.util
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import REPO, run_cli

from common import flags

SCORE = ["score.py", "--model", "no-model", "--data-val", "no.rec"]
PREDICT = ["predict.py", "--model", "no-model", "no.jpg"]

# (script and flags, the flag the error must name): the values the issue reported, each through its script
BAD = {
    "train-batch-size-0": (["train_mnist.py", "--batch-size", "0"], "--batch-size"),
    "train-batch-size-neg": (["train_imagenet.py", "--batch-size", "-8"], "--batch-size"),
    "score-batch-size-0": ([*SCORE, "--batch-size", "0"], "--batch-size"),
    "score-batch-size-neg": ([*SCORE, "--batch-size", "-1"], "--batch-size"),
    "predict-batch-size-0": ([*PREDICT, "--batch-size", "0"], "--batch-size"),
    "num-classes": (["train_mnist.py", "--num-classes", "-3"], "--num-classes"),
    "lr": (["train_mnist.py", "--lr", "-1"], "--lr"),
    "mom": (["train_mnist.py", "--mom", "-5"], "--mom"),
    "ema": (["train_mnist.py", "--ema", "5"], "--ema"),
    "label-smoothing": (["train_mnist.py", "--label-smoothing", "2"], "--label-smoothing"),
    "seed": (["train_mnist.py", "--seed", "-1"], "--seed"),
    "aspect-ratio": (["train_cifar10.py", "--max-random-aspect-ratio", "-1"], "--max-random-aspect-ratio"),
    "disp-batches": (["train_mnist.py", "--disp-batches", "0"], "--disp-batches"),
    "top-k-over-classes": (["train_mnist.py", "--num-classes", "5", "--top-k", "10"], "--top-k"),
    "top-k-neg": (["train_mnist.py", "--top-k", "-1"], "--top-k"),
    "pad-size": (["train_cifar10.py", "--pad-size", "-5"], "--pad-size"),
    "save-period": (["train_mnist.py", "--save-period", "0"], "--save-period"),
    "score-threads": ([*SCORE, "--threads", "-3"], "--threads"),
    "score-max-num-examples": ([*SCORE, "--max-num-examples", "-1"], "--max-num-examples"),
    "score-report-dir": ([*SCORE, "--report-json", "{tmp}"], "--report-json"),
    "score-report-no-folder": ([*SCORE, "--report-json", "{tmp}/missing/r.json"], "--report-json"),
    "predict-json-dir": ([*PREDICT, "--json", "{tmp}"], "--json"),
    "im2rec-ratio": (["tools/im2rec.py", "--train-ratio", "1.5", "p", "r"], "--train-ratio"),
    "benchmark-overlap": (["benchmark.py", "--overlap", "1"], "--overlap"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{case: (CompletedProcess, seconds)}: all the bad command lines, run at once (each starts a Python)."""
    tmp = str(tmp_path_factory.mktemp("flags"))

    def run(case):
        args = [a.replace("{tmp}", tmp) for a in BAD[case][0]]
        tic = time.monotonic()
        proc = run_cli(*args, timeout=120)
        return proc, time.monotonic() - tic

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(BAD, pool.map(run, BAD)))


@pytest.mark.parametrize("case", BAD)
def test_bad_value_ends_at_parse_time(results, case):
    """Exit 2 with argparse's error line naming the flag; no traceback, nothing loaded or trained."""
    proc, seconds = results[case]
    flag = BAD[case][1]
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert f"error: argument {flag}:" in err[-1] and sum("error:" in line for line in err) == 1, proc.stderr
    assert seconds < 60  # parse time: no data read, no epoch run


def _parse(script, *argv):
    """The namespace that SCRIPT's parse_args makes of argv (in this process: nothing runs)."""
    spec = importlib.util.spec_from_file_location(script.replace("-", "_")[:-3], REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.parse_args(list(argv))
    return out[1] if isinstance(out, tuple) else out


def test_edge_values_still_accepted():
    """MXNet's meaningful edges parse: --top-k 0 (no report), --ema 0, --label-smoothing 0, --num-epochs 0, ..."""
    a = _parse(
        "train_mnist.py",
        *("--top-k", "0", "--ema", "0", "--label-smoothing", "0", "--num-epochs", "0", "--seed", "0"),
        *("--mom", "0", "--lr", "0", "--load-epoch", "auto", "--pad-size", "0", "--monitor", "0"),
    )
    assert (a.top_k, a.ema, a.label_smoothing, a.num_epochs, a.seed, a.mom, a.load_epoch) == (0, 0, 0, 0, 0, 0, "auto")
    a = _parse("train_mnist.py", "--top-k", "10", "--ema", "0.999", "--label-smoothing", "0.1")
    assert (a.top_k, a.ema, a.label_smoothing) == (10, 0.999, 0.1)
    a = _parse("train_imagenet.py", "--max-random-aspect-ratio", "0", "--min-random-area", "1", "--brightness", "1")
    assert (a.max_random_aspect_ratio, a.min_random_area, a.brightness) == (0, 1, 1)
    a = _parse("fine-tune.py", "--pretrained-model", "m", "--pretrained-epoch", "0", "--freeze-backbone", "1")
    assert (a.pretrained_epoch, a.freeze_backbone, a.num_classes) == (0, 1, None)


# other scripts' flags, parsed in this process (no Python to start): (script, argv, the flag named)
MORE = [
    ("fine-tune.py", ["--pretrained-model", "m", "--num-classes", "3", "--top-k", "5"], "--top-k"),
    ("train_imagenet.py", ["--num-classes", "1000", "--top-k", "1001"], "--top-k"),  # without it: the data's count
    ("train_imagenet.py", ["--min-random-area", "0"], "--min-random-area"),
    ("train_cifar10.py", ["--brightness", "2"], "--brightness"),
    ("train_cifar10.py", ["--random-mirror", "2"], "--random-mirror"),
    ("train_mnist.py", ["--lr", "fast"], "--lr"),
    ("train_mnist.py", ["--num-workers", "0"], "--num-workers"),
    ("train_mnist.py", ["--shuffle-seed", "-2"], "--shuffle-seed"),
]


@pytest.mark.parametrize("script, argv, flag", MORE)
def test_more_flags_refused(capsys, script, argv, flag):
    """The same mechanism covers every numeric flag: a sample of other scripts and flags."""
    with pytest.raises(SystemExit) as exit_:
        _parse(script, *argv)
    assert exit_.value.code == 2 and f"error: argument {flag}:" in capsys.readouterr().err


def test_types_name_the_range(tmp_path):
    """The shared types: the value, and the range to give, in the message."""
    cases = [
        (flags.count(), "0", "0 is out of range (give an integer >= 1)"),
        (flags.fraction(below=True), "1", "give a number in [0, 1)"),
        (flags.number(above=0), "0", "give a number > 0"),
        (flags.number(), "nan", "out of range"),
        (flags.integer(min=0), "2.5", "'2.5' is not an integer >= 0"),
        (flags.output_file(), str(tmp_path), "is a folder"),
    ]
    for kind, text, message in cases:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            kind(text)
    assert flags.output_file(stdout=True)("-") == "-"
    assert flags.output_file()(str(tmp_path / "r.json")) == str(tmp_path / "r.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(tmp_path):
    """An output in a folder we cannot write to is refused before scoring."""
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    proc = run_cli(*SCORE, "--report-json", folder / "r.json", timeout=120)
    assert proc.returncode == 2 and "error: argument --report-json:" in proc.stderr and "not writable" in proc.stderr
