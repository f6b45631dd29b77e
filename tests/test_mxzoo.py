"""MXNet's model-zoo names (imagenet1k-resnet-18, ...) through score.py and fine-tune.py, served from files the
test makes (a mirror folder with MXNet's layout): download, import, SHA-256 recorded then checked, offline errors."""

import json
import shutil

import pytest

from common import mxzoo


@pytest.fixture
def mirror(fixtures, tmp_path):
    """A folder laid out as data.mxnet.io/models/ holding MXNet's resnet-18 fixture as imagenet1k-resnet-18."""
    folder = tmp_path / "mirror" / "imagenet" / "resnet" / "18-layers"
    folder.mkdir(parents=True)
    shutil.copy(fixtures / "resnet-18-symbol.json", folder / "resnet-18-symbol.json")
    shutil.copy(fixtures / "resnet-18-0003.params", folder / "resnet-18-0000.params")
    return tmp_path / "mirror"


def env(mirror, tmp_path):
    """The mirror setting and a cache of the test's own."""
    return {mxzoo.MIRROR_ENV: mirror.as_uri(), "TORCH_HOME": str(tmp_path / "cache")}


def test_zoo_name_is_downloaded_imported_and_recorded(cli, fixtures, mirror, tmp_path):
    tiny = fixtures / "im2rec" / "tiny.rec"
    report = tmp_path / "r.json"
    flags = ("--data-val", tiny, "--image-shape", "3,32,32", "--batch-size", "3", "--report-json", report)
    proc = cli("score.py", "--model", "imagenet1k-resnet-18", *flags, env=env(mirror, tmp_path), check=0)
    assert json.loads(report.read_text())["network"] == "resnet"
    cached = tmp_path / "cache" / "hub" / "checkpoints" / "mxnet"  # torch.hub's folder under TORCH_HOME
    assert sorted(p.name for p in cached.iterdir()) == [
        "imagenet1k-resnet-18-0000.params",
        "imagenet1k-resnet-18-0000.params.sha256",
        "imagenet1k-resnet-18-symbol.json",
        "imagenet1k-resnet-18-symbol.json.sha256",
    ]
    assert "SHA-256" in proc.stderr and "recorded (MXNet published none)" in proc.stderr
    # a second load uses the cache (the mirror is gone) and checks the recorded hash
    shutil.rmtree(mirror)
    cli("score.py", "--model", "imagenet1k-resnet-18", *flags, env=env(mirror, tmp_path), check=0)
    params = cached / "imagenet1k-resnet-18-0000.params"
    raw = bytearray(params.read_bytes())
    raw[-5] ^= 0xFF
    params.write_bytes(bytes(raw))
    proc = cli("score.py", "--model", "imagenet1k-resnet-18", *flags, env=env(mirror, tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{params} is damaged: its SHA-256 is " in proc.stderr.strip().splitlines()[-1]


def test_offline_error_names_file_address_and_mirror_setting(cli, fixtures, tmp_path):
    gone = tmp_path / "no-mirror"
    tiny = fixtures / "im2rec" / "tiny.rec"
    proc = cli("score.py", "--model", "imagenet11k-resnet-152", "--data-val", tiny, env=env(gone, tmp_path))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"cannot download {gone.as_uri()}/imagenet-11k/resnet-152/resnet-152-symbol.json" in last
    assert "imagenet11k-resnet-152-symbol.json" in last and mxzoo.MIRROR_ENV in last


def test_fine_tune_takes_a_zoo_name_and_load_epoch_is_the_pretrained_epoch(cli, fixtures, mirror, tmp_path):
    tiny = fixtures / "im2rec" / "tiny.rec"
    prefix = tmp_path / "ft" / "r18"
    common = ("--num-classes", "3", "--data-train", tiny, "--batch-size", "3", "--num-epochs", "1")
    flags = ("--image-shape", "3,32,32", "--model-prefix", prefix, "--freeze-backbone", "1")
    proc = cli("fine-tune.py", "--pretrained-model", "imagenet1k-resnet-18", *common, *flags, env=env(mirror, tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fine-tuning MXNet zoo imagenet1k-resnet-18" in proc.stderr
    # MXNet's fine-tune.py: --load-epoch N loads epoch N of the pretrained prefix (here MXNet's fixture, epoch 3)
    again = cli(
        "fine-tune.py", "--pretrained-model", fixtures / "resnet-18", "--load-epoch", "3", *common, *flags, check=0
    )
    assert "resnet-18-0003.params" in again.stderr
