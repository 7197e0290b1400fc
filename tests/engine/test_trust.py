"""Trust only what was observed (docs/security.md): replies to the observed source (or what
the forwarding NHS vouched for), mappings cached from requests only when observed, never
over a registered entry; purges honoured only from the owning NBMA or our NHS; nothing
accepted from strangers that would change state."""

from ipaddress import ip_address as A, ip_network as N

from craft import (
    HUB, ROGUE, S1, S2, exts, purge_request, registration_request, resolution_reply,
    resolution_request, send,
)
from netsim import hub_and_spokes, ipv4_head
from xdmvpn.engine.build import cie_list, nat_nbma, replace_cie_list
from xdmvpn.engine.cache import CacheEntry, EntryType
from xdmvpn.nhrp import (
    Cie, ErrorIndication, ExtType, PacketType, TrafficIndication, decode, encode,
)

LAN2 = "192.168.2.20"


def registered():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    return net, hub, s1, s2


def test_reply_goes_to_the_observed_source_not_the_claimed_nbma():
    net, hub, s1, s2 = registered()
    # a request straight to spoke 2 claiming NBMA 198.51.100.7, sent from ROGUE
    sent = send(s2, resolution_request(dst=LAN2, src_nbma=A("198.51.100.7")), ROGUE)
    assert [to for to, _ in sent] == [ROGUE]                  # no reflection


def test_claimed_mapping_is_cached_only_when_it_is_the_source():
    net, hub, s1, s2 = registered()
    send(s2, resolution_request(dst=LAN2, src_nbma=A("198.51.100.7")), ROGUE)
    assert s2.cache.get(A("10.0.0.66")) is None and s2.answered == {}
    # a stranger holding the secret creates no state, even claiming its own address (random
    # sources would fill the cache: `xdmvpn bench flood`)
    assert [to for to, _ in send(s2, resolution_request(dst=LAN2, src_nbma=ROGUE), ROGUE)] \
        == [ROGUE]
    assert s2.cache.get(A("10.0.0.66")) is None and s2.answered == {}
    # a source it knows (a binding at that address): cached
    s2.cache_put(CacheEntry(A("10.0.0.77"), EntryType.CACHED, nbma=ROGUE,
                            expires=net.clock.now() + 300))
    send(s2, resolution_request(dst=LAN2, src_nbma=A("198.51.100.7")), ROGUE)
    assert s2.cache.get(A("10.0.0.66")) is None       # still: the claim is not the source
    send(s2, resolution_request(dst=LAN2, src_nbma=ROGUE), ROGUE)
    assert s2.cache.get(A("10.0.0.66")).nbma == ROGUE


def test_a_request_never_overrides_a_registered_entry():
    """A rogue holding the secret claims spoke 1's address: the hub, where spoke 1 is
    registered, drops it; spoke 2, asked directly, answers but keeps no mapping of it."""
    net, hub, s1, s2 = registered()
    assert send(hub, resolution_request(src_proto="10.0.0.11", dst=LAN2, src_nbma=ROGUE),
                ROGUE) == []
    assert hub.stats[("drop", "spoofed_requester")] == 1
    assert hub.cache.get(A("10.0.0.11")).nbma == S1
    s2.cache_put(s2.cache.get(A("10.0.0.1")).__class__(
        A("10.0.0.11"), EntryType.STATIC, nbma=S1))            # spoke 2 knows spoke 1
    send(s2, resolution_request(src_proto="10.0.0.11", dst=LAN2, src_nbma=ROGUE), ROGUE)
    assert s2.stats[("drop", "spoofed_requester")] == 1
    assert s2.fx.mappings[A("10.0.0.11")] == S1


def test_the_first_nhs_vouches_for_the_requester_it_saw():
    net, hub, s1, s2 = registered()
    sent = send(hub, resolution_request(src_proto="10.0.0.11", dst=LAN2,
                                        src_nbma=A("198.51.100.7")), S1)
    (to, data), = sent
    fwd = decode(data)
    assert to == S2 and fwd.TYPE == PacketType.RESOLUTION_REQUEST
    nat = cie_list(fwd, ExtType.NAT_ADDRESS)
    assert [(c.client_proto, c.client_nbma) for c in nat] == [(A("10.0.0.11"), S1)]


def test_responder_replies_to_the_vouched_nbma_not_the_claimed_one():
    net, hub, s1, s2 = registered()
    # the hub forwards spoke 1's request, in which spoke 1 claims a wrong NBMA address
    (_, data), = send(hub, resolution_request(src_proto="10.0.0.11", dst=LAN2,
                                              src_nbma=A("198.51.100.7")), S1)
    (to, reply), = send(s2, decode(data), HUB)
    assert to == S1 and decode(reply).TYPE == PacketType.RESOLUTION_REPLY
    assert s2.cache.get(A("10.0.0.11")).nbma == S1


def test_forwarded_request_from_a_stranger_is_dropped():
    net, hub, s1, s2 = registered()
    pkt = resolution_request(dst=LAN2, src_nbma=A("198.51.100.7"))
    pkt.extensions = replace_cie_list(pkt.extensions, ExtType.FORWARD_TRANSIT_NHS, [Cie(
        prefix_len=0, client_nbma=ROGUE, client_proto=A("10.0.0.66"))])
    assert send(s2, pkt, ROGUE) == []
    assert s2.stats[("drop", "forwarded_by_stranger")] == 1


def test_purge_from_a_non_owner_is_not_honoured():
    net, hub, s1, s2 = registered()
    send(hub, purge_request("10.0.0.11", [Cie(prefix_len=32, client_proto=A("10.0.0.11"))],
                            src_nbma=ROGUE), ROGUE)
    send(hub, purge_request("10.0.0.66", [Cie(prefix_len=0, client_proto=A("10.0.0.0"))],
                            src_nbma=ROGUE), ROGUE)
    assert hub.cache.get(A("10.0.0.11")).nbma == S1
    assert hub.cache.get(A("10.0.0.12")).nbma == S2


def test_purge_from_our_nhs_is_honoured():
    net, hub, s1, s2 = registered()
    hub.on_trigger(S1, A("192.168.1.10"), A(LAN2), ipv4_head("192.168.1.10", LAN2))
    net.deliver()
    assert N("192.168.2.0/24") in s1.shortcuts
    send(s1, purge_request("10.0.0.1", [Cie(prefix_len=32, client_proto=A("10.0.0.12"))],
                           src_nbma=HUB), HUB)
    assert s1.shortcuts == {} and s1.cache.get(A("10.0.0.12")) is None


def test_indication_from_a_stranger_is_dropped():
    net, hub, s1, s2 = registered()
    ind = TrafficIndication(src_nbma=ROGUE, src_proto=A("10.0.0.1"), dst_proto=A(
        "192.168.1.10"), contents=ipv4_head("192.168.1.10", LAN2),
        extensions=exts(responder=False))
    send(s1, ind, ROGUE)                        # claims to be the hub, from elsewhere
    assert s1.stats[("drop", "indication_from_stranger")] == 1 and s1.resolving == {}
    send(s1, ind, HUB)
    assert A(LAN2) in s1.resolving


def test_reply_relayed_by_a_stranger_is_refused():
    net, hub, s1, s2 = registered()
    rid = s1.resolve(A(LAN2))
    (_, req), = s1.fx.take()
    reply = resolution_reply(decode(req), "10.0.0.66", ROGUE)
    reply.extensions = replace_cie_list(reply.extensions, ExtType.REVERSE_TRANSIT_NHS, [Cie(
        prefix_len=0, client_proto=A("10.0.0.77"))])
    assert reply.request_id == rid
    send(s1, reply, A("198.51.100.9"))
    assert s1.stats[("drop", "unexpected_reply")] == 1 and s1.shortcuts == {}


def test_error_indication_from_a_stranger_does_not_end_a_registration():
    net, hub, s1, s2 = registered()
    net.tick(101)                              # s1 refreshes: a request is pending
    s1.nhcs[0].next_send = 1e9
    c = s1.nhcs[0]
    net.clock.advance(400)
    s1.nhcs[0].next_send = net.clock.now()
    s1.tick()
    (_, req), = s1.fx.take()
    err = ErrorIndication(src_nbma=ROGUE, src_proto=A("10.0.0.66"), error_code=11,
                          contents=req, extensions=exts(responder=False))
    s1.receive(encode(err), ROGUE)
    assert c.pending is not None and c.last_error is None
    s1.receive(encode(err), HUB)
    assert c.pending is None and c.last_error == 11


def test_unauthenticated_requests_from_unknown_sources_create_no_state():
    net, (hub, s1, s2) = hub_and_spokes(auth=None)
    net.tick()
    sent = send(s2, resolution_request(dst=LAN2, auth=None), ROGUE)
    assert [to for to, _ in sent] == [ROGUE]                   # answered, to the source
    assert s2.cache.get(A("10.0.0.66")) is None and s2.answered == {}


def _many_shortcuts(n):
    """Spoke 1 holds n shortcuts through spoke 2 (10.0.0.12), resolved the normal way."""
    from xdmvpn.engine.effects import RouteHint
    net, hub, s1, s2 = registered()
    for i in range(n):
        lan = N(f"172.16.{i}.0/24")
        s2.fx.routes[lan] = RouteHint(local=True, prefix_len=24)
        hub.fx.routes[lan] = RouteHint(via=A("10.0.0.12"))
        s1.fx.routes[lan] = RouteHint(via=A("10.0.0.1"))
        s1.resolve(A(f"172.16.{i}.1"))
    net.deliver()
    assert len(s1.shortcut_table.via(A("10.0.0.12"))) == n
    return net, hub, s1, s2


def test_a_strangers_purge_makes_one_check_per_next_hop_not_one_per_shortcut():
    """A purge of a next hop from a stranger: one resolution of it through our NHS, whatever
    the number of shortcuts through it, nothing more while it is checked (no amplification),
    and the answer gives every one of them its time back."""
    from xdmvpn.engine.resolution import VERIFY_HOLD
    net, hub, s1, s2 = _many_shortcuts(60)
    before = {sc.prefix: sc.expires for sc in s1.shortcut_table.via(A("10.0.0.12"))}
    purge = purge_request("10.0.0.66", [Cie(prefix_len=32, client_proto=A("10.0.0.12"))],
                          src_nbma=ROGUE, flags=0x8000)          # N: no reply wanted
    sent = []
    for _ in range(5):
        sent += send(s1, purge, ROGUE)
    assert [to for to, _ in sent] == [HUB]
    assert decode(sent[0][1]).type is PacketType.RESOLUTION_REQUEST
    assert len(encode(purge)) * 2 > len(sent[0][1])
    now = net.clock.now()
    assert all(sc.expires <= now + VERIFY_HOLD for sc in s1.shortcut_table.via(A("10.0.0.12")))
    hub.receive(sent[0][1], S1)
    net.deliver()                                   # the hub asks spoke 2, which answers
    after = {sc.prefix: sc.expires for sc in s1.shortcut_table.via(A("10.0.0.12"))}
    assert set(after) == set(before)
    assert all(after[p] >= before[p] for p in before)
    assert all(sc.verifying is None for sc in s1.shortcut_table.via(A("10.0.0.12")))


def test_shortcuts_a_stranger_purged_die_unless_confirmed():
    from xdmvpn.engine.resolution import VERIFY_HOLD
    net, hub, s1, s2 = _many_shortcuts(20)
    net.down.add(HUB)                               # no answer will come
    send(s1, purge_request("10.0.0.66", [Cie(prefix_len=32, client_proto=A("10.0.0.12"))],
                           src_nbma=ROGUE), ROGUE)
    net.deliver()
    assert len(s1.shortcuts) == 20
    net.tick(VERIFY_HOLD + 0.5)
    assert s1.shortcut_table.via(A("10.0.0.12")) == []


def _forwarded(src_proto, dst, sent_from, nat=None):
    """A resolution request as if an NHS at sent_from had forwarded it, its NAT extension
    saying where the requester is."""
    pkt = resolution_request(src_proto=src_proto, dst=dst, src_nbma=sent_from,
                             extensions=exts(nat=nat or []))
    pkt.extensions = replace_cie_list(pkt.extensions, ExtType.FORWARD_TRANSIT_NHS, [Cie(
        prefix_len=0, client_nbma=sent_from, client_proto=A("10.0.0.99"))])
    return pkt


def test_a_registered_station_may_forward_but_not_vouch():
    """Anyone holding the secret can register. A request such a station forwards, with a
    NAT extension saying the requester 10.0.0.77 is at 198.51.100.9: answered back to the
    station (nothing sent to the address it named, nothing cached), and forwarded on
    without that claim (the next station would believe it came from us)."""
    net, hub, s1, s2 = registered()
    rogue = A("203.0.113.9")
    (_, reply), = send(hub, registration_request("10.0.0.99", src_nbma=rogue, unique=False),
                       rogue)
    assert decode(reply).cies[0].code == 0                 # registered: "trusted" as before
    third = A("198.51.100.9")
    nat = [Cie(prefix_len=32, client_nbma=third, client_proto=A("10.0.0.77"))]
    for dst in ("10.0.0.1", LAN2):                          # answered, then forwarded
        sent = send(hub, _forwarded("10.0.0.77", dst, rogue, nat), rogue)
        assert third not in [to for to, _ in sent]
        assert hub.cache.get(A("10.0.0.77")) is None
        assert A("10.0.0.77") not in hub.fx.mappings
        for to, data in sent:
            assert to in (rogue, S2)
            if to == S2:                                    # the claim is not relayed
                assert decode(data).type is PacketType.RESOLUTION_REQUEST
                assert nat_nbma(decode(data), A("10.0.0.77")) is None
    assert hub.stats["resolution_forwarded"] >= 1
    # the same request from our NHS's word is believed (the spoke's side)
    sent = send(s2, _forwarded("10.0.0.77", LAN2, HUB, nat), HUB)
    assert [to for to, _ in sent] == [third]


def test_a_request_naming_our_own_address_as_requester_is_dropped():
    """A registered spoke sends the hub a forwarded-looking request whose requester is the
    hub itself, or (on a spoke) the spoke itself: no reply to ourselves, counted."""
    net, hub, s1, s2 = registered()
    assert send(hub, _forwarded("10.0.0.1", "10.0.0.1", S2), S2) == []
    assert hub.stats[("drop", "own_address")] == 1
    assert send(s1, _forwarded("10.0.0.11", "192.168.1.20", HUB), HUB) == []
    assert s1.stats[("drop", "own_address")] == 1
