"""Shortcuts (DMVPN phase 3): prefixes routed straight to another station, installed from
resolution replies, expired after their holdtime unless refreshed, mirrored in the data
plane. Indexed by prefix and by NBMA address (a purge looks only at the sender's)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_network

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


class ShortcutTable:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.table: dict[IPNetwork, Shortcut] = {}
        self._by_nbma: dict[IPAddress, set[IPNetwork]] = {}
        self._lengths: dict[tuple[int, int], int] = {}     # (version, prefix len) -> count
        self._by_via: dict[IPAddress, set[IPNetwork]] = {}

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
        self._by_nbma.setdefault(sc.nbma, set()).add(sc.prefix)
        self._by_via.setdefault(sc.via, set()).add(sc.prefix)
        k = (sc.prefix.version, sc.prefix.prefixlen)
        self._lengths[k] = self._lengths.get(k, 0) + 1
        if old is None or (old.via, old.nbma) != (sc.via, sc.nbma):
            self.ctx.fx.shortcut_set(sc.prefix, sc.via, sc.nbma)
            return True
        return False

    def _unindex(self, sc: Shortcut) -> None:
        for index, addr in ((self._by_nbma, sc.nbma), (self._by_via, sc.via)):
            prefixes = index.get(addr)
            if prefixes is not None:
                prefixes.discard(sc.prefix)
                if not prefixes:
                    del index[addr]
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
        (to any NBMA when nbma is None)."""
        if nbma is None:
            candidates = list(self.table.values())
        else:
            candidates = [self.table[p] for p in self._by_nbma.get(nbma, ())]
        return [sc for sc in candidates if sc.prefix.version == net.version and (
            sc.via in net or sc.prefix.overlaps(net))]

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
