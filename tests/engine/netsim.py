"""An in-memory NBMA network of engine nodes sharing one fake clock (test helper)."""

from __future__ import annotations

import random
from ipaddress import ip_address, ip_network

from xdmvpn.engine.clock import FakeClock
from xdmvpn.engine.effects import Recorder, RouteHint
from xdmvpn.engine.node import Node
from xdmvpn.engine.params import NhsParams, NodeParams
from xdmvpn.nhrp import decode

A = ip_address
N = ip_network


class Net:
    def __init__(self):
        self.clock = FakeClock()
        self.nodes: dict = {}          # nbma -> Node
        self.trace: list = []          # (src nbma, dst nbma, decoded packet)
        self.down: set = set()         # nbma addresses whose packets are lost

    def add(self, name_nbma: str, **params) -> Node:
        nbma = A(name_nbma)
        p = NodeParams(nbma=nbma, **params)
        node = Node(p, Recorder(), self.clock, random.Random(len(self.nodes)))
        self.nodes[nbma] = node
        return node

    def deliver(self, max_rounds: int = 50) -> list:
        """Carry every queued packet until the network is quiet; returns what crossed it."""
        crossed = []
        for _ in range(max_rounds):
            moved = False
            for src, node in list(self.nodes.items()):
                for dst, data in node.fx.take():
                    moved = True
                    item = (src, dst, decode(data, strict=False))
                    self.trace.append(item)
                    crossed.append(item)
                    if src in self.down or dst in self.down or dst not in self.nodes:
                        continue
                    self.nodes[dst].receive(data, src)
            if not moved:
                return crossed
        raise AssertionError("the network never went quiet")

    def tick(self, seconds: float = 0.0) -> list:
        self.clock.advance(seconds)
        for node in self.nodes.values():
            node.tick()
        return self.deliver()

    def run_for(self, seconds: float, step: float = 1.0) -> list:
        crossed = []
        t = 0.0
        while t < seconds:
            crossed += self.tick(step)
            t += step
        return crossed


def hub_and_spokes(spokes: int = 2, *, auth: bytes | None = b"secret", holdtime: int = 300):
    """The VyOS example shape: hub 10.0.0.1 at 192.0.2.1; spoke i at 10.0.0.(10+i) with
    NBMA 192.0.2.(10+i) and LAN 192.168.i.0/24 behind it."""
    net = Net()
    hub = net.add("192.0.2.1", tunnel_ip=A("10.0.0.1"), prefix_len=24, holdtime=holdtime,
                  auth=auth, redirect=True, multicast_dynamic=True)
    out = [hub]
    for i in range(1, spokes + 1):
        spoke = net.add(f"192.0.2.{10 + i}", tunnel_ip=A(f"10.0.0.{10 + i}"), prefix_len=24,
                        holdtime=holdtime, auth=auth, shortcut=True, multicast_nhs=True,
                        nhs=(NhsParams(A("192.0.2.1"), A("10.0.0.1")),))
        spoke.fx.routes[N(f"192.168.{i}.0/24")] = RouteHint(local=True, prefix_len=24)
        hub.fx.routes[N(f"192.168.{i}.0/24")] = RouteHint(via=A(f"10.0.0.{10 + i}"))
        out.append(spoke)
    for node in out[1:]:
        for j in range(1, spokes + 1):
            node.fx.routes.setdefault(N(f"192.168.{j}.0/24"), RouteHint(via=A("10.0.0.1")))
    return net, out


def ipv4_head(src: str, dst: str) -> bytes:
    """The first 28 bytes of an ICMP echo from src to dst (what a hub's trigger carries)."""
    return (bytes.fromhex("4500005400004000400100") + b"\0" + A(src).packed + A(dst).packed
            + bytes.fromhex("0800f7ff00010001"))
