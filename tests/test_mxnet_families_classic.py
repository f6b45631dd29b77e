"""MXNet's alexnet (with LRN), googlenet (no BatchNorm) and mobilenetv2 against live MXNet 1.9.1.

The peer builds each network the way MXNet's example/image-classification/symbols/<family>.py lays it out,
saves it with random arrays and records its logits (tests/test_mxnet_families.py's machinery); the suite imports
the checkpoint, must name the family and give the same logits. Parameter counts are compared with MXNet's own
infer_shape, and MXNet's LRN with the suite's on inputs where the normalisation dominates.
"""

import json
import subprocess

import numpy as np
import pytest
import torch

import symbols
from common import modelzoo, mximport
from symbols.mxlayers import MXLRN, param_count
from tests.test_mxnet_families import NUM_CLASSES, PEER_HEAD, assert_same_logits, run_peer

# (test id, family, get_symbol keyword arguments in the peer, image shape); googlenet needs 253+ pixels in MXNet.
CASES = [
    ("alexnet-96", "alexnet", {}, "3,96,96"),
    ("alexnet-128-gray", "alexnet", {}, "1,128,128"),
    ("googlenet-256", "googlenet", {}, "3,256,256"),
    ("mobilenetv2-0.5", "mobilenetv2", {"multiplier": 0.5}, "3,64,64"),
    ("mobilenetv2-1.4", "mobilenetv2", {"multiplier": 1.4}, "3,64,64"),
]

BUILDERS = r"""
def relu(x, name=None):
    return ACT(data=x, act_type="relu", name=name)


def alexnet(num_classes, image_shape):
    # alexnet.py: every layer unnamed; LRN(alpha 1e-4, beta 0.75, knorm 1, nsize 5) after pooling 1 and 2.
    body = mx.sym.Variable("data")
    for nf, kernel, stride, pad, lrn in [(96, 11, 4, 0, True), (256, 5, 1, 2, True)]:
        body = relu(S(data=body, kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad), num_filter=nf))
        body = POOL(data=body, pool_type="max", kernel=(3, 3), stride=(2, 2))
        body = mx.sym.LRN(data=body, alpha=0.0001, beta=0.75, knorm=1, nsize=5)
    for nf in (384, 384, 256):
        body = relu(S(data=body, kernel=(3, 3), pad=(1, 1), num_filter=nf))
    body = mx.sym.Flatten(data=POOL(data=body, kernel=(3, 3), stride=(2, 2), pool_type="max"))
    for _ in range(2):
        body = mx.sym.Dropout(data=relu(mx.sym.FullyConnected(data=body, num_hidden=4096)), p=0.5)
    return mx.sym.SoftmaxOutput(data=mx.sym.FullyConnected(data=body, num_hidden=num_classes), name="softmax")


def conv_relu(x, nf, kernel, name, stride=1, pad=0):
    # googlenet.py's ConvFactory: convolution conv_NAME (with bias) and ReLU relu_NAME, no BatchNorm.
    c = S(data=x, num_filter=nf, kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad), name="conv_" + name)
    return relu(c, "relu_" + name)


def googlenet(num_classes, image_shape):
    # googlenet.py: InceptionFactory(1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, max-pool projection) modules.
    body = conv_relu(mx.sym.Variable("data"), 64, 7, "conv1", 2, 3)
    body = POOL(data=body, kernel=(3, 3), stride=(2, 2), pool_type="max")
    body = conv_relu(conv_relu(body, 64, 1, "conv2"), 192, 3, "conv3", 1, 1)
    body = POOL(data=body, kernel=(3, 3), stride=(2, 2), pool_type="max")
    table = [("in3a", 64, 96, 128, 16, 32, 32), ("in3b", 128, 128, 192, 32, 96, 64), None,
             ("in4a", 192, 96, 208, 16, 48, 64), ("in4b", 160, 112, 224, 24, 64, 64),
             ("in4c", 128, 128, 256, 24, 64, 64), ("in4d", 112, 144, 288, 32, 64, 64),
             ("in4e", 256, 160, 320, 32, 128, 128), None,
             ("in5a", 256, 160, 320, 32, 128, 128), ("in5b", 384, 192, 384, 48, 128, 128)]
    for row in table:
        if row is None:
            body = POOL(data=body, kernel=(3, 3), stride=(2, 2), pool_type="max")
            continue
        name, n1, n3r, n3, n5r, n5, proj = row
        c1 = conv_relu(body, n1, 1, name + "_1x1")
        c3 = conv_relu(conv_relu(body, n3r, 1, name + "_3x3_reduce"), n3, 3, name + "_3x3", 1, 1)
        c5 = conv_relu(conv_relu(body, n5r, 1, name + "_5x5_reduce"), n5, 5, name + "_5x5", 1, 2)
        p = POOL(data=body, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="max", name="max_pool_%s_pool" % name)
        body = mx.sym.Concat(c1, c3, c5, conv_relu(p, proj, 1, name + "_proj"), name="ch_concat_%s_chconcat" % name)
    body = mx.sym.Flatten(data=POOL(data=body, kernel=(7, 7), stride=(1, 1), pool_type="avg"))
    return mx.sym.SoftmaxOutput(data=mx.sym.FullyConnected(data=body, num_hidden=num_classes), name="softmax")


def mnv2_unit(x, nf, kernel, prefix, stride=1, group=1, act=True):
    # mobilenetv2.py's mobilenet_unit: PREFIX-conv2d (no bias), PREFIX-batchnorm (fix_gamma False, eps 1e-5), clip.
    pad = kernel // 2
    c = S(data=x, num_filter=nf, kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad), num_group=group,
          no_bias=True, name=prefix + "-conv2d")
    b = BN(data=c, fix_gamma=False, use_global_stats=False, eps=1e-5, name=prefix + "-batchnorm")
    return mx.sym.clip(b, 0, 6, name=prefix + "-relu6") if act else b


def mobilenetv2(num_classes, image_shape, multiplier=1.0):
    # mobilenetv2.py: widths int(round(c * m)), an expansion 1x1 in every block, 1280 filters unless m > 1.
    in_c = int(round(32 * multiplier))
    body = mnv2_unit(mx.sym.Variable("data"), in_c, 3, "first-3x3-conv", 2)
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    for i, (t, c, n, s) in enumerate(table):
        out_c = int(round(c * multiplier))
        for j in range(n):
            prefix = "seq-%d-block%d" % (i, j)
            mid = int(round(in_c * t))
            out = mnv2_unit(body, mid, 1, prefix + "-exp")
            out = mnv2_unit(out, mid, 3, prefix + "-depthwise", s if j == 0 else 1, mid)
            out = mnv2_unit(out, out_c, 1, prefix + "-linear", act=False)
            body = mx.sym.elemwise_add(body, out, name=prefix + "-shortcut") if j > 0 else out
            in_c = out_c
    body = mnv2_unit(body, int(1280 * multiplier) if multiplier > 1.0 else 1280, 1, "last-1x1-conv")
    pool = POOL(data=body, kernel=(7, 7), stride=(1, 1), pool_type="avg", name="global_pool", global_pool=True)
    fc = mx.sym.FullyConnected(data=mx.sym.Flatten(data=pool, name="flatten"), num_hidden=num_classes, name="fc")
    return mx.sym.SoftmaxOutput(data=fc, name="softmax")


def build(family, kwargs, num_classes, image_shape):
    return {"alexnet": alexnet, "googlenet": googlenet, "mobilenetv2": mobilenetv2}[family](
        num_classes, image_shape, **kwargs)
"""

# argv: JSON list of [family, kwargs, image shape, num_classes]; prints per case [argument elements, aux elements]
# or the error MXNet gives when it cannot build the network for that image size.
COUNT_MAIN = r"""
out = []
for family, kwargs, image_shape, num_classes in json.loads(sys.argv[1]):
    shape = [int(v) for v in image_shape.split(",")]
    sym = build(family, kwargs, num_classes, shape)
    try:
        arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, *shape))
    except mx.base.MXNetError as err:
        out.append(str(err).splitlines()[0])
        continue
    args = [np.prod(s) for n, s in zip(sym.list_arguments(), arg_shapes) if n not in ("data", "softmax_label")]
    out.append([int(sum(args)), int(sum(np.prod(s) for s in aux_shapes))])
print(json.dumps(out))
"""

# MXNet's own counts (COUNT_MAIN in MXNet 1.9.1): (family, kwargs, image shape, classes, arguments, aux states).
MXNET_COUNTS = [
    ("alexnet", {}, "3,224,224", 1000, 50844008, 0),
    ("alexnet", {}, "3,96,96", 10, 21622154, 0),
    ("googlenet", {}, "3,256,256", 1000, 6998552, 0),
    ("googlenet", {}, "3,320,320", 10, 6065722, 0),
    ("mobilenetv2", {"multiplier": 1.0}, "3,224,224", 1000, 3505960, 34176),
    ("mobilenetv2", {"multiplier": 1.4}, "3,224,224", 1000, 6099079, 47884),
    ("mobilenetv2", {"multiplier": 0.5}, "3,224,224", 1000, 1965736, 18368),
]

LRN_MAIN = r"""
x = np.random.RandomState(0).uniform(-3, 3, (2, 9, 4, 5)).astype(np.float32)
out = {"x": x.tolist()}
for alpha, beta, knorm, nsize in json.loads(sys.argv[1]):
    y = mx.nd.LRN(mx.nd.array(x), alpha=alpha, beta=beta, knorm=knorm, nsize=nsize).asnumpy()
    out["%s,%s,%s,%s" % (alpha, beta, knorm, nsize)] = y.tolist()
print(json.dumps(out))
"""


def peer_json(mxnet_python, program, argument):
    """Run a peer program that prints one JSON document; return it."""
    proc = subprocess.run([mxnet_python, "-c", program, argument], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def peer_checkpoints(mxnet_python, tmp_path_factory):
    """Folder holding, per case, MXNet's checkpoint ID-symbol.json + ID-0001.params, ID-input.npy, ID-logits.npy."""
    return run_peer(mxnet_python, tmp_path_factory.mktemp("mxnet_classic"), CASES, BUILDERS)


@pytest.mark.mxnet
@pytest.mark.parametrize("case_id,family,kwargs,image_shape", CASES, ids=[case[0] for case in CASES])
def test_import_gives_live_mxnet_logits(peer_checkpoints, case_id, family, kwargs, image_shape):
    prefix = str(peer_checkpoints / case_id)
    _, info = mximport.import_mxnet(prefix, 1)
    assert info["network"] == family
    assert info["arguments"]["num_classes"] == NUM_CLASSES
    if family == "mobilenetv2":
        assert info["arguments"]["multiplier"] == kwargs["multiplier"]
    else:  # the image size is read from the classifier's width
        assert info["arguments"]["image_shape"] == image_shape
    assert_same_logits(prefix)


@pytest.mark.mxnet
def test_parameter_counts_equal_live_mxnet(mxnet_python):
    cases = [[family, kwargs, shape, classes] for family, kwargs, shape, classes, _, _ in MXNET_COUNTS]
    cases.append(["googlenet", {}, "3,224,224", 1000])  # MXNet refuses: its 7x7 pooling meets a 6x6 map
    counts = peer_json(mxnet_python, PEER_HEAD + BUILDERS + COUNT_MAIN, json.dumps(cases))
    assert [tuple(c) for c in counts[:-1]] == [(args, aux) for *_, args, aux in MXNET_COUNTS]
    assert "exceeds input" in counts[-1]


@pytest.mark.parametrize("family,kwargs,image_shape,num_classes,args,aux", MXNET_COUNTS)
def test_parameter_counts_match_mxnet(family, kwargs, image_shape, num_classes, args, aux):
    model = symbols.get_symbol(family, num_classes=num_classes, image_shape=image_shape, **kwargs)
    assert param_count(model) == (args, aux)
    names = symbols.mxnet_param_map(model)
    assert set(names) == set(model.state_dict()) and len(set(names.values())) == len(names)


def test_googlenet_takes_224_pixels_with_mxnets_parameters():
    small, full = (symbols.get_symbol("googlenet", image_shape=f"3,{s},{s}") for s in (224, 256))
    assert param_count(small) == param_count(full)
    assert small.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.mxnet
def test_lrn_matches_mxnet(mxnet_python):
    settings = [[0.0001, 0.75, 1, 5], [2.0, 0.75, 1, 5], [0.5, 0.6, 2, 3], [3.0, 1.0, 0.5, 7]]
    out = peer_json(mxnet_python, PEER_HEAD + LRN_MAIN, json.dumps(settings))
    x = torch.tensor(out["x"])
    for alpha, beta, knorm, nsize in settings:
        expected = np.array(out[f"{alpha},{beta},{knorm},{nsize}"])
        got = MXLRN(alpha, beta, knorm, nsize)(x).numpy()
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max(), (alpha, beta, knorm, nsize)


@pytest.mark.mxnet
def test_convert_mxnet_cli_takes_alexnet(peer_checkpoints, cli, tmp_path):
    out = tmp_path / "alexnet"
    cli("tools/convert_mxnet.py", "--prefix", peer_checkpoints / "alexnet-96", "--output", out, check=0)
    model, info = modelzoo.load_model(str(out), 1)
    assert info["preprocess"]["image_shape"] == [3, 96, 96]
    expected = np.load(peer_checkpoints / "alexnet-96-logits.npy")
    with torch.no_grad():
        logits = model(torch.from_numpy(np.load(peer_checkpoints / "alexnet-96-input.npy"))).numpy()
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()
