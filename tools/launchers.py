"""The --launcher table of tools/launch.py: one class per way of starting the workers, one interface for all.

A launcher is driven by tools/launch_job.run_job in this order:
    hosts = setup()                          read and check the hosts; one-time work (ssh: key, --sync-dst-dir)
    place = preflight(hosts)                 checks before each attempt; the coordinator and processes per host
    start(hosts, place, attempt)             start the workers: a Job of per-host guards, or exec a scheduler
    supervises                               True: start() returns a Job that is watched and restarted;
                                             False: start() hands this process to mpirun or srun (no restarts)
Adding a launcher is a class here and a line in LAUNCHERS.
"""

import os
import shlex
import shutil
import subprocess
import sys

from common.util import UserError, choice_error
from tools.launch_hosts import Host, local_port, pick_hosts
from tools.launch_job import Place, start_guards
from tools.launch_node import Ssh, preflight, sync_dir

# run by mpirun or srun on each process: map the scheduler's rank variables to torch.distributed's, then exec
SHIM = (
    "import os,sys;e=os.environ;g=lambda *k:next(e[x] for x in k if x in e);"
    "e.update(RANK=g('OMPI_COMM_WORLD_RANK','PMI_RANK','SLURM_PROCID'),"
    "LOCAL_RANK=g('OMPI_COMM_WORLD_LOCAL_RANK','MPI_LOCALRANKID','SLURM_LOCALID'),"
    "WORLD_SIZE=g('OMPI_COMM_WORLD_SIZE','PMI_SIZE','SLURM_NTASKS'));os.execvp(sys.argv[1],sys.argv[1:])"
)


class Launcher:
    """The interface (see the module docstring); by default one guard per host from the -H file."""

    supervises = True
    needs_hostfile = True

    def __init__(self, args, env):
        self.args, self.env, self.cwd = args, env, os.getcwd()

    def setup(self):
        """Read and check the hosts the job runs on (the first -n of -H); return them."""
        return pick_hosts(self.args, self.needs_hostfile)

    def preflight(self, hosts):
        """Check what each attempt needs; return its Place."""
        raise NotImplementedError

    def start(self, hosts, place, attempt):
        """Start one guard per host (it owns that host's workers); return the Job that watches them."""
        env = dict(self.env, MXTORCH_RESTART_COUNT=str(attempt))
        return start_guards(self.args, env, hosts, place, self.guard_argv)

    def guard_argv(self, host, argv):
        """The command line and folder (None: the remote one) that run the guard program argv on host."""
        raise NotImplementedError


class LocalLauncher(Launcher):
    """-n worker processes on this machine, under one local guard."""

    def setup(self):
        """This machine, as one host with -n slots; each an MXNet worker training --batch-size, or --split-batch."""
        if not self.args.split_batch:  # MXNet's local launcher ran -n workers, each training --batch-size
            self.env = dict(self.env, MXTORCH_BATCH_PER_PROCESS="1")
        return [Host("localhost", None, None, self.args.num_workers, 0)]

    def preflight(self, hosts):
        """A free rendezvous port here (the --port one, checked)."""
        return Place("127.0.0.1", local_port(self.args.port), [self.args.num_workers])

    def guard_argv(self, host, argv):
        """The guard runs here, in this folder."""
        return argv, self.cwd


class SshLauncher(Launcher):
    """One guard per host over ssh; each host checked before every attempt."""

    def setup(self):
        """The hosts of -H; then the ssh options are checked and --sync-dst-dir copied to every host."""
        hosts = super().setup()
        self.ssh = Ssh(self.args)
        if self.args.sync_dst_dir:
            sync_dir(self.ssh, hosts, self.args.sync_dst_dir)
            self.cwd = self.args.sync_dst_dir
        return hosts

    def preflight(self, hosts):
        """Every host reachable with this Python and torch, the folder there, the rendezvous port open."""
        return Place(*preflight(self.args, self.ssh, hosts, self.cwd))

    def guard_argv(self, host, argv):
        """ssh to host, change to the job's folder there, and run the guard."""
        return self.ssh.argv(host, f"cd {shlex.quote(self.cwd)} && exec {shlex.join(argv)}"), None


class BatchLauncher(Launcher):
    """A scheduler's command (self.tool) starts every process; this process becomes that command."""

    supervises = False
    tool = ""

    def preflight(self, hosts):
        """The scheduler's tool is installed; the coordinator is the first host, on --port or 29500."""
        if not shutil.which(self.tool):
            raise UserError(f"--launcher {self.args.launcher} needs {self.tool}, which is not installed here")
        return Place(hosts[0].name if hosts else None, self.args.port or 29500, None)

    def start(self, hosts, place, attempt):
        """Show the scheduler's command line on stderr and exec it (no return)."""
        cmd = self.command(hosts, place)
        print("launch.py: " + shlex.join(cmd), file=sys.stderr, flush=True)
        os.execvp(cmd[0], cmd)

    def command(self, hosts, place):
        """The scheduler's command line that starts the job."""
        raise NotImplementedError


class MpiLauncher(BatchLauncher):
    """mpirun over the hosts of -H, slots=N processes on each."""

    tool = "mpirun"

    def command(self, hosts, place):
        """mpirun -H host:slots,... -x VARS python -c SHIM COMMAND."""
        spread = ",".join(f"{h.name}:{h.slots or 1}" for h in hosts)
        env = ["-x", f"MASTER_ADDR={place.master}", "-x", f"MASTER_PORT={place.port}"]
        env += [w for k, v in self.env.items() for w in ("-x", f"{k}={v}")]
        return [self.tool, "-H", spread, *env, sys.executable, "-c", SHIM, *self.args.command]


class SlurmLauncher(BatchLauncher):
    """srun inside a Slurm allocation, or over the hosts of -H."""

    tool = "srun"
    needs_hostfile = False

    def preflight(self, hosts):
        """As for any scheduler; without -H the allocation's first node is the coordinator."""
        place = super().preflight(hosts)
        if hosts:
            return place
        nodelist = os.environ.get("SLURM_JOB_NODELIST")
        if not nodelist:
            raise UserError("--launcher slurm runs inside an allocation (salloc or sbatch) or needs -H FILE")
        names = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True).stdout
        return place._replace(master=(names.split() or ["localhost"])[0])

    def command(self, hosts, place):
        """srun --nodes=N [--nodelist=...] python -c SHIM COMMAND, with the coordinator in the environment."""
        where = [f"--nodelist={','.join(h.name for h in hosts)}"] if hosts else []
        os.environ.update(MASTER_ADDR=place.master, MASTER_PORT=str(place.port), **self.env)
        return [self.tool, f"--nodes={self.args.num_workers}", *where, sys.executable, "-c", SHIM, *self.args.command]


LAUNCHERS = {"ssh": SshLauncher, "local": LocalLauncher, "mpi": MpiLauncher, "slurm": SlurmLauncher}


def make_launcher(args, env):
    """The launcher that --launcher names, given the --env pairs; an unknown name lists the valid ones."""
    if args.launcher not in LAUNCHERS:
        raise choice_error("--launcher", args.launcher, LAUNCHERS)
    return LAUNCHERS[args.launcher](args, env)
