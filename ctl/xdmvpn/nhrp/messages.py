"""Typed NHRP messages. Every field the wire carries is kept, reserved ones included,
so that decoding then encoding gives back the original bytes."""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import Afn, AUTH_TYPE_CLEARTEXT, ExtType, PacketType, ProtocolType
from .wire import Address


@dataclass(slots=True)
class Cie:
    """Client Information Entry (RFC 2332 5.2.0.1)."""
    code: int = 0
    prefix_len: int = 0
    mtu: int = 0
    holdtime: int = 0
    client_nbma: Address = None
    client_proto: Address = None
    preference: int = 0
    client_nbma_sub: bytes = b""
    reserved: int = 0            # the 2 "unused" bytes
    nbma_type: int = 0           # type bits (0x40: E.164) of the NBMA address type/length
    sub_type: int = 0            # type bits of the subaddress type/length


@dataclass(slots=True)
class Extension:
    """An extension kept as opaque bytes: unknown types, End (type 0, empty body)."""
    type: int
    compulsory: bool = True
    body: bytes = b""
    reserved_bit: bool = False   # the "u" bit of the type word, unused by RFC 2332


@dataclass(slots=True)
class CieListExtension:
    """Responder address (3), forward/reverse transit NHS record (4, 5), Cisco NAT (9)."""
    type: int
    compulsory: bool = True
    cies: list[Cie] = field(default_factory=list)
    reserved_bit: bool = False


@dataclass(slots=True)
class AuthExtension:
    """Authentication (7). Cisco's form: a 4-byte type (1 = cleartext) then the secret."""
    auth_type: int = AUTH_TYPE_CLEARTEXT
    data: bytes = b""
    compulsory: bool = True
    reserved_bit: bool = False
    type: int = ExtType.AUTHENTICATION


@dataclass(slots=True)
class VendorExtension:
    """Vendor private (8): a 3-byte IEEE OUI then vendor data."""
    vendor_id: int = 0
    data: bytes = b""
    compulsory: bool = False
    reserved_bit: bool = False
    type: int = ExtType.VENDOR_PRIVATE


AnyExtension = Extension | CieListExtension | AuthExtension | VendorExtension


def end_extension() -> Extension:
    return Extension(ExtType.END, compulsory=True)


@dataclass(slots=True, kw_only=True)
class Packet:
    """Common header and mandatory-part addresses shared by every NHRP packet."""
    afn: int = Afn.IPV4
    protocol_type: int = ProtocolType.IPV4
    snap: bytes = b"\0\0\0\0\0"
    hop_count: int = 255
    version: int = 1
    src_nbma: Address = None
    src_proto: Address = None
    dst_proto: Address = None
    src_nbma_sub: bytes = b""
    nbma_type: int = 0           # type bits of ar$shtl
    sub_type: int = 0            # type bits of ar$sstl
    extensions: list[AnyExtension] = field(default_factory=list)
    trailer: bytes = b""         # bytes after the End extension, inside the packet size
    empty_extension_part: bool = False   # extension offset set, yet no extension follows
    # Filled in by decode (None on packets built here): what the wire said.
    checksum: int | None = None
    checksum_ok: bool | None = None
    packet_size: int | None = None
    extension_offset: int | None = None

    TYPE = 0

    @property
    def type(self) -> int:
        return self.TYPE

    def extension(self, ext_type: int) -> AnyExtension | None:
        for ext in self.extensions:
            if ext.type == ext_type:
                return ext
        return None

    def unknown_compulsory_extensions(self) -> list[int]:
        """Types of compulsory extensions this codec does not understand (RFC 2332 5.3:
        a responder must answer them with an error indication 'Unrecognized Extension')."""
        return [e.type for e in self.extensions
                if isinstance(e, Extension) and e.compulsory and e.type != ExtType.END]


@dataclass(slots=True, kw_only=True)
class RequestReply(Packet):
    """Resolution, registration and purge requests and replies: flags, request id, CIEs."""
    flags: int = 0
    request_id: int = 0
    cies: list[Cie] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class ResolutionRequest(RequestReply):
    TYPE = PacketType.RESOLUTION_REQUEST


@dataclass(slots=True, kw_only=True)
class ResolutionReply(RequestReply):
    TYPE = PacketType.RESOLUTION_REPLY


@dataclass(slots=True, kw_only=True)
class RegistrationRequest(RequestReply):
    TYPE = PacketType.REGISTRATION_REQUEST


@dataclass(slots=True, kw_only=True)
class RegistrationReply(RequestReply):
    TYPE = PacketType.REGISTRATION_REPLY


@dataclass(slots=True, kw_only=True)
class PurgeRequest(RequestReply):
    TYPE = PacketType.PURGE_REQUEST


@dataclass(slots=True, kw_only=True)
class PurgeReply(RequestReply):
    TYPE = PacketType.PURGE_REPLY


@dataclass(slots=True, kw_only=True)
class ErrorIndication(Packet):
    """RFC 2332 5.2.7: error code and offset, then the start of the packet in error."""
    TYPE = PacketType.ERROR_INDICATION
    error_code: int = 0
    error_offset: int = 0
    reserved: int = 0            # the 2 unused bytes before the error code
    contents: bytes = b""


@dataclass(slots=True, kw_only=True)
class TrafficIndication(Packet):
    """Cisco traffic indication (redirect). dst_proto is the SOURCE of the packet that
    triggered it; `contents` is the start of that packet (the spoke resolves its destination)."""
    TYPE = PacketType.TRAFFIC_INDICATION
    traffic_code: int = 0        # 0: NHRP traffic redirect
    reserved: int = 0            # 4 bytes where other types carry the request id
    contents: bytes = b""


TYPE_CLASSES: dict[int, type[Packet]] = {
    cls.TYPE: cls for cls in (
        ResolutionRequest, ResolutionReply, RegistrationRequest, RegistrationReply,
        PurgeRequest, PurgeReply, ErrorIndication, TrafficIndication)
}
