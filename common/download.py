"""Checksummed downloads of datasets and pretrained weights: to a temporary name, SHA-256 checked, then renamed.

sha256_of(path)                  the hex SHA-256 of a file
fetch(url, path, sha256)         url -> path unless a file with that hash is there; OSError when unreachable
"""

import hashlib
import http.client
import logging
import os
import urllib.request

from tqdm import tqdm

from common.util import UserError, atomic_path

CHUNK = 1 << 20


def sha256_of(path):
    """The hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _stream(src, dst, size, label):
    """Copy the response src into the file dst, with a progress bar on a terminal; return the bytes' SHA-256."""
    h = hashlib.sha256()  # taken as the bytes arrive, so the file is not read a second time
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=None)
    with bar, open(dst, "wb") as out:
        for block in iter(lambda: src.read(CHUNK), b""):
            h.update(block)
            out.write(block)
            bar.update(len(block))
    return h.hexdigest()


def fetch(url, path, sha256, timeout=10, opener=urllib.request.urlopen):
    """Download url (http, https or file) to path unless a file whose SHA-256 starts with sha256 is there; return path.

    sha256 is the full hex digest or a prefix of it (torchvision names its weights by one); None checks nothing.
    A hash mismatch is a UserError and leaves nothing behind. A network failure raises OSError (URLError is one),
    so each caller decides what offline means: a bundled sample, or where to copy the file by hand.
    """
    sha256 = sha256.lower() if sha256 else None
    if os.path.isfile(path) and (sha256 is None or sha256_of(path).startswith(sha256)):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with opener(url, timeout=timeout) as src, atomic_path(path) as tmp:
            size = int(src.headers.get("Content-Length") or 0) or None
            logging.info("downloading %s (%s) to %s", url, f"{size:,} bytes" if size else "size unknown", path)
            got = _stream(src, tmp, size, os.path.basename(path))
            if sha256 is not None and not got.startswith(sha256):
                kind = "starts with" if len(sha256) < len(got) else "is"
                raise UserError(
                    f"{url} failed its hash check: its SHA-256 is {got}, the published one {kind} {sha256}; "
                    "download refused, check the address (or mirror) and try again"
                )
    except http.client.HTTPException as err:  # a cut connection (IncompleteRead) is no OSError of its own
        raise OSError(f"{type(err).__name__}: {err}") from err
    return path
