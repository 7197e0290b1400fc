"""Registration, server side (the hub, RFC 2332 5.2.3/5.2.4): registration requests from
clients, answered with a code per CIE.

Three ways in, one behaviour (tests/test_fastpath.py holds them to it, byte for byte):

* refresh: the request is one we answered before for the entry it registered (its bytes but
  the checksum and request id are the key of the entry's reply template), from the same
  observed NBMA address, before the entry expired and under the same configuration: the
  entry's expiry moves on, the kept reply goes out with the new request id. No decode, no
  map write, no multicast change.
* fast: a request of the layout spokes send (nhrp.fastpath) is read at fixed offsets and
  answered from bytes, with the same registration logic (`register`) as the full path.
* full: everything else, decoded, validated and encoded (`on_request`).

The first and the fast one leave a template for the entry's refreshes when they succeed."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_network

from ..inet import HashedIPv4, IPAddress, IPNetwork, checksum, no_host_of
from ..nhrp import Cie, CieCode, ExtType, Flag, PacketType, RegistrationReply, RequestReply
from ..nhrp.codec import encode
from ..nhrp.fastpath import (
    Registration, layout_key, parse_registration, registration_reply, reply_like,
    with_request_id,
)
from .build import ReplyPieces, afn_version, ip, own_cie, replace_cie_list, reply_pieces, with_own_auth
from .cache import CacheEntry, EntryType
from .context import Context
from .params import NodeParams

_FIXED_ENTRY_TYPES = (EntryType.LOCAL, EntryType.STATIC, EntryType.NHS)
_CLEARTEXT = (1).to_bytes(4, "big")          # Cisco's authentication type 1
_SUCCESS = int(CieCode.SUCCESS)
_REPLY = PacketType.REGISTRATION_REPLY            # counters keep the enum (their names)
_RX = ("rx", PacketType.REGISTRATION_REQUEST)
_OK = ("registration", _SUCCESS)
_AUTH_DROP = ("drop", "authentication")
_UNIQUE = int(Flag.U_REG)
# request layouts whose parse is kept (spokes of one kind send one layout; more kinds evict
# the oldest: a stranger's layouts cost a parse each, never memory)
LAYOUTS = 64


def _hashed(packed: bytes) -> HashedIPv4:
    """The IPv4 address of 4 bytes read from a request (the hot path's address type)."""
    return HashedIPv4.from_int(int.from_bytes(packed, "big"))


def template_key(data: bytes) -> bytes:
    """A request's bytes without its checksum and request id: two requests with the same
    key ask the same (the checksum then differs only by the request id)."""
    return data[:12] + data[14:24] + data[28:]


class RegistrationServer:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._p: NodeParams | None = None      # the configuration of the two below
        self._pieces: ReplyPieces | None = None
        self._net: IPNetwork | None = None
        self._layouts: dict[bytes, Registration] = {}      # layout_key -> its parse
        # (layout_key, code) -> a reply written for a request of that layout (without a
        # NAT CIE), for reply_like; dropped with the configuration, bounded like _layouts
        self._replies: dict[tuple[bytes, int], bytes] = {}

    def serves(self) -> bool:
        p = self.ctx.p
        return p.serve if p.serve is not None else not p.is_nhc

    def _current(self) -> ReplyPieces:
        """Our reply pieces for the configuration in force; a new configuration drops
        every reply template (they were written with the old one)."""
        p = self.ctx.p
        if p is not self._p or self._pieces is None:
            self._p = p
            self._pieces = reply_pieces(p)
            self._net = ip_network(f"{p.tunnel_ip}/{p.prefix_len}", strict=False)
            self.ctx.cache.drop_templates()
            self._replies.clear()
        return self._pieces

    def _overlay(self) -> IPNetwork:
        self._current()
        assert self._net is not None
        return self._net

    # -- the ways in ----------------------------------------------------------------------
    def fast(self, data: bytes, observed: IPAddress) -> bool:
        """A registration request (type 3) answered here without the full decode: a refresh
        from its entry's template, or a request of the fast path's layout. False: the full
        path (decode, validation, on_request) must take it, counters included."""
        pieces = self._current()
        key = template_key(data)
        entry = self.ctx.cache.templated(key)
        if entry is not None and self._refresh(entry, data, observed):
            return True
        return self._register_fast(data, key, observed, pieces)

    def _refresh(self, entry: CacheEntry, data: bytes, observed: IPAddress) -> bool:
        ctx = self.ctx
        now = ctx.now()
        template = entry.template
        if (template is None or entry.nbma != observed or entry.expires is None
                or entry.expires <= now):
            return False        # another source, or expired: a new registration
        size = (data[10] << 8) | data[11]
        if checksum(data[:size]) or not ctx.fx.may_register(observed, entry.proto):
            return False        # the full path drops it (counted) or refuses it
        ctx.cache.refresh(entry, now + entry.holdtime)
        stats = ctx.stats
        stats[_RX] += 1
        stats[_OK] += 1
        stats["registration_refresh"] += 1
        ctx.send_raw(observed, _REPLY, with_request_id(template.reply, data[24:28]))
        return True

    def _register_fast(self, data: bytes, key: bytes, observed: IPAddress,
                       pieces: ReplyPieces) -> bool:
        if not isinstance(observed, IPv4Address):
            return False
        lkey = layout_key(data)
        reg = self._parsed(data, lkey)
        if reg is None:
            return False
        ctx = self.ctx
        p = ctx.p
        if p.auth is not None and (reg.auth is None or reg.auth[:4] != _CLEARTEXT
                                   or reg.auth[4:] != p.auth):
            # what the full path does after its decode (the checksum is good): counted
            # and dropped, without the decode (an unauthenticated flood costs little)
            ctx.stats[_RX] += 1
            ctx.stats[_AUTH_DROP] += 1
            return True
        if not 1 <= p.limits.cies >= reg.nat_cies or not self.serves():
            return False
        seen = observed.packed
        src_nbma, src_proto = data[28:32], data[32:36]
        proto = _hashed(reg.client_proto or src_proto)
        claimed_raw = reg.client_nbma or src_nbma
        claimed = observed if claimed_raw == seen else _hashed(claimed_raw)
        code = self.register(proto, claimed, observed, reg.holdtime,
                             bool(reg.flags & _UNIQUE), ctx.now())
        stats = ctx.stats
        stats[_RX] += 1
        stats[_OK if code == _SUCCESS else ("registration", int(code))] += 1
        nat = pieces.nat_head + seen + src_proto if reg.nat and seen != src_nbma else None
        kept = self._replies.get((lkey, code)) if nat is None else None
        if kept is not None:
            reply = reply_like(kept, data)
        else:
            reply = registration_reply(data, reg, code, hop_count=p.hop_count,
                                       dst_proto=pieces.dst_proto, responder=pieces.responder,
                                       auth=pieces.auth, nat=nat)
            if nat is None:
                if len(self._replies) >= 4 * LAYOUTS:
                    del self._replies[next(iter(self._replies))]
                self._replies[(lkey, code)] = reply
        self._keep(key, proto, observed, code, reply)
        ctx.send_raw(observed, _REPLY, reply)
        return True

    def _parsed(self, data: bytes, key: bytes) -> Registration | None:
        """parse_registration(data), from the parse of an earlier request of the same
        layout (key: its layout_key) when there was one (then only the checksum is
        checked)."""
        reg = self._layouts.get(key)
        if reg is not None:
            size = (data[10] << 8) | data[11]
            return None if checksum(data[:size]) else reg
        reg = parse_registration(data)
        if reg is not None:
            if len(self._layouts) >= LAYOUTS:
                del self._layouts[next(iter(self._layouts))]
            self._layouts[key] = reg
        return reg

    def on_request(self, pkt: RequestReply, data: bytes, observed: IPAddress) -> None:
        """The full path: a decoded and validated registration request."""
        ctx, p = self.ctx, self.ctx.p
        now = ctx.now()
        if not self.serves():
            ctx.stats[("drop", "not_a_server")] += 1
            return
        self._current()
        unique = bool(pkt.flags & Flag.U_REG)
        cies = pkt.cies or [Cie(prefix_len=p.tunnel_ip.max_prefixlen, holdtime=p.holdtime)]
        out = []
        proto = code = None
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
                                [own_cie(p, prefix_len=p.tunnel_ip.max_prefixlen,
                                        nbma_version=afn_version(pkt.afn))])
        if observed != pkt.src_nbma and pkt.extension(ExtType.NAT_ADDRESS) is not None:
            # the client is behind NAT: tell it the address we see it at
            exts = replace_cie_list(exts, ExtType.NAT_ADDRESS, [Cie(
                prefix_len=p.tunnel_ip.max_prefixlen, mtu=p.mtu, client_nbma=observed,
                client_proto=pkt.src_proto)], compulsory=False)
        reply = encode(RegistrationReply(
            afn=pkt.afn, protocol_type=pkt.protocol_type, hop_count=p.hop_count,
            # our own address, where FRR's client learns its NHS's (`nhs dynamic`)
            src_nbma=pkt.src_nbma, src_proto=pkt.src_proto, dst_proto=p.tunnel_ip,
            flags=pkt.flags, request_id=pkt.request_id, cies=out,
            extensions=with_own_auth(p, exts)))
        if len(cies) == 1 and proto is not None and code is not None:
            self._keep(template_key(data), proto, observed, code, reply)
        ctx.send_raw(observed, _REPLY, reply)

    def _keep(self, key: bytes, proto: IPAddress, observed: IPAddress, code: int,
              reply: bytes) -> None:
        """After a registration that bound proto to observed: its reply, for refreshes."""
        if code != _SUCCESS:
            return
        entry = self.ctx.cache.entries.get(proto)
        if entry is not None and entry.type is EntryType.DYNAMIC and entry.nbma == observed \
                and entry.expires is not None:
            self.ctx.cache.keep_template(entry, key, reply)

    # -- one registration -----------------------------------------------------------------
    def register(self, proto: IPAddress | None, claimed: IPAddress | None,
                 observed: IPAddress, holdtime: int, unique: bool, now: float) -> int:
        """One CIE: bind proto to the observed NBMA address; the CIE code."""
        ctx, p = self.ctx, self.ctx.p
        overlay = self._overlay()
        if proto is None or proto.version != p.tunnel_ip.version \
                or proto not in overlay or no_host_of(proto, overlay):
            return CieCode.ADMINISTRATIVELY_PROHIBITED
        if not ctx.fx.may_register(observed, proto):   # IPsec identity not bound to proto
            ctx.stats["identity_refused"] += 1
            return CieCode.ADMINISTRATIVELY_PROHIBITED
        cache = ctx.cache
        old = cache.entries.get(proto)
        if old is not None and old.expires is not None and old.expires <= now:
            ctx.stats["cache_expired"] += 1            # gone, whether tick() ran or not
            ctx.cache_remove(proto)
            old = None
        if old is not None and old.nbma != observed:
            if old.type in _FIXED_ENTRY_TYPES:
                return CieCode.ALREADY_REGISTERED
            if old.type is EntryType.DYNAMIC and old.unique:
                return CieCode.ALREADY_REGISTERED      # the registered owner keeps it
        if holdtime == 0:                              # de-registration
            # of the binding the sender made: a non-unique entry may move to another NBMA
            # address by registering, but not be deleted from there
            if old is not None and old.type is EntryType.DYNAMIC and old.nbma == observed:
                ctx.cache_remove(proto)
            return CieCode.SUCCESS
        if old is None and len(cache.entries) >= p.max_entries:
            ctx.stats[("cap", "entries")] += 1
            return CieCode.INSUFFICIENT_RESOURCES
        if (old is None or old.nbma != observed) \
                and cache.at_nbma(observed) >= p.limits.entries_per_nbma:
            ctx.stats[("cap", "entries_per_nbma")] += 1
            return CieCode.INSUFFICIENT_RESOURCES
        ctx.cache_put(CacheEntry(proto, EntryType.DYNAMIC, nbma=observed, claimed_nbma=claimed,
                                 expires=now + holdtime, created=old.created if old else now,
                                 unique=unique, holdtime=holdtime, mtu=p.mtu))
        return CieCode.SUCCESS

