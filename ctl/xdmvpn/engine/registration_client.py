"""Registration, client side (the spoke, RFC 2332 5.2.3): one state machine per configured
NHS.

DOWN -> REGISTERING (request sent, retried with jittered exponential backoff) -> UP (reply
with code 0; refreshed at holdtime/3) -> DOWN when the registration's holdtime runs out
without a successful refresh, or when the NHS answers with an error code."""

from __future__ import annotations

import enum

from ..inet import IPAddress
from ..nhrp import Cie, ExtType, Flag, PacketType, RegistrationRequest, RequestReply
from .build import cie_list, families, ip, request_extensions, src_nbma
from .cache import CacheEntry, EntryType
from .context import Context
from .params import NhsParams
from .pending import Pending


class NhcState(enum.Enum):
    DOWN = "down"
    REGISTERING = "registering"
    UP = "up"


class PendingRegistration(Pending):
    reply_type = PacketType.REGISTRATION_REPLY

    def __init__(self, client: "NhsClient"):
        self.client = client

    def accepts(self, pkt: RequestReply, observed: IPAddress) -> bool:
        return observed == self.client.nhs.nbma

    def error_from(self, observed: IPAddress) -> bool:
        return observed == self.client.nhs.nbma

    def complete(self, pkt: RequestReply, observed: IPAddress) -> None:
        self.client.on_reply(pkt, self.client.ctx.now())

    def fail(self, code: int) -> None:
        self.client.on_error(code)

    def expire(self, now: float) -> None:
        """Unanswered: the client's own backoff sends the next try."""
        if self.client.pending is self:
            self.client.pending = None


class NhsClient:
    def __init__(self, ctx: Context, nhs: NhsParams, index: int, registrations: "Registrations"):
        self.ctx = ctx
        self.nhs = nhs
        self.index = index
        self.registrations = registrations
        self.proto: IPAddress | None = nhs.proto    # learnt from the reply when dynamic
        self.state = NhcState.DOWN
        self.next_send: float = ctx.now()
        self.backoff = ctx.p.retry_initial
        self.expires: float | None = None      # when our registration at the NHS runs out
        self.pending: PendingRegistration | None = None
        self.last_error: int | None = None
        self.registered_at: float | None = None
        self.requests_sent = 0

    @property
    def pending_id(self) -> int | None:
        return self.pending.rid if self.pending is not None else None

    def forget_pending(self) -> None:
        if self.pending is not None:
            self.ctx.pending.discard(self.pending)
            self.pending = None

    # -- timers -------------------------------------------------------------------------
    def tick(self, now: float) -> float:
        if self.state is NhcState.UP and self.expires is not None and now >= self.expires:
            self._down()
        if now >= self.next_send:
            self._send(now)
        return self.next_send if self.expires is None else min(self.next_send, self.expires)

    def _send(self, now: float) -> None:
        ctx, p = self.ctx, self.ctx.p
        self.forget_pending()
        # no answer within the backoff: send again, waiting twice as long next time
        self.next_send = now + self.backoff * ctx.rng.uniform(0.8, 1.2)
        self.backoff = min(self.backoff * 2, p.retry_max)
        rid = ctx.new_request_id()
        pending = PendingRegistration(self)
        if not ctx.pending.add(pending, rid, self.next_send):
            return
        self.pending = pending
        if self.state is NhcState.DOWN:
            self.state = NhcState.REGISTERING
        flags = (Flag.U_REG if p.unique else 0) | Flag.CISCO_NAT
        dst = self.proto if self.proto is not None else p.tunnel_ip
        # Cisco's NAT extension in a registration: the NHS as we address it, so that the
        # NHS can tell when it is seen behind NAT.
        nat = [Cie(prefix_len=p.tunnel_ip.max_prefixlen, mtu=p.mtu, client_nbma=self.nhs.nbma,
                   client_proto=self.proto)] if self.proto is not None else []
        pkt = RegistrationRequest(
            **families(p, self.nhs.nbma),
            src_nbma=src_nbma(p, self.nhs.nbma), src_proto=p.tunnel_ip, dst_proto=dst, hop_count=p.hop_count,
            flags=flags, request_id=rid,
            cies=[Cie(prefix_len=p.tunnel_ip.max_prefixlen, mtu=p.mtu, holdtime=p.holdtime)],
            extensions=request_extensions(p, nat=nat))
        ctx.send(self.nhs.nbma, pkt)
        self.requests_sent += 1

    # -- replies --------------------------------------------------------------------------
    def on_reply(self, pkt: RequestReply, now: float) -> None:
        ctx, p = self.ctx, self.ctx.p
        self.pending = None
        code = pkt.cies[0].code if pkt.cies else 0
        if code != 0:
            self.last_error = code
            ctx.stats["registration_rejected"] += 1
            self._down()
            return
        # the NHS's protocol address: its responder address extension, else the reply's
        # destination protocol address (where FRR and we put it), unless that is ours
        responder = cie_list(pkt, ExtType.RESPONDER_ADDRESS) or []
        learnt = ip(responder[0].client_proto) if responder else None
        if learnt is None and pkt.dst_proto != p.tunnel_ip:
            learnt = ip(pkt.dst_proto)
        if learnt is not None and learnt != self.proto:
            self._forget_nhs_entry()            # one NHS entry per NHS, never a trail
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
            ctx.cache_put(CacheEntry(self.proto, EntryType.NHS, nbma=self.nhs.nbma,
                                     claimed_nbma=self.nhs.nbma, created=now,
                                     holdtime=holdtime, mtu=p.mtu))
        if not was_up:
            self.registrations.changed()

    def on_error(self, code: int) -> None:
        self.pending = None
        self.last_error = code
        self._down()

    def _down(self) -> None:
        was_up = self.state is NhcState.UP
        self.state = NhcState.DOWN
        self.expires = None
        self._forget_nhs_entry()
        if was_up:
            self.registrations.changed()

    def _forget_nhs_entry(self) -> None:
        if self.proto is not None:
            entry = self.ctx.cache.get(self.proto)
            if entry is not None and entry.type is EntryType.NHS:
                self.ctx.cache_remove(self.proto)

    def retire(self) -> None:
        """This NHS is no longer configured."""
        self.state = NhcState.DOWN
        self.forget_pending()
        self._forget_nhs_entry()


class Registrations:
    """Our registration clients, one per configured NHS; the engine's Upstream."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.clients: list[NhsClient] = [NhsClient(ctx, n, i, self)
                                         for i, n in enumerate(ctx.p.nhs)]

    def up(self) -> list[NhsClient]:
        return [c for c in self.clients if c.state is NhcState.UP]

    def preferred(self) -> NhsClient | None:
        """The NHS that is up with the lowest priority value (config order breaks ties)."""
        return min(self.up(), key=lambda c: (c.nhs.priority, c.index), default=None)

    def preferred_nbma(self) -> IPAddress | None:
        best = self.preferred()
        return best.nhs.nbma if best is not None else None

    def refresh_nbma(self, asked: IPAddress | None) -> IPAddress | None:
        if asked is not None and any(c.nhs.nbma == asked for c in self.up()):
            return asked
        return self.preferred_nbma()

    def changed(self) -> None:
        """An NHS came up or went down: pick where unresolved traffic goes."""
        self.ctx.fx.default_nhs_set(self.preferred_nbma())
        self.ctx.sync_multicast()

    def tick(self, now: float) -> list[float]:
        return [c.tick(now) for c in self.clients]

    def reconfigure(self, nhs: tuple[NhsParams, ...]) -> None:
        kept = {c.nhs: c for c in self.clients}
        for c in self.clients:
            if c.nhs not in nhs:
                c.retire()
        self.clients = []
        for i, n in enumerate(nhs):
            client = kept.get(n) or NhsClient(self.ctx, n, i, self)
            client.index = i
            self.clients.append(client)
        self.changed()

    def restart(self, now: float) -> None:
        """Register again at once with every NHS (our NBMA address changed)."""
        for c in self.clients:
            c.forget_pending()
            c.backoff = self.ctx.p.retry_initial
            c.next_send = now

    def path_up(self, nbma: IPAddress, now: float) -> None:
        for c in self.clients:
            if c.nhs.nbma == nbma:
                c.backoff = self.ctx.p.retry_initial
                c.next_send = min(c.next_send, now)
