"""A running tools/launch.py job: one guard per host started, their lines relayed, the failure named, restarts.

run_job drives any launcher of tools/launchers.py: setup once, then preflight and start for each attempt.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from typing import NamedTuple

from tools.launch_node import node_guard, python_code

SETTLE_S = 1.0  # after a first failure, collect the others for this long before naming the culprit


class Place(NamedTuple):
    """Where an attempt runs: the coordinator (rank 0's host and rendezvous port) and the processes per host."""

    master: str | None
    port: int
    slots: list[int] | None


class Job:
    """The running guards (one per host): relays their lines, notices failures, stops them all."""

    def __init__(self, nodes, ranks):
        self.nodes = nodes  # [(host label, Popen of ssh or of a local guard)]
        self.ranks = ranks  # host label -> the ranks its guard runs
        self.failures, self.lost, self.lock, self.threads, self.last = [], [], threading.Lock(), [], {}
        self.culprit_code = None
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
        while None in [p.poll() for _, p in self.nodes]:  # poll every guard: one may be gone while others run
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
            why = f"its guard was killed by {signal.Signals(-code).name}" if code < 0 else why
            ranks = ", ".join(map(str, self.ranks[label]))
            return f"host {label} failed ({why}); its workers (rank {ranks}) were stopped with it"
        return None


def worker_env(args, env_vars, hosts, place):
    """What every worker's environment gets: torch.distributed's variables, MXNet's DMLC_* ones, the --env pairs."""
    world = sum(place.slots)
    env = {
        "MASTER_ADDR": place.master,
        "MASTER_PORT": str(place.port),
        "WORLD_SIZE": str(world),
        "GROUP_WORLD_SIZE": str(len(hosts)),
        "DMLC_ROLE": "worker",
        "DMLC_NUM_WORKER": str(world),
        "DMLC_NUM_SERVER": "0",
        "PYTHONUNBUFFERED": "1",
        "MXTORCH_RDZV_TIMEOUT": str(args.timeout),
        "MXTORCH_HOSTS": ",".join(h.name for h, s in zip(hosts, place.slots) for _ in range(s)),
    }
    if args.interface:
        env["GLOO_SOCKET_IFNAME"] = env["NCCL_SOCKET_IFNAME"] = args.interface
    return dict(env, **env_vars)


def start_guards(args, env_vars, hosts, place, guard_argv):
    """Start one guard per host, run as guard_argv(host, argv) says (over ssh or here); return the Job."""
    env, base, nodes, ranks = worker_env(args, env_vars, hosts, place), 0, [], {}
    for i, (host, n) in enumerate(zip(hosts, place.slots)):
        spec = {
            "cmd": args.command,
            "ranks": list(range(base, base + n)),
            "grace": 5,
            "path": os.path.dirname(sys.executable),
            "env": dict(env, GROUP_RANK=str(i), LOCAL_WORLD_SIZE=str(n)),
        }
        base += n
        ranks[host.name] = spec["ranks"]
        argv, cwd = guard_argv(host, [sys.executable, "-c", python_code(node_guard, spec)])
        # a session of its own: Ctrl-C reaches only the launcher, which forwards it in order
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        nodes.append((host.name, subprocess.Popen(argv, cwd=cwd, start_new_session=True, **pipes)))
    return Job(nodes, ranks)


def run_job(args, launcher):
    """Run the job with launcher; when a worker fails, stop all and start again up to --max-restarts times."""
    hosts = launcher.setup()
    place = launcher.preflight(hosts)
    if not launcher.supervises:  # a scheduler's command takes this process over
        return launcher.start(hosts, place, 0)
    if args.max_restarts and not any(w.startswith("--load-epoch") for w in args.command):
        print("launch.py: note: without --load-epoch auto a restarted job trains from the start", file=sys.stderr)
    for attempt in range(args.max_restarts + 1):
        if attempt:  # a fresh port (and, over ssh, fresh host checks: a host may be gone for good)
            place = launcher.preflight(hosts)
        master, port, slots = place
        print(f"launch.py: coordinator {master}:{port}, {sum(slots)} workers on {len(hosts)} hosts", flush=True)
        job = launcher.start(hosts, place, attempt)
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
