"""Shared fixtures: paths to the repo, the MXNet golden files, the MXNet peer, and a CLI runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "mxnet"


@pytest.fixture(scope="session")
def repo():
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def fixtures():
    """The folder of golden files written by MXNet 1.9.1; skip when it is not beside the repo."""
    if not FIXTURES.is_dir():
        pytest.skip(f"MXNet golden files not found at {FIXTURES}")
    return FIXTURES


def _peer_python():
    base = os.environ.get("MXNET_PEER") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "mxnet-peer")
    py = Path(base) / "bin" / "python"
    return py if py.exists() else None


@pytest.fixture(scope="session")
def mxnet_python():
    """The python of the MXNet 1.9.1 side venv (built by ../shared/peers/mxnet-venv.sh); skip if missing."""
    py = _peer_python()
    if py is None:
        pytest.skip("MXNet peer venv not found (build it with ../shared/peers/mxnet-venv.sh, or set MXNET_PEER)")
    return py


def run_cli(*args, cwd=REPO, env=None, timeout=600, check=None):
    """Run `python ARGS...` from the repo root; return the CompletedProcess (text output)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture
def cli():
    """The CLI runner: cli('tools/im2rec.py', ..., check=0)."""
    return run_cli
