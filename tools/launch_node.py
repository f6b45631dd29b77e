"""Host-side part of tools/launch.py: what runs on the hosts and the ssh checks before a job starts.

node_guard (one host's workers) and host_probe (the pre-flight answers) are sent as `python -c` source over
ssh, so they import everything they use inside themselves and nothing of this repository.
"""

import concurrent.futures
import importlib.metadata
import inspect
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading

from common.util import UserError

PROBE_TIMEOUT_S = 9  # an unreachable host or refused login is named within 10 s


# node_guard and host_probe are one function each on purpose: python_code sends a function's own source to the
# host (inspect.getsource), so every helper they use has to live inside them.
def node_guard(spec):
    """Run one host's workers (sent to the host as source): prefixed output, stop all on failure or stdin EOF."""
    import ctypes
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    lock, stop = threading.Lock(), {"sig": None, "at": None}
    guard_pid, prctl = os.getpid(), getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    # The workers must die with this guard, even when it is killed with SIGKILL (no handler runs then): each
    # worker asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), and a reaper process
    # holds the read end of a pipe only this guard writes to: EOF without "done" means the guard is gone, and
    # the reaper kills every worker's group, the helpers a worker started included.
    reaper_code = (
        "import os, signal, sys\n"
        "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\n"
        "groups = []\n"
        "for line in sys.stdin:\n"
        "    if line.strip() == 'done':\n        sys.exit(0)\n"
        "    groups.append(int(line))\n"
        "for g in groups:\n"
        "    try:\n        os.killpg(g, signal.SIGKILL)\n    except OSError:\n        pass\n"
    )
    reaper = subprocess.Popen(
        [sys.executable, "-c", reaper_code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
    )

    def tell_reaper(word):
        try:
            reaper.stdin.write(f"{word}\n".encode())
            reaper.stdin.flush()
        except OSError:
            pass

    def own_group():  # in each worker, between fork and exec
        os.setpgrp()
        if prctl is not None:
            prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != guard_pid:  # the guard died before prctl took hold
            os.kill(os.getpid(), signal.SIGKILL)

    def emit(tag, text):
        with lock:
            sys.stdout.buffer.write(tag.encode() + b"\t" + text.rstrip(b"\r\n") + b"\n")
            sys.stdout.flush()

    def pump(rank, stream):
        for line in iter(stream.readline, b""):
            emit(str(rank), line)

    def signal_all(sig):
        for p in procs.values():
            try:
                os.killpg(p.pid, sig)  # each worker leads its own group, which holds its helpers too
            except (ProcessLookupError, PermissionError):
                pass

    def request_stop(sig):
        if stop["sig"] is None:
            stop["sig"], stop["at"] = sig, time.monotonic()
            signal_all(sig)

    def watch_stdin():
        for line in iter(sys.stdin.buffer.readline, b""):
            if line.strip() == b"int":  # the launcher forwards Ctrl-C
                request_stop(signal.SIGINT)
        request_stop(signal.SIGTERM)  # EOF: the launcher or the connection is gone

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda s, _f: request_stop(s))
    env = dict(os.environ, **spec["env"])
    env["PATH"] = spec["path"] + os.pathsep + env.get("PATH", "")
    procs, pumps = {}, []
    for local, rank in enumerate(spec["ranks"]):
        try:
            procs[rank] = subprocess.Popen(
                spec["cmd"],
                env=dict(env, RANK=str(rank), LOCAL_RANK=str(local)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=own_group,
            )
        except OSError as err:
            emit("-", f"cannot start {spec['cmd'][0]}: {err}".encode())
            emit("!", f"{rank}\t127".encode())
            request_stop(signal.SIGTERM)
            break
        tell_reaper(procs[rank].pid)
        pumps.append(threading.Thread(target=pump, args=(rank, procs[rank].stdout), daemon=True))
        pumps[-1].start()
    threading.Thread(target=watch_stdin, daemon=True).start()
    code = [127 if len(procs) < len(spec["ranks"]) else 0]

    def check():  # a worker that fails before any stop was asked is the news; the rest are its echo
        for rank, p in procs.items():
            if p.poll() not in (None, 0) and code[0] == 0 and stop["sig"] is None:
                code[0] = p.returncode if p.returncode > 0 else 128 - p.returncode
                emit("!", f"{rank}\t{p.returncode}".encode())
                request_stop(signal.SIGTERM)

    while procs and any(p.poll() is None for p in procs.values()):
        check()
        if stop["sig"] is not None and time.monotonic() - stop["at"] > spec["grace"]:
            signal_all(signal.SIGKILL)
        time.sleep(0.05)
    check()
    signal_all(signal.SIGKILL)  # helpers a worker left behind in its group
    tell_reaper("done")
    for t in pumps:
        t.join(timeout=2)
    sys.stdout.flush()
    os._exit(code[0] or (128 + stop["sig"] if stop["sig"] else 0))  # the stdin thread may still be blocked


def host_probe(spec):
    """Report a host's Python, torch, devices and folder (sent as source); or hold/test the rendezvous port."""
    import glob
    import importlib.metadata
    import json
    import os
    import platform
    import socket
    import sys

    if "listen" in spec:  # hold the port so the other hosts can test it, until the launcher closes stdin
        srv = socket.socket()
        try:
            srv.bind(("", spec["listen"]))
        except OSError as err:
            print(json.dumps({"error": str(err)}), flush=True)
            return
        srv.listen(64)
        print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
        sys.stdin.read()
        return
    if "connect" in spec:
        try:
            socket.create_connection(tuple(spec["connect"]), timeout=5).close()
            print(json.dumps({"ok": True}))
        except OSError as err:
            print(json.dumps({"error": str(err)}))
        return
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = len([d for d in visible.split(",") if d.strip()]) if visible is not None else None
    info = {"python": platform.python_version(), "torch": torch, "cwd": os.path.isdir(spec["cwd"])}
    info["gpus"] = gpus if gpus is not None else len(glob.glob("/proc/driver/nvidia/gpus/*"))
    if spec.get("interface"):
        import fcntl
        import struct

        try:
            packed = struct.pack("256s", spec["interface"].encode()[:15])
            info["addr"] = socket.inet_ntoa(fcntl.ioctl(socket.socket(), 0x8915, packed)[20:24])  # SIOCGIFADDR
        except OSError:
            info["interfaces"] = [n for _, n in socket.if_nameindex()]
    print(json.dumps(info))


def python_code(func, spec):
    """The `python -c` program that runs func(spec) on another host."""
    return f"{inspect.getsource(func)}\n{func.__name__}(__import__('json').loads({json.dumps(spec)!r}))\n"


class Ssh:
    """Builds ssh command lines: non-interactive, so ~/.ssh/config, known_hosts and agents apply as usual."""

    def __init__(self, args):
        self.opts = ["-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={PROBE_TIMEOUT_S - 3}"]
        self.opts += ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if args.ssh_identity_file:
            if not os.path.isfile(args.ssh_identity_file):
                raise UserError(f"--ssh-identity-file {args.ssh_identity_file}: no such file")
            self.opts += ["-i", args.ssh_identity_file, "-o", "IdentitiesOnly=yes"]
        for opt in args.ssh_option:
            self.opts += ["-o", opt]
        self.port = args.ssh_port

    def argv(self, host, remote):
        """ssh ARGS -- host REMOTE, where REMOTE is a command line for the remote shell ("--": host is no option)."""
        port = host.port or self.port
        return ["ssh", *self.opts, *(["-p", str(port)] if port else []), "--", host.target, remote]

    def run(self, host, words, timeout=PROBE_TIMEOUT_S):
        """Run words on host; return stdout, or raise a UserError naming the host."""
        where = f"host {host.name} (hosts line {host.line})"
        try:
            proc = subprocess.run(self.argv(host, shlex.join(words)), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{where}: no answer over ssh within {timeout} s; check the name and network") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise UserError(f"{where}: ssh failed: {last}")
        return proc.stdout


def first_error(futures):
    """Wait for all futures; raise the first UserError (hosts file order), saying how many others failed."""
    errors = [f.exception() for f in futures]
    errors = [e for e in errors if e is not None]
    if errors:
        more = f" (and {len(errors) - 1} more hosts)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more}") from None
    return [f.result() for f in futures]


def preflight(args, ssh, hosts, cwd):
    """Check every host (ssh, versions, folder, rendezvous port); return (master_addr, port, slots per host)."""
    here = {"python": platform.python_version(), "torch": importlib.metadata.version("torch")}
    spec = {"cwd": cwd, "interface": args.interface}
    code = shlex.join([sys.executable, "-c", python_code(host_probe, {"listen": args.port})])
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    holder = subprocess.Popen(ssh.argv(hosts[0], code), text=True, **pipes)  # in step with the probes
    try:
        master, infos = probe_hosts(args, ssh, hosts, spec, here)
        port = check_port(ssh, hosts, master, holder, args.port)
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=3)
        except subprocess.TimeoutExpired:
            holder.kill()
    return master, port, [h.slots or max(info["gpus"], 1) for h, info in zip(hosts, infos)]


def probe_hosts(args, ssh, hosts, spec, here):
    """Ask every host for its versions, devices and folder; return (coordinator address, answers)."""
    cwd = spec["cwd"]
    with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
        futures = [pool.submit(ssh.run, h, [sys.executable, "-c", python_code(host_probe, spec)]) for h in hosts]
        infos = [json.loads(out.strip().splitlines()[-1]) for out in first_error(futures)]
    for host, info in zip(hosts, infos):
        there = {k: info[k] for k in here}
        if there != here:
            raise UserError(
                f"host {host.name} has Python {there['python']}, torch {there['torch']}; this machine "
                f"has Python {here['python']}, torch {here['torch']}; install the same versions"
            )
        if not info["cwd"]:
            raise UserError(f"host {host.name} has no folder {cwd}; use --sync-dst-dir or a shared file system")
        if args.interface and "addr" not in info:
            raise UserError(
                f"host {host.name} has no IPv4 interface {args.interface}; it has "
                f"{', '.join(info.get('interfaces', []))}"
            )
    if args.interface:
        master = infos[0]["addr"]
    else:  # the name ssh itself resolves (a ~/.ssh/config alias maps to its HostName)
        conf = subprocess.run(["ssh", "-G", "--", hosts[0].target], capture_output=True, text=True).stdout
        master = next((ln.split()[1] for ln in conf.splitlines() if ln.startswith("hostname ")), hosts[0].name)
    return master, infos


def check_port(ssh, hosts, master, holder, port):
    """With the port held on the first host (by holder), have the others connect to it; return the port."""
    timer = threading.Timer(PROBE_TIMEOUT_S, holder.kill)
    timer.start()
    first = holder.stdout.readline()
    timer.cancel()
    answer = json.loads(first) if first.startswith("{") else {"error": f"no answer ({holder.stderr.read().strip()})"}
    if "error" in answer:
        raise UserError(
            f"port {port} is already in use on {hosts[0].name} (the coordinator); pick another with --port"
            if "in use" in answer["error"]
            else f"host {hosts[0].name}: cannot hold the rendezvous port: {answer['error']}"
        )
    port = answer["port"]
    code = python_code(host_probe, {"connect": [master, port]})
    with concurrent.futures.ThreadPoolExecutor(max(len(hosts) - 1, 1)) as pool:
        outs = first_error([pool.submit(ssh.run, h, [sys.executable, "-c", code]) for h in hosts[1:]])
    for host, out in zip(hosts[1:], outs):
        if "error" in json.loads(out):
            raise UserError(
                f"host {host.name} cannot reach the coordinator {master}:{port} "
                f"({json.loads(out)['error']}); open the port or pick a card with --interface"
            )
    return port


def sync_dir(ssh, hosts, dst):
    """Copy this folder to dst on every host with rsync, as MXNet's --sync-dst-dir did."""
    if not shutil.which("rsync"):
        raise UserError("--sync-dst-dir needs rsync on this machine and the hosts; install it")
    for host in hosts:
        ssh.run(host, ["mkdir", "-p", dst])
        port = host.port or ssh.port
        rsh = shlex.join(["ssh", *ssh.opts, *(["-p", str(port)] if port else [])])
        proc = subprocess.run(
            ["rsync", "-a", "-e", rsh, "--", "./", f"{host.target}:{dst}/"], capture_output=True, text=True
        )
        if proc.returncode:
            raise UserError(f"host {host.name}: rsync to {dst} failed: {proc.stderr.strip().splitlines()[-1:]}")
