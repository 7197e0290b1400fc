"""NHRP over a raw GRE socket: the controller's side of the wire.

The kernel here has no ip_gre: XDP passes NHRP (GRE protocol 0x2001 with our key) up the
stack, where a raw IPPROTO_GRE socket receives it with its IP header; the same socket sends
NHRP, the GRE header written here (RFC 2784/2890: flags, protocol, optional key). Over an
IPv6 underlay the socket is AF_INET6: it receives the GRE header first (the kernel keeps
the IPv6 header and its extension headers) and the source comes with the datagram.

Bursts (a hub's spokes all registering at once, a flood) must not be lost silently: the
socket's receive buffer is sized for them (RCVBUF, forced past net.core.rmem_max since the
daemon runs as root), the daemon drains it in batches (`recv_batch`), and the kernel's
count of datagrams dropped on a full buffer (SO_RXQ_OVFL, delivered with every datagram)
is kept in `dropped` for `show stats`."""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

from .inet import IPAddress

from .errors import XdmvpnError
from .nhrp.constants import GRE_PROTO_NHRP

GRE_C, GRE_K, GRE_S = 0x8000, 0x2000, 0x1000
RCVBUF = 4 << 20                 # bytes: thousands of small NHRP datagrams
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)           # linux/asm-generic/socket.h
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_DROPS = struct.Struct("=I")
_CMSG_SPACE = socket.CMSG_SPACE(_DROPS.size)
GRE_VERSION_MASK = 0x0007
GRE_RESERVED_MASK = 0x4FF8       # routing bit, strict source route, recursion, flags


def size_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of size bytes (forced past net.core.rmem_max when we have
    CAP_NET_ADMIN); return what the kernel gave (it doubles the request for bookkeeping)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def gre_header(key: int | None) -> bytes:
    if key is None:
        return struct.pack("!HH", 0, GRE_PROTO_NHRP)
    return struct.pack("!HHI", GRE_K, GRE_PROTO_NHRP, key)


def parse_gre_nhrp(packet: bytes, key: int | None) -> tuple[bytes | None, str]:
    """IPv4 packet (as a raw socket returns it) -> (NHRP payload, "") or (None, reason)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None, "not_ipv4"
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 4:
        return None, "truncated"
    if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:
        return None, "fragment"
    total = struct.unpack_from("!H", packet, 2)[0]     # IP total length: drop any padding
    return parse_gre(packet, ihl, total, key)


def parse_gre(packet: bytes, ihl: int, total: int, key: int | None) -> tuple[bytes | None, str]:
    """The GRE header at `ihl` (0 for what an IPv6 raw socket gives) of a datagram of
    `total` bytes -> (NHRP payload, "") or (None, reason)."""
    if len(packet) < ihl + 4:
        return None, "truncated"
    flags, proto = struct.unpack_from("!HH", packet, ihl)
    if proto != GRE_PROTO_NHRP:
        return None, "not_nhrp"
    if flags & GRE_VERSION_MASK or flags & GRE_RESERVED_MASK:
        return None, "gre_flags"
    off = ihl + 4
    if flags & GRE_C:
        off += 4
    got_key = None
    if flags & GRE_K:
        if len(packet) < off + 4:
            return None, "truncated"
        got_key = struct.unpack_from("!I", packet, off)[0]
        off += 4
    if flags & GRE_S:
        off += 4
    if got_key != key:
        return None, "wrong_key"
    if len(packet) < off:
        return None, "truncated"
    end = total if off <= total <= len(packet) else len(packet)
    return packet[off:end], ""


Received = tuple[bytes, IPAddress] | tuple[None, str]


class GreSocket:
    """One raw GRE socket bound to our NBMA address (and the underlay device), of its
    family."""

    def __init__(self, local: IPAddress, key: int | None, device: str | None = None,
                 rcvbuf: int = RCVBUF):
        self.key = key
        self.header = gre_header(key)
        self.dropped = 0             # datagrams the kernel dropped on a full buffer
        self.version = local.version
        family = socket.AF_INET if local.version == 4 else socket.AF_INET6
        try:
            self.sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_GRE)
        except PermissionError:
            raise XdmvpnError("opening a raw GRE socket needs root (CAP_NET_RAW): "
                              "run as root") from None
        try:
            if device:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                                     device.encode())
            self.sock.bind((str(local), 0))
        except OSError as exc:
            self.sock.close()
            if exc.errno == errno.EADDRNOTAVAIL:
                raise XdmvpnError(f"NBMA address {local} is not configured on this host"
                                  f"{' (' + device + ')' if device else ''}") from None
            if exc.errno == errno.ENODEV:
                raise XdmvpnError(f"underlay interface {device} does not exist") from None
            raise XdmvpnError(f"cannot bind the GRE socket to {local}: {exc.strerror}") \
                from None
        self.sock.setblocking(False)
        self.rcvbuf = size_receive_buffer(self.sock, rcvbuf)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, nbma: IPAddress, nhrp: bytes) -> bool:
        try:
            self.sock.sendto(self.header + nhrp, (str(nbma), 0))
            return True
        except (BlockingIOError, OSError):
            return False       # counted by the caller; NHRP retries cover a lost packet

    def recv(self) -> Received | None:
        """One datagram: (nhrp, source) for NHRP with our key, (None, reason) for any other
        GRE, None when nothing is waiting."""
        try:
            packet, ancillary, _, addr = self.sock.recvmsg(65535, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                self.dropped = _DROPS.unpack_from(value)[0]     # the kernel's running count
        if self.version == 6:
            payload, reason = parse_gre(packet, 0, len(packet), self.key)
        else:
            payload, reason = parse_gre_nhrp(packet, self.key)
        if payload is None:
            return None, reason
        src = addr[0]              # (host, port), IPv6 with flow info and scope too
        return payload, (IPv4Address(src) if self.version == 4 else IPv6Address(src))

    def recv_batch(self, limit: int) -> list[Received]:
        """Up to limit datagrams; fewer means the socket is empty now."""
        out: list[Received] = []
        while len(out) < limit:
            got = self.recv()
            if got is None:
                break
            out.append(got)
        return out

    def close(self) -> None:
        self.sock.close()
