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
    cie_list, ip, nat_nbma, own_cie, replace_cie_list, request_extensions, with_own_auth,
)
from .cache import CacheEntry, EntryType
from .context import Context, Upstream
from .effects import RouteHint
from .pending import Pending
from .shortcut import Shortcut, ShortcutTable

RESOLUTION_TIMEOUT = 2.0        # seconds before a resolution request is sent again
RESOLUTION_TRIES = 3
NEGATIVE_HOLD = 60              # seconds a "no binding" answer suppresses re-resolution
_REQUEST_FLAGS = Flag.Q | Flag.A | Flag.S | Flag.CISCO_NAT      # 0xc802, as Cisco sends
_REPLY_FLAGS = Flag.Q | Flag.A | Flag.D | Flag.U_RES | Flag.S | Flag.CISCO_NAT   # 0xf802


@dataclass
class Resolving:
    """A resolution of ours under way."""
    dst: IPAddress
    rid: int
    sent: float             # when the last try went out
    tries: int
    nbma: IPAddress         # where the requests go (an NHS, or the hub that redirected)
    first: float            # when the first try went out (set-up latency)


class PendingResolution(Pending):
    reply_type = PacketType.RESOLUTION_REPLY

    def __init__(self, resolver: "Resolver", r: Resolving):
        self.resolver = resolver
        self.r = r

    def accepts(self, pkt: RequestReply, observed: IPAddress) -> bool:
        return pkt.dst_proto == self.r.dst and pkt.src_proto == self.resolver.ctx.p.tunnel_ip

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
            src_nbma=p.nbma, src_proto=p.tunnel_ip, dst_proto=dst, hop_count=p.hop_count,
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
        ctx, p = self.ctx, self.ctx.p
        fwd = cie_list(pkt, ExtType.FORWARD_TRANSIT_NHS) or []
        if any(c.client_proto == p.tunnel_ip for c in fwd):
            ctx.error_indication(pkt, data, observed, ErrorCode.LOOP_DETECTED,
                                 pkt.extension_offset or 0)
            return
        dst = ip(pkt.dst_proto)
        if dst is None:
            ctx.stats[("drop", "unresolvable")] += 1
            return
        hint = ctx.fx.route_lookup(dst)
        if dst == p.tunnel_ip or hint.local:
            self._answer(pkt, observed, dst.max_prefixlen if dst == p.tunnel_ip
                         else hint.prefix_len)
            return
        target = self._next_hop_entry(dst, hint)
        if target is not None and target.nbma is not None and target.nbma != observed:
            self._forward(pkt, data, observed, target.nbma)
            return
        upstream = self.upstream.preferred_nbma()
        if upstream is not None and upstream != observed:
            self._forward(pkt, data, observed, upstream)
            return
        if self.serves():
            self._negative(pkt, observed)
        else:
            ctx.stats[("drop", "unresolvable")] += 1

    def serves(self) -> bool:
        p = self.ctx.p
        return p.serve if p.serve is not None else not p.is_nhc

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

    def _answer(self, pkt: RequestReply, observed: IPAddress, prefix_len: int) -> None:
        ctx, p = self.ctx, self.ctx.p
        now = ctx.now()
        src_proto, claimed = ip(pkt.src_proto), ip(pkt.src_nbma)
        to = nat_nbma(pkt, src_proto) or claimed
        if src_proto is not None and to is not None and src_proto != p.tunnel_ip:
            # the requester will send to us directly: send back to it directly too
            ctx.cache_put(CacheEntry(src_proto, EntryType.CACHED, nbma=to,
                                     claimed_nbma=claimed, expires=now + p.holdtime,
                                     created=now, holdtime=p.holdtime, mtu=p.mtu))
        exts = replace_cie_list(pkt.extensions, ExtType.RESPONDER_ADDRESS,
                                [own_cie(p, prefix_len=0)])
        exts = replace_cie_list(exts, ExtType.REVERSE_TRANSIT_NHS, [])
        reply = ResolutionReply(
            afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
            src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=pkt.dst_proto,
            flags=_REPLY_FLAGS, request_id=pkt.request_id,
            cies=[own_cie(p, prefix_len=prefix_len)], extensions=with_own_auth(p, exts))
        ctx.stats["resolution_answered"] += 1
        if to is None:
            return
        if src_proto is not None:
            # it holds a binding of ours now: purge it when we change or go away
            self.answered.record(to, src_proto, prefix_len)
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
                pkt.extensions, ExtType.RESPONDER_ADDRESS, [own_cie(p, prefix_len=0)])))
        ctx.stats["resolution_negative"] += 1
        ctx.send(observed, reply)

    def _forward(self, pkt: RequestReply, data: bytes, observed: IPAddress,
                 to: IPAddress) -> None:
        ctx, p = self.ctx, self.ctx.p
        if pkt.hop_count <= 1:
            ctx.error_indication(pkt, data, observed, ErrorCode.HOP_COUNT_EXCEEDED, 9)
            return
        fwd = list(cie_list(pkt, ExtType.FORWARD_TRANSIT_NHS) or [])
        fwd.append(own_cie(p, prefix_len=0))
        exts = replace_cie_list(pkt.extensions, ExtType.FORWARD_TRANSIT_NHS, fwd)
        src_proto = ip(pkt.src_proto)
        requester = ctx.cache.get(src_proto) if src_proto is not None else None
        if (src_proto is not None and requester is not None
                and requester.type is EntryType.DYNAMIC and requester.nbma != pkt.src_nbma):
            exts = replace_cie_list(exts, ExtType.NAT_ADDRESS, [Cie(
                prefix_len=src_proto.max_prefixlen, mtu=p.mtu, client_nbma=requester.nbma,
                client_proto=src_proto)], compulsory=False)
        out = ResolutionRequest(
            afn=pkt.afn, protocol_type=pkt.protocol_type, snap=pkt.snap,
            hop_count=pkt.hop_count - 1, src_nbma=pkt.src_nbma, src_proto=pkt.src_proto,
            dst_proto=pkt.dst_proto, flags=pkt.flags, request_id=pkt.request_id,
            cies=pkt.cies, extensions=with_own_auth(p, exts))
        ctx.stats["resolution_forwarded"] += 1
        ctx.send(to, out)

    # -- replies to ours ------------------------------------------------------------------
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
            ctx.cache_put(CacheEntry(r.dst, EntryType.NEGATIVE, created=now,
                                     expires=now + (cie.holdtime or NEGATIVE_HOLD)))
            ctx.stats["resolution_failed"] += 1
            return
        responder = cie_list(pkt, ExtType.RESPONDER_ADDRESS) or []
        direct = any(c.client_proto == via for c in responder)
        nbma = observed if direct else ip(cie.client_nbma)
        if nbma is None:
            return
        hold = cie.holdtime or p.holdtime
        ctx.cache_put(CacheEntry(via, EntryType.CACHED, nbma=nbma,
                                 claimed_nbma=ip(cie.client_nbma), expires=now + hold,
                                 created=now, holdtime=hold, mtu=cie.mtu))
        plen = cie.prefix_len or r.dst.max_prefixlen
        prefix = ip_network(f"{r.dst}/{min(plen, r.dst.max_prefixlen)}", strict=False)
        if self.shortcuts.install(Shortcut(prefix, r.dst, via, nbma, hold, now + hold, now)):
            ctx.stats["shortcut_installed"] += 1
            self.setup_latencies.append(now - r.first)
            self.setup_count += 1
        elif prefix in self.shortcuts:
            ctx.stats["shortcut_refreshed"] += 1

    # -- timers ---------------------------------------------------------------------------
    def tick(self, now: float) -> float | None:
        """Shortcut expiry and refresh: a shortcut in the last third of its holdtime is
        resolved again through the NHS, only if the data plane used it."""
        refresh, deadlines = self.shortcuts.tick(now)
        upstream = self.upstream.preferred_nbma()
        for sc in refresh:
            used = self.ctx.fx.last_used(sc.via)
            if used is not None and used >= sc.expires - sc.hold and upstream is not None \
                    and sc.dst not in self.resolving:
                self.send(sc.dst, upstream, now)
                self.ctx.stats["shortcut_refresh_sent"] += 1
        return min(deadlines, default=None)
