"""ICMP echo from inside a network namespace: a raw socket made there, no ping binary.

``Pinger(ns).echo(dst, seq)`` waits for one reply and gives its round-trip time (what
`xdmvpn lab ping` shows per packet); ``Pinger(ns).burst(dst, count, interval)`` sends a
train of echoes and counts the replies (what the data-plane tests use to count loss)."""

from __future__ import annotations

import os
import select
import socket
import struct
import time

from .inet import checksum
from .netns import in_netns

ECHO_REQUEST, ECHO_REPLY = 8, 0
PAYLOAD = b"xdmvpn-ping" + bytes(45)       # 56 bytes, as ping(8) sends


class Pinger:
    """One raw ICMP socket, made in namespace ns (None: the caller's); replies are told
    apart from other pingers' by the identifier."""

    def __init__(self, ns: str | None = None):
        if ns is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        else:
            with in_netns(ns):
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                          socket.IPPROTO_ICMP)
        self.ident = (os.getpid() ^ id(self)) & 0xFFFF

    def send(self, dst: str, seq: int) -> None:
        body = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, self.ident, seq & 0xFFFF) + PAYLOAD
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
                pkt, (src, _) = self.sock.recvfrom(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return got
            ihl = (pkt[0] & 15) * 4
            if len(pkt) < ihl + 8:
                continue
            kind, _, _, ident, seq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
            if kind == ECHO_REPLY and ident == self.ident and src == dst:
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
