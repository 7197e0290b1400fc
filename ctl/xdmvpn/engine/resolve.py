"""Resolution, DMVPN phase-3 traffic indications and shortcuts."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import TYPE_CHECKING

from ..nhrp import (
    Cie, CieCode, ErrorCode, ExtType, Flag, ResolutionReply,
    ResolutionRequest, TrafficIndication,
)
from .build import cie_list, own_cie, replace_cie_list, request_extensions, with_own_auth
from .cache import CacheEntry, EntryType

if TYPE_CHECKING:
    from .node import Node

RESOLUTION_TIMEOUT = 2.0        # seconds before a resolution request is sent again
RESOLUTION_TRIES = 3
NEGATIVE_HOLD = 60              # seconds a "no binding" answer suppresses re-resolution
INDICATION_GUARD = 1.0          # at most one indication per (source, destination) per second
INDICATION_GUARD_MAX = 65536    # pairs remembered for that guard
TI_CONTENTS = 64                # bytes of the triggering packet an indication carries
_REQUEST_FLAGS = Flag.Q | Flag.A | Flag.S | Flag.CISCO_NAT      # 0xc802, as Cisco sends
_REPLY_FLAGS = Flag.Q | Flag.A | Flag.D | Flag.U_RES | Flag.S | Flag.CISCO_NAT   # 0xf802


@dataclass
class Shortcut:
    prefix: object
    dst: object             # the destination whose resolution installed it
    via: object             # next hop's protocol address (the reply's CIE)
    nbma: object
    hold: float
    expires: float
    installed: float
    refresh_sent: bool = False


# -- requests ---------------------------------------------------------------------------------

def send_resolution(node: "Node", dst, nbma, now: float, tries: int = 1,
                    first: float | None = None) -> int:
    p = node.p
    rid = node.new_request_id()
    node.pending[rid] = ("resolution", dst)
    node.resolving[dst] = (rid, now, tries, nbma, now if first is None else first)
    pkt = ResolutionRequest(
        src_nbma=p.nbma, src_proto=p.tunnel_ip, dst_proto=dst, hop_count=p.hop_count,
        flags=_REQUEST_FLAGS, request_id=rid,
        cies=[Cie(prefix_len=0, mtu=p.mtu, holdtime=p.holdtime)],
        extensions=request_extensions(p, nat=[]))
    node.send(nbma, pkt)
    return rid


def on_resolution_request(node: "Node", pkt, data, observed) -> None:
    p, now = node.p, node.clock.now()
    fwd = cie_list(pkt, ExtType.FORWARD_TRANSIT_NHS) or []
    if any(c.client_proto == p.tunnel_ip for c in fwd):
        node.error_indication(pkt, data, observed, ErrorCode.LOOP_DETECTED,
                              pkt.extension_offset or 0)
        return
    dst = pkt.dst_proto
    hint = node.fx.route_lookup(dst) if dst is not None else None
    if dst == p.tunnel_ip or (hint is not None and hint.local):
        _answer(node, pkt, observed, 32 if dst == p.tunnel_ip else hint.prefix_len, now)
        return
    target = _next_hop_entry(node, dst, hint)
    if target is not None and target.nbma != observed:
        _forward(node, pkt, data, observed, target.nbma)
        return
    upstream = node.preferred_nhs()
    if upstream is not None and upstream.nhs.nbma != observed:
        _forward(node, pkt, data, observed, upstream.nhs.nbma)
        return
    if node.serves:
        _negative(node, pkt, observed)
    else:
        node.stats[("drop", "unresolvable")] += 1


def _next_hop_entry(node: "Node", dst, hint):
    entry = node.cache.get(dst)
    if entry is not None and entry.type in (EntryType.DYNAMIC, EntryType.STATIC):
        return entry
    if hint is not None and hint.via is not None:
        entry = node.cache.get(hint.via)
        if entry is not None and entry.type in (EntryType.DYNAMIC, EntryType.STATIC,
                                                EntryType.NHS):
            return entry
    return None


def _requester_nbma(pkt):
    """Where the requester is reachable: the post-NAT address an NHS put in the NAT
    extension for it, else the NBMA address it claims."""
    for cie in cie_list(pkt, ExtType.NAT_ADDRESS) or []:
        if cie.client_proto == pkt.src_proto and cie.client_nbma is not None:
            return cie.client_nbma
    return pkt.src_nbma


def _answer(node: "Node", pkt, observed, prefix_len: int, now: float) -> None:
    p = node.p
    to = _requester_nbma(pkt)
    if pkt.src_proto is not None and to is not None and pkt.src_proto != p.tunnel_ip:
        # the requester will send to us directly: send back to it directly too
        node.cache_put(CacheEntry(pkt.src_proto, EntryType.CACHED, nbma=to,
                                  claimed_nbma=pkt.src_nbma, expires=now + p.holdtime,
                                  created=now, holdtime=p.holdtime, mtu=p.mtu))
    exts = replace_cie_list(pkt.extensions, ExtType.RESPONDER_ADDRESS,
                            [own_cie(p, prefix_len=0)])
    exts = replace_cie_list(exts, ExtType.REVERSE_TRANSIT_NHS, [])
    reply = ResolutionReply(
        afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
        src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=pkt.dst_proto,
        flags=_REPLY_FLAGS, request_id=pkt.request_id,
        cies=[own_cie(p, prefix_len=prefix_len)], extensions=with_own_auth(p, exts))
    node.stats["resolution_answered"] += 1
    if to is not None and pkt.src_proto is not None:
        # it holds a binding of ours now: purge it when we change or go away
        node.answered.setdefault(to, (pkt.src_proto, set()))[1].add(prefix_len)
    node.send(to, reply)


def _negative(node: "Node", pkt, observed) -> None:
    p = node.p
    cie = Cie(code=CieCode.NO_BINDING, prefix_len=pkt.dst_proto.max_prefixlen
              if pkt.dst_proto is not None else 0, mtu=p.mtu, holdtime=NEGATIVE_HOLD)
    reply = ResolutionReply(
        afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
        src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=pkt.dst_proto,
        flags=pkt.flags & Flag.Q, request_id=pkt.request_id, cies=[cie],
        extensions=with_own_auth(p, replace_cie_list(pkt.extensions, ExtType.RESPONDER_ADDRESS,
                                                     [own_cie(p, prefix_len=0)])))
    node.stats["resolution_negative"] += 1
    node.send(observed, reply)


def _forward(node: "Node", pkt, data, observed, to) -> None:
    p = node.p
    if pkt.hop_count <= 1:
        node.error_indication(pkt, data, observed, ErrorCode.HOP_COUNT_EXCEEDED, 9)
        return
    fwd = list(cie_list(pkt, ExtType.FORWARD_TRANSIT_NHS) or [])
    fwd.append(own_cie(p, prefix_len=0))
    exts = replace_cie_list(pkt.extensions, ExtType.FORWARD_TRANSIT_NHS, fwd)
    requester = node.cache.get(pkt.src_proto) if pkt.src_proto is not None else None
    if (requester is not None and requester.type is EntryType.DYNAMIC
            and requester.nbma != pkt.src_nbma):
        exts = replace_cie_list(exts, ExtType.NAT_ADDRESS, [Cie(
            prefix_len=32, mtu=p.mtu, client_nbma=requester.nbma,
            client_proto=pkt.src_proto)], compulsory=False)
    out = ResolutionRequest(
        afn=pkt.afn, protocol_type=pkt.protocol_type, snap=pkt.snap,
        hop_count=pkt.hop_count - 1, src_nbma=pkt.src_nbma, src_proto=pkt.src_proto,
        dst_proto=pkt.dst_proto, flags=pkt.flags, request_id=pkt.request_id, cies=pkt.cies,
        extensions=with_own_auth(p, exts))
    node.stats["resolution_forwarded"] += 1
    node.send(to, out)


# -- replies ------------------------------------------------------------------------------------

def on_resolution_reply(node: "Node", pkt, data, observed) -> None:
    p, now = node.p, node.clock.now()
    pending = node.pending.get(pkt.request_id)
    if pending is None or pending[0] != "resolution" or pending[1] != pkt.dst_proto \
            or pkt.src_proto != p.tunnel_ip:
        node.stats[("drop", "unexpected_reply")] += 1
        return
    del node.pending[pkt.request_id]
    resolving = node.resolving.pop(pkt.dst_proto, None)
    if not pkt.cies:
        node.stats[("drop", "reply_without_cie")] += 1
        return
    cie = pkt.cies[0]
    if cie.code != CieCode.SUCCESS or cie.client_proto is None:
        node.cache_put(CacheEntry(pkt.dst_proto, EntryType.NEGATIVE, created=now,
                                  expires=now + (cie.holdtime or NEGATIVE_HOLD)))
        node.stats["resolution_failed"] += 1
        return
    via = cie.client_proto
    responder = cie_list(pkt, ExtType.RESPONDER_ADDRESS) or []
    direct = any(r.client_proto == via for r in responder)
    nbma = observed if direct else cie.client_nbma
    if nbma is None:
        return
    hold = cie.holdtime or p.holdtime
    node.cache_put(CacheEntry(via, EntryType.CACHED, nbma=nbma, claimed_nbma=cie.client_nbma,
                              expires=now + hold, created=now, holdtime=hold, mtu=cie.mtu))
    prefix = ip_network(f"{pkt.dst_proto}/{cie.prefix_len or pkt.dst_proto.max_prefixlen}",
                        strict=False)
    old = node.shortcuts.get(prefix)
    node.shortcuts[prefix] = Shortcut(prefix, pkt.dst_proto, via, nbma, hold, now + hold,
                                      old.installed if old else now)
    if old is None or (old.via, old.nbma) != (via, nbma):
        node.fx.shortcut_set(prefix, via, nbma)
        node.stats["shortcut_installed"] += 1
        if resolving is not None:
            node.setup_latencies.append(now - resolving[4])
            node.setup_count += 1
    else:
        node.stats["shortcut_refreshed"] += 1


def resolution_failed(node: "Node", dst) -> None:
    node.resolving.pop(dst, None)
    node.stats["resolution_failed"] += 1


# -- traffic indications ------------------------------------------------------------------------

def on_traffic_indication(node: "Node", pkt, data, observed) -> None:
    p, now = node.p, node.clock.now()
    if not p.shortcut:
        node.stats["indication_ignored"] += 1
        return
    if observed not in {c.nhs.nbma for c in node.nhcs} and node.cache.get(pkt.src_proto) is None:
        node.stats[("drop", "indication_from_stranger")] += 1
        return
    dst = inner_destination(pkt.contents)
    if dst is None:
        node.stats[("drop", "indication_without_packet")] += 1
        return
    if dst in node.resolving or any(dst in s.prefix and not s.refresh_sent
                                    for s in node.shortcuts.values()):
        node.stats["indication_redundant"] += 1
        return
    negative = node.cache.get(dst)
    if negative is not None and negative.type is EntryType.NEGATIVE:
        node.stats["indication_redundant"] += 1
        return
    node.stats["indication_acted"] += 1
    send_resolution(node, dst, observed, now)


def inner_destination(head: bytes):
    """Destination address of the IPv4/IPv6 packet whose start an indication carries."""
    if len(head) >= 20 and head[0] >> 4 == 4:
        return IPv4Address(head[16:20])
    if len(head) >= 40 and head[0] >> 4 == 6:
        return IPv6Address(head[24:40])
    return None


def send_indication(node: "Node", sender_nbma, inner_src, inner_dst, head: bytes) -> bool:
    """Hub: the data plane saw inner_src -> inner_dst hairpin through us from sender_nbma."""
    p, now = node.p, node.clock.now()
    if not p.redirect:
        return False
    key = (inner_src, inner_dst)
    last = node.indications.get(key)
    if last is not None and now - last < INDICATION_GUARD:
        node.stats["indication_suppressed"] += 1
        return False
    if len(node.indications) >= INDICATION_GUARD_MAX:
        node.indications.clear()
    node.indications[key] = now
    pkt = TrafficIndication(
        src_nbma=p.nbma, src_proto=p.tunnel_ip, dst_proto=inner_src, hop_count=p.hop_count,
        traffic_code=0, contents=bytes(head[:TI_CONTENTS]),
        extensions=request_extensions(p, responder=False, nat=[]))
    node.stats[("indication", "tx")] += 1
    node.send(sender_nbma, pkt)
    return True


# -- timers and housekeeping -----------------------------------------------------------------

def tick(node: "Node", now: float):
    deadlines = []
    for dst, (rid, sent, tries, nbma, first) in list(node.resolving.items()):
        due = sent + RESOLUTION_TIMEOUT * tries
        if now < due:
            deadlines.append(due)
            continue
        node.pending.pop(rid, None)
        if tries >= RESOLUTION_TRIES:
            resolution_failed(node, dst)
        else:
            send_resolution(node, dst, nbma, now, tries + 1, first)
            deadlines.append(now + RESOLUTION_TIMEOUT * (tries + 1))
    for prefix, sc in list(node.shortcuts.items()):
        if now >= sc.expires:
            _remove_shortcut(node, prefix)
            node.stats["shortcut_expired"] += 1
            continue
        refresh_at = sc.expires - sc.hold / 3
        if sc.refresh_sent or now < refresh_at:
            deadlines.append(sc.expires if sc.refresh_sent else refresh_at)
            continue
        # in the last third of its holdtime: refresh it only if the data plane used it
        sc.refresh_sent = True
        used = node.fx.last_used(sc.via)
        upstream = node.preferred_nhs()
        if used is not None and used >= sc.expires - sc.hold and upstream is not None \
                and sc.dst not in node.resolving:
            send_resolution(node, sc.dst, upstream.nhs.nbma, now)
            node.stats["shortcut_refresh_sent"] += 1
        deadlines.append(sc.expires)
    return min(deadlines, default=None)


def _remove_shortcut(node: "Node", prefix) -> None:
    sc = node.shortcuts.pop(prefix, None)
    if sc is None:
        return
    node.fx.shortcut_del(prefix)
    if not any(s.via == sc.via for s in node.shortcuts.values()):
        entry = node.cache.get(sc.via)
        if entry is not None and entry.type is EntryType.CACHED:
            node.cache_remove(sc.via)


def drop_shortcuts_via(node: "Node", net, nbma) -> int:
    """Remove the shortcuts toward net that go to nbma (to any NBMA when nbma is None)."""
    gone = [pfx for pfx, sc in node.shortcuts.items()
            if (nbma is None or sc.nbma == nbma) and (sc.via in net or pfx.overlaps(net))]
    for pfx in gone:
        _remove_shortcut(node, pfx)
    return len(gone)


def clear_shortcuts(node: "Node") -> int:
    n = len(node.shortcuts)
    for pfx in list(node.shortcuts):
        _remove_shortcut(node, pfx)
    return n
