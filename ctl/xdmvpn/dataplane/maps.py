"""Typed access to the data-plane maps (bpf/xdmvpn_maps.h, layouts in abi.py).

The controller is the only writer.  Addresses go in and come out as
``ipaddress`` objects (or strings) of either family: an IPv4 overlay address
or prefix goes to xdmvpn_peers/xdmvpn_prefixes, an IPv6 one to their IPv6
twins, and either may point at an IPv4 or an IPv6 NBMA address (an IPv6 one is
kept in xdmvpn_nbma6 at the entry's slot).  Counters come out as dicts keyed
by the enum names of the C header (lower case, prefix dropped: abi.Path,
abi.Drop).  Values are written
as abi.py's ctypes structures; the maps are reached through a bcc module for
now (its tables accept any ctypes object of the right layout).
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import functools
import ipaddress
import struct
from socket import htonl, ntohl

from ..errors import XdmvpnError
from . import abi, libbpf
# Re-exported for the daemon: the table sizes it plans with.
from .abi import MAX_NHS, MAX_PEERS, MAX_STATS, MCAST_MAX  # noqa: F401

PATHS = tuple(p.name.lower() for p in abi.Path)
# the tables with a value per statistics slot (an entry's stats_idx)
SLOT_TABLES = ("xdmvpn_peer_stats", "xdmvpn_nh_cache")
DROPS = tuple(d.name.lower() for d in abi.Drop)

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_be, _addr = abi.be32, abi.ipv4


assert ctypes.sizeof(abi.Peer) == 12, "abi.Peer: three 32-bit fields (_peers4)"


@functools.lru_cache(maxsize=64)
def _be32s(n: int) -> struct.Struct:
    """n 32-bit integers in network byte order (map keys of IPv4 addresses)."""
    return struct.Struct(f"!{n}I")


@functools.lru_cache(maxsize=64)
def _peers4(n: int) -> struct.Struct:
    """n abi.Peer values: nbma (an address's integer through htonl: network order in
    memory), stats_idx, flags."""
    return struct.Struct("=" + "III" * n)


def _ip(value, what: str = "address") -> Addr:
    """An address of either family, or a one-line XdmvpnError."""
    if isinstance(value, (IPv4, IPv6)):
        return value
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise XdmvpnError(f"not an IPv4 or IPv6 {what}: {value!r}") from None


def _net(value) -> Net:
    try:
        return ipaddress.ip_network(str(value) if not isinstance(value, (
            ipaddress.IPv4Network, ipaddress.IPv6Network)) else value, strict=False)
    except ValueError:
        raise XdmvpnError(f"not an IPv4 or IPv6 prefix: {value!r}") from None


@dataclasses.dataclass(frozen=True)
class Event:
    kind: str                 # abi.EventType name, lower case ("trigger")
    nbma_src: Addr | None     # sender NBMA of a hairpinned packet (IPv4 or IPv6)
    src: Addr                 # inner source (IPv4 or IPv6, as dst)
    dst: Addr                 # inner destination
    packet: bytes             # start of the inner packet


@dataclasses.dataclass(frozen=True)
class Mapping:
    """A host entry or shortcut prefix with its use statistics."""

    prefix: Net               # IPv4 or IPv6 (a host entry: /32 or /128)
    nbma: Addr                # IPv4 or IPv6
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
        self.peers6 = module[b"xdmvpn_peers6"]
        self.prefixes6_map = module[b"xdmvpn_prefixes6"]
        self.nbma6_map = module[b"xdmvpn_nbma6"]
        self.nhs_map = module[b"xdmvpn_nhs"]
        self.mcast_map = module[b"xdmvpn_mcast"]
        self.mcast6_map = module[b"xdmvpn_mcast6"]
        self.local6_map = module[b"xdmvpn_local6"]
        self.stats = module[b"xdmvpn_peer_stats"]
        self.paths = module[b"xdmvpn_paths"]
        self.drops_map = module[b"xdmvpn_drops"]
        self.nh_cache = module[b"xdmvpn_nh_cache"]
        self.ipsec_map = module[b"xdmvpn_ipsec_peers"]
        self.known_map = module[b"xdmvpn_known_peers"]
        self.known6_map = module[b"xdmvpn_known_peers6"]
        self._events: list[Event] = []
        self._ring_open = False
        self._free: list[int] | None = None  # slots given back, holes (_free_slots)
        self._next = 1                       # the lowest slot never taken
        self._fresh_clean = False            # slots from _next up are known to be zero
        self._dirty: set[int] = set()        # free slots that may hold old statistics
        self._known: collections.Counter[Addr] | None = None
        self._no_batch = False               # the kernel refused a batch write once
        self._hosts: set[int] | None = None  # IPv4 host entries' keys (_hosts4)
        # the multicast slots as set_multicast last wrote them (IPv4 Be32, IPv6 bytes)
        self._mcast_slots: tuple[list, list] | None = None

    # ---- the tables of a family -----------------------------------------------
    def _host_table(self, overlay: Addr):
        """(table, key) of a host entry for an overlay address of either family."""
        if overlay.version == 6:
            return self.peers6, abi.in6(overlay)
        return self.peers, _u32(_be(overlay))

    def _entries(self):
        """Every entry that holds a slot: host entries, prefixes, NHS slots."""
        for table in (self.peers, self.prefixes_map, self.peers6, self.prefixes6_map):
            yield from table.values()
        yield from (v for v in self.nhs_map.values() if v.nbma or v.flags)

    def _nbma(self, peer) -> Addr:
        """The NBMA address an entry points at."""
        if peer.flags & abi.PEER_NBMA6:
            return abi.ipv6(self.nbma6_map[self.nbma6_map.Key(peer.stats_idx)])
        return _addr(peer.nbma)

    # ---- statistics slots -------------------------------------------------
    def _used_slots(self) -> set[int]:
        return {v.stats_idx for v in self._entries()}

    def _new_slot(self) -> int:
        """A free statistics slot, cleared."""
        return self._take_slots(1)[0]

    def _free_slots(self, cleared: bool = False) -> list[int]:
        """The free slots below the highest one ever taken (the next to take last); the
        slots from `_next` up have never been taken. Built once from the maps (which may
        be adopted from a previous controller), then kept here: a hub registering 100,000
        spokes must not scan every entry per registration, and a daemon must not hold a
        list of all 147,000 slots (6 MB) it may never use.

        `cleared`: the per-slot tables (SLOT_TABLES) were created empty just now, so a slot
        never taken is zero and costs no clearing write (a hub registering thousands of
        spokes at once). Otherwise (adopted tables: an earlier controller may have left
        statistics anywhere) every slot is cleared when taken, as is always a slot that an
        entry gave back (`_dirty`)."""
        if self._free is None:
            used = self._used_slots()
            self._next = max(used, default=0) + 1
            self._free = [i for i in range(self._next - 1, 0, -1) if i not in used]
            self._fresh_clean = cleared
            self._dirty = set() if cleared else set(self._free)
        return self._free

    def sync_slots(self, cleared: bool = False) -> None:
        """Look at the slots the entries hold now (start-up, after adoption): the first
        registrations of a hub do not pay for it. `cleared`: see _free_slots."""
        self._free = None
        self._free_slots(cleared)

    def _take_slots(self, n: int) -> list[int]:
        """n free statistics slots, each cleared (zero statistics, no cached next hop):
        slots given back first, then never-taken ones."""
        free = self._free_slots()
        if len(free) + MAX_STATS - self._next < n:
            raise XdmvpnError("data plane statistics slots exhausted")
        reused = min(n, len(free))
        slots = free[len(free) - reused:]
        del free[len(free) - reused:]
        slots.reverse()
        dirty = [i for i in slots if i in self._dirty] if self._dirty else []
        if reused < n:
            fresh = list(range(self._next, self._next + n - reused))
            self._next += n - reused
            slots += fresh
            if not self._fresh_clean:
                dirty += fresh
        if dirty:
            self._clear_slots(dirty)
        return slots

    def _clear_slots(self, idxs: list[int]) -> None:
        """Zero these slots in both per-slot tables: one batch write per table (a write
        per slot and table where the kernel has no batch writes)."""
        if not self._no_batch:
            try:
                for table in (self.stats, self.nh_cache):
                    self._batch(table, idxs, None)
            except OSError:
                self._no_batch = True
            else:
                self._dirty.difference_update(idxs)
                return
        for idx in idxs:
            self._clear_slot(idx)
        self._dirty.difference_update(idxs)

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
        """The value for an entry toward nbma (either family): the old entry's slot,
        else a new one.  An IPv6 address is written to xdmvpn_nbma6 at the slot first,
        so that no program sees the flag before the address; a slot whose NBMA address
        changes forgets its cached next hop."""
        nbma = _ip(nbma, "NBMA address")
        idx = old.stats_idx if old is not None else self._new_slot()
        if old is not None and self._nbma(old) != nbma:
            self._zero_percpu(self.nh_cache, idx)
        if nbma.version == 6:
            self.nbma6_map[self.nbma6_map.Key(idx)] = abi.in6(nbma)
            return abi.Peer(nbma=abi.fold6(nbma), flags=abi.PEER_NBMA6, stats_idx=idx)
        return abi.Peer(nbma=_be(nbma), flags=0, stats_idx=idx)

    def _put(self, table, key, nbma) -> None:
        """table[key] -> nbma, keeping the entry's slot when it had one."""
        self._known_refs()                  # counted before the maps change
        old = table.get(key)
        old_nbma = self._nbma(old) if old is not None else None
        new = self._entry(nbma, old)
        table[key] = new
        self._replaced(old, new, old_nbma)

    def _remove(self, table, key) -> bool:
        self._known_refs()
        old = table.get(key)
        if old is None:
            return False
        old_nbma = self._nbma(old)
        if not self._del(table, key):
            return False
        self._replaced(old, None, old_nbma)
        return True

    def _replaced(self, old, new: abi.Peer | None, old_nbma: Addr | None = None,
                  known: dict | None = None) -> None:
        """Bookkeeping after an entry changed from old (pointing at old_nbma) to new
        (either may be None): the known NBMA addresses (written at once, or with known:
        collected there for one batch) and the statistics slot."""
        new_nbma = self._nbma(new) if new is not None else None
        if new_nbma is not None and new_nbma != old_nbma:
            self._ref(new_nbma, +1, known)
        if old_nbma is not None and new_nbma != old_nbma:
            self._ref(old_nbma, -1, known)
        if new is None and old is not None and self._free is not None and old.stats_idx:
            self._free.append(old.stats_idx)
            self._dirty.add(old.stats_idx)

    # ---- known NBMA addresses (NHRP admission) ------------------------------
    def _known_key(self, nbma: Addr):
        """(map, key) of an NBMA address in xdmvpn_known_peers(6)."""
        if nbma.version == 6:
            return self.known6_map, abi.in6(nbma)
        return self.known_map, _u32(_be(nbma))

    def _known_refs(self) -> collections.Counter[Addr]:
        """How many entries point at each NBMA address, counted once from the maps
        and written over xdmvpn_known_peers(6) (adopted pins, or a controller that
        died between two writes), then kept here and in the maps together."""
        if self._known is None:
            refs: collections.Counter[Addr] = collections.Counter(
                self._nbma(v) for v in self._entries())
            stale = [_addr(k.value) for k in self.known_map.keys()]
            stale += [abi.ipv6(k) for k in self.known6_map.keys()]
            for a in stale:
                if a not in refs:
                    self._del(*self._known_key(a))
            for nbma, n in refs.items():
                table, key = self._known_key(nbma)
                table[key] = _u32(n)
            self._known = refs
        return self._known

    def _ref(self, nbma: Addr, delta: int, known: dict | None = None) -> None:
        refs = self._known_refs()
        n = refs[nbma] + delta
        table, key = self._known_key(nbma)
        if n > 0:
            refs[nbma] = n
        if n > 0:
            refs[nbma] = n
            if known is not None:
                known[nbma] = n
                return
            table[key] = _u32(n)
        else:
            refs.pop(nbma, None)
            if known is not None:
                known.pop(nbma, None)
            self._del(table, key)

    def sync_known(self) -> None:
        """Make xdmvpn_known_peers match the entries now (start-up after adoption)."""
        self._known = None
        self._known_refs()

    def known_peers(self) -> dict[Addr, int]:
        """NBMA addresses whose NHRP the data plane admits as known -> entries at them."""
        out: dict[Addr, int] = {_addr(k.value): v.value for k, v in self.known_map.items()}
        out.update({abi.ipv6(k): v.value for k, v in self.known6_map.items()})
        return out

    @staticmethod
    def _del(table, key) -> bool:
        try:
            del table[key]
        except KeyError:
            return False
        return True

    # ---- NBMA mappings (host entries) -------------------------------------
    def add_mapping(self, overlay, nbma) -> None:
        """Overlay (protocol) address -> NBMA address, each IPv4 or IPv6; replaces an
        existing one."""
        overlay = _ip(overlay, "overlay address")
        self._put(*self._host_table(overlay), nbma)
        if overlay.version == 4:
            self._hosts4().add(int(overlay))

    def add_mappings(self, pairs) -> None:
        """add_mapping for each (overlay, nbma) pair, the writes of each map together (one
        BPF_MAP_UPDATE_BATCH per map, not a system call per entry and map): what a hub
        does after a burst of registrations. New IPv4-over-IPv4 entries (new by our own
        index of the host map: no lookup per entry) go in the batch; the rest
        (replacements, IPv6 of either side) and kernels without batch writes go one by
        one through add_mapping."""
        latest: dict[Addr, Addr] = {}
        for o, n in pairs:                                   # the last word per address
            latest[_ip(o, "overlay address")] = _ip(n, "NBMA address")
        hosts = self._hosts4()
        batch, single = [], []
        for o, n in latest.items():
            if (isinstance(o, IPv4) and isinstance(n, IPv4) and not self._no_batch
                    and int(o) not in hosts):
                batch.append((o, n))
            else:
                single.append((o, n))
        if len(batch) < 2:
            single, batch = batch + single, []
        if batch:
            self._add_new4(batch)
        for o, n in single:
            self.add_mapping(o, n)

    def _add_new4(self, pairs: list[tuple[IPv4, IPv4]]) -> None:
        """New IPv4 host entries toward IPv4 NBMA addresses: slots taken (cleared only when
        an earlier entry used them), the entries and the known NBMA addresses' counts
        written, a batch write per map. The arrays are packed from the addresses' integers
        in one call each (a Be32 field holds an address in network byte order)."""
        refs = self._known_refs()
        n = len(pairs)
        slots = self._take_slots(n)
        keys = (ctypes.c_uint32 * n).from_buffer_copy(
            _be32s(n).pack(*[int(o) for o, _ in pairs]))
        flat: list[int] = []
        for (_, nb), idx in zip(pairs, slots):
            flat += (htonl(int(nb)), idx, 0)
        values = (abi.Peer * n).from_buffer_copy(_peers4(n).pack(*flat))
        known: dict[IPv4, int] = {}
        for _, nb in pairs:
            known[nb] = refs[nb] = refs[nb] + 1
        k = len(known)
        kkeys = (ctypes.c_uint32 * k).from_buffer_copy(_be32s(k).pack(*map(int, known)))
        kvals = (ctypes.c_uint32 * k)(*known.values())
        try:
            libbpf.update_batch(self.peers.map_fd, keys, values, n)
            libbpf.update_batch(self.known_map.map_fd, kkeys, kvals, k)
        except OSError:
            # no batch writes here: the same writes one by one (idempotent)
            self._no_batch = True
            for i in range(n):
                self.peers[_u32(keys[i])] = values[i]
            for i in range(k):
                self.known_map[_u32(kkeys[i])] = _u32(kvals[i])
        self._hosts4().update(int(o) for o, _ in pairs)

    def _hosts4(self) -> set[int]:
        """The IPv4 overlay addresses (as integers) of the host entries in the map: read
        once from the map (adopted pins), then kept here with every write (the controller
        is the only writer), so that add_mappings knows a new entry without asking the
        kernel."""
        if self._hosts is None:
            self._hosts = {ntohl(k.value) for k in self.peers.keys()}
        return self._hosts

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
        overlay = _ip(overlay, "overlay address")
        if overlay.version == 4 and self._hosts is not None:
            self._hosts.discard(int(overlay))
        return self._remove(*self._host_table(overlay))

    def _row(self, net: Net, v) -> Mapping:
        p, b, t = self._slot_stats(v.stats_idx)
        return Mapping(net, self._nbma(v), p, b, t)

    @staticmethod
    def _sorted(rows: list[Mapping]) -> list[Mapping]:
        return sorted(rows, key=lambda m: (m.prefix.version, m.prefix))

    def mappings(self) -> list[Mapping]:
        """Host entries of both families (IPv4 first), as /32 and /128 prefixes."""
        rows = [self._row(ipaddress.ip_network(f"{_addr(k.value)}/32"), v)
                for k, v in self.peers.items()]
        rows += [self._row(ipaddress.ip_network(f"{abi.ipv6(k)}/128"), v)
                 for k, v in self.peers6.items()]
        return self._sorted(rows)

    # ---- shortcut prefixes --------------------------------------------------
    def _prefix_table(self, prefix):
        """(table, key) of a shortcut prefix of either family."""
        net = _net(prefix)
        if net.version == 6:
            return self.prefixes6_map, abi.Lpm6Key(prefixlen=net.prefixlen,
                                                    addr=abi.in6(net.network_address))
        return self.prefixes_map, abi.LpmKey(prefixlen=net.prefixlen,
                                             addr=_be(net.network_address))

    def add_prefix(self, prefix, nbma) -> None:
        """Shortcut prefix (IPv4 or IPv6) -> NBMA address (IPv4 or IPv6)."""
        self._put(*self._prefix_table(prefix), nbma)

    def remove_prefix(self, prefix) -> bool:
        return self._remove(*self._prefix_table(prefix))

    def prefixes(self) -> list[Mapping]:
        """Shortcut prefixes of both families (IPv4 first)."""
        rows = [self._row(ipaddress.ip_network(f"{_addr(k.addr)}/{k.prefixlen}"), v)
                for k, v in self.prefixes_map.items()]
        rows += [self._row(ipaddress.ip_network(f"{abi.ipv6(k.addr)}/{k.prefixlen}"), v)
                 for k, v in self.prefixes6_map.items()]
        return self._sorted(rows)

    # ---- next-hop servers ----------------------------------------------------
    def set_nhs(self, nbmas) -> None:
        """The NHS NBMA addresses (IPv4 or IPv6), in order: unmapped overlay traffic
        of either family goes to the first."""
        nbmas = [_ip(a, "NHS NBMA address") for a in nbmas]
        if len(nbmas) > MAX_NHS:
            raise XdmvpnError(f"at most {MAX_NHS} NHS in the data plane")
        self._known_refs()
        for i in range(MAX_NHS):
            key = self.nhs_map.Key(i)
            old = self.nhs_map[key]
            old = old if (old.nbma or old.flags) else None
            old_nbma = self._nbma(old) if old is not None else None
            new = self._entry(nbmas[i], old) if i < len(nbmas) else None
            self.nhs_map[key] = new if new is not None else abi.Peer()
            self._replaced(old, new, old_nbma)

    def nhs(self) -> list[Addr]:
        return [self._nbma(v) for v in self.nhs_map.values() if v.nbma or v.flags]

    # ---- multicast set ---------------------------------------------------------
    def set_multicast(self, nbmas) -> None:
        """Replace the multicast set: NBMA addresses of either family, each family in
        its own map of MCAST_MAX (written back to front so that a copy in flight never
        sees a hole).  Every overlay multicast (IPv4 224.0.0.0/4 and broadcast, IPv6
        ff00::/8 of link-local scope and wider) goes to all of them."""
        nbmas = list(dict.fromkeys(_ip(a, "multicast NBMA address") for a in nbmas))
        v4 = [a for a in nbmas if a.version == 4]
        v6 = [a for a in nbmas if a.version == 6]
        if max(len(v4), len(v6)) > MCAST_MAX:
            raise XdmvpnError(f"at most {MCAST_MAX} NBMA addresses of each family in the "
                              f"multicast set")
        # only the slots that change (what we wrote last is kept: the only writer), so
        # that a set growing by one address costs one write, not 2 x MCAST_MAX
        before4, before6 = self._mcast_slots or ([None] * MCAST_MAX, [None] * MCAST_MAX)
        after4 = [_be(a) for a in v4] + [0] * (MCAST_MAX - len(v4))
        after6 = [a.packed for a in v6] + [bytes(16)] * (MCAST_MAX - len(v6))
        self._mcast_slots = None                 # unknown until every write went through
        for i in reversed(range(MCAST_MAX)):
            if after4[i] != before4[i]:
                self.mcast_map[self.mcast_map.Key(i)] = abi.Be32(after4[i])
        for i in reversed(range(MCAST_MAX)):
            if after6[i] != before6[i]:
                self.mcast6_map[self.mcast6_map.Key(i)] = abi.In6.from_buffer_copy(after6[i])
        self._mcast_slots = (after4, after6)

    def multicast(self) -> list[Addr]:
        """The multicast set: its IPv4 addresses, then its IPv6 ones."""
        out: list[Addr] = []
        for i in range(MCAST_MAX):
            v = self.mcast_map[self.mcast_map.Key(i)].value
            if not v:
                break
            out.append(_addr(v))
        for i in range(MCAST_MAX):
            a = abi.ipv6(self.mcast6_map[self.mcast6_map.Key(i)])
            if not int(a):
                break
            out.append(a)
        return out

    def add_multicast(self, nbma) -> None:
        self.set_multicast(self.multicast() + [_ip(nbma, "multicast NBMA address")])

    def remove_multicast(self, nbma) -> None:
        gone = _ip(nbma, "multicast NBMA address")
        self.set_multicast([a for a in self.multicast() if a != gone])

    # ---- the node's own overlay IPv6 address ------------------------------------
    def set_overlay_address6(self, addr) -> None:
        """The tunnel's own IPv6 address (None: none): the source of the ICMPv6 Packet
        Too Big messages the encap sends back into the overlay.  Without one an
        IPv6 packet too big for the path is dropped without a message."""
        value = abi.In6()
        if addr is not None:
            a = _ip(addr, "overlay address")
            if a.version != 6:
                raise XdmvpnError(f"overlay IPv6 address expected, not {a}")
            value = abi.in6(a)
        self.local6_map[self.local6_map.Key(0)] = value

    def overlay_address6(self) -> IPv6 | None:
        a = abi.ipv6(self.local6_map[self.local6_map.Key(0)])
        return a if int(a) else None

    # ---- IPsec peers ------------------------------------------------------------
    def set_ipsec_required(self, nbma, required: bool, sa_up: bool = False) -> None:
        """GRE with this NBMA address only through xfrm (programs compiled with
        ipsec): plaintext from it is dropped in XDP, plaintext to it at the
        underlay's egress; encap hands its packets to the stack while sa_up (a
        CHILD_SA is installed), else drops them.  required=False forgets it.
        IPv4 NBMA addresses only: the data plane has no IPsec path for IPv6 ones."""
        nbma = _ip(nbma, "NBMA address")
        if nbma.version == 6:
            if not required:
                return
            raise XdmvpnError(f"IPsec toward an IPv6 NBMA address ({nbma}) is not supported "
                              f"by the data plane")
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

    def nexthops(self) -> dict[Addr, list[str]]:
        """Cached next-hop MACs per NBMA address (one per CPU that filled it)."""
        out: dict[Addr, list[str]] = {}
        slots = {v.stats_idx: v for v in self._entries()}
        for i in sorted(slots):
            for e in self.nh_cache[self.nh_cache.Key(i)]:
                if e.nbma and e.nbma == slots[i].nbma:
                    out.setdefault(self._nbma(slots[i]), []).append(
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
        def addr(value: abi.In6, six: bool) -> Addr:
            return abi.ipv6(value) if six else _addr(value.w[0])

        inner6 = bool(rec.flags & abi.Family.INNER6)
        self._events.append(Event(
            kind, addr(rec.nbma_src, bool(rec.flags & abi.Family.OUTER6))
            if rec.type == abi.EventType.TRIGGER else None,
            addr(rec.inner_src, inner6), addr(rec.inner_dst, inner6),
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
