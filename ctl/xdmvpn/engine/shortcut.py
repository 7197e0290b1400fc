"""Shortcuts (DMVPN phase 3): prefixes routed straight to another station, installed from
resolution replies, expired after their holdtime unless refreshed, mirrored in the data
plane. Indexed by prefix, by next hop, and in sorted lists (all, and per NBMA address) by
prefix and by next hop, so that a purge costs O(log n + what it matches) per CIE."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from ..inet import IPAddress, IPNetwork
from .cache import EntryType
from .context import Context


@dataclass
class Shortcut:
    prefix: IPNetwork
    dst: IPAddress            # the destination whose resolution installed it
    via: IPAddress            # next hop's protocol address (the reply's CIE)
    nbma: IPAddress
    hold: float
    expires: float
    installed: float
    refresh_sent: bool = False
    asked: IPAddress | None = None   # the station the resolution went to (refreshes too)
    # while a stranger's purge has it checked (Resolver.verify): its expiry and refresh
    # state before, given back when the next hop is confirmed
    verifying: tuple[float, bool] | None = None


PKey = tuple[int, int, int]          # (IP version, network as an integer, prefix length)


def _pkey(prefix: IPNetwork) -> PKey:
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def _prefix(version: int, value: int, plen: int) -> IPNetwork:
    return (IPv4Network if version == 4 else IPv6Network)((value, plen))


Key = tuple[int, ...]


def _span(keys: list[Key], net: IPNetwork) -> list[Key]:
    """The keys whose first two fields (version, integer) lie in net: O(log n + k)."""
    lo, hi = int(net.network_address), int(net.broadcast_address)
    return keys[bisect.bisect_left(keys, (net.version, lo)):
                bisect.bisect_right(keys, (net.version, hi, 1 << 16))]


def _insort(index: dict[IPAddress | None, list[Key]], scope: IPAddress | None,
            k: Key) -> None:
    bisect.insort(index.setdefault(scope, []), k)


def _discard(index: dict[IPAddress | None, list[Key]], scope: IPAddress | None,
             k: Key) -> None:
    keys = index.get(scope)
    if keys is None:
        return
    i = bisect.bisect_left(keys, k)
    if i < len(keys) and keys[i] == k:
        del keys[i]
    if not keys:
        del index[scope]


class ShortcutTable:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.table: dict[IPNetwork, Shortcut] = {}
        self._lengths: dict[tuple[int, int], int] = {}     # (version, prefix len) -> count
        self._by_via: dict[IPAddress, set[IPNetwork]] = {}
        # sorted keys per scope: None (every shortcut) and each NBMA address
        self._prefixes: dict[IPAddress | None, list[Key]] = {}       # PKey
        self._vias: dict[IPAddress | None, list[Key]] = {}           # (version, via) + PKey

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, prefix: IPNetwork) -> bool:
        return prefix in self.table

    def get(self, prefix: IPNetwork) -> Shortcut | None:
        return self.table.get(prefix)

    def install(self, sc: Shortcut) -> bool:
        """Install or refresh; True when the data plane changed. Refused (counted) when
        the table is full."""
        old = self.table.get(sc.prefix)
        if old is None and len(self.table) >= self.ctx.p.limits.shortcuts:
            self.ctx.stats[("cap", "shortcuts")] += 1
            return False
        if old is not None:
            sc.installed = old.installed
            self._unindex(old)
        self.table[sc.prefix] = sc
        self._by_via.setdefault(sc.via, set()).add(sc.prefix)
        pk = _pkey(sc.prefix)
        vk = (sc.via.version, int(sc.via)) + pk
        for scope in (None, sc.nbma):
            _insort(self._prefixes, scope, pk)
            _insort(self._vias, scope, vk)
        k = (sc.prefix.version, sc.prefix.prefixlen)
        self._lengths[k] = self._lengths.get(k, 0) + 1
        if old is None or (old.via, old.nbma) != (sc.via, sc.nbma):
            self.ctx.fx.shortcut_set(sc.prefix, sc.via, sc.nbma)
            return True
        return False

    def _unindex(self, sc: Shortcut) -> None:
        prefixes = self._by_via.get(sc.via)
        if prefixes is not None:
            prefixes.discard(sc.prefix)
            if not prefixes:
                del self._by_via[sc.via]
        pk = _pkey(sc.prefix)
        vk = (sc.via.version, int(sc.via)) + pk
        for scope in (None, sc.nbma):
            _discard(self._prefixes, scope, pk)
            _discard(self._vias, scope, vk)
        k = (sc.prefix.version, sc.prefix.prefixlen)
        left = self._lengths.get(k, 0) - 1
        if left > 0:
            self._lengths[k] = left
        else:
            self._lengths.pop(k, None)

    def remove(self, prefix: IPNetwork) -> bool:
        """Remove a shortcut, and its next hop's cached entry when no other uses it."""
        ctx = self.ctx
        sc = self.table.pop(prefix, None)
        if sc is None:
            return False
        self._unindex(sc)
        ctx.fx.shortcut_del(prefix)
        if sc.via not in self._by_via:
            entry = ctx.cache.get(sc.via)
            if entry is not None and entry.type is EntryType.CACHED:
                ctx.cache_remove(sc.via)
        return True

    def covering(self, dst: IPAddress) -> Shortcut | None:
        """The longest shortcut whose prefix holds dst (one lookup per prefix length)."""
        for version, plen in sorted(self._lengths, key=lambda k: -k[1]):
            if version == dst.version:
                sc = self.table.get(ip_network(f"{dst}/{plen}", strict=False))
                if sc is not None:
                    return sc
        return None

    def via(self, proto: IPAddress) -> list[Shortcut]:
        """The shortcuts whose next hop is proto."""
        return [self.table[p] for p in self._by_via.get(proto, ())]

    def toward(self, net: IPNetwork, nbma: IPAddress | None) -> list[Shortcut]:
        """The shortcuts toward net (via in it, or prefix overlapping it) that go to nbma
        (to any NBMA when nbma is None): O(prefix lengths + log n + what matches), never a
        walk of the table."""
        found: dict[IPNetwork, Shortcut] = {}
        for pk in _span(self._prefixes.get(nbma, []), net):       # prefixes starting in net
            prefix = _prefix(pk[0], pk[1], pk[2])
            found[prefix] = self.table[prefix]
        for version, plen in self._lengths:                       # prefixes holding net
            if version == net.version and plen < net.prefixlen:
                sc = self.table.get(ip_network(f"{net.network_address}/{plen}", strict=False))
                if sc is not None and (nbma is None or sc.nbma == nbma):
                    found[sc.prefix] = sc
        for vk in _span(self._vias.get(nbma, []), net):           # next hops in net
            prefix = _prefix(vk[2], vk[3], vk[4])
            found[prefix] = self.table[prefix]
        return list(found.values())

    def clear(self) -> int:
        n = len(self.table)
        for prefix in list(self.table):
            self.remove(prefix)
        return n

    def tick(self, now: float) -> tuple[list[Shortcut], list[float]]:
        """Expire what ran out; returns the shortcuts now in the last third of their
        holdtime (refresh candidates, each once) and the deadlines still ahead."""
        refresh: list[Shortcut] = []
        deadlines: list[float] = []
        for prefix, sc in list(self.table.items()):
            if now >= sc.expires:
                self.remove(prefix)
                self.ctx.stats["shortcut_expired"] += 1
                continue
            refresh_at = sc.expires - sc.hold / 3
            if sc.refresh_sent or now < refresh_at:
                deadlines.append(sc.expires if sc.refresh_sent else refresh_at)
                continue
            sc.refresh_sent = True
            refresh.append(sc)
            deadlines.append(sc.expires)
        return refresh, deadlines
