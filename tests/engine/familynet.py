"""An in-memory NBMA network of dual-stack engine stacks (engine/stack.py), any overlay
family over any underlay family, hubs with an NBMA address of each family (test helper).

Addresses by family: overlay IPv4 10.0.0.0/24 (LANs 192.168.i.0/24), overlay IPv6
2001:db8:100::/64 (LANs 2001:db8:1i::/64); NBMA IPv4 192.0.2.0/24, NBMA IPv6 2001:db8:ff::/64.
Node i (0 the hub) has host part 1 (hub) or 10+i."""

from __future__ import annotations

import random
from ipaddress import ip_address, ip_network

from xdmvpn.engine.clock import FakeClock
from xdmvpn.engine.effects import Recorder, RouteHint
from xdmvpn.engine.params import NhsParams, NodeParams
from xdmvpn.engine.stack import Stack
from xdmvpn.nhrp import decode

A = ip_address
N = ip_network


def tunnel_ip(family: int, host: int):
    return A(f"10.0.0.{host}") if family == 4 else A(f"2001:db8:100::{host:x}")


def nbma_of(family: int, host: int):
    return A(f"192.0.2.{host}") if family == 4 else A(f"2001:db8:ff::{host:x}")


def lan(family: int, i: int):
    return N(f"192.168.{i}.0/24") if family == 4 else N(f"2001:db8:1{i}::/64")


def lan_host(family: int, i: int, host: int):
    return lan(family, i)[host]


def prefix_len(family: int) -> int:
    return 24 if family == 4 else 64


def head(src, dst) -> bytes:
    """The start of an ICMP/ICMPv6 echo from src to dst (what a hub's trigger carries)."""
    if src.version == 4:
        return (bytes.fromhex("4500005400004000400100") + b"\0" + src.packed + dst.packed
                + bytes.fromhex("0800f7ff00010001"))
    return (bytes.fromhex("6000000000083a40") + src.packed + dst.packed
            + bytes.fromhex("8000000000010001"))


class FamilyNet:
    def __init__(self):
        self.clock = FakeClock()
        self.stacks: dict = {}          # nbma -> Stack (a hub on both underlays: twice)
        self.trace: list = []           # (src nbma, dst nbma, decoded packet)

    def add(self, nbmas, params) -> Stack:
        fx = Recorder()
        stack = Stack(params, fx, self.clock, random.Random(len(self.stacks)))
        stack.nbmas = tuple(nbmas)
        for n in nbmas:
            self.stacks[n] = stack
        return stack

    def deliver(self, max_rounds: int = 50) -> list:
        crossed = []
        for _ in range(max_rounds):
            moved = False
            for stack in dict.fromkeys(self.stacks.values()):
                for dst, data in stack.fx.take():
                    moved = True
                    src = next(n for n in stack.nbmas if n.version == dst.version)
                    item = (src, dst, decode(data, strict=False))
                    self.trace.append(item)
                    crossed.append(item)
                    if dst in self.stacks:
                        self.stacks[dst].receive(data, src)
            if not moved:
                return crossed
        raise AssertionError("the network never went quiet")

    def tick(self, seconds: float = 0.0) -> list:
        self.clock.advance(seconds)
        for stack in dict.fromkeys(self.stacks.values()):
            stack.tick()
        return self.deliver()


def network(overlays=(4,), spoke_nbmas=(4, 4), hub_nbmas=None, auth=b"secret"):
    """A hub and one spoke per entry of spoke_nbmas (that spoke's underlay family), every
    node running the overlay families `overlays` (the first its primary). Spokes register
    one registration per family to the hub's NBMA address of their own underlay family."""
    net = FamilyNet()
    hub_nbmas = hub_nbmas or tuple(dict.fromkeys(spoke_nbmas))
    hub_addrs = [nbma_of(f, 1) for f in hub_nbmas]
    hub = net.add(hub_addrs, [NodeParams(
        tunnel_ip=tunnel_ip(f, 1), prefix_len=prefix_len(f), nbma=hub_addrs[0],
        other_nbma=hub_addrs[1] if len(hub_addrs) > 1 else None, holdtime=300, auth=auth,
        redirect=True, multicast_dynamic=True) for f in overlays])
    spokes = []
    for i, nf in enumerate(spoke_nbmas, start=1):
        own = nbma_of(nf, 10 + i)
        spoke = net.add([own], [NodeParams(
            tunnel_ip=tunnel_ip(f, 10 + i), prefix_len=prefix_len(f), nbma=own, holdtime=300,
            auth=auth, shortcut=True, multicast_nhs=True,
            nhs=(NhsParams(nbma_of(nf, 1), tunnel_ip(f, 1)),)) for f in overlays])
        for f in overlays:
            spoke.fx.routes[lan(f, i)] = RouteHint(local=True, prefix_len=lan(f, i).prefixlen)
            hub.fx.routes[lan(f, i)] = RouteHint(via=tunnel_ip(f, 10 + i))
        spokes.append(spoke)
    for i, spoke in enumerate(spokes, start=1):
        for j in range(1, len(spokes) + 1):
            for f in overlays:
                spoke.fx.routes.setdefault(lan(f, j), RouteHint(via=tunnel_ip(f, 1)))
    return net, hub, spokes
