"""Build and remove the lab's network namespaces (with xdmvpn.netns; nothing in the root
namespace is touched).

    <name>-underlay     bridge br0 with one port per node (named after the node)
    <name>-hub          ul0 (underlay, on the bridge), lan0 (its LAN), dmvpn0 (the daemon's)
    <name>-spokeI       the same
    <name>-NODE-host    eth0 on NODE's LAN, default route via NODE
"""

from __future__ import annotations

from .. import netns
from .topology import BRIDGE, HOST_IF, LAN_IF, UNDERLAY_IF, Topology, leftover_pattern
from .xdp import attach_pass

UL = UNDERLAY_IF["netns"]
SYSCTLS_NODE = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1")
SYSCTLS_QUIET = SYSCTLS_NODE[1:]      # no IPv6 chatter (DAD, RS, MLD) on the lab's links
# a lab with IPv6 (overlay or underlay): IPv6 on, nodes forward it
SYSCTLS_NODE6 = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def existing(name: str) -> list[str]:
    """Namespaces a lab called `name` has (or left after a crash)."""
    pattern = leftover_pattern(name)
    return sorted(n for n in netns.names() if pattern.fullmatch(n))


def build(topo: Topology) -> None:
    """Every namespace, link, address and neighbour; on failure, what was made is removed."""
    try:
        _build(topo)
    except BaseException:
        netns.delete(*topo.namespaces())
        raise


def _build(topo: Topology) -> None:
    ip = netns.ip
    br = topo.bridge_ns
    netns.add(br, *SYSCTLS_QUIET)
    ip("link", "add", BRIDGE, "type", "bridge", ns=br)
    ip("link", "set", BRIDGE, "up", ns=br)
    for node in topo.nodes:
        ns, host = topo.ns(node), topo.host_ns(node)
        netns.add(ns, *(SYSCTLS_NODE6 if topo.ipv6 else SYSCTLS_NODE))
        ip("link", "add", UL, "address", node.mac, "type", "veth", "peer", "name", node.name,
           "netns", br, ns=ns)
        netns.addr(ns, UL, str(node.underlay))
        ip("link", "set", UL, "up", ns=ns)
        ip("link", "set", node.name, "master", BRIDGE, "up", ns=br)
        # Neighbours written ahead: the data plane's bpf_fib_lookup needs one to hairpin
        # in XDP (without, the hub takes its slow path) and no ARP runs at the first packet.
        for other in topo.nodes:
            if other is not node:
                netns.neigh(ns, UL, str(other.underlay.ip), other.mac)
        netns.add(host, *(() if topo.ipv6 else SYSCTLS_QUIET))
        ip("link", "add", LAN_IF, "type", "veth", "peer", "name", HOST_IF, "netns", host,
           ns=ns)
        for router, lan_host in zip(node.routers(), node.hosts()):
            netns.addr(ns, LAN_IF, str(router))
            netns.addr(host, HOST_IF, str(lan_host))
        ip("link", "set", LAN_IF, "up", ns=ns)
        ip("link", "set", HOST_IF, "up", ns=host)
        for router in node.routers():
            ip(f"-{router.version}", "route", "add", "default", "via", str(router.ip),
               ns=host)
    with netns.in_netns(br):
        attach_pass([n.name for n in topo.nodes])


def add_routes(topo: Topology, tunnel: str) -> None:
    """The lab's static routes on each node's overlay interface (see topology.routes)."""
    for node in topo.nodes:
        for prefix, via in topo.routes(node):
            netns.ip(f"-{prefix.version}", "route", "replace", str(prefix), "via", str(via),
                     "dev", tunnel, "onlink", ns=topo.ns(node))
