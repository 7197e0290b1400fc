"""Internet basics shared by every part of xdmvpn: address type aliases and the RFC 1071
checksum. Pure, no I/O: the codec, the data-plane mirror, the lab and the benchmarks all
use these and define none of their own."""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, \
    IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface

_LITTLE = sys.byteorder == "little"


def checksum(data: bytes) -> int:
    """RFC 1071 one's complement checksum (IP, ICMP, GRE, NHRP); odd lengths are
    zero-padded. Over data whose checksum field holds the right value, the result is 0."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    total = sum(memoryview(data).cast("H"))   # native order, folded and swapped below
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    total = ~total & 0xFFFF
    # memoryview summed 16-bit words in native byte order: swap back to network order.
    return int.from_bytes(total.to_bytes(2, "little" if _LITTLE else "big"), "big")
