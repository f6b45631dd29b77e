"""The loop's parts: learning-rate schedules, checkpoint files, parameter matching, NaN stop."""

import argparse
import math
import types

import pytest
import torch
from torch import nn

from common import checkpoint, data, fit, networks, optim, options
from common.util import UserError


def make_args(*argv):
    """Parse the fit and data flags as an entry script would."""
    parser = argparse.ArgumentParser()
    options.add_fit_args(parser)
    options.add_data_args(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_mxnets():
    a = make_args()
    assert (a.kv_store, a.num_epochs, a.lr, a.lr_factor, a.optimizer, a.mom, a.wd) == (
        "device",
        100,
        0.1,
        0.1,
        "sgd",
        0.9,
        1e-4,
    )
    assert (a.batch_size, a.disp_batches, a.save_period, a.top_k, a.dtype, a.warmup_epochs) == (
        128,
        20,
        1,
        0,
        "float32",
        5,
    )


def test_multi_factor_schedule_steps_at_epochs():
    mult = optim.lr_schedule(make_args("--lr-step-epochs", "2,4", "--num-epochs", "6"), 10, 1)
    assert [mult(s) for s in (0, 19, 20, 39, 40, 59)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_poly_and_cosine_schedules():
    poly = optim.lr_schedule(make_args("--lr-step-epochs", "pow2", "--num-epochs", "2"), 10, 1)
    assert poly(0) == 1 and poly(10) == pytest.approx(0.25) and poly(20) == 0
    cos = optim.lr_schedule(make_args("--cosine", "1", "--num-epochs", "2"), 10, 1)
    assert cos(10) == pytest.approx(0.5) and cos(20) == pytest.approx(0)


def test_large_batch_warmup_ramps_to_scale():
    mult = optim.lr_schedule(make_args("--warmup-epochs", "2", "--warmup-strategy", "power2"), 10, 4)
    assert mult(0) == 1 and mult(10) == pytest.approx(1 + 3 * 0.25) and mult(20) == 4
    with pytest.raises(UserError, match="linear"):
        optim.lr_schedule(make_args("--warmup-strategy", "cubic"), 10, 4)


def test_states_round_trip_optimizer(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    states = {"optimizer": opt.state_dict(), "step": 7, "rng": torch.get_rng_state(), "none": None}
    checkpoint.save_states(str(tmp_path / "m"), 1, states)
    back = checkpoint.load_states(str(tmp_path / "m"), 1)
    assert back["step"] == 7 and back["none"] is None and torch.equal(back["rng"], states["rng"])
    opt2 = torch.optim.Adam(nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.01
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_params_strip_wrappers_and_name_mismatch(tmp_path):
    wrapped = nn.Sequential()
    wrapped.add_module("module", nn.Sequential(nn.Linear(3, 2)))
    checkpoint.save_params(str(tmp_path / "m"), 1, wrapped)
    other = nn.Sequential(nn.Linear(3, 2))
    checkpoint.load_params(str(tmp_path / "m-0001.params"), other)
    assert torch.equal(other[0].weight, wrapped.module[0].weight)
    with pytest.raises(UserError, match=r"'0.weight' has shape \(2, 3\) in the file but \(5, 3\)"):
        checkpoint.load_params(str(tmp_path / "m-0001.params"), nn.Sequential(nn.Linear(3, 5)))


class NaNNet(nn.Module):
    """A network whose output turns NaN after its first epoch."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.fc(x.flatten(1))
        return out * math.nan if self.calls > 4 else out


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    prefix = str(tmp_path / "nan")
    args = make_args(
        "--image-shape",
        "1,2,2",
        "--num-classes",
        "3",
        "--batch-size",
        "2",
        "--num-epochs",
        "3",
        "--model-prefix",
        prefix,
        "--rgb-mean",
        "0,0,0",
        "--lr",
        "0.01",
        "--network",
        "nan",
    )
    images = torch.randint(0, 255, (8, 2, 2, 1), dtype=torch.uint8).numpy()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1], dtype=torch.float32).numpy()
    loader = lambda a, kv: (data.ArrayIter(images, labels, 2, shuffle=True), None)  # noqa: E731
    with pytest.raises(UserError, match=r"loss is nan in epoch 1 .*nan-0001.params is intact"):
        fit.fit(args, NaNNet(), loader)
    assert checkpoint.saved_epochs(prefix) == [1]


def test_diverged_last_step_is_never_saved(tmp_path):
    # one batch per epoch and a rate that overflows the weights in that step: the epoch's training loss (computed
    # before the step) is finite, so only a check of what is about to be saved can catch it
    prefix = str(tmp_path / "div")
    args = make_args("--image-shape", "1,2,2", "--num-classes", "3", "--batch-size", "8", "--num-epochs", "2")
    args.model_prefix, args.rgb_mean, args.lr, args.network = prefix, "0,0,0", 1e38, "linear"
    images = torch.randint(1, 255, (8, 2, 2, 1), dtype=torch.uint8).numpy()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1], dtype=torch.float32).numpy()
    loader = lambda a, kv: (data.ArrayIter(images, labels, 8, shuffle=True),) * 2  # noqa: E731
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(UserError, match=r"epoch 0 .*training stopped"):
        fit.fit(args, net, loader)
    assert checkpoint.saved_epochs(prefix) == []


def test_check_weights_names_the_parameter(tmp_path):
    from common import reporting

    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    reporting.check_weights(None, net, 3)  # finite: nothing happens
    with torch.no_grad():
        net[1].bias.fill_(math.inf)
    with pytest.raises(UserError, match=r"parameter 1.bias is NaN or inf after epoch 3; training stopped; lower"):
        reporting.check_weights(None, net, 3)


@pytest.mark.parametrize("benchmark", [0, 1])
def test_training_jitter_is_off_on_synthetic_data(benchmark):
    parser = argparse.ArgumentParser()
    options.add_fit_args(parser)
    options.add_data_args(parser)
    options.set_data_aug_level(options.add_data_aug_args(parser), 3)  # train_imagenet.py's rotate, shear and colour
    args = parser.parse_args(["--network", "lenet", "--image-shape", "3,28,28", "--benchmark", str(benchmark)])
    ctx = fit._setup(
        args,
        types.SimpleNamespace(rank=0, num_workers=1, local_size=1),
        torch.device("cpu"),
        networks.get_network(args),
        range(3),
    )
    x = torch.full((4, 28, 28, 3), 100, dtype=torch.uint8)
    jittered = not torch.equal(ctx.train_tf(x), ctx.val_tf(x))
    assert jittered == (not benchmark)  # MXNet's synthetic data is fed as it is; real data is augmented


def test_param_groups_carry_wd_and_lr_multipliers():
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    for p in net[0].parameters():
        p.lr_mult = 0.1
    args = make_args("--wd", "0.01", "--lr", "0.5")
    opt = optim.make_optimizer(args, net)
    optim.set_lr(opt, 0.5)
    got = {(g["kind"], g["lr_mult"]): (len(g["params"]), g["weight_decay"], g["lr"]) for g in opt.param_groups}
    # weights and BN gamma decay, biases and beta do not; the first Linear learns at a tenth of the rate
    assert got == {
        ("weight", 0.1): (1, 0.01, pytest.approx(0.05)),
        ("weight", 1.0): (1, 0.01, 0.5),
        ("norm_weight", 1.0): (1, 0.01, 0.5),
        ("norm_bias", 1.0): (1, 0.0, 0.5),
        ("bias", 0.1): (1, 0.0, pytest.approx(0.05)),
        ("bias", 1.0): (1, 0.0, 0.5),
        ("other", 1.0): (0, 0.0, 0.5),
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_step_never_waits_on_the_host():
    from common.augment import DeviceTransform

    args = make_args("--gpus", "0")
    for name, value in (("max_random_h", 36), ("max_random_s", 50), ("max_random_l", 50), ("pca_noise", 0.1)):
        setattr(args, name, value)
    args.max_random_rotate_angle, args.max_random_shear_ratio, args.brightness = 10, 0.1, 0.4
    dev = torch.device("cuda", 0)
    tf = DeviceTransform(args, (3, 32, 32), True, dev)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).to(dev)
    opt = optim.make_optimizer(args, net)
    meter = fit.Meter(dev, 5, True)
    x = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8).pin_memory()
    y = torch.randint(0, 10, (16,)).pin_memory()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host-device synchronisation in the step raises
    try:
        xb, yb = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        logits = net(tf(xb))
        loss = torch.nn.functional.cross_entropy(logits, yb)
        loss.backward()
        opt.step()
        meter.update(logits, yb, loss)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert meter.read([])["_samples"] == 16


@pytest.mark.parametrize("damage", [lambda b: b[:20], lambda b: b"", lambda b: b"\xff" * 64])
def test_damaged_states_file_is_a_user_error(tmp_path, damage):
    checkpoint.save_states(str(tmp_path / "m"), 1, {"epoch": 1, "w": torch.ones(3)})
    path = tmp_path / "m-0001.states"
    assert checkpoint.load_states(str(tmp_path / "m"), 1)["epoch"] == 1
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match="m-0001.states is not a readable training-state file"):
        checkpoint.load_states(str(tmp_path / "m"), 1)


@pytest.mark.parametrize(
    "text,message", [("[1, 2]", "holds a JSON list"), ('{"format": "mxtorch-imgcls/1"}', "names no network")]
)
def test_malformed_symbol_file_is_a_user_error(tmp_path, text, message):
    from common import modelzoo

    (tmp_path / "m-symbol.json").write_text(text)
    with pytest.raises(UserError, match=message):
        modelzoo.load_model(str(tmp_path / "m"), 1)
