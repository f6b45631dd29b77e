"""common/download.py: checksummed downloads (file:// URLs and fake openers only, no network)."""

import hashlib
import http.client
import io
import logging

import pytest

from common import download, modelzoo
from common.util import UserError

PAYLOAD = b"0123456789abcdef" * 4096  # 64 KiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def source(tmp_path):
    """A file:// URL serving PAYLOAD."""
    src = tmp_path / "srv" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src.as_uri()


def refuse(url, timeout=None):
    """An opener that fails the test if called: nothing may be downloaded."""
    raise AssertionError(f"downloaded {url} although a good copy was there")


class CutResponse(io.BytesIO):
    """A response that announces more bytes than it sends, then breaks as http.client does."""

    headers = {"Content-Length": str(len(PAYLOAD))}

    def read(self, n=-1):
        block = super().read(n)
        if not block:
            raise http.client.IncompleteRead(b"", len(PAYLOAD))
        return block


def test_sha256_of(tmp_path):
    (tmp_path / "f").write_bytes(PAYLOAD)
    assert download.sha256_of(tmp_path / "f") == DIGEST


def test_file_url_lands_under_final_name(tmp_path, source, caplog):
    dest = tmp_path / "out" / "blob.bin"
    with caplog.at_level(logging.INFO):
        assert download.fetch(source, str(dest), DIGEST) == str(dest)
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]  # no temporary left
    logged = [r.getMessage() for r in caplog.records if "downloading" in r.getMessage()]
    assert logged == [f"downloading {source} ({len(PAYLOAD):,} bytes) to {dest}"]


def test_wrong_hash_is_a_user_error_and_leaves_nothing(tmp_path, source):
    dest = tmp_path / "out" / "blob.bin"
    wrong = "0" * 64
    with pytest.raises(UserError, match="failed its hash check") as err:
        download.fetch(source, str(dest), wrong)
    assert source in str(err.value) and DIGEST in str(err.value) and wrong in str(err.value)
    assert "SHA-256" in str(err.value) and "refused" in str(err.value)
    assert list(dest.parent.iterdir()) == []


def test_present_good_file_is_not_downloaded_again(tmp_path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(PAYLOAD)
    assert download.fetch("https://example.invalid/blob.bin", str(dest), DIGEST, opener=refuse) == str(dest)
    assert download.fetch("https://example.invalid/blob.bin", str(dest), DIGEST[:8], opener=refuse) == str(dest)


def test_present_bad_file_is_replaced(tmp_path, source):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"truncated")
    download.fetch(source, str(dest), DIGEST)
    assert dest.read_bytes() == PAYLOAD


def test_prefix_check(tmp_path, source):
    good = tmp_path / "good" / "blob.bin"
    assert download.fetch(source, str(good), DIGEST[:10].upper()) == str(good)
    assert good.read_bytes() == PAYLOAD
    bad = tmp_path / "bad" / "blob.bin"
    wrong = "f" * 10 if not DIGEST.startswith("f" * 10) else "0" * 10
    with pytest.raises(UserError, match=rf"starts with {wrong}") as err:
        download.fetch(source, str(bad), wrong)
    assert DIGEST in str(err.value)
    assert list(bad.parent.iterdir()) == []


def test_network_failures_are_oserrors_and_leave_nothing(tmp_path):
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(OSError):
        download.fetch((tmp_path / "absent.bin").as_uri(), str(dest), DIGEST)
    with pytest.raises(OSError, match="IncompleteRead"):
        download.fetch("https://example.invalid/blob.bin", str(dest), DIGEST, opener=lambda u, timeout: CutResponse())
    assert list(dest.parent.iterdir()) == []


def test_modelzoo_fetch_reuses_and_guards_the_cache(tmp_path):
    name = f"net-{DIGEST[:8]}.pth"
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / name).write_bytes(PAYLOAD)
    path = modelzoo.fetch((tmp_path / "srv" / name).as_uri(), str(tmp_path / "cache"))
    assert open(path, "rb").read() == PAYLOAD
    with open(path, "wb") as f:
        f.write(b"damaged")
    with pytest.raises(UserError, match=r"net-.*\.pth is damaged .*delete it"):
        modelzoo.fetch((tmp_path / "srv" / name).as_uri(), str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"cannot download .*absent-00000000\.pth .*copy that file to .*MXTORCH"):
        modelzoo.fetch((tmp_path / "srv" / "absent-00000000.pth").as_uri(), str(tmp_path / "cache"))
