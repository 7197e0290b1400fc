"""The registration fast path (nhrp/fastpath.py, RegistrationServer.fast): refreshes answered
from a kept reply, new registrations of the common layout answered from bytes. Held to the
full path (decode, validation, on_request, encode) byte for byte: two hubs in the same state,
one with the fast path and one without, are given the same packets and must send the same
bytes, count the same and end in the same state."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address as A

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from xdmvpn.daemon.effects import LiveEffects
from xdmvpn.engine import node as node_mod
from xdmvpn.engine import registration_server as server_mod
from xdmvpn.engine.cache import EntryType
from xdmvpn.engine.clock import FakeClock
from xdmvpn.engine.effects import Recorder
from xdmvpn.engine.node import Node
from xdmvpn.engine.params import Limits, NodeParams
from xdmvpn.inet import checksum
from xdmvpn.nhrp import (
    AuthExtension, Cie, CieListExtension, Extension, PacketType, RegistrationReply,
    RegistrationRequest, VendorExtension, decode, encode, end_extension,
)
from xdmvpn.nhrp.fastpath import parse_registration, with_request_id

HUB, HUB_PROTO = A("192.0.2.1"), A("10.0.0.1")
SPOKE, SPOKE_PROTO = A("198.51.100.7"), A("10.0.0.7")
NAT_SEEN = A("203.0.113.7")
SECRET = b"secret"


def hub_params(**kw) -> NodeParams:
    return NodeParams(**({"tunnel_ip": HUB_PROTO, "prefix_len": 24, "nbma": HUB,
                          "auth": SECRET, "multicast_dynamic": True} | kw))


def hub(fast: bool = True, clock: FakeClock | None = None, **kw) -> Node:
    node = Node(hub_params(**kw), Recorder(), clock or FakeClock(), random.Random(7))
    node.fast_path = fast
    return node


def request(rid: int = 1, holdtime: int = 300, src_nbma=SPOKE, proto=SPOKE_PROTO,
            auth: bytes | None = SECRET, nat: bool = True, **kw) -> bytes:
    """What xdmvpn's (and a Cisco) spoke sends: unique, NAT capable, responder and transit
    extensions empty, authentication, a NAT extension naming its NHS, End."""
    exts = [CieListExtension(3, True, []), CieListExtension(4, True, []),
            CieListExtension(5, True, [])]
    if auth is not None:
        exts.append(AuthExtension(1, auth))
    if nat:
        exts.append(CieListExtension(9, False, [Cie(prefix_len=32, mtu=1400,
                                                    client_nbma=HUB, client_proto=HUB_PROTO)]))
    exts.append(end_extension())
    return encode(RegistrationRequest(
        src_nbma=src_nbma, src_proto=proto, dst_proto=HUB_PROTO, flags=0x8002,
        request_id=rid, cies=[Cie(prefix_len=32, mtu=1400, holdtime=holdtime)],
        extensions=exts, **kw))


def state(node: Node) -> tuple:
    """Everything a registration may change, but the fast path's own counter."""
    fx = node.fx
    entries = sorted((str(e.proto), e.type.value, str(e.nbma), str(e.claimed_nbma),
                      e.prefix_len, e.expires, e.created, e.unique, e.mtu, e.holdtime,
                      e.identity) for e in node.cache.entries.values())
    stats = {k: v for k, v in node.stats.items() if k != "registration_refresh"}
    return (entries, stats, dict(fx.mappings), fx.multicast, list(fx.log))


def both(packets: list[tuple[bytes, IPv4Address | IPv6Address]], **params) -> tuple:
    """Feed the same packets (advancing the clock 10 s between them) to a hub with the fast
    path and one without; assert they sent the same bytes and end in the same state."""
    nodes = [hub(True, FakeClock(), **params), hub(False, FakeClock(), **params)]
    for data, observed in packets:
        for n in nodes:
            n.clock.advance(10)
            n.receive(data, observed)
        fast_sent, full_sent = (n.fx.take() for n in nodes)
        assert fast_sent == full_sent
    assert state(nodes[0]) == state(nodes[1])
    assert nodes[0].last_bug == nodes[1].last_bug == ""
    return nodes[0], nodes[1]


# -- the layouts: what spokes send goes the fast way, the same bytes as the full path --------

def test_a_registration_then_its_refreshes_go_the_fast_way_and_match_the_full_path():
    fast, _ = both([(request(rid), SPOKE) for rid in (11, 12, 13)])
    assert fast.stats["registration_refresh"] == 2
    entry = fast.cache.get(SPOKE_PROTO)
    assert entry.template is not None and fast.cache.templates == {entry.template.key: entry}


def test_behind_nat_the_reply_names_the_address_seen_fast_and_full_alike():
    fast, _ = both([(request(rid), NAT_SEEN) for rid in (1, 2)])
    assert fast.stats["registration_refresh"] == 1
    node = hub()
    node.receive(request(5), NAT_SEEN)
    (to, raw), = node.fx.take()
    pkt = decode(raw)
    assert to == NAT_SEEN and isinstance(pkt, RegistrationReply) and pkt.request_id == 5
    assert pkt.extension(9).cies[0].client_nbma == NAT_SEEN


@pytest.mark.parametrize("variant", [
    {"auth": None, "params": {"auth": None}},          # no secret on either side
    {"nat": False},
    {"auth": b"wrong"},                                 # refused: counted, no reply
    {"auth": None},                                     # hub wants a secret: refused
    {"holdtime": 0},                                    # de-registration
    {"proto": A("10.9.9.9")},                           # outside the overlay: prohibited
    {"hop_count": 0},                                   # error indication
])
def test_variants_match_the_full_path(variant):
    params = variant.pop("params", {})
    both([(request(rid, **variant), SPOKE) for rid in (1, 2, 3)], **params)


def test_refresh_needs_no_decode_no_encode_and_writes_no_map(monkeypatch):
    node = hub()
    node.receive(request(1), SPOKE)
    node.fx.take()
    log = list(node.fx.log)
    calls = []
    monkeypatch.setattr(node_mod, "decode", lambda *a, **k: calls.append("decode"))
    monkeypatch.setattr(server_mod, "encode", lambda *a, **k: calls.append("encode"))
    monkeypatch.setattr(server_mod, "parse_registration",
                        lambda *a, **k: calls.append("parse"))
    for rid in range(2, 50):
        node.clock.advance(5)
        node.receive(request(rid), SPOKE)
    sent = node.fx.take()
    assert calls == []
    assert [decode(raw).request_id for _, raw in sent] == list(range(2, 50))
    assert all(checksum(raw) == 0 for _, raw in sent)
    assert node.fx.log == log                          # no mapping written or removed
    assert node.cache.get(SPOKE_PROTO).expires == node.clock.now() + 300
    assert node.stats["registration_refresh"] == 48


def test_a_flood_without_the_secret_is_dropped_without_a_decode(monkeypatch):
    packets = [(request(i, src_nbma=SPOKE + i, proto=SPOKE_PROTO + i, auth=auth), SPOKE + i)
               for i, auth in enumerate([b"wrong!", b"nope", None] * 3)]
    fast, full = both(packets, auth=SECRET)                 # the full path's counters
    assert fast.stats[("drop", "authentication")] == 9 and len(fast.cache) == 1   # ours
    calls = []
    monkeypatch.setattr(node_mod, "decode", lambda *a, **k: calls.append("decode"))
    for data, observed in packets:
        fast.receive(data, observed)
    assert calls == [] and fast.stats[("drop", "authentication")] == 18
    assert fast.fx.take() == []


def test_refresh_touches_only_the_expiry_and_no_heap_item():
    node = hub()
    node.receive(request(1), SPOKE)
    entry = node.cache.get(SPOKE_PROTO)
    heap = list(node.cache._expiry)
    node.clock.advance(100)
    node.receive(request(2), SPOKE)
    assert node.cache.get(SPOKE_PROTO) is entry and entry.expires == node.clock.now() + 300
    assert node.cache._expiry == heap
    # the heap item still says the old time; expiry moves it on and keeps the entry
    node.clock.advance(250)                 # past the first expiry, before the new one
    assert node.tick() is not None and node.cache.get(SPOKE_PROTO) is entry
    node.clock.advance(60)                  # past the refreshed one
    node.tick()
    assert node.cache.get(SPOKE_PROTO) is None and not node.cache.templates


class CountingMaps:
    """Stands in for DataplaneMaps (BPF maps need root): counts the writes."""

    def __init__(self):
        self.writes: list[tuple] = []

    def add_mapping(self, proto, nbma):
        self.writes.append(("add", proto, nbma))

    def remove_mapping(self, proto):
        self.writes.append(("remove", proto))

    def set_multicast(self, nbmas):
        self.writes.append(("multicast", tuple(nbmas)))

    def set_nhs(self, nbmas):
        self.writes.append(("nhs", tuple(nbmas)))


class SentGre:
    def __init__(self):
        self.sent: list[tuple] = []

    def send(self, nbma, packet):
        self.sent.append((nbma, packet))
        return True


def test_daemon_effects_write_no_map_on_refresh_and_only_changes_otherwise():
    maps = CountingMaps()
    fx = LiveEffects(SentGre(), maps, routes=None)
    node = Node(hub_params(), fx, FakeClock(), random.Random(1))
    node.receive(request(1), SPOKE)
    writes = list(maps.writes)
    assert ("add", SPOKE_PROTO, SPOKE) in writes
    for rid in range(2, 20):
        node.clock.advance(30)
        node.receive(request(rid), SPOKE)
    assert maps.writes == writes and len(fx.gre.sent) == 19
    # a full-path re-registration with the same binding (another holdtime) writes nothing
    node.receive(request(40, holdtime=600), SPOKE)
    assert maps.writes == writes and node.cache.get(SPOKE_PROTO).holdtime == 600
    fx.mapping_set(SPOKE_PROTO, SPOKE)                  # asked again: nothing changed
    assert maps.writes == writes


def test_spokes_of_one_layout_are_parsed_once_and_checked_each(monkeypatch):
    calls = []
    real = server_mod.parse_registration
    monkeypatch.setattr(server_mod, "parse_registration", lambda d: calls.append(1) or real(d))
    packets = [(request(i, src_nbma=SPOKE + i, proto=SPOKE_PROTO + i), SPOKE + i)
               for i in range(6)]
    bad = bytearray(request(9, src_nbma=SPOKE + 9, proto=SPOKE_PROTO + 9))
    bad[13] ^= 1                                      # the same layout, a bad checksum
    fast, _ = both(packets + [(bytes(bad), SPOKE + 9)], auth=SECRET)
    assert len(calls) == 1 and len(fast.cache.templates) == 6
    assert fast.stats[("drop", "checksum")] == 1


def test_spokes_of_one_layout_are_answered_from_one_written_reply(monkeypatch):
    """The reply to the first spoke of a layout is written; the next spokes' (and refused
    ones', with their own code) are made from it: the same bytes as the full path."""
    calls = []
    real = server_mod.registration_reply
    monkeypatch.setattr(server_mod, "registration_reply",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    packets = [(request(i, src_nbma=SPOKE + i, proto=SPOKE_PROTO + i), SPOKE + i)
               for i in range(6)]
    # a spoke claiming a registered unique address: refused, its own code
    packets += [(request(7 + i, src_nbma=SPOKE + 20 + i, proto=SPOKE_PROTO), SPOKE + 20 + i)
                for i in range(3)]
    packets += [(request(10, src_nbma=SPOKE + 30, proto=A("10.9.9.9")), SPOKE + 30)]
    fast, _ = both(packets, auth=SECRET)
    assert len(calls) == 3                   # one per code: success, already registered,
    assert fast.stats[("registration", 0)] == 6     # administratively prohibited
    assert fast.server._replies
    fast.reconfigure(hub_params(auth=SECRET, mtu=1300))  # replies with the old one: gone
    fast.receive(request(40, src_nbma=SPOKE + 40, proto=SPOKE_PROTO + 40), SPOKE + 40)
    assert len(calls) == 4


# -- any change goes the full way ---------------------------------------------------------------

def test_a_changed_refresh_goes_the_full_path():
    fast, _ = both([(request(1), SPOKE), (request(2, holdtime=600), SPOKE)])
    assert fast.stats["registration_refresh"] == 0
    assert fast.cache.get(SPOKE_PROTO).holdtime == 600


def test_a_refresh_from_another_source_goes_the_full_path_and_is_refused():
    fast, _ = both([(request(1), SPOKE), (request(2), A("198.51.100.99"))])
    assert fast.stats["registration_refresh"] == 0
    assert fast.stats[("registration", 14)] == 1                 # already registered
    assert fast.cache.get(SPOKE_PROTO).nbma == SPOKE


def test_a_refresh_with_a_bad_checksum_or_another_secret_is_dropped_as_by_the_full_path():
    bad = bytearray(request(2))
    bad[12] ^= 0xFF
    fast, _ = both([(request(1), SPOKE), (bytes(bad), SPOKE), (request(3, auth=b"other"), SPOKE)])
    assert fast.stats[("drop", "checksum")] == 1 and fast.stats[("drop", "authentication")] == 1
    assert fast.stats["registration_refresh"] == 0


def test_a_refresh_refused_by_the_ipsec_binding_goes_the_full_path():
    node = hub()
    node.fx.allowed = {SPOKE: {SPOKE_PROTO}}
    node.receive(request(1), SPOKE)
    node.fx.allowed = {SPOKE: set()}                  # its identity lost the binding
    node.receive(request(2), SPOKE)
    assert node.stats["registration_refresh"] == 0 and node.stats["identity_refused"] == 1
    assert decode(node.fx.sent[-1][1]).cies[0].code == 4


def test_a_refresh_after_the_entry_expired_is_a_new_registration():
    for tick in (True, False):              # expired by the timer, or not yet looked at
        node = hub()
        node.receive(request(1), SPOKE)
        node.clock.advance(301)
        if tick:
            node.tick()
            assert node.cache.get(SPOKE_PROTO) is None
        node.fx.log.clear()
        node.receive(request(2), SPOKE)
        entry = node.cache.get(SPOKE_PROTO)
        assert node.stats["registration_refresh"] == 0
        assert entry.created == node.clock.now() and entry.expires == node.clock.now() + 300
        assert ("mapping_set", SPOKE_PROTO, SPOKE) in node.fx.log
        assert decode(node.fx.sent[-1][1]).cies[0].code == 0


def test_templates_live_and_die_with_their_entry_and_the_configuration():
    node = hub()
    for i in range(5):
        node.receive(request(i, src_nbma=SPOKE + i, proto=SPOKE_PROTO + i), SPOKE + i)
    assert len(node.cache.templates) == 5
    node.receive(request(9, holdtime=0), SPOKE)                  # de-registered
    assert len(node.cache.templates) == 4 and node.cache.get(SPOKE_PROTO) is None
    node.reconfigure(hub_params(holdtime=600))                   # our replies change
    node.receive(request(10, src_nbma=SPOKE + 1, proto=SPOKE_PROTO + 1), SPOKE + 1)
    assert node.stats["registration_refresh"] == 0 and len(node.cache.templates) == 1
    assert node.clear_cache() >= 4 and not node.cache.templates


def test_a_template_cannot_answer_for_an_entry_replaced_since():
    """A static map configured for the address later: the registration is refused, never
    answered from the old reply."""
    fast, _ = both([(request(1), SPOKE)])
    fast.reconfigure(hub_params(maps=((SPOKE_PROTO, A("192.0.2.50")),)))
    fast.receive(request(2), SPOKE)
    assert decode(fast.fx.sent[-1][1]).cies[0].code == 14
    assert fast.cache.get(SPOKE_PROTO).type is EntryType.STATIC


# -- generated registrations: fast == full, for anything ----------------------------------

u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
overlay = st.sampled_from([SPOKE_PROTO, SPOKE_PROTO + 1, HUB_PROTO, A("10.0.1.5")])
nbmas = st.sampled_from([SPOKE, SPOKE + 1, NAT_SEEN])
maybe_v4 = st.one_of(st.none(), nbmas)


@st.composite
def cies(draw, addressed: bool | None = None):
    with_addr = draw(st.booleans()) if addressed is None else addressed
    return Cie(code=draw(st.sampled_from([0, 0, 7])),
               prefix_len=draw(st.sampled_from([32, 32, 0, 0xFF, 24, 33])),
               mtu=draw(st.sampled_from([1400, 0, 1500])),
               holdtime=draw(st.sampled_from([300, 300, 7200, 0, 1])),
               client_nbma=draw(maybe_v4) if with_addr else None,
               client_proto=draw(st.one_of(st.none(), overlay)) if with_addr else None,
               preference=draw(st.sampled_from([0, 0, 9])),
               reserved=draw(st.sampled_from([0, 0, 5])))


@st.composite
def extension_lists(draw, clean: bool):
    """The extensions spokes send, in any order and subset; unless clean, perhaps some the
    fast path leaves to the full one (vendor, unknown, RFC 2735's, a reserved bit, no End)."""
    pool = [
        CieListExtension(3, draw(st.booleans()), []),
        CieListExtension(4, draw(st.booleans()), []),
        CieListExtension(5, draw(st.booleans()), []),
        AuthExtension(draw(st.sampled_from([1, 1, 1, 2])),
                      draw(st.sampled_from([SECRET, SECRET, b"other", b""]))),
        CieListExtension(9, draw(st.booleans()),
                         draw(st.lists(cies(True), max_size=2))),
    ]
    if not clean:
        pool += [CieListExtension(3, True, [Cie(prefix_len=32)]), VendorExtension(9, b"v"),
                 Extension(0x200, False, b"x"), Extension(9, False, b"12345678")]
    picked = draw(st.lists(st.sampled_from(range(len(pool))), unique=True, max_size=6))
    exts = [pool[i] for i in picked]
    if clean or draw(st.integers(0, 4)):
        exts.append(end_extension())
    if not clean and picked and draw(st.booleans()):
        exts[draw(st.sampled_from(range(len(picked))))].reserved_bit = True
    return exts


@st.composite
def registrations(draw):
    clean = draw(st.integers(0, 9)) < 6
    pkt = RegistrationRequest(
        afn=draw(st.sampled_from([1] if clean else [1, 2])),
        protocol_type=draw(st.sampled_from([0x0800] if clean else [0x0800, 0x86DD])),
        snap=draw(st.sampled_from([b"\0" * 5, b"abcde"])),
        hop_count=draw(st.sampled_from([255, 255, 1, 0])),
        src_nbma=draw(nbmas), src_proto=draw(overlay), dst_proto=HUB_PROTO,
        flags=draw(st.sampled_from([0x8002, 0x8002, 0x0002, 0, 0x8000, 0xFFFF])),
        request_id=draw(u32),
        cies=draw(st.lists(cies(), min_size=1, max_size=1) if clean
                  else st.lists(cies(), max_size=2)),
        extensions=draw(extension_lists(clean)))
    if not clean and draw(st.integers(0, 4)) == 0:
        pkt.trailer = b"t"
    return pkt


def _mutate(raw: bytes, where: int, value: int) -> bytes:
    b = bytearray(raw)
    b[where % len(b)] = value
    return bytes(b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(registrations(), st.sampled_from([None, SECRET]), nbmas, st.data())
def test_generated_registrations_fast_equals_full(pkt, secret, observed, data):
    raw = encode(pkt)
    again = encode(pkt)                       # a refresh: another id, the same request
    pkt.request_id ^= 0x5A5A5A5A
    refresh = encode(pkt)
    packets = [(raw, observed), (refresh, observed), (again, observed)]
    if data.draw(st.booleans()):              # a mutated copy (checksum fixed or not)
        mutated = _mutate(raw, data.draw(st.integers(0, 200)), data.draw(st.integers(0, 255)))
        if data.draw(st.booleans()):
            mutated = mutated[:12] + b"\0\0" + mutated[14:]
            mutated = mutated[:12] + checksum(mutated).to_bytes(2, "big") + mutated[14:]
        packets.append((mutated, observed))
    if data.draw(st.booleans()):
        packets.append((refresh, data.draw(nbmas)))          # perhaps another source
    limits = Limits(cies=data.draw(st.sampled_from([64, 1, 0])))
    both(packets, auth=secret, limits=limits,
         hop_count=data.draw(st.sampled_from([255, 7])), mtu=data.draw(st.sampled_from([1400, 9000])))


def test_the_generated_registrations_do_reach_the_fast_path():
    """Not vacuous: the common layout parses, and a refresh is answered from its template."""
    raw = request(1)
    assert parse_registration(raw) is not None
    assert parse_registration(raw[:-1]) is None
    node, _ = both([(raw, SPOKE), (request(2), SPOKE)])
    assert node.stats["registration_refresh"] == 1


# -- the codec pieces ---------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=28, max_size=200), u32)
def test_with_request_id_gives_the_checksum_a_full_encode_gives(body, rid):
    # an NHRP packet is never all zeros: its version byte (16) is 1
    raw = body[:12] + b"\0\0" + body[14:16] + b"\1" + body[17:]
    raw = raw[:12] + checksum(raw).to_bytes(2, "big") + raw[14:]
    out = with_request_id(raw, rid.to_bytes(4, "big"))
    want = out[:12] + b"\0\0" + out[14:]
    want = want[:12] + checksum(want).to_bytes(2, "big") + want[14:]
    assert out == want and out[24:28] == rid.to_bytes(4, "big")
    assert out[:12] == raw[:12] and out[14:24] == raw[14:24] and out[28:] == raw[28:]


def test_parse_refuses_what_the_full_path_would_not_take_as_is():
    raw = request(1)
    assert parse_registration(raw).holdtime == 300
    bad_sum = raw[:12] + b"\0\0" + raw[14:]
    assert parse_registration(bad_sum) is None
    hop0 = request(1, hop_count=0)
    assert parse_registration(hop0) is None
    two_cies = encode(RegistrationRequest(src_nbma=SPOKE, src_proto=SPOKE_PROTO,
                                          dst_proto=HUB_PROTO, cies=[Cie(), Cie()],
                                          extensions=[end_extension()]))
    assert parse_registration(two_cies) is None
    assert struct.unpack_from("!H", raw, 10)[0] == len(raw)
    assert PacketType.REGISTRATION_REQUEST == raw[17]


def _rfc1071(data: bytes) -> int:
    """The checksum word by word, as RFC 1071 writes it (the reference)."""
    if len(data) & 1:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        carry, word = divmod(total + ((data[i] << 8) | data[i + 1]), 0x10000)
        total = carry + word
    return ~total & 0xFFFF


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.lists(st.sampled_from([b"\0\0", b"\xff\xff",
                                                                   b"\x80\x00", b"\0"]),
                                                  max_size=12).map(b"".join)))
def test_the_checksum_is_rfc_1071s(data):
    assert checksum(data) == _rfc1071(data)
    assert checksum(bytearray(data)) == checksum(memoryview(data)) == _rfc1071(data)
