"""Pure NHRP codec: bytes <-> typed messages. No I/O.

decode() raises NhrpDecodeError (and nothing else) for any input; every read is bounded by
the packet size, and every loop consumes at least four bytes, so no input hangs it or makes
it allocate more than a small multiple of its length.
"""

from __future__ import annotations

import struct

from .constants import (
    CIE_FIXED_LEN, CIE_LIST_EXTENSIONS, EXT_COMPULSORY, EXT_HEADER_LEN, EXT_TYPE_MASK,
    EXT_UNUSED_BIT, FIXED_HEADER_LEN, NHRP_VERSION, SINGLE_EXTENSIONS, ExtType,
)
from .messages import (
    AnyExtension, AuthExtension, Cie, CieListExtension, ErrorIndication, Extension, Packet,
    RequestReply, TrafficIndication, TYPE_CLASSES, VendorExtension,
)
from .wire import NhrpDecodeError, addr_from_bytes, addr_to_bytes, checksum

_FIXED = struct.Struct("!HH5sBHHHBBBB")     # afn .. sstl, 20 bytes
_MAND_RR = struct.Struct("!BBHI")           # src/dst proto len, flags, request id
_MAND_ERR = struct.Struct("!BBHHH")         # src/dst proto len, unused, code, offset
_MAND_TI = struct.Struct("!BBHI")           # src/dst proto len, traffic code, unused
_CIE = struct.Struct("!BBHHHBBBB")          # code, prefix, unused, mtu, holdtime, tl, stl, pl, pref
_EXT = struct.Struct("!HH")
_TL_LEN = 0x3F
_TL_TYPE = 0xC0

# Every packet must arrive with a hop count of at least 1 (strict decoding): Cisco drops
# registrations and traffic indications that arrive with 0.
_HOP_COUNT_ZERO = ("hop count", 9, "0 (must be at least 1)")


def protocol_warnings(pkt: Packet) -> list[str]:
    """What strict decoding rejects in a well-formed packet, as messages naming the field
    and offset (for tools that show such packets rather than drop them)."""
    if pkt.hop_count == 0:
        return [str(NhrpDecodeError(*_HOP_COUNT_ZERO))]
    return []


def decode(data: bytes, *, strict: bool = True) -> Packet:
    """Decode one NHRP packet (the GRE payload). Bytes past the packet size are ignored.

    strict: also reject what is well formed but must not be acted on (hop count 0).
    """
    data = bytes(data)
    n = len(data)
    if n < FIXED_HEADER_LEN:
        raise NhrpDecodeError("fixed header", 0, f"{n} bytes, need {FIXED_HEADER_LEN}")
    (afn, ptype, snap, hops, size, csum, extoff, version, op, shtl, sstl) = \
        _FIXED.unpack_from(data, 0)
    if version != NHRP_VERSION:
        raise NhrpDecodeError("version", 16, f"{version} is not NHRP version 1")
    cls = TYPE_CLASSES.get(op)
    if cls is None:
        raise NhrpDecodeError("packet type", 17, f"unknown type {op}")
    if size < FIXED_HEADER_LEN:
        raise NhrpDecodeError("packet size", 10, f"{size} is smaller than the fixed header")
    if size > n:
        raise NhrpDecodeError("packet size", 10, f"{size} exceeds the {n} bytes available")
    if strict and hops == 0:
        raise NhrpDecodeError("hop count", 9, "0 (must be at least 1)")
    if extoff:
        if extoff < FIXED_HEADER_LEN:
            raise NhrpDecodeError("extension offset", 14,
                                  f"{extoff} points inside the fixed header")
        if extoff > size:
            raise NhrpDecodeError("extension offset", 14,
                                  f"{extoff} is past the packet size {size}")
        mand_end = extoff
    else:
        mand_end = size
    wire = data[:size]
    pkt = cls()
    pkt.afn, pkt.protocol_type, pkt.snap, pkt.hop_count = afn, ptype, snap, hops
    pkt.version = version
    pkt.nbma_type, pkt.sub_type = shtl & _TL_TYPE, sstl & _TL_TYPE
    pkt.packet_size, pkt.extension_offset, pkt.checksum = size, extoff, csum
    pkt.checksum_ok = checksum(wire) == 0
    _decode_mandatory(pkt, wire, mand_end, shtl & _TL_LEN, sstl & _TL_LEN)
    if extoff:
        _decode_extensions(pkt, wire, extoff, size)
        pkt.empty_extension_part = not pkt.extensions
    return pkt


def _need(wire: bytes, off: int, count: int, end: int, field: str) -> None:
    if off + count > end:
        raise NhrpDecodeError(field, off, f"needs {count} bytes, {max(end - off, 0)} left")


def _decode_mandatory(pkt: Packet, wire: bytes, end: int, shl: int, ssl: int) -> None:
    off = FIXED_HEADER_LEN
    _need(wire, off, 8, end, "mandatory part")
    if isinstance(pkt, RequestReply):
        spl, dpl, pkt.flags, pkt.request_id = _MAND_RR.unpack_from(wire, off)
    elif isinstance(pkt, ErrorIndication):
        spl, dpl, pkt.reserved, pkt.error_code, pkt.error_offset = \
            _MAND_ERR.unpack_from(wire, off)
    elif isinstance(pkt, TrafficIndication):
        spl, dpl, pkt.traffic_code, pkt.reserved = _MAND_TI.unpack_from(wire, off)
    else:   # pragma: no cover - TYPE_CLASSES holds only these three kinds
        raise NhrpDecodeError("packet type", 17, f"no layout for {type(pkt).__name__}")
    off += 8
    _need(wire, off, shl + ssl + spl + dpl, end, "mandatory part addresses")
    pkt.src_nbma = addr_from_bytes(wire[off:off + shl])
    off += shl
    pkt.src_nbma_sub = wire[off:off + ssl]
    off += ssl
    pkt.src_proto = addr_from_bytes(wire[off:off + spl])
    off += spl
    pkt.dst_proto = addr_from_bytes(wire[off:off + dpl])
    off += dpl
    if isinstance(pkt, RequestReply):
        pkt.cies = _decode_cies(wire, off, end, "CIE")
    elif isinstance(pkt, (ErrorIndication, TrafficIndication)):
        pkt.contents = wire[off:end]


def _decode_cies(wire: bytes, off: int, end: int, what: str) -> list[Cie]:
    cies = []
    while off < end:
        _need(wire, off, CIE_FIXED_LEN, end, what)
        code, plen, resv, mtu, hold, tl, stl, pl, pref = _CIE.unpack_from(wire, off)
        nl, sl = tl & _TL_LEN, stl & _TL_LEN
        start = off + CIE_FIXED_LEN
        _need(wire, start, nl + sl + pl, end, f"{what} addresses")
        a = start + nl
        b = a + sl
        cies.append(Cie(code, plen, mtu, hold, addr_from_bytes(wire[start:a]),
                        addr_from_bytes(wire[b:b + pl]), pref, wire[a:b], resv,
                        tl & _TL_TYPE, stl & _TL_TYPE))
        off = b + pl
    return cies


def _decode_extensions(pkt: Packet, wire: bytes, off: int, end: int) -> None:
    seen = set()
    exts = pkt.extensions
    while off < end:
        _need(wire, off, EXT_HEADER_LEN, end, "extension header")
        word, length = _EXT.unpack_from(wire, off)
        etype = word & EXT_TYPE_MASK
        comp = bool(word & EXT_COMPULSORY)
        resv = bool(word & EXT_UNUSED_BIT)
        body_off = off + EXT_HEADER_LEN
        _need(wire, body_off, length, end, f"extension {etype} body")
        body = wire[body_off:body_off + length]
        if etype in seen and etype in SINGLE_EXTENSIONS:
            raise NhrpDecodeError(f"extension {etype}", off, "appears more than once")
        seen.add(etype)
        exts.append(_decode_extension(etype, comp, resv, body, wire, body_off))
        off = body_off + length
        if etype == ExtType.END:
            if length:
                raise NhrpDecodeError("end extension", off - length - EXT_HEADER_LEN,
                                      f"length {length}, must be 0")
            pkt.trailer = wire[off:end]
            return


def _decode_extension(etype: int, comp: bool, resv: bool, body: bytes, wire: bytes,
                      body_off: int) -> AnyExtension:
    if etype in CIE_LIST_EXTENSIONS:
        if etype == ExtType.NAT_ADDRESS and len(body) == 8:
            # RFC 2735 reuses type 9 for an 8-byte VPN identifier: not a CIE list.
            return Extension(etype, comp, body, resv)
        end = body_off + len(body)
        return CieListExtension(etype, comp, _decode_cies(wire, body_off, end,
                                                          f"extension {etype} CIE"), resv)
    if etype == ExtType.AUTHENTICATION:
        if len(body) < 4:
            raise NhrpDecodeError("authentication extension", body_off,
                                  f"body {len(body)} bytes, need at least 4")
        return AuthExtension(int.from_bytes(body[:4], "big"), body[4:], comp, resv)
    if etype == ExtType.VENDOR_PRIVATE:
        if len(body) < 3:
            raise NhrpDecodeError("vendor private extension", body_off,
                                  f"body {len(body)} bytes, need at least 3")
        return VendorExtension(int.from_bytes(body[:3], "big"), body[3:], comp, resv)
    return Extension(etype, comp, body, resv)


# ---------------------------------------------------------------------------- encode

def encode(pkt: Packet) -> bytes:
    """Encode a message; packet size, extension offset and checksum are computed."""
    src_nbma = addr_to_bytes(pkt.src_nbma)
    src_proto = addr_to_bytes(pkt.src_proto)
    dst_proto = addr_to_bytes(pkt.dst_proto)
    spl, dpl = len(src_proto), len(dst_proto)
    if isinstance(pkt, RequestReply):
        mand = _MAND_RR.pack(spl, dpl, pkt.flags, pkt.request_id)
    elif isinstance(pkt, ErrorIndication):
        mand = _MAND_ERR.pack(spl, dpl, pkt.reserved, pkt.error_code, pkt.error_offset)
    elif isinstance(pkt, TrafficIndication):
        mand = _MAND_TI.pack(spl, dpl, pkt.traffic_code, pkt.reserved)
    else:
        raise TypeError(f"cannot encode {type(pkt).__name__}")
    parts = [b"", mand, src_nbma, pkt.src_nbma_sub, src_proto, dst_proto]
    if isinstance(pkt, RequestReply):
        for cie in pkt.cies:
            _encode_cie(cie, parts)
    else:
        parts.append(pkt.contents)
    mand_len = sum(map(len, parts))
    if pkt.extensions or pkt.empty_extension_part:
        extoff = FIXED_HEADER_LEN + mand_len
        for ext in pkt.extensions:
            _encode_extension(ext, parts)
        parts.append(pkt.trailer)
    else:
        extoff = 0
    size = FIXED_HEADER_LEN + sum(map(len, parts))
    parts[0] = _FIXED.pack(pkt.afn, pkt.protocol_type, pkt.snap, pkt.hop_count, size, 0,
                           extoff, pkt.version, pkt.TYPE,
                           pkt.nbma_type | _len6(src_nbma, "source NBMA address"),
                           pkt.sub_type | _len6(pkt.src_nbma_sub, "source NBMA subaddress"))
    raw = bytearray(b"".join(parts))
    raw[12:14] = checksum(bytes(raw)).to_bytes(2, "big")
    return bytes(raw)


def _len6(raw: bytes, what: str) -> int:
    if len(raw) > _TL_LEN:
        raise ValueError(f"{what} is {len(raw)} bytes, at most {_TL_LEN} fit")
    return len(raw)


def _encode_cie(cie: Cie, parts: list[bytes]) -> None:
    nbma = addr_to_bytes(cie.client_nbma)
    proto = addr_to_bytes(cie.client_proto)
    parts.append(_CIE.pack(cie.code, cie.prefix_len, cie.reserved, cie.mtu, cie.holdtime,
                           cie.nbma_type | _len6(nbma, "client NBMA address"),
                           cie.sub_type | _len6(cie.client_nbma_sub, "client NBMA subaddress"),
                           len(proto), cie.preference))
    parts.append(nbma)
    parts.append(cie.client_nbma_sub)
    parts.append(proto)


def _ext_word(ext: AnyExtension) -> int:
    return ((EXT_COMPULSORY if ext.compulsory else 0) | (EXT_UNUSED_BIT if ext.reserved_bit else 0)
            | (ext.type & EXT_TYPE_MASK))


def extension_body(ext: AnyExtension) -> bytes:
    """The wire body of one extension (without its 4-byte type/length header)."""
    if isinstance(ext, CieListExtension):
        sub: list[bytes] = []
        for cie in ext.cies:
            _encode_cie(cie, sub)
        body = b"".join(sub)
    elif isinstance(ext, AuthExtension):
        body = ext.auth_type.to_bytes(4, "big") + ext.data
    elif isinstance(ext, VendorExtension):
        body = ext.vendor_id.to_bytes(3, "big") + ext.data
    else:
        body = ext.body
    return body


def _encode_extension(ext: AnyExtension, parts: list[bytes]) -> None:
    body = extension_body(ext)
    parts.append(_EXT.pack(_ext_word(ext), len(body)))
    parts.append(body)


def encode_cie(cie: Cie) -> bytes:
    """The wire form of one CIE (what encode writes for it)."""
    parts: list[bytes] = []
    _encode_cie(cie, parts)
    return b"".join(parts)


def encode_extension(ext: AnyExtension) -> bytes:
    """The wire form of one extension, its type/length header included."""
    parts: list[bytes] = []
    _encode_extension(ext, parts)
    return b"".join(parts)
