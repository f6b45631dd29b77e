"""The MXNet .params reader/writer, MXNet checkpoint import against MXNet's logits, and the pretrained-model cache."""

import hashlib
import http.server
import json
import shutil
import struct
import subprocess
import threading

import numpy as np
import pytest
import torch

from common import modelzoo, mximport, mxparams
from common.util import UserError

NETS = ["lenet", "mlp", "resnet-20", "resnet-18"]


# ---------------------------------------------------------------- .params format


@pytest.mark.parametrize("name", ["lenet", "resnet-20"])
def test_writer_reproduces_mxnet_bytes(fixtures, name):
    path = fixtures / f"{name}-0003.params"
    arrays = mxparams.load(path)
    assert all(k.startswith(("arg:", "aux:")) for k in arrays)
    assert mxparams.dumps(arrays) == path.read_bytes()


def test_reads_v1_legacy_and_bfloat16(tmp_path):
    v1 = struct.pack("<IiqqiiI", mxparams.V1, 2, 2, 2, 1, 0, 0) + np.arange(4, dtype=np.float32).tobytes()
    legacy = struct.pack("<IIiii", 1, 3, 1, 0, 4) + np.array([7, 8, 9], np.int32).tobytes()
    bf16 = np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16
    v3 = struct.pack("<IiiqiiI", mxparams.V3, 0, 1, 2, 1, 0, 12) + bf16.astype(np.uint16).tobytes()
    names = b"".join(struct.pack("<Q", len(n)) + n for n in (b"arg:a", b"aux:b", b"arg:c"))
    path = tmp_path / "old.params"
    path.write_bytes(struct.pack("<QQQ", 0x112, 0, 3) + v1 + legacy + v3 + struct.pack("<Q", 3) + names)
    got = mxparams.load(path)
    assert got["arg:a"].tolist() == [[0, 1], [2, 3]] and got["arg:a"].dtype == np.float32
    assert got["aux:b"].tolist() == [7, 8, 9] and got["aux:b"].dtype == np.int32
    assert got["arg:c"].tolist() == [1.5, -2.0]


@pytest.mark.parametrize("cut", [5, 24, 60, -3])
def test_truncated_file_names_file_and_offset(fixtures, tmp_path, cut):
    raw = (fixtures / "mlp-0003.params").read_bytes()
    path = tmp_path / "cut.params"
    path.write_bytes(raw[:cut])
    with pytest.raises(UserError, match=r"cut\.params: .* at byte offset \d+; .*truncated or corrupt"):
        mxparams.load(path)


def test_corrupt_magic_and_dtype(fixtures, tmp_path):
    raw = bytearray((fixtures / "mlp-0003.params").read_bytes())
    path = tmp_path / "bad.params"
    path.write_bytes(b"\x00" + bytes(raw[1:]))
    with pytest.raises(UserError, match="header magic"):
        mxparams.load(path)
    raw[24:28] = struct.pack("<I", 0xDEADBEEF)
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="unknown magic 0xDEADBEEF.*offset 24"):
        mxparams.load(path)


@pytest.mark.mxnet
def test_mxnet_reads_what_we_write(tmp_path, mxnet_python):
    arrays = {"arg:w": np.arange(12, dtype=np.float32).reshape(3, 4), "aux:m": np.array([1, 2], np.int64)}
    mxparams.save(tmp_path / "ours.params", arrays)
    code = (
        "import mxnet as mx, sys, json; d = mx.nd.load(sys.argv[1]); "
        "print(json.dumps({k: v.asnumpy().tolist() for k, v in d.items()}))"
    )
    out = subprocess.run(
        [mxnet_python, "-c", code, tmp_path / "ours.params"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {k: v.tolist() for k, v in arrays.items()}


# ---------------------------------------------------------------- MXNet checkpoint import


@pytest.mark.parametrize("name", NETS)
def test_import_gives_mxnet_logits(fixtures, name):
    model = mximport.load_mxnet_checkpoint(str(fixtures / name), 3)
    io = np.load(fixtures / f"{name}-io.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(io["x"])).numpy()
    assert out.shape == io["logits"].shape
    assert np.abs(out - io["logits"]).max() <= 1e-4 * np.abs(io["logits"]).max()


def _copy_checkpoint(fixtures, tmp_path, name, edit):
    prefix = tmp_path / name
    shutil.copy(fixtures / f"{name}-symbol.json", f"{prefix}-symbol.json")
    arrays = mxparams.load(fixtures / f"{name}-0003.params")
    edit(arrays)
    mxparams.save(f"{prefix}-0003.params", arrays)
    return str(prefix)


def test_mismatched_graph_names_first_parameter(fixtures, tmp_path):
    prefix = _copy_checkpoint(fixtures, tmp_path, "resnet-20", lambda a: a.pop("arg:stage2_unit1_conv1_weight"))
    with pytest.raises(UserError, match="parameter arg:stage2_unit1_conv1_weight is not in the file"):
        mximport.load_mxnet_checkpoint(prefix, 3)
    prefix = _copy_checkpoint(fixtures, tmp_path, "mlp", lambda a: a.update({"arg:fc2_bias": np.zeros(5, np.float32)}))
    with pytest.raises(UserError, match=r"arg:fc2_bias has shape \(5,\) in the file but \(64,\)"):
        mximport.load_mxnet_checkpoint(prefix, 3)
    prefix = _copy_checkpoint(fixtures, tmp_path, "mlp", lambda a: a.update({"arg:extra_weight": np.zeros(1, "f4")}))
    with pytest.raises(UserError, match="arg:extra_weight has no place"):
        mximport.load_mxnet_checkpoint(prefix, 3)


def test_unknown_family_lists_importable(fixtures, tmp_path):
    doc = json.loads((fixtures / "mlp-symbol.json").read_text())
    for node in doc["nodes"]:
        node["name"] = node["name"].replace("fc", "dense")
    (tmp_path / "odd-symbol.json").write_text(json.dumps(doc))
    shutil.copy(fixtures / "mlp-0003.params", tmp_path / "odd-0003.params")
    with pytest.raises(UserError, match="importable families: resnet, resnet-v1, resnext, inception-bn"):
        mximport.load_mxnet_checkpoint(str(tmp_path / "odd"), 3)


def test_load_model_picks_last_epoch_and_rejects_unknown_names(fixtures):
    _, info = modelzoo.load_model(str(fixtures / "lenet"))
    assert info["epoch"] == 3 and info["network"] == "lenet" and info["preprocess"]["image_shape"] == [1, 28, 28]
    with pytest.raises(UserError, match="pretrained names: .*resnet18"):
        modelzoo.load_model("no-such-net")


# ---------------------------------------------------------------- downloads (local server only)


class _Server:
    """An HTTP server on 127.0.0.1 serving one folder, counting requests."""

    def __init__(self, folder):
        counts = self.counts = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(folder), **kw)

            def log_message(self, *a):
                counts.append(a)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    (tmp_path / "srv").mkdir()
    s = _Server(tmp_path / "srv")
    yield s
    s.close()


def test_fetch_checks_hash_and_caches(tmp_path, server):
    payload = b"weights" * 1000
    digest = hashlib.sha256(payload).hexdigest()[:8]
    (tmp_path / "srv" / f"net-{digest}.pth").write_bytes(payload)
    (tmp_path / "srv" / "net-00000000.pth").write_bytes(payload)
    path = modelzoo.fetch(f"{server.url}/net-{digest}.pth", str(tmp_path / "cache"))
    assert open(path, "rb").read() == payload
    requests = len(server.counts)
    assert modelzoo.fetch(f"{server.url}/net-{digest}.pth", str(tmp_path / "cache")) == path
    assert len(server.counts) == requests  # served from the cache
    with pytest.raises(UserError, match="failed its hash check"):
        modelzoo.fetch(f"{server.url}/net-00000000.pth", str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "net-00000000.pth").exists()
    local = tmp_path / "srv" / f"net-{digest}.pth"
    assert open(modelzoo.fetch(local.as_uri(), str(tmp_path / "c2")), "rb").read() == payload


def test_download_model_through_mirror_and_offline(tmp_path, server, monkeypatch):
    name = modelzoo.zoo_weights("resnet18")[1].url.rsplit("/", 1)[1]
    (tmp_path / "srv" / name).write_bytes(b"not the real weights")
    monkeypatch.setenv(modelzoo.MIRROR_ENV, server.url)
    with pytest.raises(UserError, match="hash check"):
        modelzoo.download_model("resnet-18", str(tmp_path / "cache"))
    monkeypatch.setenv(modelzoo.MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(UserError, match=rf"cannot download http://127.0.0.1:9/{name} .*copy that file to .*{name}"):
        modelzoo.download_model("resnet18", str(tmp_path / "cache"))


def test_unknown_zoo_name_on_the_command_line(cli, fixtures):
    proc = cli("score.py", "--model", "resnet-9999", "--data-val", fixtures / "im2rec" / "tiny.rec", check=2)
    assert "pretrained names:" in proc.stderr and "resnet50" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert "Traceback" not in proc.stderr and len(errors) == 1 and proc.stderr.strip().endswith(errors[0])


FAMILIES = [
    ("resnet-v1", {"num_layers": 20, "image_shape": "3,28,28"}, {}),
    ("resnext", {"num_layers": 20, "image_shape": "3,32,32", "num_group": 4}, {}),
    ("vgg", {"num_layers": 11, "batch_norm": True, "image_shape": "3,32,32"}, {}),
    ("mobilenet", {"multiplier": 0.25, "image_shape": "3,32,32"}, {"global_pool": {"kernel": "(1, 1)"}}),
    ("inception-bn", {"image_shape": "3,28,28"}, {}),
]


def write_mxnet_checkpoint(model, prefix, kwargs, attrs=None, epoch=1):
    """Save an MXNet-layout network as MXNet's .params + a symbol file with the names and attrs describe_mxnet reads."""
    import symbols

    attrs = attrs or {}
    names = symbols.mxnet_param_map(model)
    state = model.state_dict()
    mxparams.save(f"{prefix}-{epoch:04d}.params", {mx: state[t].numpy() for t, mx in names.items()})
    layers = sorted({mx.split(":", 1)[1].rsplit("_", 1)[0] for mx in names.values()} | set(attrs))
    group = {"num_group": str(kwargs.get("num_group", 1))}
    nodes = [{"op": "null", "name": "data", "inputs": []}]
    nodes += [
        {"op": "Convolution", "name": n, "attrs": group if n == "stage1_unit1_conv2" else attrs.get(n, {})}
        for n in layers
    ]
    last = next(n for n in ("fc1", "fc8", "fc", "fullyconnected0") if n in layers)
    num_hidden = str(state[next(t for t, mx in names.items() if mx == f"arg:{last}_weight")].shape[0])
    nodes.append({"op": "FullyConnected", "name": last, "attrs": {"num_hidden": num_hidden}})
    with open(f"{prefix}-symbol.json", "w") as f:
        json.dump({"nodes": nodes}, f)


@pytest.mark.parametrize("network,kwargs,attrs", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_importable_family_round_trips(tmp_path, network, kwargs, attrs):
    import symbols

    torch.manual_seed(0)
    model = symbols.get_symbol(network, num_classes=7, **kwargs).eval()
    for value in model.state_dict().values():
        value.copy_(torch.rand_like(value) * 0.2 + 0.9 if value.dim() == 1 else torch.randn_like(value) * 0.05)
    write_mxnet_checkpoint(model, tmp_path / "net", kwargs, attrs)
    imported, info = mximport.import_mxnet(str(tmp_path / "net"), 1)
    assert info["network"] == network and all(info["arguments"][k] == v for k, v in kwargs.items())
    x = torch.randn(2, *[int(v) for v in kwargs["image_shape"].split(",")])
    with torch.no_grad():
        assert torch.allclose(imported(x), model(x), atol=1e-5)
