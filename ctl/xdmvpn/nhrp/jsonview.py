"""Plain-data views of decoded messages: the JSON of `xdmvpn decode --json` and one-line
summaries. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .codec import extension_body
from .constants import EXT_TYPE_NAMES, PACKET_TYPE_NAMES, ExtType
from .messages import (
    AnyExtension, AuthExtension, Cie, CieListExtension, ErrorIndication, Packet, RequestReply,
    TrafficIndication, VendorExtension,
)
from .wire import addr_text


_SHORT_EXT_NAMES = {
    ExtType.RESPONDER_ADDRESS: "responder", ExtType.FORWARD_TRANSIT_NHS: "fwd-transit",
    ExtType.REVERSE_TRANSIT_NHS: "rev-transit", ExtType.AUTHENTICATION: "auth",
    ExtType.VENDOR_PRIVATE: "vendor", ExtType.NAT_ADDRESS: "nat",
}


def _name(names: Mapping[Any, str], number: int, default: str) -> str:
    """The name of a type number in a table keyed by IntEnum members (ints compare equal)."""
    return names.get(number, default)


def cie_to_dict(cie: Cie) -> dict[str, Any]:
    return {
        "code": cie.code,
        "prefix_len": cie.prefix_len,
        "mtu": cie.mtu,
        "holdtime": cie.holdtime,
        "client_nbma": addr_text(cie.client_nbma),
        "client_nbma_sub": cie.client_nbma_sub.hex() or None,
        "client_proto": addr_text(cie.client_proto),
        "preference": cie.preference,
    }


def extension_to_dict(ext: AnyExtension) -> dict[str, Any]:
    d: dict[str, Any] = {
        "type": ext.type,
        "name": _name(EXT_TYPE_NAMES, ext.type, "Unknown"),
        "compulsory": ext.compulsory,
        "length": len(extension_body(ext)),
    }
    if isinstance(ext, CieListExtension):
        d["cies"] = [cie_to_dict(c) for c in ext.cies]
    elif isinstance(ext, AuthExtension):
        d["auth_type"] = ext.auth_type
        d["auth_data_len"] = len(ext.data)   # never print the secret itself
    elif isinstance(ext, VendorExtension):
        d["vendor_id"] = ext.vendor_id
        d["data"] = ext.data.hex()
    elif ext.type != ExtType.END:
        d["data"] = ext.body.hex()
    return d


def packet_to_dict(pkt: Packet) -> dict[str, Any]:
    d: dict[str, Any] = {
        "type": pkt.type,
        "type_name": _name(PACKET_TYPE_NAMES, pkt.type, "Unknown"),
        "afn": pkt.afn,
        "protocol_type": pkt.protocol_type,
        "hop_count": pkt.hop_count,
        "packet_size": pkt.packet_size,
        "checksum": pkt.checksum,
        "checksum_ok": pkt.checksum_ok,
        "extension_offset": pkt.extension_offset,
        "flags": pkt.flags if isinstance(pkt, RequestReply) else None,
        "request_id": pkt.request_id if isinstance(pkt, RequestReply) else None,
        "src_nbma": addr_text(pkt.src_nbma),
        "src_proto": addr_text(pkt.src_proto),
        "dst_proto": addr_text(pkt.dst_proto),
        "cies": [cie_to_dict(c) for c in pkt.cies] if isinstance(pkt, RequestReply) else [],
        "extensions": [extension_to_dict(e) for e in pkt.extensions],
    }
    if isinstance(pkt, ErrorIndication):
        d["error_code"] = pkt.error_code
        d["error_offset"] = pkt.error_offset
        d["contents_len"] = len(pkt.contents)
    elif isinstance(pkt, TrafficIndication):
        d["traffic_code"] = pkt.traffic_code
        d["contents_len"] = len(pkt.contents)
    return d


def packet_summary(pkt: Packet) -> str:
    """One readable line, in the spirit of tshark's info column."""
    name = _name(PACKET_TYPE_NAMES, pkt.type, f"type {pkt.type}")
    words = [name]
    if isinstance(pkt, RequestReply):
        words.append(f"id={pkt.request_id}")
        if pkt.cies and pkt.type % 2 == 0:
            words.append(f"code={pkt.cies[0].code}")
    if isinstance(pkt, ErrorIndication):
        words.append(f"error={pkt.error_code} offset={pkt.error_offset}")
    words.append(f"src={addr_text(pkt.src_proto) or '-'}@{addr_text(pkt.src_nbma) or '-'}")
    words.append(f"dst={addr_text(pkt.dst_proto) or '-'}")
    if isinstance(pkt, RequestReply):
        for cie in pkt.cies:
            words.append(f"cie={addr_text(cie.client_proto) or '-'}/{cie.prefix_len}"
                         f"@{addr_text(cie.client_nbma) or '-'} hold={cie.holdtime}")
    words.append(f"hops={pkt.hop_count}")
    exts = [_name(_SHORT_EXT_NAMES, e.type, f"ext{e.type}")
            for e in pkt.extensions if e.type != ExtType.END]
    if exts:
        words.append("ext=" + ",".join(exts))
    words.append("csum=" + ("ok" if pkt.checksum_ok else "BAD")
                 if pkt.checksum_ok is not None else "")
    return " ".join(w for w in words if w)
