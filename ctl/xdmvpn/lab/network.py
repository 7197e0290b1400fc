"""Build and remove the lab's network namespaces (with xdmvpn.netns; nothing in the root
namespace is touched).

    <name>-underlay     bridge br0 with one port per node (named after the node)
    <name>-hub          ul0 (underlay, on the bridge), lan0 (its LAN), dmvpn0 (the daemon's)
    <name>-spokeI       the same
    <name>-NODE-host    eth0 on NODE's LAN, default route via NODE
    <name>-natN         a NAT device: out0 on the bridge (port natN), bridge br0 inside with
                        one port per spoke behind it; nftables masquerades what leaves out0

A spoke behind a NAT device has its ul0 on that device's inside bridge and a default route
via the device; the rest of the lab sees its traffic come from the device's outside address.
"""

from __future__ import annotations

from .. import netns
from .topology import (BRIDGE, HOST_IF, LAN_IF, NAT_BRIDGE, NAT_OUT_IF, UNDERLAY_IF, NatDevice,
                       Topology, leftover_pattern)
from .xdp import attach_pass

UL = UNDERLAY_IF["netns"]
SYSCTLS_NODE = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1")
SYSCTLS_QUIET = SYSCTLS_NODE[1:]      # no IPv6 chatter (DAD, RS, MLD) on the lab's links
# a NAT device as a home router has it: masquerade (source NAT to the outside address,
# source ports kept where they are free), conntrack for the way back, and what arrives
# from outside unasked dropped silently. The drop matters for spokes behind two NATs: a
# packet answered by the NAT device itself would leave a conntrack entry that steals the
# very port mapping the spoke behind it needs a moment later (UDP hole punching).
NAT_RULES = f"""table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{NAT_OUT_IF}" masquerade
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{NAT_OUT_IF}" ct state new drop
    }}
}}
"""
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
    for nat in topo.nats:
        _nat_device(topo, nat)
    public = [(str(n.underlay.ip), n.mac) for n in topo.nodes if not n.nat] + \
        [(str(d.outside.ip), d.mac) for d in topo.nats]
    for node in topo.nodes:
        ns, host = topo.ns(node), topo.host_ns(node)
        nat = topo.nat_of(node)
        netns.add(ns, *(SYSCTLS_NODE6 if topo.ipv6 else SYSCTLS_NODE))
        port_ns, port_bridge = (br, BRIDGE) if nat is None else (topo.nat_ns(nat), NAT_BRIDGE)
        ip("link", "add", UL, "address", node.mac, "type", "veth", "peer", "name", node.name,
           "netns", port_ns, ns=ns)
        netns.addr(ns, UL, str(node.underlay))
        ip("link", "set", UL, "up", ns=ns)
        ip("link", "set", node.name, "master", port_bridge, "up", ns=port_ns)
        if nat is None:
            # Neighbours written ahead: the data plane's bpf_fib_lookup needs one to hairpin
            # in XDP (without, the hub takes its slow path) and no ARP runs at the first
            # packet.
            for address, mac in public:
                if address != str(node.underlay.ip):
                    netns.neigh(ns, UL, address, mac)
        else:
            netns.neigh(ns, UL, str(nat.inside.ip), nat.inside_mac)
            ip("route", "add", "default", "via", str(nat.inside.ip), "dev", UL, ns=ns)
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
        attach_pass([n.name for n in topo.nodes if not n.nat] + [d.name for d in topo.nats])
    for nat in topo.nats:
        with netns.in_netns(topo.nat_ns(nat)):
            attach_pass([topo.node(f"spoke{i}").name for i in nat.spokes])


def _nat_device(topo: Topology, nat: NatDevice) -> None:
    """natN: out0 on the underlay bridge, br0 inside, masquerade on the way out."""
    ip = netns.ip
    ns = topo.nat_ns(nat)
    netns.add(ns, *SYSCTLS_NODE)
    ip("link", "add", NAT_OUT_IF, "address", nat.mac, "type", "veth", "peer", "name",
       nat.name, "netns", topo.bridge_ns, ns=ns)
    ip("addr", "add", str(nat.outside), "dev", NAT_OUT_IF, ns=ns)
    ip("link", "set", NAT_OUT_IF, "up", ns=ns)
    ip("link", "set", nat.name, "master", BRIDGE, "up", ns=topo.bridge_ns)
    ip("link", "add", NAT_BRIDGE, "address", nat.inside_mac, "type", "bridge", ns=ns)
    ip("addr", "add", str(nat.inside), "dev", NAT_BRIDGE, ns=ns)
    ip("link", "set", NAT_BRIDGE, "up", ns=ns)
    netns.run("nft", "-f", "-", ns=ns, input=NAT_RULES)


def add_routes(topo: Topology, tunnel: str) -> None:
    """The lab's static routes on each node's overlay interface (see topology.routes)."""
    for node in topo.nodes:
        for prefix, via in topo.routes(node):
            netns.ip(f"-{prefix.version}", "route", "replace", str(prefix), "via", str(via),
                     "dev", tunnel, "onlink", ns=topo.ns(node))
