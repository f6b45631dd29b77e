"""Where a tools/launch.py job runs: the hosts file (MXNet's format), the --env pairs, and a free local port."""

import os
import re
import socket
from dataclasses import dataclass

from common.util import UserError, read_lines


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


HOST_RE = re.compile(r"^(?:(?P<user>[^@\s]*)@)?(?P<name>\[[^\]\s]*\]|[^@\s:\[\]]*)(?::(?P<port>\d+))?$")
# what ssh takes as a user or host name; nothing that starts with "-" (it would be read as an ssh option)
FIELDS = {
    "user": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\$?"),
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*|\[[0-9A-Fa-f:.]+\]"),
}


def check_fields(where, m):
    """Refuse a user or host name that ssh would not take (or would read as an option); name the line."""
    for field, pattern in FIELDS.items():
        value = m[field if field == "user" else "name"]
        if value is not None and not pattern.fullmatch(value):
            why = "starts with '-'" if value.startswith("-") else "holds a character ssh does not allow in one"
            why = why if value else "is empty"
            raise UserError(
                f"{where}: bad {field} name {value!r} ({why}); use letters, digits, '_', '.' and '-', not first"
            )


def read_hosts(path):
    """Parse MXNet's hosts file: `[user@]host[:port] [slots=N]` per line, `#` comments; errors name the line."""
    lines = read_lines(path, "hosts file")
    hosts, seen = [], {}
    for num, raw in enumerate(lines, 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        m = HOST_RE.match(words[0])
        if not m:
            raise UserError(f"{path}:{num}: bad host {words[0]!r}; expected [user@]host[:port] [slots=N]")
        check_fields(f"{path}:{num}", m)
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


def pick_hosts(args, required):
    """The first -n hosts of the -H file (none when there is no -H and it is not required)."""
    if not args.hostfile and required:
        raise UserError(f"--launcher {args.launcher} needs a hosts file (-H FILE), or use --launcher local")
    hosts = read_hosts(args.hostfile) if args.hostfile else []
    if hosts and args.num_workers > len(hosts):
        slots = sum(h.slots or 1 for h in hosts)
        raise UserError(
            f"-n {args.num_workers} asks for more worker hosts than the {len(hosts)} in "
            f"{args.hostfile} ({slots} slots; -n counts hosts, slots=N sets processes per host)"
        )
    return hosts[: args.num_workers]


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
