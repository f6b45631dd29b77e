"""--activation-checkpointing 1 (common/memory.py): same loss, gradients and BatchNorm statistics as without it,
fewer saved activations, the same training through the command line, resumed exactly."""

import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torchvision.ops import StochasticDepth

import symbols
from common import memory
from tests.test_data import random_images, write_rec

# small networks of several families: (network, arguments, input shape)
FAMILIES = [
    ("resnet", {"num_layers": 20}, (3, 28, 28)),  # pre-activation units, MXNet's BatchNorm
    ("resnet-v1", {"num_layers": 20}, (3, 28, 28)),  # post-activation units
    ("inception-bn", {}, (3, 28, 28)),  # inception modules (Concat)
    ("mobilenetv2", {"multiplier": 0.25}, (3, 32, 32)),  # inverted residuals
    ("densenet", {}, (3, 32, 32)),  # dense layers handed a list their block grows afterwards
    ("efficientnet", {}, (3, 32, 32)),  # MBConv with stochastic depth: random draws inside the blocks
]

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on shared cores: one thread is as fast, and a second waits at every operator's barrier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(network, kwargs, shape):
    torch.manual_seed(0)
    return symbols.get_symbol(network, num_classes=10, image_shape=",".join(map(str, shape)), **kwargs)


def _step(model, x, y, seed, dtype=None):
    """One training forward and backward: (loss, {name: gradient}, {name: buffer})."""
    model.train()
    torch.manual_seed(seed)  # the same random draws (dropout, stochastic depth) for both models
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, {k: b.clone() for k, b in model.named_buffers()}


@pytest.mark.parametrize("network,kwargs,shape", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_same_loss_gradients_and_running_stats(network, kwargs, shape):
    plain = _build(network, kwargs, shape)
    start = {k: b.clone() for k, b in plain.named_buffers()}
    ckpt = copy.deepcopy(plain)
    blocks = memory.checkpoint_blocks(ckpt)
    assert blocks  # the family exposes blocks
    if network == "efficientnet":  # random draws inside the blocks, which the recomputation must replay
        assert any(isinstance(m, StochasticDepth) and m.p > 0 for block in blocks for m in block.modules())
    x, y = torch.randn(2, *shape), torch.arange(2)
    loss_a, grads_a, bufs_a = _step(plain, x, y, seed=1)
    loss_b, grads_b, bufs_b = _step(ckpt, x, y, seed=1)  # the recomputation replays the forward's random draws
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], rtol=1e-5, atol=1e-6, msg=k)
    # the recomputation runs BatchNorm in training mode again: the running statistics must still move once only
    running = [k for k in bufs_a if "running" in k]
    assert running and any(not torch.equal(bufs_a[k], start[k]) for k in running)
    for k in bufs_a:
        assert torch.equal(bufs_b[k], bufs_a[k]), k


def test_bfloat16_autocast():
    plain = _build("resnet", {"num_layers": 8}, (3, 28, 28))
    ckpt = copy.deepcopy(plain)
    memory.checkpoint_blocks(ckpt)
    x, y = torch.randn(4, 3, 28, 28), torch.arange(4)
    loss_a, grads_a, bufs_a = _step(plain, x, y, seed=1, dtype=torch.bfloat16)
    loss_b, grads_b, bufs_b = _step(ckpt, x, y, seed=1, dtype=torch.bfloat16)
    torch.testing.assert_close(loss_b, loss_a)
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], rtol=1e-3, atol=1e-5, msg=k)
    assert all(torch.equal(bufs_b[k], bufs_a[k]) for k in bufs_a)


def _saved_bytes(model, x):
    """Bytes of the tensors a training forward keeps for backward (those outside checkpointed blocks)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    return total


def test_fewer_activations_are_kept():
    plain = _build("resnet", {"num_layers": 8}, (3, 28, 28))
    ckpt = copy.deepcopy(plain)
    memory.checkpoint_blocks(ckpt)
    x = torch.randn(8, 3, 28, 28)
    assert _saved_bytes(ckpt, x) < 0.4 * _saved_bytes(plain, x)


def test_eval_and_no_grad_run_plainly():
    model = _build("resnet", {"num_layers": 8}, (3, 28, 28))
    memory.checkpoint_blocks(model)
    model.eval()
    x = torch.randn(2, 3, 28, 28)
    out = model(x)
    assert out.grad_fn is not None  # eval with gradients: a normal autograd graph
    with torch.no_grad():
        assert torch.equal(model(x), out.detach())
    # parameter names stay as they were: checkpoints and exports are unchanged
    assert list(model.state_dict()) == list(_build("resnet", {"num_layers": 8}, (3, 28, 28)).state_dict())


@pytest.mark.parametrize("network,kwargs", [("vgg", {"num_layers": 11}), ("mlp", {})])
def test_a_plain_chain_is_said_and_left_alone(network, kwargs):
    model = symbols.get_symbol(network, num_classes=10, image_shape="3,32,32", **kwargs)
    lines = []
    memory.apply(model, 1, network, lines.append)
    assert len(lines) == 1 and f"does not apply to {network}" in lines[0]
    assert not memory.find_blocks(model)
    assert all("forward" not in vars(m) for m in model.modules())


TINY = ["--network", "resnet", "--num-layers", "8", "--image-shape", "3,32,32", "--num-classes", "2"]
TINY += ["--batch-size", "8", "--gpus", "", "--disp-batches", "1", "--data-nthreads", "1", "--lr", "0.05"]


def test_trains_like_without_and_resumes_exactly(tmp_path, cli):
    rec = write_rec(tmp_path / "tiny", random_images(24, 32, 32), [k % 2 for k in range(24)])
    args = [*TINY, "--data-train", rec, "--data-val", rec]
    full, part = tmp_path / "plain" / "r", tmp_path / "ckpt" / "r"
    cli("train_imagenet.py", *args, "--num-epochs", "2", "--model-prefix", full, env=ONE_THREAD, check=0)
    on = [*args, "--activation-checkpointing", "1", "--model-prefix", part]
    first = cli("train_imagenet.py", *on, "--num-epochs", "1", env=ONE_THREAD, check=0).stderr
    assert "activation checkpointing: 3 blocks (PreActUnit)" in first
    resumed = cli("train_imagenet.py", *on, "--num-epochs", "2", "--load-epoch", "1", env=ONE_THREAD, check=0).stderr
    assert "resuming at epoch 1" in resumed
    a, b = load_file(f"{full}-0002.params"), load_file(f"{part}-0002.params")
    assert a.keys() == b.keys()
    for k in a:  # recomputed activations are the stored ones: the weights match a run without checkpointing
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def test_bad_value_exits_2(cli):
    proc = cli("train_mnist.py", "--activation-checkpointing", "2")
    assert proc.returncode == 2
    assert "--activation-checkpointing: 2 is out of range (give an integer in [0, 1])" in proc.stderr
