"""NHRP (RFC 2332 + Cisco DMVPN) codec: pure, no I/O."""

from .codec import decode, encode
from .constants import (
    Afn, CieCode, ErrorCode, ExtType, Flag, PacketType, ProtocolType, PACKET_TYPE_NAMES,
)
from .messages import (
    AuthExtension, Cie, CieListExtension, ErrorIndication, Extension, Packet, PurgeReply,
    PurgeRequest, RegistrationReply, RegistrationRequest, RequestReply, ResolutionReply,
    ResolutionRequest, TrafficIndication, VendorExtension, end_extension,
)
from .wire import NhrpDecodeError, checksum

__all__ = [
    "decode", "encode", "Afn", "CieCode", "ErrorCode", "ExtType", "Flag", "PacketType",
    "ProtocolType", "PACKET_TYPE_NAMES", "AuthExtension", "Cie", "CieListExtension",
    "ErrorIndication", "Extension", "Packet", "PurgeReply", "PurgeRequest",
    "RegistrationReply", "RegistrationRequest", "RequestReply", "ResolutionReply",
    "ResolutionRequest", "TrafficIndication", "VendorExtension", "end_extension",
    "NhrpDecodeError", "checksum",
]
