"""Checksummed downloads of datasets and pretrained weights: to a temporary name, hash checked, then renamed.

sha256_of(path)                  the hex SHA-256 of a file
fetch(url, path, sha256, md5)    url -> path unless a file with those hashes is there; OSError when unreachable
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
    return _digests_of(path)[0]


def _digests_of(path):
    """(SHA-256, MD5) of a file, hex."""
    hashes = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            for h in hashes:
                h.update(block)
    return tuple(h.hexdigest() for h in hashes)


def _stream(src, dst, size, label):
    """Copy the response src into the file dst, with a progress bar on a terminal; return (SHA-256, MD5) of it."""
    hashes = hashlib.sha256(), hashlib.md5(usedforsecurity=False)  # as the bytes arrive: the file is read once
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=None)
    with bar, open(dst, "wb") as out:
        for block in iter(lambda: src.read(CHUNK), b""):
            for h in hashes:
                h.update(block)
            out.write(block)
            bar.update(len(block))
    return tuple(h.hexdigest() for h in hashes)


def _mismatch(got, want):
    """(name, got, want) of the first published hash the digests (SHA-256, MD5) fail, or None."""
    for name, digest, published in zip(("SHA-256", "MD5"), got, want):
        if published is not None and not digest.startswith(published):
            return name, digest, published
    return None


def fetch(url, path, sha256, md5=None, timeout=10, opener=urllib.request.urlopen):
    """Download url (http, https or file) to path unless a file whose SHA-256 starts with sha256 is there; return path.

    sha256 is the full hex digest or a prefix of it (torchvision names its weights by one); None checks nothing.
    md5, when given, is checked too (some datasets' own pages publish only an MD5, e.g. CIFAR's).
    A hash mismatch is a UserError and leaves nothing behind. A network failure raises OSError (URLError is one),
    so each caller decides what offline means: a bundled sample, or where to copy the file by hand.
    """
    want = tuple(h.lower() if h else None for h in (sha256, md5))
    if os.path.isfile(path) and (want == (None, None) or _mismatch(_digests_of(path), want) is None):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with opener(url, timeout=timeout) as src, atomic_path(path) as tmp:
            size = int(src.headers.get("Content-Length") or 0) or None
            logging.info("downloading %s (%s) to %s", url, f"{size:,} bytes" if size else "size unknown", path)
            bad = _mismatch(_stream(src, tmp, size, os.path.basename(path)), want)
            if bad is not None:
                name, got, published = bad
                kind = "starts with" if len(published) < len(got) else "is"
                raise UserError(
                    f"{url} failed its hash check: its {name} is {got}, the published one {kind} {published}; "
                    "download refused, check the address (or mirror) and try again"
                )
    except http.client.HTTPException as err:  # a cut connection (IncompleteRead) is no OSError of its own
        raise OSError(f"{type(err).__name__}: {err}") from err
    return path
