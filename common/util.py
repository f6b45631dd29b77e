"""What every entry point shares: the user-error type, the wrapper that reports it, flag parsers, atomic writes."""

import contextlib
import errno
import functools
import os
import re
import secrets
import sys

from symbols.errors import UserError, choice_error

__all__ = [
    "UserError",
    "choice_error",
    "main_guard",
    "parse_floats",
    "parse_shape",
    "read_lines",
    "temp_name",
    "temp_near",
    "remove_stale_temps",
    "atomic_path",
    "atomic_write",
]


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


def parse_shape(text):
    """Parse '3,224,224' or '(3,224,224)' into a (C, H, W) tuple of ints."""
    try:
        shape = tuple(int(v) for v in str(text).strip("()[] ").split(",") if v.strip())
    except ValueError:
        shape = ()
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) <= 0:
        raise UserError(f"--image-shape {text!r} is not C,H,W with C 1 or 3 (e.g. 3,224,224)")
    return shape


def read_lines(path, what):
    """The lines of a UTF-8 text file; one that cannot be read is a UserError naming `what` and the reason."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {what} {path}: {getattr(err, 'strerror', None) or err}") from None


def temp_name(path):
    """A new temporary name beside path that carries this process's pid: NAME.<pid>-<hex>.tmp."""
    return f"{path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def temp_near(path):
    """(fd, name) of a new temporary file beside path, with the permissions open() would give; UserError if none."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = temp_name(path)
        try:  # mode 0o666 less the umask, as open() gives; O_EXCL: never another writer's file
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as err:
            raise UserError(
                f"cannot write {path}: {err.strerror} ({folder}); create the folder or pick another"
            ) from None


TEMP_RE = re.compile(r".+\.(\d+)-[0-9a-f]+\.tmp(\.\w+)?")  # with a writer's side file (atomic_path's extra_suffixes)


def _pid_alive(pid):
    """Whether a process with this pid runs on this host (a pid we may not signal is alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:  # no pid of this host: not ours to judge, so left alone
        return True
    except OSError as err:
        return err.errno != errno.ESRCH
    return True


def remove_stale_temps(path_or_prefix):
    """Remove the temporaries (NAME.<pid>-<hex>.tmp) beside path_or_prefix left by dead processes; return them.

    A killed writer never renames or removes its temporary; the next run on the same output calls this. A file
    of a live process on this host is never touched (the pid names the writer; see temp_name).
    """
    folder, base = os.path.split(os.path.abspath(path_or_prefix))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        m = TEMP_RE.fullmatch(name)
        if not (m and name.startswith(base) and name[len(base)] in ".-") or _pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
        except OSError:  # another run removed it first, or the folder is read-only: leave it
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path, extra_suffixes=()):
    """Yield a temporary name beside path; on a clean exit rename it to path, else remove it (and tmp+suffix).

    The one way every output of the suite is written: a reader never sees a half-written file under its final
    name. extra_suffixes names side files a writer may leave beside the temporary (ONNX's external weights).
    """
    remove_stale_temps(path)  # what a killed writer of this same output left (never a live process's)
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
