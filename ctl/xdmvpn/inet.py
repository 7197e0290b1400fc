"""Internet basics shared by every part of xdmvpn: address type aliases and the RFC 1071
checksum. Pure, no I/O: the codec, the data-plane mirror, the lab and the benchmarks all
use these and define none of their own."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, \
    IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface


class HashedIPv4(IPv4Address):
    """An IPv4Address that computes its hash once. ipaddress computes it in Python on every
    dict or set look-up (hash(hex(int(self)))), and a hub's registration looks its
    addresses up a dozen times (cache, indexes, the data plane's mirror): the addresses
    the hot path makes (a datagram's source, a registration's tunnel address) are of this
    type. Equal to, hashing like, ordering and printing like the IPv4Address of the same
    value, and usable wherever one is."""

    __slots__ = ("_hash",)

    def __init__(self, address: int | str | bytes | IPv4Address) -> None:
        super().__init__(address)
        self._hash = hash(hex(int(self)))       # IPv4Address.__hash__'s value

    @classmethod
    def from_int(cls, value: int) -> HashedIPv4:
        """From a 32-bit integer (4 bytes a caller read): IPv4Address's own slot set
        directly, its range checks skipped (a third of the cost)."""
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"not a 32-bit address: {value}")
        a = object.__new__(cls)
        a._ip = value                           # type: ignore[attr-defined]
        a._hash = hash(hex(value))
        return a

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"IPv4Address('{self}')"


def no_host_of(addr: IPAddress, net: IPNetwork) -> bool:
    """addr is net's network address (IPv6: the subnet-router anycast address) or, in IPv4,
    its broadcast address: no station's. /31, /32 (and /127, /128) have none."""
    if net.num_addresses <= 2:
        return False
    return addr == net.network_address or (net.version == 4
                                           and addr == net.broadcast_address)


def checksum(data: bytes) -> int:
    """RFC 1071 one's complement checksum (IP, ICMP, GRE, NHRP); odd lengths are
    zero-padded. Over data whose checksum field holds the right value, the result is 0.

    The one's complement sum of the 16-bit words is the packet read as one big-endian
    integer modulo 0xFFFF (2**16 = 1 modulo 0xFFFF), with 0xFFFF, not 0, for a non-zero
    packet whose sum is a multiple of it: two C-level operations instead of a loop."""
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8
    total %= 0xFFFF
    if not total and any(data):
        total = 0xFFFF
    return ~total & 0xFFFF


def checksum_update(value: int, old: bytes, new: bytes) -> int:
    """A checksum `value` after some 16-bit aligned bytes of the data changed from `old` to
    `new` (as many bytes, an even number): RFC 1624, eqn. 3, HC' = ~(~HC + ~m + m'). Equal
    to checksum() over the changed data unless every other word of it is zero."""
    total = ~value & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~((old[i] << 8) | old[i + 1]) & 0xFFFF) + ((new[i] << 8) | new[i + 1])
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
