"""Typed access to the data-plane maps (bpf/xdmvpn_maps.h).

The controller is the only writer.  Addresses go in and come out as
``ipaddress`` objects; counters as dicts keyed by the enum names of the C
header (lower case, prefix dropped).
"""

from __future__ import annotations

import ctypes
import dataclasses
import ipaddress
import socket
import struct

from ..errors import XdmvpnError

# Mirrors of the C enums: keep in the same order as bpf/xdmvpn_maps.h.
PATHS = (
    "decap", "hairpin", "nhrp", "encap", "encap_nhs", "mcast",
    "pass_not_ipv4", "pass_not_gre", "pass_fragment", "pass_gre_other", "pass_wrong_key",
    "hairpin_slow", "trigger", "trigger_held", "miss", "event_lost", "mss_clamped",
    "encap_neigh", "nh_fill", "encap_route", "encap_xfrm", "hairpin_xfrm", "decap_esp",
)
DROPS = (
    "gre_truncated", "inner_malformed", "inner_proto", "nhrp_rate", "loop", "helper",
    "no_mapping", "no_route", "no_neigh", "too_big", "overlay_not_ipv4", "tail_call",
    "plaintext_ipsec", "ipsec_no_sa",
)
IPSEC_REQUIRED, IPSEC_SA_UP = 1, 2       # flags of xdmvpn_ipsec_peers
MAX_STATS = 147456          # XDMVPN_MAX_STATS
MAX_PEERS = 131072          # XDMVPN_MAX_PEERS
MAX_NHS = 4
MCAST_MAX = 64
EVENT_DATA = 128
EV_TRIGGER, EV_MISS = 1, 2

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network


_NATIVE = struct.Struct("=I")


def _be(addr) -> int:
    """IPv4 address as the integer whose memory holds it in network order."""
    if not isinstance(addr, IPv4):
        addr = IPv4(addr)
    return _NATIVE.unpack(addr.packed)[0]


def _addr(value: int) -> IPv4:
    return IPv4(struct.pack("=I", value & 0xFFFFFFFF))


class EventRecord(ctypes.Structure):
    """struct xdmvpn_event."""

    _fields_ = [
        ("type", ctypes.c_uint32), ("nbma_src", ctypes.c_uint32),
        ("inner_src", ctypes.c_uint32), ("inner_dst", ctypes.c_uint32),
        ("len", ctypes.c_uint32), ("pad", ctypes.c_uint32),
        ("data", ctypes.c_uint8 * EVENT_DATA),
    ]


@dataclasses.dataclass(frozen=True)
class Event:
    kind: str                 # "trigger" or "miss"
    nbma_src: IPv4 | None     # sender NBMA of a hairpinned packet
    src: IPv4                 # inner source
    dst: IPv4                 # inner destination
    packet: bytes             # start of the inner IPv4 packet


@dataclasses.dataclass(frozen=True)
class Mapping:
    """A host entry or shortcut prefix with its use statistics."""

    prefix: Net
    nbma: IPv4
    packets: int
    bytes: int
    last_used_ns: int         # bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC_COARSE), 0 = never


class DataplaneMaps:
    """The maps of one tunnel, from a bcc module compiled with its pin dir."""

    def __init__(self, module):
        self._m = module
        self.peers = module[b"xdmvpn_peers"]
        self.prefixes_map = module[b"xdmvpn_prefixes"]
        self.nhs_map = module[b"xdmvpn_nhs"]
        self.mcast_map = module[b"xdmvpn_mcast"]
        self.stats = module[b"xdmvpn_peer_stats"]
        self.paths = module[b"xdmvpn_paths"]
        self.drops_map = module[b"xdmvpn_drops"]
        self.nh_cache = module[b"xdmvpn_nh_cache"]
        self.ipsec_map = module[b"xdmvpn_ipsec_peers"]
        self._events: list[Event] = []
        self._ring_open = False
        self._free: list[int] | None = None

    # ---- statistics slots -------------------------------------------------
    def _used_slots(self) -> set[int]:
        used = {v.stats_idx for v in self.peers.values()}
        used |= {v.stats_idx for v in self.prefixes_map.values()}
        used |= {v.stats_idx for v in self.nhs_map.values() if v.nbma}
        return used

    def _new_slot(self) -> int:
        """A free statistics slot. The free list is built once from the maps (which may
        be adopted from a previous controller), then kept here: a hub registering
        100,000 spokes must not scan every entry per registration."""
        if self._free is None:
            used = self._used_slots()
            self._free = [i for i in range(MAX_STATS - 1, 0, -1) if i not in used]
        if not self._free:
            raise XdmvpnError("data plane statistics slots exhausted")
        i = self._free.pop()
        self._clear_slot(i)
        return i

    def _release(self, leaf) -> None:
        if self._free is not None and leaf is not None and leaf.stats_idx:
            self._free.append(leaf.stats_idx)

    def _clear_slot(self, idx: int) -> None:
        for table in (self.stats, self.nh_cache):
            table[table.Key(idx)] = table.Leaf(*[table.sLeaf() for _ in range(table.total_cpu)])

    def _slot_stats(self, idx: int) -> tuple[int, int, int]:
        per_cpu = self.stats[self.stats.Key(idx)]
        return (sum(s.packets for s in per_cpu), sum(s.bytes for s in per_cpu),
                max(s.last_used_ns for s in per_cpu))

    def _leaf(self, table, nbma, old=None):
        leaf = table.Leaf()
        leaf.nbma = _be(nbma)
        leaf.stats_idx = old.stats_idx if old is not None else self._new_slot()
        leaf.flags = 0
        return leaf

    # ---- NBMA mappings (host entries) -------------------------------------
    def add_mapping(self, overlay, nbma) -> None:
        """Overlay (protocol) address -> NBMA address; replaces an existing one."""
        key = self.peers.Key(_be(overlay))
        old = self.peers.get(key)
        self.peers[key] = self._leaf(self.peers, nbma, old)

    def remove_mapping(self, overlay) -> bool:
        key = self.peers.Key(_be(overlay))
        old = self.peers.get(key)
        try:
            del self.peers[key]
        except KeyError:
            return False
        self._release(old)
        return True

    def mappings(self) -> list[Mapping]:
        out = []
        for k, v in self.peers.items():
            p, b, t = self._slot_stats(v.stats_idx)
            out.append(Mapping(Net(f"{_addr(k.value)}/32"), _addr(v.nbma), p, b, t))
        return sorted(out, key=lambda m: m.prefix)

    # ---- shortcut prefixes --------------------------------------------------
    def _pkey(self, prefix):
        net = Net(prefix, strict=False)
        key = self.prefixes_map.Key()
        key.prefixlen = net.prefixlen
        key.addr = _be(net.network_address)
        return key

    def add_prefix(self, prefix, nbma) -> None:
        key = self._pkey(prefix)
        old = self.prefixes_map.get(key)
        self.prefixes_map[key] = self._leaf(self.prefixes_map, nbma, old)

    def remove_prefix(self, prefix) -> bool:
        key = self._pkey(prefix)
        old = self.prefixes_map.get(key)
        try:
            del self.prefixes_map[key]
        except KeyError:
            return False
        self._release(old)
        return True

    def prefixes(self) -> list[Mapping]:
        out = []
        for k, v in self.prefixes_map.items():
            p, b, t = self._slot_stats(v.stats_idx)
            out.append(Mapping(Net(f"{_addr(k.addr)}/{k.prefixlen}"), _addr(v.nbma), p, b, t))
        return sorted(out, key=lambda m: m.prefix)

    # ---- next-hop servers ----------------------------------------------------
    def set_nhs(self, nbmas) -> None:
        nbmas = [IPv4(a) for a in nbmas]
        if len(nbmas) > MAX_NHS:
            raise XdmvpnError(f"at most {MAX_NHS} NHS in the data plane")
        for i in range(MAX_NHS):
            key = self.nhs_map.Key(i)
            old = self.nhs_map[key]
            if i < len(nbmas):
                self.nhs_map[key] = self._leaf(self.nhs_map, nbmas[i], old if old.nbma else None)
            else:
                self.nhs_map[key] = self.nhs_map.Leaf()
                if old.nbma:
                    self._release(old)

    def nhs(self) -> list[IPv4]:
        return [_addr(v.nbma) for v in self.nhs_map.values() if v.nbma]

    # ---- multicast set ---------------------------------------------------------
    def set_multicast(self, nbmas) -> None:
        """Replace the multicast set (written back to front so that a copy in
        flight never sees a hole)."""
        nbmas = list(dict.fromkeys(IPv4(a) for a in nbmas))
        if len(nbmas) > MCAST_MAX:
            raise XdmvpnError(f"at most {MCAST_MAX} NBMA addresses in the multicast set")
        for i in reversed(range(MCAST_MAX)):
            val = _be(nbmas[i]) if i < len(nbmas) else 0
            self.mcast_map[self.mcast_map.Key(i)] = self.mcast_map.Leaf(val)

    def multicast(self) -> list[IPv4]:
        out = []
        for i in range(MCAST_MAX):
            v = self.mcast_map[self.mcast_map.Key(i)].value
            if not v:
                break
            out.append(_addr(v))
        return out

    def add_multicast(self, nbma) -> None:
        self.set_multicast(self.multicast() + [IPv4(nbma)])

    def remove_multicast(self, nbma) -> None:
        self.set_multicast([a for a in self.multicast() if a != IPv4(nbma)])

    # ---- IPsec peers ------------------------------------------------------------
    def set_ipsec_required(self, nbma, required: bool, sa_up: bool = False) -> None:
        """GRE with this NBMA address only through xfrm (programs compiled with
        ipsec): plaintext from it is dropped in XDP, plaintext to it at the
        underlay's egress; encap hands its packets to the stack while sa_up (a
        CHILD_SA is installed), else drops them.  required=False forgets it."""
        key = self.ipsec_map.Key(_be(nbma))
        if required:
            flags = IPSEC_REQUIRED | (IPSEC_SA_UP if sa_up else 0)
            self.ipsec_map[key] = self.ipsec_map.Leaf(flags)
        else:
            try:
                del self.ipsec_map[key]
            except KeyError:
                pass

    def ipsec_peers(self) -> dict[IPv4, dict[str, bool]]:
        return {_addr(k.value): {"required": bool(v.value & IPSEC_REQUIRED),
                                 "sa_up": bool(v.value & IPSEC_SA_UP)}
                for k, v in self.ipsec_map.items()}

    # ---- next-hop cache ----------------------------------------------------------
    def flush_nexthops(self) -> None:
        """Forget every cached underlay next hop (e.g. after a neighbour or route
        change); the programs look the fib up again on the next packet.  Without
        a flush an entry is refreshed after nexthop_cache_ms anyway."""
        for i in sorted(self._used_slots()):
            self._clear_nh(i)

    def _clear_nh(self, idx: int) -> None:
        t = self.nh_cache
        t[t.Key(idx)] = t.Leaf(*[t.sLeaf() for _ in range(t.total_cpu)])

    def nexthops(self) -> dict[IPv4, list[str]]:
        """Cached next-hop MACs per NBMA address (one per CPU that filled it)."""
        out: dict[IPv4, list[str]] = {}
        for i in sorted(self._used_slots()):
            for e in self.nh_cache[self.nh_cache.Key(i)]:
                if e.nbma:
                    out.setdefault(_addr(e.nbma), []).append(
                        ":".join(f"{b:02x}" for b in bytes(e.dmac)))
        return out

    # ---- counters ----------------------------------------------------------------
    @staticmethod
    def _sum(table, names) -> dict[str, dict[str, int]]:
        out = {}
        for i, name in enumerate(names):
            per_cpu = table[table.Key(i)]
            out[name] = {"packets": sum(c.packets for c in per_cpu),
                         "bytes": sum(c.bytes for c in per_cpu)}
        return out

    def counters(self) -> dict[str, dict[str, int]]:
        """Packets and bytes per path."""
        return self._sum(self.paths, PATHS)

    def drops(self) -> dict[str, dict[str, int]]:
        """Packets and bytes dropped per reason."""
        return self._sum(self.drops_map, DROPS)

    def reset_counters(self) -> None:
        for table in (self.paths, self.drops_map):
            for i in range(len(table)):
                table[table.Key(i)] = table.Leaf(*[table.sLeaf() for _ in range(table.total_cpu)])

    # ---- events ---------------------------------------------------------------------
    def _on_event(self, _ctx, data, _size) -> None:
        rec = ctypes.cast(data, ctypes.POINTER(EventRecord)).contents
        kind = {EV_TRIGGER: "trigger", EV_MISS: "miss"}.get(rec.type, str(rec.type))
        self._events.append(Event(
            kind, _addr(rec.nbma_src) if rec.type == EV_TRIGGER else None,
            _addr(rec.inner_src), _addr(rec.inner_dst), bytes(rec.data[: min(rec.len, EVENT_DATA)])))

    def events(self, timeout_ms: int = 0) -> list[Event]:
        """Events waiting in the ring buffer (waits up to timeout_ms for the first)."""
        if not self._ring_open:
            self._m[b"xdmvpn_events"].open_ring_buffer(self._on_event)
            self._ring_open = True
        if timeout_ms:
            self._m.ring_buffer_poll(timeout_ms)
        self._m.ring_buffer_consume()
        out, self._events = self._events, []
        return out


def inet_ntoa_be(value: int) -> str:
    return socket.inet_ntoa(struct.pack("=I", value))
