"""Kernel routes through netlink (pyroute2): shortcut routes under our own protocol number,
the routing decision the engine asks about, and the routes on the overlay whose gateway is a
tunnel peer (mirrored into the data plane's prefix map by the daemon)."""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..engine.effects import RouteHint
from ..errors import XdmvpnError

#: rtm_protocol of the routes xdmvpn installs (FRR uses 186-198 and 11, bird 12): routing
#: daemons and `ip route show proto 202` tell them apart.
RTPROT_XDMVPN = 202
RT_TABLE_MAIN = 254
RTN_UNICAST, RTN_LOCAL = 1, 2
DUMP_TTL = 1.0                    # seconds a route dump answers lookups


@dataclass(frozen=True)
class Route:
    net: IPv4Network
    oif: int | None
    gateway: IPv4Address | None
    proto: int
    type: int


class KernelRoutes:
    def __init__(self, overlay: str):
        self.overlay = overlay
        self.ipr = IPRoute()
        found = self.ipr.link_lookup(ifname=overlay)
        if not found:
            raise XdmvpnError(f"overlay interface {overlay} does not exist")
        self.oif = found[0]
        self._dump: list[Route] | None = None
        self._dumped_at = 0.0

    def close(self) -> None:
        self.ipr.close()

    # -- our routes ------------------------------------------------------------------------
    def add(self, prefix, via) -> None:
        net = ip_network(prefix)
        try:
            self.ipr.route("replace", dst=str(net.network_address), dst_len=net.prefixlen,
                           gateway=str(via), oif=self.oif, proto=RTPROT_XDMVPN,
                           table=RT_TABLE_MAIN)
        except NetlinkError as exc:
            raise XdmvpnError(f"cannot install route {net} via {via} on {self.overlay}: "
                              f"{exc.args[1] if len(exc.args) > 1 else exc}") from None
        self.invalidate()

    def delete(self, prefix) -> None:
        net = ip_network(prefix)
        try:
            self.ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen,
                           oif=self.oif, proto=RTPROT_XDMVPN, table=RT_TABLE_MAIN)
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT):
                raise XdmvpnError(f"cannot remove route {net}: {exc}") from None
        self.invalidate()

    def ours(self) -> list[Route]:
        return [r for r in self.routes() if r.proto == RTPROT_XDMVPN and r.oif == self.oif]

    def flush_ours(self) -> int:
        gone = self.ours()
        for r in gone:
            self.delete(r.net)
        return len(gone)

    # -- reading ---------------------------------------------------------------------------
    def invalidate(self) -> None:
        self._dump = None

    def routes(self) -> list[Route]:
        now = time.monotonic()
        if self._dump is None or now - self._dumped_at > DUMP_TTL:
            out = []
            for msg in self.ipr.get_routes(family=socket.AF_INET):
                table = msg.get_attr("RTA_TABLE") or msg["table"]
                if table not in (RT_TABLE_MAIN, 255) or msg["type"] not in (RTN_UNICAST,
                                                                            RTN_LOCAL):
                    continue
                dst = msg.get_attr("RTA_DST") or "0.0.0.0"
                gw = msg.get_attr("RTA_GATEWAY")
                out.append(Route(ip_network(f"{dst}/{msg['dst_len']}", strict=False),
                                 msg.get_attr("RTA_OIF"),
                                 ip_address(gw) if gw else None, msg["proto"], msg["type"]))
            self._dump, self._dumped_at = out, now
        return self._dump

    def best(self, dst) -> Route | None:
        """Longest match, local routes first (what the kernel does with table local first)."""
        dst = ip_address(dst)
        matches = [r for r in self.routes() if r.net.version == dst.version and dst in r.net]
        if not matches:
            return None
        return max(matches, key=lambda r: (r.type == RTN_LOCAL, r.net.prefixlen))

    def lookup(self, dst) -> RouteHint:
        """The engine's question: do we answer for dst (ours or behind us off the tunnel), or
        which tunnel next hop does the routing table send it to?"""
        r = self.best(dst)
        if r is None:
            return RouteHint()
        if r.type == RTN_LOCAL:
            return RouteHint(local=True, prefix_len=32)
        if r.oif != self.oif:
            if r.net.prefixlen == 0:       # a default route elsewhere is no claim to dst
                return RouteHint()
            return RouteHint(local=True, prefix_len=r.net.prefixlen)
        return RouteHint(via=r.gateway or ip_address(dst), prefix_len=r.net.prefixlen)

    def local_routes(self) -> list[IPv4Network]:
        """Prefixes the main table sends somewhere other than the overlay (no default)."""
        return [r.net for r in self.routes() if r.oif != self.oif and r.type == RTN_UNICAST
                and r.net.prefixlen > 0]

    def overlay_routes_via(self) -> dict[IPv4Network, IPv4Address]:
        """Routes on the overlay with a tunnel gateway, not ours: prefix -> gateway."""
        return {r.net: r.gateway for r in self.routes()
                if r.oif == self.oif and r.gateway is not None and r.proto != RTPROT_XDMVPN
                and r.type == RTN_UNICAST}


def first_ipv4(ifname: str) -> IPv4Address | None:
    """The first IPv4 address of an interface (the NBMA address when none is configured)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise XdmvpnError(f"underlay interface {ifname} does not exist")
        for msg in ipr.get_addr(family=socket.AF_INET, index=found[0]):
            addr = msg.get_attr("IFA_ADDRESS")
            if addr:
                return IPv4Address(addr)
    return None


def ensure_address(ifname: str, address) -> None:
    """Put the tunnel address (an ip_interface) on the overlay interface, once."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        have = {(m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in ipr.get_addr(family=socket.AF_INET, index=idx)}
        want = (str(address.ip), address.network.prefixlen)
        if want in have:
            return
        try:
            ipr.addr("add", index=idx, address=want[0], prefixlen=want[1])
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise XdmvpnError(f"cannot add {address} to {ifname}: {exc}") from None


RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40


def rtnl_monitor() -> socket.socket:
    """A non-blocking rtnetlink socket that becomes readable when links, IPv4 addresses or
    IPv4 routes change (the daemon only needs to know *that* something changed)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
    sock.setblocking(False)
    return sock


class NetlinkThread:
    """pyroute2's synchronous API runs its own asyncio loop, which it cannot do in a thread
    where the daemon's loop runs: every netlink call (and the data plane's attach code) runs
    in this one worker thread instead, the caller waiting for the short answer."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor
        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")

    def call(self, fn, *args, **kw):
        return self._ex.submit(fn, *args, **kw).result()

    def bind(self, factory, *args, **kw) -> "Bound":
        """An object built in the worker thread, its methods called there."""
        return Bound(self, self.call(factory, *args, **kw))

    def close(self) -> None:
        self._ex.shutdown(wait=True)


class Bound:
    def __init__(self, thread: NetlinkThread, obj):
        self._thread = thread
        self._obj = obj

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr
        return lambda *a, **kw: self._thread.call(attr, *a, **kw)
