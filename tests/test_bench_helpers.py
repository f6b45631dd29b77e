"""The benchmarks' instruction-set cap: the kernels of a capped process report the capped instruction set."""

import os
import sys

import pytest

from benchmarks import ISAS, isa_env, kernels_in_use, machine


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


def test_unknown_isa_lists_the_valid_ones():
    with pytest.raises(SystemExit) as err:
        isa_env("avx9")
    assert all(name in str(err.value) for name in ISAS)


def test_native_leaves_the_environment_alone():
    assert isa_env("native") == dict(os.environ)


@pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="needs a CPU above AVX2 to show the cap")
def test_avx2_cap_reaches_torch_kernels():
    native, capped = kernels_in_use(isa_env("native"), sys.executable), kernels_in_use(isa_env("avx2"), sys.executable)
    assert "ATen AVX2 " in capped and "oneDNN Intel AVX2" in capped
    assert "ATen AVX2 " not in native
    assert "capped at avx2" in machine("avx2") and f"{os.cpu_count()} cores" in machine("native")
