"""Hand-built frames for the data-plane tests and benchmarks (no scapy: every byte
explicit); checksums by xdmvpn.inet.checksum."""

from __future__ import annotations

import ipaddress
import struct

from xdmvpn.inet import checksum


def mac(s: str) -> bytes:
    return bytes.fromhex(s.replace(":", ""))


def eth(dst: str, src: str, proto: int = 0x0800) -> bytes:
    return mac(dst) + mac(src) + struct.pack("!H", proto)


def ipv4(src: str, dst: str, payload: bytes, proto: int = 47, ttl: int = 64, tos: int = 0,
         ident: int = 0, frag: int = 0x4000, options: bytes = b"", tot_len: int | None = None) -> bytes:
    ihl = 5 + len(options) // 4
    total = tot_len if tot_len is not None else ihl * 4 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, total, ident, frag, ttl, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options
    c = checksum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def gre(payload: bytes, proto: int = 0x0800, key: int | None = None, csum_word: bool = False,
        seq: int | None = None, version: int = 0, flags_extra: int = 0) -> bytes:
    flags = version | flags_extra
    opt = b""
    if csum_word:
        flags |= 0x8000
    if key is not None:
        flags |= 0x2000
    if seq is not None:
        flags |= 0x1000
    if csum_word:
        body = struct.pack("!HH", flags, proto) + b"\0\0\0\0"
        rest = (struct.pack("!I", key) if key is not None else b"") + \
               (struct.pack("!I", seq) if seq is not None else b"")
        c = checksum(body + rest + payload)
        return struct.pack("!HHHH", flags, proto, c, 0) + rest + payload
    if key is not None:
        opt += struct.pack("!I", key)
    if seq is not None:
        opt += struct.pack("!I", seq)
    return struct.pack("!HH", flags, proto) + opt + payload


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def icmp_echo(ident: int = 1, seq: int = 1, data: bytes = b"x" * 32) -> bytes:
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return hdr[:2] + struct.pack("!H", checksum(hdr)) + hdr[4:]


def tcp_syn(src: str, dst: str, mss: int | None, options_prefix: bytes = b"") -> bytes:
    opts = options_prefix + (struct.pack("!BBH", 2, 4, mss) if mss is not None else b"")
    while len(opts) % 4:
        opts += b"\x01"
    doff = 5 + len(opts) // 4
    hdr = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, doff << 4, 0x02, 64240, 0, 0) + opts
    return hdr[:16] + struct.pack("!H", tcp_csum(src, dst, hdr)) + hdr[18:]


def tcp_csum(src: str, dst: str, segment: bytes) -> int:
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + \
        struct.pack("!BBH", 0, 6, len(segment))
    return checksum(pseudo + segment)


def dec_ttl(inner: bytes) -> bytes:
    """The inner IPv4 packet as one forwarding hop leaves it."""
    b = bytearray(inner)
    b[8] -= 1
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", checksum(bytes(b[: (b[0] & 15) * 4])))
    return bytes(b)
