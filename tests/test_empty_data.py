"""Data with nothing to train on, batches with nothing in them, labels that are no classes: through the scripts."""

import json
import math

import pytest

from common import recordio
from tests.test_data import random_images, write_rec

TRAIN = ["train_imagenet.py", "--network", "mlp", "--image-shape", "3,32,32", "--num-classes", "2", "--gpus", ""]
BAD = b"\xff\xd8 not a jpeg"


def bad_records(n, start=100):
    """n records whose payload is no image."""
    return [(recordio.IRHeader(0, 1, start + k, 0), BAD) for k in range(n)]


def one_line_error(proc, needle):
    """Exit 2, one line on stderr after the log, naming `needle`, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert needle in last, last


def test_empty_rec_is_an_error_naming_the_file(tmp_path, cli):
    rec = write_rec(tmp_path / "empty", [], [])
    proc = cli(*TRAIN, "--data-train", rec, "--num-epochs", "1", "--model-prefix", tmp_path / "m")
    one_line_error(proc, f"{rec} holds no image")
    assert not list(tmp_path.glob("m-*"))  # no checkpoint of an epoch on nothing


def test_rec_of_only_header_records_is_an_error(tmp_path, cli):
    rec = write_rec(tmp_path / "hdr", [], [], extra=[(recordio.IRHeader(0, 0, 0, 0), b"")])
    one_line_error(cli(*TRAIN, "--data-train", rec, "--num-epochs", "1"), "holds no image (1 records without one)")


def test_no_record_decodes_is_an_error(tmp_path, cli):
    rec = write_rec(tmp_path / "bad", [], [], extra=bad_records(4))
    proc = cli(*TRAIN, "--data-train", rec, "--num-epochs", "1", "--batch-size", "2", "--model-prefix", tmp_path / "m")
    one_line_error(proc, "epoch 0: no training image of")
    assert "4 images that do not decode" in proc.stderr
    assert not list(tmp_path.glob("m-0*"))


@pytest.mark.parametrize("label, shown", [(1.5, "1.5"), (math.nan, "nan"), (-1.0, "-1")])
def test_labels_that_are_no_class_number_are_refused(tmp_path, cli, label, shown):
    rec = write_rec(tmp_path / "lab", random_images(3, 32, 32), [0, label, 1])
    proc = cli(*TRAIN, "--data-train", rec, "--num-epochs", "1")
    one_line_error(proc, f"label {shown} of ")
    assert "lab.rec" in proc.stderr.strip().splitlines()[-1]


def test_a_validation_batch_with_no_image_is_skipped_and_the_epoch_saved(tmp_path, cli):
    train = write_rec(tmp_path / "t", random_images(8, 32, 32), [0, 1] * 4)
    # validation in file order, batches of 2: the last batch holds only undecodable records
    val = write_rec(tmp_path / "v", random_images(4, 32, 32, seed=1), [0, 1, 0, 1], extra=bad_records(2))
    prefix = tmp_path / "m"
    proc = cli(
        *TRAIN,
        *("--data-train", train, "--data-val", val, "--batch-size", "2", "--num-epochs", "2"),
        *("--model-prefix", prefix, "--lr", "0.01"),
        check=0,
    )
    assert "Epoch[1] Validation-accuracy=" in proc.stderr
    assert "Epoch[0] skipped in the validation data: 2 images that do not decode" in proc.stderr
    assert "Epoch[1] skipped in the validation data: 2 images that do not decode" in proc.stderr
    assert (tmp_path / "m-0002.params").is_file()
    lines = [json.loads(x) for x in (tmp_path / "m-metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1] and all(math.isfinite(r["validation-accuracy"]) for r in lines)


def test_score_skips_an_empty_batch_and_says_what_it_skipped(tmp_path, cli):
    train = write_rec(tmp_path / "t", random_images(8, 32, 32), [0, 1] * 4)
    val = write_rec(tmp_path / "v", random_images(4, 32, 32, seed=1), [0, 1, 0, 1], extra=bad_records(2))
    prefix = tmp_path / "m"
    cli(*TRAIN, "--data-train", train, "--batch-size", "4", "--num-epochs", "1", "--model-prefix", prefix, check=0)
    report = tmp_path / "r.json"
    proc = cli(
        "score.py",
        *("--model", prefix, "--load-epoch", "1", "--data-val", val, "--batch-size", "2", "--report-json", report),
        check=0,
    )
    assert "skipped: 2 images that do not decode" in proc.stderr
    doc = json.loads(report.read_text())
    assert doc["num_examples"] == 4 and doc["skipped_images"] == 2
