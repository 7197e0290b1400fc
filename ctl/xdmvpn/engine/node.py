"""A node: NHS, NHC or both. Receives NHRP packets, runs timers, asks for effects."""

from __future__ import annotations

import random
from collections import Counter, deque
from ipaddress import IPv4Address, IPv6Address

from ..nhrp import (
    AuthExtension, ErrorCode, ErrorIndication, ExtType, NhrpDecodeError, Packet, PacketType,
    decode, encode, end_extension,
)
from ..nhrp.constants import AUTH_TYPE_CLEARTEXT
from . import nhs as nhs_server
from . import purge
from . import resolve
from .build import auth_ext
from .cache import Cache, CacheEntry, Change, EntryType
from .clock import MonotonicClock
from .effects import Effects
from .nhc import NhcState, NhsClient
from .params import NodeParams

IPAddress = IPv4Address | IPv6Address

# How much of an offending packet an error indication carries.
ERROR_CONTENTS_MAX = 512
# Dynamic multicast peers up to which a change is applied at once; beyond, from tick(), at
# most every MULTICAST_EVERY seconds.
MULTICAST_BATCH = 64
MULTICAST_EVERY = 0.1


class Node:
    def __init__(self, params: NodeParams, effects: Effects | None = None, clock=None,
                 rng: random.Random | None = None):
        self.p = params
        self.fx = effects or Effects()
        self.clock = clock or MonotonicClock()
        self.rng = rng or random.Random()
        self.cache = Cache()
        self.stats: Counter = Counter()
        self._next_id = self.rng.randrange(1, 1 << 30)
        self.pending: dict[int, tuple] = {}
        self.nhcs = [NhsClient(self, n, i) for i, n in enumerate(params.nhs)]
        self.shortcuts: dict = {}              # prefix -> resolve.Shortcut
        self.resolving: dict = {}              # destination -> (id, sent, tries, nbma, first)
        self.indications: dict = {}            # (inner src, inner dst) -> last indication
        self.answered: dict = {}               # requester NBMA -> (its proto, {prefix lens})
        self.setup_latencies: deque = deque(maxlen=4096)   # indication -> shortcut, seconds
        self.setup_count = 0          # latencies ever appended (the deque keeps the last ones)
        self.serves = params.serve if params.serve is not None else not params.is_nhc
        now = self.clock.now()
        self.cache.put(CacheEntry(params.tunnel_ip, EntryType.LOCAL, nbma=params.nbma,
                                  claimed_nbma=params.nbma, created=now, mtu=params.mtu))
        for proto, nbma in params.maps:
            self.cache_put(CacheEntry(proto, EntryType.STATIC, nbma=nbma, claimed_nbma=nbma,
                                      created=now))
        self._multicast: frozenset = frozenset()
        self._multicast_due = False            # a change waits for tick() (big hubs)
        self._multicast_next = 0.0             # when tick() may apply it
        self.sync_multicast()
        self.fx.default_nhs_set(None)

    # -- identifiers, sending -------------------------------------------------------------
    def new_request_id(self) -> int:
        self._next_id = (self._next_id % 0xFFFFFFFF) + 1
        return self._next_id

    def send(self, nbma: IPAddress, pkt: Packet) -> None:
        self.stats[("tx", pkt.TYPE)] += 1
        self.fx.send(nbma, encode(pkt))

    # -- cache with its data-plane mirror --------------------------------------------------
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
        self._forgotten(change.entry)
        return change.entry

    def set_identity(self, nbma: IPAddress, identity: str) -> int:
        """The IKE identity of the peer at nbma is now `identity` ("" when its SA went
        down): every entry bound to that NBMA address shows it."""
        n = 0
        for entry in self.cache.entries.values():
            if entry.nbma == nbma and entry.type is not EntryType.LOCAL \
                    and entry.identity != identity:
                entry.identity = identity
                n += 1
        return n

    def _forgotten(self, entry: CacheEntry) -> None:
        """Mirror an entry's removal from the cache in the data plane."""
        self.fx.mapping_del(entry.proto)
        if entry.type is EntryType.DYNAMIC:
            self.sync_multicast()

    def sync_multicast(self) -> None:
        """The multicast targets changed, perhaps. With more than MULTICAST_BATCH dynamic
        peers the set is applied from tick(), at most every MULTICAST_EVERY seconds: a hub
        registering thousands of spokes must not rebuild a set of them per registration."""
        p = self.p
        if p.multicast_dynamic and len(self.cache.dynamic_nbmas) > MULTICAST_BATCH:
            self._multicast_due = True
            return
        self._apply_multicast()

    def _apply_multicast(self) -> None:
        p = self.p
        self._multicast_due = False
        targets = set(p.multicast_static)
        if p.multicast_dynamic:
            targets.update(self.cache.dynamic_nbmas)
        if p.multicast_nhs:
            targets |= {c.nhs.nbma for c in self.nhcs}
        targets = frozenset(targets)
        if targets != self._multicast:
            self._multicast = targets
            self.fx.multicast_set(targets)

    def preferred_nhs(self) -> NhsClient | None:
        """The NHS that is up with the lowest priority value (config order breaks ties)."""
        return min(self.nhs_up(), key=lambda c: (c.nhs.priority, c.index), default=None)

    def nhs_changed(self) -> None:
        """An NHS came up or went down: pick where unresolved traffic goes."""
        best = self.preferred_nhs()
        self.fx.default_nhs_set(best.nhs.nbma if best else None)
        self.sync_multicast()

    # -- timers -------------------------------------------------------------------------
    def tick(self) -> float | None:
        """Run everything due now; returns when to be called again (monotonic time)."""
        now = self.clock.now()
        for entry in self.cache.expire(now):
            self.stats["cache_expired"] += 1
            self._forgotten(entry)
        deadlines = [c.tick(now) for c in self.nhcs]
        deadlines.append(resolve.tick(self, now))
        deadlines.append(self.cache.next_expiry())
        if self._multicast_due:
            if now >= self._multicast_next:
                self._multicast_next = now + MULTICAST_EVERY
                self._apply_multicast()
            else:
                deadlines.append(self._multicast_next)
        return min((d for d in deadlines if d is not None), default=None)

    # -- receiving --------------------------------------------------------------------------
    def receive(self, data: bytes, observed: IPAddress) -> None:
        """One NHRP packet from the NBMA address `observed` (the outer source)."""
        try:
            pkt = decode(data, strict=False)
        except NhrpDecodeError:
            self.stats[("drop", "malformed")] += 1
            return
        self.stats[("rx", pkt.TYPE)] += 1
        if not pkt.checksum_ok:
            self.stats[("drop", "checksum")] += 1
            return
        if not self._authentic(pkt):
            self.stats[("drop", "authentication")] += 1
            return
        if isinstance(pkt, ErrorIndication):
            self._on_error_indication(pkt)
            return
        if pkt.hop_count == 0:
            self.error_indication(pkt, data, observed, ErrorCode.HOP_COUNT_EXCEEDED, 9)
            return
        unknown = pkt.unknown_compulsory_extensions()
        if unknown and pkt.TYPE in _REQUESTS:
            self.error_indication(pkt, data, observed, ErrorCode.UNRECOGNIZED_EXTENSION,
                                  pkt.extension_offset or 0)
            return
        handler = _HANDLERS.get(pkt.TYPE)
        if handler is None:   # pragma: no cover - every decodable type has a handler
            self.stats[("drop", "unhandled")] += 1
            return
        handler(self, pkt, data, observed)

    def _authentic(self, pkt: Packet) -> bool:
        if self.p.auth is None:
            return True
        ext = pkt.extension(ExtType.AUTHENTICATION)
        return (isinstance(ext, AuthExtension) and ext.auth_type == AUTH_TYPE_CLEARTEXT
                and ext.data == self.p.auth)

    # -- errors -------------------------------------------------------------------------------
    def error_indication(self, pkt: Packet, data: bytes, to: IPAddress, code: int,
                         offset: int) -> None:
        """RFC 2332 5.2.7: to the source of the packet in error; never about an error
        indication."""
        if isinstance(pkt, ErrorIndication):
            return
        self.stats[("error_tx", int(code))] += 1
        err = ErrorIndication(src_nbma=self.p.nbma, src_proto=self.p.tunnel_ip,
                              dst_proto=pkt.src_proto, hop_count=self.p.hop_count,
                              error_code=code, error_offset=offset,
                              contents=data[:ERROR_CONTENTS_MAX],
                              extensions=auth_ext(self.p) + ([end_extension()] if self.p.auth else []))
        self.send(to, err)

    def _on_error_indication(self, pkt: ErrorIndication) -> None:
        self.stats[("error_rx", pkt.error_code)] += 1
        try:
            inner = decode(pkt.contents, strict=False)
        except NhrpDecodeError:
            return
        rid = getattr(inner, "request_id", None)
        pending = self.pending.pop(rid, None) if rid is not None else None
        if pending is None:
            return
        kind, who = pending
        if kind == "registration":
            who.on_error(pkt.error_code, self.clock.now())
        elif kind == "resolution":
            resolve.resolution_failed(self, who)

    # -- operator commands ---------------------------------------------------------------
    def clear_cache(self) -> int:
        """Drop every dynamic/cached/negative entry (and the shortcuts that use them); the
        stations we answered are told to purge what they learnt from us."""
        n = resolve.clear_shortcuts(self)
        for entry in list(self.cache.of_type(EntryType.DYNAMIC, EntryType.CACHED,
                                             EntryType.NEGATIVE, EntryType.INCOMPLETE)):
            self.cache_remove(entry.proto)
            n += 1
        purge.purge_requesters(self)
        return n

    def clear_shortcuts(self) -> int:
        """Drop our shortcuts; the peers that resolved us drop theirs toward us too."""
        n = resolve.clear_shortcuts(self)
        purge.purge_requesters(self)
        return n

    def shutdown(self) -> int:
        """Clean shutdown: de-register and purge the bindings others hold of us."""
        return purge.shutdown(self)

    def nbma_changed(self, new_nbma: IPAddress) -> int:
        return purge.nbma_changed(self, new_nbma)

    def reconfigure(self, params: NodeParams) -> None:
        """New parameters (SIGHUP) without losing state: the cache, registrations at NHSs
        that stay configured and shortcuts are kept."""
        old = self.p
        if (params.tunnel_ip, params.prefix_len) != (old.tunnel_ip, old.prefix_len):
            raise ValueError("the tunnel address cannot change without a restart")
        self.p = params
        now = self.clock.now()
        want = dict(params.maps)
        for entry in list(self.cache.of_type(EntryType.STATIC)):
            if want.get(entry.proto) != entry.nbma:
                self.cache_remove(entry.proto)
        for proto, nbma in params.maps:
            self.cache_put(CacheEntry(proto, EntryType.STATIC, nbma=nbma, claimed_nbma=nbma,
                                      created=now))
        kept = {c.nhs: c for c in self.nhcs}
        for c in self.nhcs:
            if c.nhs not in params.nhs:
                c.state = NhcState.DOWN
                if c.pending_id is not None:
                    self.pending.pop(c.pending_id, None)
                if c.proto is not None and (e := self.cache.get(c.proto)) is not None \
                        and e.type is EntryType.NHS:
                    self.cache_remove(c.proto)
        self.nhcs = []
        for i, n in enumerate(params.nhs):
            client = kept.get(n) or NhsClient(self, n, i)
            client.index = i
            self.nhcs.append(client)
        self.serves = params.serve if params.serve is not None else not params.is_nhc
        self.nhs_changed()

    def on_trigger(self, sender_nbma: IPAddress, inner_src: IPAddress, inner_dst: IPAddress,
                   head: bytes) -> bool:
        """The data plane hairpinned inner_src -> inner_dst from sender_nbma (hub)."""
        return resolve.send_indication(self, sender_nbma, inner_src, inner_dst, head)

    def path_up(self, nbma: IPAddress) -> None:
        """The path to this NBMA address just came (back) up (its IPsec SA): an NHS there
        gets our registration now, not after its backoff or refresh time (it may have lost
        us while the path was down)."""
        now = self.clock.now()
        for c in self.nhcs:
            if c.nhs.nbma == nbma:
                c.backoff = self.p.retry_initial
                c.next_send = min(c.next_send, now)

    def nhs_up(self) -> list[NhsClient]:
        return [c for c in self.nhcs if c.state is NhcState.UP]


_REQUESTS = frozenset({PacketType.RESOLUTION_REQUEST, PacketType.REGISTRATION_REQUEST,
                       PacketType.PURGE_REQUEST})


def _on_registration_reply(node: Node, pkt, data, observed) -> None:
    pending = node.pending.get(pkt.request_id)
    if pending is None or pending[0] != "registration":
        node.stats[("drop", "unexpected_reply")] += 1
        return
    client = pending[1]
    if observed != client.nhs.nbma:
        node.stats[("drop", "unexpected_reply")] += 1
        return
    del node.pending[pkt.request_id]
    client.on_reply(pkt, node.clock.now())


_HANDLERS = {
    PacketType.REGISTRATION_REQUEST: nhs_server.on_registration_request,
    PacketType.REGISTRATION_REPLY: _on_registration_reply,
    PacketType.RESOLUTION_REQUEST: resolve.on_resolution_request,
    PacketType.RESOLUTION_REPLY: resolve.on_resolution_reply,
    PacketType.TRAFFIC_INDICATION: resolve.on_traffic_indication,
    PacketType.PURGE_REQUEST: nhs_server.on_purge_request,
    PacketType.PURGE_REPLY: nhs_server.on_purge_reply,
}
