"""score.py, predict.py, fine-tune.py and tools/convert_mxnet.py through their command lines, on MXNet's fixtures."""

import json
import re

import numpy as np
import pytest
import torch

from common import checkpoint, inference, modelzoo, mximport, mxparams, networks


@pytest.fixture
def tiny(fixtures):
    """MXNet im2rec's 9-image, 3-class .rec (32 pixels)."""
    return fixtures / "im2rec" / "tiny.rec"


def _direct_predictions(fixtures, name, tiny, shape):
    """Top-1 classes of the imported network on the centre crops of tiny.rec, computed here without score.py."""
    from common.augment import DeviceTransform

    model, info = mximport.import_mxnet(str(fixtures / name), 3)
    pre = inference.resolve_preprocess(type("A", (), {"image_shape": shape, "rgb_mean": None, "rgb_std": None})(), info)
    tf = DeviceTransform(pre, pre.shape, False, torch.device("cpu"), channels_last=False)
    preds, labels = [], []
    with torch.no_grad():
        for x, y in inference.val_iter(str(tiny), "", pre, 4, 1):
            preds += model(tf(x)).argmax(1).tolist()
            labels += y.long().tolist()
    return np.array(preds), np.array(labels)


def test_score_reports_match_direct_evaluation(cli, fixtures, tiny, tmp_path):
    report, png = tmp_path / "r.json", tmp_path / "c.png"
    proc = cli(
        "score.py",
        *("--model", fixtures / "resnet-20", "--load-epoch", "3", "--data-val", tiny, "--image-shape", "3,28,28"),
        *("--batch-size", "4", "--report-json", report, "--confusion-png", png),
        check=0,
    )
    err = proc.stderr
    assert re.search(r"Finished with [\d.]+ images per second", err)
    assert "preprocessing: image_shape 3,28,28, rgb_mean 123.68,116.779,103.939" in err
    acc = float(re.search(r"\('accuracy', ([\d.e-]+)\)", err).group(1))
    assert re.search(r"\('top_k_accuracy_5', [\d.e-]+\)", err) and "macro_f1" in err
    preds, labels = _direct_predictions(fixtures, "resnet-20", tiny, "3,28,28")
    assert acc == pytest.approx(float((preds == labels).mean()))
    doc = json.loads(report.read_text())
    conf = np.array(doc["confusion"])
    assert conf.sum() == doc["num_examples"] == 9 and conf.shape == (10, 10)
    assert np.trace(conf) / 9 == pytest.approx(doc["accuracy"])
    for i in range(3):
        assert conf[i].sum() == 3 and doc["per_class"][i]["support"] == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--dtype", "int4"], "valid values: float32, float16, bfloat16, int8"),
        (["--data-val", "nope.rec"], "nope.rec not found"),
    ],
)
def test_score_bad_flags(fixtures, tiny, capsys, flags, message):
    import score

    with pytest.raises(SystemExit) as stop:
        score.main(["--model", str(fixtures / "mlp"), "--data-val", str(tiny), *flags])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "Traceback" not in err


def test_score_counts_max_num_examples(fixtures, tiny, tmp_path):
    import score

    report = score.main(["--model", str(fixtures / "mlp"), "--data-val", str(tiny), "--max-num-examples", "5"])
    assert report["num_examples"] == 5 and np.array(report["confusion"]).sum() == 5


def test_predict_text_and_json(cli, fixtures, tmp_path):
    synset = tmp_path / "synset.txt"
    synset.write_text("".join(f"n{i:08d} thing{i}\n" for i in range(10)))
    out = tmp_path / "p.json"
    src = fixtures / "im2rec_src"
    proc = cli("predict.py", "--model", fixtures / "resnet-20", src, "--top-k", "3", "--synset", synset, "--json", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert len(doc) == 9 and all(len(r["top"]) == 3 for r in doc)
    for r in doc:
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert r["top"][0]["name"] == f"n{r['top'][0]['class']:08d} thing{r['top'][0]['class']}"
        assert r["path"] in proc.stdout
    proc = cli("predict.py", "--model", fixtures / "resnet-20", tmp_path / "missing.jpg", check=2)
    assert "missing.jpg: no such image file or folder" in proc.stderr
    synset.write_text("cat\ndog\nemu\n")
    proc = cli("predict.py", "--model", fixtures / "resnet-20", src, "--synset", synset, check=2)
    assert "3 class names for a model with 10 outputs; give --synset a file of 10 lines" in proc.stderr


def test_cifar_names_only_with_cifar_data(cli, tiny, tmp_path):
    from data import cifar10

    prefix = tmp_path / "c" / "m"
    flags = ("--data-train", tiny, "--data-val", tiny, "--num-classes", "3", "--image-shape", "3,28,28")
    cli("train_cifar10.py", *flags, "--num-epochs", "1", "--batch-size", "9", "--model-prefix", prefix, check=0)
    assert checkpoint.read_symbol(str(prefix))["classes"] != list(cifar10.CLASSES)


def test_convert_mxnet_round_trip(cli, fixtures, tiny, tmp_path):
    out = tmp_path / "conv" / "lenet"
    proc = cli("tools/convert_mxnet.py", "--prefix", fixtures / "lenet", "--output", out, "--data-val", tiny, check=0)
    assert "top-1 agreement with the imported network on 9 images" in proc.stderr and ": 1.0000" in proc.stderr
    model, info = modelzoo.load_model(str(out), 3)
    assert info["source"].startswith("checkpoint") and info["preprocess"]["image_shape"] == [1, 28, 28]
    # MXNet's MNIST networks were trained on pixels / 255 (MNISTIter), not on the ImageNet mean
    assert info["preprocess"]["rgb_mean"] == [0.0] * 3 and info["preprocess"]["rgb_std"] == [255.0] * 3
    io = np.load(fixtures / "lenet-io.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(io["x"])).numpy()
    assert np.abs(logits - io["logits"]).max() <= 1e-4 * np.abs(io["logits"]).max()


def test_convert_mxnet_refuses_to_overwrite_its_source_and_bad_interpreter(cli, fixtures, tiny, tmp_path):
    import shutil

    for name in ("lenet-symbol.json", "lenet-0003.params"):
        shutil.copy(fixtures / name, tmp_path / name)
    before = (tmp_path / "lenet-symbol.json").read_bytes()
    proc = cli("tools/convert_mxnet.py", "--prefix", tmp_path / "lenet", "--output", tmp_path / "lenet", check=2)
    assert "is the MXNet checkpoint's own prefix" in proc.stderr
    assert (tmp_path / "lenet-symbol.json").read_bytes() == before
    proc = cli(
        "tools/convert_mxnet.py",
        *("--prefix", fixtures / "lenet", "--output", tmp_path / "out" / "l", "--data-val", tiny),
        *("--mxnet-python", tmp_path / "no-python"),
        check=2,
    )
    assert "--mxnet-python" in proc.stderr and "cannot run it" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.mxnet
def test_convert_mxnet_agrees_with_mxnet(cli, fixtures, tiny, tmp_path, mxnet_python):
    proc = cli(
        "tools/convert_mxnet.py",
        *("--prefix", fixtures / "resnet-20", "--epoch", "3", "--output", tmp_path / "r20", "--data-val", tiny),
        *("--mxnet-python", mxnet_python),
        check=0,
    )
    assert re.search(r"top-1 agreement with MXNet on 9 images of .*: 1\.0000", proc.stderr)


def test_fine_tune_replaces_head_and_freezes(cli, fixtures, tiny, tmp_path):
    prefix = tmp_path / "ft" / "mlp"
    proc = cli(
        "fine-tune.py",
        *("--pretrained-model", fixtures / "mlp", "--pretrained-epoch", "3", "--num-classes", "3"),
        *("--data-train", tiny, "--data-val", tiny, "--batch-size", "3", "--num-epochs", "1"),
        *("--model-prefix", prefix, "--freeze-backbone", "1", "--lr", "0.5"),
        check=0,
    )
    err = proc.stderr
    assert "loaded 4 pretrained arrays; reinitialised the new classifier fc3" in err
    assert "the pretrained classifier (fc3) is replaced by one with 3 outputs" in err
    assert "Epoch[0] Validation-accuracy=" in err
    saved = checkpoint.read_symbol(str(prefix))
    assert saved["network"] == "mlp" and saved["arguments"]["num_classes"] == 3
    model, _ = modelzoo.load_model(str(prefix), 1)
    pretrained = mxparams.load(fixtures / "mlp-0003.params")
    state = model.state_dict()
    assert np.array_equal(state["fc1.weight"].numpy(), pretrained["arg:fc1_weight"])  # frozen
    assert state["fc3.weight"].shape == (3, 64)


def _fine_tune_mlp(cli, fixtures, tiny, prefix, *flags):
    """Fine-tune MXNet's mlp fixture for one step (9 images, batch 9); return (pretrained, tuned) state dicts."""
    cli(
        "fine-tune.py",
        *("--pretrained-model", fixtures / "mlp", "--pretrained-epoch", "3", "--num-classes", "3"),
        *("--data-train", tiny, "--batch-size", "9", "--num-epochs", "1", "--model-prefix", prefix, *flags),
        check=0,
    )
    pretrained = {k: torch.from_numpy(v) for k, v in mxparams.load(fixtures / "mlp-0003.params").items()}
    return pretrained, modelzoo.load_model(str(prefix), 1)[0].state_dict()


def test_fine_tune_pretrained_lr_mult_is_the_learning_rate(cli, fixtures, tiny, tmp_path):
    # SGD with momentum and weight decay, one step: the pretrained layers move by exactly lr_mult times the
    # step they take at full rate (a scaled gradient would leave the weight-decay part unscaled).
    flags = ("--lr", "0.5", "--wd", "0.05", "--mom", "0.9", "--seed", "3")
    before, full = _fine_tune_mlp(cli, fixtures, tiny, tmp_path / "a" / "m", *flags)
    _, half = _fine_tune_mlp(cli, fixtures, tiny, tmp_path / "b" / "m", *flags, "--pretrained-lr-mult", "0.25")
    for name, mx_name in (("fc1.weight", "arg:fc1_weight"), ("fc2.weight", "arg:fc2_weight")):
        step_full, step_part = full[name] - before[mx_name], half[name] - before[mx_name]
        assert step_full.abs().max() > 1e-4
        torch.testing.assert_close(step_part, 0.25 * step_full, rtol=1e-4, atol=1e-7)
    # the new classifier trains at the full rate in both runs, from the same --seed initialisation
    torch.testing.assert_close(half["fc3.weight"], full["fc3.weight"], rtol=1e-3, atol=1e-5)


def test_fine_tune_lr_mult_zero_keeps_backbone_with_adam(cli, fixtures, tiny, tmp_path):
    flags = ("--optimizer", "adam", "--lr", "0.01", "--pretrained-lr-mult", "0")
    before, tuned = _fine_tune_mlp(cli, fixtures, tiny, tmp_path / "m", *flags)
    assert torch.equal(tuned["fc1.weight"], before["arg:fc1_weight"])
    assert torch.equal(tuned["fc2.bias"], before["arg:fc2_bias"])
    assert tuned["fc3.weight"].shape == (3, 64)


def test_fine_tune_negative_lr_mult_refused(cli, fixtures, tiny, tmp_path):
    proc = cli(
        "fine-tune.py",
        *("--pretrained-model", fixtures / "mlp", "--num-classes", "3", "--data-train", tiny),
        *("--model-prefix", tmp_path / "m", "--pretrained-lr-mult", "-1"),
        check=2,
    )
    assert "argument --pretrained-lr-mult: -1 is out of range (give a number >= 0)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fine_tune_wrong_layer_lists_names(fixtures, tiny, tmp_path, capsys):
    import importlib

    ft = importlib.import_module("fine-tune")
    with pytest.raises(SystemExit) as stop:
        ft.main(
            ["--pretrained-model", str(fixtures / "lenet"), "--num-classes", "3", "--data-train", str(tiny)]
            + ["--layer-before-fullc", "flatten9", "--model-prefix", str(tmp_path / "x")]
        )
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert "unknown --layer-before-fullc 'flatten9'; valid values: convolution0, activation0" in err
    assert "fullyconnected0" in err


def test_replace_head_at_an_inner_layer(fixtures):
    model = mximport.load_mxnet_checkpoint(str(fixtures / "lenet"), 3)
    new, head, dropped = networks.replace_head(model, "pooling1", 4, (1, 28, 28))
    assert dropped == ["flatten0", "fullyconnected0", "activation2", "fullyconnected1"]
    assert new(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    assert head == "fullyconnected1" and torch.equal(new.convolution0.weight, model.convolution0.weight)


def test_freeze_backbone_keeps_batchnorm_statistics(cli, fixtures, tiny, tmp_path):
    prefix = tmp_path / "ft" / "r20"
    cli(
        "fine-tune.py",
        *("--pretrained-model", fixtures / "resnet-20", "--pretrained-epoch", "3", "--num-classes", "3"),
        *("--data-train", tiny, "--batch-size", "3", "--num-epochs", "1", "--image-shape", "3,28,28"),
        *("--model-prefix", prefix, "--freeze-backbone", "1", "--lr", "0.1"),
        check=0,
    )
    pretrained = mxparams.load(fixtures / "resnet-20-0003.params")
    state = modelzoo.load_model(str(prefix), 1)[0].state_dict()
    names = networks_param_names(fixtures / "resnet-20")
    stats = [k for k in state if k.endswith(("running_mean", "running_var"))]
    assert stats and all(np.array_equal(state[k].numpy(), pretrained[names[k]]) for k in stats)


def networks_param_names(prefix):
    """{torch name: MXNet name} of an imported MXNet checkpoint's network."""
    import symbols

    return symbols.mxnet_param_map(mximport.load_mxnet_checkpoint(str(prefix), 3))
