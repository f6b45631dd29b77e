"""MXNet's inception-v3, inception-v4 and inception-resnet-v2 against live MXNet 1.9.1.

The peer builds each network the way MXNet's example/image-classification/symbols/<family>.py lays it out
(operators, layer names or MXNet's automatic names, BatchNorm settings, residual scales), fills it with random
arrays, saves the checkpoint and records its logits; the suite imports the checkpoint and must give the same
logits. Each family runs at the smallest image MXNet's pooling arithmetic allows (299, 235 and 75 pixels).
"""

import importlib
import json
import subprocess

import pytest

import symbols
from common import mximport
from symbols.mxlayers import param_count
from tests.test_mxnet_families import PEER_HEAD, assert_same_logits, one_thread, run_peer  # noqa: F401

# (test id, family, get_symbol keyword arguments in the peer, image shape)
CASES = [
    ("inception-v3-299", "inception-v3", {}, "3,299,299"),
    ("inception-v4-235", "inception-v4", {}, "3,235,235"),
    ("inception-resnet-v2-75", "inception-resnet-v2", {}, "3,75,75"),
]
# Larger images: fc wider than at the smallest size (v3, v4), and the size MXNet's example is built for.
SLOW_CASES = [
    ("inception-v3-331", "inception-v3", {}, "3,331,331"),
    ("inception-v4-299", "inception-v4", {}, "3,299,299"),
    ("inception-resnet-v2-299", "inception-resnet-v2", {}, "3,299,299"),
]

# The peer's networks; build(family, kwargs, num_classes, image_shape) -> MXNet symbol, as PEER_MAIN expects.
BUILDERS = r"""
def unit(x, nf, kernel=(1, 1), stride=(1, 1), pad=(0, 0), name=None):
    # inception-v3.py / inception-v4.py's Conv: no bias, BatchNorm(fix_gamma=True, default eps), ReLU.
    c = S(data=x, num_filter=nf, kernel=kernel, stride=stride, pad=pad, no_bias=True, name=name + "_conv2d")
    b = BN(data=c, fix_gamma=True, name=name + "_batchnorm")
    return ACT(data=b, act_type="relu", name=name + "_relu")


def chain(x, name, specs):
    # specs: (name suffix, filters, kernel, stride, pad)
    for suffix, nf, kernel, stride, pad in specs:
        x = unit(x, nf, kernel, stride, pad, name + suffix)
    return x


ONE, K3, K5 = ((1, 1), (1, 1), (0, 0)), ((3, 3), (1, 1), (1, 1)), ((5, 5), (1, 1), (2, 2))
V3, H3 = ((1, 3), (1, 1), (0, 1)), ((3, 1), (1, 1), (1, 0))
V7, H7 = ((1, 7), (1, 1), (0, 3)), ((7, 1), (1, 1), (3, 0))
R3 = ((3, 3), (2, 2), (0, 0))


def v3_pool(x, pool, proj, name):
    p = POOL(data=x, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type=pool, name="%s_pool_%s_pool" % (pool, name))
    return unit(p, proj, name=name + "_tower_2_conv")


def v3_a(x, n1, n3r, n3a, n3b, n5r, n5, pool, proj, name):
    t1 = unit(x, n1, name=name + "_conv")
    t5 = chain(x, name + "_tower", [("_conv", n5r) + ONE, ("_conv_1", n5) + K5])
    t3 = chain(x, name + "_tower_1", [("_conv", n3r) + ONE, ("_conv_1", n3a) + K3, ("_conv_2", n3b) + K3])
    return mx.sym.Concat(t1, t5, t3, v3_pool(x, pool, proj, name), name="ch_concat_%s_chconcat" % name)


def v3_b(x, n3, ndr, nd1, nd2, name):
    t3 = unit(x, n3, (3, 3), (2, 2), name=name + "_conv")
    td = chain(x, name + "_tower", [("_conv", ndr) + ONE, ("_conv_1", nd1) + K3, ("_conv_2", nd2) + R3])
    p = POOL(data=x, kernel=(3, 3), stride=(2, 2), pool_type="max", name="max_pool_%s_pool" % name)
    return mx.sym.Concat(t3, td, p, name="ch_concat_%s_chconcat" % name)


def v3_c(x, n1, d7r, d71, d72, q7r, q71, q72, q73, q74, pool, proj, name):
    t1 = unit(x, n1, name=name + "_conv")
    d7 = chain(x, name + "_tower", [("_conv", d7r) + ONE, ("_conv_1", d71) + V7, ("_conv_2", d72) + H7])
    q7 = chain(x, name + "_tower_1", [("_conv", q7r) + ONE, ("_conv_1", q71) + H7, ("_conv_2", q72) + V7,
                                      ("_conv_3", q73) + H7, ("_conv_4", q74) + V7])
    return mx.sym.Concat(t1, d7, q7, v3_pool(x, pool, proj, name), name="ch_concat_%s_chconcat" % name)


def v3_d(x, n3r, n3, d7r, d71, d72, d73, name):
    t3 = chain(x, name + "_tower", [("_conv", n3r) + ONE, ("_conv_1", n3) + R3])
    d7 = chain(x, name + "_tower_1", [("_conv", d7r) + ONE, ("_conv_1", d71) + V7, ("_conv_2", d72) + H7,
                                      ("_conv_3", d73) + R3])
    p = POOL(data=x, kernel=(3, 3), stride=(2, 2), pool_type="max", name="max_pool_%s_pool" % name)
    return mx.sym.Concat(t3, d7, p, name="ch_concat_%s_chconcat" % name)


def v3_e(x, n1, d3r, d31, d32, t3r, t3, t31, t32, pool, proj, name):
    t1 = unit(x, n1, name=name + "_conv")
    d3 = unit(x, d3r, name=name + "_tower_conv")
    d3a = unit(d3, d31, *V3, name=name + "_tower_mixed_conv")
    d3b = unit(d3, d32, *H3, name=name + "_tower_mixed_conv_1")
    t = chain(x, name + "_tower_1", [("_conv", t3r) + ONE, ("_conv_1", t3) + K3])
    ta = unit(t, t31, *V3, name=name + "_tower_1_mixed_conv")
    tb = unit(t, t32, *H3, name=name + "_tower_1_mixed_conv_1")
    return mx.sym.Concat(t1, d3a, d3b, ta, tb, v3_pool(x, pool, proj, name), name="ch_concat_%s_chconcat" % name)


def inception_v3(num_classes):
    x = mx.sym.identity(data=mx.sym.Variable("data"), name="id")
    x = chain(x, "conv", [("", 32, (3, 3), (2, 2), (0, 0)), ("_1", 32, (3, 3), (1, 1), (0, 0))])
    x = unit(x, 64, *K3, name="conv_2")
    x = POOL(data=x, kernel=(3, 3), stride=(2, 2), pool_type="max", name="pool")
    x = unit(unit(x, 80, name="conv_3"), 192, (3, 3), name="conv_4")
    x = POOL(data=x, kernel=(3, 3), stride=(2, 2), pool_type="max", name="pool1")
    for i, proj in enumerate([32, 64, 64]):
        x = v3_a(x, 64, 64, 96, 96, 48, 64, "avg", proj, "mixed" + ("_%d" % i if i else ""))
    x = v3_b(x, 384, 64, 96, 96, "mixed_3")
    for i, mid in enumerate([128, 160, 160, 192]):
        x = v3_c(x, 192, mid, mid, 192, mid, mid, mid, mid, 192, "avg", 192, "mixed_%d" % (i + 4))
    x = v3_d(x, 192, 320, 192, 192, 192, 192, "mixed_8")
    for name, pool in [("mixed_9", "avg"), ("mixed_10", "max")]:
        x = v3_e(x, 320, 384, 384, 384, 448, 384, 384, 384, pool, 192, name)
    x = POOL(data=x, kernel=(8, 8), stride=(1, 1), pool_type="avg", name="global_pool")
    fc = mx.sym.FullyConnected(data=mx.sym.Flatten(data=x, name="flatten"), num_hidden=num_classes, name="fc1")
    return mx.sym.SoftmaxOutput(data=fc, name="softmax")


def v4_named(x, name, specs):
    # specs: (layer, filters, kernel, stride, pad), named NAME_<layer>
    return chain(x, name + "_", specs)


def v4_avg(x, name, nf):
    p = POOL(x, kernel=(3, 3), pad=(1, 1), pool_type="avg", name=name + "_avgpool_1")
    return unit(p, nf, name=name + "_conv1_1*1")


def v4_max(x, name, tag):
    return POOL(x, kernel=(3, 3), stride=(2, 2), pool_type="max", name=name + tag)


def v4_stem(x, name):
    x = v4_named(x, name, [("conv1_3*3", 32, (3, 3), (2, 2), (0, 0)), ("conv2_3*3", 32, (3, 3), (1, 1), (0, 0)),
                           ("conv3_3*3", 64) + K3])
    x = mx.sym.Concat(v4_max(x, name, "_maxpool_1"), unit(x, 96, *R3, name=name + "_conv4_3*3"),
                      name=name + "_concat_1")
    a = v4_named(x, name, [("conv5_1*1", 64) + ONE, ("conv6_3*3", 96, (3, 3), (1, 1), (0, 0))])
    b = v4_named(x, name, [("conv7_1*1", 64) + ONE, ("conv8_7*1", 64) + H7, ("conv9_1*7", 64) + V7,
                           ("conv10_3*3", 96, (3, 3), (1, 1), (0, 0))])
    x = mx.sym.Concat(a, b, name=name + "_concat_2")
    return mx.sym.Concat(unit(x, 192, *R3, name=name + "_conv11_3*3"), v4_max(x, name, "_maxpool_2"),
                         name=name + "_concat_3")


def v4_a(x, name):
    c3 = v4_named(x, name, [("conv3_1*1", 64) + ONE, ("conv4_3*3", 96) + K3])
    cd = v4_named(x, name, [("conv5_1*1", 64) + ONE, ("conv6_3*3", 96) + K3, ("conv7_3*3", 96) + K3])
    return mx.sym.Concat(v4_avg(x, name, 96), unit(x, 96, name=name + "_conv2_1*1"), c3, cd, name=name + "_concat_1")


def v4_ra(x, name):
    c3 = unit(x, 384, *R3, name=name + "_conv1_3*3")
    cd = v4_named(x, name, [("conv2_1*1", 192) + ONE, ("conv3_3*3", 224) + K3, ("conv4_3*3", 256) + R3])
    return mx.sym.Concat(v4_max(x, name, "_maxpool_1"), c3, cd, name=name + "_concat_1")


def v4_b(x, name):
    c7 = v4_named(x, name, [("conv3_1*1", 192) + ONE, ("conv4_1*7", 224) + V7, ("conv5_1*7", 256) + H7])
    d7 = v4_named(x, name, [("conv6_1*1", 192) + ONE, ("conv7_1*7", 192) + V7, ("conv8_7*1", 224) + H7,
                            ("conv9_1*7", 224) + V7, ("conv10_7*1", 256) + H7])
    c1 = unit(x, 384, name=name + "_conv2_1*1")
    return mx.sym.Concat(v4_avg(x, name, 128), c1, c7, d7, name=name + "_concat_1")


def v4_rb(x, name):
    c3 = v4_named(x, name, [("conv1_1*1", 192) + ONE, ("conv2_3*3", 192) + R3])
    c7 = v4_named(x, name, [("conv3_1*1", 256) + ONE, ("conv4_1*7", 256) + V7, ("conv5_7*1", 320) + H7,
                            ("conv6_3*3", 320) + R3])
    return mx.sym.Concat(v4_max(x, name, "_maxpool_1"), c3, c7, name=name + "_concat_1")


def v4_c(x, name):
    c3 = unit(x, 384, name=name + "_conv3_1*1")
    c3a, c3b = unit(c3, 256, *V3, name=name + "_conv4_3*1"), unit(c3, 256, *H3, name=name + "_conv5_1*3")
    cd = v4_named(x, name, [("conv6_1*1", 384) + ONE, ("conv7_1*3", 448) + V3, ("conv8_3*1", 512) + H3])
    cda, cdb = unit(cd, 256, *H3, name=name + "_conv9_1*3"), unit(cd, 256, *V3, name=name + "_conv10_3*1")
    c1 = unit(x, 256, name=name + "_conv2_1*1")
    return mx.sym.Concat(v4_avg(x, name, 256), c1, c3a, c3b, cda, cdb, name=name + "_concat")


def inception_v4(num_classes):
    x = v4_stem(mx.sym.Variable("data"), "in_stem")
    for stage, count in [(v4_a, 4), (v4_ra, 1), (v4_b, 7), (v4_rb, 1), (v4_c, 3)]:
        for i in range(count):
            x = stage(x, {v4_ra: "re1A", v4_rb: "re1B"}.get(stage, "in%d%s" % (i + 1, stage.__name__[-1].upper())))
    x = POOL(x, kernel=(8, 8), pad=(1, 1), pool_type="avg", name="global_avgpool")
    x = mx.sym.Flatten(mx.sym.Dropout(x, p=0.2), name="flatten")
    return mx.sym.SoftmaxOutput(mx.sym.FullyConnected(x, num_hidden=num_classes, name="fc1"), name="softmax")


def cf(x, nf, kernel=(1, 1), stride=(1, 1), pad=(0, 0), act=True):
    # inception-resnet-v2.py's ConvFactory: unnamed Convolution (with bias), BatchNorm (defaults), Activation.
    b = BN(data=S(data=x, num_filter=nf, kernel=kernel, stride=stride, pad=pad))
    return ACT(data=b, act_type="relu") if act else b


def cf_chain(x, specs):
    # specs: (filters, kernel, stride, pad)
    for spec in specs:
        x = cf(x, *spec)
    return x


def residual(x, towers, channels, scale, act=True):
    out = cf(mx.sym.Concat(*towers), channels, act=False)
    x = x + scale * out
    return ACT(data=x, act_type="relu") if act else x


def b35(x, scale):
    t = [cf(x, 32), cf_chain(x, [(32,), (32, (3, 3), (1, 1), (1, 1))]),
         cf_chain(x, [(32,), (48, (3, 3), (1, 1), (1, 1)), (64, (3, 3), (1, 1), (1, 1))])]
    return residual(x, t, 320, scale)


def b17(x, scale):
    t = [cf(x, 192), cf_chain(x, [(129,), (160, (1, 7), (1, 1), (1, 2)), (192, (7, 1), (1, 1), (2, 1))])]
    return residual(x, t, 1088, scale)


def b8(x, scale, act=True):
    t = [cf(x, 192), cf_chain(x, [(192,), (224, (1, 3), (1, 1), (0, 1)), (256, (3, 1), (1, 1), (1, 0))])]
    return residual(x, t, 2080, scale, act)


def inception_resnet_v2(num_classes):
    x = cf_chain(mx.sym.Variable("data"), [(32, (3, 3), (2, 2)), (32, (3, 3)), (64, (3, 3), (1, 1), (1, 1))])
    x = POOL(data=x, kernel=(3, 3), stride=(2, 2), pool_type="max")
    x = POOL(data=cf_chain(x, [(80,), (192, (3, 3))]), kernel=(3, 3), stride=(2, 2), pool_type="max")
    p = POOL(data=x, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg")
    x = mx.sym.Concat(cf(x, 96), cf_chain(x, [(48,), (64, (5, 5), (1, 1), (2, 2))]),
                      cf_chain(x, [(64,), (96, (3, 3), (1, 1), (1, 1)), (96, (3, 3), (1, 1), (1, 1))]), cf(p, 64))
    for _ in range(10):
        x = b35(x, 0.17)
    x = mx.sym.Concat(cf(x, 384, (3, 3), (2, 2)),
                      cf_chain(x, [(256,), (256, (3, 3), (1, 1), (1, 1)), (384, (3, 3), (2, 2))]),
                      POOL(x, kernel=(3, 3), stride=(2, 2), pool_type="max"))
    for _ in range(20):
        x = b17(x, 0.1)
    x = mx.sym.Concat(cf_chain(x, [(256,), (384, (3, 3), (2, 2))]), cf_chain(x, [(256,), (288, (3, 3), (2, 2))]),
                      cf_chain(x, [(256,), (288, (3, 3), (1, 1), (1, 1)), (320, (3, 3), (2, 2))]),
                      POOL(x, kernel=(3, 3), stride=(2, 2), pool_type="max"))
    for _ in range(9):
        x = b8(x, 0.2)
    x = cf(b8(x, 1.0, act=False), 1536)
    x = POOL(x, kernel=(1, 1), global_pool=True, stride=(2, 2), pool_type="avg")
    x = mx.sym.Dropout(data=mx.sym.Flatten(x), p=0.2)
    return mx.sym.SoftmaxOutput(data=mx.sym.FullyConnected(data=x, num_hidden=num_classes), name="softmax")


def build(family, kwargs, num_classes, image_shape):
    return {"inception-v3": inception_v3, "inception-v4": inception_v4,
            "inception-resnet-v2": inception_resnet_v2}[family](num_classes)
"""

# Per family: MXNet's argument and auxiliary element counts at 299x299 and 1000 classes, and whether MXNet can
# build the network for images of the suite's minimum size and of one pixel less.
COUNT_MAIN = r"""
def builds(family, side):
    try:
        build(family, {}, 1000, [3, side, side]).infer_shape(data=(1, 3, side, side))
        return True
    except mx.base.MXNetError:
        return False


result = {}
for family, minimum in json.loads(sys.argv[1]):
    with mx.name.NameManager():
        sym = build(family, {}, 1000, [3, 299, 299])
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, 299, 299))
    args = [s for n, s in zip(sym.list_arguments(), arg_shapes) if n not in ("data", "softmax_label")]
    counts = [sum(int(np.prod(s)) for s in shapes) for shapes in (args, aux_shapes)]
    result[family] = counts + [builds(family, minimum), builds(family, minimum - 1)]
print(json.dumps(result))
"""

FAMILIES = ["inception-v3", "inception-v4", "inception-resnet-v2"]


@pytest.fixture(scope="module")
def peer_checkpoints(mxnet_python, tmp_path_factory):
    """Folder holding, per case, MXNet's checkpoint ID-symbol.json + ID-0001.params, ID-input.npy, ID-logits.npy."""
    return run_peer(mxnet_python, tmp_path_factory.mktemp("mxnet_inception"), CASES, BUILDERS)


def check_import(prefix, family, image_shape):
    """The checkpoint imports as `family` at the image size its arrays imply and gives MXNet's logits."""
    _, info = mximport.import_mxnet(prefix, 1)
    assert info["network"] == family
    if family != "inception-resnet-v2":  # its pooling is global: no size in its arrays, 299 is taken
        assert info["arguments"]["image_shape"] == image_shape
    assert_same_logits(prefix)


@pytest.mark.mxnet
@pytest.mark.parametrize("case_id,family,kwargs,image_shape", CASES, ids=[case[0] for case in CASES])
def test_import_gives_live_mxnet_logits(peer_checkpoints, case_id, family, kwargs, image_shape):
    check_import(str(peer_checkpoints / case_id), family, image_shape)


@pytest.mark.mxnet
@pytest.mark.slow
@pytest.mark.parametrize("case_id,family,kwargs,image_shape", SLOW_CASES, ids=[case[0] for case in SLOW_CASES])
def test_import_larger_images(mxnet_python, tmp_path, case_id, family, kwargs, image_shape):
    run_peer(mxnet_python, tmp_path, [(case_id, family, kwargs, image_shape)], BUILDERS)
    check_import(str(tmp_path / case_id), family, image_shape)


@pytest.mark.mxnet
def test_parameter_counts_and_minimum_size_match_mxnet(mxnet_python):
    minimums = [
        [family, importlib.import_module(f"symbols.{symbols.FAMILIES[family]}").MIN_SIZE] for family in FAMILIES
    ]
    program = PEER_HEAD + BUILDERS + COUNT_MAIN
    proc = subprocess.run([mxnet_python, "-c", program, json.dumps(minimums)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    peer = json.loads(proc.stdout.splitlines()[-1])  # MXNet prints its infer_shape failures on stdout
    for family, minimum in minimums:
        args, aux, builds_at_minimum, builds_below = peer[family]
        assert param_count(symbols.get_symbol(family, num_classes=1000, image_shape="3,299,299")) == (args, aux)
        assert builds_at_minimum and not builds_below, (family, minimum)


# MXNet 1.9.1's counts at 299x299 and 1000 classes (argument and auxiliary elements, by sym.infer_shape in the
# peer, as test_parameter_counts_and_minimum_size_match_mxnet measures them), for runs without the peer.
MXNET_COUNTS_299 = [
    ("inception-v3", 23834568, 34432),
    ("inception-v4", 54967816, 63168),
    ("inception-resnet-v2", 56009476, 152104),
]


@pytest.mark.parametrize("family,args,aux", MXNET_COUNTS_299)
def test_parameter_counts_and_names_at_299(family, args, aux):
    model = symbols.get_symbol(family, num_classes=1000, image_shape="3,299,299")
    assert param_count(model) == (args, aux)
    names = symbols.mxnet_param_map(model)
    assert set(names) == set(model.state_dict()) and len(set(names.values())) == len(names)
