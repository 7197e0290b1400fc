"""Network-namespace helpers for tests and labs (thin wrappers over ip(8)).

Every namespace made here is named with a caller-chosen prefix so that a
test can remove exactly what it made.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import time

from ..errors import XdmvpnError


def sh(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    rc = subprocess.run(cmd, capture_output=True, text=True)
    if check and rc.returncode != 0:
        raise XdmvpnError(f"{' '.join(cmd)}: {rc.stderr.strip()}")
    return rc.stdout


def add(name: str) -> None:
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", ns=name)


def delete(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def veth(a: str, ns_a: str | None, b: str, ns_b: str | None, mac_a: str | None = None,
         mac_b: str | None = None) -> None:
    sh("ip", "link", "add", a, *(["address", mac_a] if mac_a else []), "type", "veth",
       "peer", "name", b, *(["address", mac_b] if mac_b else []))
    for dev, ns in ((a, ns_a), (b, ns_b)):
        if ns:
            sh("ip", "link", "set", dev, "netns", ns)
        sh("ip", "link", "set", dev, "up", ns=ns)


def veth_between(tmp: str, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
    """A veth pair from a_ns/a_if to b_ns/b_if, both up. It is made in this namespace as
    tmp+"a"/tmp+"b" (tmp unique here, at most 14 characters) and renamed inside the
    namespaces, so that both ends may have the same name (eth0 <-> eth0)."""
    ta, tb = f"{tmp}a", f"{tmp}b"
    sh("ip", "link", "add", ta, "type", "veth", "peer", "name", tb)
    for ns, t, ifname in ((a_ns, ta, a_if), (b_ns, tb, b_if)):
        sh("ip", "link", "set", t, "netns", ns)
        sh("ip", "link", "set", t, "name", ifname, ns=ns)
        sh("ip", "link", "set", ifname, "up", ns=ns)


def addr(ns: str | None, dev: str, cidr: str) -> None:
    sh("ip", "addr", "add", cidr, "dev", dev, ns=ns)


def neigh(ns: str | None, dev: str, ip: str, mac: str) -> None:
    sh("ip", "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent", ns=ns)


def sysctl(ns: str | None, key: str, value: str) -> None:
    sh("sysctl", "-qw", f"{key}={value}", ns=ns)


def link_stats(ns: str | None, dev: str) -> dict:
    """rx/tx packets of a device from /sys (read inside the namespace)."""
    out = sh("cat", f"/sys/class/net/{dev}/statistics/rx_packets",
             f"/sys/class/net/{dev}/statistics/tx_packets", ns=ns).split()
    return {"rx_packets": int(out[0]), "tx_packets": int(out[1])}


def snmp_ip(ns: str | None) -> dict:
    """The kernel IPv4 stack's own counters (Ip: line of /proc/net/snmp)."""
    lines = [l.split() for l in sh("cat", "/proc/net/snmp", ns=ns).splitlines()
             if l.startswith("Ip:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:])}


def _icmp_csum(b: bytes) -> int:
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(ns: str, dst: str, count: int = 5, interval: float = 0.05, timeout: float = 1.0) -> int:
    """ICMP echo from inside ns (raw socket, no ping binary needed).
    Returns the number of replies received."""
    from .testrun import in_netns

    ident = (os.getpid() ^ id(object())) & 0xFFFF
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    got: set[int] = set()
    try:
        deadline = None
        for seq in range(count):
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"xdmvpn-ping-" + bytes(20)
            body = body[:2] + struct.pack("!H", _icmp_csum(body)) + body[4:]
            s.sendto(body, (dst, 0))
            end = time.monotonic() + interval
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                _drain(s, ident, got, left)
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            _drain(s, ident, got, deadline - time.monotonic())
    finally:
        s.close()
    return len(got)


def _drain(s, ident, got, wait):
    r, _, _ = select.select([s], [], [], max(wait, 0))
    if not r:
        return
    pkt = s.recv(2048)
    ihl = (pkt[0] & 15) * 4
    t, _c, _k, i, seq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
    if t == 0 and i == ident:
        got.add(seq)
