"""The one validation step between decode and the handlers.

The codec decodes whatever is well formed on the wire; this checks that what was decoded
makes sense for the packet type before any handler sees it, so handlers may rely on it:
NBMA addresses of the length the address family number says (IPv4 4 bytes, IPv6 16), no
E.164 or subaddress parts, protocol addresses of the length the protocol type says, prefix
lengths within the family (or 0xFF, which RFC 2332 5.2.0.1 asks for with the U bit), CIE
counts within the packet type's needs and a cap, every CIE of every CIE list checked the
same way. Per family, never against our own: IPv6 packets are valid packets."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ..nhrp import (
    Afn, Cie, CieListExtension, ErrorIndication, Packet, PacketType, ProtocolType,
    RequestReply,
)
from ..nhrp.wire import Address
from .params import Limits

_VERSION_OF_AFN = {Afn.IPV4: 4, Afn.IPV6: 6}
_VERSION_OF_PROTOCOL = {ProtocolType.IPV4: 4, ProtocolType.IPV6: 6}
_MANDATORY = 20                       # offset of the mandatory part
_ADDRESSES = 28                       # offset of its source NBMA address
PREFIX_UNIQUE = 0xFF                  # RFC 2332 5.2.0.1: the prefix length with the U bit

# Why a packet was refused, as counted in stats[("drop", reason)].
REASONS = ("bad_afn", "bad_protocol_type", "bad_nbma_address", "bad_protocol_address",
           "bad_cie", "too_many_cies", "missing_cie")


@dataclass(frozen=True)
class Problem:
    reason: str            # one of REASONS
    offset: int            # where in the packet (the error indication's offset)


def _is_ip(addr: Address, version: int) -> bool:
    return isinstance(addr, (IPv4Address, IPv6Address)) and addr.version == version


def _maybe_ip(addr: Address, version: int) -> bool:
    return addr is None or _is_ip(addr, version)


def _cie_ok(cie: Cie, nbma_v: int, proto_v: int) -> bool:
    bits = 32 if proto_v == 4 else 128
    return (_maybe_ip(cie.client_nbma, nbma_v) and _maybe_ip(cie.client_proto, proto_v)
            and not cie.client_nbma_sub and not cie.nbma_type and not cie.sub_type
            and (cie.prefix_len <= bits or cie.prefix_len == PREFIX_UNIQUE))


def prefix_len(plen: int, bits: int) -> int:
    """A CIE's prefix length as a length: 0 (unspecified) and 0xFF (unique) are the host."""
    return bits if plen == 0 or plen > bits else plen


def check(pkt: Packet, limits: Limits) -> Problem | None:
    """None when the packet may be handed to its handler, else why not."""
    nbma_v = _VERSION_OF_AFN.get(pkt.afn)   # type: ignore[call-overload]
    if nbma_v is None:
        return Problem("bad_afn", 0)
    proto_v = _VERSION_OF_PROTOCOL.get(pkt.protocol_type)   # type: ignore[call-overload]
    if proto_v is None:
        return Problem("bad_protocol_type", 2)
    if pkt.nbma_type or pkt.sub_type or pkt.src_nbma_sub:
        return Problem("bad_nbma_address", 18)
    if isinstance(pkt, ErrorIndication):
        # about a packet of ours: only its addresses are used, when they are addresses
        if not (_maybe_ip(pkt.src_nbma, nbma_v) and _maybe_ip(pkt.src_proto, proto_v)
                and _maybe_ip(pkt.dst_proto, proto_v)):
            return Problem("bad_protocol_address", _ADDRESSES)
        return None
    if not _is_ip(pkt.src_nbma, nbma_v):
        return Problem("bad_nbma_address", _ADDRESSES)
    if not (_is_ip(pkt.src_proto, proto_v) and _is_ip(pkt.dst_proto, proto_v)):
        return Problem("bad_protocol_address", _ADDRESSES)
    if isinstance(pkt, RequestReply):
        if len(pkt.cies) > limits.cies:
            return Problem("too_many_cies", _MANDATORY)
        if pkt.TYPE == PacketType.RESOLUTION_REPLY and not pkt.cies:
            return Problem("missing_cie", _MANDATORY)
        if not all(_cie_ok(c, nbma_v, proto_v) for c in pkt.cies):
            return Problem("bad_cie", _MANDATORY)
    for ext in pkt.extensions:
        if isinstance(ext, CieListExtension):
            if len(ext.cies) > limits.cies:
                return Problem("too_many_cies", pkt.extension_offset or 0)
            if not all(_cie_ok(c, nbma_v, proto_v) for c in ext.cies):
                return Problem("bad_cie", pkt.extension_offset or 0)
    return None
