"""DMVPN phase 3 end to end in the engine: indication, resolution through the hub, direct
reply, shortcut; compared with the Cisco exchange in nhrp-trace.pcap."""

from ipaddress import ip_address as A, ip_network as N

from util import REPO
from netsim import hub_and_spokes, ipv4_head
from xdmvpn.capture import read_nhrp_frames
from xdmvpn.engine.cache import EntryType
from xdmvpn.engine.effects import RouteHint
from xdmvpn.nhrp import ErrorCode, PacketType, decode


def cisco_trace():
    return [decode(f.payload) for f in read_nhrp_frames(str(REPO / "tests/vectors/nhrp-trace.pcap"))]


def phase3(auth=b"secret"):
    net, (hub, s1, s2) = hub_and_spokes(auth=auth)
    net.tick()
    hub.on_trigger(A("192.0.2.11"), A("192.168.1.10"), A("192.168.2.20"),
                   ipv4_head("192.168.1.10", "192.168.2.20"))
    return net, hub, s1, s2, net.deliver()


def test_same_message_sequence_as_cisco():
    net, hub, s1, s2, crossed = phase3()
    ours = [(p.TYPE, str(src), str(dst)) for src, dst, p in crossed]
    assert ours == [
        (PacketType.TRAFFIC_INDICATION, "192.0.2.1", "192.0.2.11"),   # hub -> sender
        (PacketType.RESOLUTION_REQUEST, "192.0.2.11", "192.0.2.1"),  # sender -> hub
        (PacketType.RESOLUTION_REQUEST, "192.0.2.1", "192.0.2.12"),  # hub forwards
        (PacketType.RESOLUTION_REPLY, "192.0.2.12", "192.0.2.11"),   # direct reply
    ]
    theirs = cisco_trace()
    assert [p.TYPE for _, _, p in crossed] == [p.TYPE for p in theirs]
    # message by message, the fields Cisco sets the way it sets them
    for (_, _, mine), cisco in zip(crossed, theirs):
        assert [e.type for e in mine.extensions] == [e.type for e in cisco.extensions]
        assert [e.compulsory for e in mine.extensions] == [e.compulsory for e in cisco.extensions]
        assert getattr(mine, "flags", None) == getattr(cisco, "flags", None)
        assert len(mine.cies if hasattr(mine, "cies") else []) == \
            len(cisco.cies if hasattr(cisco, "cies") else [])
    ind, req, fwd, rep = (p for _, _, p in crossed)
    c_ind, c_req, c_fwd, c_rep = theirs
    assert ind.dst_proto == A("192.168.1.10")          # the SOURCE of the triggering packet
    assert ind.contents[16:20] == A("192.168.2.20").packed
    assert req.dst_proto == A("192.168.2.20")          # resolves the carried destination
    assert fwd.hop_count == req.hop_count - 1 and c_fwd.hop_count == c_req.hop_count - 1
    assert [c.client_proto for c in fwd.extension(4).cies] == [A("10.0.0.1")]
    assert len(c_fwd.extension(4).cies) == 1
    assert fwd.request_id == req.request_id == rep.request_id
    assert (rep.src_proto, rep.dst_proto) == (req.src_proto, req.dst_proto)
    assert rep.extension(4).cies == fwd.extension(4).cies      # transit record copied back
    assert rep.extension(3).cies[0].client_proto == A("10.0.0.12")
    assert rep.cies[0].prefix_len == 24 and rep.cies[0].client_nbma == A("192.0.2.12")
    assert c_rep.cies[0].prefix_len == 32                        # Cisco resolved a /32


def test_shortcut_is_installed_on_both_sides():
    net, hub, s1, s2, _ = phase3()
    assert s1.fx.shortcuts == {N("192.168.2.0/24"): (A("10.0.0.12"), A("192.0.2.12"))}
    assert s1.fx.mappings[A("10.0.0.12")] == A("192.0.2.12")
    assert s2.fx.mappings[A("10.0.0.11")] == A("192.0.2.11")     # the way back is direct too
    assert s1.cache.get(A("10.0.0.12")).type is EntryType.CACHED
    assert len(s1.setup_latencies) == 1


def test_indications_are_rate_limited_per_pair():
    net, hub, s1, s2, _ = phase3()
    for _ in range(5):
        hub.on_trigger(A("192.0.2.11"), A("192.168.1.10"), A("192.168.2.20"), ipv4_head(
            "192.168.1.10", "192.168.2.20"))
    assert hub.stats["indication_suppressed"] == 5
    net.tick(1.5)
    hub.on_trigger(A("192.0.2.11"), A("192.168.1.10"), A("192.168.2.20"), ipv4_head(
        "192.168.1.10", "192.168.2.20"))
    net.deliver()
    assert s1.stats["indication_redundant"] == 1                # shortcut already there


def test_shortcut_expires_unless_used_and_refreshes_when_used():
    net, hub, s1, s2, _ = phase3()
    # unused: no refresh, gone after the holdtime
    net.run_for(301, step=5)
    assert s1.fx.shortcuts == {}
    assert s1.stats["shortcut_expired"] == 1 and s1.stats["shortcut_refresh_sent"] == 0
    # used: refreshed in the last third, never expires
    hub.on_trigger(A("192.0.2.11"), A("192.168.1.10"), A("192.168.2.20"),
                   ipv4_head("192.168.1.10", "192.168.2.20"))
    net.deliver()
    assert N("192.168.2.0/24") in s1.fx.shortcuts
    for _ in range(200):
        s1.fx.used[A("10.0.0.12")] = net.clock.now()
        net.tick(5)
    assert N("192.168.2.0/24") in s1.fx.shortcuts
    assert s1.stats["shortcut_refresh_sent"] >= 2 and s1.stats["shortcut_refreshed"] >= 2


def test_redirect_off_sends_no_indication():
    net, (hub, s1, s2) = hub_and_spokes()
    object.__setattr__(hub.p, "redirect", False)
    assert hub.on_trigger(A("192.0.2.11"), A("192.168.1.10"), A("192.168.2.20"), b"") is False


def test_loop_detected_is_error_code_3():
    net, hub, s1, s2, crossed = phase3()
    fwd = crossed[2][2]
    from xdmvpn.nhrp import encode
    s2.fx.routes[N("192.168.2.0/24")] = RouteHint(via=A("10.0.0.1"))   # misrouted back
    hub.receive(encode(fwd), A("192.0.2.12"))
    (src, dst, err), = net.deliver()
    assert err.TYPE == PacketType.ERROR_INDICATION and err.error_code == ErrorCode.LOOP_DETECTED == 3
    assert dst == A("192.0.2.12")


def test_hop_count_zero_gets_error_15_but_never_an_error_about_an_error():
    net, hub, s1, s2, crossed = phase3()
    from xdmvpn.nhrp import encode
    req = crossed[1][2]
    req.hop_count = 0
    hub.receive(encode(req), A("192.0.2.11"))
    (src, dst, err), = net.deliver()
    assert err.error_code == ErrorCode.HOP_COUNT_EXCEEDED and dst == A("192.0.2.11")
    hub.receive(encode(err), A("192.0.2.11"))              # an error indication back ...
    assert net.deliver() == []                             # ... is never answered


def test_unknown_destination_gets_a_negative_reply():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    s1.resolve(A("172.16.0.1"), A("192.0.2.1"))
    crossed = net.deliver()
    reply = crossed[-1][2]
    assert reply.TYPE == PacketType.RESOLUTION_REPLY and reply.cies[0].code == 12
    assert s1.cache.get(A("172.16.0.1")).type is EntryType.NEGATIVE


def test_purge_from_the_owner_removes_its_registration():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    from xdmvpn.nhrp import Cie, PurgeRequest, encode
    from xdmvpn.engine.build import request_extensions
    purge = PurgeRequest(src_nbma=A("192.0.2.11"), src_proto=A("10.0.0.11"),
                         dst_proto=A("10.0.0.1"), request_id=99,
                         cies=[Cie(prefix_len=32, client_proto=A("10.0.0.11"))],
                         extensions=request_extensions(s1.p, responder=False))
    hub.receive(encode(purge), A("192.0.2.66"))           # not the owner: nothing happens
    assert hub.cache.get(A("10.0.0.11")) is not None
    hub.receive(encode(purge), A("192.0.2.11"))
    assert hub.cache.get(A("10.0.0.11")) is None and A("10.0.0.11") not in hub.fx.mappings
    replies = [p for _, _, p in net.deliver() if p.TYPE == PacketType.PURGE_REPLY]
    assert len(replies) == 2


def test_unrecognized_compulsory_extension_gets_error_1_and_bad_checksum_is_dropped():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    from xdmvpn.nhrp import Extension, encode
    s1.resolve(A("192.168.2.20"), A("192.0.2.1"))
    ((_, data),) = s1.fx.take()
    req = decode(data)
    req.extensions.insert(-1, Extension(0x1234, True, b"??"))
    wire = encode(req)
    hub.receive(wire, A("192.0.2.11"))
    (_, dst, err), = net.deliver()
    assert err.error_code == ErrorCode.UNRECOGNIZED_EXTENSION == 1 and dst == A("192.0.2.11")
    bad = bytearray(wire)
    bad[12] ^= 0xFF
    hub.receive(bytes(bad), A("192.0.2.11"))
    assert net.deliver() == [] and hub.stats[("drop", "checksum")] == 1
