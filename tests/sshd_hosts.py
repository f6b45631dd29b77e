"""Throwaway ssh "hosts" for the launcher tests: one sshd per loopback address, keys in a temp folder.

Everything listens on 127.0.0.x only; nothing is sent outside loopback. openssh-server is installed with
apt-get when /usr/sbin/sshd is missing (needs root); the caller skips the tests when that fails.
"""

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def ensure_sshd():
    """Return None when sshd and ssh are usable, else the reason they are not (installing when root)."""
    if not os.path.exists(SSHD) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "openssh-server"]):
            if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode:
                return f"{' '.join(cmd)} failed"
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing and could not be installed (needs root and apt-get)"
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "the ssh client (ssh, ssh-keygen) is not installed"
    return None


def free_port(addrs):
    """An unprivileged port that is free on every address in addrs."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((addrs[0], 0))
            port = s.getsockname()[1]
        try:
            for addr in addrs:
                with socket.socket() as s:
                    s.bind((addr, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no common free port on {addrs}")


class SshdHosts:
    """Start `sshd -D -f CONFIG` on each address (same port), with throwaway host and user keys."""

    def __init__(self, tmp, addrs=("127.0.0.2", "127.0.0.3")):
        self.tmp, self.addrs, self.procs = Path(tmp), list(addrs), []
        self.port = free_port(self.addrs)
        self.user = getpass.getuser()
        self.identity = self.tmp / "id_user"
        self.known_hosts = self.tmp / "known_hosts"

    def start(self):
        """Generate keys, write the configs, start the daemons and wait until they accept connections."""
        for key in ("host_key", "id_user"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.tmp / key)], check=True)
        shutil.copy(self.tmp / "id_user.pub", self.tmp / "authorized_keys")
        host_pub = (self.tmp / "host_key.pub").read_text().split()[:2]
        self.known_hosts.write_text("".join(f"[{a}]:{self.port} {' '.join(host_pub)}\n" for a in self.addrs))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        for addr in self.addrs:
            conf = self.tmp / f"sshd_{addr}.conf"
            conf.write_text(
                f"Port {self.port}\nListenAddress {addr}\nHostKey {self.tmp / 'host_key'}\n"
                f"PidFile {self.tmp / f'sshd_{addr}.pid'}\nAuthorizedKeysFile {self.tmp / 'authorized_keys'}\n"
                "UsePAM no\nStrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPrintMotd no\nLogLevel ERROR\nMaxStartups 100\n"
            )
            log = open(self.tmp / f"sshd_{addr}.log", "w")  # noqa: SIM115 (closed with the daemon)
            self.procs.append((subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stderr=log), log))
        deadline = time.monotonic() + 10
        for addr in self.addrs:
            while True:
                try:
                    socket.create_connection((addr, self.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd on {addr}:{self.port} did not start") from None
                    time.sleep(0.05)
        return self

    def launch_args(self):
        """The launcher's ssh flags for these hosts."""
        return [
            "--ssh-port",
            str(self.port),
            "--ssh-identity-file",
            str(self.identity),
            "--ssh-option",
            f"UserKnownHostsFile={self.known_hosts}",
            "--ssh-option",
            "StrictHostKeyChecking=yes",
        ]

    def write_hostfile(self, path, slots=None):
        """A hosts file naming the daemons as user@addr (and slots=N when given)."""
        extra = f" slots={slots}" if slots else ""
        Path(path).write_text("# throwaway test hosts\n" + "".join(f"{self.user}@{a}{extra}\n" for a in self.addrs))
        return path

    def stop(self):
        """Stop the daemons."""
        for proc, log in self.procs:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        self.procs = []


def pid_of_rank(token, rank):
    """The pid of the live worker whose command line has token and whose environment has RANK=rank."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if token in cmd and "-c" not in cmd.split("\0")[1:2] and f"RANK={rank}".encode() in env:
            return int(pid)
    return None
