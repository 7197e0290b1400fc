"""Many datagrams per system call: sendmmsg(2) and recvmmsg(2) on an IPv4 datagram or raw
socket, through ctypes (Linux, glibc or musl).

Why: a hub answering a burst of NHRP requests one sendto(2) per reply wakes the receivers
once per reply; on a busy machine each wake-up may preempt the hub (measured in
`xdmvpn bench control`: a third of the hub's time in sendto). Queued and sent with one
sendmmsg(2) at the end of a receive batch, a burst costs one system call and one round of
wake-ups. RecvBatch is the receiving half: up to `capacity` datagrams per recvmmsg(2) into
buffers allocated once, with each datagram's SO_RXQ_OVFL control message (the kernel's
running count of datagrams dropped on the socket's full buffer) read into `dropped` when the
socket has that option on.

SendBatch writes a fixed header (the GRE header) before every payload without copying either
(two iovecs per message). Neither class owns the socket: each call is given its fd."""

from __future__ import annotations

import ctypes
import errno
import mmap
import socket
import struct
from ipaddress import IPv4Address

from .libc import libc as _libc

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
SOL_SOCKET = socket.SOL_SOCKET
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)           # linux/asm-generic/socket.h
_CONTROL = 32                    # bytes per message: CMSG_SPACE(4) is 24 on 64-bit Linux


class _SockaddrIn(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_uint16),
                ("addr", ctypes.c_uint32), ("zero", ctypes.c_uint8 * 8)]   # network order


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_char_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_sendmmsg.restype = ctypes.c_int
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                      ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int
_MSG_SIZE = ctypes.sizeof(_Mmsghdr)
_ADDR_SIZE = ctypes.sizeof(_SockaddrIn)
_LEN_AT = _Mmsghdr.len.offset
_FLAGS_AT = _Mmsghdr.hdr.offset + _Msghdr.flags.offset
_ADDR_AT = _SockaddrIn.addr.offset
# a message's flags and length in one read (they are 8 bytes apart: flags, padding, len)
assert _LEN_AT > _FLAGS_AT
_FLAGS_LEN = struct.Struct(f"=i{_LEN_AT - _FLAGS_AT - 4}xI")
_ADDRS: dict[int, struct.Struct] = {}     # count -> the addresses of that many sockaddr_in


def _addresses(count: int) -> struct.Struct:
    """The `count` 32-bit addresses (network order) of consecutive sockaddr_in, in one read."""
    st = _ADDRS.get(count)
    if st is None:
        one = f"{_ADDR_AT}xI{_ADDR_SIZE - _ADDR_AT - 4}x"
        st = _ADDRS[count] = struct.Struct("=" + one * count)
    return st


def _messages(capacity: int, iovs_per_message: int) -> tuple[ctypes.Array[_Mmsghdr],
                                                             ctypes.Array[_SockaddrIn],
                                                             ctypes.Array[_Iovec]]:
    msgs = (_Mmsghdr * capacity)()
    addrs = (_SockaddrIn * capacity)()
    iovs = (_Iovec * (capacity * iovs_per_message))()
    iov_size = ctypes.sizeof(_Iovec)
    for i in range(capacity):
        hdr = msgs[i].hdr
        hdr.name = ctypes.addressof(addrs[i])
        hdr.namelen = ctypes.sizeof(_SockaddrIn)
        hdr.iov = ctypes.cast(ctypes.addressof(iovs) + i * iovs_per_message * iov_size,
                              ctypes.POINTER(_Iovec))
        hdr.iovlen = iovs_per_message
        addrs[i].family = socket.AF_INET
    return msgs, addrs, iovs


class SendBatch:
    """Datagrams queued for IPv4 destinations, each `header` + payload, sent together by
    flush(fd). add() flushes by itself only when full, so give it the fd too."""

    def __init__(self, header: bytes = b"", capacity: int = 256, port: int = 0):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.header = bytes(header)
        self.capacity = capacity
        self._msgs, self._addrs, self._iovs = _messages(capacity, 2)
        self._slots = []
        for i in range(capacity):
            head, body = self._iovs[2 * i], self._iovs[2 * i + 1]
            head.base, head.len = self.header, len(self.header)
            self._addrs[i].port = socket.htons(port)
            self._slots.append((self._addrs[i], body))
        self._n = 0
        self.sent = 0
        self.failed = 0                  # datagrams the kernel refused (counted, dropped)
        self.errors: dict[int, int] = {}  # errno -> how many

    def __len__(self) -> int:
        return self._n

    def add(self, fd: int, dst: IPv4Address, payload: bytes) -> int:
        """Queue one datagram (sending what is queued first when full); returns how many
        are queued now."""
        n = self._n
        if n == self.capacity:
            self.flush(fd)
            n = 0
        addr, body = self._slots[n]
        addr.addr = socket.htonl(int(dst))
        body.base = payload
        body.len = len(payload)
        self._n = n = n + 1
        return n

    def flush(self, fd: int) -> int:
        """Send what is queued; returns how many went out. A datagram the kernel refuses
        (ENOBUFS, EAGAIN with a full buffer, no route) is counted in failed and skipped:
        the rest still go."""
        n, i, sent = self._n, 0, 0
        base = ctypes.addressof(self._msgs)
        while i < n:
            r = _sendmmsg(fd, base + i * _MSG_SIZE, n - i, 0)
            if r > 0:
                i += r
                sent += r
                continue
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            self.errors[err] = self.errors.get(err, 0) + 1
            self.failed += 1
            i += 1
        for k in range(n):            # let the payloads go
            self._slots[k][1].base = None
        self._n = 0
        self.sent += sent
        return sent


class _Cmsghdr(ctypes.Structure):
    _fields_ = [("len", ctypes.c_size_t), ("level", ctypes.c_int), ("type", ctypes.c_int),
                ("drops", ctypes.c_uint32)]


class RecvBatch:
    """Up to `capacity` datagrams per recv(fd), each into a buffer of `size` bytes
    mapped once (a longer datagram comes back truncated, flagged). `dropped`: the
    kernel's count of datagrams dropped on the socket's full buffer, as the last datagram
    read carried it (SO_RXQ_OVFL; stays 0 unless the socket has that option on)."""

    def __init__(self, capacity: int = 64, size: int = 9216):
        if capacity < 1 or size < 1:
            raise ValueError("capacity and size must be at least 1")
        self.capacity, self.size = capacity, size
        self.dropped = 0
        self._msgs, self._addrs, self._iovs = _messages(capacity, 1)
        # anonymous memory the kernel maps on first write: only the pages that datagrams
        # were read into count in the daemon's RSS (an idle daemon's batch of 256 x
        # 9216 bytes would otherwise hold 2.3 MB it never touched)
        self._map = mmap.mmap(-1, capacity * size)
        self._buf = (ctypes.c_char * (capacity * size)).from_buffer(self._map)
        self._control = (_Cmsghdr * capacity)()
        base = ctypes.addressof(self._buf)
        for i in range(capacity):
            self._iovs[i].base = ctypes.c_char_p(base + i * size)
            self._iovs[i].len = size
            self._msgs[i].hdr.control = ctypes.addressof(self._control[i])
        self._hdrs = [m.hdr for m in self._msgs]
        self._dirty = capacity               # headers to reset before the next read
        self._msg_base = ctypes.addressof(self._msgs)
        self._addr_base = ctypes.addressof(self._addrs)
        self._buf_base = base

    def recv(self, fd: int) -> list[tuple[bytes, IPv4Address, bool]]:
        """What is waiting, without blocking: (datagram, source, truncated) each; [] when
        nothing is (or on an error other than EINTR: the socket's next read reports it)."""
        return [(data, IPv4Address(socket.ntohl(addr)), truncated)
                for data, addr, truncated in self.recv_raw(fd)]

    def recv_raw(self, fd: int) -> list[tuple[bytes, int, bool]]:
        """recv() with each source as the 32-bit address in network byte order (no
        address object made: the caller may keep them by that number)."""
        hdrs = self._hdrs
        namelen = ctypes.sizeof(_SockaddrIn)
        while True:
            # the kernel wrote only the headers of what it returned last time: those are
            # reset (a loop over all of them would cost more than a small batch's reads)
            for h in hdrs[:self._dirty]:
                h.namelen = namelen
                h.controllen = _CONTROL
                h.flags = 0
            self._dirty = 0
            r = _recvmmsg(fd, self._msg_base, self.capacity, MSG_DONTWAIT, None)
            if r >= 0:
                break
            if ctypes.get_errno() != errno.EINTR:
                return []
        self._dirty = r
        out = []
        size, base = self.size, self._buf_base
        string_at = ctypes.string_at
        # the headers and addresses read as bytes at once, not as a ctypes object each
        heads = string_at(self._msg_base, r * _MSG_SIZE)
        addrs = _addresses(r).unpack(string_at(self._addr_base, r * _ADDR_SIZE)) if r else ()
        flags_len = _FLAGS_LEN.unpack_from
        for i in range(r):
            flags, n = flags_len(heads, i * _MSG_SIZE + _FLAGS_AT)
            out.append((string_at(base + i * size, min(n, size)), addrs[i],
                        bool(flags & MSG_TRUNC)))
        if r:
            last = hdrs[r - 1]
            c = self._control[r - 1]
            if last.controllen >= ctypes.sizeof(_Cmsghdr) and c.level == SOL_SOCKET \
                    and c.type == SO_RXQ_OVFL:
                self.dropped = c.drops
        return out
