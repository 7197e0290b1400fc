"""The GRE socket read in batches: one recvmmsg(2) for up to `capacity` datagrams into
buffers allocated once (xdmvpn.mmsg.RecvBatch), each parsed to its NHRP payload.

The kernel's count of datagrams dropped on the socket's full buffer comes with every
datagram (SO_RXQ_OVFL, which transport.GreSocket turns on); `take_dropped` says how many
more were dropped since it was last asked, for the daemon's `gre_rx_kernel_drops`.

`behind()` says whether the socket's receive buffer is more than half full after a read
(SO_MEMINFO: bytes queued against the buffer's size): the daemon is not keeping up, and a
full buffer would drop datagrams of known peers and strangers alike, so the daemon sheds
what strangers sent (service.py) until it has caught up.

Per datagram the common case costs one comparison (`common_payload`: an IPv4 header of 20
bytes, not a fragment, then exactly our GRE header) and a dictionary look-up for the
source's address object (kept per 32-bit address, at most ADDRESSES of them): under
emulation (the VM tier, `bench control --vs-frr`) the hub is busy for the whole refresh
round, and reading a batch (recvmmsg, the general parse, a new address object per datagram)
took ~140 of the ~820 microseconds per refresh there."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

from ..inet import HashedIPv4
from ..mmsg import RecvBatch
from ..transport import GreSocket, Received, parse_gre_nhrp

#: bytes per datagram: a jumbo frame; a longer one is dropped as "truncated"
DATAGRAM = 9216
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)      # linux/asm-generic/socket.h
_MEMINFO = struct.Struct("=II")      # SK_MEMINFO_RMEM_ALLOC, SK_MEMINFO_RCVBUF (the first two)
BEHIND = 0.5                         # of the receive buffer queued: shed strangers' NHRP
ADDRESSES = 1 << 16                  # source address objects kept (all dropped when full)


def common_payload(packet: bytes, gre_head: bytes) -> bytes | None:
    """The NHRP payload of an IPv4 datagram with a 20-byte header, not a fragment,
    followed by exactly `gre_head` (our GRE header: flags, protocol NHRP, our key) and with
    a total length that fits what was read; None for anything else (parse_gre_nhrp then
    decides, and returns the same payload for everything this accepts)."""
    start = 20 + len(gre_head)
    if packet[:1] != b"\x45" or packet[20:start] != gre_head or packet[6] & 0x3F \
            or packet[7]:
        return None
    total = (packet[2] << 8) | packet[3]
    if not start <= total <= len(packet):
        return None
    return packet[start:total]


class GreReceiver:
    def __init__(self, gre: GreSocket, capacity: int):
        self.gre = gre
        self._batch = RecvBatch(capacity, DATAGRAM)
        self._dropped_seen = 0
        self._addresses: dict[int, IPv4Address] = {}

    @property
    def capacity(self) -> int:
        return self._batch.capacity

    def receive(self) -> list[Received]:
        """What is waiting, up to capacity datagrams: (nhrp, source) for NHRP with our
        key, (None, reason) for any other GRE (as GreSocket.recv)."""
        if self.gre.version != 4:    # an IPv6 underlay: one recvmsg each (16-byte sources)
            return self.gre.recv_batch(self.capacity)
        key, head = self.gre.key, self.gre.header
        addresses = self._addresses
        out: list[Received] = []
        for packet, addr, truncated in self._batch.recv_raw(self.gre.fileno()):
            if truncated:
                out.append((None, "truncated"))
                continue
            payload = common_payload(packet, head)
            if payload is None:
                payload, reason = parse_gre_nhrp(packet, key)
                if payload is None:
                    out.append((None, reason))
                    continue
            source = addresses.get(addr)
            if source is None:
                if len(addresses) >= ADDRESSES:
                    addresses.clear()
                source = addresses[addr] = HashedIPv4.from_int(socket.ntohl(addr))
            out.append((payload, source))
        return out

    def behind(self) -> bool:
        """More than BEHIND of the receive buffer is queued (False when the kernel does not
        say)."""
        try:
            raw = self.gre.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36)
        except OSError:
            return False
        if len(raw) < _MEMINFO.size:
            return False
        queued, size = _MEMINFO.unpack_from(raw)
        return size > 0 and queued > size * BEHIND

    def take_dropped(self) -> int:
        """Datagrams the kernel dropped on the full buffer since the last call."""
        now = self._batch.dropped if self.gre.version == 4 else self.gre.dropped
        new = now - self._dropped_seen
        self._dropped_seen = now
        return new if new > 0 else 0
