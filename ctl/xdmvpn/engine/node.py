"""A node: NHS, NHC or both. The facade the daemon drives: receives NHRP packets, runs
timers, takes operator commands. It wires the parts together; each part gets the narrow
context (context.Context) and the collaborators it needs, never the node."""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import replace
from typing import Any, Callable

from ..inet import IPAddress, IPNetwork
from ..nhrp import (
    AuthExtension, ErrorCode, ErrorIndication, ExtType, NhrpDecodeError, Packet, PacketType,
    RequestReply, decode,
)
from ..nhrp.constants import AUTH_TYPE_CLEARTEXT
from .answered import AnsweredTable
from .cache import Cache, CacheEntry, Change, EntryType
from .clock import Clock, MonotonicClock
from .context import MULTICAST_BATCH, MULTICAST_EVERY, Context
from .effects import Effects
from .indication import Indications
from .params import NodeParams
from .purge import Purger
from .registration_client import NhsClient, Registrations
from .registration_server import RegistrationServer
from .resolution import Resolver, Resolving
from .shortcut import Shortcut, ShortcutTable
from .validate import check

__all__ = ["Node", "MULTICAST_BATCH", "MULTICAST_EVERY"]

_ERROR_CODES = frozenset(int(c) for c in ErrorCode)
_REQUESTS = frozenset({PacketType.RESOLUTION_REQUEST, PacketType.REGISTRATION_REQUEST,
                       PacketType.PURGE_REQUEST})

_REGISTRATION_REQUEST = int(PacketType.REGISTRATION_REQUEST)

Handler = Callable[[Any, bytes, IPAddress], None]


class Node:
    def __init__(self, params: NodeParams, effects: Effects | None = None,
                 clock: Clock | None = None, rng: random.Random | None = None):
        ctx = self.ctx = Context(params, effects or Effects(), clock or MonotonicClock(),
                                 rng or random.Random())
        self.registrations = Registrations(ctx)
        self.shortcut_table = ShortcutTable(ctx)
        self.answered_table = AnsweredTable(ctx)
        self.resolver = Resolver(ctx, self.shortcut_table, self.answered_table,
                                 self.registrations)
        self.indications_ = Indications(ctx, self.resolver, self.shortcut_table,
                                        self.registrations)
        self.server = RegistrationServer(ctx)
        self.purger = Purger(ctx, self.shortcut_table, self.answered_table, self.resolver)
        self._handlers: dict[int, Handler] = {
            PacketType.REGISTRATION_REQUEST: self.server.on_request,
            PacketType.REGISTRATION_REPLY: self._on_reply,
            PacketType.RESOLUTION_REQUEST: self.resolver.on_request,
            PacketType.RESOLUTION_REPLY: self.resolver.on_reply,
            PacketType.TRAFFIC_INDICATION: self.indications_.on_indication,
            PacketType.PURGE_REQUEST: self.purger.on_request,
            PacketType.PURGE_REPLY: self._on_reply,
        }
        now = ctx.now()
        ctx.cache.put(CacheEntry(params.tunnel_ip, EntryType.LOCAL, nbma=params.nbma,
                                 claimed_nbma=params.nbma, created=now, mtu=params.mtu))
        for proto, nbma in params.maps:
            ctx.cache_put(CacheEntry(proto, EntryType.STATIC, nbma=nbma, claimed_nbma=nbma,
                                     created=now))
        ctx.sync_multicast()
        ctx.fx.default_nhs_set(None)
        self.last_bug = ""                 # the last exception a packet caused (a bug)
        # registration requests try RegistrationServer.fast first (False: the full path
        # only, which answers alike: the tests compare the two)
        self.fast_path = True

    # -- the state others read (show, exporter, tests) -----------------------------------
    @property
    def p(self) -> NodeParams:
        return self.ctx.p

    @p.setter
    def p(self, params: NodeParams) -> None:
        self.ctx.p = params

    @property
    def fx(self) -> Any:
        return self.ctx.fx

    @property
    def params_by_family(self) -> dict[int, NodeParams]:
        """Our parameters by overlay family (one here; a Stack has one per family)."""
        return {self.ctx.p.tunnel_ip.version: self.ctx.p}

    def stats_by_family(self) -> dict[int, Counter[Any]]:
        return {self.ctx.p.tunnel_ip.version: self.ctx.stats}

    def cache_counts_by_family(self) -> dict[int, dict[str, int]]:
        return {self.ctx.p.tunnel_ip.version: self.ctx.cache.counts()}

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def stats(self) -> Counter[Any]:
        return self.ctx.stats

    @property
    def cache(self) -> Cache:
        return self.ctx.cache

    @property
    def nhcs(self) -> list[NhsClient]:
        return self.registrations.clients

    @property
    def shortcuts(self) -> dict[IPNetwork, Shortcut]:
        return self.shortcut_table.table

    @property
    def resolving(self) -> dict[IPAddress, Resolving]:
        return self.resolver.resolving

    @property
    def answered(self) -> dict[IPAddress, tuple[IPAddress, set[int]]]:
        return self.answered_table.as_dict()

    @property
    def indications(self) -> dict[tuple[IPAddress, IPAddress], float]:
        return dict(self.indications_.sent)

    @property
    def setup_latencies(self) -> deque[float]:
        return self.resolver.setup_latencies

    @property
    def setup_count(self) -> int:
        return self.resolver.setup_count

    @property
    def serves(self) -> bool:
        return self.server.serves()

    def nhs_up(self) -> list[NhsClient]:
        return self.registrations.up()

    def preferred_nhs(self) -> NhsClient | None:
        return self.registrations.preferred()

    # -- the cache with its data-plane mirror (tests and the daemon's mirror) ------------
    def cache_put(self, entry: CacheEntry) -> Change | None:
        return self.ctx.cache_put(entry)

    def cache_remove(self, proto: IPAddress) -> CacheEntry | None:
        return self.ctx.cache_remove(proto)

    def set_identity(self, nbma: IPAddress, identity: str) -> int:
        """The IKE identity of the peer at nbma is now `identity` ("" when its SA went
        down): every entry bound to that NBMA address shows it."""
        n = 0
        for entry in self.ctx.cache.entries.values():
            if entry.nbma == nbma and entry.type is not EntryType.LOCAL \
                    and entry.identity != identity:
                entry.identity = identity
                n += 1
        return n

    # -- timers -------------------------------------------------------------------------
    def tick(self) -> float | None:
        """Run everything due now; returns when to be called again (monotonic time)."""
        ctx = self.ctx
        now = ctx.now()
        for entry in ctx.cache.expire(now):
            ctx.stats["cache_expired"] += 1
            ctx.forgotten(entry)
        ctx.pending.expire(now)
        deadlines: list[float | None] = list(self.registrations.tick(now))
        deadlines.append(self.resolver.tick(now))
        deadlines.append(ctx.pending.next_expiry())
        deadlines.append(ctx.cache.next_expiry())
        deadlines.append(ctx.multicast_tick(now))
        return min((d for d in deadlines if d is not None), default=None)

    # -- receiving --------------------------------------------------------------------------
    def receive(self, data: bytes, observed: IPAddress) -> None:
        """One NHRP packet from the NBMA address `observed` (the outer source). Never
        raises: whatever a handler still raises is counted as a bug and the node goes on."""
        try:
            self._receive(data, observed)
        except Exception as exc:        # a bug: counted, the packet dropped, state kept
            self.ctx.stats[("drop", "bug")] += 1
            self.last_bug = f"{type(exc).__name__}: {exc}"

    def _receive(self, data: bytes, observed: IPAddress) -> None:
        ctx = self.ctx
        if type(data) is not bytes:
            data = bytes(data)
        # registration requests first try the server's fast path (refreshes, the common
        # layout), which takes only what the full path below would accept and answer alike
        if self.fast_path and len(data) > 17 and data[17] == _REGISTRATION_REQUEST \
                and self.server.fast(data, observed):
            return
        try:
            pkt = decode(data, strict=False)
        except NhrpDecodeError:
            ctx.stats[("drop", "malformed")] += 1
            return
        ctx.stats[("rx", pkt.TYPE)] += 1
        if not pkt.checksum_ok:
            ctx.stats[("drop", "checksum")] += 1
            return
        if not self._authentic(pkt):
            ctx.stats[("drop", "authentication")] += 1
            return
        problem = check(pkt, ctx.p.limits)
        if problem is not None:
            ctx.stats[("drop", problem.reason)] += 1
            if pkt.TYPE in _REQUESTS and (ctx.p.auth is not None or ctx.known(observed)):
                # RFC 2332 5.2.7: a request in error is answered with an error indication
                # (never to strangers on a network without authentication: no reflector)
                ctx.error_indication(pkt, data, observed, ErrorCode.PROTOCOL_ERROR,
                                     problem.offset)
            return
        if isinstance(pkt, ErrorIndication):
            self._on_error_indication(pkt, observed)
            return
        if pkt.hop_count == 0:
            ctx.error_indication(pkt, data, observed, ErrorCode.HOP_COUNT_EXCEEDED, 9)
            return
        unknown = pkt.unknown_compulsory_extensions()
        if unknown and pkt.TYPE in _REQUESTS:
            ctx.error_indication(pkt, data, observed, ErrorCode.UNRECOGNIZED_EXTENSION,
                                 pkt.extension_offset or 0)
            return
        handler = self._handlers.get(pkt.TYPE)
        if handler is None:   # pragma: no cover - every decodable type has a handler
            ctx.stats[("drop", "unhandled")] += 1
            return
        handler(pkt, data, observed)

    def _authentic(self, pkt: Packet) -> bool:
        auth = self.ctx.p.auth
        if auth is None:
            return True
        ext = pkt.extension(ExtType.AUTHENTICATION)
        return (isinstance(ext, AuthExtension) and ext.auth_type == AUTH_TYPE_CLEARTEXT
                and ext.data == auth)

    def _on_reply(self, pkt: RequestReply, data: bytes, observed: IPAddress) -> None:
        self.ctx.complete(pkt, observed)

    def _on_error_indication(self, pkt: ErrorIndication, observed: IPAddress) -> None:
        ctx = self.ctx
        code = pkt.error_code if pkt.error_code in _ERROR_CODES else "other"
        ctx.stats[("error_rx", code)] += 1
        try:
            inner = decode(pkt.contents, strict=False)
        except NhrpDecodeError:
            return
        if not isinstance(inner, RequestReply):
            return
        pending = ctx.pending.get(inner.request_id)
        if pending is None or not pending.error_from(observed):
            return
        ctx.pending.discard(pending)
        pending.fail(pkt.error_code)

    # -- operator commands ---------------------------------------------------------------
    def resolve(self, dst: IPAddress, nbma: IPAddress | None = None) -> int | None:
        """Resolve dst now, through nbma (default: the preferred NHS); the request id."""
        via = nbma if nbma is not None else self.registrations.preferred_nbma()
        return None if via is None else self.resolver.send(dst, via, self.ctx.now())

    def clear_cache(self) -> int:
        """Drop every dynamic/cached/negative entry (and the shortcuts that use them); the
        stations we answered are told to purge what they learnt from us."""
        ctx = self.ctx
        n = self.shortcut_table.clear()
        for entry in list(ctx.cache.of_type(EntryType.DYNAMIC, EntryType.CACHED,
                                            EntryType.NEGATIVE, EntryType.INCOMPLETE)):
            ctx.cache_remove(entry.proto)
            n += 1
        self.purger.purge_requesters()
        return n

    def clear_shortcuts(self) -> int:
        """Drop our shortcuts; the peers that resolved us drop theirs toward us too."""
        n = self.shortcut_table.clear()
        self.purger.purge_requesters()
        return n

    def shutdown(self) -> int:
        """Clean shutdown: de-register and purge the bindings others hold of us."""
        return self.purger.purge_requesters() + self._deregister()

    def _deregister(self) -> int:
        return self.purger.purge_registrations(
            [(c.nhs.nbma, c.proto) for c in self.registrations.up() if c.proto is not None])

    def nbma_changed(self, new_nbma: IPAddress) -> int:
        """Our NBMA address is now new_nbma: purge the stale bindings others hold, from the
        new address (a station may always purge its own protocol address), and register
        again."""
        ctx = self.ctx
        if new_nbma == ctx.p.nbma:
            return 0
        now = ctx.now()
        ctx.p = replace(ctx.p, nbma=new_nbma)
        tunnel_ip = ctx.p.tunnel_ip
        local = ctx.cache.get(tunnel_ip)
        ctx.cache.remove(tunnel_ip)
        ctx.cache.put(CacheEntry(tunnel_ip, EntryType.LOCAL, nbma=new_nbma,
                                 claimed_nbma=new_nbma, created=local.created if local else now,
                                 mtu=ctx.p.mtu))
        n = self.purger.purge_requesters() + self._deregister()
        self.registrations.restart(now)
        ctx.stats["nbma_changed"] += 1
        return n

    def reconfigure(self, params: NodeParams) -> None:
        """New parameters (SIGHUP) without losing state: the cache, registrations at NHSs
        that stay configured and shortcuts are kept."""
        ctx = self.ctx
        old = ctx.p
        if (params.tunnel_ip, params.prefix_len) != (old.tunnel_ip, old.prefix_len):
            raise ValueError("the tunnel address cannot change without a restart")
        ctx.p = params
        now = ctx.now()
        want = dict(params.maps)
        for entry in list(ctx.cache.of_type(EntryType.STATIC)):
            if want.get(entry.proto) != entry.nbma:
                ctx.cache_remove(entry.proto)
        for proto, nbma in params.maps:
            ctx.cache_put(CacheEntry(proto, EntryType.STATIC, nbma=nbma, claimed_nbma=nbma,
                                     created=now))
        self.registrations.reconfigure(params.nhs)

    def on_trigger(self, sender_nbma: IPAddress, inner_src: IPAddress, inner_dst: IPAddress,
                   head: bytes) -> bool:
        """The data plane hairpinned inner_src -> inner_dst from sender_nbma (hub)."""
        return self.indications_.send(sender_nbma, inner_src, inner_dst, head)

    def path_up(self, nbma: IPAddress) -> None:
        """The path to this NBMA address just came (back) up (its IPsec SA): an NHS there
        gets our registration now, not after its backoff or refresh time (it may have lost
        us while the path was down)."""
        self.registrations.path_up(nbma, self.ctx.now())

