"""Evaluation recipes through the command lines: --val-resize-size in training validation, recorded in
PREFIX-symbol.json and reused by score.py and predict.py; the complexity figures in training's log and score.py's
report; predict.py --format json scored by score.py --preds/--gts as score.py scores the model itself."""

import json
import re
import shutil
import types

import cv2
import numpy as np
import pytest

NAMES = ["blue", "green", "red"]
BGR = {"blue": (255, 0, 0), "green": (0, 255, 0), "red": (0, 0, 255)}
TRAIN = ["train_imagenet.py", "--network", "mlp", "--image-shape", "3,16,16", "--gpus", "", "--batch-size", "6"]
TRAIN += ["--disp-batches", "1", "--random-resized-crop", "1", "--rgb-std", "58,57,57", "--lr", "0.05", "--loss", "ce"]
COMPLEXITY = re.compile(r"Complexity of one 3,16,16 image: params=([\d.e+-]+)M gmacs=([\d.e+-]+)")


def pictures(root):
    """root/CLASS/k.png: 6 pictures of 64x48 or 48x64 per class; the class is the colour of a noisy border, the
    centre 24x24 is the same flat grey in every picture. A 16x16 centre crop of the picture as it is sees only that
    grey; after resizing the short side to 16 it sees the border too."""
    rng = np.random.default_rng(0)
    for name in NAMES:
        (root / name).mkdir(parents=True)
        for k in range(6):
            h, w = (48, 64) if k % 2 else (64, 48)
            img = np.clip(np.array(BGR[name]) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
            img[h // 2 - 12 : h // 2 + 12, w // 2 - 12 : w // 2 + 12] = 128
            cv2.imwrite(str(root / name / f"{k}.png"), img)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-epoch MLP trained on the pictures with --val-resize-size 16: (prefix, image folder, training stderr)."""
    from tests.conftest import run_cli

    tmp = tmp_path_factory.mktemp("eval")
    images = pictures(tmp / "images")
    prefix = tmp / "m" / "m"
    data = ["--data-train", images, "--data-val", images]
    proc = run_cli(*TRAIN, *data, "--num-epochs", "3", "--val-resize-size", "16", "--model-prefix", prefix, check=0)
    return prefix, images, proc.stderr


def _validation(err, name):
    return [float(v) for v in re.findall(rf"Epoch\[\d+\] Validation-{name}=([\d.]+)", err)]


def test_val_resize_size_changes_validation_and_is_recorded(trained, cli):
    prefix, images, err = trained
    symbol = json.loads(open(f"{prefix}-symbol.json").read())
    assert symbol["preprocess"]["resize"] == 16 and symbol["preprocess"]["image_shape"] == [3, 16, 16]
    # the same seed without the resize: the same training batches, the same weights after epoch 0, so only the
    # validation input differs, and with it the validation loss
    plain = cli(*TRAIN, "--data-train", images, "--data-val", images, "--num-epochs", "1", check=0).stderr
    train_ce = re.compile(r"Epoch\[0\] Train-cross-entropy=([\d.]+)")
    assert train_ce.search(plain).group(1) == train_ce.search(err).group(1)
    assert _validation(plain, "cross-entropy")[0] != _validation(err, "cross-entropy")[0]
    assert _validation(plain, "accuracy")[0] == pytest.approx(1 / 3)  # every crop the same grey: one class
    assert COMPLEXITY.search(err) and COMPLEXITY.search(plain)


def test_score_reuses_the_saved_resize_and_reports_complexity(trained, cli, tmp_path):
    prefix, images, err = trained
    report = tmp_path / "r.json"
    cli("score.py", "--model", prefix, "--data-val", images, "--report-json", report, check=0)
    doc = json.loads(report.read_text())
    assert doc["preprocess"]["resize"] == 16
    assert doc["accuracy"] == pytest.approx(_validation(err, "accuracy")[-1])  # what training's validation saw
    params, gmacs = (float(v) for v in COMPLEXITY.search(err).groups())
    assert doc["complexity"]["params_m"] == pytest.approx(params, rel=1e-3)
    assert doc["complexity"]["gmacs"] == pytest.approx(gmacs, rel=1e-3)
    assert doc["complexity"]["params"] == 16 * 16 * 3 * 128 + 128 + 128 * 64 + 64 + 64 * 3 + 3  # mlp: 128, 64, 3
    import score

    conf = np.array(
        score.main(["--model", str(prefix), "--data-val", str(images), "--val-resize-size", "0"])["confusion"]
    )
    assert (conf.sum(0) > 0).sum() == 1  # without the resize every crop is the same grey: one class predicted


def test_val_resize_size_below_the_crop_is_one_line(trained, cli, capsys):
    prefix, images, _ = trained
    proc = cli(*TRAIN, "--data-train", images, "--val-resize-size", "12", "--num-epochs", "1", check=2)
    last = proc.stderr.strip().splitlines()[-1]
    assert "--val-resize-size 12" in last and ">= 16" in last and "Traceback" not in proc.stderr
    import score

    with pytest.raises(SystemExit) as stop:
        score.main(["--model", str(prefix), "--data-val", str(images), "--val-resize-size", "15"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and "--val-resize-size 15" in err and ">= 16" in err


def test_zoo_models_are_scored_with_their_own_sizes(tmp_path):
    from torchvision import models

    from common import inference, modelzoo

    for arch in ("inception_v3", "resnet50", "efficientnet_b3", "regnet_x_400mf"):
        tf = models.get_model_weights(arch).DEFAULT.transforms()
        info = {"preprocess": modelzoo.zoo_preprocess(models.get_model_weights(arch).DEFAULT)}
        flags = types.SimpleNamespace(image_shape=None, rgb_mean=None, rgb_std=None, val_resize_size=None)
        pre = inference.resolve_preprocess(flags, info)
        assert (pre.resize, pre.shape) == (tf.resize_size[0], (3, tf.crop_size[0], tf.crop_size[0])), arch
    # the validation iterator resizes the short side to pre.resize, then crops the centre
    img = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    (tmp_path / "c").mkdir()
    cv2.imwrite(str(tmp_path / "c" / "a.png"), img[:, :, ::-1])
    pre = types.SimpleNamespace(shape=(3, 16, 16), rgb_mean="0,0,0", rgb_std="1,1,1", resize=20)
    x, _ = next(iter(inference.val_iter(str(tmp_path), "", pre, 1, 1)))
    resized = cv2.resize(img, (30, 20), interpolation=cv2.INTER_AREA)  # 40x60 -> 20x30 (torchvision's sizes)
    assert np.array_equal(x[0].numpy(), resized[2:18, 7:23])


def _gts(images, tmp_path):
    """The ground-truth map of the pictures, by name under the folder; its path."""
    gts = {f"{p.parent.name}/{p.name}": p.parent.name for p in sorted(images.glob("*/*.png"))}
    path = tmp_path / "gts.json"
    path.write_text(json.dumps(gts))
    return path


@pytest.fixture(scope="module")
def predicted(trained, tmp_path_factory):
    """predict.py --format json --top-k 2 of the epoch-1 model on the pictures: the folder of prediction files."""
    from tests.conftest import run_cli

    prefix, images, _ = trained
    preds = tmp_path_factory.mktemp("preds") / "preds"
    args = ["--model", prefix, "--load-epoch", "1", images, "--format", "json", "--out-dir", preds, "--top-k", "2"]
    run_cli("predict.py", *args, check=0)
    return preds


def test_predict_json_scored_as_score_scores_the_model(trained, predicted, cli, tmp_path):
    import score

    prefix, images, _ = trained
    model_doc = score.main(["--model", str(prefix), "--load-epoch", "1", "--data-val", str(images)])
    preds = predicted
    one = json.loads((preds / "red" / "0.png.json").read_text())
    assert one["image"] == "red/0.png" and one["num_classes"] == 3 and len(one["top_k"]) == 2
    assert set(one["top_k"][0]) == {"class", "name", "score"} and (preds / "synset.txt").read_text().split() == NAMES
    by_files, text = tmp_path / "p.json", tmp_path / "p.txt"
    gts = _gts(images, tmp_path)
    proc = cli("score.py", "--preds", preds, "--gts", gts, "--report-json", by_files, "--report-txt", text, check=0)
    files_doc = json.loads(by_files.read_text())
    assert files_doc["confusion"] == model_doc["confusion"] and files_doc["num_examples"] == 18
    assert files_doc["accuracy"] == pytest.approx(model_doc["accuracy"])
    assert files_doc["macro_f1"] == pytest.approx(model_doc["macro_f1"])
    assert 1 >= files_doc["top_k_accuracy_2"] >= files_doc["accuracy"]
    assert f"('accuracy', {files_doc['accuracy']})" in text.read_text() and "('macro_f1'" in proc.stderr


def test_prediction_file_mistakes_are_one_line(trained, predicted, cli, tmp_path):
    images, preds = trained[1], tmp_path / "preds"
    shutil.copytree(predicted, preds)
    gts = _gts(images, tmp_path)
    doc = json.loads(gts.read_text())

    def fails(gts_doc, needle):
        gts.write_text(json.dumps(gts_doc))
        proc = cli("score.py", "--preds", preds, "--gts", gts, check=2)
        assert proc.stderr.count("\n") == 1 and needle in proc.stderr and "Traceback" not in proc.stderr

    fails(doc | {"blue/9.png": "blue"}, str(preds / "blue/9.png.json"))  # an image without a prediction
    fails(doc | {"red/0.png": "zebra"}, f"--gts {gts}: image 'red/0.png' has class 'zebra'")
    fails(doc | {"red/0.png": 3}, "has class 3")
    (preds / "green" / "1.png.json").write_text('{"image": "green/1.png", "top_k": [')
    fails(doc, f"{preds / 'green' / '1.png.json'}: not a prediction file")
    proc = cli("score.py", "--preds", preds, check=2)
    assert proc.stderr.count("\n") == 1 and "--model and --data-val" in proc.stderr and "--gts FILE" in proc.stderr
