"""tools/launch.py through its command line: local and real ssh launches, failures, Ctrl-C, bad input.

The ssh tests start two throwaway sshd on 127.0.0.2 and 127.0.0.3 (tests/sshd_hosts.py); no traffic leaves
loopback. Workers are small scripts written here: a torch one that joins with common.dist and all-reduces,
and a plain one that sleeps (fast to start) for the failure and Ctrl-C tests.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sshd_hosts import SshdHosts, ensure_sshd, pid_of_rank

from tools.launchers import LAUNCHERS, Launcher

REPO = Path(__file__).resolve().parent.parent
LAUNCH = str(REPO / "tools" / "launch.py")

TORCH_WORKER = """
import os, sys, time
if os.environ["RANK"] in os.environ.get("NEVER_JOIN", "").split(","):
    time.sleep(120)
sys.path.insert(0, {repo!r})
import torch, torch.distributed as tdist
from common import dist
from common.util import atomic_write, main_guard

@main_guard
def main():
    rank, world, local = dist.init_from_env()
    t = torch.tensor([rank + 1.0])
    tdist.all_reduce(t)
    print(f"sum={{t.item():g}} rank={{rank}} world={{world}} group={{os.environ['GROUP_RANK']}}", flush=True)
    if dist.is_rank0():
        atomic_write("result.txt", f"{{t.item():g}}\\n", "w")
    open(f"pid.{{rank}}", "w").write(str(os.getpid()))
    while os.environ.get("FOREVER"):  # keep the collectives going until a peer dies
        tdist.all_reduce(t)
        time.sleep(0.05)
    dist.barrier()
    dist.cleanup()

main()
"""

SLEEPER = """
import os, sys, time
rank = int(os.environ["RANK"])
print(f"ready rank={rank} world={os.environ['WORLD_SIZE']} foo={os.environ.get('FOO')}", flush=True)
open(f"pid.{rank}", "w").write(str(os.getpid()))
if rank == int(os.environ.get("FAIL_RANK", -1)):
    sys.exit(3)
time.sleep(120)
"""

TICKER = """
import os, subprocess, sys, time
# a worker that goes on writing (as training writes checkpoints), and a helper of its own that does too
who = sys.argv[1] if len(sys.argv) > 1 else os.environ["RANK"]
if who == os.environ["RANK"]:
    subprocess.Popen([sys.executable, __file__, "h" + who])
open(f"pid.{who}", "w").write(str(os.getpid()))
n = 0
while True:
    n += 1
    open(f"tick.{who}", "w").write(str(n))
    time.sleep(0.2)
"""


@pytest.fixture
def work(tmp_path):
    """A working folder holding the worker scripts."""
    (tmp_path / "worker.py").write_text(TORCH_WORKER.format(repo=str(REPO)))
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    (tmp_path / "ticker.py").write_text(TICKER)
    return tmp_path


def launch(work, *args, env=None, timeout=120):
    """Run launch.py in work; return (CompletedProcess, seconds)."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, LAUNCH, *map(str, args)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )
    return proc, time.monotonic() - start


def default_sigint():
    """In the child before exec: SIGINT as a terminal gives it, even to a pytest started with it ignored (a
    background job of a script inherits SIGINT ignored, and launch.py keeps an inherited ignore)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_launch(work, *args, env=None):
    """Start launch.py in the background, with a default SIGINT however pytest was started."""
    cmd = [sys.executable, LAUNCH, *map(str, args)]
    env = dict(os.environ, **(env or {}))
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(cmd, cwd=work, text=True, env=env, preexec_fn=default_sigint, **pipes)


def wait_for_pids(work, ranks, proc, timeout=60):
    """Wait until every rank wrote its pid file; return the pids."""
    deadline = time.monotonic() + timeout
    while not all((work / f"pid.{r}").exists() for r in ranks):
        assert proc.poll() is None, f"launcher ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.1)
    time.sleep(0.2)
    return [int((work / f"pid.{r}").read_text()) for r in ranks]


def leftovers(token, wait=5.0):
    """Live processes (not zombies) whose command line mentions token, after waiting up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if token in cmdline and state != "Z" and int(pid) != os.getpid():
                found.append(f"{pid}: {cmdline[:200]}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def guard_pids(token):
    """{host index: pid} of the live node guards (tools/launch_node.py) whose job mentions token."""
    guards = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[1:2] == ["-c"] and "node_guard(" in argv[2] and token in argv[2]:  # not ssh's command line
            guards[int(re.search(r'"GROUP_RANK": "(\d+)"', argv[2])[1])] = int(pid)
    return guards


def assert_stopped_for_good(work, token, names):
    """No process of token is left, and the files the workers and helpers kept writing stay as they are."""
    assert leftovers(token) == []
    ticks = {name: (work / f"tick.{name}").read_text() for name in names}
    time.sleep(1.0)
    assert {name: (work / f"tick.{name}").read_text() for name in names} == ticks


# ---- local launcher ----


def test_local_runs_n_workers_with_prefixed_lines(work):
    code = "import os; print(os.environ['RANK'], os.environ['LOCAL_RANK'], os.environ['WORLD_SIZE'], os.getcwd())"
    proc, _ = launch(work, "--launcher", "local", "-n", "2", "-s", "2", "python", "-c", code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[localhost rank 0] 0 0 2 {work}" in proc.stdout
    assert f"[localhost rank 1] 1 1 2 {work}" in proc.stdout
    assert "coordinator 127.0.0.1:" in proc.stdout
    assert "-s/--num-servers ignored" in proc.stderr


def test_local_failure_stops_all_and_names_rank(work):
    script = str(work / "sleeper.py")
    proc, secs = launch(
        work, "--launcher", "local", "-n", "3", "--env", "FAIL_RANK:1", "--env", "FOO:bar", "python", script
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[localhost rank 1] ready rank=1 world=3 foo=bar" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    expected = "rank 1 on host localhost exited with status 3; its last line: ready rank=1 world=3 foo=bar"
    assert last == f"launch.py: error: {expected}"
    assert secs < 30
    assert leftovers(script) == []


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 130), (signal.SIGKILL, -9)])
def test_local_signal_to_launcher_leaves_nothing(work, sig, status):
    """Ctrl-C (and SIGTERM) stop the workers in order; even a killed launcher leaves no worker behind."""
    script = str(work / "sleeper.py")
    proc = start_launch(work, "--launcher", "local", "-n", "2", "python", script)
    pids = wait_for_pids(work, [0, 1], proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status, out + err
    assert leftovers(script) == [], pids


def test_local_killed_guard_takes_its_workers_with_it(work):
    """kill -9 of the node guard: its workers and their helpers stop writing at once; the error names host, ranks."""
    script = str(work / "ticker.py")
    proc = start_launch(work, "--launcher", "local", "-n", "2", "python", script)
    wait_for_pids(work, ["0", "1", "h0", "h1"], proc)
    os.kill(guard_pids(script)[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err
    expected = "host localhost failed (its guard was killed by SIGKILL); its workers (rank 0, 1) were stopped with it"
    assert err.strip().splitlines()[-1] == f"launch.py: error: {expected}"
    assert_stopped_for_good(work, script, ["0", "1", "h0", "h1"])


def test_rendezvous_timeout_names_missing_rank(work):
    proc, _ = launch(
        work, "--launcher", "local", "-n", "2", "--timeout", "2", "python", "worker.py", env={"NEVER_JOIN": "1"}
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "rendezvous timed out after 2 s: rank 1 (host localhost) never joined" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("launch.py: error: rank 0 on host localhost exited with status 2; its last line: ")
    assert last.endswith("rank 1 (host localhost) never joined")
    assert leftovers(str(work)) == []


def hostfile(tmp_path, text):
    path = tmp_path / "hosts"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, args, expected",
    [
        ("# only a comment\n\n", [], "has no host"),
        ("a\nb slots=x\n", [], "hosts:2: bad field 'slots=x'"),
        ("a\nu@@b\n", [], "hosts:2: bad host 'u@@b'"),
        ("a\nb\na\n", [], "hosts:3: host a is already on line 1"),
        ("a\n-oProxyCommand=touch@b\n", [], "hosts:2: bad user name '-oProxyCommand=touch' (starts with '-')"),
        ("-oProxyCommand=touch\n", [], "hosts:1: bad host name '-oProxyCommand=touch' (starts with '-')"),
        ("a\nu;id@b\n", [], "hosts:2: bad user name 'u;id' (holds a character ssh does not allow in one)"),
        ("a\nu@b$(id)\n", [], "hosts:2: bad host name 'b$(id)' (holds a character ssh does not allow in one)"),
        ("a\nb slots=4\n", ["-n", "3"], "-n 3 asks for more worker hosts than the 2"),
        ("a\n", ["--launcher", "pbs"], "unknown --launcher 'pbs'; valid values: ssh, local, mpi, slurm"),
        ("a\n", ["--env", "1X:2"], "--env '1X:2': expected NAME:VALUE or NAME"),
        ("a\n", ["--ssh-identity-file", "/nonexistent/key"], "--ssh-identity-file /nonexistent/key: no such file"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, text, args, expected):
    path = hostfile(tmp_path, text)
    proc, _ = launch(tmp_path, "-H", path, *(args if "-n" in args else ["-n", "1", *args]), "true")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert expected in proc.stderr


def test_port_in_use_said_so(tmp_path):
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        proc, _ = launch(tmp_path, "--launcher", "local", "-n", "1", "--port", port, "true")
    assert proc.returncode == 2
    assert f"port {port} is already in use on this machine" in proc.stderr


@pytest.mark.skipif(shutil.which("mpirun") is not None, reason="mpirun is installed here")
def test_mpi_missing_said_so(tmp_path):
    proc, _ = launch(tmp_path, "--launcher", "mpi", "-n", "1", "-H", hostfile(tmp_path, "a\n"), "true")
    assert proc.returncode == 2
    assert "--launcher mpi needs mpirun, which is not installed here" in proc.stderr


FAKE_SCHEDULER = """#!{python}
import os, subprocess, sys
# stands in for mpirun, srun and scontrol: one process (rank 0 of 1) with the -x pairs mpirun would pass on
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
if tool == "scontrol":
    print("node1 node2")
    sys.exit(0)
cut = args.index({python!r})
print(tool, *args[:cut], flush=True)
ranks = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE")
if tool == "srun":
    ranks = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")
env = dict(os.environ, **dict(zip(ranks, "001")))
env.update(args[i + 1].split("=", 1) for i, word in enumerate(args[:cut]) if word == "-x")
sys.exit(subprocess.call(args[cut:], env=env))
"""


@pytest.mark.parametrize(
    "args, env, called, seen",
    [
        (
            ["--launcher", "mpi", "-H", "hosts", "--env", "FOO:1"],
            {},
            "mpirun -H h1:2,h2:1 -x MASTER_ADDR=h1 -x MASTER_PORT=29500 -x FOO=1",
            "0 0 1 h1 29500 1",
        ),
        (
            ["--launcher", "slurm", "-H", "hosts", "--port", "1234", "--env", "FOO:1"],
            {},
            "srun --nodes=2 --nodelist=h1,h2",
            "0 0 1 h1 1234 1",
        ),
        (["--launcher", "slurm"], {"SLURM_JOB_NODELIST": "node[1-2]"}, "srun --nodes=2", "0 0 1 node1 29500 None"),
    ],
)
def test_scheduler_launchers_hand_over_to_their_command(tmp_path, args, env, called, seen):
    """mpi and slurm exec the scheduler's command; its shim gives the worker torch.distributed's variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mpirun", "srun", "scontrol"):
        (bin_dir / tool).write_text(FAKE_SCHEDULER.format(python=sys.executable))
        (bin_dir / tool).chmod(0o755)
    hostfile(tmp_path, "h1 slots=2\nu@h2:22\nh3\n")
    code = "import os; print(*map(os.environ.get, 'RANK LOCAL_RANK WORLD_SIZE MASTER_ADDR MASTER_PORT FOO'.split()))"
    path = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc, _ = launch(tmp_path, *args, "-n", "2", sys.executable, "-c", code, env={**path, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"launch.py: {called} ")
    assert proc.stdout.splitlines() == [called, seen]


FAKE_SSH = """#!{python}
import json, os, subprocess, sys
# stands in for ssh: records its arguments, answers `ssh -G` with this machine, runs the remote command here
args = sys.argv[1:]
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if "--" not in args:
    sys.exit("fake ssh: no -- before the destination")
if "-G" in args[: args.index("--")]:
    print("hostname 127.0.0.1")
    sys.exit(0)
sys.exit(subprocess.call(["sh", "-c", args[args.index("--") + 2]]))
"""


def test_every_ssh_command_ends_its_options_before_the_destination(tmp_path):
    """Each ssh the launcher runs (probes, port check, -G, guards) has "--" just before user@host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH.format(python=sys.executable))
    (bin_dir / "ssh").chmod(0o755)
    log = tmp_path / "ssh.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SSH_LOG": str(log)}
    hosts = hostfile(tmp_path, "me@h1\nme@h2\n")
    code = "import os; print('rank', os.environ['RANK'])"
    proc, _ = launch(tmp_path, "-n", "2", "-H", hosts, "--ssh-port", "2222", sys.executable, "-c", code, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[h2 rank 1] rank 1" in proc.stdout
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) >= 6 and any("-G" in c for c in calls)  # 2 probes, port holder and check, -G, 2 guards
    for call in calls:
        assert "--" in call and call[call.index("--") + 1] in ("me@h1", "me@h2"), call


def test_every_launcher_in_the_table_fills_in_the_interface():
    """Each --launcher value is a Launcher with its own preflight, and a way to start guards or a scheduler."""
    assert list(LAUNCHERS) == ["ssh", "local", "mpi", "slurm"]
    for name, cls in LAUNCHERS.items():
        assert issubclass(cls, Launcher), name
        assert cls.preflight is not Launcher.preflight, name
        own = cls.guard_argv is not Launcher.guard_argv if cls.supervises else cls.start is not Launcher.start
        assert own, name


# ---- ssh launcher against throwaway sshd on 127.0.0.2 and 127.0.0.3 ----


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Two sshd "hosts" for this module."""
    reason = ensure_sshd()
    if reason:
        pytest.skip(reason)
    daemons = SshdHosts(tmp_path_factory.mktemp("sshd")).start()
    yield daemons
    daemons.stop()


@pytest.mark.slow
def test_ssh_launch_trains_on_both_hosts(work, hosts):
    path = hosts.write_hostfile(work / "hosts")
    proc, _ = launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "python", "worker.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "coordinator 127.0.0.2:" in proc.stdout
    assert "[127.0.0.2 rank 0] sum=3 rank=0 world=2 group=0" in proc.stdout
    assert "[127.0.0.3 rank 1] sum=3 rank=1 world=2 group=1" in proc.stdout
    assert (work / "result.txt").read_text() == "3\n"


def test_ssh_trains_then_killed_worker_stops_job_and_names_host(work, hosts):
    """Both hosts all-reduce and rank 0 writes its file; then a killed worker ends the job, naming its host."""
    path = hosts.write_hostfile(work / "hosts")
    script = str(work / "worker.py")
    proc = start_launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "python", script, env={"FOREVER": "1"})
    pids = wait_for_pids(work, [0, 1], proc)
    assert (work / "result.txt").read_text() == "3\n"
    start = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 30
    assert proc.returncode != 0, out + err
    assert "rank 1 on host 127.0.0.3 was killed by SIGKILL" in err.strip().splitlines()[-1], err
    assert "[127.0.0.2 rank 0] sum=3 rank=0 world=2 group=0" in out
    assert "[127.0.0.3 rank 1] sum=3 rank=1 world=2 group=1" in out
    assert leftovers(script) == []


def test_ssh_killed_guard_takes_its_workers_with_it(work, hosts):
    """kill -9 of one host's guard over ssh: its workers and helpers stop, and the error names that host."""
    path = hosts.write_hostfile(work / "hosts")
    script = str(work / "ticker.py")
    proc = start_launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "python", script)
    wait_for_pids(work, ["0", "1", "h0", "h1"], proc)
    os.kill(guard_pids(script)[1], signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("launch.py: error: host 127.0.0.3 failed (") and "its workers (rank 1) were" in last, err
    assert_stopped_for_good(work, script, ["0", "1", "h0", "h1"])


def test_ssh_ctrl_c_leaves_nothing(work, hosts):
    path = hosts.write_hostfile(work / "hosts", slots=2)
    script = str(work / "sleeper.py")
    proc = start_launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "python", script)
    wait_for_pids(work, [0, 1, 2, 3], proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "[127.0.0.3 rank 3] ready rank=3 world=4" in out
    assert leftovers(script) == []


def test_ssh_unreachable_host_named_fast(work, hosts):
    path = hostfile(work, f"127.0.0.2\n{hosts.user}@127.0.0.9\n")  # nothing listens on 127.0.0.9
    proc, secs = launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "true")
    assert proc.returncode == 2 and secs < 10, proc.stderr
    assert proc.stderr.startswith("launch.py: error: host 127.0.0.9 (hosts line 2): ssh failed"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ssh_refused_login_named(work, hosts):
    other = work / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    path = hosts.write_hostfile(work / "hosts")
    args = [*hosts.launch_args()]
    args[args.index("--ssh-identity-file") + 1] = str(other)
    proc, secs = launch(work, "-n", "2", "-H", path, *args, "true")
    assert proc.returncode == 2 and secs < 10, proc.stderr
    assert "host 127.0.0.2 (hosts line 2): ssh failed: " in proc.stderr and "Permission denied" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ssh_port_in_use_on_coordinator(work, hosts):
    path = hosts.write_hostfile(work / "hosts")
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        s.listen()
        port = s.getsockname()[1]
        proc, _ = launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "--port", port, "true")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"port {port} is already in use on 127.0.0.2 (the coordinator)" in proc.stderr


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_ssh_sync_dst_dir_runs_there(work, hosts, tmp_path_factory):
    dst = tmp_path_factory.mktemp("synced") / "job"
    path = hosts.write_hostfile(work / "hosts")
    proc, _ = launch(
        work,
        "-n",
        "2",
        "-H",
        path,
        *hosts.launch_args(),
        "--sync-dst-dir",
        dst,
        "--env",
        "FOO:x",
        "python",
        "-c",
        "import os; print(os.getcwd(), os.path.exists('sleeper.py'), os.environ['FOO'])",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[127.0.0.3 rank 1] {dst} True x" in proc.stdout


def test_ssh_interface_picks_coordinator_address(work, hosts):
    path = hosts.write_hostfile(work / "hosts")
    code = "import os; e = os.environ; print(e['MASTER_ADDR'], e['GLOO_SOCKET_IFNAME'], e['NCCL_SOCKET_IFNAME'])"
    proc, _ = launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "--interface", "lo", "python", "-c", code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "coordinator 127.0.0.1:" in proc.stdout
    assert "[127.0.0.3 rank 1] 127.0.0.1 lo lo" in proc.stdout
    proc, _ = launch(work, "-n", "2", "-H", path, *hosts.launch_args(), "--interface", "nosuch0", "true")
    assert proc.returncode == 2
    assert "host 127.0.0.2 has no IPv4 interface nosuch0; it has " in proc.stderr
    assert "lo" in proc.stderr.rsplit("it has ", 1)[1].split(", ")


def test_ssh_train_mnist_dist_sync_then_killed_worker_named(work, hosts):
    """train_mnist.py --kv-store dist_sync over ssh: both hosts train, rank 0 checkpoints; a killed worker ends it."""
    path = hosts.write_hostfile(work / "hosts")
    prefix = str(work / "ck" / "mlp")
    train = [sys.executable, "train_mnist.py", "--mnist-mirror", "file:///nonexistent", "--gpus", ""]
    train += ["--kv-store", "dist_sync", "--num-epochs", "50", "--model-prefix", prefix, "--disp-batches", "1000"]
    cmd = [sys.executable, LAUNCH, "-n", "2", "-H", str(path), *hosts.launch_args(), *train]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not Path(f"{prefix}-0001.states").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    victim = pid_of_rank(prefix, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1, out + err
    assert "rank 1 on host 127.0.0.3 was killed by SIGKILL" in err.strip().splitlines()[-1], err
    assert "[127.0.0.2 rank 0]" in out and "[127.0.0.3 rank 1]" in out  # both hosts ran train_mnist
    assert "Total batch size 128 (64 per batch x 2 workers" in out and "kv-store dist_sync over 2 hosts" in out
    assert "Epoch[0] Validation-accuracy=" in out and 'Saved checkpoint to "' + prefix + '-0001.params"' in out
    assert leftovers(prefix) == []
