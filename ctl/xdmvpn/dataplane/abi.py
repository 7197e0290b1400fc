"""The data plane's binary contract, mirrored from bpf/xdmvpn_consts.h,
bpf/xdmvpn_structs.h and bpf/xdmvpn_maps.h.

Plain ctypes and enums only (no bcc): what a process needs to read and write
the pinned maps through the bpf syscall.  tests/dataplane/test_abi.py checks
every size, offset, enum value, constant and map here against the compiler
and the kernel; change the C and this file together.

Addresses (``Be32`` fields, ``be32()``/``ipv4()``) are IPv4 addresses in
network byte order, stored as the native integer whose memory holds those
four bytes; IPv6 ones are ``In6`` (``in6()``/``ipv6()``), and an IPv6 NBMA
address of a ``Peer`` is ``xdmvpn_nbma6[stats_idx]`` with ``PEER_NBMA6`` in its
flags and ``fold6()`` of it in ``nbma``.  Per-CPU maps hold one value per
possible CPU (``percpu()``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import ipaddress
import struct
from typing import ClassVar, Union

# ---- sizes (xdmvpn_consts.h) ---------------------------------------------------------------
MAX_PEERS = 131072                 # XDMVPN_MAX_PEERS: host entries
MAX_PREFIXES = 16384               # XDMVPN_MAX_PREFIXES: shortcut prefixes
MAX_STATS = MAX_PEERS + MAX_PREFIXES  # XDMVPN_MAX_STATS: per-mapping slots, 0 unused
MAX_NHS = 4                        # XDMVPN_MAX_NHS
MAX_KNOWN = MAX_STATS              # XDMVPN_MAX_KNOWN: known NBMA addresses
MCAST_MAX = 64                     # XDMVPN_MCAST_MAX
RL_BITS = 12                       # XDMVPN_RL_BITS
RL_SLOTS = 1 << RL_BITS            # XDMVPN_RL_SLOTS
EVENT_DATA = 128                   # XDMVPN_EVENT_DATA
EVENTS_RING_BYTES = 256 * 1024     # XDMVPN_EVENTS_RING_BYTES
NHRP_SOURCES = 4096                # XDMVPN_NHRP_SOURCES
NHRP_UNKNOWN_SOURCES = 4096        # XDMVPN_NHRP_UNKNOWN_SOURCES
XDP_SLOTS = 10                      # XDMVPN_XDP_SLOTS
TC_SLOTS = 8                       # XDMVPN_TC_SLOTS
IPV6_EXT_MAX = 2                   # XDMVPN_IPV6_EXT_MAX: extension headers walked
IPV6_EXT_BYTES = 128               # XDMVPN_IPV6_EXT_BYTES: ... and their bytes at most
IPV6_MIN_MTU = 1280                # XDMVPN_IPV6_MIN_MTU
BENCH_TEMPLATE = 256               # XDMVPN_BENCH_TEMPLATE
BENCH_VERDICTS = 8                 # XDMVPN_BENCH_VERDICTS

# ---- protocol numbers ------------------------------------------------------------------------
GRE_PROTO_IPV4 = 0x0800            # XDMVPN_GRE_PROTO_IPV4
GRE_PROTO_NHRP = 0x2001            # XDMVPN_GRE_PROTO_NHRP
GRE_PROTO_IPV6 = 0x86DD            # XDMVPN_GRE_PROTO_IPV6
PEER_NBMA6 = 1                     # XDMVPN_PEER_NBMA6: xdmvpn_peer.flags


class DfMode(enum.IntEnum):
    """Values of XDMVPN_DF (-D): the outer header's DF bit."""

    CLEAR = 0
    SET = 1
    INHERIT = 2


class Family(enum.IntFlag):
    """XDMVPN_F_*: families of one packet (xdmvpn_scratch.flags, xdmvpn_event.flags)."""

    OUTER6 = 1
    INNER6 = 2
    PEER6 = 4
    FILLED = 8
    TRIGGERED = 16
    NEIGH = 32


class IpsecFlag(enum.IntFlag):
    """Values of xdmvpn_ipsec_peers (XDMVPN_IPSEC_*)."""

    REQUIRED = 1
    SA_UP = 2


# ---- enums (xdmvpn_structs.h) ----------------------------------------------------------------
class Path(enum.IntEnum):
    """enum xdmvpn_path: index of xdmvpn_paths.  Counter names are the lower-case names."""

    DECAP = 0
    HAIRPIN = 1
    NHRP = 2
    ENCAP = 3
    ENCAP_NHS = 4
    MCAST = 5
    PASS_NOT_IPV4 = 6
    PASS_NOT_GRE = 7
    PASS_FRAGMENT = 8
    PASS_GRE_OTHER = 9
    PASS_WRONG_KEY = 10
    HAIRPIN_SLOW = 11
    TRIGGER = 12
    TRIGGER_HELD = 13
    EVENT_LOST = 14
    MSS_CLAMPED = 15
    ENCAP_NEIGH = 16
    NH_FILL = 17
    ENCAP_ROUTE = 18
    ENCAP_XFRM = 19
    HAIRPIN_XFRM = 20
    DECAP_ESP = 21
    NHRP_UNKNOWN = 22
    PASS_IPV6_EXT = 23
    PTB = 24
    PTB_HELD = 25


class Drop(enum.IntEnum):
    """enum xdmvpn_drop: index of xdmvpn_drops.  Counter names are the lower-case names."""

    GRE_TRUNCATED = 0
    INNER_MALFORMED = 1
    INNER_PROTO = 2
    OVERLAY_NOT_IPV4 = 3
    LOOP = 4
    TOO_BIG = 5
    NHRP_RATE = 6
    NHRP_UNKNOWN_RATE = 7
    NHRP_UNKNOWN_BUDGET = 8
    PLAINTEXT_IPSEC = 9
    IPSEC_NO_SA = 10
    ESP_NOT_OURS = 11
    NO_MAPPING = 12
    NO_ROUTE = 13
    NO_NEIGH = 14
    NH_SLOT = 15
    TAIL_CALL = 16
    SCRATCH = 17
    BOUNDS = 18
    ADJUST_HEAD = 19
    ADJUST_ROOM = 20
    CHANGE_HEAD = 21
    CHANGE_TYPE = 22
    CLONE = 23
    REDIRECT = 24
    OUTER_MALFORMED = 25
    MCAST_SCOPE = 26


class EventType(enum.IntEnum):
    """enum xdmvpn_event_type: struct xdmvpn_event.type."""

    TRIGGER = 1


# skb->cb words of the tc programs (XDMVPN_CB_*).
CB_NBMA, CB_PATH, CB_STATS, CB_MSS, CB_FLAGS = range(5)


class XdpSlot(enum.IntEnum):
    """Slots of xdmvpn_xdp_progs (XDMVPN_XDP_*)."""

    DECAP = 0
    HAIRPIN = 1
    NHRP = 2
    ENTRY = 3
    UNDERLAY6 = 4
    INNER4 = 5
    INNER6 = 6
    HAIRPIN6 = 7
    NHFILL = 8
    TRIGGER = 9


class TcSlot(enum.IntEnum):
    """Slots of xdmvpn_progs (XDMVPN_PROG_*)."""

    MCAST = 0
    BUILD = 1
    MSS = 2
    ENCAP6 = 3
    BUILD6 = 4
    MCAST6 = 5
    PTB = 6
    NHFILL = 7


# ---- structures (xdmvpn_structs.h) -------------------------------------------------------------
Be32 = ctypes.c_uint32   # __be32: network-order bytes (see be32/ipv4)


class In6(ctypes.Structure):
    """struct xdmvpn_in6: an IPv6 address, four words as they lie in memory."""

    c_name: ClassVar[str] = "xdmvpn_in6"
    _fields_ = [("w", Be32 * 4)]


class Count(ctypes.Structure):
    """struct xdmvpn_count: value of xdmvpn_paths and xdmvpn_drops (per CPU)."""

    c_name: ClassVar[str] = "xdmvpn_count"
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class Peer(ctypes.Structure):
    """struct xdmvpn_peer: value of xdmvpn_peers, xdmvpn_prefixes and xdmvpn_nhs."""

    c_name: ClassVar[str] = "xdmvpn_peer"
    _fields_ = [("nbma", Be32), ("stats_idx", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class LpmKey(ctypes.Structure):
    """struct xdmvpn_lpm_key: key of xdmvpn_prefixes."""

    c_name: ClassVar[str] = "xdmvpn_lpm_key"
    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", Be32)]


class Lpm6Key(ctypes.Structure):
    """struct xdmvpn_lpm6_key: key of xdmvpn_prefixes6."""

    c_name: ClassVar[str] = "xdmvpn_lpm6_key"
    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", In6)]


class PeerStats(ctypes.Structure):
    """struct xdmvpn_peer_stats: value of xdmvpn_peer_stats (per CPU)."""

    c_name: ClassVar[str] = "xdmvpn_peer_stats"
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("last_used_ns", ctypes.c_uint64)]


class RlSlot(ctypes.Structure):
    """struct xdmvpn_rl_slot: value of xdmvpn_ratelimit."""

    c_name: ClassVar[str] = "xdmvpn_rl_slot"
    _fields_ = [("stamp_ns", ctypes.c_uint64), ("src", Be32), ("dst", Be32)]


class NextHop(ctypes.Structure):
    """struct xdmvpn_nh: value of xdmvpn_nh_cache (per CPU)."""

    c_name: ClassVar[str] = "xdmvpn_nh"
    _fields_ = [("stamp_ns", ctypes.c_uint64), ("nbma", Be32), ("ifindex", ctypes.c_uint32),
                ("mtu", ctypes.c_uint16), ("dmac", ctypes.c_uint8 * 6),
                ("smac", ctypes.c_uint8 * 6), ("pad", ctypes.c_uint16)]


class Scratch(ctypes.Structure):
    """struct xdmvpn_scratch: value of xdmvpn_scratch (per CPU)."""

    c_name: ClassVar[str] = "xdmvpn_scratch"
    _fields_ = [("bytes", ctypes.c_uint64), ("strip", ctypes.c_uint32), ("nbma", Be32),
                ("stats_idx", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("sender", In6),
                ("src", In6), ("dst", In6), ("tos", ctypes.c_uint8), ("ttl", ctypes.c_uint8),
                ("frag", ctypes.c_uint16), ("pad", ctypes.c_uint32)]


class Bucket(ctypes.Structure):
    """struct xdmvpn_bucket: an NHRP admission budget (GCRA theoretical arrival time)."""

    c_name: ClassVar[str] = "xdmvpn_bucket"
    _fields_ = [("tat_ns", ctypes.c_uint64)]


class Event(ctypes.Structure):
    """struct xdmvpn_event: a record of the xdmvpn_events ring buffer."""

    c_name: ClassVar[str] = "xdmvpn_event"
    _fields_ = [("type", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("nbma_src", In6),
                ("inner_src", In6), ("inner_dst", In6), ("len", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("data", ctypes.c_uint8 * EVENT_DATA)]


class BenchTemplate(ctypes.Structure):
    """struct xdmvpn_bench_tmpl: value of xdmvpn_bench_pkt (benchmark build)."""

    c_name: ClassVar[str] = "xdmvpn_bench_tmpl"
    _fields_ = [("len", ctypes.c_uint32), ("data", ctypes.c_uint8 * BENCH_TEMPLATE)]


class BenchPace(ctypes.Structure):
    """struct xdmvpn_bench_pace: value of xdmvpn_bench_pacer (benchmark build)."""

    c_name: ClassVar[str] = "xdmvpn_bench_pace"
    _fields_ = [("interval_ns", ctypes.c_uint64), ("next_ns", ctypes.c_uint64),
                ("sent", ctypes.c_uint64)]


STRUCTS: tuple[type[ctypes.Structure], ...] = (
    In6, Count, Peer, LpmKey, Lpm6Key, PeerStats, RlSlot, NextHop, Scratch, Bucket, Event,
    BenchTemplate, BenchPace)


def percpu(value: type[ctypes.Structure] | type[ctypes.c_uint64], ncpus: int) -> type:
    """The ctypes type of one per-CPU map value: ncpus values, each rounded up to 8
    bytes by the kernel (every per-CPU value type here is a multiple of 8 already)."""
    if ctypes.sizeof(value) % 8:
        raise ValueError(f"{value.__name__}: per-CPU values must be a multiple of 8 bytes")
    return value * ncpus


# ---- maps (xdmvpn_maps.h) -----------------------------------------------------------------------
class MapType(enum.IntEnum):
    """enum bpf_map_type (uapi/linux/bpf.h) of the types used here."""

    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LPM_TRIE = 11
    RINGBUF = 27


BPF_F_NO_PREALLOC = 1    # uapi/linux/bpf.h map flag

CType = Union[type[ctypes.Structure], type[ctypes.c_uint32], type[ctypes.c_uint64]]


@dataclasses.dataclass(frozen=True)
class MapSpec:
    """One map as the kernel sees it.  key/value None: the ring buffer (sizes 0)."""

    name: str
    type: MapType
    key: CType | None
    value: CType | None
    max_entries: int
    flags: int = 0

    @property
    def key_size(self) -> int:
        return ctypes.sizeof(self.key) if self.key is not None else 0

    @property
    def value_size(self) -> int:
        return ctypes.sizeof(self.value) if self.value is not None else 0


_U32, _U64 = ctypes.c_uint32, ctypes.c_uint64

# Every map of the production build, in the order of xdmvpn_maps.h; all pinned
# under /sys/fs/bpf/xdmvpn/<tunnel>/<name> with a pin directory.
MAPS: tuple[MapSpec, ...] = (
    MapSpec("xdmvpn_peers", MapType.HASH, Be32, Peer, MAX_PEERS),
    MapSpec("xdmvpn_prefixes", MapType.LPM_TRIE, LpmKey, Peer, MAX_PREFIXES,
            BPF_F_NO_PREALLOC),
    MapSpec("xdmvpn_peers6", MapType.HASH, In6, Peer, MAX_PEERS),
    MapSpec("xdmvpn_prefixes6", MapType.LPM_TRIE, Lpm6Key, Peer, MAX_PREFIXES,
            BPF_F_NO_PREALLOC),
    MapSpec("xdmvpn_nbma6", MapType.ARRAY, _U32, In6, MAX_STATS),
    MapSpec("xdmvpn_nhs", MapType.ARRAY, _U32, Peer, MAX_NHS),
    MapSpec("xdmvpn_mcast", MapType.ARRAY, _U32, Be32, MCAST_MAX),
    MapSpec("xdmvpn_mcast6", MapType.ARRAY, _U32, In6, MCAST_MAX),
    MapSpec("xdmvpn_local6", MapType.ARRAY, _U32, In6, 1),
    MapSpec("xdmvpn_ipsec_peers", MapType.HASH, Be32, _U32, MAX_PEERS, BPF_F_NO_PREALLOC),
    MapSpec("xdmvpn_known_peers", MapType.HASH, Be32, _U32, MAX_KNOWN, BPF_F_NO_PREALLOC),
    MapSpec("xdmvpn_known_peers6", MapType.HASH, In6, _U32, MAX_KNOWN, BPF_F_NO_PREALLOC),
    MapSpec("xdmvpn_peer_stats", MapType.PERCPU_ARRAY, _U32, PeerStats, MAX_STATS),
    MapSpec("xdmvpn_paths", MapType.PERCPU_ARRAY, _U32, Count, len(Path)),
    MapSpec("xdmvpn_drops", MapType.PERCPU_ARRAY, _U32, Count, len(Drop)),
    MapSpec("xdmvpn_ratelimit", MapType.ARRAY, _U32, RlSlot, RL_SLOTS),
    MapSpec("xdmvpn_nhrp_buckets", MapType.LRU_HASH, Be32, Bucket, NHRP_SOURCES),
    MapSpec("xdmvpn_nhrp_unknown_buckets", MapType.LRU_HASH, Be32, Bucket,
            NHRP_UNKNOWN_SOURCES),
    MapSpec("xdmvpn_nhrp_buckets6", MapType.LRU_HASH, In6, Bucket, NHRP_SOURCES),
    MapSpec("xdmvpn_nhrp_unknown_buckets6", MapType.LRU_HASH, In6, Bucket,
            NHRP_UNKNOWN_SOURCES),
    MapSpec("xdmvpn_nhrp_budget", MapType.ARRAY, _U32, Bucket, 1),
    MapSpec("xdmvpn_ptb_budget", MapType.ARRAY, _U32, Bucket, 1),
    MapSpec("xdmvpn_nh_cache", MapType.PERCPU_ARRAY, _U32, NextHop, MAX_STATS),
    MapSpec("xdmvpn_scratch", MapType.PERCPU_ARRAY, _U32, Scratch, 1),
    MapSpec("xdmvpn_progs", MapType.PROG_ARRAY, _U32, _U32, TC_SLOTS),
    MapSpec("xdmvpn_xdp_progs", MapType.PROG_ARRAY, _U32, _U32, XDP_SLOTS),
    MapSpec("xdmvpn_events", MapType.RINGBUF, None, None, EVENTS_RING_BYTES),
)
# Only in a test build (XDMVPN_TEST_CLOCK): the programs' clock, in ns.
TEST_MAPS: tuple[MapSpec, ...] = (
    MapSpec("xdmvpn_test_clock", MapType.ARRAY, _U32, _U64, 1),
)
# Only in a benchmark build (XDMVPN_BENCH).
BENCH_MAPS: tuple[MapSpec, ...] = (
    MapSpec("xdmvpn_bench_verdicts", MapType.PERCPU_ARRAY, _U32, _U64, BENCH_VERDICTS),
    MapSpec("xdmvpn_bench_pkt", MapType.ARRAY, _U32, BenchTemplate, 1),
    MapSpec("xdmvpn_bench_pacer", MapType.ARRAY, _U32, BenchPace, 1),
    MapSpec("xdmvpn_bench_sunk", MapType.PERCPU_ARRAY, _U32, _U64, 1),
)
MAP: dict[str, MapSpec] = {m.name: m for m in MAPS + TEST_MAPS + BENCH_MAPS}

# ---- programs --------------------------------------------------------------------------------
# Function names and their tail-call slots (None: an entry program, attached).
XDP_PROGRAMS: dict[str, XdpSlot | None] = {
    "xdmvpn_xdp_decap": XdpSlot.DECAP, "xdmvpn_xdp_hairpin": XdpSlot.HAIRPIN,
    "xdmvpn_xdp_nhrp": XdpSlot.NHRP, "xdmvpn_xdp_inner4": XdpSlot.INNER4,
    "xdmvpn_xdp_inner6": XdpSlot.INNER6, "xdmvpn_xdp_hairpin6": XdpSlot.HAIRPIN6,
    "xdmvpn_xdp_nhfill": XdpSlot.NHFILL, "xdmvpn_xdp_trigger": XdpSlot.TRIGGER,
    "xdmvpn_xdp_underlay6": XdpSlot.UNDERLAY6, "xdmvpn_xdp_underlay": XdpSlot.ENTRY,
    "xdmvpn_xdp_pass": None,
}
TC_PROGRAMS: dict[str, TcSlot | None] = {
    "xdmvpn_tc_mcast": TcSlot.MCAST, "xdmvpn_tc_mcast6": TcSlot.MCAST6,
    "xdmvpn_tc_ptb": TcSlot.PTB, "xdmvpn_tc_nhfill": TcSlot.NHFILL, "xdmvpn_tc_build": TcSlot.BUILD,
    "xdmvpn_tc_build6": TcSlot.BUILD6, "xdmvpn_tc_mss": TcSlot.MSS,
    "xdmvpn_tc_encap6": TcSlot.ENCAP6, "xdmvpn_tc_encap": None, "xdmvpn_tc_sink": None,
}
# tc programs compiled only with XDMVPN_IPSEC.
IPSEC_PROGRAMS = ("xdmvpn_tc_guard", "xdmvpn_tc_esp_rx")

# ---- what the C names -----------------------------------------------------------------------------
# C macro -> value, for every constant above that has one.
CONSTANTS: dict[str, int] = {
    "XDMVPN_MAX_PEERS": MAX_PEERS, "XDMVPN_MAX_PREFIXES": MAX_PREFIXES,
    "XDMVPN_MAX_STATS": MAX_STATS, "XDMVPN_MAX_NHS": MAX_NHS, "XDMVPN_MAX_KNOWN": MAX_KNOWN,
    "XDMVPN_MCAST_MAX": MCAST_MAX, "XDMVPN_RL_BITS": RL_BITS, "XDMVPN_RL_SLOTS": RL_SLOTS,
    "XDMVPN_EVENT_DATA": EVENT_DATA, "XDMVPN_EVENTS_RING_BYTES": EVENTS_RING_BYTES,
    "XDMVPN_NHRP_SOURCES": NHRP_SOURCES, "XDMVPN_NHRP_UNKNOWN_SOURCES": NHRP_UNKNOWN_SOURCES,
    "XDMVPN_XDP_SLOTS": XDP_SLOTS, "XDMVPN_TC_SLOTS": TC_SLOTS,
    "XDMVPN_BENCH_TEMPLATE": BENCH_TEMPLATE, "XDMVPN_BENCH_VERDICTS": BENCH_VERDICTS,
    "XDMVPN_GRE_PROTO_IPV4": GRE_PROTO_IPV4, "XDMVPN_GRE_PROTO_NHRP": GRE_PROTO_NHRP,
    "XDMVPN_GRE_PROTO_IPV6": GRE_PROTO_IPV6, "XDMVPN_PEER_NBMA6": PEER_NBMA6,
    "XDMVPN_IPV6_EXT_MAX": IPV6_EXT_MAX, "XDMVPN_IPV6_EXT_BYTES": IPV6_EXT_BYTES,
    "XDMVPN_IPV6_MIN_MTU": IPV6_MIN_MTU,
    "XDMVPN_CB_NBMA": CB_NBMA, "XDMVPN_CB_PATH": CB_PATH, "XDMVPN_CB_STATS": CB_STATS,
    "XDMVPN_CB_MSS": CB_MSS, "XDMVPN_CB_FLAGS": CB_FLAGS,
    "BPF_F_NO_PREALLOC": BPF_F_NO_PREALLOC,
}


@dataclasses.dataclass(frozen=True)
class EnumSpec:
    """How a Python enum is spelt in C: member X is <prefix>X; sentinel, when the
    C enum has one, is the count (or the next value) after the last member."""

    enum: type[enum.IntEnum] | type[enum.IntFlag]
    prefix: str
    sentinel: str | None = None


ENUMS: tuple[EnumSpec, ...] = (
    EnumSpec(Path, "XDMVPN_PATH_", "XDMVPN_PATH_MAX"),
    EnumSpec(Drop, "XDMVPN_DROP_", "XDMVPN_DROP_MAX"),
    EnumSpec(EventType, "XDMVPN_EV_", "XDMVPN_EV_MAX"),
    EnumSpec(XdpSlot, "XDMVPN_XDP_"),
    EnumSpec(TcSlot, "XDMVPN_PROG_"),
    EnumSpec(DfMode, "XDMVPN_DF_"),
    EnumSpec(IpsecFlag, "XDMVPN_IPSEC_"),
    EnumSpec(Family, "XDMVPN_F_"),
    EnumSpec(MapType, "BPF_MAP_TYPE_"),
)


# ---- addresses -----------------------------------------------------------------------------------
_NATIVE_U32 = struct.Struct("=I")


def be32(addr: ipaddress.IPv4Address | str | int) -> int:
    """An IPv4 address as a Be32 field holds it (network-order bytes in a native u32)."""
    if not isinstance(addr, ipaddress.IPv4Address):
        addr = ipaddress.IPv4Address(addr)
    value: int = _NATIVE_U32.unpack(addr.packed)[0]
    return value


def ipv4(value: int) -> ipaddress.IPv4Address:
    """The address a Be32 field holds."""
    return ipaddress.IPv4Address(_NATIVE_U32.pack(value & 0xFFFFFFFF))


def in6(addr: ipaddress.IPv6Address | str) -> In6:
    """An IPv6 address as an In6 (its bytes as they are on the wire)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        addr = ipaddress.IPv6Address(addr)
    return In6.from_buffer_copy(addr.packed)


def ipv6(value: In6) -> ipaddress.IPv6Address:
    """The address an In6 holds."""
    return ipaddress.IPv6Address(bytes(value))


def fold6(addr: ipaddress.IPv6Address | str) -> int:
    """The Be32 stand-in of an IPv6 NBMA address in Peer.nbma (xdmvpn_fold6: the xor of
    its four words); 1 when that is 0, so that an entry never looks empty."""
    w = in6(addr).w
    return (w[0] ^ w[1] ^ w[2] ^ w[3]) or 1
