"""The configuration's schema: the typed configuration (frozen dataclasses), the keys of each
table in the order they are written, defaults, the names people bring from VyOS, Cisco and
FRR, and how a key path is named in messages. No reading, no checking here."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from ..errors import XdmvpnError
from ..inet import IPAddress, IPInterface, IPNetwork

KeyPath = tuple[str | int, ...]

# The keys of each table, in the order render_toml writes them.
TOP_KEYS = ("role", "tunnel", "nhrp", "ipsec", "control", "metrics")
TUNNEL_KEYS = ("name", "address", "source-interface", "source-address", "key", "mtu",
               "adjust-mss", "ttl", "df")
NHRP_KEYS = ("network-id", "holdtime", "authentication", "redirect", "shortcut",
             "registration-no-unique", "multicast", "max-send", "unknown-budget", "nhs", "map",
             "ipv6")
# [nhrp.ipv6]: what Cisco's and FRR's `ipv6 nhrp ...` set apart for the IPv6 overlay of a
# dual-stack tunnel (absent keys: as [nhrp] says)
NHRP_FAMILY_KEYS = ("network-id", "holdtime", "authentication", "redirect", "shortcut",
                    "registration-no-unique")
NHS_KEYS = ("tunnel-ip", "nbma", "priority")
MAP_KEYS = ("tunnel-ip", "nbma")
MAX_SEND_KEYS = ("packets", "interval")
UNKNOWN_BUDGET_KEYS = ("rate", "burst")
IPSEC_KEYS = ("profile", "required", "psk", "certificate", "private-key", "ca-certificate",
              "proposals", "esp-proposals", "local-id", "bind", "vici-socket", "identities")
IDENTITY_KEYS = ("id", "tunnel-ip")
BIND_MODES = ("tunnel-address", "table", "none")
CONTROL_KEYS = ("instance", "socket")
METRICS_KEYS = ("listen", "per-peer", "per-peer-limit")

# Names people bring from VyOS 1.3/1.4, Cisco or FRR that difflib would not match.
ALIASES = {"holding-time": "holdtime", "cisco-authentication": "authentication",
           "nbma-address": "nbma", "local-ip": "source-address", "no-unique":
           "registration-no-unique", "tunnel-source": "source-interface",
           "protocol-address": "tunnel-ip", "pre-shared-secret": "psk", "every": "interval"}

DEFAULT_NAME = "dmvpn0"
DEFAULT_MTU = 1400
DEFAULT_HOLDTIME = 7200          # Cisco and RFC 2332; the VyOS DMVPN example uses 300
DEFAULT_TTL = 64
DEFAULT_MAX_SEND = (100, 10)     # Cisco "ip nhrp max-send 100 every 10"
# NHRP from unknown sources the data plane admits, all together: packets/s and burst. A
# burst must fit in the daemon's GRE socket buffer below the level where it sheds
# strangers' NHRP (half of 16 MiB; a datagram passed up by XDP takes ~4 KiB there): beyond,
# a full buffer would drop known peers' packets too.
DEFAULT_UNKNOWN_BUDGET = (10_000, 1_000)
UNKNOWN_BURST_MAX = 2048
SOCKET_DIR = "/run/xdmvpn"
DEFAULT_VICI_SOCKET = "unix:///var/run/charon.vici"     # strongSwan's default
DEFAULT_PER_PEER_LIMIT = 100     # per-peer metric series at most (cardinality cap)


class ConfigError(XdmvpnError):
    """A configuration problem, one line: ``FILE:LINE: KEY: message``."""

    def __init__(self, source: str, line: int | None, key: str, message: str):
        self.source, self.line, self.key, self.message = source, line, key, message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# --- the typed configuration ------------------------------------------------------------

@dataclass(frozen=True)
class TunnelConfig:
    address: IPInterface               # own tunnel address and the overlay prefix
    source_interface: str              # underlay (NBMA) interface
    name: str = DEFAULT_NAME
    source_address: IPAddress | None = None   # None: first address of source_interface
    key: int | None = None             # GRE key; None: no key
    mtu: int = DEFAULT_MTU
    adjust_mss: int | None = None
    ttl: int = DEFAULT_TTL             # 0: inherit from the inner packet
    df: bool | Literal["inherit"] = True
    # dual stack: the tunnel address of the other family (address = [v4, v6] in TOML)
    other_address: IPInterface | None = None
    # an underlay of each family (a hub serving IPv4 and IPv6 NBMA spokes at once)
    other_source_address: IPAddress | None = None

    @property
    def addresses(self) -> tuple[IPInterface, ...]:
        """The tunnel addresses, one per overlay family, the primary (first written) first."""
        return (self.address,) + ((self.other_address,) if self.other_address else ())

    @property
    def source_addresses(self) -> tuple[IPAddress, ...]:
        if self.source_address is None:
            return ()
        return (self.source_address,) + (
            (self.other_source_address,) if self.other_source_address else ())

    def address_of(self, version: int) -> IPInterface | None:
        return next((a for a in self.addresses if a.version == version), None)


@dataclass(frozen=True)
class NhsConfig:
    tunnel_ip: IPAddress | None        # None: "dynamic", learnt from the registration reply
    nbma: IPAddress
    priority: int = 0                  # lower is preferred (Cisco)


@dataclass(frozen=True)
class MapConfig:
    tunnel_ip: IPAddress
    nbma: IPAddress


@dataclass(frozen=True)
class MaxSend:
    packets: int = DEFAULT_MAX_SEND[0]
    interval: int = DEFAULT_MAX_SEND[1]   # seconds


@dataclass(frozen=True)
class UnknownBudget:
    """NHRP admitted from sources without a mapping (all of them together): first-time
    registrations and strangers alike."""
    rate: int = DEFAULT_UNKNOWN_BUDGET[0]    # packets per second
    burst: int = DEFAULT_UNKNOWN_BUDGET[1]   # packets


MulticastTarget = Literal["dynamic", "nhs"] | IPAddress


@dataclass(frozen=True)
class NhrpFamily:
    """[nhrp.ipv6]: the IPv6 overlay's own values (Cisco/FRR `ipv6 nhrp ...`)."""
    network_id: int | None = None
    holdtime: int | None = None
    authentication: str | None = None
    redirect: bool | None = None
    shortcut: bool | None = None
    registration_no_unique: bool | None = None


@dataclass(frozen=True)
class NhrpConfig:
    network_id: int = 1
    holdtime: int = DEFAULT_HOLDTIME
    authentication: str | None = None
    redirect: bool = False
    shortcut: bool = False
    registration_no_unique: bool = False
    multicast: tuple[MulticastTarget, ...] = ()
    max_send: MaxSend = MaxSend()
    unknown_budget: UnknownBudget = UnknownBudget()
    nhs: tuple[NhsConfig, ...] = ()
    maps: tuple[MapConfig, ...] = ()
    ipv6: NhrpFamily = NhrpFamily()

    def for_family(self, version: int) -> NhrpConfig:
        """The knobs of one overlay family: [nhrp] with [nhrp.ipv6] over it for IPv6, the
        NHSs and maps of that family (a dynamic NHS serves every family: one
        registration per family, as Cisco and FRR send)."""
        over = self.ipv6 if version == 6 else NhrpFamily()
        pick = {k: v for k, v in vars(over).items() if v is not None}
        return replace(self, **pick, ipv6=NhrpFamily(),
                       nhs=tuple(s for s in self.nhs
                                 if s.tunnel_ip is None or s.tunnel_ip.version == version),
                       maps=tuple(m for m in self.maps if m.tunnel_ip.version == version))

    @property
    def multicast_dynamic(self) -> bool:
        return "dynamic" in self.multicast

    @property
    def multicast_nhs(self) -> bool:
        return "nhs" in self.multicast

    @property
    def multicast_static(self) -> tuple[IPAddress, ...]:
        return tuple(m for m in self.multicast if not isinstance(m, str))


@dataclass(frozen=True)
class IdentityConfig:
    id: str                                # an IKE identity as charon prints it
    tunnel_ip: tuple[IPNetwork, ...]       # the tunnel addresses/prefixes it may register


@dataclass(frozen=True)
class IpsecConfig:
    profile: str = "dmvpn"
    required: bool = True
    psk: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    ca_certificate: str | None = None
    proposals: tuple[str, ...] = ()        # IKE; empty: strongSwan's default
    esp_proposals: tuple[str, ...] = ()
    local_id: str | None = None            # None: the tunnel address (psk), the cert subject
    bind: str = "tunnel-address"           # which tunnel addresses a peer identity may register
    vici_socket: str = DEFAULT_VICI_SOCKET
    identities: tuple[IdentityConfig, ...] = ()


@dataclass(frozen=True)
class ControlConfig:
    socket: str
    instance: str = DEFAULT_NAME           # names the pin dir /sys/fs/bpf/xdmvpn/<instance>


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = None              # "host:port", IPv6 as "[::1]:9351"
    per_peer: bool = False                 # per-peer series (dmvpn_peer_*), capped:
    per_peer_limit: int = DEFAULT_PER_PEER_LIMIT   # at most this many peers

    @property
    def host(self) -> str | None:
        return self.listen.rsplit(":", 1)[0].strip("[]") if self.listen else None

    @property
    def port(self) -> int | None:
        return int(self.listen.rsplit(":", 1)[1]) if self.listen else None


Role = Literal["hub", "spoke", "both"]


@dataclass(frozen=True)
class NodeConfig:
    role: Role
    tunnel: TunnelConfig
    nhrp: NhrpConfig
    control: ControlConfig
    metrics: MetricsConfig = MetricsConfig()
    ipsec: IpsecConfig | None = None

    @property
    def is_nhs(self) -> bool:
        """Serves registrations (hub, or a hub that also registers upwards)."""
        return self.role in ("hub", "both")

    @property
    def is_nhc(self) -> bool:
        """Registers to next hop servers."""
        return self.role in ("spoke", "both")

    def to_dict(self) -> dict:
        """Normalized, JSON-able, every default filled, keys as written in the TOML file."""
        t, n = self.tunnel, self.nhrp
        return {
            "role": self.role,
            "tunnel": {"name": t.name, "address": _one_or_list(t.addresses),
                       "source-interface": t.source_interface,
                       "source-address": _one_or_list(t.source_addresses),
                       "key": t.key,
                       "mtu": t.mtu, "adjust-mss": t.adjust_mss, "ttl": t.ttl, "df": t.df},
            "nhrp": {"network-id": n.network_id, "holdtime": n.holdtime,
                     "authentication": n.authentication, "redirect": n.redirect,
                     "shortcut": n.shortcut,
                     "registration-no-unique": n.registration_no_unique,
                     "multicast": [str(m) for m in n.multicast],
                     "max-send": {"packets": n.max_send.packets,
                                  "interval": n.max_send.interval},
                     "unknown-budget": {"rate": n.unknown_budget.rate,
                                        "burst": n.unknown_budget.burst},
                     "nhs": [{"tunnel-ip": "dynamic" if s.tunnel_ip is None else str(s.tunnel_ip),
                              "nbma": str(s.nbma), "priority": s.priority} for s in n.nhs],
                     "map": [{"tunnel-ip": str(m.tunnel_ip), "nbma": str(m.nbma)}
                             for m in n.maps],
                     "ipv6": {k.replace("_", "-"): v for k, v in vars(n.ipv6).items()
                              if v is not None} or None},
            "ipsec": None if self.ipsec is None else {
                "profile": self.ipsec.profile, "required": self.ipsec.required,
                "psk": self.ipsec.psk, "certificate": self.ipsec.certificate,
                "private-key": self.ipsec.private_key,
                "ca-certificate": self.ipsec.ca_certificate,
                "proposals": list(self.ipsec.proposals),
                "esp-proposals": list(self.ipsec.esp_proposals),
                "local-id": self.ipsec.local_id, "bind": self.ipsec.bind,
                "vici-socket": self.ipsec.vici_socket,
                "identities": [{"id": i.id, "tunnel-ip": [_net_text(n) for n in i.tunnel_ip]}
                               for i in self.ipsec.identities]},
            "control": {"instance": self.control.instance, "socket": self.control.socket},
            "metrics": {"listen": self.metrics.listen, "per-peer": self.metrics.per_peer,
                        "per-peer-limit": self.metrics.per_peer_limit},
        }


def _one_or_list(values: tuple) -> str | list[str] | None:
    """One address as a string, two (dual stack) as an array, as written in TOML."""
    if not values:
        return None
    return str(values[0]) if len(values) == 1 else [str(v) for v in values]


def _net_text(net) -> str:
    """A host prefix as its address, others as address/length."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


# --- naming keys in messages ----------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_name(path: KeyPath) -> str:
    """("nhrp", "nhs", 1, "nbma") -> "nhrp.nhs[1].nbma"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = part if _BARE_KEY.fullmatch(part) else quote(part)
            out += f".{part}" if out else part
    return out


def quote(text: str) -> str:
    """text as a TOML basic string on one line, everything not printable escaped: for key
    names and values in messages (render_toml leaves writing files to tomli-w)."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        elif c in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[c])
        else:
            out.append(f"\\u{ord(c):04X}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08X}")
    return '"' + "".join(out) + '"'


_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
