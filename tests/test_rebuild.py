"""Networks trained or fine-tuned with family flags (--multiplier, --batch-norm, --num-group) rebuild from their
own PREFIX-symbol.json: scoring, resuming and fine-tuning them, and importing MXNet's resnext / mobilenet."""

import importlib
import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

import symbols
from common import checkpoint, modelzoo, networks
from common.util import UserError
from tests.test_modelzoo import write_mxnet_checkpoint

COMMON = ["--num-classes", "3", "--num-examples", "9", "--image-shape", "3,32,32", "--batch-size", "3"]
COMMON += ["--num-epochs", "1", "--gpus", "", "--disp-batches", "1", "--lr", "0.01", "--data-nthreads", "1"]
COMMON += ["--mom", "0"]  # no momentum buffers: small .states files (vgg's parameters alone are 112 MB)
# (flags, the arguments they set, the same network with its family defaults for those)
TRAINED = {
    "mobilenet": (["--multiplier", "0.25"], {"multiplier": 0.25}, {}),
    "vgg": (["--num-layers", "11", "--batch-norm", "1"], {"num_layers": 11, "batch_norm": 1}, {"num_layers": 11}),
    # 164 layers is the smallest 32-pixel ResNeXt with grouped (bottleneck) units; shallower ones have no groups.
    "resnext": (["--num-layers", "164", "--num-group", "4"], {"num_layers": 164, "num_group": 4}, {"num_layers": 164}),
}


@pytest.fixture(scope="module")
def tiny(fixtures):
    """MXNet im2rec's 9-image, 3-class .rec (32 pixels)."""
    return fixtures / "im2rec" / "tiny.rec"


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """train(network) -> (prefix, training log) of one epoch of train_imagenet.py with the family's flags, run once."""
    from tests.conftest import run_cli

    runs = {}

    def train(network):
        if network not in runs:
            prefix = tmp_path_factory.mktemp(network) / network
            flags = ["--network", network, *TRAINED[network][0], "--data-train", tiny, "--data-val", tiny]
            proc = run_cli("train_imagenet.py", *flags, *COMMON, "--model-prefix", prefix, check=0)
            runs[network] = prefix, proc.stderr
        return runs[network]

    return train


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("network", list(TRAINED))
def test_checkpoint_rebuilds_the_trained_network(trained, tiny, network):
    import score

    prefix, log = trained(network)
    _, arguments, defaults = TRAINED[network]
    saved = checkpoint.read_symbol(str(prefix))
    assert saved["network"] == network and all(saved["arguments"][k] == v for k, v in arguments.items())
    assert saved["arguments"]["num_classes"] == 3 and saved["arguments"]["image_shape"] == "3,32,32"
    model, info = modelzoo.load_model(str(prefix), 1)
    file = load_file(f"{prefix}-0001.params")
    state = model.state_dict()
    assert state.keys() == file.keys() and all(torch.equal(state[k], file[k]) for k in file)
    default = symbols.get_symbol(network, num_classes=3, image_shape="3,32,32", **defaults)
    assert _count(model) == sum(file[k].numel() for k, _ in model.named_parameters()) != _count(default)
    if network == "resnext":
        return  # scored as the other two are; its 164 layers make the run slow
    report = score.main(["--model", str(prefix), "--load-epoch", "1", "--data-val", str(tiny), "--batch-size", "3"])
    trained_acc = float(re.search(r"Epoch\[0\] Validation-accuracy=([\d.]+)", log).group(1))
    assert report["num_examples"] == 9 and report["accuracy"] == pytest.approx(trained_acc, abs=1e-6)


def test_resume_and_changed_flag(trained, cli, tiny, tmp_path, capsys):
    import train_imagenet

    network = "mobilenet"  # the cheapest of the three
    trained_prefix, _ = trained(network)
    prefix = tmp_path / network
    for suffix in ("-symbol.json", "-0001.params", "-0001.states"):
        shutil.copy(f"{trained_prefix}{suffix}", f"{prefix}{suffix}")
    flags = ["--network", network, *TRAINED[network][0], "--data-train", tiny, *COMMON, "--model-prefix", prefix]
    proc = cli("train_imagenet.py", *flags, "--num-epochs", "2", "--load-epoch", "1", check=0)
    assert "resuming at epoch 1" in proc.stderr and "Epoch[1] Train-accuracy=" in proc.stderr
    model, info = modelzoo.load_model(str(prefix))
    assert info["epoch"] == 2 and model.conv_1_conv2d.out_channels == 8  # 32 x 0.25
    without = [str(f) for f in flags if f not in ("--multiplier", "0.25")]
    with pytest.raises(SystemExit) as stop:
        train_imagenet.main([*without, "--num-epochs", "3", "--load-epoch", "2"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "multiplier=0.25 but this run builds multiplier=1.0" in err
    assert "(--multiplier 0.25)" in err and "Traceback" not in err


def test_changed_flag_message(tmp_path):
    args = train_imagenet_args("--network", "resnext", "--num-layers", "164", "--model-prefix", str(tmp_path / "r"))
    args.num_group = 4
    checkpoint.write_symbol_for(args, None)
    args.num_group = None
    with pytest.raises(UserError, match=r"num_group=4 but this run builds num_group=32.*\(--num-group 4\)"):
        checkpoint.check_same_network(args)
    args.network = "resnet"
    with pytest.raises(UserError, match="the checkpoint is a resnext, not --network resnet"):
        checkpoint.check_same_network(args)


def train_imagenet_args(*argv):
    """train_imagenet.py's parsed flags for 3 classes of 32-pixel images."""
    import train_imagenet

    return train_imagenet.parse_args([*argv, "--num-classes", "3", "--image-shape", "3,32,32"])


def test_unset_family_flags_keep_family_defaults():
    mobilenet = networks.get_network(train_imagenet_args("--network", "mobilenet"))
    assert mobilenet.conv_1_conv2d.out_channels == 32  # multiplier 1.0
    vgg = networks.get_network(train_imagenet_args("--network", "vgg", "--num-layers", "11"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in vgg.modules())
    with_bn = networks.get_network(train_imagenet_args("--network", "vgg", "--num-layers", "11", "--batch-norm", "1"))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in with_bn.modules())
    resnext = networks.get_network(train_imagenet_args("--network", "resnext", "--num-layers", "164"))
    assert resnext.stage1_unit1.conv2.groups == 32


def test_network_arguments_fill_defaults_and_variants():
    vgg = networks.network_arguments("vgg", {"num_classes": 3, "num_layers": 11, "dtype": "float32"})
    assert vgg == {"num_classes": 3, "num_layers": 11, "image_shape": "3,224,224", "batch_norm": False}
    small = networks.network_arguments("mobilenetv3-small", {"num_classes": 5})
    assert small["variant"] == "small" and small["mode"] == "large"
    rebuilt = networks.rebuild("mobilenetv3-small", small)
    assert _count(rebuilt) == _count(symbols.get_symbol("mobilenetv3-small", num_classes=5))
    assert networks.network_arguments("efficientnet-b3", {})["variant"] == "b3"
    assert networks.network_arguments("resnet18", {"num_classes": 4, "num_layers": 18}) == {"num_classes": 4}


def test_old_symbol_file_with_three_arguments_loads(tmp_path):
    prefix = str(tmp_path / "old")
    model = symbols.get_symbol("resnext", num_classes=3, num_layers=20, image_shape="3,32,32")
    checkpoint.save_params(prefix, 1, model)
    old = {"num_classes": 3, "num_layers": 20, "image_shape": "3,32,32"}
    checkpoint.write_symbol(prefix, "resnext", old, {"image_shape": [3, 32, 32]})
    assert "fine_tune" not in json.loads(open(f"{prefix}-symbol.json").read())
    loaded, info = modelzoo.load_model(prefix, 1)
    assert info["arguments"] == old and all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))


def test_fine_tune_of_a_trained_network_scores(trained, cli, tiny, tmp_path):
    import score

    prefix, _ = trained("mobilenet")
    out = tmp_path / "ft"
    proc = cli(
        "fine-tune.py",
        *("--pretrained-model", prefix, "--pretrained-epoch", "1", "--num-classes", "5", "--data-train", tiny),
        *("--batch-size", "3", "--num-epochs", "1", "--model-prefix", out, "--gpus", "", "--data-nthreads", "1"),
        check=0,
    )
    assert "reinitialised the new classifier fc" in proc.stderr
    saved = checkpoint.read_symbol(str(out))
    assert saved["arguments"]["multiplier"] == 0.25 and saved["arguments"]["num_classes"] == 5
    assert saved["fine_tune"] == [
        {"pretrained_source": "checkpoint", "layer_before_fullc": "auto", "pretrained_num_classes": 3}
        | {"image_shape": [3, 32, 32], "num_classes": 5}
    ]
    model, _ = modelzoo.load_model(str(out), 1)
    assert model.fc.out_features == 5 and model.conv_1_conv2d.out_channels == 8
    report = score.main(["--model", str(out), "--data-val", str(tiny), "--batch-size", "3"])
    assert report["num_examples"] == 9 and len(report["per_class"]) == 5


def _fine_tune(argv):
    """Run fine-tune.py's main in this process."""
    return importlib.import_module("fine-tune").main([str(a) for a in argv])


MXNET_NETS = [
    pytest.param("resnext", {"num_layers": 164, "num_group": 4}, {}, "auto", "stage3_unit1.conv2.weight", id="resnext"),
    pytest.param(
        *("mobilenet", {"multiplier": 0.5}, {"global_pool": {"kernel": "(1, 1)"}}),
        *("conv_13_relu", "conv_13_conv2d.weight"),
        id="mobilenet",
    ),
]


@pytest.mark.parametrize("network,kwargs,attrs,cut,kept", MXNET_NETS)
def test_fine_tune_of_mxnet_import_rebuilds(tiny, tmp_path, network, kwargs, attrs, cut, kept):
    torch.manual_seed(0)
    mx = symbols.get_symbol(network, num_classes=10, image_shape="3,32,32", **kwargs).eval()
    write_mxnet_checkpoint(mx, tmp_path / "mx", kwargs, attrs)
    out = tmp_path / "ft"
    flags = ["--num-classes", "4", "--data-train", tiny, "--batch-size", "3", "--num-epochs", "1"]
    flags += ["--freeze-backbone", "1", "--gpus", "", "--data-nthreads", "1"]
    tuned = _fine_tune(
        ["--pretrained-model", tmp_path / "mx", "--layer-before-fullc", cut, "--model-prefix", out, *flags]
    )
    saved = checkpoint.read_symbol(str(out))
    assert saved["network"] == network and all(saved["arguments"][k] == v for k, v in kwargs.items())
    assert saved["fine_tune"][0]["pretrained_source"] == "mxnet" and saved["fine_tune"][0]["layer_before_fullc"] == cut
    model, _ = modelzoo.load_model(str(out), 1)
    assert model.state_dict().keys() == tuned.state_dict().keys()
    assert all(torch.equal(a, b.cpu()) for a, b in zip(model.state_dict().values(), tuned.state_dict().values()))
    assert torch.equal(model.state_dict()[kept], mx.state_dict()[kept])  # --freeze-backbone 1
    assert _count(model) != _count(mx) and model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    if cut == "auto":
        return
    # A cut network fine-tuned again: both replacements are recorded and replayed in order.
    _fine_tune(["--pretrained-model", out, "--model-prefix", tmp_path / "again", *flags])
    twice, info = modelzoo.load_model(str(tmp_path / "again"), 1)
    assert [s["layer_before_fullc"] for s in info["fine_tune"]] == [cut, "auto"]
    assert twice(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    assert torch.equal(twice.state_dict()[kept], mx.state_dict()[kept])
