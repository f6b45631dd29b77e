"""train_cifar10.py --dataset cifar100: an archive of the real format (made here, never downloaded) packed into .rec
files with the fine labels and the meta's class names; checksums (SHA-256 and the CIFAR page's MD5); offline."""

import hashlib
import io
import json
import pickle
import tarfile

import numpy as np
import pytest

from common import download, recordio
from common.util import UserError

NAMES = [f"fine_{i:02d}" for i in range(100)]


def fake_archive(path, n_train=8, n_test=5):
    """A cifar-100-python.tar.gz of the real layout: train, test (data, fine and coarse labels, ...) and meta."""
    rng = np.random.default_rng(1)
    members = {}
    for split, n in (("train", n_train), ("test", n_test)):
        members[split] = {
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{split} batch".encode(),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
    members["meta"] = {
        b"fine_label_names": [s.encode() for s in NAMES],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("file.txt~", "train", "test", "meta"):
            # protocol 3: bytes keys and ndarrays through numpy's _reconstruct, as the archive's Python 2 pickles load
            blob = pickle.dumps(members[name], protocol=3) if name in members else b"notes"
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path, members


def hashes(path):
    """(SHA-256, MD5) of a file."""
    raw = path.read_bytes()
    return hashlib.sha256(raw).hexdigest(), hashlib.md5(raw).hexdigest()


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The fake archive's members and the .rec files prepare() made of it."""
    from data import cifar100

    root = tmp_path_factory.mktemp("c100")
    archive, members = fake_archive(root / "src" / "cifar-100-python.tar.gz")
    train, val = cifar100.prepare(str(root / "out"), archive.as_uri(), *hashes(archive))
    return members, train, val


def test_archive_packed_with_fine_labels_and_the_metas_class_names(packed):
    members, train, val = packed
    for rec, split in ((train, "train"), (val, "test")):
        reader = recordio.MXIndexedRecordIO(rec[:-4] + ".idx", rec, "r")
        want = members[split]
        assert len(reader.keys) == len(want[b"fine_labels"])
        for i in (0, len(reader.keys) - 1):
            header, img = recordio.unpack_img(reader.read_idx(i))
            assert header.label == want[b"fine_labels"][i]  # the fine label, not the coarse one
            rgb = want[b"data"][i].reshape(3, 32, 32).transpose(1, 2, 0)
            assert np.array_equal(img, rgb[:, :, ::-1])  # BGR as OpenCV decodes
        assert open(rec[:-4] + ".classes").read().splitlines() == NAMES


def test_training_takes_100_classes_and_their_names(packed, tmp_path, cli):
    _, train, _ = packed
    prefix = tmp_path / "c100"
    data_dir = train.rsplit("/", 1)[0]
    proc = cli(
        "train_cifar10.py",
        *("--dataset", "cifar100", "--data-dir", data_dir, "--cifar100-url", "file:///nonexistent"),
        *("--network", "mlp", "--image-shape", "3,32,32", "--pad-size", "0", "--batch-size", "4"),
        *("--num-epochs", "1", "--gpus", "", "--model-prefix", prefix),
        check=0,
    )
    assert "--num-classes not given: 100 classes, from its .classes file" in proc.stderr
    sym = json.loads(open(f"{prefix}-symbol.json").read())
    assert sym["arguments"]["num_classes"] == 100 and sym["classes"] == NAMES
    assert "Epoch[0] Validation-accuracy=" in proc.stderr


def test_checksum_mismatch_is_one_line(tmp_path, cli):
    archive, _ = fake_archive(tmp_path / "c.tar.gz")  # not the published archive: its SHA-256 differs
    out = tmp_path / "out"
    proc = cli("train_cifar10.py", "--dataset", "cifar100", "--cifar100-url", archive.as_uri(), "--data-dir", out)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "SHA-256" in last and "refused" in last and archive.as_uri() in last
    assert not (out / "cifar-100-python.tar.gz").exists()


def test_md5_is_checked_too(tmp_path):
    from data import cifar100

    archive, _ = fake_archive(tmp_path / "src" / "c.tar.gz")
    sha, md5 = hashes(archive)
    with pytest.raises(UserError, match=f"its MD5 is {md5}, the published one is {cifar100.MD5}"):
        cifar100.prepare(str(tmp_path / "out"), archive.as_uri(), sha, cifar100.MD5)
    assert not (tmp_path / "out" / "cifar-100-python.tar.gz").exists()
    # a copy already there is checked against both as well: a wrong MD5 downloads it again
    dest = tmp_path / "here.tar.gz"
    dest.write_bytes(archive.read_bytes())
    refuse = lambda url, timeout: pytest.fail("downloaded although a good copy was there")  # noqa: E731
    assert download.fetch("https://example.invalid/x", str(dest), sha, md5, opener=refuse) == str(dest)
    with pytest.raises(UserError, match="MD5"):
        download.fetch(archive.as_uri(), str(dest), sha, "0" * 32)


def test_offline_names_where_the_archive_goes(tmp_path, cli):
    out = tmp_path / "out"
    proc = cli(
        "train_cifar10.py", "--dataset", "cifar100", "--cifar100-url", (tmp_path / "absent").as_uri(), "--data-dir", out
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(out / "cifar-100-python.tar.gz") in last and "--data-train" in last


def test_archive_copied_by_hand_is_used_offline(tmp_path):
    from data import cifar100

    out = tmp_path / "out"
    archive, _ = fake_archive(out / "cifar-100-python.tar.gz")
    train, val = cifar100.prepare(str(out), (tmp_path / "absent").as_uri(), *hashes(archive))
    assert open(train[:-4] + ".classes").read().splitlines() == NAMES
    assert len(recordio.MXIndexedRecordIO(val[:-4] + ".idx", val, "r").keys) == 5


def test_a_damaged_archive_is_one_line(tmp_path):
    from data import cifar100

    out = tmp_path / "out"
    out.mkdir()
    bad = out / "cifar-100-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(UserError, match="does not read as a .tar.gz.*delete it"):
        cifar100.prepare(str(out), (tmp_path / "absent").as_uri(), *hashes(bad))


def test_unknown_dataset_exits_2(cli):
    proc = cli("train_cifar10.py", "--dataset", "cifar1000")
    assert proc.returncode == 2 and "--dataset" in proc.stderr.strip().splitlines()[-1]
