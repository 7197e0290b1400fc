"""NHRP numbers: RFC 2332 and the Cisco DMVPN additions (traffic indication, NAT extension)."""

from enum import IntEnum

NHRP_VERSION = 1          # ar$op.version for RFC 2332
GRE_PROTO_NHRP = 0x2001   # GRE protocol type carrying NHRP
FIXED_HEADER_LEN = 20
CIE_FIXED_LEN = 12
EXT_HEADER_LEN = 4


class Afn(IntEnum):
    """Address family numbers (IANA) of the NBMA addresses."""
    IPV4 = 1
    IPV6 = 2


class ProtocolType(IntEnum):
    """Protocol types (Ethertypes) of the internetworking layer addresses."""
    IPV4 = 0x0800
    IPV6 = 0x86DD


class PacketType(IntEnum):
    RESOLUTION_REQUEST = 1
    RESOLUTION_REPLY = 2
    REGISTRATION_REQUEST = 3
    REGISTRATION_REPLY = 4
    PURGE_REQUEST = 5
    PURGE_REPLY = 6
    ERROR_INDICATION = 7
    TRAFFIC_INDICATION = 8   # Cisco DMVPN phase 3 (redirect)


PACKET_TYPE_NAMES = {
    PacketType.RESOLUTION_REQUEST: "Resolution Request",
    PacketType.RESOLUTION_REPLY: "Resolution Reply",
    PacketType.REGISTRATION_REQUEST: "Registration Request",
    PacketType.REGISTRATION_REPLY: "Registration Reply",
    PacketType.PURGE_REQUEST: "Purge Request",
    PacketType.PURGE_REPLY: "Purge Reply",
    PacketType.ERROR_INDICATION: "Error Indication",
    PacketType.TRAFFIC_INDICATION: "Traffic Indication",
}


class ExtType(IntEnum):
    END = 0
    RESPONDER_ADDRESS = 3
    FORWARD_TRANSIT_NHS = 4
    REVERSE_TRANSIT_NHS = 5
    AUTHENTICATION = 7
    VENDOR_PRIVATE = 8
    NAT_ADDRESS = 9          # Cisco: CIEs with the post-NAT addresses


EXT_TYPE_NAMES = {
    ExtType.END: "End of Extensions",
    ExtType.RESPONDER_ADDRESS: "Responder Address",
    ExtType.FORWARD_TRANSIT_NHS: "Forward Transit NHS Record",
    ExtType.REVERSE_TRANSIT_NHS: "Reverse Transit NHS Record",
    ExtType.AUTHENTICATION: "Authentication",
    ExtType.VENDOR_PRIVATE: "Vendor Private",
    ExtType.NAT_ADDRESS: "Cisco NAT Address",
}

# Extensions whose body is a list of Client Information Entries.
CIE_LIST_EXTENSIONS = frozenset({
    ExtType.RESPONDER_ADDRESS, ExtType.FORWARD_TRANSIT_NHS,
    ExtType.REVERSE_TRANSIT_NHS, ExtType.NAT_ADDRESS,
})
# Extensions that carry one meaning and so may appear at most once per packet:
# a second authentication or NAT extension is how a forger would hide one.
SINGLE_EXTENSIONS = CIE_LIST_EXTENSIONS | {ExtType.AUTHENTICATION}

EXT_COMPULSORY = 0x8000
EXT_UNUSED_BIT = 0x4000
EXT_TYPE_MASK = 0x3FFF

AUTH_TYPE_CLEARTEXT = 1    # Cisco: 4-byte type 1, then the secret (at most 8 bytes)
CISCO_AUTH_MAX_SECRET = 8


class Flag(IntEnum):
    """Mandatory-part flag bits; the meaning of the top bits depends on the packet type."""
    # resolution request/reply
    Q = 0x8000   # requester is a router
    A = 0x4000   # authoritative
    D = 0x2000   # stable association
    U_RES = 0x1000  # uniqueness
    S = 0x0800   # stable binding
    # registration request/reply
    U_REG = 0x8000  # uniqueness
    # purge request/reply
    N = 0x8000   # no reply expected
    # Cisco: sender supports the NAT extension
    CISCO_NAT = 0x0002


class CieCode(IntEnum):
    SUCCESS = 0
    ADMINISTRATIVELY_PROHIBITED = 4
    INSUFFICIENT_RESOURCES = 5
    NO_BINDING = 12
    BINDING_NOT_UNIQUE = 13
    ALREADY_REGISTERED = 14   # unique address already registered by another NBMA


class ErrorCode(IntEnum):
    UNRECOGNIZED_EXTENSION = 1
    LOOP_DETECTED = 3             # RFC 2332 5.2.7 (FRR and OpenNHRP wrongly use 2)
    PROTOCOL_ADDRESS_UNREACHABLE = 6
    PROTOCOL_ERROR = 7
    SDU_SIZE_EXCEEDED = 8
    INVALID_EXTENSION = 9
    INVALID_RESOLUTION_REPLY = 10
    AUTHENTICATION_FAILURE = 11
    HOP_COUNT_EXCEEDED = 15
