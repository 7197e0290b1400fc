"""The lab's plan: which nodes, their names, addresses and configurations. Pure: no I/O.

``plan(spokes, name)`` -> ``Topology``; ``node_configs(topology, target)`` -> the TOML text
of every node, made with ``xdmvpn.config`` (a ``NodeConfig`` rendered by ``render_toml``
and read back by ``loads``), for namespaces on this machine (``target="netns"``) or for
real machines such as Vagrant VMs (``target="vagrant"``, underlay interface eth1);
``ipsec=True`` adds an ``[ipsec]`` block with the lab's pre-shared key; ``plan(..., nat=...)``
puts spokes behind NAT devices (nftables masquerade), a group of spokes per device.

Every address of the lab is decided here, and only here:

=================  ============================  ==============================
                   hub                           spoke i (1..N)
=================  ============================  ==============================
underlay (NBMA)    192.0.2.1/24                  192.0.2.(10+i)/24
overlay (tunnel)   172.16.0.1/24                 172.16.0.(10+i)/24
LAN                10.0.0.0/24                   10.0.i.0/24
router on the LAN  .1                            .1
LAN host           .10                           .10
routes             10.0.i.0/24 via spoke i       10.0.0.0/16 via 172.16.0.1
=================  ============================  ==============================

Behind NAT device n (1..), named ``natn``: its outside address is 192.0.2.(100+n)/24 on the
underlay; inside, every NAT device uses the same private network 192.168.1.0/24 (as home
routers do), itself at .1, and the k-th spoke of its group (1..) at .(10+k), default route via
.1. So spokes behind different NAT devices claim the same NBMA address (192.168.1.11 for the
first of each group): only the post-NAT address tells them apart.

IPv6 (``family`` "ipv6" or "dual": the overlay and LANs; ``nbma`` 6: the underlay), the
same host numbers (spoke i is ::(10+i), in hex) in these prefixes:

=================  ============================  ==============================
underlay (NBMA)    2001:db8:ff::1/64             2001:db8:ff::(10+i)/64
overlay (tunnel)   2001:db8:100::1/64            2001:db8:100::(10+i)/64
LAN                2001:db8:1:0::/64             2001:db8:1:i::/64
routes             each LAN via spoke i          2001:db8:1::/48 via 2001:db8:100::1
=================  ============================  ==============================

A dual-stack lab runs both overlays on one tunnel (IPv4 first): one registration per
family, shortcuts per family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from ..config import (SOCKET_DIR, ControlConfig, IpsecConfig, MetricsConfig, NhrpConfig,
                      NhsConfig, NodeConfig, TunnelConfig, loads, render_toml)
from ..errors import XdmvpnError
from ..inet import IPAddress, IPInterface, IPNetwork
from ..ipsec.charon import default_socket as charon_socket

DEFAULT_NAME = "lab"
NAME_ENV = "XDMVPN_LAB_NAME"      # another lab name: several labs side by side (tests)
DEFAULT_SPOKES = 2
MAX_SPOKES = 32
STATE_ROOT = SOCKET_DIR           # /run/xdmvpn: configs, logs, pid files under <name>/

UNDERLAY = IPv4Network("192.0.2.0/24")
OVERLAY = IPv4Network("172.16.0.0/24")
LANS = IPv4Network("10.0.0.0/16")
UNDERLAY6 = IPv6Network("2001:db8:ff::/64")
OVERLAY6 = IPv6Network("2001:db8:100::/64")
LANS6 = IPv6Network("2001:db8:1::/48")
#: --family: the overlay families (the first is the primary); --nbma: the underlay's
FAMILIES = {"ipv4": (4,), "ipv6": (6,), "dual": (4, 6)}
NBMA_FAMILIES = {"ipv4": 4, "ipv6": 6}
SPOKE_OFFSET = 10                 # spoke i is .10+i on the underlay and the overlay
HOST = 10                         # the host on each LAN is .10, the router .1
NAT_OUTSIDE = 100                 # NAT device n is .100+n on the underlay
NAT_INSIDE = IPv4Network("192.168.1.0/24")   # behind every NAT device: router .1, spokes .11..
MAX_NATS = 16

GRE_KEY = 42
SECRET = "labauth"                # Cisco cleartext authentication, at most 8 bytes
METRICS_PORT = 9351               # each node's exporter, on its namespace's 127.0.0.1
PSK = "xdmvpn-lab-psk"            # IPsec pre-shared key with ipsec=True (public: labs only)
HOLDTIME = 60
TUNNEL = "dmvpn0"

UNDERLAY_IF = {"netns": "ul0", "vagrant": "eth1"}
LAN_IF = "lan0"                   # the router's LAN interface (in the node's namespace)
HOST_IF = "eth0"                  # the LAN host's interface
BRIDGE = "br0"                    # the underlay bridge, in the namespace <name>-underlay
NAT_OUT_IF = "out0"               # a NAT device's outside interface (on the underlay bridge)
NAT_BRIDGE = "br0"                # a NAT device's inside bridge (its spokes' ul0 peers)

_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")


@dataclass(frozen=True)
class Node:
    name: str                     # "hub", "spoke1", ...
    index: int                    # 0 for the hub, i for spoke i
    underlay: IPInterface
    overlays: tuple[IPInterface, ...]      # one per overlay family, the primary first
    lans: tuple[IPNetwork, ...]            # likewise
    nat: int = 0                  # behind NAT device nat (1..), 0: on the underlay itself

    @property
    def overlay(self) -> IPInterface:
        return self.overlays[0]

    @property
    def lan(self) -> IPNetwork:
        return self.lans[0]

    @property
    def role(self) -> str:
        return "hub" if self.index == 0 else "spoke"

    def overlay_of(self, family: int) -> IPInterface:
        return next(a for a in self.overlays if a.version == family)

    def lan_of(self, family: int) -> IPNetwork:
        return next(n for n in self.lans if n.version == family)

    def routers(self) -> list[IPInterface]:
        """The node's own addresses on its LAN (one per family)."""
        return [_interface(lan[1], lan) for lan in self.lans]

    def hosts(self) -> list[IPInterface]:
        """The LAN host's addresses (one per family)."""
        return [_interface(lan[HOST], lan) for lan in self.lans]

    @property
    def router(self) -> IPInterface:
        """The node's own address on its LAN (the primary family's)."""
        return self.routers()[0]

    @property
    def host(self) -> IPInterface:
        """The LAN host's address: what `lab ping` pings from and to (primary family)."""
        return self.hosts()[0]

    def host_of(self, family: int) -> IPInterface:
        return next(h for h in self.hosts() if h.version == family)

    @property
    def mac(self) -> str:
        """A fixed MAC on the underlay, so that neighbour entries can be written ahead."""
        if self.nat:          # behind a NAT device: the private addresses repeat
            return "02:00:c0:00:02:%02x" % (SPOKE_OFFSET + self.index)
        return "02:00:c0:00:02:%02x" % int(self.underlay.ip.packed[-1])

    @property
    def gateway(self) -> IPv4Address | None:
        """The underlay gateway of a spoke behind NAT (its NAT device's inside address)."""
        return NAT_INSIDE[1] if self.nat else None


@dataclass(frozen=True)
class NatDevice:
    """A NAT device: masquerades its spokes' underlay traffic to its outside address."""
    name: str                     # "nat1", ...
    index: int                    # 1..
    outside: IPv4Interface        # on the underlay
    inside: IPv4Interface         # the spokes' gateway
    spokes: tuple[int, ...]       # spoke indexes behind it

    @property
    def mac(self) -> str:
        """Its outside MAC, fixed as the nodes' are."""
        return "02:00:c0:00:02:%02x" % (NAT_OUTSIDE + self.index)

    @property
    def inside_mac(self) -> str:
        return "02:00:c0:a8:01:01"


def _interface(addr: IPAddress, net: IPNetwork) -> IPInterface:
    return (IPv4Interface if addr.version == 4 else IPv6Interface)(f"{addr}/{net.prefixlen}")


@dataclass(frozen=True)
class Topology:
    name: str
    nodes: tuple[Node, ...]
    nats: tuple[NatDevice, ...] = ()
    family: str = "ipv4"          # --family: ipv4, ipv6 or dual (the overlay)
    nbma: str = "ipv4"            # --nbma: ipv4 or ipv6 (the underlay)

    @property
    def families(self) -> tuple[int, ...]:
        return FAMILIES[self.family]

    @property
    def ipv6(self) -> bool:
        """Does any link of the lab carry IPv6 (else IPv6 stays off, no chatter)?"""
        return self.family != "ipv4" or self.nbma != "ipv4"

    @property
    def hub(self) -> Node:
        return self.nodes[0]

    @property
    def spokes(self) -> tuple[Node, ...]:
        return self.nodes[1:]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise XdmvpnError(f"no node {name!r} in lab {self.name} (nodes: "
                          f"{', '.join(n.name for n in self.nodes)})")

    # names of everything the lab makes; down finds leftovers with `leftover_pattern`
    def ns(self, node: Node) -> str:
        return f"{self.name}-{node.name}"

    def host_ns(self, node: Node) -> str:
        return f"{self.name}-{node.name}-host"

    @property
    def bridge_ns(self) -> str:
        return f"{self.name}-underlay"

    def nat_ns(self, nat: NatDevice) -> str:
        return f"{self.name}-{nat.name}"

    def nat_of(self, node: Node) -> NatDevice | None:
        return self.nats[node.nat - 1] if node.nat else None

    def public_nbma(self, node: Node) -> IPv4Address:
        """Where the others see node's underlay traffic come from: its own address, or its
        NAT device's outside address (the post-NAT address)."""
        nat = self.nat_of(node)
        return node.underlay.ip if nat is None else nat.outside.ip

    def namespaces(self) -> list[str]:
        return ([self.bridge_ns] + [self.nat_ns(d) for d in self.nats]
                + [x for n in self.nodes for x in (self.ns(n), self.host_ns(n))])

    def instance(self, node: Node) -> str:
        """[control] instance: names the pins /sys/fs/bpf/xdmvpn/<instance> (shared by every
        namespace, hence distinct per node) and the socket /run/xdmvpn/<instance>.sock."""
        return f"{self.name}-{node.name}"

    def socket(self, node: Node) -> str:
        return f"{SOCKET_DIR}/{self.instance(node)}.sock"

    @property
    def state_dir(self) -> str:
        return f"{STATE_ROOT}/{self.name}"

    def config_path(self, node: Node) -> str:
        return f"{self.state_dir}/{node.name}.toml"

    def log_path(self, node: Node) -> str:
        return f"{self.state_dir}/{node.name}.log"

    def pid_path(self, node: Node) -> str:
        return f"{self.state_dir}/{node.name}.pid"

    def routes(self, node: Node) -> list[tuple[IPNetwork, IPAddress]]:
        """(prefix, gateway on the overlay) the lab adds on the node's tunnel interface."""
        out: list[tuple[IPNetwork, IPAddress]] = []
        for f in self.families:
            if node.role == "hub":
                out += [(s.lan_of(f), s.overlay_of(f).ip) for s in self.spokes]
            else:
                out.append((LANS if f == 4 else LANS6, self.hub.overlay_of(f).ip))
        return out

    def exec_targets(self) -> dict[str, str]:
        """What `lab exec` accepts: node, node-host and underlay -> namespace."""
        out = {n.name: self.ns(n) for n in self.nodes}
        out.update({f"{n.name}-host": self.host_ns(n) for n in self.nodes})
        out["underlay"] = self.bridge_ns
        out.update({d.name: self.nat_ns(d) for d in self.nats})
        return out

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "spokes": len(self.spokes), "family": self.family,
                     "nbma": self.nbma}
        if self.nats:
            out["nat"] = [list(d.spokes) for d in self.nats]
        return out


def label(name: str) -> str:
    """How messages name a lab: "the lab" for the default one, "lab NAME" for another."""
    return "the lab" if name == DEFAULT_NAME else f"lab {name}"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise XdmvpnError(f"lab name {name!r} must be 1..16 lowercase letters and digits, "
                          "starting with a letter")
    return name


def leftover_pattern(name: str) -> re.Pattern:
    """Names (namespaces, instances, pin dirs, sockets) a lab called `name` may have left."""
    return re.compile(rf"{re.escape(name)}-(hub|spoke[0-9]+|underlay|nat[0-9]+)(-host)?")


def parse_nat(groups: list[str] | None) -> tuple[tuple[int, ...], ...]:
    """`--nat spoke1 --nat spoke2,spoke3` -> ((1,), (2, 3)): one NAT device per group."""
    out = []
    for group in groups or []:
        members = []
        for word in filter(None, (w.strip() for w in group.split(","))):
            m = re.fullmatch(r"spoke([1-9][0-9]*)", word)
            if not m:
                raise XdmvpnError(f"--nat {group!r}: name spokes (spoke1,spoke2,...); "
                                  f"{word!r} is not one")
            members.append(int(m.group(1)))
        if not members:
            raise XdmvpnError(f"--nat {group!r}: name at least one spoke")
        out.append(tuple(members))
    return tuple(out)


def plan(spokes: int = DEFAULT_SPOKES, name: str = DEFAULT_NAME,
         nat: tuple[tuple[int, ...], ...] = (), family: str = "ipv4",
         nbma: str = "ipv4") -> Topology:
    """A hub and `spokes` spokes, addressed as in the module docstring, with the overlay
    families `family` (ipv4, ipv6, dual) over an underlay of family `nbma` (ipv4, ipv6);
    each group of spoke indexes in `nat` behind a NAT device of its own (IPv4 underlay)."""
    check_name(name)
    if not 1 <= spokes <= MAX_SPOKES:
        raise XdmvpnError(f"--spokes must be 1..{MAX_SPOKES}, got {spokes}")
    if family not in FAMILIES:
        raise XdmvpnError(f"--family must be ipv4, ipv6 or dual, got {family!r}")
    if nbma not in NBMA_FAMILIES:
        raise XdmvpnError(f"--nbma must be ipv4 or ipv6, got {nbma!r}")
    if nat and nbma != "ipv4":
        raise XdmvpnError("--nat needs an IPv4 underlay (NAT44): leave out --nbma ipv6")
    if len(nat) > MAX_NATS:
        raise XdmvpnError(f"at most {MAX_NATS} NAT devices, got {len(nat)}")
    behind: dict[int, tuple[int, int]] = {}          # spoke -> (NAT device, place in it)
    for n, group in enumerate(nat, 1):
        for k, i in enumerate(group, 1):
            if not 1 <= i <= spokes:
                raise XdmvpnError(f"--nat: there is no spoke{i} (spokes: 1..{spokes})")
            if i in behind:
                raise XdmvpnError(f"--nat: spoke{i} is behind two NAT devices")
            behind[i] = (n, k)

    def node(index: int) -> Node:
        host = 1 if index == 0 else SPOKE_OFFSET + index
        device, k = behind.get(index, (0, 0))
        underlay: IPInterface
        if device:
            underlay = IPv4Interface(f"{NAT_INSIDE[SPOKE_OFFSET + k]}/{NAT_INSIDE.prefixlen}")
        elif nbma == "ipv4":
            underlay = IPv4Interface(f"{UNDERLAY[host]}/{UNDERLAY.prefixlen}")
        else:
            underlay = IPv6Interface(f"{UNDERLAY6[host]}/{UNDERLAY6.prefixlen}")
        overlays: list[IPInterface] = []
        lans: list[IPNetwork] = []
        for f in FAMILIES[family]:
            if f == 4:
                overlays.append(IPv4Interface(f"{OVERLAY[host]}/{OVERLAY.prefixlen}"))
                lans.append(IPv4Network(f"{LANS[index * 256]}/24"))
            else:
                overlays.append(IPv6Interface(f"{OVERLAY6[host]}/{OVERLAY6.prefixlen}"))
                lans.append(IPv6Network(f"{LANS6[index << 64]}/64"))
        return Node(name="hub" if index == 0 else f"spoke{index}", index=index,
                    underlay=underlay, overlays=tuple(overlays), lans=tuple(lans),
                    nat=device)
    nats = tuple(NatDevice(
        name=f"nat{n}", index=n,
        outside=IPv4Interface(f"{UNDERLAY[NAT_OUTSIDE + n]}/{UNDERLAY.prefixlen}"),
        inside=IPv4Interface(f"{NAT_INSIDE[1]}/{NAT_INSIDE.prefixlen}"), spokes=group)
        for n, group in enumerate(nat, 1))
    return Topology(name, tuple(node(i) for i in range(spokes + 1)), nats, family, nbma)


def node_config(topo: Topology, node: Node, target: str = "netns",
                ipsec: bool = False) -> NodeConfig:
    if target not in UNDERLAY_IF:
        raise XdmvpnError(f"unknown target {target!r} (netns or vagrant)")
    if topo.nats and target != "netns":
        raise XdmvpnError("NAT devices exist only in the namespace lab (target netns)")
    tunnel = TunnelConfig(address=node.overlays[0], source_interface=UNDERLAY_IF[target],
                          name=TUNNEL, source_address=node.underlay.ip, key=GRE_KEY,
                          other_address=node.overlays[1] if len(node.overlays) > 1 else None)
    hub = node.role == "hub"
    nhrp = NhrpConfig(
        holdtime=HOLDTIME, authentication=SECRET, redirect=hub, shortcut=not hub,
        multicast=("dynamic",) if hub else ("nhs",),
        # one registration per overlay family, as Cisco and FRR send
        nhs=() if hub else tuple(NhsConfig(tunnel_ip=a.ip, nbma=topo.hub.underlay.ip)
                                 for a in topo.hub.overlays))
    # On VMs bpffs and /run are the VM's own: the defaults (instance dmvpn0) fit there.
    instance = topo.instance(node) if target == "netns" else TUNNEL
    control = ControlConfig(socket=f"{SOCKET_DIR}/{instance}.sock", instance=instance)
    # the exporter on loopback: a VM's own, or the node's namespace's (each has its own, so
    # every node listens on the same port; `xdmvpn lab metrics NODE` scrapes it in there)
    extra = {"metrics": MetricsConfig(listen=f"127.0.0.1:{METRICS_PORT}")}
    if ipsec:
        # in the namespace lab every node has its own charon (xdmvpn.ipsec.charon)
        vici = ({"vici_socket": f"unix://{charon_socket(topo.ns(node))}"}
                if target == "netns" else {})
        extra["ipsec"] = IpsecConfig(psk=PSK, **vici)
    return NodeConfig(role=node.role, tunnel=tunnel, nhrp=nhrp, control=control, **extra)


def node_configs(topo: Topology, target: str = "netns", ipsec: bool = False) -> dict[str, str]:
    """{node name: TOML text}; each text is checked by config.loads before it is returned."""
    out = {}
    for node in topo.nodes:
        cfg = node_config(topo, node, target, ipsec)
        text = (f"# xdmvpn lab {topo.name}, node {node.name} ({target}); generated by "
                "xdmvpn.lab.topology.node_configs\n" + render_toml(cfg))
        if loads(text, f"{node.name}.toml") != cfg:      # render_toml's promise, kept here
            raise XdmvpnError(f"lab: the generated configuration of {node.name} does not "
                              "read back the same")
        out[node.name] = text
    return out
