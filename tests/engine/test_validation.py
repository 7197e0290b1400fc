"""The validation step between decode and the handlers (engine/validate.py): what fails is
dropped, counted by reason, answered with an error indication when it is a request, and
changes no state; what is valid per its family (IPv6 included) goes through."""

from dataclasses import replace
from ipaddress import ip_address as A, ip_network as N

import pytest

from craft import ROGUE, S1, exts, purge_request, registration_request, resolution_reply, \
    resolution_request, send
from netsim import Net, hub_and_spokes
from xdmvpn import show
from xdmvpn.engine.build import replace_cie_list
from xdmvpn.engine.cache import EntryType
from xdmvpn.engine.params import NhsParams
from xdmvpn.nhrp import (
    Cie, ErrorCode, ExtType, PacketType, ProtocolType, decode, encode,
)
from xdmvpn.view import EngineView


def hub_state(hub):
    return (sorted((str(e.proto), e.type.value, str(e.nbma)) for e in hub.cache),
            dict(hub.shortcuts), hub.answered, dict(hub.resolving))


def bad_packets():
    """(name, packet, expected drop reason): every field validation looks at."""
    yield "purge prefix > 32", purge_request("10.0.0.66", [Cie(prefix_len=33, client_proto=A(
        "10.0.0.11"))]), "bad_cie"
    yield "purge of a 3-byte address", purge_request("10.0.0.66", [Cie(
        prefix_len=32, client_proto=b"\x0a\x00\x00")]), "bad_cie"
    yield "registration of a 3-byte address", registration_request(cies=[Cie(
        prefix_len=32, holdtime=300, client_proto=b"\x0a\x00\x0b")]), "bad_cie"
    yield "registration from a 3-byte source", registration_request(
        proto=b"\x0a\x00\x0b"), "bad_protocol_address"
    yield "resolution of a non-IP destination", resolution_request(
        dst=b"\x01\x02\x03\x04\x05"), "bad_protocol_address"
    yield "odd requester address", resolution_request(
        src_proto=b"\x0a\x00\x00\x42\x01"), "bad_protocol_address"
    yield "no requester address", resolution_request(src_proto=None), "bad_protocol_address"
    yield "IPv6 address in an IPv4 packet", resolution_request(
        dst=A("2001:db8::1")), "bad_protocol_address"
    yield "unknown address family", resolution_request(afn=3), "bad_afn"
    yield "unknown protocol type", resolution_request(protocol_type=0x0806), \
        "bad_protocol_type"
    yield "NBMA of 16 bytes for afn IPv4", resolution_request(
        src_nbma=A("2001:db8::66")), "bad_nbma_address"
    yield "E.164 NBMA", resolution_request(nbma_type=0x40), "bad_nbma_address"
    yield "NBMA subaddress", resolution_request(src_nbma_sub=b"\x01"), "bad_nbma_address"
    yield "too many CIEs", purge_request("10.0.0.66", [Cie(prefix_len=32, client_proto=A(
        "10.0.0.11"))] * 65), "too_many_cies"
    yield "bad CIE in the NAT extension", resolution_request(extensions=exts(nat=[Cie(
        prefix_len=32, client_nbma=b"\x01\x02", client_proto=A("10.0.0.66"))])), "bad_cie"
    yield "CIE prefix 40 in a transit record", resolution_request(extensions=replace_cie_list(
        exts(), ExtType.FORWARD_TRANSIT_NHS, [Cie(prefix_len=40)])), "bad_cie"
    reply = resolution_reply(resolution_request(), "10.0.0.12", A("192.0.2.12"))
    reply.cies = []
    yield "resolution reply without a CIE", reply, "missing_cie"


@pytest.mark.parametrize("name,pkt,reason", list(bad_packets()),
                         ids=[n for n, _, _ in bad_packets()])
def test_an_invalid_packet_is_dropped_counted_and_changes_nothing(name, pkt, reason):
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    before = hub_state(hub)
    sent = send(hub, pkt, S1)
    assert hub.stats[("drop", reason)] == 1, dict(hub.stats)
    assert hub.stats[("drop", "bug")] == 0
    assert hub_state(hub) == before
    if pkt.TYPE in (PacketType.RESOLUTION_REQUEST, PacketType.REGISTRATION_REQUEST,
                    PacketType.PURGE_REQUEST):
        # RFC 2332 5.2.7: a request in error gets an error indication, to its source
        ((to, data),) = sent
        err = decode(data)
        assert to == S1 and err.TYPE == PacketType.ERROR_INDICATION
        assert err.error_code == ErrorCode.PROTOCOL_ERROR
    else:
        assert sent == []


def test_no_error_indication_to_strangers_without_authentication():
    net, (hub, s1, s2) = hub_and_spokes(auth=None)
    net.tick()
    assert send(hub, resolution_request(dst=b"\x01\x02\x03", auth=None), ROGUE) == []
    assert hub.stats[("drop", "bad_protocol_address")] == 1


def test_the_odd_requester_address_no_longer_breaks_show():
    """The 83-byte resolution request of the report: dropped, and `show cache` works."""
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    pkt = resolution_request(src_proto=b"\x0a\x00\x00\x42\x01")
    send(hub, pkt, ROGUE)
    snap = show.snapshot(EngineView(hub, "tun0"))
    assert show.cache_table(snap) and show.shortcut_table(snap)


def test_prefix_length_255_of_a_unique_registration_is_valid():
    """FRR sends prefix length 0xFF with the unique bit (RFC 2332 5.2.0.1)."""
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    (_, data), = send(hub, registration_request(
        proto="10.0.0.66", cies=[Cie(prefix_len=0xFF, mtu=1400, holdtime=300)]), ROGUE)
    assert decode(data).cies[0].code == 0
    assert hub.cache.get(A("10.0.0.66")).type is EntryType.DYNAMIC


def test_ipv6_protocol_addresses_are_valid_and_handled_per_family():
    """An IPv6 registration at an IPv4 hub is a valid packet, refused by the handler (code
    4, outside the overlay), not by validation."""
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    pkt = registration_request(proto=A("2001:db8::66"), protocol_type=ProtocolType.IPV6)
    pkt.dst_proto = A("2001:db8::1")
    (_, data), = send(hub, pkt, ROGUE)
    assert decode(data).cies[0].code == 4
    assert not any(k[0] == "drop" for k in hub.stats if isinstance(k, tuple))


def test_an_ipv6_overlay_registers_and_resolves():
    net = Net()
    hub = net.add("192.0.2.1", tunnel_ip=A("2001:db8::1"), prefix_len=64, auth=b"s")
    spoke = net.add("192.0.2.11", tunnel_ip=A("2001:db8::11"), prefix_len=64, auth=b"s",
                    nhs=(NhsParams(A("192.0.2.1"), A("2001:db8::1")),))
    crossed = net.tick()
    assert all(p.protocol_type == ProtocolType.IPV6 for _, _, p in crossed)
    assert hub.cache.get(A("2001:db8::11")).nbma == A("192.0.2.11")
    spoke.resolve(A("2001:db8::1"))
    net.deliver()
    assert N("2001:db8::1/128") in spoke.shortcuts


def test_a_handler_bug_is_counted_and_the_node_goes_on():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()

    def broken(*_):
        raise RuntimeError("a bug")
    hub._handlers[PacketType.RESOLUTION_REQUEST] = broken
    hub.receive(encode(resolution_request()), S1)
    assert hub.stats[("drop", "bug")] == 1 and "RuntimeError" in hub.last_bug
    # the next packet is handled as ever
    s1.p = replace(s1.p)
    net.tick(110)
    assert hub.cache.get(A("10.0.0.11")).type is EntryType.DYNAMIC
