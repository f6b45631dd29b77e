"""Checksummed downloads: fetch to a temporary name, verify SHA-256, then rename into place."""

import hashlib
import os
import shutil
import tempfile
import urllib.request

from common.util import UserError


def sha256_of(path):
    """The hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url, path, sha256, timeout=10, opener=urllib.request.urlopen):
    """Download url to path unless a file with the right hash is there; a hash mismatch is a UserError.

    Network failures raise OSError (URLError is one) so the caller can fall back to what it has offline.
    """
    if os.path.isfile(path) and sha256_of(path) == sha256:
        return path
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, opener(url, timeout=timeout) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        got = sha256_of(tmp)
        if got != sha256:
            raise UserError(f"{url}: SHA-256 {got} does not match the published {sha256}; download refused")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
