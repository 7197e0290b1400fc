"""The GRE socket read in batches: one recvmmsg(2) for up to `capacity` datagrams into
buffers allocated once (xdmvpn.mmsg.RecvBatch), each parsed to its NHRP payload.

The kernel's count of datagrams dropped on the socket's full buffer comes with every
datagram (SO_RXQ_OVFL, which transport.GreSocket turns on); `take_dropped` says how many
more were dropped since it was last asked, for the daemon's `gre_rx_kernel_drops`.

`behind()` says whether the socket's receive buffer is more than half full after a read
(SO_MEMINFO: bytes queued against the buffer's size): the daemon is not keeping up, and a
full buffer would drop datagrams of known peers and strangers alike, so the daemon sheds
what strangers sent (service.py) until it has caught up."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

from ..mmsg import RecvBatch
from ..transport import GreSocket, Received, parse_gre_nhrp

#: bytes per datagram: a jumbo frame; a longer one is dropped as "truncated"
DATAGRAM = 9216
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)      # linux/asm-generic/socket.h
_MEMINFO = struct.Struct("=II")      # SK_MEMINFO_RMEM_ALLOC, SK_MEMINFO_RCVBUF (the first two)
BEHIND = 0.5                         # of the receive buffer queued: shed strangers' NHRP


class GreReceiver:
    def __init__(self, gre: GreSocket, capacity: int):
        self.gre = gre
        self._batch = RecvBatch(capacity, DATAGRAM)
        self._dropped_seen = 0

    @property
    def capacity(self) -> int:
        return self._batch.capacity

    def receive(self) -> list[Received]:
        """What is waiting, up to capacity datagrams: (nhrp, source) for NHRP with our
        key, (None, reason) for any other GRE (as GreSocket.recv)."""
        if self.gre.version != 4:    # an IPv6 underlay: one recvmsg each (16-byte sources)
            return self.gre.recv_batch(self.capacity)
        key = self.gre.key
        ntohl = socket.ntohl
        out: list[Received] = []
        for packet, addr, truncated in self._batch.recv_raw(self.gre.fileno()):
            if truncated:
                out.append((None, "truncated"))
                continue
            payload, reason = parse_gre_nhrp(packet, key)
            if payload is None:
                out.append((None, reason))
            else:
                out.append((payload, IPv4Address(ntohl(addr))))
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
