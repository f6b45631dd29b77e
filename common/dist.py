"""Worker side of tools/launch.py: join the torch.distributed group described by the environment.

The launcher (or torchrun) sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and LOCAL_RANK; rank 0 hosts the
rendezvous store (torch's TCPStore) and waits for every rank to check in, so a rank that never joins is named
with its host (tools/launch.py passes MXTORCH_HOSTS, one host per rank) instead of a bare timeout.
"""

import datetime
import os
import socket

import torch
import torch.distributed as dist

from common.util import UserError, choice_error

BACKENDS = ("gloo", "nccl")
JOINED = "mxtorch/joined/"


def _env_int(name):
    try:
        return int(os.environ[name])
    except KeyError:
        raise UserError(f"{name} is not set: start distributed runs with tools/launch.py (or torchrun)") from None
    except ValueError:
        raise UserError(f"{name}={os.environ[name]!r} is not an integer") from None


def init_from_env(backend=None):
    """Join the process group (Gloo on CPU, NCCL with CUDA); return (rank, world_size, local_rank)."""
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), int(os.environ.get("LOCAL_RANK", 0))
    addr, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), _env_int("MASTER_PORT")
    secs = float(os.environ.get("MXTORCH_RDZV_TIMEOUT", 300))
    timeout = datetime.timedelta(seconds=secs)
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in BACKENDS:
        raise choice_error("backend", backend, BACKENDS)
    if backend == "nccl":
        torch.cuda.set_device(local)
    try:
        store = dist.TCPStore(addr, port, world, is_master=rank == 0, timeout=timeout, wait_for_workers=False)
    except (RuntimeError, OSError) as err:  # DistNetworkError and DistStoreError derive from RuntimeError
        raise UserError(f"rank {rank} cannot reach the rendezvous {addr}:{port} within {secs:g} s: {err}") from None
    store.set(f"{JOINED}{rank}", socket.gethostname())
    if rank == 0:
        _wait_for_ranks(store, world, timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    return rank, world, local


def _wait_for_ranks(store, world, timeout):
    """On rank 0: wait until every rank has checked in, or name the ranks (and hosts) that never did."""
    keys = [f"{JOINED}{r}" for r in range(world)]
    try:
        store.wait(keys, timeout)
    except RuntimeError:
        hosts = os.environ.get("MXTORCH_HOSTS", "").split(",")
        missing = [r for r in range(world) if not store.check([keys[r]])]
        named = [f"rank {r}" + (f" (host {hosts[r]})" if r < len(hosts) and hosts[r] else "") for r in missing]
        secs = timeout.total_seconds()
        raise UserError(f"rendezvous timed out after {secs:g} s: {', '.join(named)} never joined") from None


def is_rank0():
    """True on rank 0, or when no process group is running."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier():
    """Wait for every rank (no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def cleanup():
    """Leave the process group (no-op without one)."""
    if dist.is_initialized():
        dist.destroy_process_group()
