"""Registration, server side (the hub, RFC 2332 5.2.3/5.2.4): registration requests from
clients, answered with a code per CIE."""

from __future__ import annotations

import functools
from ipaddress import ip_network

from ..inet import IPAddress, IPNetwork
from ..nhrp import Cie, CieCode, ExtType, Flag, RegistrationReply, RequestReply
from .build import ip, own_cie, replace_cie_list, with_own_auth
from .cache import CacheEntry, EntryType
from .context import Context

_FIXED_ENTRY_TYPES = (EntryType.LOCAL, EntryType.STATIC, EntryType.NHS)


@functools.lru_cache(maxsize=4)
def _overlay(tunnel_ip: IPAddress, prefix_len: int) -> IPNetwork:
    """The overlay network, parsed once (not per registration)."""
    return ip_network(f"{tunnel_ip}/{prefix_len}", strict=False)


class RegistrationServer:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def serves(self) -> bool:
        p = self.ctx.p
        return p.serve if p.serve is not None else not p.is_nhc

    def on_request(self, pkt: RequestReply, data: bytes, observed: IPAddress) -> None:
        ctx, p = self.ctx, self.ctx.p
        now = ctx.now()
        if not self.serves():
            ctx.stats[("drop", "not_a_server")] += 1
            return
        unique = bool(pkt.flags & Flag.U_REG)
        cies = pkt.cies or [Cie(prefix_len=32, holdtime=p.holdtime)]
        out = []
        for cie in cies:
            proto = ip(cie.client_proto) or ip(pkt.src_proto)
            claimed = ip(cie.client_nbma) or ip(pkt.src_nbma)
            code = self.register(proto, claimed, observed, cie.holdtime, unique, now)
            ctx.stats[("registration", int(code))] += 1
            out.append(Cie(code=code, prefix_len=cie.prefix_len, mtu=cie.mtu,
                           holdtime=cie.holdtime, client_nbma=cie.client_nbma,
                           client_proto=cie.client_proto, preference=cie.preference,
                           client_nbma_sub=cie.client_nbma_sub, reserved=cie.reserved,
                           nbma_type=cie.nbma_type, sub_type=cie.sub_type))
        exts = replace_cie_list(pkt.extensions, ExtType.RESPONDER_ADDRESS,
                                [own_cie(p, prefix_len=p.tunnel_ip.max_prefixlen)])
        if observed != pkt.src_nbma and pkt.extension(ExtType.NAT_ADDRESS) is not None:
            # the client is behind NAT: tell it the address we see it at
            exts = replace_cie_list(exts, ExtType.NAT_ADDRESS, [Cie(
                prefix_len=p.tunnel_ip.max_prefixlen, mtu=p.mtu, client_nbma=observed,
                client_proto=pkt.src_proto)], compulsory=False)
        reply = RegistrationReply(
            afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
            # our own address, where FRR's client learns its NHS's (`nhs dynamic`)
            src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=p.tunnel_ip,
            flags=pkt.flags, request_id=pkt.request_id, cies=out,
            extensions=with_own_auth(p, exts))
        ctx.send(observed, reply)

    def register(self, proto: IPAddress | None, claimed: IPAddress | None,
                 observed: IPAddress, holdtime: int, unique: bool, now: float) -> int:
        """One CIE: bind proto to the observed NBMA address; the CIE code."""
        ctx, p = self.ctx, self.ctx.p
        if proto is None or proto.version != p.tunnel_ip.version or proto not in _overlay(
                p.tunnel_ip, p.prefix_len):
            return CieCode.ADMINISTRATIVELY_PROHIBITED
        if not ctx.fx.may_register(observed, proto):   # IPsec identity not bound to proto
            ctx.stats["identity_refused"] += 1
            return CieCode.ADMINISTRATIVELY_PROHIBITED
        old = ctx.cache.get(proto)
        if old is not None and old.nbma != observed:
            if old.type in _FIXED_ENTRY_TYPES:
                return CieCode.ALREADY_REGISTERED
            if old.type is EntryType.DYNAMIC and old.unique:
                return CieCode.ALREADY_REGISTERED      # the registered owner keeps it
        if holdtime == 0:                              # de-registration
            if old is not None and old.type is EntryType.DYNAMIC:
                ctx.cache_remove(proto)
            return CieCode.SUCCESS
        if old is None and len(ctx.cache) >= p.max_entries:
            ctx.stats[("cap", "entries")] += 1
            return CieCode.INSUFFICIENT_RESOURCES
        if (old is None or old.nbma != observed) \
                and ctx.cache.at_nbma(observed) >= p.limits.entries_per_nbma:
            ctx.stats[("cap", "entries_per_nbma")] += 1
            return CieCode.INSUFFICIENT_RESOURCES
        ctx.cache_put(CacheEntry(proto, EntryType.DYNAMIC, nbma=observed, claimed_nbma=claimed,
                                 expires=now + holdtime, created=old.created if old else now,
                                 unique=unique, holdtime=holdtime, mtu=p.mtu))
        return CieCode.SUCCESS
