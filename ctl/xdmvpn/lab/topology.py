"""The lab's plan: which nodes, their names, addresses and configurations. Pure: no I/O.

``plan(spokes, name)`` -> ``Topology``; ``node_configs(topology, target)`` -> the TOML text
of every node, made with ``xdmvpn.config`` (a ``NodeConfig`` rendered by ``render_toml``
and read back by ``loads``), for namespaces on this machine (``target="netns"``) or for
real machines such as Vagrant VMs (``target="vagrant"``, underlay interface eth1);
``ipsec=True`` adds an ``[ipsec]`` block with the lab's pre-shared key.

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from ..config import (SOCKET_DIR, ControlConfig, IpsecConfig, MetricsConfig, NhrpConfig,
                      NhsConfig, NodeConfig, TunnelConfig, loads, render_toml)
from ..errors import XdmvpnError
from ..ipsec.charon import default_socket as charon_socket

DEFAULT_NAME = "lab"
NAME_ENV = "XDMVPN_LAB_NAME"      # another lab name: several labs side by side (tests)
DEFAULT_SPOKES = 2
MAX_SPOKES = 32
STATE_ROOT = SOCKET_DIR           # /run/xdmvpn: configs, logs, pid files under <name>/

UNDERLAY = IPv4Network("192.0.2.0/24")
OVERLAY = IPv4Network("172.16.0.0/24")
LANS = IPv4Network("10.0.0.0/16")
SPOKE_OFFSET = 10                 # spoke i is .10+i on the underlay and the overlay
HOST = 10                         # the host on each LAN is .10, the router .1

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

_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")


@dataclass(frozen=True)
class Node:
    name: str                     # "hub", "spoke1", ...
    index: int                    # 0 for the hub, i for spoke i
    underlay: IPv4Interface
    overlay: IPv4Interface
    lan: IPv4Network

    @property
    def role(self) -> str:
        return "hub" if self.index == 0 else "spoke"

    @property
    def router(self) -> IPv4Interface:
        """The node's own address on its LAN."""
        return IPv4Interface(f"{self.lan[1]}/{self.lan.prefixlen}")

    @property
    def host(self) -> IPv4Interface:
        """The LAN host's address: what `lab ping` pings from and to."""
        return IPv4Interface(f"{self.lan[HOST]}/{self.lan.prefixlen}")

    @property
    def mac(self) -> str:
        """A fixed MAC on the underlay, so that neighbour entries can be written ahead."""
        return "02:00:c0:00:02:%02x" % int(self.underlay.ip.packed[3])


@dataclass(frozen=True)
class Topology:
    name: str
    nodes: tuple[Node, ...]

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

    def namespaces(self) -> list[str]:
        return [self.bridge_ns] + [x for n in self.nodes for x in (self.ns(n), self.host_ns(n))]

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

    def routes(self, node: Node) -> list[tuple[IPv4Network, IPv4Address]]:
        """(prefix, gateway on the overlay) the lab adds on the node's tunnel interface."""
        if node.role == "hub":
            return [(s.lan, s.overlay.ip) for s in self.spokes]
        return [(LANS, self.hub.overlay.ip)]

    def exec_targets(self) -> dict[str, str]:
        """What `lab exec` accepts: node, node-host and underlay -> namespace."""
        out = {n.name: self.ns(n) for n in self.nodes}
        out.update({f"{n.name}-host": self.host_ns(n) for n in self.nodes})
        out["underlay"] = self.bridge_ns
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "spokes": len(self.spokes)}


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
    return re.compile(rf"{re.escape(name)}-(hub|spoke[0-9]+|underlay)(-host)?")


def plan(spokes: int = DEFAULT_SPOKES, name: str = DEFAULT_NAME) -> Topology:
    """A hub and `spokes` spokes, addressed as in the module docstring."""
    check_name(name)
    if not 1 <= spokes <= MAX_SPOKES:
        raise XdmvpnError(f"--spokes must be 1..{MAX_SPOKES}, got {spokes}")

    def node(index: int) -> Node:
        host = 1 if index == 0 else SPOKE_OFFSET + index
        return Node(
            name="hub" if index == 0 else f"spoke{index}", index=index,
            underlay=IPv4Interface(f"{UNDERLAY[host]}/{UNDERLAY.prefixlen}"),
            overlay=IPv4Interface(f"{OVERLAY[host]}/{OVERLAY.prefixlen}"),
            lan=IPv4Network(f"{LANS[index * 256]}/24"))
    return Topology(name, tuple(node(i) for i in range(spokes + 1)))


def node_config(topo: Topology, node: Node, target: str = "netns",
                ipsec: bool = False) -> NodeConfig:
    if target not in UNDERLAY_IF:
        raise XdmvpnError(f"unknown target {target!r} (netns or vagrant)")
    tunnel = TunnelConfig(address=node.overlay, source_interface=UNDERLAY_IF[target],
                          name=TUNNEL, source_address=node.underlay.ip, key=GRE_KEY)
    hub = node.role == "hub"
    nhrp = NhrpConfig(
        holdtime=HOLDTIME, authentication=SECRET, redirect=hub, shortcut=not hub,
        multicast=("dynamic",) if hub else ("nhs",),
        nhs=() if hub else (NhsConfig(tunnel_ip=topo.hub.overlay.ip,
                                      nbma=topo.hub.underlay.ip),))
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
