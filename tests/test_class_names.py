"""Class names and counts from the data, through the command lines: im2rec --list keeps PREFIX.classes, packing
keeps it beside the .rec, training writes it into PREFIX-symbol.json and takes the class count from the data,
score.py reports top-5 only for more than 5 classes, predict.py names the classes and skips unreadable files."""

import json

import cv2
import numpy as np
import pytest

from common import checkpoint

IM2REC = "tools/im2rec.py"
NAMES = ["cat", "dog", "emu"]
TRAIN = ["train_imagenet.py", "--network", "mlp", "--image-shape", "3,16,16", "--gpus", ""]
TRAIN += ["--batch-size", "6", "--num-epochs", "1", "--disp-batches", "1"]


def class_folders(root, names, per_class=2):
    """root/NAME/k.jpg: per_class small random pictures in each class folder; returns root."""
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            cv2.imwrite(str(root / name / f"{k}.jpg"), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return root


def make_rec(cli, tmp_path, names, prefix="data"):
    """im2rec --list --recursive, then pack: the prefix of PREFIX.rec (with PREFIX.classes beside it)."""
    root = class_folders(tmp_path / f"{prefix}_images", names)
    cli(IM2REC, "--list", "--recursive", tmp_path / prefix, root, check=0)
    cli(IM2REC, "--resize", "16", tmp_path / prefix, root, check=0)
    return tmp_path / prefix


def test_list_writes_class_names_and_packing_keeps_them(cli, tmp_path):
    root = class_folders(tmp_path / "images", NAMES)
    proc = cli(IM2REC, "--list", "--recursive", "--no-shuffle", tmp_path / "d", root, check=0)
    assert proc.stdout.split() == ["cat", "0", "dog", "1", "emu", "2"]  # MXNet's table, unchanged
    assert (tmp_path / "d.classes").read_text() == "cat\ndog\nemu\n"
    cli(IM2REC, "--resize", "16", tmp_path / "d", root, check=0)
    assert (tmp_path / "d.rec").exists() and (tmp_path / "d.classes").read_text() == "cat\ndog\nemu\n"
    cli(IM2REC, "--list", "--recursive", "--train-ratio", "0.5", tmp_path / "s", root, check=0)
    for part in ("s_train", "s_val"):
        assert (tmp_path / f"{part}.classes").read_text().split() == NAMES


def test_classes_file_that_does_not_cover_the_labels_is_one_line(cli, tmp_path):
    prefix = make_rec(cli, tmp_path, NAMES)
    prefix.with_suffix(".classes").write_text("cat\ndog\n")
    proc = cli(*TRAIN, "--data-train", prefix.with_suffix(".rec"), "--test-io", "1", check=2)
    assert proc.stderr.count("\n") == 1 and "data.classes names 2 classes but the data has label 2" in proc.stderr


def test_training_takes_count_and_names_from_the_rec_and_predict_prints_names(cli, tmp_path):
    prefix = make_rec(cli, tmp_path, NAMES)
    model = tmp_path / "m" / "m"
    proc = cli(*TRAIN, "--data-train", prefix.with_suffix(".rec"), "--model-prefix", model, check=0)
    assert "--num-classes not given: 3 classes, from its .classes file" in proc.stderr
    symbol = checkpoint.read_symbol(str(model))
    assert symbol["classes"] == NAMES and symbol["arguments"]["num_classes"] == 3
    image = tmp_path / "data_images" / "dog" / "0.jpg"
    proc = cli("predict.py", "--model", model, image, "--top-k", "3", check=0)
    printed = {line.split()[2] for line in proc.stdout.splitlines()[1:]}
    assert printed == set(NAMES)


def test_num_classes_far_above_the_data_is_said(cli, tmp_path):
    rec = make_rec(cli, tmp_path, NAMES).with_suffix(".rec")
    proc = cli(*TRAIN, "--data-train", rec, "--num-classes", "1000", "--test-io", "1", check=0)
    assert "--num-classes 1000 but" in proc.stderr and "has 3 classes" in proc.stderr
    proc = cli(*TRAIN, "--data-train", rec, "--num-classes", "4", "--test-io", "1", check=0)
    assert "--num-classes 4 but" not in proc.stderr
    proc = cli(*TRAIN, "--data-train", rec, "--top-k", "5", "--test-io", "1", check=2)
    assert "--top-k 5 is more than the 3 classes" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def four_class_model(cli, tmp_path):
    """A model trained for one epoch on a 4-class .rec: (model prefix, .rec)."""
    rec = make_rec(cli, tmp_path, ["a", "b", "c", "d"]).with_suffix(".rec")
    model = tmp_path / "four"
    cli(*TRAIN, "--data-train", rec, "--model-prefix", model, check=0)
    return model, rec


def test_score_on_four_classes_has_no_top5(cli, four_class_model, tmp_path):
    model, rec = four_class_model
    report = tmp_path / "r.json"
    proc = cli("score.py", "--model", model, "--data-val", rec, "--report-json", report, check=0)
    assert "('accuracy'," in proc.stderr and "top_k_accuracy_5" not in proc.stderr
    doc = json.loads(report.read_text())
    assert "top_k_accuracy_5" not in doc and [r["name"] for r in doc["per_class"]] == ["a", "b", "c", "d"]


def test_predict_skips_an_unreadable_file_and_exits_2(cli, four_class_model, tmp_path):
    model, _ = four_class_model
    good = [tmp_path / "data_images" / c / "0.jpg" for c in "ab"]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a JPEG")
    out = tmp_path / "p.json"
    proc = cli("predict.py", "--model", model, good[0], bad, good[1], "--json", out, check=2)
    assert str(good[0]) in proc.stdout and str(good[1]) in proc.stdout and str(bad) not in proc.stdout
    assert f"skipped {bad}: not a readable image" in proc.stderr and "Traceback" not in proc.stderr
    assert "1 of 3 images could not be read" in proc.stderr
    assert [r["path"] for r in json.loads(out.read_text())] == [str(good[0]), str(good[1])]
