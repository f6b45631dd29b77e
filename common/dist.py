"""Worker side of tools/launch.py: the device of this process, and the torch.distributed group it joins.

The launcher (or torchrun) sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and LOCAL_RANK; rank 0 hosts the
rendezvous store (torch's TCPStore) and waits for every rank to check in, so a rank that never joins is named
with its host (tools/launch.py passes MXTORCH_HOSTS, one host per rank) instead of a bare timeout.

--kv-store maps onto this as follows (there are no parameter servers; every kind is synchronous all-reduce):
  local, device       one host; several devices in --gpus (or --num-workers N on the CPU) start one worker
                      process per device through tools/launch.py --launcher local
  dist_sync, dist_device_sync, dist_sync_device, horovod
                      one job over the hosts of tools/launch.py (or torchrun, mpirun with launch.py's shim)
  nccl                as dist_sync, but NCCL is required (GPUs only)
  dist_async          refused: see ASYNC_REFUSED
--batch-size keeps MXNet's meaning: the batch of one host (an MXNet worker), split evenly over its processes.
"""

import datetime
import logging
import os
import socket
import subprocess
import sys
import types

import torch
import torch.distributed as dist

from common.util import UserError, choice_error

BACKENDS = ("gloo", "nccl")
JOINED = "mxtorch/joined/"
LEFT = "mxtorch/left/"
_STORE = {}  # this process's rendezvous store while in a group (init_from_env), for cleanup()
KV_LOCAL = ("local", "device")
KV_DIST = ("dist_sync", "dist_device_sync", "dist_sync_device", "horovod", "nccl")
KV_STORES = KV_LOCAL + KV_DIST + ("dist_async",)
ASYNC_REFUSED = (
    "--kv-store dist_async is not offered: asynchronous training needs parameter servers, which torch.distributed "
    "does not have (and stale gradients change the results); use dist_sync"
)


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
    _STORE.update(store=store, rank=rank, world=world)  # cleanup() lets the store's host (rank 0) leave last
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
    """Leave the process group together with every rank (no-op without one).

    Without the barrier a rank tears down its Gloo connections while rank 0 still saves the last checkpoint. And
    rank 0 hosts the rendezvous store (a TCP server) that every rank's process group keeps a client of: were rank
    0 to exit first, a rank still tearing its group down would lose its store connection, an error in a C++
    thread, which ends the process with SIGABRT ("terminate called without an active exception") after training
    has finished. So each other rank says it has left, and rank 0 waits for that before its store goes away.
    """
    if not dist.is_initialized():
        return
    dist.barrier()
    dist.destroy_process_group()
    store, rank, world = _STORE.pop("store", None), _STORE.pop("rank", 0), _STORE.pop("world", 1)
    if store is None:
        return
    try:
        if rank:
            store.set(f"{LEFT}{rank}", "1")
        else:
            store.wait([f"{LEFT}{r}" for r in range(1, world)], datetime.timedelta(seconds=60))
    except RuntimeError:  # a rank that died already: nothing to wait for
        pass


def all_reduce_sum(tensor):
    """Sum tensor over every rank in place (no-op without a process group); returns it."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def from_rank0(make):
    """Call make() on rank 0 only and hand its result to every rank (plain call without a process group)."""
    if not dist.is_initialized():
        return make()
    box = [make() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _launched():
    """Whether a launcher (tools/launch.py, torchrun) started this process as one rank of a job."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def local_workers(args):
    """How many worker processes this command asks for on this host: one per --gpus device, or --num-workers.

    Checks --kv-store, --gpus and --num-workers. Above 1 (and not launched already), the entry script starts them:
    `sys.exit(dist.spawn_local(count))`; a process a launcher started is one worker and returns 1.
    """
    kind = args.kv_store
    if kind == "dist_async":
        raise UserError(ASYNC_REFUSED)
    if kind not in KV_STORES:
        raise choice_error("--kv-store", kind, KV_STORES)
    if not _launched() and kind in KV_DIST:
        raise UserError(
            f"--kv-store {kind} runs under tools/launch.py (RANK and WORLD_SIZE are not set): "
            f"launch.py -n HOSTS -H hostfile python {os.path.basename(sys.argv[0])} ..."
        )
    if getattr(args, "num_workers", 1) < 1:
        raise UserError(f"--num-workers {args.num_workers}: the number of worker processes must be at least 1")
    devices = gpu_ids(args.gpus)
    if devices and not torch.cuda.is_available():  # said once, before any worker starts
        raise UserError(f"--gpus {args.gpus}: no CUDA GPU is available here; pass --gpus '' to train on the CPU")
    count = len(devices) or getattr(args, "num_workers", 1) or 1
    if devices and count > 1 and getattr(args, "num_workers", 1) not in (1, count):
        raise UserError(f"--num-workers {args.num_workers} with --gpus {args.gpus}: one worker runs per GPU")
    return 1 if _launched() else count


def gpu_ids(gpus):
    """The GPU numbers --gpus names (as strings); auto: every visible GPU, none when there is none."""
    if (gpus or "").strip() == "auto":
        return [str(i) for i in range(torch.cuda.device_count())]
    return [g for g in (gpus or "").split(",") if g.strip()]


def get_device(gpus, local_rank=0, local_size=1):
    """--gpus '' or unset is the CPU; otherwise this process's GPU: entry local_rank of the list (auto: all)."""
    ids = gpu_ids(gpus)
    if not ids:
        if (gpus or "").strip() == "auto" and local_rank == 0:
            logging.info("--gpus auto: no CUDA GPU is visible here; training on the CPU")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--gpus {gpus}: no CUDA GPU is available here; pass --gpus '' to train on the CPU")
    if len(ids) != local_size:
        raise UserError(f"--gpus {gpus}: {len(ids)} GPUs for {local_size} process(es) here; one GPU drives one process")
    try:
        gpu = int(ids[local_rank])
    except ValueError:
        raise UserError(f"--gpus {gpus}: {ids[local_rank]!r} is not a GPU number") from None
    if gpu >= torch.cuda.device_count():
        raise UserError(
            f"--gpus {gpus}: there are {torch.cuda.device_count()} GPUs (0..{torch.cuda.device_count() - 1})"
        )
    return torch.device("cuda", gpu)


def get_kv(args):
    """Join the job --kv-store asks for; return rank, num_workers, local_rank, local_size, num_hosts and share
    (the processes that split --batch-size)."""
    kind, launched, count = args.kv_store, _launched(), local_workers(args)
    if count > 1:  # starting them is the entry script's job (spawn_local); fit() never becomes a launcher
        raise UserError(
            f"--gpus/--num-workers ask for {count} worker processes on this host, but no launcher started this one; "
            f"run it as tools/launch.py --launcher local -n {count} python {os.path.basename(sys.argv[0])} ..."
        )
    devices = [g for g in (args.gpus or "").split(",") if g.strip()]
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched else 1
    # how many processes share --batch-size: a host's (its devices), or 1 under MXNet's local launcher meaning
    share = 1 if os.environ.get("MXTORCH_BATCH_PER_PROCESS") == "1" else local_size
    if args.batch_size % share:
        raise UserError(
            f"--batch-size {args.batch_size} is the batch of one host and must split evenly over its "
            f"{share} worker processes"
        )
    if launched and not devices and local_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        # CPU workers share this host's cores: without this each would start a thread per core (as torchrun)
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local_size))
    if kind == "nccl" and not devices:
        raise UserError("--kv-store nccl needs GPUs (--gpus 0,1,...); on the CPU use dist_sync (Gloo)")
    rank, world, local = 0, 1, 0
    if launched and not dist.is_initialized():
        rank, world, local = init_from_env("nccl" if devices else "gloo")
    elif dist.is_initialized():
        rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    hosts = int(os.environ.get("GROUP_WORLD_SIZE", max(world // local_size, 1))) if launched else 1
    return types.SimpleNamespace(
        type=kind, rank=rank, num_workers=world, local_rank=local, local_size=local_size, num_hosts=hosts, share=share
    )


def spawn_local(count):
    """Re-run this command line as `count` workers under tools/launch.py --launcher local; return their status.

    The entry script calls it (and exits with the status) when local_workers(args) > 1: this process then only
    waits, and the launcher stops every worker in order on Ctrl-C.
    """
    launch = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "launch.py")
    cmd = [sys.executable, launch, "--launcher", "local", "-n", str(count), "--split-batch"]
    cmd += [sys.executable, *sys.orig_argv[1:]]  # this host's devices share --batch-size
    proc = subprocess.Popen(cmd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the launcher got the Ctrl-C too and stops the workers in order
            continue
