"""Utilities shared by every entry point: the user-error type and the wrapper that reports it."""

import contextlib
import functools
import os
import sys
import tempfile


class UserError(Exception):
    """A mistake of the user's (bad flag, missing or corrupt file): one line on stderr, exit status 2."""


def main_guard(main):
    """Wrap an entry point so a UserError prints one line on stderr and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            prog = os.path.basename(sys.argv[0]) or "error"
            print(f"{prog}: error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


def choice_error(what, value, valid):
    """Return the UserError for an unknown string choice, listing the valid values."""
    return UserError(f"unknown {what} {value!r}; valid values: {', '.join(str(v) for v in valid)}")


def parse_floats(text, name, n=3):
    """Parse a comma-separated tuple of floats from flag `name`: n of them (n: a count or a tuple of counts)."""
    counts = (n,) if isinstance(n, int) else tuple(dict.fromkeys(n))
    try:
        vals = [float(v) for v in str(text).strip("()[] ").split(",")]
    except ValueError:
        vals = []
    if len(vals) not in counts:
        raise UserError(f"--{name} {text!r} must be {' or '.join(map(str, counts))} comma-separated numbers")
    return vals


def temp_near(path):
    """(fd, name) of a new temporary file beside path, with the permissions open() would give; UserError if none."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror} ({folder}); create the folder or pick another") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
    return fd, tmp


@contextlib.contextmanager
def atomic_path(path, extra_suffixes=()):
    """Yield a temporary name beside path; on a clean exit rename it to path, else remove it (and tmp+suffix).

    The one way every output of the suite is written: a reader never sees a half-written file under its final
    name. extra_suffixes names side files a writer may leave beside the temporary (ONNX's external weights).
    """
    fd, tmp = temp_near(path)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, *(tmp + s for s in extra_suffixes)):
            if os.path.exists(leftover):
                os.unlink(leftover)


def atomic_write(path, data, mode="wb"):
    """Write data to path through a temporary file in the same folder and an atomic rename."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
