"""The daemon's rtnetlink messages (xdmvpn.daemon.rtnl): what it builds parses back, and no
bytes make the parser raise (it reads notifications from the kernel on the daemon's loop).
No root needed; tests/daemon/test_routes.py has the kernel's side."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdmvpn.daemon import rtnl


def _one(data: bytes):
    got = list(rtnl.parse(data))
    assert len(got) == 1
    return got[0]


def test_a_route_request_parses_back_as_the_route_it_asks_for():
    net, gw = IPv4Network("10.0.128.0/17"), IPv4Address("172.16.0.12")
    seq, msg = _one(rtnl.route_add(7, net, gw, oif=5, proto=202, table=254))
    assert seq == 7
    assert msg == rtnl.RouteMsg(rtnl.RTM_NEWROUTE, 254, net, 202, rtnl.RTN_UNICAST, 5, gw)
    seq, msg = _one(rtnl.route_del(8, net, oif=5, proto=202, table=1000))
    assert (seq, msg.event, msg.table, msg.dst, msg.oif, msg.gateway) == (
        8, rtnl.RTM_DELROUTE, 1000, net, 5, None)      # a table above 255 in RTA_TABLE


def test_acks_errors_done_and_overrun():
    def header(kind, body, seq=3):
        return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body
    assert _one(header(rtnl.NLMSG_ERROR, struct.pack("=i", -3) + bytes(16))) == (
        3, rtnl.Ack(3))
    assert _one(header(rtnl.NLMSG_ERROR, struct.pack("=i", 0) + bytes(16))) == (3, rtnl.Ack(0))
    assert _one(header(rtnl.NLMSG_DONE, struct.pack("=i", 0))) == (3, rtnl.Done())
    with pytest.raises(rtnl.Overrun):
        list(rtnl.parse(header(rtnl.NLMSG_OVERRUN, b"")))
    # two messages in one datagram, the first padded to 4 bytes
    ack = header(rtnl.NLMSG_ERROR, struct.pack("=i", 0))
    assert [s for s, _ in rtnl.parse(ack + header(rtnl.NLMSG_DONE, b"\0" * 4, seq=4))] == [3, 4]


def test_link_messages_give_master_state_and_vrf_table():
    def attr(kind, payload):
        size = 4 + len(payload)
        return struct.pack("=HH", size, kind) + payload + b"\0" * (-size & 3)
    info = attr(rtnl.IFLA_INFO_KIND, b"vrf\0") + attr(
        rtnl.IFLA_INFO_DATA | 0x8000, attr(rtnl.IFLA_VRF_TABLE, struct.pack("=I", 10)))
    body = struct.pack("=BxHiII", 0, 1, 9, rtnl.IFF_UP, 0) + attr(rtnl.IFLA_LINKINFO, info) \
        + attr(rtnl.IFLA_MASTER, struct.pack("=I", 4))
    data = struct.pack("=IHHII", 16 + len(body), rtnl.RTM_NEWLINK, 0, 0, 0) + body
    assert _one(data) == (0, rtnl.LinkMsg(rtnl.RTM_NEWLINK, 9, True, 4, "vrf", 10))


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_no_bytes_make_the_parser_raise(data):
    try:
        list(rtnl.parse(data))
    except rtnl.Overrun:
        pass


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1),
       st.binary(max_size=40))
def test_mutated_route_messages_parse_or_are_skipped(dst, length, gw, tail):
    net = IPv4Network((dst, length), strict=False)
    data = bytearray(rtnl.route_add(1, net, IPv4Address(gw), 3, 202, 254))
    data += tail
    for cut in (len(data), len(data) - 3, 30, 17):
        for _, msg in rtnl.parse(bytes(data[:cut])):
            assert isinstance(msg, rtnl.RouteMsg)
