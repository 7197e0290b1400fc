"""What the engine asks of the world. The daemon implements it with the raw GRE socket, the
BPF maps and netlink; tests record the calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..inet import IPAddress, IPNetwork


@dataclass(frozen=True)
class RouteHint:
    """Where the node's routing table sends a destination.

    local: dst is ours or behind us on a non-tunnel interface (we answer for it, with
    `prefix_len` the length of that route); via: the tunnel next hop's protocol address."""
    local: bool = False
    prefix_len: int = 32
    via: IPAddress | None = None


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

    def multicast_set(self, nbmas: frozenset[IPAddress]) -> None:
        """The set of NBMA addresses overlay multicast is replicated to."""

    def default_nhs_set(self, nbma: IPAddress | None) -> None:
        """Where unresolved overlay traffic goes (the preferred NHS that is up), or nowhere."""

    def last_used(self, proto: IPAddress) -> float | None:
        """Monotonic time the data plane last sent traffic to this next hop, if known."""
        return None

    def route_lookup(self, dst: IPAddress) -> RouteHint:
        """The overlay routing decision for dst (kernel FIB in the daemon)."""
        return RouteHint()

    def peer_identity(self, nbma: IPAddress) -> str:
        """The authenticated (IKE) identity of the peer at this NBMA address, "" if none."""
        return ""

    def may_register(self, nbma: IPAddress, proto: IPAddress) -> bool:
        """May the peer at `nbma` register tunnel address `proto`? (IPsec identity binding;
        without IPsec, yes.)"""
        return True


@dataclass
class Recorder(Effects):
    """Records every effect; `routes` maps destinations to hints (tests)."""
    sent: list[tuple[IPAddress, bytes]] = field(default_factory=list)
    mappings: dict[IPAddress, IPAddress] = field(default_factory=dict)
    shortcuts: dict[IPNetwork, tuple[IPAddress, IPAddress]] = field(default_factory=dict)
    multicast: frozenset[IPAddress] = frozenset()
    default_nhs: IPAddress | None = None
    routes: dict[IPNetwork, RouteHint] = field(default_factory=dict)
    used: dict[IPAddress, float] = field(default_factory=dict)
    log: list[tuple[Any, ...]] = field(default_factory=list)
    identities: dict[IPAddress, str] = field(default_factory=dict)     # nbma -> IKE identity
    # nbma -> tunnel addresses it may register; None: all
    allowed: dict[IPAddress, set[IPAddress]] | None = None

    def peer_identity(self, nbma: IPAddress) -> str:
        return self.identities.get(nbma, "")

    def may_register(self, nbma: IPAddress, proto: IPAddress) -> bool:
        return self.allowed is None or proto in self.allowed.get(nbma, ())

    def last_used(self, proto: IPAddress) -> float | None:
        return self.used.get(proto)

    def send(self, nbma: IPAddress, packet: bytes) -> None:
        self.sent.append((nbma, packet))

    def mapping_set(self, proto: IPAddress, nbma: IPAddress) -> None:
        self.mappings[proto] = nbma
        self.log.append(("mapping_set", proto, nbma))

    def mapping_del(self, proto: IPAddress) -> None:
        self.mappings.pop(proto, None)
        self.log.append(("mapping_del", proto))

    def shortcut_set(self, prefix: IPNetwork, via: IPAddress, nbma: IPAddress) -> None:
        self.shortcuts[prefix] = (via, nbma)
        self.log.append(("shortcut_set", prefix, via, nbma))

    def shortcut_del(self, prefix: IPNetwork) -> None:
        self.shortcuts.pop(prefix, None)
        self.log.append(("shortcut_del", prefix))

    def multicast_set(self, nbmas: frozenset[IPAddress]) -> None:
        self.multicast = nbmas

    def default_nhs_set(self, nbma: IPAddress | None) -> None:
        self.default_nhs = nbma

    def route_lookup(self, dst: IPAddress) -> RouteHint:
        for net, hint in sorted(self.routes.items(), key=lambda kv: -kv[0].prefixlen):
            if dst.version == net.version and dst in net:
                return hint
        return RouteHint()

    def take(self) -> list[tuple[IPAddress, bytes]]:
        """The packets sent since the last take()."""
        out, self.sent = self.sent, []
        return out
