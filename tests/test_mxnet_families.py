"""MXNet checkpoint import against live MXNet 1.9.1 for the families without golden files.

The peer builds each network the way MXNet's example/image-classification/symbols/<family>.py lays it out
(operators, layer names, attributes), fills every array (BatchNorm moving statistics included) with random
values, saves it with mx.model.save_checkpoint and records its logits for a fixed input; the suite then
imports the checkpoint and must give the same logits.
"""

import json
import os
import subprocess

import numpy as np
import pytest
import torch

from common import mximport

# (test id, family, get_symbol keyword arguments in the peer, image shape)
CASES = [
    ("resnet-v1-20", "resnet-v1", {"num_layers": 20}, "3,28,28"),
    ("resnet-v1-18", "resnet-v1", {"num_layers": 18}, "3,64,64"),
    ("resnet-v1-18-32px", "resnet-v1", {"num_layers": 18}, "3,32,32"),
    ("resnext-164-g4", "resnext", {"num_layers": 164, "num_group": 4}, "3,28,28"),
    ("resnext-50-g32", "resnext", {"num_layers": 50, "num_group": 32}, "3,64,64"),
    ("mobilenet-0.5", "mobilenet", {"alpha": 0.5, "resolution": 64}, "3,64,64"),
    ("mobilenet-0.25", "mobilenet", {"alpha": 0.25, "resolution": 96}, "3,128,128"),
    ("vgg-11", "vgg", {"num_layers": 11, "batch_norm": False}, "3,32,32"),
    ("vgg-11-bn", "vgg", {"num_layers": 11, "batch_norm": True}, "3,64,64"),
    ("inception-bn-28", "inception-bn", {}, "3,28,28"),
    ("inception-bn-224", "inception-bn", {}, "3,224,224"),
]
NUM_CLASSES = 10
BATCH = 2

# The peer program (run in the peer's python, numpy < 1.24) is PEER_HEAD + a module's builders (each defines
# build(family, kwargs, num_classes, image_shape) -> MXNet symbol) + PEER_MAIN; argv: output folder, JSON list of
# [id, family, kwargs, image shape], number of classes, batch. Other test modules reuse it with their own builders.
PEER_HEAD = r"""
import json, os, sys
import mxnet as mx
import numpy as np

S, BN, ACT, POOL = mx.sym.Convolution, mx.sym.BatchNorm, mx.sym.Activation, mx.sym.Pooling
"""

BUILDERS = r"""
def relu(x, name):
    return ACT(data=x, act_type="relu", name=name)


def resnet_unit(x, nf, stride, dim_match, name, bottle_neck, v1, num_group=1):
    # resnet-v1.py: the stride on the first 1x1, mid = nf/4, projection NAME_conv1sc + NAME_sc, ReLU NAME_relu3.
    # resnext.py: the stride and num_group on the 3x3, mid = nf/2, projection NAME_sc + NAME_sc_bn, ReLU NAME_relu.
    def cbn(x, nf, kernel, stride, pad, tag, group=1):
        c = S(data=x, num_filter=nf, kernel=kernel, stride=stride, pad=pad, num_group=group, no_bias=True,
              workspace=256, name=name + "_conv" + tag)
        return BN(data=c, fix_gamma=False, eps=2e-5, momentum=0.9, name=name + "_bn" + tag)
    if bottle_neck:
        mid = int(nf * (0.25 if v1 else 0.5))
        s1, s2 = (stride, (1, 1)) if v1 else ((1, 1), stride)
        out = relu(cbn(x, mid, (1, 1), s1, (0, 0), "1"), name + "_relu1")
        out = relu(cbn(out, mid, (3, 3), s2, (1, 1), "2", 1 if v1 else num_group), name + "_relu2")
        out = cbn(out, nf, (1, 1), (1, 1), (0, 0), "3")
    else:
        out = relu(cbn(x, nf, (3, 3), stride, (1, 1), "1"), name + "_relu1")
        out = cbn(out, nf, (3, 3), (1, 1), (1, 1), "2")
    if dim_match:
        short = x
    else:
        conv_name, bn_name = (name + "_conv1sc", name + "_sc") if v1 else (name + "_sc", name + "_sc_bn")
        c = S(data=x, num_filter=nf, kernel=(1, 1), stride=stride, no_bias=True, workspace=256, name=conv_name)
        short = BN(data=c, fix_gamma=False, eps=2e-5, momentum=0.9, name=bn_name)
    return relu(out + short, name + ("_relu3" if v1 else "_relu"))


def resnet_post(num_classes, num_layers, image_shape, v1, num_group=1):
    # resnet-v1.py / resnext.py: small-image depths up to 28 (v1) or 32 (resnext) pixels, else ImageNet's.
    _, height, _ = image_shape
    if height <= (28 if v1 else 32):
        if num_layers >= 164 and (num_layers - 2) % 9 == 0:
            units, filters, bottle = [(num_layers - 2) // 9] * 3, [16, 64, 128, 256], True
        else:
            units, filters, bottle = [(num_layers - 2) // 6] * 3, [16, 16, 32, 64], False
    else:
        units = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[num_layers]
        bottle = num_layers >= 50
        filters = [64, 256, 512, 1024, 2048] if bottle else [64, 64, 128, 256, 512]
    data = mx.sym.identity(data=mx.sym.Variable("data"), name="id")
    if not v1:
        data = BN(data=data, fix_gamma=True, eps=2e-5, momentum=0.9, name="bn_data")
    if height <= 32:
        body = S(data=data, num_filter=filters[0], kernel=(3, 3), stride=(1, 1), pad=(1, 1), no_bias=True,
                 name="conv0", workspace=256)
        if v1:
            body = BN(data=body, fix_gamma=False, eps=2e-5, momentum=0.9, name="bn0")
    else:
        body = S(data=data, num_filter=filters[0], kernel=(7, 7), stride=(2, 2), pad=(3, 3), no_bias=True,
                 name="conv0", workspace=256)
        body = relu(BN(data=body, fix_gamma=False, eps=2e-5, momentum=0.9, name="bn0"), "relu0")
        body = POOL(data=body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    for i, count in enumerate(units):
        for j in range(count):
            stride = (2, 2) if i > 0 and j == 0 else (1, 1)
            body = resnet_unit(body, filters[i + 1], stride, j > 0, "stage%d_unit%d" % (i + 1, j + 1), bottle, v1,
                               num_group)
    pool = POOL(data=body, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    fc = mx.sym.FullyConnected(data=mx.sym.Flatten(data=pool), num_hidden=num_classes, name="fc1")
    return mx.sym.SoftmaxOutput(data=fc, name="softmax")


def mobilenet(num_classes, alpha, resolution, image_shape):
    # mobilenet.py: Conv = convolution without bias, BatchNorm(fix_gamma=True, default eps), ReLU.
    def conv(x, nf, kernel, stride, pad, name, group=1):
        c = S(data=x, num_filter=nf, kernel=kernel, num_group=group, stride=stride, pad=pad, no_bias=True,
              name=name + "_conv2d")
        return relu(BN(data=c, name=name + "_batchnorm", fix_gamma=True), name + "_relu")
    base = int(32 * alpha)
    body = conv(mx.sym.Variable("data"), base, (3, 3), (2, 2), (1, 1), "conv_1")
    body = conv(body, base, (3, 3), (1, 1), (1, 1), "conv_2_dw", base)
    body = conv(body, base * 2, (1, 1), (1, 1), (0, 0), "conv_2")
    plan = [(3, 2, 2), (4, 4, 1), (5, 4, 2), (6, 8, 1), (7, 8, 2)] + [(i, 16, 1) for i in range(8, 13)]
    for idx, depth, stride in plan + [(13, 16, 2), (14, 32, 1)]:
        body = conv(body, base * depth, (3, 3), (stride, stride), (1, 1), "conv_%d_dw" % idx, base * depth)
        body = conv(body, base * depth * stride, (1, 1), (1, 1), (0, 0), "conv_%d" % idx)
    k = resolution // 32
    pool = POOL(data=body, kernel=(k, k), stride=(1, 1), pool_type="avg", name="global_pool")
    fc = mx.sym.FullyConnected(data=mx.sym.Flatten(data=pool, name="flatten"), num_hidden=num_classes, name="fc")
    return mx.sym.SoftmaxOutput(data=fc, name="softmax")


def vgg(num_classes, num_layers, batch_norm, image_shape):
    # vgg.py: convS_L (+ bnS_L with BatchNorm's defaults), reluS_L, 2x2/2 max pooling poolS, then fc6-fc8.
    layers = {11: [1, 1, 2, 2, 2], 13: [2, 2, 2, 2, 2], 16: [2, 2, 3, 3, 3], 19: [2, 2, 4, 4, 4]}[num_layers]
    body = mx.sym.Variable("data")
    for i, (count, nf) in enumerate(zip(layers, [64, 128, 256, 512, 512])):
        for j in range(count):
            body = S(data=body, kernel=(3, 3), pad=(1, 1), num_filter=nf, name="conv%d_%d" % (i + 1, j + 1))
            if batch_norm:
                body = BN(data=body, name="bn%d_%d" % (i + 1, j + 1))
            body = relu(body, "relu%d_%d" % (i + 1, j + 1))
        body = POOL(data=body, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool%d" % (i + 1))
    body = mx.sym.Flatten(data=body, name="flatten")
    for n in (6, 7):
        body = mx.sym.FullyConnected(data=body, num_hidden=4096, name="fc%d" % n)
        body = mx.sym.Dropout(data=relu(body, "relu%d" % n), p=0.5, name="drop%d" % n)
    fc = mx.sym.FullyConnected(data=body, num_hidden=num_classes, name="fc8")
    return mx.sym.SoftmaxOutput(data=fc, name="softmax")


def cf(x, nf, kernel, name, stride=(1, 1), pad=(0, 0), suffix=""):
    # inception-bn.py's ConvFactory: convolution with bias, BatchNorm(fix_gamma=False, eps=1e-10 + 1e-5), ReLU.
    c = S(data=x, num_filter=nf, kernel=kernel, stride=stride, pad=pad, name="conv_%s%s" % (name, suffix))
    b = BN(data=c, fix_gamma=False, eps=1e-10 + 1e-5, momentum=0.9, name="bn_%s%s" % (name, suffix))
    return relu(b, "relu_%s%s" % (name, suffix))


def inception_a(x, n1, n3r, n3, nd3r, nd3, pool, proj, name):
    c1 = cf(x, n1, (1, 1), "%s_1x1" % name)
    c3 = cf(cf(x, n3r, (1, 1), "%s_3x3" % name, suffix="_reduce"), n3, (3, 3), "%s_3x3" % name, pad=(1, 1))
    cd = cf(x, nd3r, (1, 1), "%s_double_3x3" % name, suffix="_reduce")
    cd = cf(cd, nd3, (3, 3), "%s_double_3x3_0" % name, pad=(1, 1))
    cd = cf(cd, nd3, (3, 3), "%s_double_3x3_1" % name, pad=(1, 1))
    p = POOL(data=x, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type=pool, name="%s_pool_%s_pool" % (pool, name))
    cp = cf(p, proj, (1, 1), "%s_proj" % name)
    return mx.sym.Concat(c1, c3, cd, cp, name="ch_concat_%s_chconcat" % name)


def inception_b(x, n3r, n3, nd3r, nd3, name):
    c3 = cf(cf(x, n3r, (1, 1), "%s_3x3" % name, suffix="_reduce"), n3, (3, 3), "%s_3x3" % name, (2, 2), (1, 1))
    cd = cf(x, nd3r, (1, 1), "%s_double_3x3" % name, suffix="_reduce")
    cd = cf(cd, nd3, (3, 3), "%s_double_3x3_0" % name, pad=(1, 1))
    cd = cf(cd, nd3, (3, 3), "%s_double_3x3_1" % name, (2, 2), (1, 1))
    p = POOL(data=x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="max_pool_%s_pool" % name)
    return mx.sym.Concat(c3, cd, p, name="ch_concat_%s_chconcat" % name)


def simple(x, n1, n3, name):
    c1 = cf(x, n1, (1, 1), name + "_1x1")
    return mx.sym.Concat(c1, cf(x, n3, (3, 3), name + "_3x3", pad=(1, 1)), name=name + "_ch_concat")


def downsample(x, n3, name):
    c = cf(x, n3, (3, 3), name + "_conv", (2, 2), (1, 1))
    p = POOL(data=x, name=name + "_pool", kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    return mx.sym.Concat(c, p, name=name + "_ch_concat")


def inception_bn(num_classes, image_shape):
    # inception-bn.py: the simpler network up to 28 pixels, else the 224-pixel one; the classifier is unnamed.
    data = mx.sym.Variable("data")
    if image_shape[1] <= 28:
        body = cf(data, 96, (3, 3), "1", pad=(1, 1))
        for name, n1, n3 in [("in3a", 32, 32), ("in3b", 32, 48), ("in3c", None, 80), ("in4a", 112, 48),
                             ("in4b", 96, 64), ("in4c", 80, 80), ("in4d", 48, 96), ("in4e", None, 96),
                             ("in5a", 176, 160), ("in5b", 176, 160)]:
            body = downsample(body, n3, name) if n1 is None else simple(body, n1, n3, name)
        pool = POOL(data=body, pool_type="avg", kernel=(7, 7), name="global_pool")
    else:
        body = cf(data, 64, (7, 7), "1", stride=(2, 2), pad=(3, 3))
        body = POOL(data=body, kernel=(3, 3), stride=(2, 2), name="pool_1", pool_type="max")
        body = cf(cf(body, 64, (1, 1), "2_red"), 192, (3, 3), "2", pad=(1, 1))
        body = POOL(data=body, kernel=(3, 3), stride=(2, 2), name="pool_2", pool_type="max")
        body = inception_a(body, 64, 64, 64, 64, 96, "avg", 32, "3a")
        body = inception_a(body, 64, 64, 96, 64, 96, "avg", 64, "3b")
        body = inception_b(body, 128, 160, 64, 96, "3c")
        body = inception_a(body, 224, 64, 96, 96, 128, "avg", 128, "4a")
        body = inception_a(body, 192, 96, 128, 96, 128, "avg", 128, "4b")
        body = inception_a(body, 160, 128, 160, 128, 160, "avg", 128, "4c")
        body = inception_a(body, 96, 128, 192, 160, 192, "avg", 128, "4d")
        body = inception_b(body, 128, 192, 192, 256, "4e")
        body = inception_a(body, 352, 192, 320, 160, 224, "avg", 128, "5a")
        body = inception_a(body, 352, 192, 320, 192, 224, "max", 128, "5b")
        pool = POOL(data=body, kernel=(7, 7), stride=(1, 1), name="global_pool", pool_type="avg")
    fc = mx.sym.FullyConnected(data=mx.sym.Flatten(data=pool), num_hidden=num_classes)
    return mx.sym.SoftmaxOutput(data=fc, name="softmax")


def build(family, kwargs, num_classes, image_shape):
    if family in ("resnet-v1", "resnext"):
        return resnet_post(num_classes, image_shape=image_shape, v1=family == "resnet-v1", **kwargs)
    if family == "mobilenet":
        return mobilenet(num_classes, image_shape=image_shape, **kwargs)
    if family == "vgg":
        return vgg(num_classes, image_shape=image_shape, **kwargs)
    return inception_bn(num_classes, image_shape)
"""

PEER_MAIN = r"""
def random_arrays(sym, shape, rng):
    # Random weights (fan-in scaled), gamma, beta and biases; the moving statistics come from calibrate().
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shape)
    args = {}
    for name, s in zip(sym.list_arguments(), arg_shapes):
        if name in ("data", "softmax_label"):
            continue
        if name.endswith("_weight"):
            value = rng.normal(0, (2.0 / np.prod(s[1:])) ** 0.5, s)
        elif name.endswith("_gamma"):
            value = rng.uniform(0.5, 1.5, s)
        else:
            value = rng.normal(0, 0.1, s)
        args[name] = mx.nd.array(value.astype(np.float32))
    aux = {name: mx.nd.zeros(s) for name, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    return args, aux


def calibrate(sym, args, aux, x, rng):
    # Each BatchNorm's moving statistics: its input's batch statistics (one training-mode pass, where every
    # BatchNorm normalises by the batch), perturbed per channel. Arbitrary statistics would let constants
    # swamp the input after a few layers; these keep the logits input-dependent, and the perturbation and
    # random gamma keep fix_gamma and eps visible in them.
    nodes = json.loads(sym.tojson())["nodes"]
    internals = sym.get_internals()
    outputs = set(internals.list_outputs())
    bns = [n for n in nodes if n["op"] == "BatchNorm"]
    if not bns:
        return
    feeds = []
    for node in bns:
        source = nodes[node["inputs"][0][0]]["name"]
        feeds.append(internals[source + "_output" if source + "_output" in outputs else source])
    group = mx.sym.Group(feeds)
    inputs = dict(args, data=mx.nd.array(x))
    group_args = [inputs[name] for name in group.list_arguments()]
    group_aux = [aux[name] for name in group.list_auxiliary_states()]
    # With MKLDNN's graph partitioning this group fails to bind (argument count check); run the plain operators.
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
    exe = group.bind(mx.cpu(), group_args, aux_states=group_aux, grad_req="null")
    del os.environ["MXNET_SUBGRAPH_BACKEND"]
    for node, out in zip(bns, exe.forward(is_train=True)):
        a = out.asnumpy().astype(np.float64)
        mean, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
        noisy_mean = mean + rng.normal(0, 0.2, mean.shape) * var**0.5
        aux[node["name"] + "_moving_mean"] = mx.nd.array(noisy_mean.astype(np.float32))
        aux[node["name"] + "_moving_var"] = mx.nd.array((var * rng.uniform(0.5, 1.5, var.shape)).astype(np.float32))


out_dir, cases, num_classes, batch = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.RandomState(0)
for case_id, family, kwargs, image_shape in cases:
    image_shape = [int(v) for v in image_shape.split(",")]
    with mx.name.NameManager():  # a fresh counter per network, so unnamed layers get the names a new process gives
        sym = build(family, kwargs, num_classes, image_shape)
    shape = (batch, *image_shape)
    args, aux = random_arrays(sym, shape, rng)
    calibrate(sym, args, aux, rng.uniform(-1, 1, (4, *image_shape)), rng)
    prefix = "%s/%s" % (out_dir, case_id)
    mx.model.save_checkpoint(prefix, 1, sym, args, aux)
    logits_name = sym.get_children()[0].name  # SoftmaxOutput's data input: the classifier
    mod = mx.mod.Module(sym.get_internals()[logits_name + "_output"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", shape)], for_training=False)
    mod.set_params(args, aux)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    mod.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    np.save(prefix + "-input.npy", x)
    np.save(prefix + "-logits.npy", mod.get_outputs()[0].asnumpy())
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run these batch-2 networks on one thread: threads gain little here, and OpenMP's barriers stall on busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_peer(mxnet_python, out, cases, builders):
    """Build, fill, save and run each case's network in live MXNet (builders: the families' peer code); return out."""
    program = PEER_HEAD + builders + PEER_MAIN
    command = [mxnet_python, "-c", program, out, json.dumps([list(c) for c in cases]), str(NUM_CLASSES), str(BATCH)]
    proc = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def assert_same_logits(prefix):
    """The imported checkpoint's logits equal MXNet's recorded ones within 1e-4 of the largest."""
    expected = np.load(f"{prefix}-logits.npy")
    with torch.no_grad():
        out = mximport.load_mxnet_checkpoint(prefix, 1)(torch.from_numpy(np.load(f"{prefix}-input.npy"))).numpy()
    assert out.shape == expected.shape == (BATCH, NUM_CLASSES)
    assert np.abs(out - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.fixture(scope="module")
def peer_checkpoints(mxnet_python, tmp_path_factory):
    """Folder holding, per case, MXNet's checkpoint ID-symbol.json + ID-0001.params, ID-input.npy, ID-logits.npy."""
    return run_peer(mxnet_python, tmp_path_factory.mktemp("mxnet_families"), CASES, BUILDERS)


@pytest.mark.mxnet
@pytest.mark.parametrize("case_id,family,kwargs,image_shape", CASES, ids=[case[0] for case in CASES])
def test_import_gives_live_mxnet_logits(peer_checkpoints, case_id, family, kwargs, image_shape):
    prefix = str(peer_checkpoints / case_id)
    _, info = mximport.import_mxnet(prefix, 1)
    assert info["network"] == family
    assert info["arguments"]["num_classes"] == NUM_CLASSES
    for key in ("num_layers", "num_group", "batch_norm", "resolution"):
        if key in kwargs:
            assert info["arguments"][key] == kwargs[key], key
    if "alpha" in kwargs:
        assert info["arguments"]["multiplier"] == kwargs["alpha"]
    assert_same_logits(prefix)


@pytest.mark.mxnet
@pytest.mark.parametrize("case_id", ["resnet-v1-18-32px", "mobilenet-0.25"])
def test_predict_cli_takes_mxnet_checkpoint(peer_checkpoints, cli, tmp_path, case_id):
    from PIL import Image

    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 140, 3), dtype=np.uint8)).save(image)
    args = ["--model", peer_checkpoints / case_id, "--load-epoch", "1", "--top-k", "3", "--json", "-", image]
    proc = cli("predict.py", *args, check=0)
    (result,) = json.loads(proc.stdout)
    assert len(result["top"]) == 3 and all(0 <= top["class"] < NUM_CLASSES for top in result["top"])
    probabilities = [top["probability"] for top in result["top"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 <= sum(probabilities) <= 1 + 1e-6
