"""Purges we send (NBMA change, clean shutdown, clear) and configuration reload, in the
engine with the fake clock."""

from dataclasses import replace
from ipaddress import ip_address as A, ip_network as N

import pytest

from netsim import hub_and_spokes, ipv4_head
from xdmvpn.engine.cache import EntryType
from xdmvpn.engine.registration_client import NhcState
from xdmvpn.engine.params import NhsParams
from xdmvpn.nhrp import PacketType


def with_shortcut(unique=True):
    net, (hub, s1, s2) = hub_and_spokes()
    if not unique:
        s2.p = replace(s2.p, unique=False)
    net.tick()
    hub.on_trigger(A("192.0.2.11"), A("192.168.1.10"), A("192.168.2.20"),
                   ipv4_head("192.168.1.10", "192.168.2.20"))
    net.deliver()
    assert N("192.168.2.0/24") in s1.shortcuts
    return net, hub, s1, s2


def move(net, node, new):
    """The node's NBMA address changes (DHCP renumbering) to `new`."""
    old = node.p.nbma
    del net.nodes[old]
    net.nodes[A(new)] = node
    return node.nbma_changed(A(new))


def types(crossed):
    return [(p.TYPE, str(s), str(d)) for s, d, p in crossed]


def test_nbma_change_purges_the_requesters_shortcut_and_reregisters():
    net, hub, s1, s2 = with_shortcut(unique=False)
    assert s2.answered == {A("192.0.2.11"): (A("10.0.0.11"), {24})}
    assert move(net, s2, "192.0.2.99") == 2           # the requester and the NHS
    crossed = net.tick()
    sent = types(crossed)
    assert (PacketType.PURGE_REQUEST, "192.0.2.99", "192.0.2.11") in sent
    assert (PacketType.PURGE_REPLY, "192.0.2.11", "192.0.2.99") in sent
    assert (PacketType.REGISTRATION_REQUEST, "192.0.2.99", "192.0.2.1") in sent
    # spoke 1 did not take the purge from an NBMA that does not own the binding on
    # trust: it resolved again through its NHS, and the answer moved the shortcut
    assert s1.stats["shortcut_verify_sent"] == 1
    assert s1.shortcuts[N("192.168.2.0/24")].nbma == A("192.0.2.99")
    assert s1.fx.shortcuts[N("192.168.2.0/24")] == (A("10.0.0.12"), A("192.0.2.99"))
    assert s1.cache.get(A("10.0.0.12")).nbma == A("192.0.2.99")
    # the hub maps spoke 2 to its new address
    entry = hub.cache.get(A("10.0.0.12"))
    assert (entry.type, entry.nbma) == (EntryType.DYNAMIC, A("192.0.2.99"))
    assert hub.fx.mappings[A("10.0.0.12")] == A("192.0.2.99")
    assert s2.cache.get(A("10.0.0.12")).nbma == A("192.0.2.99")   # its local entry


def test_unique_registration_survives_a_purge_from_another_nbma():
    """Unique: the binding changes only from the NBMA that made it (Cisco behaviour; spokes
    on dynamic addresses use registration-no-unique)."""
    net, hub, s1, s2 = with_shortcut(unique=True)
    move(net, s2, "192.0.2.99")
    crossed = net.tick()
    assert hub.cache.get(A("10.0.0.12")).nbma == A("192.0.2.12")
    replies = [p for _, d, p in crossed if p.TYPE == PacketType.REGISTRATION_REPLY]
    assert replies and replies[0].cies[0].code == 14          # already registered
    # the requester checks the shortcut (the old NBMA no longer answers) and drops it
    # within the verification hold instead of its holdtime
    assert N("192.168.2.0/24") in s1.shortcuts
    net.run_for(11)
    assert s1.shortcuts == {} and N("192.168.2.0/24") not in s1.fx.shortcuts


def test_purge_of_someone_elses_binding_from_a_stranger_is_ignored():
    net, hub, s1, s2 = with_shortcut(unique=False)
    from xdmvpn.nhrp import Cie
    # spoke 2 (10.0.0.12) tries to purge spoke 1's registration at the hub
    s2.purger.send(A("192.0.2.1"), A("10.0.0.1"), [Cie(prefix_len=32,
                                                       client_proto=A("10.0.0.11"))])
    net.deliver()
    assert hub.cache.get(A("10.0.0.11")).type is EntryType.DYNAMIC


def test_clean_shutdown_deregisters_and_purges():
    net, hub, s1, s2 = with_shortcut(unique=True)
    assert s2.shutdown() == 2
    crossed = net.deliver()
    assert (PacketType.PURGE_REQUEST, "192.0.2.12", "192.0.2.1") in types(crossed)
    assert hub.cache.get(A("10.0.0.12")) is None              # its own, from its NBMA
    assert A("10.0.0.12") not in hub.fx.mappings
    assert s1.shortcuts == {}


def test_clear_shortcut_purges_the_peer_side_too():
    net, hub, s1, s2 = with_shortcut()
    assert s2.clear_shortcuts() == 0          # spoke 2 had only answered
    net.deliver()
    assert s1.shortcuts == {}
    net2, hub2, t1, t2 = with_shortcut()
    assert t1.clear_cache() == 1              # the shortcut (its cached next hop with it)
    assert t1.shortcuts == {} and N("192.168.2.0/24") not in t1.fx.shortcuts
    assert t1.cache.get(A("10.0.0.12")) is None
    assert t1.nhcs[0].state is NhcState.UP    # its registration is untouched


def test_reconfigure_keeps_state_and_applies_new_nhs_list():
    net, hub, s1, s2 = with_shortcut()
    old_nhs = s1.nhcs[0]
    second = NhsParams(A("192.0.2.2"), A("10.0.0.2"), priority=5)
    s1.reconfigure(replace(s1.p, nhs=s1.p.nhs + (second,), holdtime=120,
                           maps=((A("10.0.0.50"), A("192.0.2.50")),)))
    assert s1.nhcs[0] is old_nhs and old_nhs.state is NhcState.UP
    assert len(s1.nhcs) == 2 and s1.nhcs[1].nhs == second
    assert N("192.168.2.0/24") in s1.shortcuts                # state kept
    assert s1.fx.mappings[A("10.0.0.50")] == A("192.0.2.50")  # new static map
    s1.reconfigure(replace(s1.p, nhs=(second,), maps=()))
    assert [c.nhs for c in s1.nhcs] == [second]
    assert s1.cache.get(A("10.0.0.1")) is None                # old NHS entry gone
    assert A("10.0.0.50") not in s1.fx.mappings
    with pytest.raises(ValueError, match="tunnel address"):
        s1.reconfigure(replace(s1.p, tunnel_ip=A("10.0.0.77")))
