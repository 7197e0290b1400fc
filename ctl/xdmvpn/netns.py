"""Network namespaces: make, link, enter and remove them (ip(8), nsenter(1), setns(2)).

The one set of namespace helpers: the lab uses them, and so do the tests and the
benchmarks (they import them from here).

  in_netns(name)          run a block of the calling thread inside /run/netns/NAME
  run, sh, ip, popen      a command, in a namespace with ns=...
  exec_argv, enter_argv   argv prefixes: `ip netns exec` (own /sys) or `nsenter --net`
  add, delete, names      namespaces; veth, veth_between, addr, neigh, sysctl: their parts
  ifindex, snmp_ip        what the kernel says inside one
  Namespaces              a set of namespaces under one unique prefix, removed together
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import uuid
from typing import Iterator

from .errors import XdmvpnError
from .libc import libc as _libc

CLONE_NEWNET = 0x40000000


# --- entering ------------------------------------------------------------------------------

def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block (this thread only) inside /run/netns/<name>; sockets made in there
    stay in that namespace after the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        except FileNotFoundError:
            raise XdmvpnError(f"no network namespace {name!r}") from None
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def exec_argv(ns: str, cmd: list[str]) -> list[str]:
    """cmd under `ip netns exec`: the namespace's own /sys and /etc/netns files, in a
    mount namespace of its own (so not for a daemon that pins BPF maps: enter_argv)."""
    return ["ip", "netns", "exec", ns, *cmd]


def enter_argv(ns: str, cmd: list[str]) -> list[str]:
    """cmd under `nsenter --net`: only the network namespace differs, so /run (sockets)
    and /sys/fs/bpf (pins) are the machine's; what a daemon needs."""
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *cmd]


# --- commands ------------------------------------------------------------------------------

def run(*cmd: str, ns: str | None = None, check: bool = True, timeout: float = 60,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run cmd (inside ns with `ip netns exec`), output captured as text. With check, a
    failure raises XdmvpnError with the command and its error output on one line."""
    argv = exec_argv(ns, list(cmd)) if ns else list(cmd)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              input=input)
    except FileNotFoundError:
        raise XdmvpnError(f"{argv[0]} is missing (Debian: apt-get install "
                          f"{'iproute2' if argv[0] == 'ip' else argv[0]})") from None
    except subprocess.TimeoutExpired:
        raise XdmvpnError(f"{' '.join(argv)}: no answer within {timeout:g} s") from None
    if check and done.returncode != 0:
        why = (done.stderr or done.stdout).strip().replace("\n", "; ") or "failed"
        raise XdmvpnError(f"{' '.join(argv)}: {why}")
    return done


def sh(*cmd: str, ns: str | None = None, check: bool = True) -> str:
    """The standard output of run(cmd)."""
    return run(*cmd, ns=ns, check=check).stdout


def ip(*args: str, ns: str | None = None) -> str:
    """ip(8) with `-n ns`: no mount namespace, quicker than run(..., ns=)."""
    return run("ip", *(["-n", ns] if ns else []), *args).stdout


def popen(*cmd: str, ns: str | None = None, **kw) -> subprocess.Popen:
    """cmd started inside ns, stdout and stderr as text pipes unless kw says otherwise."""
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kw}
    return subprocess.Popen(exec_argv(ns, list(cmd)) if ns else list(cmd), **kw)


# --- namespaces and links ------------------------------------------------------------------

def add(name: str, *settings: str) -> None:
    """A namespace with its loopback up and sysctl settings ("key=value") applied."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", ns=name)
    if settings:
        sysctl(name, *settings)


def delete(*names: str) -> None:
    """Remove namespaces; one that is not there is no error."""
    for name in names:
        run("ip", "netns", "del", name, check=False, timeout=30)


def names() -> list[str]:
    """Every named network namespace (/run/netns)."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def veth(a: str, ns_a: str | None, b: str, ns_b: str | None, mac_a: str | None = None,
         mac_b: str | None = None) -> None:
    """A veth pair a <-> b, each end moved into its namespace (None: this one) and up."""
    ip("link", "add", a, *(["address", mac_a] if mac_a else []), "type", "veth",
       "peer", "name", b, *(["address", mac_b] if mac_b else []))
    for dev, ns in ((a, ns_a), (b, ns_b)):
        if ns:
            ip("link", "set", dev, "netns", ns)
        ip("link", "set", dev, "up", ns=ns)


def veth_between(tmp: str, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
    """A veth pair from a_ns/a_if to b_ns/b_if, both up. It is made in this namespace as
    tmp+"a"/tmp+"b" (tmp unique here, at most 14 characters) and renamed inside the
    namespaces, so that both ends may have the same name (eth0 <-> eth0)."""
    ta, tb = f"{tmp}a", f"{tmp}b"
    ip("link", "add", ta, "type", "veth", "peer", "name", tb)
    for ns, t, ifname in ((a_ns, ta, a_if), (b_ns, tb, b_if)):
        ip("link", "set", t, "netns", ns)
        ip("link", "set", t, "name", ifname, ns=ns)
        ip("link", "set", ifname, "up", ns=ns)


def addr(ns: str | None, dev: str, cidr: str) -> None:
    """An address on dev (IPv6 without duplicate address detection: usable at once)."""
    ip("addr", "add", cidr, "dev", dev, *(("nodad",) if ":" in cidr else ()), ns=ns)


def neigh(ns: str | None, dev: str, address: str, mac: str) -> None:
    """A permanent neighbour entry (no ARP needed)."""
    ip("neigh", "replace", address, "lladdr", mac, "dev", dev, "nud", "permanent", ns=ns)


def sysctl(ns: str | None, *settings: str) -> None:
    """sysctl -w of "key=value" settings inside ns."""
    run("sysctl", "-qw", *settings, ns=ns)


# --- reading -------------------------------------------------------------------------------

def ifindex(ns: str | None, dev: str) -> int:
    return int(sh("cat", f"/sys/class/net/{dev}/ifindex", ns=ns))


def snmp_ip(ns: str | None) -> dict:
    """The kernel IPv4 stack's own counters (Ip: line of /proc/net/snmp)."""
    lines = [line.split() for line in sh("cat", "/proc/net/snmp", ns=ns).splitlines()
             if line.startswith("Ip:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:])}


# --- a set of namespaces -------------------------------------------------------------------

class Namespaces:
    """Namespaces named prefix + a random tag + a short name, so that concurrent users
    never meet, linked by veth pairs and all removed by close() (or the with block)."""

    def __init__(self, prefix: str = "xt"):
        self.tag = uuid.uuid4().hex[:5]
        self.prefix = prefix
        self.made: list[str] = []
        self._links = 0

    def name(self, short: str) -> str:
        return f"{self.prefix}{self.tag}{short}"

    def add(self, short: str, *settings: str) -> str:
        name = self.name(short)
        add(name, *settings)
        self.made.append(name)
        return name

    def link(self, a_ns: str, a_if: str, b_ns: str, b_if: str, a_addr: str | None = None,
             b_addr: str | None = None) -> None:
        """A veth pair a_ns/a_if <-> b_ns/b_if, up, with an address on either end if given."""
        self._links += 1
        veth_between(f"v{self.tag}{self._links}", a_ns, a_if, b_ns, b_if)
        for ns, dev, cidr in ((a_ns, a_if, a_addr), (b_ns, b_if, b_addr)):
            if cidr:
                addr(ns, dev, cidr)

    def close(self) -> None:
        delete(*self.made)
        self.made.clear()

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
