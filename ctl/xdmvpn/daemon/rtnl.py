"""The few rtnetlink messages the daemon exchanges with the kernel, as bytes: route requests
(add, delete, the FIB lookup of one destination, a dump) and the route, address and link
messages it reads back (answers and notifications). Pure: no I/O, no sockets.

pyroute2 can build and parse all of this too, but its generic message classes cost tens of
microseconds per message; the daemon parses every route notification on its loop (a burst
of 1,000 shortcut routes is 1,000 notifications) and asks the FIB on its loop, so the
fixed layouts (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h) are unpacked here with
struct."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from ..inet import IPAddress, IPNetwork
from typing import Iterator


# netlink (linux/netlink.h)
NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 2, 3, 4
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_CREATE = 0x100, 0x400
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK = 5, 10, 12

# rtnetlink (linux/rtnetlink.h)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY = 1, 4, 5, 6
RTA_MULTIPATH, RTA_TABLE, RTA_NH_ID = 9, 15, 30
RTM_F_FIB_MATCH = 0x2000          # answer with the FIB entry that matched (its prefix)
RTN_UNICAST, RTN_LOCAL = 1, 2
RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 0, 255
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
AF_INET, AF_INET6 = 2, 10
_FAMILY = {4: AF_INET, 6: AF_INET6}

# links (linux/if_link.h)
IFLA_MASTER, IFLA_LINKINFO = 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VRF_TABLE = 1
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")           # len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")          # family, dst_len, src_len, tos, table,
#                                               protocol, scope, type, flags
_IFINFOMSG = struct.Struct("=BxHiII")         # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")          # family, prefixlen, flags, scope, index
_NLATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_ERRNO = struct.Struct("=i")


@dataclass(frozen=True, slots=True)
class RouteMsg:
    """One IPv4 or IPv6 route as the kernel reports it (a notification, a dump entry or the answer
    to a lookup). `oif`/`gateway` are None for multipath or nexthop-object routes
    (`multipath` is then true)."""
    event: int                  # RTM_NEWROUTE or RTM_DELROUTE
    table: int
    dst: IPNetwork
    proto: int
    type: int
    oif: int | None
    gateway: IPAddress | None
    multipath: bool = False
    metric: int = 0


@dataclass(frozen=True, slots=True)
class LinkMsg:
    event: int                  # RTM_NEWLINK or RTM_DELLINK
    index: int
    up: bool                    # IFF_UP
    master: int                 # 0: none
    kind: str                   # "vrf", "veth", ... ("" when not reported)
    vrf_table: int | None       # of a VRF device


@dataclass(frozen=True, slots=True)
class AddrMsg:
    event: int                  # RTM_NEWADDR or RTM_DELADDR
    index: int


@dataclass(frozen=True, slots=True)
class Done:
    """The end of a dump (NLMSG_DONE)."""


@dataclass(frozen=True, slots=True)
class Ack:
    """The kernel's answer to a request with NLM_F_ACK (error 0) or to a failed request."""
    error: int                  # 0 or a positive errno


Message = RouteMsg | LinkMsg | AddrMsg | Done | Ack


class Overrun(Exception):
    """NLMSG_OVERRUN: the kernel lost messages for this socket."""


# -- building requests ---------------------------------------------------------------------

def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return _NLATTR.pack(size, kind) + payload + b"\0" * (-size & 3)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(16 + len(body), kind, flags, seq, 0) + body


def route_add(seq: int, net: IPNetwork, gateway: IPAddress, oif: int, proto: int,
              table: int) -> bytes:
    """RTM_NEWROUTE, create or replace, acknowledged (of net's family)."""
    body = _RTMSG.pack(_FAMILY[net.version], net.prefixlen, 0, 0, table if table < 256 else 252, proto,
                       RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    body += (_attr(RTA_DST, net.network_address.packed) + _attr(RTA_GATEWAY, gateway.packed)
             + _attr(RTA_OIF, _U32.pack(oif)) + _attr(RTA_TABLE, _U32.pack(table)))
    return _message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                    seq, body)


def route_del(seq: int, net: IPNetwork, oif: int, proto: int, table: int) -> bytes:
    """RTM_DELROUTE of our route to net on oif (any scope, any type), acknowledged."""
    body = _RTMSG.pack(_FAMILY[net.version], net.prefixlen, 0, 0, table if table < 256 else 252, proto,
                       RT_SCOPE_NOWHERE, 0, 0)
    body += (_attr(RTA_DST, net.network_address.packed) + _attr(RTA_OIF, _U32.pack(oif))
             + _attr(RTA_TABLE, _U32.pack(table)))
    return _message(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def route_get(seq: int, dst: IPAddress, oif: int = 0, fib_match: bool = True) -> bytes:
    """RTM_GETROUTE for one destination: the kernel's own decision (ip rules, VRF when oif
    is a VRF device), with fib_match the FIB entry that matched (`ip route get fibmatch`)."""
    body = _RTMSG.pack(_FAMILY[dst.version], dst.max_prefixlen, 0, 0, 0, 0, 0, 0,
                       RTM_F_FIB_MATCH if fib_match else 0)
    body += _attr(RTA_DST, dst.packed)
    if oif:
        body += _attr(RTA_OIF, _U32.pack(oif))
    return _message(RTM_GETROUTE, NLM_F_REQUEST, seq, body)


def link_get(seq: int, index: int) -> bytes:
    """RTM_GETLINK for one interface (its master, its kind)."""
    return _message(RTM_GETLINK, NLM_F_REQUEST, seq, _IFINFOMSG.pack(0, 0, index, 0, 0))


def route_dump(seq: int, table: int = 0, version: int = 4) -> bytes:
    """RTM_GETROUTE dump of the IPv4 (or IPv6) routes (with strict checking on the socket,
    of one table)."""
    body = _RTMSG.pack(_FAMILY[version], 0, 0, 0, table if table < 256 else 0, 0, 0, 0, 0)
    if table:
        body += _attr(RTA_TABLE, _U32.pack(table))
    return _message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


# -- parsing --------------------------------------------------------------------------------

def _attrs(data: bytes, start: int, end: int) -> dict[int, bytes]:
    out = {}
    while start + 4 <= end:
        size, kind = _NLATTR.unpack_from(data, start)
        if size < 4 or start + size > end:
            break
        out[kind & 0x3FFF] = data[start + 4:start + size]     # without NLA_F_NESTED
        start += (size + 3) & ~3
    return out


def _route(event: int, data: bytes, start: int, end: int) -> RouteMsg | None:
    if end - start < _RTMSG.size:
        return None
    family, dst_len, _, _, table, proto, _, rtype, _ = _RTMSG.unpack_from(data, start)
    size = 4 if family == AF_INET else 16 if family == AF_INET6 else 0
    if not size or dst_len > size * 8:
        return None
    a = _attrs(data, start + _RTMSG.size, end)
    if RTA_TABLE in a and len(a[RTA_TABLE]) == 4:
        table = _U32.unpack(a[RTA_TABLE])[0]
    dst = a.get(RTA_DST, bytes(size))
    if len(dst) != size:
        return None
    gw = a.get(RTA_GATEWAY)
    oif = a.get(RTA_OIF)
    metric = a.get(RTA_PRIORITY)
    net: IPNetwork = IPv4Network((int.from_bytes(dst, "big"), dst_len), strict=False) \
        if size == 4 else IPv6Network((int.from_bytes(dst, "big"), dst_len), strict=False)
    gateway: IPAddress | None = None
    if gw and len(gw) == size:
        gateway = IPv4Address(gw) if size == 4 else IPv6Address(gw)
    return RouteMsg(event, table, net,
                    proto, rtype, _U32.unpack(oif)[0] if oif and len(oif) == 4 else None,
                    gateway,
                    RTA_MULTIPATH in a or RTA_NH_ID in a,
                    _U32.unpack(metric)[0] if metric and len(metric) == 4 else 0)


def _link(event: int, data: bytes, start: int, end: int) -> LinkMsg | None:
    if end - start < _IFINFOMSG.size:
        return None
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(data, start)
    a = _attrs(data, start + _IFINFOMSG.size, end)
    master = a.get(IFLA_MASTER)
    kind, table = "", None
    if IFLA_LINKINFO in a:
        info = a[IFLA_LINKINFO]
        li = _attrs(info, 0, len(info))
        kind = li.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode("ascii", "replace")
        if kind == "vrf" and IFLA_INFO_DATA in li:
            vrf = _attrs(li[IFLA_INFO_DATA], 0, len(li[IFLA_INFO_DATA]))
            if len(vrf.get(IFLA_VRF_TABLE, b"")) == 4:
                table = _U32.unpack(vrf[IFLA_VRF_TABLE])[0]
    return LinkMsg(event, index, bool(flags & IFF_UP), _U32.unpack(master)[0] if master and len(master) == 4 else 0,
                   kind, table)


def parse(data: bytes) -> Iterator[tuple[int, Message]]:
    """(sequence number, message) for the messages in one netlink datagram that the daemon
    cares about (others skipped). Notifications carry sequence number 0."""
    pos = 0
    while pos + 16 <= len(data):
        size, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, pos)
        if size < 16 or pos + size > len(data):
            return
        start, end = pos + 16, pos + size
        pos += (size + 3) & ~3
        msg: Message | None = None
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            msg = _route(kind, data, start, end)
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            msg = _link(kind, data, start, end)
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and end - start >= _IFADDRMSG.size:
            msg = AddrMsg(kind, _IFADDRMSG.unpack_from(data, start)[4])
        elif kind == NLMSG_ERROR and end - start >= 4:
            msg = Ack(-_ERRNO.unpack_from(data, start)[0])
        elif kind == NLMSG_DONE:
            msg = Done()
        elif kind == NLMSG_OVERRUN:
            raise Overrun()
        if msg is not None:
            yield seq, msg

