"""Registration requests on a fast path: the one layout spokes send, read and answered at
the byte level. Pure, no I/O.

Spokes (Cisco, FRR, xdmvpn) send one registration layout: IPv4 NBMA and protocol
addresses, one CIE, the responder address and transit extensions empty, perhaps
authentication and Cisco's NAT extension, then the End extension. `parse_registration`
recognises exactly that layout from a fixed-offset header and a walk of the extension
headers, without building messages, and returns None for everything else (which the full
decode handles, with its counters and errors). It accepts nothing that `decode` followed by
the engine's validation would refuse (checksum included), so a caller may act on what it
returns as on a decoded and validated packet.

`registration_reply` writes the reply the engine's full path writes for such a request
(byte for byte, tests/test_fastpath.py checks it against encode), from the request's bytes
and pieces the caller keeps per configuration (its responder address CIE and
authentication extension). `with_request_id` patches a kept reply for another request id,
updating its checksum incrementally (RFC 1624). `reply_like` makes the reply to another
request of the same layout (same `layout_key`, same code and pieces) from a kept one: only
the request id and the source addresses differ."""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..inet import checksum, checksum_update
from .constants import (
    EXT_COMPULSORY, EXT_TYPE_MASK, EXT_UNUSED_BIT, NHRP_VERSION, Afn, ExtType, PacketType,
    ProtocolType,
)

# fixed header (20 bytes), mandatory part (8) and its three IPv4 addresses (12)
_HEAD = struct.Struct("!HH5sBHHHBBBBBBHI4s4s4s")
_MAND_HEAD = struct.Struct("!HH5sBHHHBBBBBBHI")   # the same without addresses
_CIE = struct.Struct("!BBHHHBBBB")
_EXT = struct.Struct("!HH")
_CIE_AT = _HEAD.size                       # 40: the one CIE
_CIE_LEN = _CIE.size                       # 12 without its addresses
_RID = slice(24, 28)                       # request id
_SNAP = b"\0" * 5                          # what replies carry (the engine builds them so)
_PREFIX_UNIQUE = 0xFF
_IPV4_AFN, _IPV4_PROTOCOL = int(Afn.IPV4), int(ProtocolType.IPV4)
_REQUEST = int(PacketType.REGISTRATION_REQUEST)
_REPLY = int(PacketType.REGISTRATION_REPLY)
_END, _RESPONDER, _FORWARD, _REVERSE, _AUTH, _NAT = (int(t) for t in (
    ExtType.END, ExtType.RESPONDER_ADDRESS, ExtType.FORWARD_TRANSIT_NHS,
    ExtType.REVERSE_TRANSIT_NHS, ExtType.AUTHENTICATION, ExtType.NAT_ADDRESS))
_EMPTY_LISTS = frozenset({_RESPONDER, _FORWARD, _REVERSE})
# Cisco's NAT extension with 8 bytes is RFC 2735's VPN identifier to the decoder: not here
_NAT_OPAQUE_LEN = 8


class Registration(NamedTuple):
    """What the fast path needs of a registration request besides its request id and source
    addresses (bytes 24-35, read from the request itself): the same for every request of the
    same layout_key. Addresses as packed bytes; extensions as (type, type word, start, end)
    offsets into the request."""
    flags: int
    client_nbma: bytes          # b"" when the CIE carries none
    client_proto: bytes
    holdtime: int
    auth: bytes | None          # the authentication extension's body, None when absent
    nat: bool                   # a NAT extension is present
    nat_cies: int               # how many CIEs it holds
    extensions: tuple[tuple[int, int, int, int], ...]
    extension_offset: int       # where the one CIE ends


def _cie_fits(data: bytes, off: int, end: int) -> int:
    """Length of the CIE at off when it has the layout the engine accepts (IPv4 or no
    addresses, no subaddress, a prefix length within 32 or the unique 0xFF), else 0."""
    if off + _CIE_LEN > end:
        return 0
    plen, nl, sl, pl = data[off + 1], data[off + 8], data[off + 9], data[off + 10]
    if nl not in (0, 4) or sl or pl not in (0, 4) or (plen > 32 and plen != _PREFIX_UNIQUE):
        return 0
    n = _CIE_LEN + nl + pl
    return n if off + n <= end else 0


def layout_key(data: bytes) -> bytes:
    """A request without its checksum, request id and source addresses: requests with the
    same key have the same Registration (the source addresses are any IPv4 addresses, which
    the engine accepts alike), so a caller may keep parse results by it, and check only the
    checksum of the next request with that key."""
    return data[:12] + data[14:24] + data[36:]


def parse_registration(data: bytes) -> Registration | None:
    """The request in `data` (an NHRP packet; bytes past its size are ignored, as decode
    does) when it has the fast path's layout and a good checksum, else None."""
    if len(data) < _CIE_AT + _CIE_LEN:
        return None
    (afn, ptype, _snap, hops, size, _csum, extoff, version, op, shtl, sstl,
     spl, dpl, flags, _rid, _src_nbma, _src_proto, _dst) = _HEAD.unpack_from(data)
    if (op != _REQUEST or version != NHRP_VERSION or afn != _IPV4_AFN
            or ptype != _IPV4_PROTOCOL or shtl != 4 or sstl or spl != 4 or dpl != 4
            or not hops or size > len(data) or not _CIE_AT < extoff <= size):
        return None
    cie_len = _cie_fits(data, _CIE_AT, extoff)
    if _CIE_AT + cie_len != extoff:            # exactly one CIE
        return None
    nl, pl = data[_CIE_AT + 8], data[_CIE_AT + 10]
    a = _CIE_AT + _CIE_LEN
    client_nbma, client_proto = data[a:a + nl], data[a + nl:a + nl + pl]
    holdtime = (data[_CIE_AT + 6] << 8) | data[_CIE_AT + 7]
    exts: list[tuple[int, int, int, int]] = []
    seen = 0
    auth: bytes | None = None
    nat = False
    nat_cies = 0
    off = extoff
    while True:
        if off + 4 > size:
            return None                        # no End extension
        word, length = _EXT.unpack_from(data, off)
        etype = word & EXT_TYPE_MASK
        body, end = off + 4, off + 4 + length
        if word & EXT_UNUSED_BIT or end > size:
            return None
        if etype == _END:
            if length or end != size:          # the End extension closes the packet
                return None
            exts.append((etype, word, off, end))
            break
        if etype in _EMPTY_LISTS:
            if length:
                return None
        elif etype == _AUTH:
            if length < 4:
                return None
            auth = data[body:end]
        elif etype == _NAT:
            if length == _NAT_OPAQUE_LEN:
                return None
            c = body
            while c < end:
                n = _cie_fits(data, c, end)
                if not n:
                    return None
                c += n
                nat_cies += 1
            nat = True
        else:
            return None                        # vendor, unknown: the full path
        bit = 1 << etype
        if seen & bit:
            return None                        # at most once each
        seen |= bit
        exts.append((etype, word, off, end))
        off = end
    if checksum(data[:size]):
        return None
    return Registration(flags, client_nbma, client_proto, holdtime,
                        auth, nat, nat_cies, tuple(exts), extoff)


def extension_header(ext_type: int, compulsory: bool, length: int) -> bytes:
    return _EXT.pack((EXT_COMPULSORY if compulsory else 0) | ext_type, length)


def registration_reply(data: bytes, reg: Registration, code: int, *, hop_count: int,
                       dst_proto: bytes, responder: bytes, auth: bytes,
                       nat: bytes | None) -> bytes:
    """The registration reply to the request `data` (parsed as `reg`) with CIE code `code`.

    dst_proto: our protocol address (packed); responder: the body of our responder
    address extension (our CIE); auth: our whole authentication extension (b"" without a
    secret); nat: the CIE telling the client where we see it (when it is behind NAT and
    sent a NAT extension), None to echo its own NAT extension."""
    parts = [data[28:36], dst_proto, bytes((code,)), data[_CIE_AT + 1:reg.extension_offset]]
    has_responder = False
    for etype, word, start, end in reg.extensions:
        if etype == _RESPONDER:
            parts.append(extension_header(_RESPONDER, bool(word & EXT_COMPULSORY),
                                          len(responder)))
            parts.append(responder)
            has_responder = True
        elif etype == _AUTH:
            parts.append(auth)
        elif etype == _NAT and nat is not None:
            parts.append(extension_header(_NAT, bool(word & EXT_COMPULSORY), len(nat)))
            parts.append(nat)
        elif etype == _END:
            if not has_responder:          # added before the End extension
                parts.append(extension_header(_RESPONDER, True, len(responder)))
                parts.append(responder)
            parts.append(data[start:end])
        else:
            parts.append(data[start:end])
    body = b"".join(parts)
    extoff = 36 + len(dst_proto) + reg.extension_offset - _CIE_AT
    head = _MAND_HEAD.pack(_IPV4_AFN, _IPV4_PROTOCOL, _SNAP, hop_count, 28 + len(body), 0,
                           extoff, NHRP_VERSION, _REPLY, 4, 0, 4, len(dst_proto), reg.flags,
                           int.from_bytes(data[_RID], "big"))
    return b"".join((head[:12], checksum(head + body).to_bytes(2, "big"), head[14:], body))


def with_request_id(reply: bytes, request_id: bytes) -> bytes:
    """`reply` (with a good checksum) for another request id (4 bytes, network order):
    the id replaced and the checksum updated for it (RFC 1624; exact for any packet whose
    other words are not all zero, as an NHRP packet's version byte never is)."""
    value = checksum_update((reply[12] << 8) | reply[13], reply[_RID], request_id)
    return b"".join((reply[:12], value.to_bytes(2, "big"), reply[14:24], request_id,
                     reply[28:]))


def reply_like(reply: bytes, request: bytes) -> bytes:
    """The reply `registration_reply` writes for `request`, from the one it wrote for
    another request with the same layout_key, code and pieces (and no NAT CIE of the
    client's observed address): bytes 24-35 (request id, source NBMA and protocol
    addresses) are the request's, the checksum is recomputed."""
    head, body = reply[:12], b"".join((reply[14:24], request[24:36], reply[36:]))
    value = checksum(b"".join((head, b"\0\0", body)))
    return b"".join((head, value.to_bytes(2, "big"), body))
