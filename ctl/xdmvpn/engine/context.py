"""What a handler may touch: the narrow context every part of the engine is given instead of
the node. Parameters, clock, randomness, counters, sending, the cache with its data-plane
mirror (mappings and multicast targets), request ids and the table of pending requests."""

from __future__ import annotations

import random
from collections import Counter
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

from ..inet import IPAddress
from ..nhrp import ErrorIndication, Packet, PacketType, RequestReply, encode, end_extension
from .build import auth_ext, families, src_nbma
from .cache import Cache, CacheEntry, Change, EntryType
from .clock import Clock
from .effects import Effects
from .params import NodeParams
from .pending import PendingTable

# How much of an offending packet an error indication carries.
ERROR_CONTENTS_MAX = 512
# Dynamic multicast peers up to which a change is applied at once; beyond, from tick(), at
# most every MULTICAST_EVERY seconds.
MULTICAST_BATCH = 64
MULTICAST_EVERY = 0.1


class Upstream(Protocol):
    """The next-hop servers we register with, as the rest of the engine needs to know them."""

    def preferred_nbma(self) -> IPAddress | None:
        """NBMA address of the preferred NHS that is up, None when none is."""
        ...

    def refresh_nbma(self, asked: IPAddress | None) -> IPAddress | None:
        """Where to resolve a destination again: `asked` (the NHS whose answer we hold)
        while it is up, else the preferred NHS."""
        ...


class Context:
    def __init__(self, params: NodeParams, fx: Effects, clock: Clock, rng: random.Random):
        self.p = params
        self.fx = fx
        self.clock = clock
        self.rng = rng
        self._ids = random.Random(rng.getrandbits(64))   # request ids: their own sequence
        self.stats: Counter[Any] = Counter()
        self.cache = Cache()
        self.pending = PendingTable(params.limits.pending, self.stats)
        self._multicast: frozenset[IPAddress] = frozenset()
        self._multicast_due = False            # a change waits for tick() (big hubs)
        self._multicast_next = 0.0             # when tick() may apply it

    # -- identifiers, sending, trust ------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def new_request_id(self) -> int:
        """A fresh request id: random (a reply cannot be forged by counting) and unused."""
        while True:
            rid = self._ids.getrandbits(32)
            if rid and rid not in self.pending:
                return rid

    def send(self, nbma: IPAddress, pkt: Packet) -> None:
        self.stats[("tx", pkt.TYPE)] += 1
        self.fx.send(nbma, encode(pkt))

    def send_raw(self, nbma: IPAddress, packet_type: PacketType, raw: bytes) -> None:
        """Send a packet encoded already (of type packet_type, for the counters)."""
        self.stats[("tx", packet_type)] += 1
        self.fx.send(nbma, raw)

    def is_nhs(self, nbma: IPAddress) -> bool:
        """Is this one of the next-hop servers we are configured to register with?"""
        return any(n.nbma == nbma for n in self.p.nhs)

    def known(self, nbma: IPAddress) -> bool:
        """An NBMA address we have a binding for (or one of our NHSs)."""
        return self.cache.knows(nbma) or self.is_nhs(nbma)

    def complete(self, pkt: RequestReply, observed: IPAddress) -> None:
        """A reply to one of our requests: the pending request it answers completes."""
        pending = self.pending.get(pkt.request_id)
        if pending is None or pending.reply_type != pkt.TYPE \
                or not pending.accepts(pkt, observed):
            self.stats[("drop", "unexpected_reply")] += 1
            return
        self.pending.discard(pending)
        pending.complete(pkt, observed)

    def trusted(self, nbma: IPAddress) -> bool:
        """A station whose word about others we take: one of our NHSs, a station registered
        with us, or a configured (static) one. Cached bindings do not count: they were
        learnt from others."""
        return self.is_nhs(nbma) or bool(
            self.cache.types_at(nbma) & {EntryType.DYNAMIC, EntryType.STATIC, EntryType.NHS})

    def vouches(self, nbma: IPAddress) -> bool:
        """A station whose word about where a third party is we believe (the NAT extension
        CIE of a request it forwarded, our own registration of that party aside): one of
        our NHSs or a configured (static) one. A station merely registered with us may
        forward requests (a lower hub of a hierarchy) but not vouch: anyone holding the
        secret can register."""
        return self.is_nhs(nbma) or bool(
            self.cache.types_at(nbma) & {EntryType.STATIC, EntryType.NHS})

    def may_learn(self, proto: IPAddress, nbma: IPAddress) -> bool:
        """May a new binding of proto to nbma be cached? Within the cache's caps (counted
        when not)."""
        cache, limits = self.cache, self.p.limits
        old = cache.get(proto)
        if old is not None and old.nbma == nbma:
            return True
        if old is None and len(cache) >= self.p.max_entries:
            self.stats[("cap", "entries")] += 1
            return False
        if cache.at_nbma(nbma) >= limits.entries_per_nbma:
            self.stats[("cap", "entries_per_nbma")] += 1
            return False
        return True

    def error_indication(self, pkt: Packet, data: bytes, to: IPAddress, code: int,
                         offset: int) -> None:
        """RFC 2332 5.2.7: to the source of the packet in error; never about an error
        indication."""
        if isinstance(pkt, ErrorIndication):
            return
        p = self.p
        self.stats[("error_tx", int(code))] += 1
        src = pkt.src_proto if isinstance(pkt.src_proto, (IPv4Address, IPv6Address)) else None
        err = ErrorIndication(**families(p, to), src_nbma=src_nbma(p, to), src_proto=p.tunnel_ip,
                              dst_proto=src,
                              hop_count=p.hop_count, error_code=code, error_offset=offset,
                              contents=data[:ERROR_CONTENTS_MAX],
                              extensions=auth_ext(p) + ([end_extension()] if p.auth else []))
        self.send(to, err)

    # -- the cache with its data-plane mirror ---------------------------------------------
    def cache_put(self, entry: CacheEntry) -> Change | None:
        if not entry.identity and entry.nbma is not None and entry.type is not EntryType.LOCAL:
            entry.identity = self.fx.peer_identity(entry.nbma)
        change = self.cache.put(entry)
        if change is None:
            return None
        if entry.nbma is not None and entry.type is not EntryType.LOCAL and (
                change.added or change.old_nbma != entry.nbma):
            self.fx.mapping_set(entry.proto, entry.nbma)
        if entry.type is EntryType.DYNAMIC and change.added:
            self.sync_multicast()
        return change

    def cache_remove(self, proto: IPAddress) -> CacheEntry | None:
        change = self.cache.remove(proto)
        if change is None:
            return None
        self.forgotten(change.entry)
        return change.entry

    def forgotten(self, entry: CacheEntry) -> None:
        """Mirror an entry's removal from the cache in the data plane."""
        self.fx.mapping_del(entry.proto)
        if entry.type is EntryType.DYNAMIC:
            self.sync_multicast()

    # -- multicast targets ----------------------------------------------------------------
    def sync_multicast(self) -> None:
        """The multicast targets changed, perhaps. With more than MULTICAST_BATCH dynamic
        peers the set is applied from tick(), at most every MULTICAST_EVERY seconds: a hub
        registering thousands of spokes must not rebuild a set of them per registration."""
        if self.p.multicast_dynamic and len(self.cache.dynamic_nbmas) > MULTICAST_BATCH:
            self._multicast_due = True
            return
        self.apply_multicast()

    def apply_multicast(self) -> None:
        p = self.p
        self._multicast_due = False
        targets = set(p.multicast_static)
        if p.multicast_dynamic:
            targets.update(self.cache.dynamic_nbmas)
        if p.multicast_nhs:
            targets |= {n.nbma for n in p.nhs}
        frozen = frozenset(targets)
        if frozen != self._multicast:
            self._multicast = frozen
            self.fx.multicast_set(frozen)

    def multicast_tick(self, now: float) -> float | None:
        """Apply a waiting multicast change when its time came; returns when to come back."""
        if not self._multicast_due:
            return None
        if now >= self._multicast_next:
            self._multicast_next = now + MULTICAST_EVERY
            self.apply_multicast()
            return None
        return self._multicast_next
