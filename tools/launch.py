"""Start a distributed job on several hosts: MXNet's tools/launch.py command line on torch.distributed.

    launch.py -n 2 -H hosts [--launcher ssh|local|mpi|slurm] [--sync-dst-dir DIR] [--env NAME[:VALUE]]
              [--ssh-port P] [--ssh-identity-file F] [--interface IF] [--port P] COMMAND ...

What -n counts: with ssh, mpi and slurm it is the number of worker hosts, taken from the top of the hosts
file (MXNet's -n counted workers, and an MXNet worker was one process per host driving all its devices).
Each host then runs one process per slot: `slots=N` on its line, by default one per CUDA device there, or 1.
With --launcher local, -n is the number of worker processes on this machine.

Workers get torch.distributed's standard environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, GROUP_RANK) so `common.dist.init_from_env()` or `init_process_group("env://")` joins the
group; rank 0 hosts the rendezvous store (a torch TCPStore) on the first host.

Why not torchrun on each host: torchrun starts every worker in its own session, so its workers outlive a
dropped ssh connection or a killed agent. Here a small guard (tools/launch_node.py, sent with the ssh command)
owns each host's workers: it prefixes their lines with the rank, stops them all when one fails, and kills
them when its stdin closes (launcher gone or connection lost); a killed guard takes its workers with it (see
node_guard). So no process is left behind on any host.

--max-restarts N: when a worker fails, every worker is stopped and the whole job started again (at most N
times; a worker's user error, exit status 2, is not retried). Workers see MXTORCH_RESTART_COUNT; a training
command with --load-epoch auto then resumes from the last complete checkpoint.

This file parses the command line; the work is in tools/launchers.py (the --launcher table), launch_job.py (a
running job and its restarts), launch_hosts.py (hosts file, --env) and launch_node.py (what runs on each host).
"""

import argparse
import os
import signal
import sys

if __package__ in (None, ""):  # run as `python tools/launch.py`: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.util import UserError, main_guard  # noqa: E402
from tools.launch_hosts import parse_env  # noqa: E402
from tools.launch_job import run_job  # noqa: E402
from tools.launchers import LAUNCHERS, make_launcher  # noqa: E402


def parse_args(argv):
    """The command line (MXNet's names; -s is accepted and ignored)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="As Unix programs do, a SIGINT or SIGHUP ignored when launch.py starts (a background job of a script, "
        "nohup) stays ignored;\nSIGTERM always stops every worker.\n--p3 and --env-server (MXNet's parameter-server "
        "options) are accepted and ignored, each with one line saying why.",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument(
        "-n",
        "--num-workers",
        type=int,
        required=True,
        help="worker hosts to use (one process per slot on each); with --launcher local: processes",
    )
    p.add_argument("-s", "--num-servers", type=int, help="accepted for MXNet scripts and ignored (no servers)")
    p.add_argument("-H", "--hostfile", help="one host per line: [user@]host[:port] [slots=N]; # comments")
    names = [name + " (default)" * (name == "ssh") for name in LAUNCHERS]
    p.add_argument("--launcher", default="ssh", help=f"{', '.join(names[:-1])} or {names[-1]}")
    p.add_argument("--sync-dst-dir", help="rsync this folder to DIR on every host first and run there")
    p.add_argument(
        "--env",
        "--env-worker",
        action="append",
        default=[],
        help="NAME:VALUE to set for the workers, or NAME to pass this machine's value (repeatable)",
    )
    p.add_argument("--ssh-port", type=int, help="ssh port (a host:port in the hosts file wins)")
    p.add_argument("--ssh-identity-file", help="ssh private key file")
    p.add_argument("--ssh-option", action="append", default=[], help="extra ssh -o OPTION (repeatable)")
    p.add_argument("--interface", help="network card for the rendezvous and the collectives, e.g. eth0")
    p.add_argument("--port", type=int, default=0, help="rendezvous port on the first host (default: a free one)")
    p.add_argument("--timeout", type=int, default=300, help="seconds to wait for every worker to join")
    p.add_argument("--max-restarts", type=int, default=0, help="restart every worker up to N times when one fails")
    p.add_argument(
        "--split-batch",
        action="store_true",
        help="--launcher local: the -n processes are one host's devices and share --batch-size (what --gpus 0,1\n"
        "and --num-workers N start); without it each is one worker training --batch-size, as in MXNet",
    )
    p.add_argument("--p3", action="store_true", help="accepted for MXNet scripts (see below)")
    p.add_argument("--env-server", action="append", default=[], help="accepted for MXNet scripts (see below)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command each worker runs")
    return p.parse_args(argv)


@main_guard
def main(argv=None):
    """Check the hosts, start the workers, relay their output, and stop everything when one fails."""
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the workers in order, as for Ctrl-C
        if sig == signal.SIGTERM or signal.getsignal(sig) != signal.SIG_IGN:  # nohup's ignore stays (see --help)
            signal.signal(sig, signal.default_int_handler)
    if not args.command:
        raise UserError("no command given; usage: launch.py -n N -H hosts COMMAND ...")
    if args.num_workers < 1:
        raise UserError(f"-n {args.num_workers}: the number of workers must be at least 1")
    if args.max_restarts < 0:
        raise UserError(f"--max-restarts {args.max_restarts}: must be 0 or more")
    env = parse_env(args.env)
    if args.num_servers is not None:
        print("launch.py: -s/--num-servers ignored: torch.distributed has no parameter servers", file=sys.stderr)
    if args.p3:
        print(
            "launch.py: --p3 ignored: DDP already overlaps each gradient bucket's all-reduce with the rest of "
            "backward, which is what MXNet's priority propagation (P3) did for parameter servers",
            file=sys.stderr,
        )
    if args.env_server:
        print(
            "launch.py: --env-server ignored: there are no parameter servers; --env sets the workers' environment",
            file=sys.stderr,
        )
    run_job(args, make_launcher(args, env))


if __name__ == "__main__":
    main()
