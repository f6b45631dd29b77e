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
them when its stdin closes (launcher gone or connection lost), so no process is left behind on any host.

--max-restarts N: when a worker fails, every worker is stopped and the whole job started again (at most N
times; a worker's user error, exit status 2, is not retried). Workers see MXTORCH_RESTART_COUNT; a training
command with --load-epoch auto then resumes from the last complete checkpoint.
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

if __package__ in (None, ""):  # run as `python tools/launch.py`: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.util import UserError, choice_error, main_guard  # noqa: E402
from tools.launch_node import Ssh, node_guard, preflight, python_code, sync_dir  # noqa: E402

LAUNCHERS = ("ssh", "local", "mpi", "slurm")
SETTLE_S = 1.0  # after a first failure, collect the others for this long before naming the culprit


@dataclass
class Host:
    """One line of the hosts file."""

    name: str
    user: str | None
    port: int | None
    slots: int | None
    line: int

    @property
    def target(self):
        """The ssh destination, user@name or name."""
        return f"{self.user}@{self.name}" if self.user else self.name


HOST_RE = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<name>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d+))?$")


def read_hosts(path):
    """Parse MXNet's hosts file: `[user@]host[:port] [slots=N]` per line, `#` comments; errors name the line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read hosts file {path}: {err}") from None
    hosts, seen = [], {}
    for num, raw in enumerate(lines, 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        m = HOST_RE.match(words[0])
        if not m:
            raise UserError(f"{path}:{num}: bad host {words[0]!r}; expected [user@]host[:port] [slots=N]")
        slots = None
        for word in words[1:]:
            key, _, value = word.partition("=")
            if key not in ("slots", "max_slots") or not value.isdigit() or int(value) < 1:
                raise UserError(f"{path}:{num}: bad field {word!r}; expected slots=N with N >= 1")
            slots = slots or int(value)
        name = m["name"].strip("[]")
        if name in seen:
            raise UserError(f"{path}:{num}: host {name} is already on line {seen[name]}; use slots=N instead")
        seen[name] = num
        hosts.append(Host(name, m["user"], int(m["port"]) if m["port"] else None, slots, num))
    if not hosts:
        raise UserError(f"hosts file {path} has no host (line 1 onwards is empty or comments); one host per line")
    return hosts


def parse_env(pairs):
    """Turn --env NAME:VALUE (set) and --env NAME (pass this machine's value) into a dict."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UserError(f"--env {pair!r}: expected NAME:VALUE or NAME")
        if not sep:
            if name not in os.environ:
                raise UserError(f"--env {name}: {name} is not set here; pass it as {name}:VALUE")
            value = os.environ[name]
        env[name] = value
    return env


def local_port(port):
    """Check that port is free on this machine (or pick a free one when port is 0); return it."""
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            raise UserError(f"port {port} is already in use on this machine; pick another with --port") from None
        return s.getsockname()[1]


class Job:
    """The running guards (one per host): relays their lines, notices failures, stops them all."""

    def __init__(self, nodes):
        self.nodes = nodes  # [(host label, Popen of ssh or of a local guard)]
        self.failures, self.lost, self.lock, self.threads, self.last = [], [], threading.Lock(), [], {}
        for label, proc in nodes:
            for stream in (proc.stdout, proc.stderr):
                self.threads.append(threading.Thread(target=self._relay, args=(label, stream), daemon=True))
                self.threads[-1].start()

    def _relay(self, label, stream):
        for raw in iter(stream.readline, b""):
            tag, tab, text = raw.decode(errors="replace").rstrip("\r\n").partition("\t")
            if tag == "!" and tab:
                rank, _, code = text.partition("\t")
                with self.lock:
                    self.failures.append((time.monotonic(), label, int(rank), int(code)))
                continue
            if tab and tag.isdigit():
                line = f"[{label} rank {tag}] {text}"
                self.last[label, int(tag)] = text
            else:  # the guard's own notes ("-") and ssh's messages
                line = f"[{label}] {text if tab and tag == '-' else (tag + tab + text)}"
            with self.lock:
                print(line, flush=True)

    def wait(self):
        """Wait until all guards end or one fails; then stop the rest. Return an error line or None."""
        first = None
        while any(p.poll() is None for _, p in self.nodes):
            if first is None:
                self.lost = [(label, p.returncode) for label, p in self.nodes if p.returncode]
                first = time.monotonic() if self.failures or self.lost else None
            elif time.monotonic() - first > SETTLE_S:
                break
            time.sleep(0.05)
        if first is None:  # every guard ended by itself
            self.lost = [(label, p.returncode) for label, p in self.nodes if p.returncode]
        self.stop()
        return self.verdict()

    def stop(self, interrupt=False):
        """Ask every guard to stop its workers (Ctrl-C forwarded as SIGINT), then end the connections."""
        for _, proc in self.nodes:
            try:
                if interrupt:
                    proc.stdin.write(b"int\n")
                proc.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + 8
        for _, proc in self.nodes:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self.threads:
            t.join(timeout=2)

    def verdict(self):
        """Name the host and rank that failed first (a worker killed by a signal outranks its peers' errors)."""
        failed = sorted(self.failures, key=lambda f: (f[3] >= 0, f[0]))
        self.culprit_code = failed[0][3] if failed else None
        if failed:
            _, label, rank, code = failed[0]
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            others = sorted({f"rank {r} on {lbl}" for _, lbl, r, _ in failed[1:]})
            said = f"; its last line: {self.last[label, rank]}" if (label, rank) in self.last else ""
            return f"rank {rank} on host {label} {how}" + (f" (then: {', '.join(others)})" if others else "") + said
        if self.lost:
            label, code = self.lost[0]
            why = "lost the ssh connection" if code == 255 else f"exit status {code}"
            return f"host {label} failed ({why})"
        return None


def start_nodes(args, hosts, master, port, slots, cwd, ssh):
    """Start one guard per host (over ssh, or locally for --launcher local); return the Job."""
    world, base, nodes = sum(slots), 0, []
    env = {
        "MASTER_ADDR": master,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        "GROUP_WORLD_SIZE": str(len(hosts)),
        "DMLC_ROLE": "worker",
        "DMLC_NUM_WORKER": str(world),
        "DMLC_NUM_SERVER": "0",
        "PYTHONUNBUFFERED": "1",
        "MXTORCH_RDZV_TIMEOUT": str(args.timeout),
        "MXTORCH_HOSTS": ",".join(h.name for h, s in zip(hosts, slots) for _ in range(s)),
    }
    if args.interface:
        env["GLOO_SOCKET_IFNAME"] = env["NCCL_SOCKET_IFNAME"] = args.interface
    env.update(args.env_vars)
    for i, (host, n) in enumerate(zip(hosts, slots)):
        spec = {
            "cmd": args.command,
            "ranks": list(range(base, base + n)),
            "grace": 5,
            "path": os.path.dirname(sys.executable),
            "env": dict(env, GROUP_RANK=str(i), LOCAL_WORLD_SIZE=str(n)),
        }
        base += n
        argv = [sys.executable, "-c", python_code(node_guard, spec)]
        if ssh:
            argv = ssh.argv(host, f"cd {shlex.quote(cwd)} && exec {shlex.join(argv)}")
        # a session of its own: Ctrl-C reaches only the launcher, which forwards it in order
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        nodes.append((host.name, subprocess.Popen(argv, cwd=None if ssh else cwd, start_new_session=True, **pipes)))
    return Job(nodes)


def batch_command(args, hosts):
    """The mpirun or srun command line that starts the job under that scheduler."""
    tool = {"mpi": "mpirun", "slurm": "srun"}[args.launcher]
    if not shutil.which(tool):
        raise UserError(f"--launcher {args.launcher} needs {tool}, which is not installed here")
    shim = (
        "import os,sys;e=os.environ;g=lambda *k:next(e[x] for x in k if x in e);"
        "e.update(RANK=g('OMPI_COMM_WORLD_RANK','PMI_RANK','SLURM_PROCID'),"
        "LOCAL_RANK=g('OMPI_COMM_WORLD_LOCAL_RANK','MPI_LOCALRANKID','SLURM_LOCALID'),"
        "WORLD_SIZE=g('OMPI_COMM_WORLD_SIZE','PMI_SIZE','SLURM_NTASKS'));os.execvp(sys.argv[1],sys.argv[1:])"
    )
    port = str(args.port or 29500)
    if args.launcher == "mpi":
        master = hosts[0].name
        spread = ",".join(f"{h.name}:{h.slots or 1}" for h in hosts[: args.num_workers])
        env = ["-x", f"MASTER_ADDR={master}", "-x", f"MASTER_PORT={port}"]
        env += [w for k, v in args.env_vars.items() for w in ("-x", f"{k}={v}")]
        return [tool, "-H", spread, *env, sys.executable, "-c", shim, *args.command]
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if not hosts and not nodelist:
        raise UserError("--launcher slurm runs inside an allocation (salloc or sbatch) or needs -H FILE")
    if hosts:
        master, where = hosts[0].name, [f"--nodelist={','.join(h.name for h in hosts)}"]
    else:
        names = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True).stdout
        master, where = (names.split() or ["localhost"])[0], []
    os.environ.update(MASTER_ADDR=master, MASTER_PORT=port, **args.env_vars)
    return [tool, f"--nodes={args.num_workers}", *where, sys.executable, "-c", shim, *args.command]


def parse_args(argv):
    """The command line (MXNet's names; -s is accepted and ignored)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "-n",
        "--num-workers",
        type=int,
        required=True,
        help="worker hosts to use (one process per slot on each); with --launcher local: processes",
    )
    p.add_argument("-s", "--num-servers", type=int, help="accepted for MXNet scripts and ignored (no servers)")
    p.add_argument("-H", "--hostfile", help="one host per line: [user@]host[:port] [slots=N]; # comments")
    p.add_argument("--launcher", default="ssh", help="ssh (default), local, mpi or slurm")
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
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command each worker runs")
    return p.parse_args(argv)


@main_guard
def main(argv=None):
    """Check the hosts, start the workers, relay their output, and stop everything when one fails."""
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the workers in order, as for Ctrl-C
        signal.signal(sig, signal.default_int_handler)
    if not args.command:
        raise UserError("no command given; usage: launch.py -n N -H hosts COMMAND ...")
    if args.num_workers < 1:
        raise UserError(f"-n {args.num_workers}: the number of workers must be at least 1")
    if args.max_restarts < 0:
        raise UserError(f"--max-restarts {args.max_restarts}: must be 0 or more")
    args.env_vars = parse_env(args.env)
    if args.num_servers is not None:
        print("launch.py: -s/--num-servers ignored: torch.distributed has no parameter servers", file=sys.stderr)
    if args.launcher not in LAUNCHERS:
        raise choice_error("--launcher", args.launcher, LAUNCHERS)
    cwd, ssh = os.getcwd(), None
    if args.launcher == "local":
        master = "127.0.0.1"
        hosts, slots = [Host("localhost", None, None, args.num_workers, 0)], [args.num_workers]
        port = local_port(args.port)
    else:
        if not args.hostfile and args.launcher != "slurm":
            raise UserError(f"--launcher {args.launcher} needs a hosts file (-H FILE), or use --launcher local")
        hosts = read_hosts(args.hostfile) if args.hostfile else []
        if hosts and args.num_workers > len(hosts):
            slots = sum(h.slots or 1 for h in hosts)
            raise UserError(
                f"-n {args.num_workers} asks for more worker hosts than the {len(hosts)} in "
                f"{args.hostfile} ({slots} slots; -n counts hosts, slots=N sets processes per host)"
            )
        hosts = hosts[: args.num_workers]
        if args.launcher != "ssh":
            cmd = batch_command(args, hosts)
            print("launch.py: " + shlex.join(cmd), file=sys.stderr, flush=True)
            os.execvp(cmd[0], cmd)
        ssh = Ssh(args)
        if args.sync_dst_dir:
            sync_dir(ssh, hosts, args.sync_dst_dir)
            cwd = args.sync_dst_dir
        master, port, slots = preflight(args, ssh, hosts, cwd)
    run_with_restarts(args, hosts, (master, port, slots), cwd, ssh)


def run_with_restarts(args, hosts, place, cwd, ssh):
    """Run the job; when a worker fails, stop all and start again up to --max-restarts times."""
    if args.max_restarts and not any(w.startswith("--load-epoch") for w in args.command):
        print("launch.py: note: without --load-epoch auto a restarted job trains from the start", file=sys.stderr)
    for attempt in range(args.max_restarts + 1):
        if attempt:  # a fresh port (and, over ssh, fresh host checks: a host may be gone for good)
            place = preflight(args, ssh, hosts, cwd) if ssh else ("127.0.0.1", local_port(args.port), place[2])
        master, port, slots = place
        print(f"launch.py: coordinator {master}:{port}, {sum(slots)} workers on {len(hosts)} hosts", flush=True)
        args.env_vars["MXTORCH_RESTART_COUNT"] = str(attempt)
        job = start_nodes(args, hosts, master, port, slots, cwd, ssh)
        try:
            error = job.wait()
        except KeyboardInterrupt:
            job.stop(interrupt=True)
            raise
        if not error:
            return
        if attempt == args.max_restarts or job.culprit_code == 2:  # a user error fails again the same way
            break
        print(f"launch.py: {error}; restarting all workers ({attempt + 1} of {args.max_restarts})", flush=True)
    print(f"launch.py: error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
