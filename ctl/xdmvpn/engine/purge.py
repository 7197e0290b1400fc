"""Purges we send (RFC 2332 5.2.5): when our NBMA address changes, at clean shutdown and on
`xdmvpn clear`, the stations that hold a binding of ours are told to drop it.

Who holds one: every NHS we registered with, and every requester whose resolution request we
answered (node.answered: its NBMA -> its protocol address, the CIE prefixes we gave it)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..nhrp import Cie, PurgeRequest
from .build import request_extensions
from .cache import CacheEntry, EntryType
from .nhc import NhcState

if TYPE_CHECKING:
    from .node import Node


def send_purge(node: "Node", to, dst_proto, cies: list[Cie]) -> int:
    p = node.p
    rid = node.new_request_id()
    node.pending[rid] = ("purge", to)
    pkt = PurgeRequest(src_nbma=p.nbma, src_proto=p.tunnel_ip, dst_proto=dst_proto,
                       hop_count=p.hop_count, flags=0, request_id=rid, cies=cies,
                       extensions=request_extensions(p, responder=False, nat=None))
    node.stats["purge_sent"] += 1
    node.send(to, pkt)
    return rid


def _own_cie(node: "Node", prefix_len: int) -> Cie:
    return Cie(prefix_len=prefix_len, mtu=node.p.mtu, client_proto=node.p.tunnel_ip)


def purge_requesters(node: "Node") -> int:
    """Tell every station that resolved us to forget the bindings we gave it."""
    n = 0
    for nbma, (proto, lengths) in list(node.answered.items()):
        send_purge(node, nbma, proto, [_own_cie(node, pl) for pl in sorted(lengths)])
        n += 1
    node.answered.clear()
    return n


def purge_registrations(node: "Node") -> int:
    """De-register from every NHS that has us (clean shutdown)."""
    n = 0
    for c in node.nhcs:
        if c.state is NhcState.UP and c.proto is not None:
            send_purge(node, c.nhs.nbma, c.proto, [_own_cie(node, node.p.tunnel_ip.max_prefixlen)])
            n += 1
    return n


def shutdown(node: "Node") -> int:
    return purge_requesters(node) + purge_registrations(node)


def nbma_changed(node: "Node", new_nbma) -> int:
    """Our NBMA address is now new_nbma: purge the stale bindings others hold, from the new
    address (a station may always purge its own protocol address), and register again."""
    if new_nbma == node.p.nbma:
        return 0
    now = node.clock.now()
    node.p = replace(node.p, nbma=new_nbma)
    local = node.cache.get(node.p.tunnel_ip)
    node.cache.remove(node.p.tunnel_ip)
    node.cache.put(CacheEntry(node.p.tunnel_ip, EntryType.LOCAL, nbma=new_nbma,
                              claimed_nbma=new_nbma, created=local.created if local else now,
                              mtu=node.p.mtu))
    n = purge_requesters(node) + purge_registrations(node)
    for c in node.nhcs:
        if c.pending_id is not None:
            node.pending.pop(c.pending_id, None)
            c.pending_id = None
        c.backoff = node.p.retry_initial
        c.next_send = now          # register again at once, from the new address
    node.stats["nbma_changed"] += 1
    return n
