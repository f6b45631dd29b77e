"""Networks: every family builds, runs forward and backward, and MXNet's own networks match MXNet 1.9.1 exactly."""

import json
import struct

import numpy as np
import pytest
import torch

import symbols
from common.util import UserError
from symbols.mxlayers import MXBatchNorm, param_count

slow = pytest.mark.slow

# (network, keyword arguments, input shape C,H,W): the smallest variant of each family and the smallest input it
# takes run by default; the big ones are marked slow.
FORWARD_CASES = [
    ("mlp", {}, (1, 28, 28)),
    ("lenet", {}, (1, 28, 28)),
    ("alexnet", {}, (3, 67, 67)),
    ("vgg", {"num_layers": 11, "batch_norm": True}, (3, 32, 32)),
    ("googlenet", {}, (3, 61, 61)),
    ("inception-bn", {}, (3, 28, 28)),
    ("inception-v3", {}, (3, 299, 299)),
    ("inception-resnet-v2", {}, (3, 75, 75)),
    ("resnet", {"num_layers": 20}, (3, 28, 28)),
    ("resnet", {"num_layers": 18}, (3, 32, 32)),
    ("resnet-v1", {"num_layers": 20}, (3, 28, 28)),
    ("resnext", {"num_layers": 56}, (3, 32, 32)),
    ("mobilenet", {"multiplier": 0.25}, (3, 32, 32)),
    ("mobilenetv2", {"multiplier": 0.5}, (3, 32, 32)),
    ("mobilenetv3", {"mode": "small"}, (3, 32, 32)),
    ("mobilenetv3-large", {}, (3, 32, 32)),
    ("densenet", {"num_layers": 121}, (3, 32, 32)),
    ("efficientnet", {}, (3, 32, 32)),
    ("regnetx", {}, (3, 32, 32)),
    ("shufflenetv2-0.5", {}, (3, 32, 32)),
    pytest.param("resnet", {"num_layers": 164}, (3, 28, 28), marks=slow),
    pytest.param("resnet", {"num_layers": 50}, (3, 64, 64), marks=slow),
    pytest.param("resnet-v1", {"num_layers": 50}, (3, 64, 64), marks=slow),
    pytest.param("resnext", {"num_layers": 50}, (3, 64, 64), marks=slow),
    pytest.param("inception-bn", {}, (3, 224, 224), marks=slow),
    pytest.param("inception-v4", {}, (3, 235, 235), marks=slow),
    pytest.param("mobilenet", {"alpha": 1.0}, (3, 224, 224), marks=slow),
    pytest.param("vgg", {"num_layers": 16}, (3, 224, 224), marks=slow),
    pytest.param("densenet", {"num_layers": 201}, (3, 32, 32), marks=slow),
    pytest.param("efficientnet-b7", {}, (3, 32, 32), marks=slow),
    pytest.param("regnetx-3.2gf", {}, (3, 32, 32), marks=slow),
    pytest.param("shufflenetv2", {"multiplier": 2.0}, (3, 32, 32), marks=slow),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("network,kwargs,shape", FORWARD_CASES)
def test_forward_backward(network, kwargs, shape):
    num_classes = 7
    image_shape = ",".join(str(v) for v in shape)
    model = symbols.get_symbol(network, num_classes=num_classes, image_shape=image_shape, dtype="float32", **kwargs)
    model.train()
    logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, num_classes)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), f"{network}: no gradient for {name}"
        else:
            # Only MXNet's fix_gamma BatchNorm scales are frozen, as MXNet freezes them.
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            assert isinstance(owner, MXBatchNorm) and owner.fix_gamma and name.endswith(".weight"), name


# Golden values from MXNet 1.9.1's example symbols (example/image-classification/symbols/*.py), built in MXNet
# and measured with sym.infer_shape: elements of the arguments (weights, biases, gammas, betas; neither data nor
# label) and of the auxiliary states (BatchNorm moving mean and variance).
MXNET_COUNTS = [
    ("mlp", {}, "1,28,28", 10, 109386, 0),
    ("mlp", {}, "3,32,32", 10, 402250, 0),
    ("lenet", {}, "1,28,28", 10, 431080, 0),
    ("lenet", {}, "3,32,32", 10, 657080, 0),
    ("resnet", {"num_layers": 20}, "3,28,28", 10, 272544, 1382),
    ("resnet", {"num_layers": 56}, "3,28,28", 10, 855840, 4070),
    ("resnet", {"num_layers": 110}, "3,28,28", 10, 1730784, 8102),
    ("resnet", {"num_layers": 164}, "3,28,28", 10, 1703264, 24230),
    ("resnet", {"num_layers": 18}, "3,224,224", 1000, 11691950, 7942),
    ("resnet", {"num_layers": 50}, "3,224,224", 1000, 25549486, 45574),
    ("resnet", {"num_layers": 18}, "3,32,32", 10, 11176272, 7814),
    ("resnet-v1", {"num_layers": 20}, "3,28,28", 10, 272762, 1600),
    ("resnet-v1", {"num_layers": 164}, "3,28,28", 10, 1704154, 25120),
    ("resnet-v1", {"num_layers": 18}, "3,224,224", 1000, 11693736, 9728),
    ("resnet-v1", {"num_layers": 50}, "3,224,224", 1000, 25557032, 53120),
    ("resnext", {"num_layers": 50}, "3,224,224", 1000, 25028910, 68230),
    ("resnext", {"num_layers": 50}, "3,64,64", 10, 23000400, 68230),
    ("resnext", {"num_layers": 56}, "3,32,32", 10, 856032, 4262),
    ("inception-bn", {}, "3,28,28", 10, 1652826, 3424),
    ("inception-bn", {}, "3,224,224", 1000, 11295240, 20032),
    ("mobilenet", {"alpha": 1.0}, "3,224,224", 1000, 4231976, 21888),
    ("mobilenet", {"multiplier": 0.5}, "3,224,224", 1000, 1331592, 10944),
    ("mobilenet", {"multiplier": 0.25}, "3,32,32", 10, 215642, 5472),
    ("vgg", {"num_layers": 11, "batch_norm": True}, "3,32,32", 10, 28149514, 5504),
    pytest.param("resnet", {"num_layers": 1001}, "3,28,28", 10, 10327712, 149222, marks=slow),
    pytest.param("resnet", {"num_layers": 34}, "3,224,224", 1000, 21800110, 15366, marks=slow),
    pytest.param("resnet", {"num_layers": 101}, "3,224,224", 1000, 44541614, 97798, marks=slow),
    pytest.param("resnet", {"num_layers": 152}, "3,224,224", 1000, 60185262, 143878, marks=slow),
    pytest.param("resnet", {"num_layers": 200}, "3,224,224", 1000, 64666286, 168454, marks=slow),
    pytest.param("resnet", {"num_layers": 269}, "3,224,224", 1000, 102065838, 245254, marks=slow),
    pytest.param("resnet-v1", {"num_layers": 110}, "3,28,28", 10, 1731002, 8320, marks=slow),
    pytest.param("resnet-v1", {"num_layers": 34}, "3,224,224", 1000, 21801896, 17152, marks=slow),
    pytest.param("resnet-v1", {"num_layers": 101}, "3,224,224", 1000, 44549160, 105344, marks=slow),
    pytest.param("resnet-v1", {"num_layers": 152}, "3,224,224", 1000, 60192808, 151424, marks=slow),
    pytest.param("resnext", {"num_layers": 101}, "3,224,224", 1000, 44177710, 137862, marks=slow),
    pytest.param("resnext", {"num_layers": 152}, "3,224,224", 1000, 59951406, 199302, marks=slow),
    pytest.param("mobilenet", {"alpha": 0.75}, "3,224,224", 1000, 2585560, 16416, marks=slow),
    pytest.param("vgg", {"num_layers": 11}, "3,224,224", 1000, 132863336, 0, marks=slow),
    pytest.param("vgg", {"num_layers": 13, "batch_norm": True}, "3,224,224", 1000, 133053736, 5888, marks=slow),
    pytest.param("vgg", {"num_layers": 16}, "3,224,224", 1000, 138357544, 0, marks=slow),
    pytest.param("vgg", {"num_layers": 19, "batch_norm": True}, "3,224,224", 1000, 143678248, 11008, marks=slow),
]


@pytest.mark.parametrize("network,kwargs,image_shape,num_classes,args,aux", MXNET_COUNTS)
def test_parameter_counts_match_mxnet(network, kwargs, image_shape, num_classes, args, aux):
    model = symbols.get_symbol(network, num_classes=num_classes, image_shape=image_shape, **kwargs)
    assert param_count(model) == (args, aux)
    names = symbols.mxnet_param_map(model)
    assert set(names) == set(model.state_dict())
    assert len(set(names.values())) == len(names)


def read_params(path):
    """Read an MXNet `.params` file (dense float32 NDArrays) into {'arg:NAME' or 'aux:NAME': numpy array}."""
    buf = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    magic, _, count = take("QQQ")
    assert magic == 0x112
    arrays = []
    for _ in range(count):
        (array_magic,) = take("I")
        assert array_magic == 0xF993FAC9, "only MXNet's v2 dense NDArray format is read here"
        (storage,) = take("i")
        (ndim,) = take("I")
        shape = take(f"{ndim}q")
        _dev_type, _dev_id, type_flag = take("iii")
        assert storage == 0 and type_flag == 0
        size = int(np.prod(shape))
        arrays.append(np.frombuffer(buf, np.float32, size, pos).reshape(shape))
        pos += 4 * size
    (num_names,) = take("Q")
    names = []
    for _ in range(num_names):
        (length,) = take("Q")
        names.append(buf[pos : pos + length].decode())
        pos += length
    return dict(zip(names, arrays))


GOLDEN = [
    ("lenet", "lenet", {}, "1,28,28", 10),
    ("mlp", "mlp", {}, "1,28,28", 10),
    ("resnet-20", "resnet", {"num_layers": 20}, "3,28,28", 10),
    ("resnet-18", "resnet", {"num_layers": 18}, "3,224,224", 1000),
]


def golden_model(fixtures, prefix, network, kwargs, image_shape, num_classes):
    """The network of a golden checkpoint and the arrays MXNet saved for it."""
    model = symbols.get_symbol(network, num_classes=num_classes, image_shape=image_shape, **kwargs)
    return model, read_params(fixtures / f"{prefix}-0003.params")


@pytest.mark.parametrize("prefix,network,kwargs,image_shape,num_classes", GOLDEN)
def test_name_map_covers_golden_symbol(fixtures, prefix, network, kwargs, image_shape, num_classes):
    model, params = golden_model(fixtures, prefix, network, kwargs, image_shape, num_classes)
    names = symbols.mxnet_param_map(model)
    nodes = json.loads((fixtures / f"{prefix}-symbol.json").read_text())["nodes"]
    variables = {n["name"] for n in nodes if n["op"] == "null"} - {"data", "softmax_label"}
    aux = {v for v in variables if v.endswith(("_moving_mean", "_moving_var"))}
    expected = {f"aux:{v}" for v in aux} | {f"arg:{v}" for v in variables - aux}
    assert sorted(names.values()) == sorted(expected)
    assert set(params) == expected
    state = model.state_dict()
    for torch_name, mx_name in names.items():
        assert tuple(state[torch_name].shape) == params[mx_name].shape, torch_name


@pytest.mark.parametrize("prefix,network,kwargs,image_shape,num_classes", GOLDEN)
def test_golden_logits_after_loading_mxnet_params(fixtures, prefix, network, kwargs, image_shape, num_classes):
    model, params = golden_model(fixtures, prefix, network, kwargs, image_shape, num_classes)
    names = symbols.mxnet_param_map(model)
    model.load_state_dict({t: torch.from_numpy(params[m].copy()) for t, m in names.items()}, strict=True)
    io = np.load(fixtures / f"{prefix}-io.npz")
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(io["x"]))
    np.testing.assert_allclose(logits.numpy(), io["logits"], rtol=1e-4, atol=1e-4)


def test_mxnet_spellings_and_list():
    model = symbols.get_symbol("resnet", num_layers=110, image_shape="3,28,28", num_classes=10)
    assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 10)
    assert "stage3_unit18.conv2.weight" in model.state_dict()
    names = symbols.list_networks()
    for name in ["inception-bn", "resnet-v1", "mobilenetv2", "inception-resnet-v2", "efficientnet-b7", "regnetx-1.6gf"]:
        assert name in names
    assert symbols.resolve("Inception_BN") == ("inception-bn", None)
    assert symbols.resolve("shufflenetv2-1.5") == ("shufflenetv2", "1.5")


def test_variant_tables_agree_with_modules():
    import importlib

    for family, variants in symbols.VARIANTS.items():
        module = importlib.import_module(f"symbols.{symbols.FAMILIES[family]}")
        assert tuple(module.VARIANTS) == variants


@pytest.mark.parametrize(
    "network,kwargs,needle",
    [
        ("resnet-51", {}, "resnet-v1"),
        ("resnet", {"num_layers": 19, "image_shape": "3,224,224"}, "18, 34, 50"),
        ("resnet", {"num_layers": 18, "image_shape": "3,28,28"}, "6n+2"),
        ("resnet", {"image_shape": "3,224,224"}, "num_layers"),
        ("resnet-v1", {"num_layers": 21, "image_shape": "3,28,28"}, "6n+2"),
        ("resnext", {"num_layers": 77}, "50, 101, 152"),
        ("vgg", {"num_layers": 12}, "11, 13, 16, 19"),
        ("densenet", {"num_layers": 100}, "121, 161, 169, 201"),
        ("efficientnet", {"variant": "b9"}, "b0"),
        ("mobilenet", {"multiplier": 0.3}, "0.25"),
        ("mobilenetv3", {"mode": "medium"}, "large, small"),
        ("lenet", {"image_shape": "1,28"}, "channels,height,width"),
        ("inception-v3", {"image_shape": "3,298,298"}, "299x299"),
        ("densenet", {"image_shape": "1,224,224"}, "3-channel"),
        ("alexnet", {"image_shape": "3,64,64"}, "67x67"),
        ("mobilenetv2", {"multiplier": 0}, "positive"),
    ],
)
def test_user_errors_list_valid_values(network, kwargs, needle):
    with pytest.raises(UserError) as err:
        symbols.get_symbol(network, num_classes=10, **kwargs)
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_param_map_refuses_library_networks():
    with pytest.raises(UserError, match="no MXNet layout"):
        symbols.mxnet_param_map(symbols.get_symbol("mobilenetv3", num_classes=10))


def test_batchnorm_follows_mxnet():
    bn = MXBatchNorm(3, "bn_data", eps=2e-5, fix_gamma=True)
    assert "num_batches_tracked" not in bn.state_dict()
    assert bn.momentum == pytest.approx(0.1) and not bn.weight.requires_grad
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    with torch.no_grad():
        bn.weight.fill_(5.0)  # MXNet ignores a stored gamma when fix_gamma is set
        y = bn(x)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(y, (x - mean) / torch.sqrt(var + 2e-5))
    torch.testing.assert_close(bn.running_mean, 0.1 * mean.flatten())
    # A plain tensor dict (as from safetensors, without torch's version metadata) loads strictly.
    bn.load_state_dict({k: v.clone() for k, v in bn.state_dict().items()}, strict=True)
