"""DMVPN phase 3 traffic indications (Cisco's redirect): sent by a hub that hairpinned a
packet between two spokes, acted on by a spoke, which resolves the packet's destination."""

from __future__ import annotations

from collections import OrderedDict
from ipaddress import IPv4Address, IPv6Address

from ..inet import IPAddress
from ..nhrp import TrafficIndication
from .build import families, request_extensions, src_nbma
from .cache import EntryType
from .context import Context, Upstream
from .resolution import Resolver
from .shortcut import ShortcutTable

INDICATION_GUARD = 1.0          # at most one indication per (source, destination) per second
TI_CONTENTS = 64                # bytes of the triggering packet an indication carries


def inner_destination(head: bytes) -> IPAddress | None:
    """Destination address of the IPv4/IPv6 packet whose start an indication carries."""
    if len(head) >= 20 and head[0] >> 4 == 4:
        return IPv4Address(head[16:20])
    if len(head) >= 40 and head[0] >> 4 == 6:
        return IPv6Address(head[24:40])
    return None


class Indications:
    def __init__(self, ctx: Context, resolver: Resolver, shortcuts: ShortcutTable,
                 upstream: Upstream):
        self.ctx = ctx
        self.resolver = resolver
        self.shortcuts = shortcuts
        self.upstream = upstream
        # (inner src, inner dst) -> when we last sent an indication about it, oldest first
        self.sent: OrderedDict[tuple[IPAddress, IPAddress], float] = OrderedDict()

    # -- hub: send ------------------------------------------------------------------------
    def send(self, sender_nbma: IPAddress, inner_src: IPAddress, inner_dst: IPAddress,
             head: bytes) -> bool:
        """The data plane saw inner_src -> inner_dst hairpin through us from sender_nbma."""
        ctx, p = self.ctx, self.ctx.p
        if not p.redirect:
            return False
        now = ctx.now()
        self._expire(now)
        pair = (inner_src, inner_dst)
        last = self.sent.get(pair)
        if last is not None and now - last < INDICATION_GUARD:
            ctx.stats["indication_suppressed"] += 1
            return False
        target = self.resolver.next_hop_entry(inner_dst)
        if target is not None and target.nbma is not None \
                and target.nbma.version != sender_nbma.version:
            # spokes on underlays of two families cannot reach each other directly: the
            # hub path is the only one (a resolution would find an unusable NBMA address)
            ctx.stats["indication_cross_family"] += 1
            return False
        if last is None and len(self.sent) >= p.limits.indications:
            ctx.stats[("cap", "indications")] += 1
            return False
        self.sent.pop(pair, None)
        self.sent[pair] = now
        pkt = TrafficIndication(
            **families(p, sender_nbma),
            src_nbma=src_nbma(p, sender_nbma), src_proto=p.tunnel_ip, dst_proto=inner_src, hop_count=p.hop_count,
            traffic_code=0, contents=bytes(head[:TI_CONTENTS]),
            extensions=request_extensions(p, responder=False, nat=[]))
        ctx.stats[("indication", "tx")] += 1
        ctx.send(sender_nbma, pkt)
        return True

    def _expire(self, now: float) -> None:
        while self.sent:
            pair, last = next(iter(self.sent.items()))
            if now - last < INDICATION_GUARD:
                return
            del self.sent[pair]

    # -- spoke: act -----------------------------------------------------------------------
    def on_indication(self, pkt: TrafficIndication, data: bytes, observed: IPAddress) -> None:
        ctx, p = self.ctx, self.ctx.p
        if not p.shortcut:
            ctx.stats["indication_ignored"] += 1
            return
        if not ctx.trusted(observed):          # our NHS, or a hub we know at that NBMA
            ctx.stats[("drop", "indication_from_stranger")] += 1
            return
        dst = inner_destination(pkt.contents)
        if dst is None:
            ctx.stats[("drop", "indication_without_packet")] += 1
            return
        sc = self.shortcuts.covering(dst)
        if dst in self.resolver.resolving or (sc is not None and not sc.refresh_sent):
            ctx.stats["indication_redundant"] += 1
            return
        negative = ctx.cache.get(dst)
        if negative is not None and negative.type is EntryType.NEGATIVE:
            ctx.stats["indication_redundant"] += 1
            return
        ctx.stats["indication_acted"] += 1
        self.resolver.send(dst, observed, ctx.now())
