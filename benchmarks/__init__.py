"""Benchmarks that print the suite's figure, MXNet 1.9.1's figure and their ratio from one run."""

import os
import platform

# --max-isa: the widest instruction set that torch's ATen and oneDNN kernels, MXNet's oneDNN (2.4) and the BLAS
# libraries of both may use. An AVX-512 machine capped at avx2 compares the two as an AVX2-only CPU would run them.
ISAS = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    },
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "DNNL_MAX_CPU_ISA": "AVX512_CORE",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "OPENBLAS_CORETYPE": "SkylakeX",
    },
}


def isa_env(name):
    """A copy of os.environ capped at instruction set `name` (a key of ISAS); SystemExit for others."""
    if name not in ISAS:
        raise SystemExit(f"--max-isa {name!r}: valid values: {', '.join(ISAS)}")
    return {**os.environ, **ISAS[name]}


def machine(isa="native"):
    """One line on the CPU the figures come from: model, cores, the widest vector extensions, the cap."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    wide = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    capped = "" if isa == "native" else f", capped at {isa} (--max-isa)"
    return f"{model}, {os.cpu_count()} cores, {' '.join(wide) or 'no AVX2'}{capped}"


TORCH_PROBE = (
    "import torch; torch.nn.functional.conv2d(torch.ones(8, 16, 16, 16), torch.ones(16, 16, 3, 3)); "
    "print('aten:' + torch.backends.cpu.get_cpu_capability())"
)
MXNET_PROBE = (
    "import mxnet as mx; mx.nd.Convolution(mx.nd.ones((8, 16, 16, 16)), mx.nd.ones((16, 16, 3, 3)), kernel=(3, 3), "
    "num_filter=16, no_bias=True).wait_to_read()"
)


def kernels_in_use(env, suite_python, peer_python=None):
    """What the kernels report they run on under env: torch's ATen and oneDNN, MXNet's oneDNN (proves the cap)."""
    import re
    import subprocess

    def probe(python, code):
        verbose = {**env, "ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1", "MKLDNN_VERBOSE": "1"}
        out = subprocess.run([python, "-c", code], env=verbose, capture_output=True, text=True).stdout
        return lambda pattern: (re.findall(pattern + r"([^\n]+)", out) or ["?"])[0].strip()

    torch_said = probe(suite_python, TORCH_PROBE)
    parts = [f"torch ATen {torch_said('aten:')} / oneDNN {torch_said('isa:')}"]
    if peer_python and os.path.exists(peer_python):
        parts.append(f"MXNet oneDNN {probe(peer_python, MXNET_PROBE)('isa:')}")
    return "; ".join(parts)
