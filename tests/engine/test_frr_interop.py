"""The two engine findings of the FRR interop runs (issue 13): an FRR spoke configured
`nhs dynamic` learns its NHS's address from the Registration Reply's destination protocol
address (FRR nhrp_nhs.c, nhrp_reg_reply), and a Resolution Reply a responder sends back
through the hub (FRR routes it toward the requester) is forwarded, not dropped."""

from ipaddress import ip_address as A, ip_network as N

from craft import HUB, S1, S2, exts, send
from netsim import Net, hub_and_spokes, ipv4_head
from xdmvpn.engine.build import cie_list
from xdmvpn.engine.effects import RouteHint
from xdmvpn.engine.params import NhsParams
from xdmvpn.nhrp import (
    Cie, ExtType, PacketType, RegistrationRequest, decode, encode,
)

FRR_SPOKE = A("192.0.2.21")


def frr_nhs_dynamic_registration():
    """As FRR sends it when the NHS's protocol address is unknown: its own address as the
    destination, hop count 1, prefix length 0xFF (unique), a NAT extension CIE with the
    NHS's NBMA and 0.0.0.0."""
    return RegistrationRequest(
        src_nbma=FRR_SPOKE, src_proto=A("10.0.0.21"), dst_proto=A("10.0.0.21"), hop_count=1,
        flags=0x8002, request_id=4242, cies=[Cie(prefix_len=0xFF, mtu=1400, holdtime=300)],
        extensions=exts(nat=[Cie(prefix_len=32, mtu=1400, client_nbma=HUB,
                                 client_proto=A("0.0.0.0"))]))


def test_registration_reply_carries_the_nhs_address_where_frr_reads_it():
    net, (hub, s1, s2) = hub_and_spokes()
    (to, data), = send(hub, frr_nhs_dynamic_registration(), FRR_SPOKE)
    reply = decode(data)
    assert to == FRR_SPOKE and reply.cies[0].code == 0
    # FRR: r->proto_addr = p->dst_proto; the hub's own tunnel address, not the spoke's
    assert reply.dst_proto == A("10.0.0.1")
    assert reply.src_proto == A("10.0.0.21")                    # copied from the request
    assert cie_list(reply, ExtType.RESPONDER_ADDRESS)[0].client_proto == A("10.0.0.1")
    assert hub.cache.get(A("10.0.0.21")).nbma == FRR_SPOKE


def test_our_client_learns_a_dynamic_nhs_from_the_reply_destination_too():
    net = Net()
    net.add("192.0.2.1", tunnel_ip=A("10.0.0.1"), prefix_len=24)
    spoke = net.add("192.0.2.11", tunnel_ip=A("10.0.0.11"), prefix_len=24,
                    nhs=(NhsParams(A("192.0.2.1"), None),))
    spoke.tick()
    (_, data), = spoke.fx.take()
    req = decode(data)
    assert req.dst_proto == A("10.0.0.11")                      # NHS unknown: our own
    net.nodes[A("192.0.2.1")].receive(data, A("192.0.2.11"))
    (_, reply_data), = net.nodes[A("192.0.2.1")].fx.take()
    reply = decode(reply_data)
    reply.extensions = [e for e in reply.extensions if e.type != ExtType.RESPONDER_ADDRESS]
    spoke.receive(encode(reply), A("192.0.2.1"))                # as a hub without it
    assert spoke.nhcs[0].proto == A("10.0.0.1")


def test_a_resolution_reply_to_another_station_is_forwarded_toward_it():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    s1.resolve(A("192.168.2.20"))
    (_, req), = s1.fx.take()
    hub.receive(req, S1)
    (to, fwd), = hub.fx.take()
    assert to == S2
    s2.receive(fwd, HUB)
    (_, direct_reply), = s2.fx.take()
    # the responder sends it back through the hub instead (FRR routes it to the requester)
    hub.receive(direct_reply, S2)
    assert hub.stats[("drop", "unexpected_reply")] == 0
    (to, relayed), = hub.fx.take()
    out, orig = decode(relayed), decode(direct_reply)
    assert to == S1 and out.TYPE == PacketType.RESOLUTION_REPLY
    assert out.hop_count == orig.hop_count - 1 and out.request_id == orig.request_id
    assert [c.client_proto for c in cie_list(out, ExtType.REVERSE_TRANSIT_NHS)] == \
        [A("10.0.0.1")]                                           # RFC 2332 5.3.3
    assert (A("10.0.0.12"), S2) in [(c.client_proto, c.client_nbma)
                                     for c in cie_list(out, ExtType.NAT_ADDRESS)]  # vouched
    s1.receive(relayed, HUB)
    assert s1.shortcuts[N("192.168.2.0/24")].nbma == S2
    assert s1.fx.shortcuts[N("192.168.2.0/24")] == (A("10.0.0.12"), S2)


def test_a_reply_is_not_forwarded_back_where_it_came_from_nor_for_strangers():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    s1.resolve(A("192.168.2.20"))
    (_, req), = s1.fx.take()
    hub.receive(req, S1)
    (_, fwd), = hub.fx.take()
    s2.receive(fwd, HUB)
    (_, reply), = s2.fx.take()
    hub.receive(reply, S1)                                        # from the requester itself
    hub.receive(reply, A("203.0.113.9"))                          # from a stranger
    assert hub.fx.take() == [] and hub.stats[("drop", "unexpected_reply")] == 2


def two_hubs():
    """hub1 (10.0.0.1) and hub2 (10.0.0.2); s1 registers with both, hub1 preferred; s2 only
    with hub2: the interop cloud's spoke2/spoke4 at the FRR hub (tests/interop)."""
    net = Net()
    hubs = [net.add(f"192.0.2.{h}", tunnel_ip=A(f"10.0.0.{h}"), prefix_len=24, auth=None,
                    holdtime=300, redirect=True, multicast_dynamic=True) for h in (1, 2)]
    s1 = net.add("192.0.2.11", tunnel_ip=A("10.0.0.11"), prefix_len=24, auth=None,
                 holdtime=300, shortcut=True, nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1"), priority=1),
                                     NhsParams(A("192.0.2.2"), A("10.0.0.2"), priority=2)))
    s2 = net.add("192.0.2.12", tunnel_ip=A("10.0.0.12"), prefix_len=24, auth=None,
                 holdtime=300, shortcut=True, nhs=(NhsParams(A("192.0.2.2"), A("10.0.0.2")),))
    s1.fx.routes[N("192.168.1.0/24")] = RouteHint(local=True, prefix_len=24)
    s2.fx.routes[N("192.168.2.0/24")] = RouteHint(local=True, prefix_len=24)
    s1.fx.routes[N("192.168.2.0/24")] = RouteHint(via=A("10.0.0.2"))
    s2.fx.routes[N("192.168.1.0/24")] = RouteHint(via=A("10.0.0.2"))
    hubs[1].fx.routes[N("192.168.1.0/24")] = RouteHint(via=A("10.0.0.11"))
    hubs[1].fx.routes[N("192.168.2.0/24")] = RouteHint(via=A("10.0.0.12"))
    net.tick()
    return net, hubs, s1, s2


def test_a_shortcut_is_refreshed_through_the_hub_that_resolved_it():
    """Seen in the interop cloud: a spoke registered with two hubs refreshed a shortcut
    (learnt through the second hub's indication) through its preferred hub, which did not
    know the peer, got a negative reply and lost the shortcut at its holdtime."""
    net, (hub1, hub2), s1, s2 = two_hubs()
    hub2.on_trigger(S1, A("192.168.1.10"), A("192.168.2.20"),
                    ipv4_head("192.168.1.10", "192.168.2.20"))
    net.deliver()
    prefix = N("192.168.2.0/24")
    assert s1.shortcuts[prefix].nbma == S2
    net.trace.clear()
    for _ in range(60):                                   # 300 s holdtime, used throughout
        s1.fx.used[A("10.0.0.12")] = net.clock.now()
        net.tick(10)
    asked = {dst for src, dst, p in net.trace
             if src == S1 and p.TYPE == PacketType.RESOLUTION_REQUEST}
    assert asked == {A("192.0.2.2")}, asked
    assert prefix in s1.fx.shortcuts and s1.stats["shortcut_refreshed"] >= 2
    assert hub1.stats["resolution_negative"] == 0
    # once hub2 is down, a refresh goes to the preferred hub that is up
    assert s1.registrations.refresh_nbma(A("192.0.2.2")) == A("192.0.2.2")
    net.down.add(A("192.0.2.2"))
    net.run_for(400, step=10)
    assert s1.nhcs[0].state.name == "UP" and s1.nhcs[1].state.name != "UP"
    assert s1.registrations.refresh_nbma(A("192.0.2.2")) == A("192.0.2.1")
