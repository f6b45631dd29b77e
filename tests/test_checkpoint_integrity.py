"""Checkpoints survive kills, full disks, flipped bytes and crafted metadata: each ends in one UserError line."""

import argparse
import errno
import json
import os
import struct
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save

from common import checkpoint, modelzoo, mximport, mxparams, networks, recordio, util
from common.util import UserError

MLP = ["train_mnist.py", "--network", "mlp", "--mnist-mirror", "file:///nonexistent", "--gpus", ""]
FAST = ["--num-examples", "512", "--batch-size", "128", "--disp-batches", "100"]


def dead_pid():
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def mlp_args(prefix):
    return argparse.Namespace(
        model_prefix=str(prefix),
        network="mlp",
        image_shape="1,28,28",
        rgb_mean="0,0,0",
        rgb_std="255,255,255",
        num_classes=10,
    )


@pytest.fixture
def saved(tmp_path):
    """A one-epoch mlp checkpoint (symbol + params) under tmp_path/m."""
    prefix = tmp_path / "m"
    checkpoint.write_symbol_for(mlp_args(prefix))
    model = networks.rebuild("mlp", {"num_classes": 10, "image_shape": "1,28,28"})
    checkpoint.save_params(str(prefix), 1, model)
    return str(prefix)


def edit_symbol(prefix, change):
    path = f"{prefix}-symbol.json"
    doc = json.load(open(path))
    change(doc)
    open(path, "w").write(json.dumps(doc))


# 1. metrics: append-only, a torn line (a kill mid-write) costs no earlier epoch


def test_metrics_append_keeps_every_saved_epoch_after_a_torn_line(tmp_path):
    prefix = str(tmp_path / "m")
    for epoch in (0, 1):
        checkpoint.append_metrics(prefix, {"epoch": epoch, "train-accuracy": 0.5 + epoch / 10})
    path = f"{prefix}-metrics.jsonl"
    inode = os.stat(path).st_ino
    checkpoint.append_metrics(prefix, {"epoch": 2, "train-accuracy": 0.8})
    assert os.stat(path).st_ino == inode  # appended in place, not rewritten
    with open(path, "a") as f:  # what a kill -9 in the middle of the next append leaves
        f.write('{"epoch": 3, "train-acc')
    checkpoint.append_metrics(prefix, {"epoch": 3, "train-accuracy": 0.9})
    assert [json.loads(x)["epoch"] for x in open(path)] == [0, 1, 2, 3]
    checkpoint.append_metrics(prefix, {"epoch": 1, "train-accuracy": 0.7})  # a resume from epoch 1
    assert [json.loads(x) for x in open(path)][-1] == {"epoch": 1, "train-accuracy": 0.7}
    assert [json.loads(x)["epoch"] for x in open(path)] == [0, 1]
    assert open(f"{prefix}-curve.png", "rb").read(4) == b"\x89PNG"


# 2. temporaries carry the writer's pid; those of dead processes are removed, a live one's never


def test_temporaries_carry_pid_and_stale_ones_are_removed(tmp_path):
    fd, tmp = util.temp_near(str(tmp_path / "m-0001.params"))
    os.close(fd)
    assert os.path.basename(tmp).startswith(f"m-0001.params.{os.getpid()}-") and tmp.endswith(".tmp")
    dead = dead_pid()
    stale = [tmp_path / f"m-0002.params.{dead}-abcd1234.tmp", tmp_path / f"m-symbol.json.{dead}-00ff.tmp"]
    live = [tmp_path / f"m-0003.params.{os.getppid()}-abcd1234.tmp", tmp_path / "other.params.1-ab.tmp"]
    for p in stale + live:
        p.write_bytes(b"x")
    checkpoint.write_symbol_for(mlp_args(tmp_path / "m"))  # the first write of a run under the prefix
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in live) and os.path.exists(tmp)
    stale = [tmp_path / f"r.json.{dead}-0a.tmp", tmp_path / f"r.json.{dead}-0b.tmp.data"]
    for p in stale:
        p.write_bytes(b"x")
    util.atomic_write(str(tmp_path / "r.json"), b"{}")  # any atomic write clears its own output's leftovers
    assert not any(p.exists() for p in stale) and (tmp_path / "r.json").read_bytes() == b"{}"


def test_recordio_writer_removes_stale_temporaries(tmp_path):
    rec, idx = tmp_path / "x.rec", tmp_path / "x.idx"
    stale = [tmp_path / f"x.rec.{dead_pid()}-0badf00d.tmp", tmp_path / f"x.idx.{dead_pid()}-0badf00d.tmp"]
    for p in stale:
        p.write_bytes(b"half a record")
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    w.write_idx(0, b"payload")
    w.close()
    assert rec.exists() and idx.exists() and not any(p.exists() for p in stale)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


# 3. checksums: a flipped byte is found on loading; checkpoints without one still load


def test_flipped_params_byte_is_one_line_and_old_files_load(saved):
    path = checkpoint.params_path(saved, 1)
    raw = bytearray(open(path, "rb").read())
    raw[-3] ^= 0x10
    open(path, "wb").write(bytes(raw))
    with pytest.raises(UserError, match="m-0001.params: the tensor bytes do not match the SHA-256") as err:
        modelzoo.load_checkpoint(saved, 1)
    assert "\n" not in str(err.value)
    model = networks.rebuild("mlp", {"num_classes": 10, "image_shape": "1,28,28"})
    open(path, "wb").write(save(checkpoint.model_tensors(model), metadata={"epoch": "1"}))  # an older checkpoint
    loaded, _ = modelzoo.load_checkpoint(saved, 1)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_flipped_states_byte_is_one_line(tmp_path):
    prefix = str(tmp_path / "m")
    checkpoint.save_states(prefix, 1, {"epoch": 1, "w": torch.arange(64, dtype=torch.float32)})
    raw = bytearray(open(checkpoint.states_path(prefix, 1), "rb").read())
    raw[-5] ^= 0x01
    with pytest.raises(UserError, match="m-0001.states: the tensor bytes do not match"):
        checkpoint.load_states(prefix, 1, raw=bytes(raw))


# 4. crafted or damaged metadata is refused before anything is built


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d.update(network=["mlp"]), "network"),
        (lambda d: d.update(arguments=[1, 2]), "arguments"),
        (lambda d: d.update(classes="0123456789"), "classes"),
        (lambda d: d.update(classes=[1] * 10), "classes"),
        (lambda d: d.update(fine_tune={"a": 1}), "fine_tune"),
        (lambda d: d.update(fine_tune=[3]), "fine_tune[0]"),
        (lambda d: d.update(preprocess="resize"), "preprocess"),
        (lambda d: d["preprocess"].update(rgb_mean="0"), "preprocess.rgb_mean"),
        (lambda d: d["arguments"].update(num_classes=1e11), "arguments.num_classes"),
        (lambda d: d["arguments"].update(image_shape="3,100000,100000"), "arguments.image_shape"),
        (lambda d: d["preprocess"].update(image_shape=[3, 100000, 100000]), "preprocess.image_shape"),
    ],
)
def test_crafted_symbol_file_names_the_field(saved, change, field):
    edit_symbol(saved, change)
    with pytest.raises(UserError) as err:
        modelzoo.load_model(saved, 1)
    assert "m-symbol.json" in str(err.value) and repr(field) in str(err.value) and "\n" not in str(err.value)


def test_crafted_fine_tune_step_is_refused_before_building(saved):
    step = {"pretrained_num_classes": 10, "layer_before_fullc": "auto", "num_classes": 5}
    edit_symbol(saved, lambda d: d.update(fine_tune=[dict(step, image_shape=[1, 100000, 100000])]))
    with pytest.raises(UserError, match=r"'fine_tune\[0\].image_shape'.*16384"):
        modelzoo.load_checkpoint(saved, 1)
    edit_symbol(saved, lambda d: d.update(fine_tune=[dict(step, image_shape=[1, 28, 28], num_classes=10**11)]))
    with pytest.raises(UserError, match=r"'fine_tune\[0\].num_classes'.*1,000,000"):
        modelzoo.load_checkpoint(saved, 1)


def mx_array_file(shape, data=b""):
    """An MXNet .params with one float32 array of `shape` (V2 layout) followed by `data`, and its name."""
    head = struct.pack("<QQQ", mxparams.LIST_MAGIC, 0, 1)
    arr = struct.pack(f"<Iii{len(shape)}qiii", mxparams.V2, 0, len(shape), *shape, 1, 0, 0) + data
    return head + arr + struct.pack("<QQ", 1, 5) + b"arg:w"


@pytest.mark.parametrize("shape", [(2**32, 2**32), (2**62, 4), (1000, 1000)])
def test_mxnet_params_shape_beyond_the_file(tmp_path, shape):
    path = tmp_path / "x-0001.params"
    path.write_bytes(mx_array_file(shape, b"\0" * 16))
    with pytest.raises(UserError, match="x-0001.params: .*(more than the file has left|runs past the end)"):
        mxparams.load(str(path))


def test_mxnet_graph_with_wrong_types_or_huge_classifier(tmp_path):
    prefix = tmp_path / "mx"
    mxparams.save(f"{prefix}-0001.params", {"arg:fc1_weight": np.zeros((128, 784), np.float32)})
    sym = f"{prefix}-symbol.json"
    open(sym, "w").write(json.dumps({"nodes": {"name": "fc1"}}))
    with pytest.raises(UserError, match="mx-symbol.json: field 'nodes'"):
        mximport.import_mxnet(str(prefix), 1)
    nodes = [{"name": n, "op": "FullyConnected", "attrs": {"num_hidden": "64"}} for n in ("fc1", "fc2", "fc3")]
    nodes[-1]["attrs"]["num_hidden"] = "100000000000"
    open(sym, "w").write(json.dumps({"nodes": nodes}))
    with pytest.raises(UserError, match=r"mx-symbol.json: field 'fc3.num_hidden' .*1,000,000"):
        mximport.import_mxnet(str(prefix), 1)


# 5. environment failures: a full disk, a prefix under a file, a read-only folder


def fake_ctx(prefix):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return types.SimpleNamespace(
        args=argparse.Namespace(model_prefix=prefix),
        device=torch.device("cpu"),
        ema=None,
        raw=model,
        step=7,
        opt=opt,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        schedule={},
        log=lambda msg: None,
    )


def test_full_disk_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    prefix = str(tmp_path / "m")
    ctx = fake_ctx(prefix)
    checkpoint.save_training(ctx, 1)
    before = open(checkpoint.params_path(prefix, 1), "rb").read()

    def full_disk(path, data, mode="wb"):
        with util.atomic_path(path) as tmp, open(tmp, mode) as f:
            f.write(data[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "atomic_write", full_disk)
    with pytest.raises(UserError) as err:
        checkpoint.save_training(ctx, 2)
    msg = str(err.value)
    assert "weights of epoch 2 could not be saved" in msg and "No space left on device" in msg
    assert "m-0001.params is intact" in msg and "free space" in msg and "\n" not in msg
    assert open(checkpoint.params_path(prefix, 1), "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["m-0001.params", "m-0001.states"]


def test_read_only_folder_is_one_line(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(UserError, match="cannot write .*m-symbol.json: Read-only file system"):
        checkpoint.write_symbol_for(mlp_args(tmp_path / "m"))


def run_train(*args):
    from tests.conftest import run_cli

    return run_cli(*MLP, *FAST, "--num-epochs", "1", *args)


def assert_one_line(proc, *words):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert all(w in last for w in words), last


def test_model_prefix_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    proc = run_train("--model-prefix", tmp_path / "afile" / "ck" / "m")
    assert_one_line(proc, "--model-prefix", "afile", "is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_model_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    proc = run_train("--model-prefix", folder / "m")
    assert_one_line(proc, "cannot write", "Permission denied")


def test_states_of_the_wrong_structure_end_a_resume_in_one_line(tmp_path):
    prefix = tmp_path / "m"
    run_train("--model-prefix", prefix)
    checkpoint.save_states(str(prefix), 1, {"epoch": 1, "step": 4, "optimizer": [1, 2], "rng": {}})
    proc = run_train("--model-prefix", prefix, "--load-epoch", "1", "--num-epochs", "2")
    assert_one_line(proc, "m-0001.states", "'optimizer'")
