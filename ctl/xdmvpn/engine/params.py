"""The engine's view of a node's configuration (filled from the TOML config by the daemon)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..inet import IPAddress


@dataclass(frozen=True)
class Limits:
    """The cap of every table a peer can make grow. What hits a cap is refused and counted
    (stats[("cap", name)]); every table also expires its entries (docs/security.md)."""
    entries_per_nbma: int = 128     # cache entries bound to one NBMA (spokes behind one NAT)
    answered: int = 1024            # requesters we answered (purged on clear and shutdown)
    answered_prefixes: int = 8      # prefix lengths remembered per requester
    indications: int = 65536        # (source, destination) pairs of the indication guard
    resolving: int = 1024           # our resolutions under way
    pending: int = 4096             # our requests awaiting a reply
    shortcuts: int = 16384          # shortcuts installed
    negative: int = 4096            # "no binding" answers remembered (negative entries)
    cies: int = 64                  # CIEs in one packet (per CIE list)


@dataclass(frozen=True)
class NhsParams:
    nbma: IPAddress
    proto: IPAddress | None = None     # None: "tunnel-ip dynamic", learnt from the reply
    priority: int = 0                   # lower is preferred (Cisco)


@dataclass(frozen=True)
class NodeParams:
    tunnel_ip: IPAddress
    prefix_len: int                     # of the overlay network
    nbma: IPAddress
    # our NBMA address of the other family, when the node has an underlay of each (a hub
    # serving IPv4 and IPv6 NBMA spokes at once): packets to a peer of that family use it
    other_nbma: IPAddress | None = None
    mtu: int = 1400
    holdtime: int = 7200
    auth: bytes | None = None           # Cisco cleartext secret, at most 8 bytes
    nhs: tuple[NhsParams, ...] = ()
    maps: tuple[tuple[IPAddress, IPAddress], ...] = ()   # static (proto, nbma)
    redirect: bool = False              # hub: send traffic indications
    shortcut: bool = False              # spoke: act on indications
    unique: bool = True                 # register with the unique flag (not no-unique)
    multicast_dynamic: bool = False     # replicate to all registered peers (hub)
    multicast_nhs: bool = False         # replicate to the NHSs (spoke)
    multicast_static: tuple[IPAddress, ...] = ()
    serve: bool | None = None          # accept registrations (default: when no NHS is set)
    hop_count: int = 255
    # registration client timing (seconds)
    retry_initial: float = 1.0
    retry_max: float = 32.0
    # cap on entries a hub accepts (insufficient resources beyond it)
    max_entries: int = 200_000
    limits: Limits = Limits()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_nhc(self) -> bool:
        return bool(self.nhs)

    def nbma_for(self, version: int) -> IPAddress:
        """Our NBMA address of this family (IPv4 4, IPv6 6); the primary one when we have
        none of it (the packet then says so, and the peer cannot answer a stranger family)."""
        if self.nbma.version != version and self.other_nbma is not None \
                and self.other_nbma.version == version:
            return self.other_nbma
        return self.nbma

    def nbma_families(self) -> frozenset[int]:
        return frozenset({self.nbma.version} | (
            {self.other_nbma.version} if self.other_nbma is not None else set()))


def from_config(cfg: Any, nbma: IPAddress, family: int | None = None,
                other_nbma: IPAddress | None = None) -> NodeParams:
    """The engine's parameters from a loaded node configuration (xdmvpn.config.NodeConfig)
    for the overlay `family` (default: that of the first tunnel address); `nbma` is the
    node's own NBMA address (configured, or read off the underlay), `other_nbma` its
    address on an underlay of the other family, if any."""
    t = cfg.tunnel
    address = t.address if family is None else t.address_of(family)
    if address is None:
        raise ValueError(f"no IPv{family} tunnel address")
    n = cfg.nhrp.for_family(address.version)
    targets = {str(m) for m in n.multicast}
    static = tuple(m for m in n.multicast if str(m) not in ("dynamic", "nhs"))
    return NodeParams(
        tunnel_ip=address.ip, prefix_len=address.network.prefixlen, nbma=nbma,
        other_nbma=other_nbma, mtu=t.mtu, holdtime=n.holdtime,
        auth=n.authentication.encode() if n.authentication is not None else None,
        nhs=tuple(NhsParams(s.nbma, s.tunnel_ip, s.priority) for s in n.nhs),
        maps=tuple((m.tunnel_ip, m.nbma) for m in n.maps),
        redirect=n.redirect, shortcut=n.shortcut, unique=not n.registration_no_unique,
        multicast_dynamic="dynamic" in targets, multicast_nhs="nhs" in targets,
        multicast_static=static, serve=cfg.role != "spoke")


def stack_from_config(cfg: Any, nbmas: tuple[IPAddress, ...]) -> list[NodeParams]:
    """One NodeParams per overlay family of the tunnel (engine.stack.Stack), the primary
    first; `nbmas` our NBMA addresses, the primary first (one per underlay family)."""
    other = nbmas[1] if len(nbmas) > 1 else None
    return [from_config(cfg, nbmas[0], a.version, other) for a in cfg.tunnel.addresses]
