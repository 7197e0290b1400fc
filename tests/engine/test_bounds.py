"""Every table a peer can make grow has a cap (counted when hit) and an expiry, hammered
here with small caps; a purge costs O(CIEs x log n), never a walk of the cache."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address as A, ip_network as N

import pytest
from hypothesis import given, settings, strategies as st

from craft import HUB, ROGUE, S1 as S1_NBMA, S2, exts, purge_request, registration_request, resolution_request, send
from netsim import hub_and_spokes, ipv4_head
from xdmvpn.engine.cache import Cache, CacheEntry, EntryType
from xdmvpn.engine.params import Limits
from xdmvpn.engine.shortcut import Shortcut
from xdmvpn.engine.build import replace_cie_list
from xdmvpn.nhrp import Cie, ExtType, PacketType, TrafficIndication, decode, encode

SMALL = Limits(entries_per_nbma=8, answered=16, answered_prefixes=2, indications=32,
               resolving=16, pending=24, shortcuts=8, cies=64, negative=8)


def small(node):
    node.p = replace(node.p, limits=SMALL)
    node.ctx.pending.cap = SMALL.pending
    return node


def test_cache_entries_per_source_nbma():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    small(hub)
    codes = []
    for i in range(100):
        (_, data), = send(hub, registration_request(proto=f"10.0.0.{100 + i}", rid=i), ROGUE)
        codes.append(decode(data).cies[0].code)
    assert codes.count(0) == 8 and set(codes[8:]) == {5}          # insufficient resources
    assert hub.cache.at_nbma(ROGUE) == 8 and hub.stats[("cap", "entries_per_nbma")] == 92
    net.tick(301)                                                  # and they expire
    assert hub.cache.at_nbma(ROGUE) == 0


def via_hub(hub, s2, pkt, observed):
    """pkt from observed to the hub, which forwards it to spoke 2 (vouching for observed)."""
    for to, data in send(hub, pkt, observed):
        if to == S2:
            s2.receive(data, HUB)
    return s2.fx.take()


def test_answered_requesters_and_clear_sends_a_bounded_number_of_purges():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    small(s2)
    for i in range(1000):
        nbma = IPv4Address(int(A("198.18.0.0")) + i)
        via_hub(hub, s2, resolution_request(dst="192.168.2.20",
                                            src_proto=f"10.0.{4 + i // 250}.{i % 250}",
                                            src_nbma=nbma, rid=i), nbma)
    assert len(s2.answered) == 16 and s2.stats[("cap", "answered")] > 900
    assert len(s2.cache) <= 3 + 16           # no mapping cached beyond what is answered
    s2.clear_cache()
    purges = [to for to, _ in s2.fx.take()]
    assert len(purges) == 16 and len(set(purges)) == 16           # one per requester
    for i in range(20):                                           # expiry after holdtime
        nbma = IPv4Address(int(A("198.19.0.0")) + i)
        via_hub(hub, s2, resolution_request(dst="192.168.2.20", src_proto=f"10.0.8.{i}",
                                            src_nbma=nbma, rid=i), nbma)
    assert len(s2.answered) == 16
    net.clock.advance(301)
    via_hub(hub, s2, resolution_request(dst="192.168.2.20", src_proto="10.0.9.1",
                                        src_nbma=ROGUE), ROGUE)
    assert len(s2.answered) == 1


def test_indication_guard():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    small(hub)
    sent = sum(hub.on_trigger(A("192.0.2.11"), IPv4Address(int(A("192.168.1.0")) + i),
                              A("192.168.2.20"), ipv4_head("192.168.1.10", "192.168.2.20"))
               for i in range(10_000))
    assert sent == 32 and len(hub.indications) == 32
    assert hub.stats[("cap", "indications")] == 10_000 - 32
    net.clock.advance(1.0)
    assert hub.on_trigger(A("192.0.2.11"), A("192.168.1.200"), A("192.168.2.20"), b"")
    assert len(hub.indications) == 1


def indication_from_hub(dst: str) -> TrafficIndication:
    """The hub tells spoke 1 that its traffic from 192.168.1.10 to dst went through it."""
    return TrafficIndication(src_nbma=HUB, src_proto=A("10.0.0.1"), dst_proto=A("192.168.1.10"),
                             contents=ipv4_head("192.168.1.10", dst),
                             extensions=exts(responder=False))


def test_resolving_and_pending():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    small(s1)
    for i in range(500):
        send(s1, indication_from_hub(f"172.16.{i // 250}.{i % 250}"), HUB)
    assert len(s1.resolving) == 16 and s1.stats[("cap", "resolving")] == 500 - 16
    assert len(s1.ctx.pending) <= SMALL.pending
    for _ in range(10):                                           # tries run out
        net.clock.advance(2.0)
        s1.tick()
        s1.fx.take()
    assert s1.resolving == {} and len(s1.ctx.pending) <= 1        # its registration


def test_negative_answers_have_a_cap_and_expire():
    """Traffic indications from our NHS for ever new destinations nobody has: each is
    resolved, the NHS answers "no binding"; those answers are remembered within their own
    cap (counted beyond it), never filling the cache, and for our holdtime at most, whatever
    holdtime the reply names."""
    from xdmvpn.engine.resolution import NEGATIVE_HOLD
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    small(s1)
    for i in range(30):
        for to, data in send(s1, indication_from_hub(f"172.20.0.{i + 1}"), HUB):
            for _, reply in send(hub, decode(data), S1_NBMA):
                pkt = decode(reply)
                pkt.cies[0].holdtime = 65535      # "remember this for 18 hours"
                s1.receive(encode(pkt), HUB)
    assert s1.stats["resolution_failed"] == 30
    assert s1.ctx.cache.negatives == SMALL.negative == s1.cache.counts()["negative"]
    assert s1.stats[("cap", "negative")] == 30 - SMALL.negative
    assert all(e.expires <= net.clock.now() + max(s1.p.holdtime, NEGATIVE_HOLD)
               for e in s1.cache.entries.values() if e.type is EntryType.NEGATIVE)
    net.clock.advance(max(s1.p.holdtime, NEGATIVE_HOLD) + 1)
    s1.tick()
    assert s1.ctx.cache.negatives == 0 == s1.cache.counts()["negative"]


def test_an_nhs_that_names_another_address_leaves_one_nhs_entry():
    """Each registration reply may name the NHS by another protocol address (responder
    extension): the NHS entry moves, it does not pile up at the NHS's NBMA address."""
    net, (hub, s1) = hub_and_spokes(spokes=1)
    net.tick()
    for i in range(20):
        net.clock.advance(101)                    # s1 refreshes its registration
        s1.tick()
        for _, data in s1.fx.take():              # the registration, to the hub
            for _, reply in send(hub, decode(data), S1_NBMA):
                pkt = decode(reply)
                if pkt.type is not PacketType.REGISTRATION_REPLY:
                    continue
                cies = [Cie(prefix_len=32, client_proto=A(f"10.0.0.{200 + i % 3}"))]
                pkt.extensions = replace_cie_list(pkt.extensions, ExtType.RESPONDER_ADDRESS,
                                                  cies)
                s1.receive(encode(pkt), HUB)
    assert s1.cache.counts()["nhs"] == 1 and s1.ctx.cache.at_nbma(HUB) == 1
    assert s1.cache.get(A("10.0.0.201")).type is EntryType.NHS       # the last one named


def test_pending_requests_cap():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    small(s1)
    s1.p = replace(s1.p, limits=replace(SMALL, resolving=1000))
    for i in range(100):
        s1.resolve(IPv4Address(int(A("172.16.0.0")) + i))
    assert len(s1.ctx.pending) == SMALL.pending and s1.stats[("cap", "pending")] > 0
    net.clock.advance(100)
    s1.tick()
    assert len(s1.ctx.pending) <= SMALL.pending


def test_shortcuts_cap():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    small(s1)
    for i in range(14):
        s2.fx.routes[N(f"192.168.{10 + i}.0/24")] = s2.fx.routes[N("192.168.2.0/24")]
        hub.fx.routes[N(f"192.168.{10 + i}.0/24")] = hub.fx.routes[N("192.168.2.0/24")]
        s1.resolve(A(f"192.168.{10 + i}.1"))
    net.deliver()
    assert len(s1.shortcuts) == 8 and s1.stats[("cap", "shortcuts")] == 6


class NoWalk(Cache):
    def __iter__(self):
        raise AssertionError("a purge walked the cache")

    def of_type(self, *types):
        raise AssertionError("a purge walked the cache")


@pytest.mark.parametrize("sender", ["stranger", "owner"])
def test_a_purge_never_walks_the_cache(sender):
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    cache = NoWalk()
    for e in list(hub.cache.entries.values()):
        cache.put(e)
    for i in range(50_000):
        cache.put(CacheEntry(IPv4Address(int(A("10.128.0.0")) + i), EntryType.DYNAMIC,
                             nbma=IPv4Address(int(A("198.18.0.0")) + i % 40_000)))
    hub.ctx.cache = cache
    observed = ROGUE if sender == "stranger" else A("198.18.0.1")
    cies = [Cie(prefix_len=0 if i % 2 else 8, client_proto=A(f"10.{128 + i}.0.0"))
            for i in range(64)]
    send(hub, purge_request("10.0.0.66", cies, src_nbma=observed), observed)
    assert hub.stats[("drop", "bug")] == 0
    assert len(cache) == 50_000 + 3 - (2 if sender == "owner" else 0)


def _walk(table, net, nbma):
    """What toward() must return, by walking every shortcut."""
    return {p for p, sc in table.table.items()
            if sc.prefix.version == net.version and (nbma is None or sc.nbma == nbma)
            and (sc.via in net or sc.prefix.overlaps(net))}


def _shortcut(version, value, plen, via, nbma):
    width = 32 if version == 4 else 128
    addr = (IPv4Address if version == 4 else IPv6Address)(value % (1 << width))
    prefix = N(f"{addr}/{min(plen, width)}", strict=False)
    via = (IPv4Address if version == 4 else IPv6Address)(via % (1 << width))
    return Shortcut(prefix, prefix.network_address, via, A(f"198.18.0.{nbma}"), 60.0,
                    1e9, 0.0)


_SC = st.tuples(st.sampled_from([4, 6]), st.integers(0, 2**128 - 1), st.integers(0, 128),
                st.integers(0, 2**128 - 1), st.integers(1, 4))
_SMALL_SC = st.tuples(st.sampled_from([4, 6]), st.integers(0, 255), st.integers(0, 128),
                      st.integers(0, 255), st.integers(1, 4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_SC, _SMALL_SC), max_size=40), st.lists(st.one_of(_SC, _SMALL_SC),
       min_size=1, max_size=8), st.lists(st.integers(0, 39), max_size=10))
def test_the_shortcut_index_finds_what_a_walk_finds(shortcuts, nets, removals):
    """toward() by its sorted indexes returns exactly what a walk of every shortcut would,
    for any prefixes, next hops and NBMA addresses, after installs, moves and removals."""
    net_, (hub, s1, s2) = hub_and_spokes()
    table = s1.shortcut_table
    for t in shortcuts:
        table.install(_shortcut(*t))          # the same prefix again moves it
    for i in removals:
        if table.table:
            table.remove(list(table.table)[i % len(table.table)])
    for version, value, plen, _, nbma in nets:
        net = _shortcut(version, value, plen, 0, 1).prefix
        for scope in (None, A(f"198.18.0.{nbma}")):
            assert {sc.prefix for sc in table.toward(net, scope)} == _walk(table, net, scope)


class NoWalkDict(dict):
    """A shortcut table that refuses to be walked and counts its lookups."""
    lookups = 0

    def values(self):
        raise AssertionError("a purge walked the shortcuts")

    def items(self):
        raise AssertionError("a purge walked the shortcuts")

    def __iter__(self):
        raise AssertionError("a purge walked the shortcuts")

    def __getitem__(self, key):
        NoWalkDict.lookups += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        NoWalkDict.lookups += 1
        return super().get(key, default)


@pytest.mark.parametrize("sender", ["nhs", "owner", "stranger"])
def test_a_purge_never_walks_the_shortcuts(sender):
    """16,000 shortcuts on a spoke, all to one NBMA address; one purge of 64 CIEs that match
    nothing, from our NHS, from that NBMA address (the owner), from a stranger: no walk of
    the table, neither of all shortcuts nor of the owner's, a few lookups per CIE."""
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    table = s1.shortcut_table
    owner = A("198.18.0.1")
    for i in range(16_000):
        prefix = N(f"172.{16 + i // 4096}.{(i // 16) % 256}.{(i % 16) * 16}/28")
        table.install(Shortcut(prefix, prefix.network_address, A("10.0.0.12"), owner,
                               60.0, 1e9, 0.0))
    table.table = NoWalkDict(table.table)
    NoWalkDict.lookups = 0
    observed = {"nhs": HUB, "owner": owner, "stranger": ROGUE}[sender]
    cies = [Cie(prefix_len=32, client_proto=A(f"10.9.{i}.1")) for i in range(64)]
    send(s1, purge_request("10.0.0.66", cies, src_nbma=observed), observed)
    assert s1.stats[("drop", "bug")] == 0, s1.last_bug
    assert len(table) == 16_000
    assert NoWalkDict.lookups <= 64 * 2, NoWalkDict.lookups   # one prefix length, and /32
