"""What the engine asks of the world. The daemon implements it with the raw GRE socket, the
BPF maps and netlink; tests record the calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv4Network, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class Effects:
    """No-op base: override what the node needs."""

    def send(self, nbma: IPAddress, packet: bytes) -> None:
        """Send one NHRP packet to an NBMA address (GRE protocol 0x2001)."""

    def mapping_set(self, proto: IPAddress, nbma: IPAddress) -> None:
        """The data plane sends overlay traffic for `proto` (/32) to `nbma`."""

    def mapping_del(self, proto: IPAddress) -> None:
        pass

    def shortcut_set(self, prefix: IPNetwork, via: IPAddress, nbma: IPAddress) -> None:
        """Route `prefix` on the overlay via `via` and the data plane's LPM to `nbma`."""

    def shortcut_del(self, prefix: IPNetwork) -> None:
        pass

    def multicast_set(self, nbmas: frozenset) -> None:
        """The set of NBMA addresses overlay multicast is replicated to."""

    def default_nhs_set(self, nbma: IPAddress | None) -> None:
        """Where unresolved overlay traffic goes (the preferred NHS that is up), or nowhere."""

    def last_used(self, proto: IPAddress) -> float | None:
        """Monotonic time the data plane last sent traffic to this next hop, if known."""
        return None

    def route_lookup(self, dst: IPAddress) -> "RouteHint":
        """The overlay routing decision for dst (kernel FIB in the daemon)."""
        return RouteHint()

    def peer_identity(self, nbma: IPAddress) -> str:
        """The authenticated (IKE) identity of the peer at this NBMA address, "" if none."""
        return ""

    def may_register(self, nbma: IPAddress, proto: IPAddress) -> bool:
        """May the peer at `nbma` register (or purge) tunnel address `proto`? (IPsec
        identity binding; without IPsec, yes.)"""
        return True


@dataclass(frozen=True)
class RouteHint:
    """Where the node's routing table sends a destination.

    local: dst is ours or behind us on a non-tunnel interface (we answer for it, with
    `prefix_len` the length of that route); via: the tunnel next hop's protocol address."""
    local: bool = False
    prefix_len: int = 32
    via: IPAddress | None = None


@dataclass
class Recorder(Effects):
    """Records every effect; `routes` maps destinations to hints (tests)."""
    sent: list = field(default_factory=list)
    mappings: dict = field(default_factory=dict)
    shortcuts: dict = field(default_factory=dict)
    multicast: frozenset = frozenset()
    default_nhs: IPAddress | None = None
    routes: dict = field(default_factory=dict)
    used: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    identities: dict = field(default_factory=dict)     # nbma -> IKE identity
    allowed: dict | None = None        # nbma -> tunnel addresses it may register; None: all

    def peer_identity(self, nbma):
        return self.identities.get(nbma, "")

    def may_register(self, nbma, proto):
        return self.allowed is None or proto in self.allowed.get(nbma, ())

    def last_used(self, proto):
        return self.used.get(proto)

    def send(self, nbma, packet):
        self.sent.append((nbma, packet))

    def mapping_set(self, proto, nbma):
        self.mappings[proto] = nbma
        self.log.append(("mapping_set", proto, nbma))

    def mapping_del(self, proto):
        self.mappings.pop(proto, None)
        self.log.append(("mapping_del", proto))

    def shortcut_set(self, prefix, via, nbma):
        self.shortcuts[prefix] = (via, nbma)
        self.log.append(("shortcut_set", prefix, via, nbma))

    def shortcut_del(self, prefix):
        self.shortcuts.pop(prefix, None)
        self.log.append(("shortcut_del", prefix))

    def multicast_set(self, nbmas):
        self.multicast = nbmas

    def default_nhs_set(self, nbma):
        self.default_nhs = nbma

    def route_lookup(self, dst):
        for net, hint in sorted(self.routes.items(), key=lambda kv: -kv[0].prefixlen):
            if dst in net:
                return hint
        return RouteHint()

    def take(self):
        """The packets sent since the last take()."""
        out, self.sent = self.sent, []
        return out
