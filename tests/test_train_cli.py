"""The entry scripts through their command lines: training on the MNIST sample, outputs, resume, bad inputs."""

import gzip
import io
import json
import os
import pickle
import re
import tarfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

OFFLINE = "file:///nonexistent-mirror"  # no network in tests: the download fails at once, the sample is used
# --cosine 0: the resume tests lengthen --num-epochs, which a cosine schedule (the sample's default) stretches
MLP = ["train_mnist.py", "--network", "mlp", "--mnist-mirror", OFFLINE, "--disp-batches", "20", "--gpus", ""]
MLP += ["--cosine", "0"]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """An uninterrupted 2-epoch MLP run on the sample, with top-k and cross-entropy reported."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("full")
    prefix = out / "ck" / "mlp"
    proc = run_cli(*MLP, "--num-epochs", "2", "--model-prefix", prefix, "--top-k", "3", "--loss", "ce", check=0)
    return prefix, proc


def test_mnist_sample_trains_and_logs(two_epochs):
    prefix, proc = two_epochs
    err = proc.stderr
    assert "MNIST could not be downloaded" in err and "bundled 4,000-digit sample" in err
    assert re.search(r"Epoch\[0\] Batch \[0-20\]\tSpeed: [\d.]+ samples/sec\taccuracy=0\.\d{6}\t", err)
    assert re.search(r"Total batch size 64 .* learning rate 0.05", err)
    for line in (
        "Train-accuracy=",
        "Time cost=",
        "Validation-accuracy=",
        "Validation-top_k_accuracy_3=",
        "Validation-cross-entropy=",
    ):
        assert re.search(rf"Epoch\[1\] {re.escape(line)}[\d.]+", err), line
    acc = [float(v) for v in re.findall(r"Epoch\[\d\] Validation-accuracy=([\d.]+)", err)]  # not the best-epoch lines
    assert len(acc) == 2 and acc[1] > 0.85


def test_mnist_outputs_files(two_epochs):
    prefix, _ = two_epochs
    sym = json.loads(open(f"{prefix}-symbol.json").read())
    assert sym["network"] == "mlp" and sym["arguments"]["num_classes"] == 10
    assert sym["preprocess"]["rgb_std"] == [255.0, 255.0, 255.0] and sym["preprocess"]["image_shape"] == [1, 28, 28]
    for epoch in (1, 2):
        params = load_file(f"{prefix}-{epoch:04d}.params")
        assert params and not any(k.startswith(("module.", "_orig_mod.")) for k in params)
        assert os.path.isfile(f"{prefix}-{epoch:04d}.states")
    lines = [json.loads(x) for x in open(f"{prefix}-metrics.jsonl")]
    assert [r["epoch"] for r in lines] == [0, 1] and lines[1]["validation-accuracy"] > lines[0]["train-accuracy"] - 0.2
    assert open(f"{prefix}-curve.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(os.path.dirname(prefix)) if f.endswith(".tmp")]


def test_resume_is_exact_and_auto(two_epochs, tmp_path, cli):
    full, _ = two_epochs
    prefix = tmp_path / "mlp"
    cli(*MLP, "--num-epochs", "1", "--model-prefix", prefix, "--top-k", "3", "--loss", "ce", check=0)
    proc = cli(*MLP, "--num-epochs", "2", "--model-prefix", prefix, "--load-epoch", "1", check=0)
    assert "resuming at epoch 1" in proc.stderr and "num_epochs 1 -> 2" in proc.stderr
    a, b = load_file(f"{full}-0002.params"), load_file(f"{prefix}-0002.params")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    proc = cli(*MLP, "--num-epochs", "3", "--model-prefix", prefix, "--load-epoch", "auto", check=0)
    assert "resuming at epoch 2" in proc.stderr and os.path.isfile(f"{prefix}-0003.params")
    assert [json.loads(x)["epoch"] for x in open(f"{prefix}-metrics.jsonl")] == [0, 1, 2]


def test_ema_params_are_the_averaged_model_and_resume_exactly(tmp_path, cli):
    from common import checkpoint

    ema = [*MLP, "--ema", "0.9", "--num-examples", "1024", "--batch-size", "128"]
    full, part = tmp_path / "full" / "m", tmp_path / "part" / "m"
    cli(*ema, "--num-epochs", "2", "--model-prefix", full, check=0)
    cli(*ema, "--num-epochs", "1", "--model-prefix", part, check=0)
    cli(*ema, "--num-epochs", "2", "--model-prefix", part, "--load-epoch", "1", check=0)
    states = checkpoint.load_states(str(full), 2)
    params = load_file(f"{full}-0002.params")
    averaged = {k[len("module.") :]: v for k, v in states["ema"].items() if k.startswith("module.")}
    # the .params file is what validation ran on (the average), the trained weights ride in .states for resume
    assert params.keys() == averaged.keys() and all(torch.equal(params[k], averaged[k]) for k in params)
    assert any(not torch.equal(params[k], states["model"][k]) for k in params)
    resumed = load_file(f"{part}-0002.params")
    assert all(torch.equal(params[k], resumed[k]) for k in params)
    resumed_states = checkpoint.load_states(str(part), 2)
    assert all(torch.equal(states["model"][k], resumed_states["model"][k]) for k in params)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--optimizer", "foo"], ["--optimizer", "'foo'", "sgd", "lamb"]),
        (["--initializer", "foo"], ["--initializer", "xavier"]),
        (["--loss", "foo"], ["--loss", "ce"]),
        (["--num-classes", "5"], ["label 9", "--num-classes"]),
        (["--load-epoch", "7", "--model-prefix", "{ck}"], ["0007.params", "epochs saved", "1"]),
        (["--kv-store", "weird"], ["--kv-store", "local"]),
    ],
)
def test_bad_inputs_exit_2_with_one_line(two_epochs, cli, args, words):
    ck = str(two_epochs[0])
    proc = cli(*MLP, "--num-epochs", "1", *[a.format(ck=ck) for a in args])
    lines = [x for x in proc.stderr.splitlines() if "error:" in x]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpus_without_cuda(cli):
    proc = cli(*MLP, "--gpus", "0")
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr


def test_download_checksum_mismatch_refused(tmp_path, cli):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (mirror / name).write_bytes(gzip.compress(b"not mnist"))
    proc = cli("train_mnist.py", "--mnist-mirror", mirror.as_uri(), "--data-dir", tmp_path / "d", "--num-epochs", "1")
    assert proc.returncode == 2 and "SHA-256" in proc.stderr and "refused" in proc.stderr
    assert not (tmp_path / "d" / "train-images-idx3-ubyte.gz").exists()


def test_test_io_and_benchmark(cli):
    proc = cli(
        "train_imagenet.py",
        "--benchmark",
        "1",
        "--test-io",
        "1",
        "--network",
        "lenet",
        "--image-shape",
        "1,28,28",
        "--num-classes",
        "10",
        "--batch-size",
        "16",
        "--num-examples",
        "320",
        "--disp-batches",
        "5",
        "--gpus",
        "",
        check=0,
    )
    assert re.search(r"Batch \[4\]\tSpeed: [\d.]+ samples/sec", proc.stderr) and "Epoch[" not in proc.stderr


def _fake_cifar_archive(path, n=6):
    """A CIFAR-10-shaped python archive with n random images per batch."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            blob = pickle.dumps(
                {
                    b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                    b"labels": [int(v) for v in rng.integers(0, 10, n)],
                }
            )
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    path.write_bytes(buf.getvalue())
    return path


def test_cifar10_archive_packed_to_rec(tmp_path):
    from common import recordio
    from common.download import sha256_of
    from data import cifar10

    archive = _fake_cifar_archive(tmp_path / "c.tar.gz")
    train, val = cifar10.prepare(str(tmp_path / "out"), archive.as_uri(), sha256_of(archive))
    reader = recordio.MXIndexedRecordIO(val[:-4] + ".idx", val, "r")
    header, img = recordio.unpack_img(reader.read_idx(0))
    with tarfile.open(archive) as tar:
        first = pickle.loads(tar.extractfile("cifar-10-batches-py/test_batch").read())
    want = first[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)[:, :, ::-1]  # BGR as OpenCV decodes
    assert header.label == first[b"labels"][0] and np.array_equal(img, want)
    assert len(recordio.MXIndexedRecordIO(train[:-4] + ".idx", train, "r").keys) == 30


def test_cifar10_offline_names_where_the_archive_goes(tmp_path, cli):
    out = tmp_path / "out"
    proc = cli("train_cifar10.py", "--cifar10-url", (tmp_path / "absent.tar.gz").as_uri(), "--data-dir", out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(out / "cifar-10-python.tar.gz") in proc.stderr.strip().splitlines()[-1]


def test_cifar10_archive_copied_by_hand_is_used_offline(tmp_path):
    from common.download import sha256_of
    from data import cifar10

    out = tmp_path / "out"
    out.mkdir()
    archive = _fake_cifar_archive(out / "cifar-10-python.tar.gz")
    train, val = cifar10.prepare(str(out), (tmp_path / "absent.tar.gz").as_uri(), sha256_of(archive))
    assert os.path.getsize(train) > 0 and os.path.getsize(val) > 0


def test_cifar10_checksum_mismatch_refused(tmp_path, cli):
    archive = _fake_cifar_archive(tmp_path / "c.tar.gz")
    proc = cli("train_cifar10.py", "--cifar10-url", archive.as_uri(), "--data-dir", tmp_path / "out")
    assert proc.returncode == 2 and "SHA-256" in proc.stderr and "refused" in proc.stderr


def test_a_batch_of_only_bad_images_is_skipped(tmp_path, cli):
    from common import recordio
    from tests.test_data import random_images, write_rec

    bad = [(recordio.IRHeader(0, 1, 100 + k, 0), b"\xff\xd8 not a jpeg") for k in range(8)]
    rec = write_rec(tmp_path / "mostly_bad", random_images(2, 32, 32), [0, 1], extra=bad)
    # 10 records in batches of 2: at most 2 batches hold a good image, so at least 3 hold none
    flags = ("--data-train", rec, "--image-shape", "3,32,32", "--num-classes", "2", "--batch-size", "2")
    proc = cli("train_imagenet.py", "--network", "mlp", *flags, "--num-epochs", "1", "--disp-batches", "1", check=0)
    assert "Epoch[0] Train-accuracy=" in proc.stderr
