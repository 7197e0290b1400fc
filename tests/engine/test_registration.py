"""Registration: NHC state machine, NHS server, unique/no-unique, failover, backoff."""

from ipaddress import ip_address as A

from netsim import Net, hub_and_spokes
from xdmvpn.engine.cache import EntryType
from xdmvpn.engine.registration_client import NhcState
from xdmvpn.engine.params import NhsParams
from xdmvpn.nhrp import CieCode, PacketType


def test_spokes_register_and_the_hub_learns_them():
    net, (hub, s1, s2) = hub_and_spokes()
    crossed = net.tick()
    assert [(p.TYPE, str(dst)) for _, dst, p in crossed] == [
        (3, "192.0.2.1"), (3, "192.0.2.1"), (4, "192.0.2.11"), (4, "192.0.2.12")]
    assert {c.state for c in s1.nhcs + s2.nhcs} == {NhcState.UP}
    dyn = hub.cache.of_type(EntryType.DYNAMIC)
    assert [(str(e.proto), str(e.nbma)) for e in dyn] == [("10.0.0.11", "192.0.2.11"),
                                                         ("10.0.0.12", "192.0.2.12")]
    assert hub.fx.mappings == {A("10.0.0.11"): A("192.0.2.11"), A("10.0.0.12"): A("192.0.2.12")}
    assert hub.fx.multicast == {A("192.0.2.11"), A("192.0.2.12")}
    assert s1.fx.default_nhs == A("192.0.2.1")
    assert s1.cache.get(A("10.0.0.1")).type is EntryType.NHS


def test_registration_request_looks_like_ciscos():
    net, (hub, s1, _) = hub_and_spokes()
    req = next(p for src, _, p in net.tick() if p.TYPE == PacketType.REGISTRATION_REQUEST)
    assert req.hop_count == 255 and req.flags == 0x8002            # unique + Cisco NAT
    assert req.dst_proto == A("10.0.0.1") and req.src_proto == A("10.0.0.11")
    assert [(c.prefix_len, c.holdtime, c.client_proto) for c in req.cies] == [(32, 300, None)]
    assert [e.type for e in req.extensions] == [3, 4, 5, 7, 9, 0]
    nat = req.extension(9).cies[0]
    assert (nat.client_nbma, nat.client_proto) == (A("192.0.2.1"), A("10.0.0.1"))


def test_reply_carries_responder_and_regenerated_auth():
    net, (hub, s1, s2) = hub_and_spokes()
    reply = next(p for _, dst, p in net.tick() if p.TYPE == PacketType.REGISTRATION_REPLY)
    assert reply.cies[0].code == CieCode.SUCCESS
    responder = reply.extension(3).cies[0]
    assert (responder.client_nbma, responder.client_proto) == (A("192.0.2.1"), A("10.0.0.1"))
    assert [e.type for e in reply.extensions].count(7) == 1


def test_refresh_at_a_third_of_the_holdtime_and_expiry_without_it():
    net, (hub, s1, s2) = hub_and_spokes(holdtime=300)
    net.tick()
    sent_before = s1.nhcs[0].requests_sent
    net.run_for(99)
    assert s1.nhcs[0].requests_sent == sent_before
    net.run_for(2)
    assert s1.nhcs[0].requests_sent == sent_before + 1        # refreshed at 100 s
    net.down.add(A("192.0.2.11"))                              # spoke 1 falls silent
    net.run_for(301)
    assert hub.cache.get(A("10.0.0.11")) is None               # expired on the hub
    assert A("10.0.0.11") not in hub.fx.mappings
    assert hub.fx.multicast == {A("192.0.2.12")}
    assert s1.nhcs[0].state is NhcState.DOWN


def test_retries_back_off_exponentially_with_jitter():
    net = Net()
    spoke = net.add("192.0.2.11", tunnel_ip=A("10.0.0.11"), prefix_len=24,
                    nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1")),))
    sends = []
    for _ in range(200):
        net.tick(0.25)
        sends += [net.clock.now() for _, _, p in net.trace[len(sends):]]
    gaps = [b - a for a, b in zip(sends, sends[1:])]
    assert len(sends) >= 5
    for gap, nominal in zip(gaps, [1, 2, 4, 8, 16, 32]):
        assert 0.8 * nominal - 0.25 <= gap <= 1.2 * nominal + 0.25, gaps
    assert spoke.nhcs[0].state is NhcState.REGISTERING


def test_hub_restart_and_reregistration():
    net, (hub, s1, s2) = hub_and_spokes(holdtime=300)
    net.tick()
    params = hub.p
    del net.nodes[A("192.0.2.1")]                              # the hub reboots
    net.run_for(150)
    new_hub = net.add("192.0.2.1", **{k: getattr(params, k) for k in (
        "tunnel_ip", "prefix_len", "holdtime", "auth", "redirect", "multicast_dynamic")})
    assert len(new_hub.cache.of_type(EntryType.DYNAMIC)) == 0
    net.run_for(120)                                           # retries within the backoff
    assert len(new_hub.cache.of_type(EntryType.DYNAMIC)) == 2
    assert all(c.state is NhcState.UP for c in s1.nhcs + s2.nhcs)


def test_conflicting_unique_registration_changes_nothing():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    thief = net.add("192.0.2.66", tunnel_ip=A("10.0.0.11"), prefix_len=24, auth=b"secret",
                    nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1")),))
    before = dict(hub.fx.mappings)
    crossed = net.tick()
    reply = next(p for src, dst, p in crossed if dst == A("192.0.2.66"))
    assert reply.cies[0].code == CieCode.ALREADY_REGISTERED
    assert hub.fx.mappings == before
    assert hub.cache.get(A("10.0.0.11")).nbma == A("192.0.2.11")
    assert thief.nhcs[0].state is not NhcState.UP


def test_no_unique_registration_may_move_to_a_new_nbma():
    net = Net()
    hub = net.add("192.0.2.1", tunnel_ip=A("10.0.0.1"), prefix_len=24)
    net.add("192.0.2.11", tunnel_ip=A("10.0.0.11"), prefix_len=24, unique=False,
                    nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1")),))
    net.tick()
    del net.nodes[A("192.0.2.11")]                             # new DHCP lease on the spoke
    net.add("192.0.2.99", tunnel_ip=A("10.0.0.11"), prefix_len=24, unique=False,
            nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1")),))
    net.tick()
    assert hub.cache.get(A("10.0.0.11")).nbma == A("192.0.2.99")


def test_registration_outside_the_overlay_is_refused():
    net = Net()
    hub = net.add("192.0.2.1", tunnel_ip=A("10.0.0.1"), prefix_len=24)
    net.add("192.0.2.11", tunnel_ip=A("10.9.9.9"), prefix_len=24,
            nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1")),))
    reply = next(p for _, _, p in net.tick() if p.TYPE == PacketType.REGISTRATION_REPLY)
    assert reply.cies[0].code == CieCode.ADMINISTRATIVELY_PROHIBITED
    assert len(hub.cache.of_type(EntryType.DYNAMIC)) == 0


def test_dynamic_nhs_learns_the_protocol_address():
    net = Net()
    net.add("192.0.2.1", tunnel_ip=A("10.0.0.1"), prefix_len=24)
    spoke = net.add("192.0.2.11", tunnel_ip=A("10.0.0.11"), prefix_len=24,
                    nhs=(NhsParams(A("192.0.2.1"), None),))
    net.tick()
    assert spoke.nhcs[0].proto == A("10.0.0.1")
    assert spoke.cache.get(A("10.0.0.1")).type is EntryType.NHS


def test_nhs_failover_by_priority():
    net = Net()
    for nbma, tip in (("192.0.2.1", "10.0.0.1"), ("192.0.2.2", "10.0.0.2")):
        net.add(nbma, tunnel_ip=A(tip), prefix_len=24, holdtime=60)
    spoke = net.add("192.0.2.11", tunnel_ip=A("10.0.0.11"), prefix_len=24, holdtime=60,
                    nhs=(NhsParams(A("192.0.2.2"), A("10.0.0.2"), priority=2),
                         NhsParams(A("192.0.2.1"), A("10.0.0.1"), priority=1)))
    net.tick()
    assert spoke.fx.default_nhs == A("192.0.2.1")              # lower priority value wins
    assert len(net.nodes[A("192.0.2.2")].cache.of_type(EntryType.DYNAMIC)) == 1  # both used
    net.down.add(A("192.0.2.1"))
    net.run_for(61)
    assert spoke.nhcs[1].state is NhcState.DOWN
    assert spoke.fx.default_nhs == A("192.0.2.2")
    net.down.clear()
    net.run_for(40)
    assert spoke.fx.default_nhs == A("192.0.2.1")


def test_wrong_authentication_is_dropped_and_counted():
    net, (hub, s1, s2) = hub_and_spokes()
    net.add("192.0.2.66", tunnel_ip=A("10.0.0.66"), prefix_len=24, auth=b"guess",
            nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1")),))
    net.tick()
    assert hub.cache.get(A("10.0.0.66")) is None
    assert hub.stats[("drop", "authentication")] == 1


def test_the_overlays_network_and_broadcast_addresses_are_no_stations():
    """Registrations of 10.0.0.0 and 10.0.0.255 (a /24 overlay) are refused (code 4), as
    are those of an IPv6 overlay's subnet-router anycast address; a /31 has none."""
    from craft import registration_request, send
    from xdmvpn.nhrp import decode
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    rogue = A("203.0.113.5")
    for addr, code in (("10.0.0.0", CieCode.ADMINISTRATIVELY_PROHIBITED),
                       ("10.0.0.255", CieCode.ADMINISTRATIVELY_PROHIBITED),
                       ("10.0.0.77", CieCode.SUCCESS)):
        (_, reply), = send(hub, registration_request(addr, src_nbma=rogue), rogue)
        assert decode(reply).cies[0].code == code, addr
        assert (hub.cache.get(A(addr)) is not None) == (code == CieCode.SUCCESS)


def test_a_deregistration_from_another_nbma_removes_nothing():
    """A non-unique entry may move to another NBMA address by registering from there (a new
    DHCP lease), but a de-registration (holdtime 0) only removes the sender's binding."""
    from craft import registration_request, send
    from xdmvpn.nhrp import Cie, decode
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    other = A("203.0.113.5")
    send(hub, registration_request("10.0.0.77", src_nbma=A("192.0.2.77"), unique=False),
         A("192.0.2.77"))
    bye = registration_request("10.0.0.77", src_nbma=other, unique=False,
                               cies=[Cie(prefix_len=32, mtu=1400, holdtime=0)])
    (_, reply), = send(hub, bye, other)
    assert decode(reply).cies[0].code == CieCode.SUCCESS
    assert hub.cache.get(A("10.0.0.77")).nbma == A("192.0.2.77")
    send(hub, registration_request("10.0.0.77", src_nbma=A("192.0.2.77"), unique=False,
                                   cies=[Cie(prefix_len=32, mtu=1400, holdtime=0)]),
         A("192.0.2.77"))
    assert hub.cache.get(A("10.0.0.77")) is None
