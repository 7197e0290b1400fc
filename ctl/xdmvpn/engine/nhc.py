"""NHRP client (spoke) side of registration: one state machine per configured NHS.

DOWN -> REGISTERING (request sent, retried with jittered exponential backoff) -> UP (reply
with code 0; refreshed at holdtime/3) -> DOWN when the registration's holdtime runs out
without a successful refresh, or when the NHS answers with an error code."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from ..nhrp import Cie, CieListExtension, ExtType, Flag, RegistrationRequest
from .build import request_extensions
from .cache import CacheEntry, EntryType
from .params import NhsParams

if TYPE_CHECKING:
    from .node import Node


class NhcState(enum.Enum):
    DOWN = "down"
    REGISTERING = "registering"
    UP = "up"


class NhsClient:
    def __init__(self, node: "Node", nhs: NhsParams, index: int):
        self.node = node
        self.nhs = nhs
        self.index = index
        self.proto = nhs.proto                 # learnt from the reply when dynamic
        self.state = NhcState.DOWN
        self.next_send: float = node.clock.now()
        self.backoff = node.p.retry_initial
        self.expires: float | None = None      # when our registration at the NHS runs out
        self.pending_id: int | None = None
        self.last_error: int | None = None
        self.registered_at: float | None = None
        self.requests_sent = 0

    # -- timers -------------------------------------------------------------------------
    def tick(self, now: float) -> float:
        if self.state is NhcState.UP and self.expires is not None and now >= self.expires:
            self._down()
        if now >= self.next_send:
            self._send(now)
        return self.next_send if self.expires is None else min(self.next_send, self.expires)

    def _send(self, now: float) -> None:
        node, p = self.node, self.node.p
        if self.pending_id is not None:
            node.pending.pop(self.pending_id, None)
        rid = node.new_request_id()
        self.pending_id = rid
        node.pending[rid] = ("registration", self)
        if self.state is NhcState.DOWN:
            self.state = NhcState.REGISTERING
        flags = (Flag.U_REG if p.unique else 0) | Flag.CISCO_NAT
        dst = self.proto if self.proto is not None else p.tunnel_ip
        # Cisco's NAT extension in a registration: the NHS as we address it, so that the
        # NHS can tell when it is seen behind NAT.
        nat = [Cie(prefix_len=32, mtu=p.mtu, client_nbma=self.nhs.nbma,
                   client_proto=self.proto)] if self.proto is not None else []
        pkt = RegistrationRequest(
            src_nbma=p.nbma, src_proto=p.tunnel_ip, dst_proto=dst, hop_count=p.hop_count,
            flags=flags, request_id=rid,
            cies=[Cie(prefix_len=32 if p.tunnel_ip.version == 4 else 128, mtu=p.mtu,
                      holdtime=p.holdtime)],
            extensions=request_extensions(p, nat=nat))
        node.send(self.nhs.nbma, pkt)
        self.requests_sent += 1
        # no answer within the backoff: send again, waiting twice as long next time
        self.next_send = now + self.backoff * node.rng.uniform(0.8, 1.2)
        self.backoff = min(self.backoff * 2, p.retry_max)

    # -- replies --------------------------------------------------------------------------
    def on_reply(self, pkt, now: float) -> None:
        node, p = self.node, self.node.p
        self.pending_id = None
        code = pkt.cies[0].code if pkt.cies else 0
        if code != 0:
            self.last_error = code
            node.stats["registration_rejected"] += 1
            self._down()
            return
        responder = pkt.extension(ExtType.RESPONDER_ADDRESS)
        if isinstance(responder, CieListExtension) and responder.cies:
            learnt = responder.cies[0].client_proto
            if learnt is not None:
                self.proto = learnt
        holdtime = pkt.cies[0].holdtime if pkt.cies and pkt.cies[0].holdtime else p.holdtime
        was_up = self.state is NhcState.UP
        self.state = NhcState.UP
        self.last_error = None
        self.registered_at = now
        self.expires = now + holdtime
        self.backoff = p.retry_initial
        self.next_send = now + holdtime / 3
        if self.proto is not None:
            node.cache_put(CacheEntry(self.proto, EntryType.NHS, nbma=self.nhs.nbma,
                                      claimed_nbma=self.nhs.nbma, created=now,
                                      holdtime=holdtime, mtu=p.mtu))
        if not was_up:
            node.nhs_changed()

    def on_error(self, code: int, now: float) -> None:
        self.pending_id = None
        self.last_error = code
        self._down()

    def _down(self) -> None:
        was_up = self.state is NhcState.UP
        self.state = NhcState.DOWN
        self.expires = None
        if self.proto is not None:
            entry = self.node.cache.get(self.proto)
            if entry is not None and entry.type is EntryType.NHS:
                self.node.cache_remove(self.proto)
        if was_up:
            self.node.nhs_changed()
