"""Typed access to the data-plane maps (bpf/xdmvpn_maps.h, layouts in abi.py).

The controller is the only writer.  Addresses go in and come out as
``ipaddress`` objects; counters as dicts keyed by the enum names of the C
header (lower case, prefix dropped: abi.Path, abi.Drop).  Values are written
as abi.py's ctypes structures; the maps are reached through a bcc module for
now (its tables accept any ctypes object of the right layout).
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import ipaddress

from ..errors import XdmvpnError
from . import abi, libbpf
# Re-exported for the daemon: the table sizes it plans with.
from .abi import MAX_NHS, MAX_PEERS, MAX_STATS, MCAST_MAX  # noqa: F401

PATHS = tuple(p.name.lower() for p in abi.Path)
DROPS = tuple(d.name.lower() for d in abi.Drop)

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network
_be, _addr = abi.be32, abi.ipv4


@dataclasses.dataclass(frozen=True)
class Event:
    kind: str                 # abi.EventType name, lower case ("trigger")
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


def _u32(value: int) -> ctypes.c_uint32:
    return ctypes.c_uint32(value)


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
        self.known_map = module[b"xdmvpn_known_peers"]
        self._events: list[Event] = []
        self._ring_open = False
        self._free: list[int] | None = None
        self._known: collections.Counter[int] | None = None
        self._no_batch = False               # the kernel refused a batch write once

    # ---- statistics slots -------------------------------------------------
    def _used_slots(self) -> set[int]:
        used = {v.stats_idx for v in self.peers.values()}
        used |= {v.stats_idx for v in self.prefixes_map.values()}
        used |= {v.stats_idx for v in self.nhs_map.values() if v.nbma}
        return used

    def _new_slot(self) -> int:
        """A free statistics slot, cleared."""
        i = self._take_slot()
        self._clear_slot(i)
        return i

    def _take_slot(self) -> int:
        """A free statistics slot (not cleared yet). The free list is built once from the
        maps (which may be adopted from a previous controller), then kept here: a hub
        registering 100,000 spokes must not scan every entry per registration."""
        if self._free is None:
            used = self._used_slots()
            self._free = [i for i in range(MAX_STATS - 1, 0, -1) if i not in used]
        if not self._free:
            raise XdmvpnError("data plane statistics slots exhausted")
        return self._free.pop()

    def _clear_slot(self, idx: int) -> None:
        for table in (self.stats, self.nh_cache):
            self._zero_percpu(table, idx)

    @staticmethod
    def _zero_percpu(table, idx: int) -> None:
        table[table.Key(idx)] = table.Leaf(*[table.sLeaf() for _ in range(table.total_cpu)])

    def _slot_stats(self, idx: int) -> tuple[int, int, int]:
        per_cpu = self.stats[self.stats.Key(idx)]
        return (sum(s.packets for s in per_cpu), sum(s.bytes for s in per_cpu),
                max(s.last_used_ns for s in per_cpu))

    def _entry(self, nbma, old) -> abi.Peer:
        """The value for an entry toward nbma: the old entry's slot, else a new one."""
        return abi.Peer(nbma=_be(nbma), flags=0,
                        stats_idx=old.stats_idx if old is not None else self._new_slot())

    def _put(self, table, key, nbma) -> None:
        """table[key] -> nbma, keeping the entry's slot when it had one."""
        self._known_refs()                  # counted before the maps change
        old = table.get(key)
        new = self._entry(nbma, old)
        table[key] = new
        self._replaced(old, new)

    def _remove(self, table, key) -> bool:
        self._known_refs()
        old = table.get(key)
        if old is None or not self._del(table, key):
            return False
        self._replaced(old, None)
        return True

    def _replaced(self, old, new: abi.Peer | None, known: dict | None = None) -> None:
        """Bookkeeping after an entry changed from old to new (either may be None):
        the known NBMA addresses (written at once, or with known: collected there for
        one batch, 0 meaning gone) and the statistics slot."""
        if new is not None and (old is None or old.nbma != new.nbma):
            self._ref(new.nbma, +1, known)
        if old is not None and (new is None or old.nbma != new.nbma):
            self._ref(old.nbma, -1, known)
        if new is None and old is not None and self._free is not None and old.stats_idx:
            self._free.append(old.stats_idx)

    # ---- known NBMA addresses (NHRP admission) ------------------------------
    def _known_refs(self) -> collections.Counter[int]:
        """How many entries point at each NBMA address, counted once from the maps
        and written over xdmvpn_known_peers (adopted pins, or a controller that
        died between two writes), then kept here and in the map together."""
        if self._known is None:
            refs: collections.Counter[int] = collections.Counter()
            refs.update(v.nbma for v in self.peers.values())
            refs.update(v.nbma for v in self.prefixes_map.values())
            refs.update(v.nbma for v in self.nhs_map.values() if v.nbma)
            for k in [k.value for k in self.known_map.keys()]:
                if k not in refs:
                    self._del(self.known_map, _u32(k))
            for nbma, n in refs.items():
                self.known_map[_u32(nbma)] = _u32(n)
            self._known = refs
        return self._known

    def _ref(self, nbma: int, delta: int, known: dict | None = None) -> None:
        refs = self._known_refs()
        n = refs[nbma] + delta
        if n > 0:
            refs[nbma] = n
            if known is not None:
                known[nbma] = n
                return
            self.known_map[_u32(nbma)] = _u32(n)
        else:
            refs.pop(nbma, None)
            if known is not None:
                known.pop(nbma, None)
            self._del(self.known_map, _u32(nbma))

    def sync_known(self) -> None:
        """Make xdmvpn_known_peers match the entries now (start-up after adoption)."""
        self._known = None
        self._known_refs()

    def known_peers(self) -> dict[IPv4, int]:
        """NBMA addresses whose NHRP the data plane admits as known -> entries at them."""
        return {_addr(k.value): v.value for k, v in self.known_map.items()}

    @staticmethod
    def _del(table, key) -> bool:
        try:
            del table[key]
        except KeyError:
            return False
        return True

    # ---- NBMA mappings (host entries) -------------------------------------
    def add_mapping(self, overlay, nbma) -> None:
        """Overlay (protocol) address -> NBMA address; replaces an existing one."""
        self._put(self.peers, _u32(_be(overlay)), nbma)

    def add_mappings(self, pairs) -> None:
        """add_mapping for each (overlay, nbma) pair, the writes of each map together (one
        BPF_MAP_UPDATE_BATCH per map, not a system call per entry and map): what a hub
        does after a burst of registrations. Falls back to add_mapping one by one where
        the kernel has no batch writes."""
        latest = {_be(o): _be(n) for o, n in pairs}        # the last word per address
        if len(latest) < 2 or self._no_batch:
            for o, n in pairs:
                self.add_mapping(o, n)
            return
        self._known_refs()
        peers = self.peers
        entries, fresh, known = [], [], {}
        for key, nbma in latest.items():
            old = peers.get(_u32(key))
            if old is None:
                idx = self._take_slot()
                fresh.append(idx)
            else:
                idx = old.stats_idx
            new = abi.Peer(nbma=nbma, flags=0, stats_idx=idx)
            entries.append((key, new))
            self._replaced(old, new, known)
        try:
            for table in (self.stats, self.nh_cache):
                self._batch(table, fresh, None)
            self._batch(peers, [k for k, _ in entries], [v for _, v in entries])
            self._batch(self.known_map, list(known), [known[k] for k in known])
        except OSError:
            # no batch writes here: the same writes one by one (idempotent)
            self._no_batch = True
            for idx in fresh:
                self._clear_slot(idx)
            for key, new in entries:
                peers[_u32(key)] = new
            for k, n in known.items():
                self.known_map[_u32(k)] = _u32(n)

    @staticmethod
    def _batch(table, keys: list[int], values: list | None) -> None:
        """table[keys[i]] = values[i] in one system call (values None: zeros)."""
        if not keys:
            return
        n = len(keys)
        karr = (ctypes.c_uint32 * n)(*keys)
        if values is None:          # a per-CPU array's slots, zeroed on every CPU
            varr = (ctypes.c_uint8 * (n * ctypes.sizeof(table.Leaf)))()
        elif isinstance(values[0], abi.Peer):
            varr = (abi.Peer * n)(*values)
        else:
            varr = (ctypes.c_uint32 * n)(*values)
        libbpf.update_batch(table.map_fd, karr, varr, n)

    def remove_mapping(self, overlay) -> bool:
        return self._remove(self.peers, _u32(_be(overlay)))

    def mappings(self) -> list[Mapping]:
        out = []
        for k, v in self.peers.items():
            p, b, t = self._slot_stats(v.stats_idx)
            out.append(Mapping(Net(f"{_addr(k.value)}/32"), _addr(v.nbma), p, b, t))
        return sorted(out, key=lambda m: m.prefix)

    # ---- shortcut prefixes --------------------------------------------------
    @staticmethod
    def _pkey(prefix) -> abi.LpmKey:
        net = Net(prefix, strict=False)
        return abi.LpmKey(prefixlen=net.prefixlen, addr=_be(net.network_address))

    def add_prefix(self, prefix, nbma) -> None:
        self._put(self.prefixes_map, self._pkey(prefix), nbma)

    def remove_prefix(self, prefix) -> bool:
        return self._remove(self.prefixes_map, self._pkey(prefix))

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
        self._known_refs()
        for i in range(MAX_NHS):
            key = self.nhs_map.Key(i)
            old = self.nhs_map[key]
            old = old if old.nbma else None
            new = self._entry(nbmas[i], old) if i < len(nbmas) else None
            self.nhs_map[key] = new if new is not None else abi.Peer()
            self._replaced(old, new)

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
            self.mcast_map[self.mcast_map.Key(i)] = abi.Be32(val)

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
        key = _u32(_be(nbma))
        if required:
            flags = abi.IpsecFlag.REQUIRED | (abi.IpsecFlag.SA_UP if sa_up else 0)
            self.ipsec_map[key] = _u32(flags)
        else:
            self._del(self.ipsec_map, key)

    def ipsec_peers(self) -> dict[IPv4, dict[str, bool]]:
        return {_addr(k.value): {"required": bool(v.value & abi.IpsecFlag.REQUIRED),
                                 "sa_up": bool(v.value & abi.IpsecFlag.SA_UP)}
                for k, v in self.ipsec_map.items()}

    # ---- next-hop cache ----------------------------------------------------------
    def flush_nexthops(self) -> None:
        """Forget every cached underlay next hop (e.g. after a neighbour or route
        change); the programs look the fib up again on the next packet.  Without
        a flush an entry is refreshed after nexthop_cache_ms anyway."""
        for i in sorted(self._used_slots()):
            self._zero_percpu(self.nh_cache, i)

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
                self._zero_percpu(table, i)

    # ---- events ---------------------------------------------------------------------
    def _on_event(self, _ctx, data, _size) -> None:
        rec = ctypes.cast(data, ctypes.POINTER(abi.Event)).contents
        try:
            kind = abi.EventType(rec.type).name.lower()
        except ValueError:
            kind = str(rec.type)
        self._events.append(Event(
            kind, _addr(rec.nbma_src) if rec.type == abi.EventType.TRIGGER else None,
            _addr(rec.inner_src), _addr(rec.inner_dst),
            bytes(rec.data[: min(rec.len, abi.EVENT_DATA)])))

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
