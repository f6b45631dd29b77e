"""Quantization-aware training through the command lines: --qat 1 trains a fake-quantized graph whose quantization
tools/export.py --format int8 and score.py --dtype int8 use; its epoch controls, an exact resume, and
post-training quantization's --calib-batches and --quant-engine."""

import json
import logging
import re
import shutil
import types

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from common import checkpoint, qat
from common.util import UserError

TRAIN = ["train_imagenet.py", "--network", "resnet", "--num-layers", "8", "--image-shape", "3,16,16", "--gpus", ""]
TRAIN += ["--batch-size", "8", "--disp-batches", "1", "--lr", "0.1", "--rgb-std", "58,57,57", "--data-nthreads", "1"]
QAT = ["--qat", "1", "--qat-observer-epochs", "2", "--qat-bn-epochs", "1"]
FUSED_BN = "stage1_unit1.bn2.running_mean"  # folded into stage1_unit1.conv1 in the training graph
PLAIN_BN = "bn1.running_mean"  # after the last stage, before ReLU: no convolution to fold into


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two class folders of 8 random 16x16 pictures each: 2 batches of 8 per epoch."""
    root = tmp_path_factory.mktemp("qat") / "images"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for k in range(8):
            img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) // (2 if c == "a" else 1)
            cv2.imwrite(str(root / c / f"{k}.png"), img)
    return root


@pytest.fixture(scope="module")
def trained(folder):
    """A 3-epoch --qat run (observers update in epochs 0-1, folded BatchNorm statistics in epoch 0): (prefix, log)."""
    from tests.conftest import run_cli

    prefix = folder.parent / "run" / "r8"
    data = ["--data-train", folder, "--data-val", folder, "--model-prefix", prefix]
    proc = run_cli(*TRAIN, *QAT, *data, "--num-epochs", "3", check=0)
    return prefix, proc.stderr


def _quant(prefix, epoch):
    return checkpoint.load_states(prefix, epoch)["extra"]["qat"]["tensors"]


def _ranges(state):
    return {k: v for k, v in state.items() if k.endswith(("min_val", "max_val"))}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_symbol_records_the_engine_and_states_hold_the_quantization(trained):
    prefix, _ = trained
    doc = json.loads(open(f"{prefix}-symbol.json").read())
    assert doc["qat"] == {"engine": qat.DEFAULT_ENGINE, "observer_epochs": 2, "bn_epochs": 1}
    params = load_file(f"{prefix}-0003.params")
    assert FUSED_BN in params and not any("fake_quant" in k or "post_process" in k for k in params)  # float names
    state = _quant(prefix, 3)
    assert any(k.endswith("weight_fake_quant.scale") for k in state) and _ranges(state)


def test_observers_and_batchnorm_freeze_at_their_epochs(trained):
    prefix, log = trained
    assert "Epoch[2] QAT: the observers stop updating" in log and "Epoch[1] QAT: the observers" not in log
    assert "Epoch[1] QAT: the BatchNorm statistics folded into convolutions freeze" in log
    r1, r2, r3 = (_ranges(_quant(prefix, e)) for e in (1, 2, 3))
    assert not _same(r1, r2) and _same(r2, r3)  # updated in epoch 1, frozen from epoch 2
    p1, p2, p3 = (load_file(f"{prefix}-{e:04d}.params") for e in (1, 2, 3))
    assert p1[FUSED_BN].abs().sum() > 0  # updated in epoch 0 (it starts at zero)
    assert torch.equal(p1[FUSED_BN], p2[FUSED_BN]) and torch.equal(p2[FUSED_BN], p3[FUSED_BN])
    assert not torch.equal(p2[PLAIN_BN], p3[PLAIN_BN])  # a BatchNorm without a convolution to fold into
    assert not torch.equal(p2["fc1.weight"], p3["fc1.weight"])  # training goes on


def _copy(prefix, to, epochs, drop_record=False):
    """Copy PREFIX-symbol.json and the .params/.states of epochs to prefix `to` (without the --qat record)."""
    to.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(open(f"{prefix}-symbol.json").read())
    if drop_record:
        del doc["qat"]
    open(f"{to}-symbol.json", "w").write(json.dumps(doc))
    for epoch in epochs:
        for path in (checkpoint.params_path, checkpoint.states_path):
            shutil.copy(path(prefix, epoch), path(to, epoch))
    return to


def test_resume_is_exact(trained, folder, cli):
    full, _ = trained
    prefix = _copy(full, folder.parent / "resumed" / "r8", [1])  # as if the run had stopped after epoch 1
    data = ["--data-train", folder, "--data-val", folder, "--model-prefix", prefix]
    proc = cli(*TRAIN, *QAT, *data, "--num-epochs", "3", "--load-epoch", "1", check=0)
    assert "resuming at epoch 1" in proc.stderr and "Epoch[2] QAT: the observers stop updating" in proc.stderr
    assert _same(load_file(f"{full}-0003.params"), load_file(f"{prefix}-0003.params"))
    assert _same(_quant(full, 3), _quant(prefix, 3))


def _observer_qparams(state):
    """(scale, zero point) that torch's own activation observer gives for each saved range."""
    fq = torch.ao.quantization.get_default_qat_qconfig(qat.DEFAULT_ENGINE).activation()
    out = set()
    for key in (k for k in state if k.endswith("activation_post_process.min_val") and state[k].dim() == 0):
        obs = fq.activation_post_process
        obs.min_val.copy_(state[key])
        obs.max_val.copy_(state[key.replace("min_val", "max_val")])
        scale, zero = obs.calculate_qparams()
        out.add((round(float(scale), 9), int(zero)))
    return out


def _first_conv(path):
    """(scale, zero point) of the output of the first int8 convolution of a TorchScript file, and its preprocess."""
    extra = {"preprocess.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    conv = scripted.conv0
    return (round(float(conv.scale), 9), int(conv.zero_point)), json.loads(extra["preprocess.json"])


def test_export_and_score_use_the_trained_quantization(trained, folder, tmp_path, caplog):
    import score
    from tools import export

    prefix, _ = trained
    caplog.set_level(logging.INFO)
    out = tmp_path / "q.pt"
    export.main(["--model", str(prefix), "--format", "int8", "--output", str(out)])  # no calibration data needed
    assert "int8: the quantization trained with --qat" in caplog.text and "calibrating" not in caplog.text
    qparams, meta = _first_conv(out)
    assert meta["quantization"] == "qat" and meta["quantized_engine"] == qat.DEFAULT_ENGINE
    assert qparams in _observer_qparams(_quant(prefix, 3))  # the saved observers' ranges, not a calibration's
    caplog.clear()
    report = score.main(["--model", str(prefix), "--data-val", str(folder), "--dtype", "int8"])
    assert "int8: the quantization trained with --qat" in caplog.text and "calibrating" not in caplog.text
    assert report["int8"]["quantization"] == "qat" and report["int8"]["num_examples"] == 16


def test_post_training_quantization_takes_the_engine_and_32_batches(trained, folder, tmp_path, caplog):
    import score

    prefix, _ = trained
    plain = _copy(prefix, tmp_path / "r8", [1], drop_record=True)  # the same network, trained without --qat
    caplog.set_level(logging.INFO)
    report = score.main(
        ["--model", str(plain), "--data-val", str(folder), "--dtype", "int8", "--quant-engine", "qnnpack"]
    )
    assert "int8: calibrating on the first 32 batches of --data-val" in caplog.text
    assert re.search(r"int8 vs float32: accuracy [+-][\d.]+, speed-up [\d.]+x \(engine qnnpack\)", caplog.text)
    assert report["int8"]["engine"] == "qnnpack" and report["int8"]["quantization"] == "calibrated on 32 batches"


@pytest.mark.parametrize("script", ["score.py", "tools/export.py"])
def test_bad_quant_engine_is_one_line(script, trained, folder, tmp_path, capsys):
    import importlib

    prefix, _ = trained
    main = importlib.import_module(script.removesuffix(".py").replace("/", ".")).main
    common = ["--model", str(prefix), "--format" if "export" in script else "--dtype", "int8"]
    common += ["--output", str(tmp_path / "x.pt")] if "export" in script else ["--data-val", str(folder)]
    for engine, words in (("nope", "unknown --quant-engine 'nope'; valid values: "), ("qnnpack", "trained for engine")):
        with pytest.raises(SystemExit) as stop:
            main([*common, "--quant-engine", engine])
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if "error" in x]
        assert stop.value.code == 2 and len(lines) == 1 and words in lines[0], err
        if engine == "nope":
            assert all(e in lines[0] for e in qat.engines())


def test_qat_refuses_what_it_cannot_train_with(folder, tmp_path, capsys):
    import train_imagenet

    with pytest.raises(SystemExit) as stop:
        argv = [*TRAIN[1:], "--data-train", folder, "--num-epochs", "1", "--qat", "1", "--dtype", "bfloat16"]
        train_imagenet.main([str(a) for a in argv])
    lines = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert "--qat 1 trains in float32" in lines[0] and "drop --dtype bfloat16" in lines[0]
    for flags, words in (({"compile": 1}, "drop --compile"), ({"ema": 0.9}, "drop --ema")):
        args = dict(compile=0, dtype="float32", ema=0.0, activation_checkpointing=0) | flags
        with pytest.raises(UserError, match=words):
            qat.refuse(types.SimpleNamespace(**args))


@pytest.mark.slow
def test_lenet_int8_within_half_a_point_of_float_on_the_mnist_sample(tmp_path, cli):
    """LeNet on the MNIST sample: float training, and --qat training scored in int8 by score.py."""
    offline = ["--mnist-mirror", "file:///nonexistent-mirror", "--gpus", ""]
    images = tmp_path / "png"
    cli("data/mnist.py", images, check=0)
    accuracy = {}
    for name, extra in (("float", []), ("qat", ["--qat", "1"])):
        prefix = tmp_path / name / "lenet"
        cli("train_mnist.py", *offline, *extra, "--model-prefix", prefix, check=0, timeout=3600)
        report = tmp_path / f"{name}.json"
        dtype = "int8" if name == "qat" else "float32"
        cli(
            "score.py",
            "--model",
            prefix,
            "--data-val",
            images / "val",
            "--dtype",
            dtype,
            "--report-json",
            report,
            check=0,
        )
        doc = json.loads(report.read_text())
        accuracy[name] = doc["accuracy"]
        if name == "qat":
            accuracy["qat-int8"] = doc["int8"]["accuracy"]
            assert doc["int8"]["quantization"] == "qat"
    print("accuracy:", accuracy)
    assert accuracy["float"] >= 0.98
    assert accuracy["qat-int8"] >= accuracy["float"] - 0.005
