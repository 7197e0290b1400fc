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


def tcp_syn(src: str, dst: str, mss: int | None, options_prefix: bytes = b"", csum=None
            ) -> bytes:
    """A TCP SYN with an MSS option after options_prefix (NOP padded); its checksum by
    csum(src, dst, segment), IPv4's pseudo-header by default."""
    opts = options_prefix + (struct.pack("!BBH", 2, 4, mss) if mss is not None else b"")
    while len(opts) % 4:
        opts += b"\x01"
    doff = 5 + len(opts) // 4
    hdr = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, doff << 4, 0x02, 64240, 0, 0) + opts
    return hdr[:16] + struct.pack("!H", (csum or tcp_csum)(src, dst, hdr)) + hdr[18:]


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


# ---- IPv6 ---------------------------------------------------------------------------------

def ipv6(src: str, dst: str, payload: bytes, nh: int = 47, hlim: int = 64, tclass: int = 0,
         plen: int | None = None, flow: int = 0) -> bytes:
    """An IPv6 header (RFC 8200) + payload; plen overrides the payload length field."""
    first = (6 << 28) | (tclass << 20) | flow
    return struct.pack("!IHBB", first, len(payload) if plen is None else plen, nh, hlim) + \
        ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload


def ext6(nh: int, body: bytes = b"\x01\x04\x00\x00\x00\x00", segments_left: int | None = None
         ) -> bytes:
    """One extension header (hop-by-hop, destination options, routing) in front of
    what follows, whose type is nh: next header, length in 8-byte units beyond the
    first, then body (padded to a multiple of 8; a routing header's type and segments
    left are its first two bytes)."""
    if segments_left is not None:
        body = bytes([4, segments_left]) + body[2:]
    data = bytes([nh, 0]) + body
    while len(data) % 8:
        data += b"\0"
    return bytes([nh, len(data) // 8 - 1]) + data[2:]


def _pseudo6(src: str, dst: str, nh: int, length: int) -> bytes:
    return ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + \
        struct.pack("!I3xB", length, nh)


def icmp6_echo(src: str, dst: str, ident: int = 1, seq: int = 1, data: bytes = b"x" * 32
               ) -> bytes:
    hdr = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + data
    c = checksum(_pseudo6(src, dst, 58, len(hdr)) + hdr)
    return hdr[:2] + struct.pack("!H", c) + hdr[4:]


def icmp6_ptb(src: str, dst: str, mtu: int, quoted: bytes) -> bytes:
    """ICMPv6 Packet Too Big (RFC 4443 3.2) from src to dst, as the whole IPv6 packet."""
    msg = struct.pack("!BBHI", 2, 0, 0, mtu) + quoted
    c = checksum(_pseudo6(src, dst, 58, len(msg)) + msg)
    return ipv6(src, dst, msg[:2] + struct.pack("!H", c) + msg[4:], nh=58, hlim=255)


def tcp_syn6(src: str, dst: str, mss: int | None, options_prefix: bytes = b"") -> bytes:
    return tcp_syn(src, dst, mss, options_prefix, csum=tcp6_csum)


def tcp6_csum(src: str, dst: str, segment: bytes) -> int:
    return checksum(_pseudo6(src, dst, 6, len(segment)) + segment)


def dec_hlim(inner: bytes) -> bytes:
    """The inner IPv6 packet as one forwarding hop leaves it."""
    b = bytearray(inner)
    b[7] -= 1
    return bytes(b)
