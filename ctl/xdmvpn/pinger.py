"""ICMP (or ICMPv6) echo from inside a network namespace: a raw socket made there, no ping
binary.

``Pinger(ns).echo(dst, seq)`` waits for one reply and gives its round-trip time (what
`xdmvpn lab ping` shows per packet); ``Pinger(ns).burst(dst, count, interval)`` sends a
train of echoes and counts the replies (what the data-plane tests use to count loss)."""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time

from .inet import checksum
from .netns import in_netns

ECHO_REQUEST, ECHO_REPLY = 8, 0
ECHO_REQUEST6, ECHO_REPLY6 = 128, 129       # ICMPv6 (the kernel fills its checksum)
PAYLOAD = b"xdmvpn-ping" + bytes(45)       # 56 bytes, as ping(8) sends


def _same(a: str, b: str) -> bool:
    return a == b or ipaddress.ip_address(a) == ipaddress.ip_address(b)


class Pinger:
    """One raw ICMP socket (ICMPv6 with version=6), made in namespace ns (None: the
    caller's); replies are told apart from other pingers' by the identifier."""

    def __init__(self, ns: str | None = None, version: int = 4):
        self.version = version
        family, proto = ((socket.AF_INET, socket.IPPROTO_ICMP) if version == 4
                         else (socket.AF_INET6, socket.IPPROTO_ICMPV6))
        if ns is None:
            self.sock = socket.socket(family, socket.SOCK_RAW, proto)
        else:
            with in_netns(ns):
                self.sock = socket.socket(family, socket.SOCK_RAW, proto)
        self.ident = (os.getpid() ^ id(self)) & 0xFFFF

    def send(self, dst: str, seq: int) -> None:
        kind = ECHO_REQUEST if self.version == 4 else ECHO_REQUEST6
        body = struct.pack("!BBHHH", kind, 0, 0, self.ident, seq & 0xFFFF) + PAYLOAD
        if self.version == 4:
            body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        self.sock.sendto(body, (dst, 0))

    def replies(self, dst: str, wait: float) -> list[int]:
        """Sequence numbers of our echo replies from dst that arrive within wait seconds
        (returns at the first batch)."""
        if not select.select([self.sock], [], [], max(wait, 0))[0]:
            return []
        got = []
        while True:
            try:
                pkt, addr = self.sock.recvfrom(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return got
            # IPv4 raw sockets give the IP header, ICMPv6 ones start at the ICMPv6 header
            ihl = (pkt[0] & 15) * 4 if self.version == 4 else 0
            if len(pkt) < ihl + 8:
                continue
            kind, _, _, ident, seq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
            reply = ECHO_REPLY if self.version == 4 else ECHO_REPLY6
            if kind == reply and ident == self.ident and _same(addr[0], dst):
                got.append(seq)

    def echo(self, dst: str, seq: int, timeout: float = 1.0) -> float | None:
        """Round-trip time in ms of one echo, None when no reply came within timeout."""
        sent = time.monotonic()
        self.send(dst, seq)
        while (left := sent + timeout - time.monotonic()) > 0:
            if seq & 0xFFFF in self.replies(dst, left):
                return (time.monotonic() - sent) * 1000
        return None

    def burst(self, dst: str, count: int, interval: float = 0.05,
              timeout: float = 1.0) -> int:
        """Send count echoes interval apart, then wait up to timeout for the missing
        replies; returns how many distinct echoes were answered."""
        got: set[int] = set()
        for seq in range(count):
            self.send(dst, seq)
            end = time.monotonic() + interval
            while (left := end - time.monotonic()) > 0:
                got.update(self.replies(dst, left))
        deadline = time.monotonic() + timeout
        while len(got) < count and (left := deadline - time.monotonic()) > 0:
            got.update(self.replies(dst, left))
        return len(got)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Pinger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
