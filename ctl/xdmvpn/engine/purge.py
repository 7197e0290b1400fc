"""Purges (RFC 2332 5.2.5). Received: remove the bindings the sender may remove. Sent: when
our NBMA address changes, at clean shutdown and on `xdmvpn clear`, the stations that hold a
binding of ours (our NHSs, the requesters in the answered table) are told to drop it."""

from __future__ import annotations

from ipaddress import ip_network

from ..inet import IPAddress
from ..nhrp import Cie, Flag, PacketType, PurgeReply, PurgeRequest, RequestReply
from .answered import AnsweredTable
from .build import families, ip, request_extensions, src_nbma, with_own_auth
from .cache import EntryType
from .context import Context
from .pending import Pending
from .resolution import Resolver
from .shortcut import ShortcutTable
from .validate import prefix_len

PURGE_TIMEOUT = 10.0            # seconds we wait for a purge reply


class PendingPurge(Pending):
    reply_type = PacketType.PURGE_REPLY

    def __init__(self, ctx: Context, to: IPAddress):
        self.ctx = ctx
        self.to = to

    def accepts(self, pkt: RequestReply, observed: IPAddress) -> bool:
        return observed == self.to

    def error_from(self, observed: IPAddress) -> bool:
        return observed == self.to

    def complete(self, pkt: RequestReply, observed: IPAddress) -> None:
        self.ctx.stats["purge_acked"] += 1

    def fail(self, code: int) -> None:
        self.ctx.stats["purge_refused"] += 1

    def expire(self, now: float) -> None:
        self.ctx.stats["purge_unanswered"] += 1


class Purger:
    def __init__(self, ctx: Context, shortcuts: ShortcutTable, answered: AnsweredTable,
                 resolver: Resolver):
        self.ctx = ctx
        self.shortcuts = shortcuts
        self.answered = answered
        self.resolver = resolver

    # -- received ---------------------------------------------------------------------------
    def on_request(self, pkt: RequestReply, data: bytes, observed: IPAddress) -> None:
        """Remove the purged bindings the sender is entitled to remove, then reply unless N
        is set. Entitled: the NBMA address a binding is bound to (its owner) and our NHSs.
        Anyone else's purge of a shortcut's next hop only makes us check it: the next hop
        is resolved again through our NHS (once, whatever the number of shortcuts through
        it) and its shortcuts die within VERIFY_HOLD unless the answer confirms them (a
        station whose NBMA address changed purges from its new address)."""
        ctx = self.ctx
        purged = 0
        trusted = ctx.is_nhs(observed)
        for cie in pkt.cies or [Cie(prefix_len=0)]:
            proto = ip(cie.client_proto) or ip(pkt.src_proto)
            if proto is None:
                continue
            net = ip_network(f"{proto}/{prefix_len(cie.prefix_len, proto.max_prefixlen)}",
                             strict=False)
            if trusted:
                victims = [e for e in (ctx.cache.get(proto),) if e is not None]
                victims += ctx.cache.bound_to(observed, net)
            else:
                victims = ctx.cache.bound_to(observed, net)
            for entry in victims:
                if entry.type in (EntryType.DYNAMIC, EntryType.CACHED) \
                        and ctx.cache.get(entry.proto) is entry:
                    ctx.cache_remove(entry.proto)
                    purged += 1
            for sc in self.shortcuts.toward(net, None if trusted else observed):
                self.shortcuts.remove(sc.prefix)
                purged += 1
            if not trusted:
                self.resolver.verify(proto)
        ctx.stats["purged_entries"] += purged
        if not pkt.flags & Flag.N:
            reply = PurgeReply(afn=pkt.afn, protocol_type=pkt.protocol_type,
                               hop_count=ctx.p.hop_count, src_nbma=pkt.src_nbma,
                               src_proto=pkt.src_proto, dst_proto=pkt.dst_proto,
                               flags=pkt.flags, request_id=pkt.request_id, cies=pkt.cies,
                               extensions=with_own_auth(ctx.p, pkt.extensions))
            ctx.send(observed, reply)

    # -- sent -------------------------------------------------------------------------------
    def send(self, to: IPAddress, dst_proto: IPAddress, cies: list[Cie]) -> int | None:
        ctx, p = self.ctx, self.ctx.p
        rid = ctx.new_request_id()
        if not ctx.pending.add(PendingPurge(ctx, to), rid, ctx.now() + PURGE_TIMEOUT):
            return None
        pkt = PurgeRequest(**families(p, to), src_nbma=src_nbma(p, to), src_proto=p.tunnel_ip,
                           dst_proto=dst_proto,
                           hop_count=p.hop_count, flags=0, request_id=rid, cies=cies,
                           extensions=request_extensions(p, responder=False, nat=None))
        ctx.stats["purge_sent"] += 1
        ctx.send(to, pkt)
        return rid

    def _own_cie(self, prefix_len: int) -> Cie:
        p = self.ctx.p
        return Cie(prefix_len=prefix_len, mtu=p.mtu, client_proto=p.tunnel_ip)

    def purge_requesters(self) -> int:
        """Tell every station that resolved us to forget the bindings we gave it: one purge
        per requester, its prefixes batched in it."""
        n = 0
        for nbma, a in self.answered.take():
            self.send(nbma, a.proto, [self._own_cie(pl) for pl in sorted(a.lengths)])
            n += 1
        return n

    def purge_registrations(self, nhss: list[tuple[IPAddress, IPAddress]]) -> int:
        """De-register from every NHS (NBMA, protocol address) that has us."""
        for nbma, proto in nhss:
            self.send(nbma, proto, [self._own_cie(self.ctx.p.tunnel_ip.max_prefixlen)])
        return len(nhss)
