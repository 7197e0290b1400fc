"""The engine's IPsec hooks: identity binding refuses registrations (code 4) and purges of
addresses an identity is not bound to, cache entries carry the peer's identity, and an
IPsec path coming up sends the registration at once. Effects.may_register and
peer_identity are what the daemon implements with strongSwan's SAs."""

from dataclasses import replace
from ipaddress import ip_address as A

from netsim import hub_and_spokes
from xdmvpn.engine.build import request_extensions
from xdmvpn.engine.cache import CacheEntry, EntryType
from xdmvpn.engine.registration_client import NhcState
from xdmvpn.nhrp import Cie, CieCode, PacketType, PurgeRequest, encode

S1, S2, HUB = A("192.0.2.11"), A("192.0.2.12"), A("192.0.2.1")


def bind(hub):
    """The hub's IPsec: spoke 1 is bound to 10.0.0.11, spoke 2 claims 10.0.0.12 with an
    identity bound to 10.0.0.99 only."""
    hub.fx.identities = {S1: "10.0.0.11", S2: "CN=10.0.0.99"}
    hub.fx.allowed = {S1: {A("10.0.0.11")}, S2: {A("10.0.0.99")}}


def test_a_registration_of_an_address_the_identity_is_not_bound_to_gets_code_4():
    net, (hub, s1, s2) = hub_and_spokes()
    bind(hub)
    crossed = net.tick()
    codes = {str(dst): p.cies[0].code for _, dst, p in crossed
             if p.TYPE == PacketType.REGISTRATION_REPLY}
    assert codes == {"192.0.2.11": CieCode.SUCCESS,
                     "192.0.2.12": CieCode.ADMINISTRATIVELY_PROHIBITED}
    assert hub.cache.get(A("10.0.0.12")) is None
    assert hub.stats["identity_refused"] == 1 and hub.stats[("registration", 4)] == 1
    assert s2.nhcs[0].state is NhcState.DOWN and s2.nhcs[0].last_error == 4
    assert hub.cache.get(A("10.0.0.11")).identity == "10.0.0.11"


def test_entries_carry_the_identity_and_follow_it():
    net, (hub, s1, s2) = hub_and_spokes()
    hub.fx.identities = {S1: "10.0.0.11"}
    net.tick()
    assert hub.cache.get(A("10.0.0.11")).identity == "10.0.0.11"
    assert hub.cache.get(A("10.0.0.12")).identity == ""          # no SA: no identity
    assert hub.cache.get(A("10.0.0.1")).identity == ""           # local: never
    assert hub.set_identity(S2, "10.0.0.12") == 1
    assert hub.cache.get(A("10.0.0.12")).identity == "10.0.0.12"
    assert hub.set_identity(S2, "10.0.0.12") == 0                # unchanged
    assert hub.set_identity(S1, "") == 1                         # its SA went down
    assert hub.cache.get(A("10.0.0.11")).identity == ""
    assert hub.cache.get(A("10.0.0.1")).identity == ""
    s1.fx.identities = {S2: "10.0.0.12"}
    s1.cache_put(CacheEntry(A("10.0.0.12"), EntryType.CACHED, nbma=S2))
    assert s1.cache.get(A("10.0.0.12")).identity == "10.0.0.12"


def purge_as_10_0_0_11_from(hub, spoke):
    """spoke (NBMA 192.0.2.12) sends a purge claiming to be 10.0.0.11."""
    pkt = PurgeRequest(src_nbma=S2, src_proto=A("10.0.0.11"), dst_proto=A("10.0.0.1"),
                       hop_count=255, flags=0, request_id=77,
                       cies=[Cie(prefix_len=32, client_proto=A("10.0.0.11"))],
                       extensions=request_extensions(spoke.p, responder=False, nat=None))
    hub.receive(encode(pkt), S2)


def test_a_purge_of_another_stations_address_is_refused_with_or_without_ipsec():
    """Claiming the address in the purge's source field is not enough: the binding belongs
    to the NBMA address that registered it (docs/security.md)."""
    net, (hub, s1, s2) = hub_and_spokes()
    for s in (s1, s2):
        s.p = replace(s.p, unique=False)
    net.tick()
    purge_as_10_0_0_11_from(hub, s2)               # without IPsec
    assert hub.cache.get(A("10.0.0.11")).nbma == S1
    bind(hub)
    hub.fx.allowed[S2] = {A("10.0.0.11")}          # even an identity bound to it
    purge_as_10_0_0_11_from(hub, s2)
    assert hub.cache.get(A("10.0.0.11")).type is EntryType.DYNAMIC


def test_path_up_registers_at_once():
    net, (hub, s1, s2) = hub_and_spokes(holdtime=300)
    net.tick()
    c = s1.nhcs[0]
    sent = c.requests_sent
    net.run_for(10)
    assert c.requests_sent == sent                  # next refresh at 100 s
    s1.path_up(A("192.0.2.99"))                      # not an NHS: nothing
    net.tick()
    assert c.requests_sent == sent
    s1.path_up(HUB)
    net.tick()
    assert c.requests_sent == sent + 1 and c.state is NhcState.UP
