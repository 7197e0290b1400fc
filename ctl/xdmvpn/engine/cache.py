"""The NHRP cache: protocol address -> NBMA address, with the entry types of FRR/Cisco and
holdtime expiry on the monotonic clock."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Iterator

IPAddress = IPv4Address | IPv6Address


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

    @property
    def prefix(self) -> IPv4Network | IPv6Network:
        return ip_network(f"{self.proto}/{self.prefix_len}", strict=False)

    def remaining(self, now: float) -> int | None:
        return None if self.expires is None else max(int(self.expires - now), 0)


@dataclass
class Change:
    """What a cache update did, for the caller to mirror in the data plane."""
    entry: CacheEntry
    old_nbma: IPAddress | None = None
    added: bool = False
    removed: bool = False


@dataclass
class Cache:
    entries: dict[IPAddress, CacheEntry] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[CacheEntry]:
        return iter(sorted(self.entries.values(), key=lambda e: (e.proto.version, e.proto)))

    def get(self, proto: IPAddress) -> CacheEntry | None:
        return self.entries.get(proto)

    def put(self, entry: CacheEntry) -> Change | None:
        """Insert or replace; refuses (returns None) to replace a stronger type."""
        old = self.entries.get(entry.proto)
        if old is not None and old.type.rank > entry.type.rank:
            return None
        self.entries[entry.proto] = entry
        return Change(entry, old_nbma=old.nbma if old else None, added=old is None)

    def remove(self, proto: IPAddress) -> Change | None:
        old = self.entries.pop(proto, None)
        return Change(old, old_nbma=old.nbma, removed=True) if old else None

    def expire(self, now: float) -> list[CacheEntry]:
        """Drop every entry whose holdtime ran out; returns them."""
        gone = [e for e in self.entries.values() if e.expires is not None and e.expires <= now]
        for e in gone:
            del self.entries[e.proto]
        return gone

    def next_expiry(self) -> float | None:
        times = [e.expires for e in self.entries.values() if e.expires is not None]
        return min(times) if times else None

    def of_type(self, *types: EntryType) -> list[CacheEntry]:
        return [e for e in self if e.type in types]

    def counts(self) -> dict[str, int]:
        out = {t.value: 0 for t in EntryType}
        for e in self.entries.values():
            out[e.type.value] += 1
        return out
