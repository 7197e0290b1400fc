"""IPv6 in the engine: an IPv6 overlay over an IPv4 underlay, an IPv4 overlay over an IPv6
underlay, IPv6 over IPv6, dual stack on one tunnel (one registration per family at each NHS)
and a hub serving spokes of both underlay families. Every handler with IPv6: registration,
resolution, traffic indication, shortcuts for IPv6 prefixes, purge, error indication."""

from ipaddress import ip_address as A

import pytest

from familynet import head, lan, lan_host, nbma_of, network, tunnel_ip
from xdmvpn.engine.cache import EntryType
from xdmvpn.engine.params import NodeParams
from xdmvpn.engine.stack import Stack
from xdmvpn.nhrp import Afn, CieCode, ErrorCode, PacketType, ProtocolType, decode, encode

CASES = [pytest.param((6,), 4, id="ipv6-over-ipv4"), pytest.param((4,), 6, id="ipv4-over-ipv6"),
         pytest.param((6,), 6, id="ipv6-over-ipv6"), pytest.param((4, 6), 4, id="dual-over-ipv4"),
         pytest.param((6, 4), 6, id="dual-over-ipv6")]


def on_the_wire_ok(crossed):
    """Every packet has a good checksum and names its families as its addresses are."""
    for src, dst, pkt in crossed:
        raw = encode(pkt)
        assert decode(raw).checksum_ok
        assert pkt.afn == (Afn.IPV4 if src.version == 4 else Afn.IPV6), (src, pkt)
        assert pkt.src_nbma.version == src.version
        proto = pkt.src_proto.version
        assert pkt.protocol_type == (ProtocolType.IPV4 if proto == 4 else ProtocolType.IPV6)


def phase3(net, hub, s1, s2, family):
    src, dst = lan_host(family, 1, 10), lan_host(family, 2, 20)
    assert hub.on_trigger(s1.nbmas[0], src, dst, head(src, dst))
    return net.deliver()


@pytest.mark.parametrize("overlays,nbma", CASES)
def test_registration_one_per_family(overlays, nbma):
    net, hub, (s1, s2) = network(overlays, (nbma, nbma))
    crossed = net.tick()
    regs = [p for _, _, p in crossed if p.TYPE == PacketType.REGISTRATION_REQUEST]
    assert sorted(p.protocol_type for p in regs) == sorted(
        [ProtocolType.IPV4 if f == 4 else ProtocolType.IPV6 for f in overlays] * 2)
    on_the_wire_ok(crossed)
    for i, spoke in ((1, s1), (2, s2)):
        assert [c.state.value for c in spoke.nhcs] == ["up"] * len(overlays)
        for f in overlays:
            entry = hub.cache.get(tunnel_ip(f, 10 + i))
            assert entry.type is EntryType.DYNAMIC and entry.nbma == nbma_of(nbma, 10 + i)
            assert hub.fx.mappings[tunnel_ip(f, 10 + i)] == nbma_of(nbma, 10 + i)
            assert spoke.cache.get(tunnel_ip(f, 1)).type is EntryType.NHS
    # multicast targets of both families' registrations, merged once
    assert hub.fx.multicast == {nbma_of(nbma, 11), nbma_of(nbma, 12)}
    assert s1.fx.default_nhs == nbma_of(nbma, 1)


@pytest.mark.parametrize("overlays,nbma", CASES)
def test_phase3_shortcut_for_every_family(overlays, nbma):
    net, hub, (s1, s2) = network(overlays, (nbma, nbma))
    net.tick()
    for f in overlays:
        crossed = phase3(net, hub, s1, s2, f)
        assert [(p.TYPE, s, d) for s, d, p in crossed] == [
            (PacketType.TRAFFIC_INDICATION, nbma_of(nbma, 1), nbma_of(nbma, 11)),
            (PacketType.RESOLUTION_REQUEST, nbma_of(nbma, 11), nbma_of(nbma, 1)),
            (PacketType.RESOLUTION_REQUEST, nbma_of(nbma, 1), nbma_of(nbma, 12)),
            (PacketType.RESOLUTION_REPLY, nbma_of(nbma, 12), nbma_of(nbma, 11))]
        on_the_wire_ok(crossed)
        ind, req, _, rep = (p for _, _, p in crossed)
        assert ind.dst_proto == lan_host(f, 1, 10)             # the source of the packet
        assert req.dst_proto == lan_host(f, 2, 20)
        assert rep.cies[0].prefix_len == lan(f, 2).prefixlen
        assert rep.cies[0].client_nbma == nbma_of(nbma, 12)
        assert s1.fx.shortcuts[lan(f, 2)] == (tunnel_ip(f, 12), nbma_of(nbma, 12))
        assert s1.fx.mappings[tunnel_ip(f, 12)] == nbma_of(nbma, 12)
        assert s2.fx.mappings[tunnel_ip(f, 11)] == nbma_of(nbma, 11)
    assert len(s1.shortcuts) == len(overlays)


@pytest.mark.parametrize("overlays,nbma", CASES)
def test_purge_takes_the_shortcuts_back(overlays, nbma):
    net, hub, (s1, s2) = network(overlays, (nbma, nbma))
    net.tick()
    for f in overlays:
        phase3(net, hub, s1, s2, f)
    assert s2.clear_cache() >= len(overlays)            # s2 tells s1 to forget it
    crossed = net.deliver()
    purges = [p for _, _, p in crossed if p.TYPE == PacketType.PURGE_REQUEST]
    assert sorted(p.dst_proto.version for p in purges) == sorted(overlays)
    on_the_wire_ok(crossed)
    assert s1.fx.shortcuts == {}
    assert s1.stats["purged_entries"] >= len(overlays)


@pytest.mark.parametrize("overlays,nbma", CASES)
def test_shutdown_deregisters_every_family(overlays, nbma):
    net, hub, (s1, s2) = network(overlays, (nbma, nbma))
    net.tick()
    assert s1.shutdown() == len(overlays)
    net.deliver()
    for f in overlays:
        assert hub.cache.get(tunnel_ip(f, 11)) is None
        assert hub.cache.get(tunnel_ip(f, 12)).type is EntryType.DYNAMIC


@pytest.mark.parametrize("overlays,nbma", CASES)
def test_unknown_destination_negative_and_error_indication(overlays, nbma):
    net, hub, (s1, _) = network(overlays, (nbma, nbma))
    net.tick()
    for f in overlays:
        nowhere = A("172.16.0.1") if f == 4 else A("2001:db8:dead::1")
        s1.resolve(nowhere)
        reply = net.deliver()[-1][2]
        assert reply.TYPE == PacketType.RESOLUTION_REPLY
        assert reply.cies[0].code == CieCode.NO_BINDING
        assert reply.cies[0].prefix_len == nowhere.max_prefixlen
        assert s1.cache.get(nowhere).type is EntryType.NEGATIVE
    # a request with hop count 0 gets an error indication of the same families
    fam = overlays[0]
    req = encode(_request_with_hop_count_zero(s1, fam))
    hub.receive(req, s1.nbmas[0])
    (src, dst, err), = net.deliver()
    assert err.TYPE == PacketType.ERROR_INDICATION
    assert err.error_code == ErrorCode.HOP_COUNT_EXCEEDED
    assert err.src_nbma == src == nbma_of(nbma, 1) and err.src_proto == tunnel_ip(fam, 1)
    on_the_wire_ok([(src, dst, err)])


def _request_with_hop_count_zero(stack, family):
    node = stack.node(family)
    node.resolve(lan_host(family, 2, 7))
    (_, data), = stack.fx.take()
    pkt = decode(data)
    pkt.hop_count = 0
    return pkt


def test_hub_serves_spokes_of_both_underlay_families():
    """A hub with an IPv4 and an IPv6 NBMA address: each spoke registers over its own
    underlay and hears the hub's address of that family; no shortcut is offered across
    the families (the spokes could not reach each other), the hub path stays."""
    net, hub, (s4, s6) = network((4, 6), (4, 6))
    crossed = net.tick()
    on_the_wire_ok(crossed)
    replies = [(d, p) for _, d, p in crossed if p.TYPE == PacketType.REGISTRATION_REPLY]
    assert len(replies) == 4
    for dst, rep in replies:
        responder = rep.extension(3).cies[0]
        assert responder.client_nbma == nbma_of(dst.version, 1)
    for f in (4, 6):
        assert hub.cache.get(tunnel_ip(f, 11)).nbma == nbma_of(4, 11)
        assert hub.cache.get(tunnel_ip(f, 12)).nbma == nbma_of(6, 12)
    assert not hub.on_trigger(nbma_of(4, 11), tunnel_ip(6, 11), tunnel_ip(6, 12),
                              head(tunnel_ip(6, 11), tunnel_ip(6, 12)))
    assert hub.node(6).stats["indication_cross_family"] == 1
    # a LAN host behind the other spoke (found through the hub's routes): the same
    src, dst = lan_host(6, 1, 10), lan_host(6, 2, 20)
    assert not hub.on_trigger(nbma_of(4, 11), src, dst, head(src, dst))
    assert hub.node(6).stats["indication_cross_family"] == 2
    assert net.deliver() == []
    s4.resolve(tunnel_ip(6, 12))
    crossed = net.deliver()
    on_the_wire_ok(crossed)
    reply = crossed[-1][2]
    assert reply.TYPE == PacketType.RESOLUTION_REPLY and reply.cies[0].code == CieCode.NO_BINDING
    assert hub.node(6).stats["resolution_cross_family"] == 1
    assert s4.fx.shortcuts == {}


def test_stack_dispatches_by_protocol_type_and_inner_family():
    net, hub, (s1, s2) = network((4, 6), (4, 4))
    net.tick()
    assert hub.node(4).stats[("rx", PacketType.REGISTRATION_REQUEST)] == 2
    assert hub.node(6).stats[("rx", PacketType.REGISTRATION_REQUEST)] == 2
    assert hub.stats[("rx", PacketType.REGISTRATION_REQUEST)] == 4
    # a packet of no family the node runs: the primary's validation takes it (counted)
    v4only = Stack([NodeParams(tunnel_ip=A("10.0.0.50"), prefix_len=24,
                               nbma=A("192.0.2.50"))])
    v4only.receive(encode(_request_with_hop_count_zero(s1, 6)), A("192.0.2.11"))
    assert v4only.primary.stats[("rx", PacketType.RESOLUTION_REQUEST)] == 1
    assert not v4only.on_trigger(A("192.0.2.11"), tunnel_ip(6, 11), tunnel_ip(6, 12), b"")
    with pytest.raises(ValueError):
        Stack([NodeParams(tunnel_ip=A("10.0.0.1"), prefix_len=24, nbma=A("192.0.2.1"))] * 2)
    assert len(hub.cache) == sum(len(n.cache) for n in hub.nodes.values())
    assert hub.cache.counts()["dynamic"] == 4


def test_view_and_show_per_family():
    """What show and the exporter read of a dual-stack node: rows and counters of each
    family apart (show ip / show ipv6, the metrics' family label)."""
    from xdmvpn import show
    from xdmvpn.view import EngineView
    net, hub, (s1, s2) = network((4, 6), (4, 4))
    net.tick()
    phase3(net, hub, s1, s2, 6)
    view = EngineView(s1, "dmvpn0")
    assert {r.family for r in view.nhs()} == {4, 6}
    counters = view.nhrp_counters_by_family()
    assert set(counters) == {"ipv4", "ipv6"}
    assert counters["ipv6"][("rx", PacketType.TRAFFIC_INDICATION)] == 1
    assert ("rx", PacketType.TRAFFIC_INDICATION) not in counters["ipv4"]
    assert view.shortcut_counts_by_family() == {"ipv4": 0, "ipv6": 1}
    assert view.cache_counts_by_family()["ipv6"]["cached"] == 1
    snap = show.snapshot(EngineView(hub, "dmvpn0"))
    assert [p["protocol"] for p in snap["protocols"]] == ["10.0.0.1", "2001:db8:100::1"]
    v6 = show.cache_json(snap, 6)
    assert v6 and all(":" in r["protocol"] for r in v6)
    assert {r["protocol"] for r in show.cache_json(snap, 4)} == {
        "10.0.0.1", "10.0.0.11", "10.0.0.12"}
    assert "2001:db8:100::b" in show.cache_table(snap, 6)
    assert "2001:db8:100::b" not in show.cache_table(snap, 4)
    s1snap = show.snapshot(EngineView(s1, "dmvpn0"))
    assert [r["prefix"] for r in show.shortcut_json(s1snap, 6)] == ["2001:db8:12::/64"]
    assert show.shortcut_json(s1snap, 4) == []
    assert [r["protocol"] for r in show.nhs_json(s1snap, 6)] == ["2001:db8:100::1"]


def test_hub_on_both_underlays_shows_its_address_of_each_family():
    from xdmvpn import show
    from xdmvpn.view import EngineView
    net, hub, _ = network((4,), (4, 6))
    net.tick()
    snap = show.snapshot(EngineView(hub, "dmvpn0"))
    assert snap["nbmas"] == ["192.0.2.1", "2001:db8:ff::1"]
    rows = {r["dst"]: r["src"] for r in show.dmvpn_json(snap)}
    assert rows == {"192.0.2.11": "192.0.2.1", "2001:db8:ff::c": "2001:db8:ff::1"}
