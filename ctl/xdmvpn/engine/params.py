"""The engine's view of a node's configuration (filled from the TOML config by the daemon)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address


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
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_nhc(self) -> bool:
        return bool(self.nhs)
