"""Today's step recipes: --mixup-alpha, --cutmix-alpha, --clip-grad-norm, --norm-weight-decay, --bias-weight-decay,
--sam-rho and --optimizer asgd: what each does to a step, that each changes training, exact resume, bad values."""

import argparse
import copy
import functools
import importlib.util
import shutil
import types

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from common import checkpoint, data, fit, mixing, objective, optim, options

OFFLINE = "file:///nonexistent-mirror"  # the bundled MNIST sample, no download
MLP = ["train_mnist.py", "--network", "mlp", "--mnist-mirror", OFFLINE, "--gpus", "", "--cosine", "0"]
RECIPE = ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--sam-rho", "0.05", "--optimizer", "asgd"]
RECIPE += ["--batch-size", "128", "--lr", "0.1"]  # 24 steps an epoch: the run is short, and it still learns


def make_args(*argv):
    """The fit and data flags parsed as an entry script parses them."""
    parser = argparse.ArgumentParser()
    options.add_fit_args(parser)
    options.add_data_args(parser)
    return parser.parse_args(list(argv))


def small_net():
    """Conv with bias, BatchNorm, linear classifier: every kind of parameter group has a member."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    )


# --- the batch mixer


def test_mixed_targets_sum_to_one_and_follow_seed_epoch_and_batch():
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 5
    x = x.contiguous(memory_format=torch.channels_last)
    mixer = mixing.make_mixer(make_args("--mixup-alpha", "0.4", "--cutmix-alpha", "1.0", "--seed", "3"), 5)
    mixer.set_epoch(2)
    rng = torch.get_rng_state()
    first = [mixer(x, y) for _ in range(8)]
    assert torch.equal(torch.get_rng_state(), rng)  # the run's own random stream is left as it was
    kinds = set()
    for xm, target in first:
        assert target.shape == (16, 5) and torch.allclose(target.sum(1), torch.ones(16))
        assert (target >= 0).all() and not torch.equal(target, nn.functional.one_hot(y, 5).float())
        assert xm.shape == x.shape and xm.is_contiguous(memory_format=torch.channels_last)
        kinds.add("cutmix" if (xm == x).float().mean() > 0.01 else "mixup")  # a pasted box leaves the rest as it was
    assert kinds == {"mixup", "cutmix"}  # with both flags, one of the two per batch
    assert not torch.equal(first[0][1], first[1][1])  # each batch its own draw
    mixer.set_epoch(2)  # a resumed epoch: the same draws, batch by batch
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, [mixer(x, y) for _ in first]))
    mixer.set_epoch(3)
    assert not torch.equal(mixer(x, y)[1], first[0][1])
    plain = mixing.make_mixer(make_args(), 5)
    assert plain(x, y)[0] is x and plain(x, y)[1] is y  # no flag: the batch and its labels pass through


def test_label_smoothing_composes_with_mixed_targets():
    logits, soft = torch.randn(6, 5), torch.softmax(torch.randn(6, 5), 1)
    criterion = objective.make_criterion(make_args("--label-smoothing", "0.1"))
    expected = -((soft * 0.9 + 0.1 / 5) * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(criterion(logits, soft), expected, atol=1e-6)


# --- weight decay by parameter kind


def decay_by_name(model, opt):
    """{parameter name: its group's weight decay}."""
    of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    return {name: of[id(p)] for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    "flags, conv_w, conv_b, gamma, beta, fc_b",
    [
        ([], 0.01, 0, 0.01, 0, 0),  # MXNet: weights and gammas only
        (["--norm-weight-decay", "0", "--bias-weight-decay", "0"], 0.01, 0, 0, 0, 0),  # no-bias-decay, gamma too
        (["--norm-weight-decay", "0.003", "--bias-weight-decay", "0.002"], 0.01, 0.002, 0.003, 0.003, 0.002),
        (["--bias-weight-decay", "0.01"], 0.01, 0.01, 0.01, 0, 0.01),
    ],
)
def test_weight_decay_groups_are_what_the_flags_say(flags, conv_w, conv_b, gamma, beta, fc_b):
    net = small_net()
    opt = optim.make_optimizer(make_args("--wd", "0.01", *flags), net)
    got = decay_by_name(net, opt)
    assert got == {
        "0.weight": conv_w,
        "0.bias": conv_b,
        "1.weight": gamma,
        "1.bias": beta,
        "5.weight": 0.01,
        "5.bias": fc_b,
    }
    # the layout does not depend on the flags: a checkpoint resumes under others
    plain = optim.make_optimizer(make_args(), small_net())
    assert [(g["kind"], len(g["params"])) for g in opt.param_groups] == [
        (g["kind"], len(g["params"])) for g in plain.param_groups
    ]


def test_checkpoint_of_the_older_group_layout_resumes():
    """Optimizer state saved with the older [decay, no decay] groups lands on the same parameters."""
    net = small_net()
    old = {False: [], True: []}
    for name, p in net.named_parameters():
        old[not name.endswith("weight")].append(p)
    before = torch.optim.SGD(
        [{"params": old[False], "weight_decay": 0.01, "decay": True}, {"params": old[True], "weight_decay": 0.0}],
        lr=0.1,
        momentum=0.9,
    )
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    before.step()
    opt = optim.make_optimizer(make_args("--wd", "0.01"), net)
    opt.load_state_dict(copy.deepcopy(before.state_dict()))
    assert [g["kind"] for g in opt.param_groups] == list(optim.KINDS)
    for p in net.parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], before.state[p]["momentum_buffer"])


# --- the step: SAM


def test_sam_step_is_the_gradient_at_the_perturbed_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    args = make_args("--sam-rho", "0.5", "--mom", "0", "--wd", "0", "--lr", "0.1")
    ctx = types.SimpleNamespace(
        args=args,
        opt=optim.make_optimizer(args, net),
        raw=net,
        accum=1,
        step=0,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        lr_mult=lambda step: 1.0,
        lr_drops=set(),
        ema=None,
        device=torch.device("cpu"),
        amp_dtype=None,
        criterion=nn.functional.cross_entropy,
    )
    optim.set_lr(ctx.opt, 0.1)
    # by hand on a copy: g at w, e = rho g / ||g||, g' at w + e, then w - lr g'
    ref = copy.deepcopy(net)
    g = torch.autograd.grad(nn.functional.cross_entropy(ref(x), y), list(ref.parameters()))
    norm = torch.sqrt(sum((t * t).sum() for t in g))
    with torch.no_grad():
        for p, t in zip(ref.parameters(), g):
            p.add_(0.5 * t / norm)
    g2 = torch.autograd.grad(nn.functional.cross_entropy(ref(x), y), list(ref.parameters()))
    expected = [p.detach() - 0.1 * t for p, t in zip(net.parameters(), g2)]
    _, loss = fit._forward(ctx, net, x, y)
    loss.backward()
    stats = [b.clone() for b in net.buffers()]
    fit._update(ctx, net, functools.partial(fit._backward, ctx, [(net, x, y)]))
    assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(net.parameters(), expected))
    assert all(torch.equal(a, b) for a, b in zip(net.buffers(), stats))  # the second pass leaves no statistics


# --- each flag changes training (the loop in this process, as test_fit.py runs it)


def train(tmp_path, *flags, epochs=1, name=None, load=None, net=small_net):
    """fit() on 64 random 8x8 images (batches of 16 unless flags say); returns {name: tensor} of the trained weights."""
    prefix = str(tmp_path / name) if name else None
    argv = ["--network", "tiny", "--image-shape", "3,8,8", "--num-classes", "4", "--batch-size", "16"]
    argv += ["--num-epochs", str(epochs), "--lr", "0.1", "--rgb-mean", "0,0,0", "--rgb-std", "64,64,64", "--gpus", ""]
    args = make_args(*argv, *flags)
    args.model_prefix, args.load_epoch = prefix, load
    gen = np.random.default_rng(0)
    images, labels = gen.integers(0, 255, (64, 8, 8, 3), dtype=np.uint8), (np.arange(64) % 4).astype(np.float32)
    loader = lambda a, kv: (data.ArrayIter(images, labels, a.batch_size, shuffle=True, seed=a.seed), None)  # noqa: E731
    model = fit.fit(args, net(), loader)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return train(tmp_path_factory.mktemp("plain"))


FLAGS = {
    "mixup": ["--mixup-alpha", "0.2"],
    "cutmix": ["--cutmix-alpha", "1.0"],
    "clip": ["--clip-grad-norm", "0.05"],
    "norm-wd": ["--norm-weight-decay", "0.5"],
    "bias-wd": ["--bias-weight-decay", "0.5"],
    "sam": ["--sam-rho", "0.05"],
    "asgd": ["--optimizer", "asgd"],
}


@pytest.mark.parametrize("case", FLAGS)
def test_each_flag_changes_training(tmp_path, baseline, case):
    trained = train(tmp_path, *FLAGS[case])
    assert trained.keys() == baseline.keys()
    assert any(not torch.equal(trained[k], baseline[k]) for k in baseline), case


def test_same_seed_trains_the_same(tmp_path, baseline):
    """What test_each_flag_changes_training compares is the flag's doing, not noise of the run."""
    again = train(tmp_path)
    assert all(torch.equal(again[k], baseline[k]) for k in baseline)


def test_sam_with_accumulation_repeats_every_accumulated_batch(tmp_path):
    """Two accumulated batches of 16 take the SAM step of one batch of 32 (no BatchNorm: the same gradients)."""
    linear = lambda: nn.Sequential(nn.Flatten(), nn.Linear(192, 4))  # noqa: E731
    sam = ("--sam-rho", "0.5", "--warmup-epochs", "0")
    # accumulating 2 batches scales the rate by 2 (MXNet's lbsgd): the rate of the batch of 32 is twice as large
    accumulated = train(tmp_path, *sam, "--macrobatch-size", "32", "--lr", "0.05", net=linear)
    whole = train(tmp_path, *sam, "--batch-size", "32", "--lr", "0.1", net=linear)
    once = train(tmp_path, "--batch-size", "32", "--lr", "0.1", net=linear)
    assert all(torch.allclose(accumulated[k], whole[k], atol=1e-5) for k in whole)
    assert any(not torch.allclose(once[k], whole[k], atol=1e-3) for k in whole)  # SAM did change the steps


def test_resume_under_other_decay_flags_gives_each_group_its_decay(tmp_path):
    train(tmp_path, "--wd", "0.01", name="n")
    flags = ("--wd", "0.01", "--norm-weight-decay", "0", "--bias-weight-decay", "0.002")
    train(tmp_path, *flags, epochs=2, name="n", load="1")
    saved = checkpoint.load_states(str(tmp_path / "n"), 2)["optimizer"]["param_groups"]
    got = {g["kind"]: g["weight_decay"] for g in saved}
    assert got == {"weight": 0.01, "norm_weight": 0.0, "norm_bias": 0.0, "bias": 0.002, "other": 0.0}


# --- through the command line


def test_sam_asgd_and_mixing_train_and_resume_exactly(tmp_path, cli):
    """Two epochs in one run, and the second again from the first's checkpoint: the same bytes."""
    full, part = tmp_path / "full" / "m", tmp_path / "part" / "m"
    proc = cli(*MLP, *RECIPE, "--num-epochs", "2", "--model-prefix", full, check=0)
    acc = [float(line.rsplit("=", 1)[1]) for line in proc.stderr.splitlines() if "] Validation-accuracy=" in line]
    assert len(acc) == 2 and acc[1] > 0.5, proc.stderr[-2000:]  # it learns (chance: 0.1)
    part.parent.mkdir()
    for suffix in ("-symbol.json", "-0001.params", "-0001.states"):  # what a run of one epoch leaves
        shutil.copy(f"{full}{suffix}", f"{part}{suffix}")
    proc = cli(*MLP, *RECIPE, "--num-epochs", "2", "--model-prefix", part, "--load-epoch", "1", check=0)
    assert "resuming at epoch 1" in proc.stderr
    a, b = load_file(f"{full}-0002.params"), load_file(f"{part}-0002.params")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the files' bytes may differ only in the order safetensors writes the metadata keys in; the digest may not
    assert checkpoint.file_metadata(open(f"{full}-0002.params", "rb").read()) == checkpoint.file_metadata(
        open(f"{part}-0002.params", "rb").read()
    )


BAD = [
    ("--mixup-alpha", "-0.2"),
    ("--cutmix-alpha", "-1"),
    ("--sam-rho", "-0.05"),
    ("--clip-grad-norm", "0"),
    ("--norm-weight-decay", "-0.0001"),
    ("--bias-weight-decay", "-1"),
]


def test_a_bad_value_through_the_script_exits_2_with_one_line(cli):
    proc = cli("train_mnist.py", "--sam-rho", "-0.05", check=2)
    lines = proc.stderr.strip().splitlines()
    assert "error: argument --sam-rho: -0.05 is out of range (give a number >= 0)" in lines[-1]
    assert sum("error" in line for line in lines) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("flag, value", BAD)
def test_bad_values_are_refused_naming_the_flag(capsys, repo, flag, value):
    spec = importlib.util.spec_from_file_location("train_mnist", repo / "train_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args([flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and f"error: argument {flag}: {value} is out of range" in err[-1]
