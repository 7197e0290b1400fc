"""The NHRP cache: protocol address -> NBMA address, with the entry types of FRR/Cisco and
holdtime expiry on the monotonic clock.

Indexed three ways so that no operation walks the whole cache: by protocol address (a dict),
by NBMA address (per NBMA, its protocol addresses kept sorted: a purge of a prefix from one
NBMA costs O(log n) plus what it removes), and by expiry (a heap, one item per entry: an
entry whose holdtime was extended in place keeps its item, which expire() moves to the new
expiry when the old one comes; a refresh costs no heap operation).

A registered entry may also keep the reply its registration got (a ReplyTemplate): a
refresh, the same request again, is answered from it (registration_server.py). Templates
live and die with their entry."""

from __future__ import annotations

import bisect
import enum
import heapq
import itertools
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Iterator

from ..inet import IPAddress, IPNetwork


class EntryType(enum.Enum):
    """Ordered from weakest to strongest: a stronger entry is never replaced by a weaker."""
    NEGATIVE = "negative"       # resolution answered "no binding"; suppresses re-resolution
    INCOMPLETE = "incomplete"   # resolution sent, no answer yet
    CACHED = "cached"           # learnt from a resolution reply (a shortcut's next hop)
    DYNAMIC = "dynamic"         # registered with us (we are its NHS)
    NHS = "nhs"                 # a next-hop server we register with
    STATIC = "static"           # configured map
    LOCAL = "local"             # our own address

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {t: i for i, t in enumerate(EntryType)}

# Entry types another station may change (register, resolve, purge); the others are ours.
LEARNT = frozenset({EntryType.NEGATIVE, EntryType.INCOMPLETE, EntryType.CACHED,
                    EntryType.DYNAMIC})


@dataclass(slots=True)
class CacheEntry:
    proto: IPAddress
    type: EntryType
    nbma: IPAddress | None = None          # where we send: the observed (post-NAT) address
    claimed_nbma: IPAddress | None = None  # what the peer said its NBMA address is
    prefix_len: int = 32
    expires: float | None = None           # monotonic time; None = never
    created: float = 0.0
    unique: bool = False
    mtu: int = 0
    holdtime: int = 0
    identity: str = ""                     # IPsec identity bound to this entry, if any
    used: bool = False                     # data plane saw traffic since last refresh
    # the time of its item in the expiry heap (<= expires), None when it has none
    queued: float | None = field(default=None, repr=False, compare=False)
    template: ReplyTemplate | None = field(default=None, repr=False, compare=False)

    @property
    def prefix(self) -> IPNetwork:
        return ip_network(f"{self.proto}/{self.prefix_len}", strict=False)

    def remaining(self, now: float) -> int | None:
        return None if self.expires is None else max(int(self.expires - now), 0)


@dataclass(slots=True)
class ReplyTemplate:
    """The reply a registration got, kept for its refreshes. `key` is the request without
    its checksum and request id (bytes 0-11, 14-23 and 28 on): the same key again is the same
    request; `reply` is what we sent (its request id is patched per refresh)."""
    key: bytes
    reply: bytes


@dataclass
class Change:
    """What a cache update did, for the caller to mirror in the data plane."""
    entry: CacheEntry
    old_nbma: IPAddress | None = None
    added: bool = False
    removed: bool = False


Key = tuple[int, int]          # (IP version, address as an integer): sorts v4 before v6


def key(addr: IPAddress) -> Key:
    return (addr.version, int(addr))


def _bounds(net: IPNetwork) -> tuple[Key, Key]:
    return (net.version, int(net.network_address)), (net.version, int(net.broadcast_address))


@dataclass
class Cache:
    entries: dict[IPAddress, CacheEntry] = field(default_factory=dict)
    # NBMA address -> how many DYNAMIC entries have it (a hub's multicast targets), kept up
    # to date by put/remove/expire so that nobody walks 100,000 entries to know them. A
    # plain dict: a set is built from its keys with the hashes it stores (a Counter would
    # hash every address again, in Python)
    dynamic_nbmas: dict[IPAddress, int] = field(default_factory=dict, repr=False,
                                                compare=False)
    # NBMA address -> sorted keys of the entries bound to it (LOCAL excepted)
    _by_nbma: dict[IPAddress, list[Key]] = field(default_factory=dict, repr=False,
                                                 compare=False)
    # (expires, n, proto) per put with an expiry: a heap, so that expire() and
    # next_expiry() cost O(log n) per entry rather than a walk of the cache per tick.
    # Items of replaced or removed entries stay until they reach the top (lazy deletion).
    _expiry: list[tuple[float, int, IPAddress]] = field(default_factory=list, repr=False,
                                                        compare=False)
    _n: Iterator[int] = field(default_factory=itertools.count, repr=False, compare=False)
    negatives: int = field(default=0, repr=False, compare=False)   # NEGATIVE entries
    # request key -> the entry whose template it is (ReplyTemplate.key)
    templates: dict[bytes, CacheEntry] = field(default_factory=dict, repr=False,
                                              compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[CacheEntry]:
        return iter(sorted(self.entries.values(), key=lambda e: key(e.proto)))

    def get(self, proto: IPAddress) -> CacheEntry | None:
        return self.entries.get(proto)

    def put(self, entry: CacheEntry) -> Change | None:
        """Insert or replace; refuses (returns None) to replace a stronger type."""
        old = self.entries.get(entry.proto)
        if old is not None and old.type.rank > entry.type.rank:
            return None
        self.entries[entry.proto] = entry
        if old is not None:
            self._dropped(old)
        self._indexed(entry)
        if entry.expires is not None:
            if len(self._expiry) > 4 * len(self.entries) + 1024:
                self._rebuild_expiry()
            else:
                self._queue(entry, entry.expires)
        return Change(entry, old_nbma=old.nbma if old else None, added=old is None)

    def refresh(self, entry: CacheEntry, expires: float) -> None:
        """A new expiry for an entry in the cache, nothing else: a later one costs an
        attribute (its heap item catches up when it reaches the top), an earlier one a
        heap item."""
        entry.expires = expires
        if entry.queued is None or expires < entry.queued:
            self._queue(entry, expires)

    def _queue(self, entry: CacheEntry, when: float) -> None:
        entry.queued = when
        heapq.heappush(self._expiry, (when, next(self._n), entry.proto))

    def _rebuild_expiry(self) -> None:
        """Drop the heap items of replaced and removed entries (lazy deletion's garbage)."""
        heap = []
        for e in self.entries.values():
            e.queued = e.expires
            if e.expires is not None:
                heap.append((e.expires, next(self._n), e.proto))
        heapq.heapify(heap)
        self._expiry = heap

    def _live(self, when: float, proto: IPAddress) -> CacheEntry | None:
        """The entry a heap item (when, proto) still stands for, None for a stale item."""
        e = self.entries.get(proto)
        return e if e is not None and e.queued == when else None

    # -- reply templates (registration refreshes) -----------------------------------------
    def keep_template(self, entry: CacheEntry, key: bytes, reply: bytes) -> None:
        """Keep the reply to entry's registration for its refreshes (the entry must be in
        the cache; a template of another entry under the same key is dropped)."""
        if entry.template is not None:
            self._drop_template(entry)
        other = self.templates.get(key)
        if other is not None:
            other.template = None
        entry.template = ReplyTemplate(key, reply)
        self.templates[key] = entry

    def templated(self, key: bytes) -> CacheEntry | None:
        """The entry whose registration was the request `key` (see ReplyTemplate)."""
        return self.templates.get(key)

    def drop_templates(self) -> None:
        """Forget every template (our configuration changed: our replies with it)."""
        for e in self.templates.values():
            e.template = None
        self.templates.clear()

    def _drop_template(self, entry: CacheEntry) -> None:
        t = entry.template
        if t is not None:
            entry.template = None
            if self.templates.get(t.key) is entry:
                del self.templates[t.key]

    def _indexed(self, entry: CacheEntry) -> None:
        if entry.type is EntryType.NEGATIVE:
            self.negatives += 1
        if entry.nbma is None or entry.type is EntryType.LOCAL:
            return
        if entry.type is EntryType.DYNAMIC:
            self.dynamic_nbmas[entry.nbma] = self.dynamic_nbmas.get(entry.nbma, 0) + 1
        bisect.insort(self._by_nbma.setdefault(entry.nbma, []), key(entry.proto))

    def _dropped(self, entry: CacheEntry) -> None:
        if entry.template is not None:
            self._drop_template(entry)
        if entry.type is EntryType.NEGATIVE:
            self.negatives -= 1
        if entry.nbma is None or entry.type is EntryType.LOCAL:
            return
        if entry.type is EntryType.DYNAMIC:
            left = self.dynamic_nbmas.get(entry.nbma, 0) - 1
            if left > 0:
                self.dynamic_nbmas[entry.nbma] = left
            else:
                self.dynamic_nbmas.pop(entry.nbma, None)
        keys = self._by_nbma.get(entry.nbma)
        if keys is not None:
            k = key(entry.proto)
            i = bisect.bisect_left(keys, k)
            if i < len(keys) and keys[i] == k:
                del keys[i]
            if not keys:
                del self._by_nbma[entry.nbma]

    def remove(self, proto: IPAddress) -> Change | None:
        old = self.entries.pop(proto, None)
        if old is None:
            return None
        self._dropped(old)
        return Change(old, old_nbma=old.nbma, removed=True)

    def expire(self, now: float) -> list[CacheEntry]:
        """Drop every entry whose holdtime ran out; returns them."""
        gone = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            when, n, proto = heap[0]
            e = self._live(when, proto)
            if e is None or e.expires is None:
                heapq.heappop(heap)            # replaced or removed since
            elif e.expires <= now:
                heapq.heappop(heap)
                e.queued = None
                del self.entries[proto]
                self._dropped(e)
                gone.append(e)
            else:                              # refreshed: its item moves on
                e.queued = e.expires
                heapq.heapreplace(heap, (e.expires, n, proto))
        return gone

    def next_expiry(self) -> float | None:
        """When expire() has something to do next, or a bit before (an entry refreshed in
        place still has its item at the old time: expire() then moves it on)."""
        heap = self._expiry
        while heap:
            when, _, proto = heap[0]
            e = self._live(when, proto)
            if e is not None and e.expires is not None:
                return when
            heapq.heappop(heap)                # replaced or removed since
        return None

    # -- by NBMA --------------------------------------------------------------------------
    def at_nbma(self, nbma: IPAddress) -> int:
        """How many entries (LOCAL excepted) are bound to this NBMA address."""
        return len(self._by_nbma.get(nbma, ()))

    def knows(self, nbma: IPAddress) -> bool:
        return nbma in self._by_nbma

    def types_at(self, nbma: IPAddress) -> set[EntryType]:
        """The types of the entries bound to this NBMA address (O(entries at it), which
        Limits.entries_per_nbma bounds)."""
        out = set()
        for version, value in self._by_nbma.get(nbma, ()):
            e = self.entries.get(_address(version, value))
            if e is not None:
                out.add(e.type)
        return out

    def bound_to(self, nbma: IPAddress, net: IPNetwork) -> list[CacheEntry]:
        """The entries bound to `nbma` whose protocol address is in `net`: O(log n + k)."""
        keys = self._by_nbma.get(nbma)
        if not keys:
            return []
        lo, hi = _bounds(net)
        i, j = bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)
        out = []
        for version, value in keys[i:j]:
            proto: IPAddress = _address(version, value)
            e = self.entries.get(proto)
            if e is not None:
                out.append(e)
        return out

    def of_type(self, *types: EntryType) -> list[CacheEntry]:
        return [e for e in self if e.type in types]

    def counts(self) -> dict[str, int]:
        out = {t.value: 0 for t in EntryType}
        for e in self.entries.values():
            out[e.type.value] += 1
        return out


def _address(version: int, value: int) -> IPAddress:
    return IPv4Address(value) if version == 4 else IPv6Address(value)
