"""--keep-last and the best checkpoint (PREFIX-best.json, --load-epoch best) through the command lines."""

import json
import os
import re

import cv2
import pytest

from tests.test_data import random_images, write_rec
from tests.test_train_cli import MLP

REC = ["--network", "mlp", "--image-shape", "3,32,32", "--num-classes", "2", "--batch-size", "8", "--gpus", ""]
REC += ["--disp-batches", "1", "--data-nthreads", "1", "--lr", "0.05", "--rgb-std", "58.393,57.12,57.375"]


def _saved(prefix):
    """The epochs with a .params file and those with a .states file under prefix."""
    names = os.listdir(os.path.dirname(prefix))
    base = os.path.basename(prefix)
    return tuple(
        sorted(int(n[len(base) + 1 : -len(ext)]) for n in names if n.startswith(base + "-") and n.endswith(ext))
        for ext in (".params", ".states")
    )


def _val_acc(log):
    """{saved epoch number: Validation-accuracy} from a training log (epoch index E is saved as E + 1)."""
    return {int(e) + 1: float(a) for e, a in re.findall(r"Epoch\[(\d+)\] Validation-accuracy=([\d.]+)", log)}


def _best(prefix):
    with open(f"{prefix}-best.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """A 24-image, 2-class .rec of random smooth 32-pixel images."""
    return write_rec(tmp_path_factory.mktemp("rec") / "tiny", random_images(24, 32, 32), [k % 2 for k in range(24)])


@pytest.fixture(scope="module")
def every_other(rec, tmp_path_factory):
    """(prefix, log) of 4 epochs of train_imagenet.py saved every 2nd epoch, validated on the training .rec."""
    from tests.conftest import run_cli

    prefix = tmp_path_factory.mktemp("period") / "mlp"
    flags = ["--data-train", rec, "--data-val", rec, "--num-epochs", "4", "--save-period", "2"]
    proc = run_cli("train_imagenet.py", *REC, *flags, "--model-prefix", prefix, check=0)
    return prefix, proc.stderr


def test_keep_last_leaves_the_newest_and_the_best(tmp_path, cli):
    prefix = tmp_path / "ck" / "mlp"
    proc = cli(*MLP, "--num-epochs", "4", "--model-prefix", prefix, "--keep-last", "2", check=0)
    acc, best = _val_acc(proc.stderr), _best(prefix)
    assert set(acc) == {1, 2, 3, 4}
    assert best["validation-accuracy"] == pytest.approx(max(acc.values()), abs=1e-6)
    assert best["epoch"] == min(e for e, a in acc.items() if a == max(acc.values()))  # a tie keeps the first
    kept = sorted({3, 4, best["epoch"]})
    assert _saved(prefix) == (kept, kept)
    assert f"Best checkpoint is now epoch {best['epoch']}: Validation-accuracy=" in proc.stderr
    assert "--keep-last 2: removed mlp-0001.params" in proc.stderr
    assert not [f for f in os.listdir(prefix.parent) if f.endswith(".tmp")]


def test_keep_last_never_removes_an_older_best(rec, tmp_path, cli):
    prefix = tmp_path / "mlp"
    train = ["train_imagenet.py", *REC, "--data-train", rec, "--data-val", rec, "--model-prefix", prefix]
    cli(*train, "--num-epochs", "1", check=0)
    # a best no later epoch can beat: the resumed run must keep epoch 1 beside its newest one
    (tmp_path / "mlp-best.json").write_text(json.dumps({"epoch": 1, "validation-accuracy": 1.0}))
    proc = cli(*train, "--num-epochs", "4", "--load-epoch", "1", "--keep-last", "1", check=0)
    assert _saved(prefix) == ([1, 4], [1, 4]) and _best(prefix)["epoch"] == 1
    assert "Best checkpoint is now" not in proc.stderr
    proc = cli(*train, "--num-epochs", "2", "--load-epoch", "best", check=0)
    assert "resuming at epoch 1" in proc.stderr  # training's own --load-epoch takes best too


def test_best_is_among_saved_epochs_and_scores_as_recorded(every_other, rec, cli):
    prefix, log = every_other
    acc, best = _val_acc(log), _best(prefix)
    assert set(acc) == {1, 2, 3, 4} and _saved(prefix)[0] == [2, 4]
    saved = {e: a for e, a in acc.items() if e in (2, 4)}
    assert best["epoch"] in (2, 4) and best["validation-accuracy"] == pytest.approx(max(saved.values()), abs=1e-6)
    proc = cli("score.py", "--model", prefix, "--load-epoch", "best", "--data-val", rec, "--batch-size", "8", check=0)
    scored = float(re.search(r"\('accuracy', ([\d.e-]+)\)", proc.stderr).group(1))
    assert scored == pytest.approx(best["validation-accuracy"], abs=1e-6)


def test_predict_export_and_fine_tune_take_best(every_other, rec, tmp_path, cli):
    prefix, _ = every_other
    epoch = str(_best(prefix)["epoch"])
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), random_images(1, 32, 32, seed=3)[0])
    by_best = cli("predict.py", image, "--model", prefix, "--load-epoch", "best", "--top-k", "2", check=0)
    by_number = cli("predict.py", image, "--model", prefix, "--load-epoch", epoch, "--top-k", "2", check=0)
    assert by_best.stdout == by_number.stdout and "0." in by_best.stdout
    out = tmp_path / "m.pt2"
    proc = cli(
        "tools/export.py", "--model", prefix, "--load-epoch", "best", "--format", "torch-export", "--output", out
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    tuned = tmp_path / "tuned"
    flags = ["--pretrained-model", prefix, "--load-epoch", "best", "--num-classes", "2", "--data-train", rec]
    flags += ["--num-epochs", "1", "--batch-size", "8", "--gpus", "", "--model-prefix", tuned]
    cli("fine-tune.py", *flags, check=0)
    assert os.path.isfile(f"{tuned}-0001.params")


def test_best_without_validation_data_is_one_line(rec, tmp_path, cli):
    prefix = tmp_path / "mlp"
    cli("train_imagenet.py", *REC, "--data-train", rec, "--num-epochs", "1", "--model-prefix", prefix, check=0)
    assert not os.path.exists(f"{prefix}-best.json")
    for argv in (
        ["score.py", "--model", prefix, "--load-epoch", "best", "--data-val", rec],
        ["train_imagenet.py", *REC, "--data-train", rec, "--model-prefix", prefix, "--load-epoch", "best"],
    ):
        proc = cli(*argv, check=2)
        errors = [x for x in proc.stderr.splitlines() if x.startswith(f"{argv[0]}: error:")]  # after training's log
        assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
        assert str(prefix) in errors[0] and "--data-val" in errors[0] and "--load-epoch N" in errors[0]


def test_load_epoch_flag_refuses_other_words(cli):
    proc = cli("predict.py", "x.png", "--model", "m", "--load-epoch", "bestest", check=2)
    assert "--load-epoch: 'bestest' is neither an epoch number (>= 0) nor best" in proc.stderr
