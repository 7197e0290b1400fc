"""NHRP server (hub) side: registrations and purges."""

from __future__ import annotations

import functools
from ipaddress import ip_network
from typing import TYPE_CHECKING

from ..nhrp import (
    Cie, CieCode, ExtType, Flag, PurgeReply, RegistrationReply,
)
from .build import own_cie, replace_cie_list, with_own_auth
from .cache import CacheEntry, EntryType
from .resolve import drop_shortcuts_via

if TYPE_CHECKING:
    from .node import Node

_FIXED_ENTRY_TYPES = (EntryType.LOCAL, EntryType.STATIC, EntryType.NHS)


def on_registration_request(node: "Node", pkt, data, observed) -> None:
    p, now = node.p, node.clock.now()
    if not node.serves:
        node.stats[("drop", "not_a_server")] += 1
        return
    unique = bool(pkt.flags & Flag.U_REG)
    cies = pkt.cies or [Cie(prefix_len=32, holdtime=p.holdtime)]
    out = []
    for cie in cies:
        proto = cie.client_proto or pkt.src_proto
        claimed = cie.client_nbma or pkt.src_nbma
        code = _register(node, proto, claimed, observed, cie.holdtime, unique, now)
        node.stats[("registration", int(code))] += 1
        out.append(Cie(code=code, prefix_len=cie.prefix_len, mtu=cie.mtu,
                       holdtime=cie.holdtime, client_nbma=cie.client_nbma,
                       client_proto=cie.client_proto, preference=cie.preference,
                       client_nbma_sub=cie.client_nbma_sub, reserved=cie.reserved,
                       nbma_type=cie.nbma_type, sub_type=cie.sub_type))
    exts = replace_cie_list(pkt.extensions, ExtType.RESPONDER_ADDRESS,
                            [own_cie(p, prefix_len=32)])
    if observed != pkt.src_nbma and pkt.extension(ExtType.NAT_ADDRESS) is not None:
        # the client is behind NAT: tell it the address we see it at
        exts = replace_cie_list(exts, ExtType.NAT_ADDRESS, [Cie(
            prefix_len=32, mtu=p.mtu, client_nbma=observed, client_proto=pkt.src_proto)],
            compulsory=False)
    reply = RegistrationReply(
        afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
        src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=pkt.dst_proto,
        flags=pkt.flags, request_id=pkt.request_id, cies=out,
        extensions=with_own_auth(p, exts))
    node.send(observed, reply)


@functools.lru_cache(maxsize=4)
def _overlay(tunnel_ip, prefix_len: int):
    """The overlay network, parsed once (not per registration)."""
    return ip_network(f"{tunnel_ip}/{prefix_len}", strict=False)


def _register(node: "Node", proto, claimed, observed, holdtime: int, unique: bool,
              now: float) -> int:
    p = node.p
    if proto is None or proto.version != p.tunnel_ip.version or proto not in _overlay(
            p.tunnel_ip, p.prefix_len):
        return CieCode.ADMINISTRATIVELY_PROHIBITED
    if not node.fx.may_register(observed, proto):     # IPsec identity not bound to proto
        node.stats["identity_refused"] += 1
        return CieCode.ADMINISTRATIVELY_PROHIBITED
    old = node.cache.get(proto)
    if old is not None and old.nbma != observed:
        if old.type in _FIXED_ENTRY_TYPES:
            return CieCode.ALREADY_REGISTERED
        if old.type is EntryType.DYNAMIC and old.unique:
            return CieCode.ALREADY_REGISTERED      # the registered owner keeps it
    if holdtime == 0:                              # de-registration
        if old is not None and old.type is EntryType.DYNAMIC:
            node.cache_remove(proto)
        return CieCode.SUCCESS
    if old is None and len(node.cache) >= p.max_entries:
        return CieCode.INSUFFICIENT_RESOURCES
    node.cache_put(CacheEntry(proto, EntryType.DYNAMIC, nbma=observed, claimed_nbma=claimed,
                              expires=now + holdtime, created=old.created if old else now,
                              unique=unique, holdtime=holdtime, mtu=p.mtu))
    return CieCode.SUCCESS


def on_purge_request(node: "Node", pkt, data, observed) -> None:
    """Remove the purged bindings the sender is entitled to remove, then reply unless N is
    set. Entitled: any binding whose NBMA is the sender's, and bindings of the sender's own
    protocol address from any NBMA (its NBMA changed), except a unique registration, which
    only changes from the NBMA that made it (as a registration would)."""
    purged = 0
    for cie in pkt.cies or [Cie(prefix_len=32)]:
        proto = cie.client_proto or pkt.src_proto
        if proto is None:
            continue
        net = ip_network(f"{proto}/{cie.prefix_len or proto.max_prefixlen}", strict=False)
        own = pkt.src_proto is not None and pkt.src_proto in net \
            and node.fx.may_register(observed, pkt.src_proto)
        for entry in list(node.cache.of_type(EntryType.DYNAMIC, EntryType.CACHED)):
            if entry.proto not in net:
                continue
            if entry.nbma == observed or (own and not (entry.type is EntryType.DYNAMIC
                                                       and entry.unique)):
                node.cache_remove(entry.proto)
                purged += 1
        purged += drop_shortcuts_via(node, net, None if own else observed)
    node.stats["purged_entries"] += purged
    if not pkt.flags & Flag.N:
        reply = PurgeReply(afn=pkt.afn, protocol_type=pkt.protocol_type,
                           hop_count=node.p.hop_count, src_nbma=pkt.src_nbma,
                           src_proto=pkt.src_proto, dst_proto=pkt.dst_proto, flags=pkt.flags,
                           request_id=pkt.request_id, cies=pkt.cies,
                           extensions=with_own_auth(node.p, pkt.extensions))
        node.send(observed, reply)


def on_purge_reply(node: "Node", pkt, data, observed) -> None:
    pending = node.pending.pop(pkt.request_id, None)
    if pending is None:
        node.stats[("drop", "unexpected_reply")] += 1
