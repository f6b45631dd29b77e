"""Losses and teachers through the command lines: AM-softmax, distillation (--distill-from), mutual learning."""

import argparse
import json
import re

import pytest
import torch
from safetensors.torch import load_file

from common import checkpoint, modelzoo, networks, objective, options, teachers
from common.util import UserError

OFFLINE = "file:///nonexistent-mirror"  # no network in tests: train_mnist.py falls back to the bundled sample
FOLDER = ["train_imagenet.py", "--network", "lenet", "--image-shape", "3,28,28", "--batch-size", "20", "--gpus", ""]
FOLDER += ["--disp-batches", "1", "--data-nthreads", "1", "--lr", "0.05", "--num-epochs", "1"]


def _folder(digits, *flags):
    return [*FOLDER, "--data-train", digits / "train", "--data-val", digits / "val", *flags]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """40 training and 40 validation digits of the bundled MNIST sample as PNG class folders."""
    from data import mnist

    out = tmp_path_factory.mktemp("digits")
    mnist.write_sample_pngs(str(out), per_class=4)
    return out


@pytest.fixture(scope="module")
def am_model(digits, tmp_path_factory):
    """One epoch of LeNet with --loss-type am-softmax on the digits (the teacher of the distillation tests)."""
    from tests.conftest import run_cli

    prefix = tmp_path_factory.mktemp("am") / "lenet"
    proc = run_cli(*_folder(digits, "--loss-type", "am-softmax", "--am-scale", "16", "--model-prefix", prefix), check=0)
    return prefix, proc


def test_am_softmax_is_recorded_rebuilt_and_scored(am_model, digits):
    import score

    prefix, proc = am_model
    assert re.search(r"Epoch\[0\] Validation-accuracy=[\d.]+", proc.stderr)
    doc = json.loads(open(f"{prefix}-symbol.json").read())
    assert doc["arguments"]["cosine_scale"] == 16.0
    model, _ = modelzoo.load_checkpoint(str(prefix))  # as score.py, predict.py and export rebuild it
    head = model.fullyconnected1
    assert isinstance(head, networks.CosineClassifier) and head.bias is None and head.scale == 16.0
    logits = model(torch.randn(5, 3, 28, 28) * 50)
    assert logits.abs().max() <= 16.0 + 1e-4  # s * cos
    scored = score.main(["--model", str(prefix), "--data-val", str(digits / "val")])  # score.py's command line
    assert scored["num_examples"] == 40 and 0 <= scored["accuracy"] <= 1


def test_am_softmax_loss_takes_labels_and_soft_targets():
    parser = argparse.ArgumentParser()
    options.add_fit_args(parser)
    args = parser.parse_args(["--loss-type", "am-softmax", "--am-margin", "0.2", "--am-scale", "10"])
    plain = objective.class_loss(parser.parse_args([]))
    am = objective.class_loss(args)
    logits, y = torch.randn(6, 4).clamp(-1, 1) * 10, torch.tensor([0, 1, 2, 3, 0, 1])
    hard, soft = am(logits, y), am(logits, torch.nn.functional.one_hot(y, 4).float())
    assert torch.allclose(hard, soft)  # integer labels and one-hot rows (mixing's form) give the same loss
    expected = plain(logits - 10 * 0.2 * torch.nn.functional.one_hot(y, 4), y)
    assert torch.allclose(hard, expected) and hard > plain(logits, y)  # the target's logit lowered by s*m


def test_distill_from_a_suite_checkpoint_converts_its_preprocessing(am_model, digits, cli, tmp_path):
    teacher, _ = am_model
    flags = [
        "--distill-from",
        teacher,
        "--distill-alpha",
        "0.7",
        "--rgb-std",
        "2,2,2",
        "--model-prefix",
        tmp_path / "s",
    ]
    proc = cli(*_folder(digits, *flags), check=0)
    line = re.search(r"distilling from checkpoint .*lenet-0001.params \(lenet, 10 classes\).*", proc.stderr).group(0)
    assert "converted from the student's: rgb mean" in line
    assert re.search(r"Epoch\[0\] Validation-accuracy=[\d.]+", proc.stderr)


def test_teacher_sees_the_batch_in_its_own_preprocessing(am_model):
    prefix, _ = am_model
    parser = argparse.ArgumentParser()
    options.add_fit_args(parser)
    options.add_data_args(parser)
    args = parser.parse_args(["--distill-from", str(prefix), "--image-shape", "3,28,28", "--num-classes", "10"])
    args.rgb_mean, args.rgb_std = "10,20,30", "2,3,4"  # the student's, not the teacher's
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 10)).train()
    teacher = teachers.load_teacher(args, student, torch.device("cpu"), log=lambda line: None)
    pixels = torch.rand(2, 3, 28, 28) * 255
    mean, std = torch.tensor([10.0, 20, 30]).view(1, 3, 1, 1), torch.tensor([2.0, 3, 4]).view(1, 3, 1, 1)
    student((pixels - mean) / std)  # the training forward the teacher taps
    own, _ = modelzoo.load_checkpoint(str(prefix))
    saved = json.loads(open(f"{prefix}-symbol.json").read())["preprocess"]  # the teacher's own
    own_mean, own_std = (torch.tensor(saved[k]).view(1, 3, 1, 1) for k in ("rgb_mean", "rgb_std"))
    want = own((pixels - own_mean) / own_std)
    assert torch.allclose(teacher(), want, atol=1e-3)


def test_distill_class_mismatch_exits_2_with_one_line(am_model, digits, capsys):
    import train_imagenet

    teacher, _ = am_model
    argv = [str(a) for a in _folder(digits, "--distill-from", teacher, "--num-classes", "12")[1:]]
    with pytest.raises(SystemExit) as stop:
        train_imagenet.main(argv)  # the script's command line, in this process (no --model-prefix: nothing written)
    lines = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert "--distill-from" in lines[0] and "10 classes" in lines[0] and "--num-classes is 12" in lines[0]


def test_mutual_learning_saves_both_and_resumes_exactly(digits, cli, tmp_path):
    import score

    full, part = tmp_path / "full" / "m", tmp_path / "part" / "m"
    mutual = ["--mutual-learning", "2", "--distill-temperature", "2"]
    cli(*_folder(digits, *mutual, "--num-epochs", "2", "--model-prefix", full), check=0)
    cli(*_folder(digits, *mutual, "--model-prefix", part), check=0)
    proc = cli(*_folder(digits, *mutual, "--num-epochs", "2", "--load-epoch", "1", "--model-prefix", part), check=0)
    assert "resuming at epoch 1" in proc.stderr
    for suffix in ("", "-peer"):
        assert json.loads(open(f"{full}{suffix}-symbol.json").read())["network"] == "lenet"
        a, b = load_file(f"{full}{suffix}-0002.params"), load_file(f"{part}{suffix}-0002.params")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), suffix
        sa, sb = (checkpoint.load_states(str(p) + suffix, 2)["optimizer"] for p in (full, part))
        assert len(sa["state"]) == len(a)  # each .states holds its own network's momentum, one per parameter
        assert sa["state"].keys() == sb["state"].keys()
        assert all(
            torch.equal(sa["state"][i]["momentum_buffer"], sb["state"][i]["momentum_buffer"]) for i in sa["state"]
        )
    first, peer = load_file(f"{full}-0002.params"), load_file(f"{full}-peer-0002.params")
    assert any(not torch.equal(first[k], peer[k]) for k in first)  # two networks, not one saved twice
    scored = score.main(["--model", f"{full}-peer", "--data-val", str(digits / "val")])
    assert scored["network"] == "lenet" and scored["num_examples"] == 40


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--am-margin", "1"], ["--am-margin", "[0, 1)"]),
        (["--am-margin", "-0.1"], ["--am-margin", "[0, 1)"]),
        (["--am-scale", "0"], ["--am-scale", "> 0"]),
        (["--distill-alpha", "1.5"], ["--distill-alpha", "[0, 1]"]),
        (["--distill-temperature", "0"], ["--distill-temperature", "> 0"]),
        (["--mutual-learning", "3"], ["--mutual-learning", "[1, 2]"]),
        (["--loss-type", "arcface"], ["--loss-type", "softmax", "am-softmax"]),
    ],
)
def test_bad_values_exit_2_with_one_line(capsys, flags, words):
    import train_mnist

    with pytest.raises(SystemExit) as stop:
        train_mnist.parse_args(["--mnist-mirror", OFFLINE, *flags])
    lines = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert stop.value.code == 2 and len(lines) == 1
    for w in words:
        assert w in lines[0]


def test_teacher_and_peer_refused_together_and_loss_type_kept_on_resume(am_model):
    prefix, _ = am_model
    parser = argparse.ArgumentParser()
    options.add_fit_args(parser)
    options.add_data_args(parser)
    both = parser.parse_args(["--distill-from", str(prefix), "--mutual-learning", "2", "--image-shape", "3,28,28"])
    with pytest.raises(UserError, match="--distill-from and --mutual-learning 2 do not combine"):
        teachers.load_teacher(both, torch.nn.Identity(), torch.device("cpu"))
    plain = parser.parse_args(["--network", "lenet", "--num-classes", "10", "--image-shape", "3,28,28"])
    plain.model_prefix = str(prefix)
    with pytest.raises(UserError, match="trained with --loss-type am-softmax --am-scale 16.0; resume with the same"):
        checkpoint.check_same_network(plain)


SAMPLE = ["train_mnist.py", "--network", "lenet", "--mnist-mirror", OFFLINE, "--gpus", ""]  # the sample's defaults


def _last_validation(log):
    return float(re.findall(r"Epoch\[\d+\] Validation-accuracy=([\d.]+)", log)[-1])


@pytest.mark.slow
def test_am_softmax_trains_lenet_on_the_sample(cli, tmp_path):
    proc = cli(*SAMPLE, "--loss-type", "am-softmax", "--model-prefix", tmp_path / "am", check=0)
    assert _last_validation(proc.stderr) >= 0.97


@pytest.mark.slow
def test_distillation_trains_lenet_on_the_sample(cli, tmp_path):
    cli(*SAMPLE, "--model-prefix", tmp_path / "teacher", check=0)
    proc = cli(*SAMPLE, "--distill-from", tmp_path / "teacher", "--model-prefix", tmp_path / "student", check=0)
    assert "distilling from checkpoint" in proc.stderr
    assert _last_validation(proc.stderr) >= 0.97


@pytest.mark.slow
def test_mutual_learning_trains_two_lenets_on_the_sample(cli, tmp_path):
    import score
    from data import mnist

    proc = cli(*SAMPLE, "--mutual-learning", "2", "--model-prefix", tmp_path / "ml", check=0)
    assert _last_validation(proc.stderr) >= 0.97
    mnist.write_sample_pngs(str(tmp_path / "digits"))  # the same 1,000 validation digits, as PNG files
    peer = score.main(["--model", str(tmp_path / "ml-peer"), "--data-val", str(tmp_path / "digits" / "val")])
    assert peer["num_examples"] == 1000 and peer["accuracy"] >= 0.97
