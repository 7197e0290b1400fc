"""Resolution (RFC 2332 5.2.1, 5.2.2): requests we send, answer or forward, and the replies
to ours, which install shortcuts."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from ipaddress import ip_network

from ..inet import IPAddress
from ..nhrp import (
    Cie, CieCode, ErrorCode, ExtType, Flag, PacketType, RequestReply, ResolutionReply,
    ResolutionRequest,
)
from .answered import AnsweredTable
from .build import (
    Extensions, afn_version, cie_list, families, ip, nat_nbma, own_cie, replace_cie_list,
    request_extensions, src_nbma, unvouch, vouch, with_own_auth,
)
from .cache import CacheEntry, EntryType
from .context import Context, Upstream
from .effects import RouteHint
from .pending import Pending
from .shortcut import Shortcut, ShortcutTable

RESOLUTION_TIMEOUT = 2.0        # seconds before a resolution request is sent again
RESOLUTION_TRIES = 3
VERIFY_HOLD = 10.0              # seconds a shortcut an outsider purged has to be confirmed
NEGATIVE_HOLD = 60              # seconds a "no binding" answer suppresses re-resolution
_REQUEST_FLAGS = Flag.Q | Flag.A | Flag.S | Flag.CISCO_NAT      # 0xc802, as Cisco sends
_REPLY_FLAGS = Flag.Q | Flag.A | Flag.D | Flag.U_RES | Flag.S | Flag.CISCO_NAT   # 0xf802
# Entries whose NBMA address a registration or the configuration set: what we observed.
_OWNED = (EntryType.DYNAMIC, EntryType.STATIC, EntryType.NHS, EntryType.LOCAL)


@dataclass
class Resolving:
    """A resolution of ours under way."""
    dst: IPAddress
    rid: int
    sent: float             # when the last try went out
    tries: int
    nbma: IPAddress         # where the requests go (an NHS, or the hub that redirected)
    first: float            # when the first try went out (set-up latency)


def _relayed(cls: type[RequestReply], pkt: RequestReply, exts: Extensions) -> RequestReply:
    """pkt as the next hop gets it: one hop less, with these extensions."""
    return cls(afn=pkt.afn, protocol_type=pkt.protocol_type, snap=pkt.snap,
               hop_count=pkt.hop_count - 1, src_nbma=pkt.src_nbma, src_proto=pkt.src_proto,
               dst_proto=pkt.dst_proto, flags=pkt.flags, request_id=pkt.request_id,
               cies=pkt.cies, extensions=exts)


def direct_reply(pkt: RequestReply, via: IPAddress | None) -> bool:
    """Did this reply come straight from the responder `via`?"""
    responder = cie_list(pkt, ExtType.RESPONDER_ADDRESS) or []
    return not cie_list(pkt, ExtType.REVERSE_TRANSIT_NHS) and any(
        c.client_proto == via for c in responder)


class PendingResolution(Pending):
    reply_type = PacketType.RESOLUTION_REPLY

    def __init__(self, resolver: "Resolver", r: Resolving):
        self.resolver = resolver
        self.r = r

    def accepts(self, pkt: RequestReply, observed: IPAddress) -> bool:
        """Ours (our address, the destination we asked about), and either straight from the
        responder or through the station we asked or one of our NHSs."""
        if pkt.dst_proto != self.r.dst or pkt.src_proto != self.resolver.ctx.p.tunnel_ip:
            return False
        via = ip(pkt.cies[0].client_proto) if pkt.cies else None
        return direct_reply(pkt, via) or self.error_from(observed)

    def error_from(self, observed: IPAddress) -> bool:
        return observed == self.r.nbma or self.resolver.ctx.is_nhs(observed)

    def complete(self, pkt: RequestReply, observed: IPAddress) -> None:
        self.resolver.answered_by(self.r, pkt, observed)

    def fail(self, code: int) -> None:
        self.resolver.failed(self.r.dst)

    def expire(self, now: float) -> None:
        self.resolver.retry(self.r, now)


class Resolver:
    def __init__(self, ctx: Context, shortcuts: ShortcutTable, answered: AnsweredTable,
                 upstream: Upstream):
        self.ctx = ctx
        self.shortcuts = shortcuts
        self.answered = answered
        self.upstream = upstream
        self.resolving: dict[IPAddress, Resolving] = {}
        self.setup_latencies: deque[float] = deque(maxlen=4096)  # indication -> shortcut, s
        self.setup_count = 0          # latencies ever appended (the deque keeps the last ones)

    # -- requests we send -----------------------------------------------------------------
    def send(self, dst: IPAddress, nbma: IPAddress, now: float, tries: int = 1,
             first: float | None = None) -> int | None:
        """Resolve dst, asking the station at nbma; the request id, None when refused."""
        ctx, p = self.ctx, self.ctx.p
        old = self.resolving.get(dst)
        if old is None and len(self.resolving) >= p.limits.resolving:
            ctx.stats[("cap", "resolving")] += 1
            return None
        if old is not None:
            stale = ctx.pending.get(old.rid)
            if stale is not None:
                ctx.pending.discard(stale)
        rid = ctx.new_request_id()
        r = Resolving(dst, rid, now, tries, nbma, now if first is None else first)
        if not ctx.pending.add(PendingResolution(self, r), rid,
                               now + RESOLUTION_TIMEOUT * tries):
            self.resolving.pop(dst, None)
            return None
        self.resolving[dst] = r
        pkt = ResolutionRequest(
            **families(p, nbma),
            src_nbma=src_nbma(p, nbma), src_proto=p.tunnel_ip, dst_proto=dst, hop_count=p.hop_count,
            flags=_REQUEST_FLAGS, request_id=rid,
            cies=[Cie(prefix_len=0, mtu=p.mtu, holdtime=p.holdtime)],
            extensions=request_extensions(p, nat=[]))
        ctx.send(nbma, pkt)
        return rid

    def retry(self, r: Resolving, now: float) -> None:
        if self.resolving.get(r.dst) is not r:
            return
        if r.tries >= RESOLUTION_TRIES:
            self.failed(r.dst)
        else:
            self.send(r.dst, r.nbma, now, r.tries + 1, r.first)

    def failed(self, dst: IPAddress) -> None:
        self.resolving.pop(dst, None)
        self.ctx.stats["resolution_failed"] += 1

    # -- requests we receive --------------------------------------------------------------
    def on_request(self, pkt: RequestReply, data: bytes, observed: IPAddress) -> None:
        """Answer (for ourselves or what is behind us), forward toward the destination, or
        answer "no binding". Who the requester is, is taken from what was observed: the
        packet's source when it came straight from it, else what the NHS that forwarded it
        vouched for (docs/security.md)."""
        ctx, p = self.ctx, self.ctx.p
        fwd = cie_list(pkt, ExtType.FORWARD_TRANSIT_NHS) or []
        if any(c.client_proto == p.tunnel_ip for c in fwd):
            ctx.error_indication(pkt, data, observed, ErrorCode.LOOP_DETECTED,
                                 pkt.extension_offset or 0)
            return
        dst, src_proto = ip(pkt.dst_proto), ip(pkt.src_proto)
        if dst is None or src_proto is None:        # validation keeps these out
            ctx.stats[("drop", "unresolvable")] += 1
            return
        if fwd and not ctx.trusted(observed):
            ctx.stats[("drop", "forwarded_by_stranger")] += 1
            return
        own = ctx.cache.get(src_proto)
        if src_proto == p.tunnel_ip or (own is not None and own.type is EntryType.LOCAL):
            ctx.stats[("drop", "own_address")] += 1      # a reply would come back to us
            return
        if not fwd:
            owner = ctx.cache.get(src_proto)
            if owner is not None and owner.type in _OWNED and owner.nbma != observed:
                ctx.stats[("drop", "spoofed_requester")] += 1   # registered elsewhere
                return
        hint = ctx.fx.route_lookup(dst)
        if dst == p.tunnel_ip or hint.local:
            self._answer(pkt, observed, src_proto, not fwd,
                         dst.max_prefixlen if dst == p.tunnel_ip else hint.prefix_len)
            return
        target = self._next_hop_entry(dst, hint)
        if target is not None and target.nbma is not None \
                and target.nbma.version != afn_version(pkt.afn):
            # a station on the other underlay family: the requester could not reach the
            # NBMA address it would learn, its traffic stays on the hub path
            ctx.stats["resolution_cross_family"] += 1
            if self.serves():
                self._negative(pkt, observed)
            return
        if target is not None and target.nbma is not None and target.nbma != observed:
            self._forward(pkt, data, observed, target.nbma, src_proto, not fwd)
            return
        upstream = self.upstream.preferred_nbma()
        if upstream is not None and upstream != observed:
            self._forward(pkt, data, observed, upstream, src_proto, not fwd)
            return
        if self.serves():
            self._negative(pkt, observed)
        else:
            ctx.stats[("drop", "unresolvable")] += 1

    def serves(self) -> bool:
        p = self.ctx.p
        return p.serve if p.serve is not None else not p.is_nhc

    def next_hop_entry(self, dst: IPAddress) -> CacheEntry | None:
        """The registered or configured station dst is reached through, if any."""
        return self._next_hop_entry(dst, self.ctx.fx.route_lookup(dst))

    def _next_hop_entry(self, dst: IPAddress, hint: RouteHint) -> CacheEntry | None:
        cache = self.ctx.cache
        entry = cache.get(dst)
        if entry is not None and entry.type in (EntryType.DYNAMIC, EntryType.STATIC):
            return entry
        if hint.via is not None:
            entry = cache.get(hint.via)
            if entry is not None and entry.type in (EntryType.DYNAMIC, EntryType.STATIC,
                                                    EntryType.NHS):
                return entry
        return None

    def _requester(self, pkt: RequestReply, observed: IPAddress, src_proto: IPAddress,
                   direct: bool) -> tuple[IPAddress, bool]:
        """Where the requester is reachable, and whether that was observed (by us, or by the
        NHS that forwarded the request: its NAT extension CIE, or our own binding)."""
        if direct:
            return observed, True
        if not self.ctx.vouches(observed):
            # forwarded by a station we do not believe about others: the reply goes back
            # to it (RFC 2332 5.2.2, along the way the request came), nothing is learnt
            return observed, False
        vouched = nat_nbma(pkt, src_proto)
        if vouched is not None:
            return vouched, True
        known = self.ctx.cache.get(src_proto)
        if known is not None and known.type in _OWNED and known.nbma is not None:
            return known.nbma, True
        claimed = ip(pkt.src_nbma)
        return (claimed if claimed is not None else observed), False

    def _answer(self, pkt: RequestReply, observed: IPAddress, src_proto: IPAddress,
                direct: bool, prefix_len: int) -> None:
        ctx, p = self.ctx, self.ctx.p
        now = ctx.now()
        to, seen = self._requester(pkt, observed, src_proto, direct)
        claimed = ip(pkt.src_nbma)
        # state only for what was observed, never for a stranger: on an open network not
        # at all, and a request straight from a source we know nothing of creates none even
        # with the secret (random sources holding it would fill the cache); what an NHS we
        # trust forwarded, it vouched for
        learn = seen and src_proto != p.tunnel_ip and (
            ctx.known(to) if direct else p.auth is not None or ctx.known(to))
        if learn and direct and claimed != observed:
            learn = False               # a claimed NBMA that is not the source: not cached
        # it holds a binding of ours now (purged when we change or go away); what the
        # answered table cannot hold, we do not keep a mapping of either
        if learn and ctx.may_learn(src_proto, to) \
                and self.answered.record(to, src_proto, prefix_len):
            # the requester will send to us directly: send back to it directly too
            ctx.cache_put(CacheEntry(src_proto, EntryType.CACHED, nbma=to,
                                     claimed_nbma=claimed, expires=now + p.holdtime,
                                     created=now, holdtime=p.holdtime, mtu=p.mtu))
        exts = replace_cie_list(pkt.extensions, ExtType.RESPONDER_ADDRESS,
                                [own_cie(p, prefix_len=0, nbma_version=afn_version(pkt.afn))])
        exts = replace_cie_list(exts, ExtType.REVERSE_TRANSIT_NHS, [])
        reply = ResolutionReply(
            afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
            src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=pkt.dst_proto,
            flags=_REPLY_FLAGS, request_id=pkt.request_id,
            cies=[own_cie(p, prefix_len=prefix_len,
                                 nbma_version=afn_version(pkt.afn))], extensions=with_own_auth(p, exts))
        ctx.stats["resolution_answered"] += 1
        ctx.send(to, reply)

    def _negative(self, pkt: RequestReply, observed: IPAddress) -> None:
        ctx, p = self.ctx, self.ctx.p
        dst = ip(pkt.dst_proto)
        cie = Cie(code=CieCode.NO_BINDING, prefix_len=dst.max_prefixlen if dst else 0,
                  mtu=p.mtu, holdtime=NEGATIVE_HOLD)
        reply = ResolutionReply(
            afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
            src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=pkt.dst_proto,
            flags=pkt.flags & Flag.Q, request_id=pkt.request_id, cies=[cie],
            extensions=with_own_auth(p, replace_cie_list(
                pkt.extensions, ExtType.RESPONDER_ADDRESS, [own_cie(p, prefix_len=0, nbma_version=afn_version(pkt.afn))])))
        ctx.stats["resolution_negative"] += 1
        ctx.send(observed, reply)

    def _forward(self, pkt: RequestReply, data: bytes, observed: IPAddress,
                 to: IPAddress, src_proto: IPAddress, direct: bool) -> None:
        ctx, p = self.ctx, self.ctx.p
        if pkt.hop_count <= 1:
            ctx.error_indication(pkt, data, observed, ErrorCode.HOP_COUNT_EXCEEDED, 9)
            return
        fwd = list(cie_list(pkt, ExtType.FORWARD_TRANSIT_NHS) or [])
        fwd.append(own_cie(p, prefix_len=0, nbma_version=afn_version(pkt.afn)))
        exts = replace_cie_list(pkt.extensions, ExtType.FORWARD_TRANSIT_NHS, fwd)
        if direct:
            # the first NHS vouches for where it saw the requester (Cisco's NAT extension
            # CIE), so that the responder need not believe the claimed NBMA address
            exts = vouch(p, pkt, exts, src_proto, observed)
        elif not ctx.vouches(observed) and nat_nbma(pkt, src_proto) is not None:
            # what a station we do not believe said of the requester is not passed on as
            # if we vouched for it
            exts = unvouch(pkt, exts, src_proto)
        ctx.stats["resolution_forwarded"] += 1
        ctx.send(to, _relayed(ResolutionRequest, pkt, with_own_auth(p, exts)))

    # -- replies --------------------------------------------------------------------------
    def on_reply(self, pkt: RequestReply, data: bytes, observed: IPAddress) -> None:
        """A reply to us completes our resolution; one to another station, whose request
        we forwarded, goes on toward it (RFC 2332 5.2.2: a responder may send its reply
        back along the way the request came, as FRR does)."""
        ctx = self.ctx
        if pkt.src_proto == ctx.p.tunnel_ip:
            ctx.complete(pkt, observed)
            return
        self._forward_reply(pkt, data, observed)

    def _forward_reply(self, pkt: RequestReply, data: bytes, observed: IPAddress) -> None:
        """Toward the requester: hop count down by one, ourselves added to the reverse
        transit record (5.3.3), the responder's NBMA address vouched for when it is
        registered with us (NAT extension), authentication regenerated."""
        ctx, p = self.ctx, self.ctx.p
        requester = ip(pkt.src_proto)
        if requester is None or not ctx.trusted(observed):
            ctx.stats[("drop", "unexpected_reply")] += 1
            return
        target = self._next_hop_entry(requester, ctx.fx.route_lookup(requester))
        if target is None or target.nbma is None or target.nbma == observed:
            ctx.stats[("drop", "unexpected_reply")] += 1
            return
        reverse = list(cie_list(pkt, ExtType.REVERSE_TRANSIT_NHS) or [])
        if any(c.client_proto == p.tunnel_ip for c in reverse):
            ctx.error_indication(pkt, data, observed, ErrorCode.LOOP_DETECTED,
                                 pkt.extension_offset or 0)
            return
        if pkt.hop_count <= 1:
            ctx.error_indication(pkt, data, observed, ErrorCode.HOP_COUNT_EXCEEDED, 9)
            return
        reverse.append(own_cie(p, prefix_len=0, nbma_version=afn_version(pkt.afn)))
        exts = replace_cie_list(pkt.extensions, ExtType.REVERSE_TRANSIT_NHS, reverse)
        via = ip(pkt.cies[0].client_proto) if pkt.cies else None
        responder = ctx.cache.get(via) if via is not None else None
        if via is not None and responder is not None and responder.type in _OWNED \
                and responder.nbma is not None and responder.type is not EntryType.LOCAL:
            exts = vouch(p, pkt, exts, via, responder.nbma)
        ctx.stats["resolution_reply_forwarded"] += 1
        ctx.send(target.nbma, _relayed(ResolutionReply, pkt, with_own_auth(p, exts)))

    def answered_by(self, r: Resolving, pkt: RequestReply, observed: IPAddress) -> None:
        """The reply to our resolution of r.dst."""
        ctx, p = self.ctx, self.ctx.p
        now = ctx.now()
        if self.resolving.get(r.dst) is r:
            del self.resolving[r.dst]
        if not pkt.cies:
            ctx.stats[("drop", "reply_without_cie")] += 1
            return
        cie = pkt.cies[0]
        via = ip(cie.client_proto)
        if cie.code != CieCode.SUCCESS or via is None:
            ctx.stats["resolution_failed"] += 1
            # within caps of their own and the cache's (a flood of traffic indications
            # for random destinations must not fill the cache with them); for no longer
            # than our own holdtime (a reply's 65,535 s would block shortcuts to dst for
            # 18 hours)
            if r.dst not in ctx.cache.entries:
                if ctx.cache.negatives >= p.limits.negative:
                    ctx.stats[("cap", "negative")] += 1
                    return
                if len(ctx.cache) >= p.max_entries:
                    ctx.stats[("cap", "entries")] += 1
                    return
            hold = min(cie.holdtime or NEGATIVE_HOLD, max(p.holdtime, NEGATIVE_HOLD))
            ctx.cache_put(CacheEntry(r.dst, EntryType.NEGATIVE, created=now,
                                     expires=now + hold))
            return
        nbma = self._responder_nbma(pkt, observed, via, ip(cie.client_nbma))
        if nbma is None or not ctx.may_learn(via, nbma):
            return
        hold = cie.holdtime or p.holdtime
        ctx.cache_put(CacheEntry(via, EntryType.CACHED, nbma=nbma,
                                 claimed_nbma=ip(cie.client_nbma), expires=now + hold,
                                 created=now, holdtime=hold, mtu=cie.mtu))
        plen = cie.prefix_len or r.dst.max_prefixlen
        prefix = ip_network(f"{r.dst}/{min(plen, r.dst.max_prefixlen)}", strict=False)
        if self.shortcuts.install(Shortcut(prefix, r.dst, via, nbma, hold, now + hold, now,
                                           asked=r.nbma)):
            ctx.stats["shortcut_installed"] += 1
            self.setup_latencies.append(now - r.first)
            self.setup_count += 1
        elif prefix in self.shortcuts:
            ctx.stats["shortcut_refreshed"] += 1
        self._confirmed(via, nbma)

    @staticmethod
    def _responder_nbma(pkt: RequestReply, observed: IPAddress, via: IPAddress,
                        claimed: IPAddress | None) -> IPAddress | None:
        """Where the responder is: the source, when the reply came straight from it (no
        NHS in its reverse transit record, and it is the responder); else what an NHS on
        the way vouched for (NAT extension); else what it claims (the reply came through
        our NHS, PendingResolution.accepts)."""
        if direct_reply(pkt, via):
            return observed
        return nat_nbma(pkt, via) or claimed

    def verify(self, via: IPAddress) -> None:
        """Someone who may not purge them says the shortcuts through next hop `via` are
        stale: each gets VERIFY_HOLD seconds at most, and one resolution goes through our
        NHS now, for the next hop, not one per shortcut (a purge must not make us send more
        than it carries); the answer, if it binds `via` to the same NBMA address, gives the
        others their time back (`_confirmed`). While they are checked, another such purge
        sends nothing."""
        shortcuts = self.shortcuts.via(via)
        if not shortcuts:
            return
        ctx = self.ctx
        now = ctx.now()
        checking = any(sc.verifying is not None for sc in shortcuts)
        for sc in shortcuts:
            if sc.verifying is None:
                sc.verifying = (sc.expires, sc.refresh_sent)
                sc.expires = min(sc.expires, now + VERIFY_HOLD)
                sc.refresh_sent = True
        if checking:
            return
        sc = shortcuts[0]
        upstream = self.upstream.refresh_nbma(sc.asked)
        if upstream is not None and sc.dst not in self.resolving:
            ctx.stats["shortcut_verify_sent"] += 1
            self.send(sc.dst, upstream, now)

    def _confirmed(self, via: IPAddress, nbma: IPAddress) -> None:
        """A reply bound `via` to `nbma`: the shortcuts through it being checked at that
        NBMA address get back the expiry and refresh state they had."""
        for sc in self.shortcuts.via(via):
            if sc.verifying is not None and sc.nbma == nbma:
                sc.expires, sc.refresh_sent = sc.verifying
                sc.verifying = None

    # -- timers ---------------------------------------------------------------------------
    def tick(self, now: float) -> float | None:
        """Shortcut expiry and refresh: a shortcut in the last third of its holdtime is
        resolved again, only if the data plane used it, through the NHS that answered it
        while that one is up (with two hubs, the preferred one may not know the peer)."""
        refresh, deadlines = self.shortcuts.tick(now)
        for sc in refresh:
            upstream = self.upstream.refresh_nbma(sc.asked)
            used = self.ctx.fx.last_used(sc.via)
            if used is not None and used >= sc.expires - sc.hold and upstream is not None \
                    and sc.dst not in self.resolving:
                self.send(sc.dst, upstream, now)
                self.ctx.stats["shortcut_refresh_sent"] += 1
        return min(deadlines, default=None)
