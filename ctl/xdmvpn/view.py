"""The one read-only view of a running node's state: what `show` (the control socket's
`snapshot` and `stats` answers) and the exporter's scrape read, and nothing else reads.

`EngineView(node, interface)` reads an engine Node: its parameters, cache, NHS clients,
shortcuts, resolutions under way, counters and set-up latencies. `DaemonView` adds what the
daemon around it holds: the data plane's maps (path and drop counters, mappings, prefixes,
multicast and NHS sets), the GRE socket, the routes' and control socket's counters, the
effects, the route mirror and IPsec. The daemon builds one on its loop thread for each
request or scrape (`Daemon.view()`, `Daemon.read(fn)`), so a reader never sees state
mid-change and all its numbers are from the same moment.

Every read returns a copy: immutable rows (named tuples, frozen dataclasses) and fresh
dicts, never the engine's or the daemon's own objects, so a reader cannot change what it
reads. The fixed vocabularies of the counters read here (cap names, GRE discard reasons,
control socket error reasons, route write results, resync reasons) are declared here too:
the exporter's label values are these (tests hold them against the code that counts)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, Protocol, TypeVar

from .engine.cache import EntryType
from .engine.drops import DROP_REASONS
from .engine.node import Node
from .engine.stack import Stack
from .engine.params import Limits
from .inet import IPAddress, IPNetwork

T = TypeVar("T")

# -- vocabularies of the counters read here --------------------------------------------------

#: Cache entry types (`show ip nhrp cache` types, dmvpn_nhrp_cache_entries{type}).
CACHE_TYPES: tuple[str, ...] = tuple(t.value for t in EntryType)
#: NHRP dropped before the engine saw it, by the daemon: daemon counter "nhrp_drop.<reason>".
DAEMON_NHRP_DROPS: tuple[str, ...] = ("no_ipsec_sa",)
#: Every reason an NHRP packet is dropped by the controller: the engine's, then the daemon's.
NHRP_DROPS: tuple[str, ...] = DROP_REASONS + DAEMON_NHRP_DROPS
#: The engine's capped tables (engine counter ("cap", name)): the cache as a whole and per
#: NBMA, then the Limits that bound a table (the CIE limit drops a packet: "too_many_cies").
CAPS: tuple[str, ...] = ("entries", *(f.name for f in fields(Limits) if f.name != "cies"))
#: GRE datagrams the daemon read and discarded (transport.parse_gre_nhrp's reasons, and
#: shed_unknown: NHRP of unknown sources shed while the daemon is behind):
#: daemon counter "gre_drop.<reason>".
GRE_DISCARDS: tuple[str, ...] = ("not_ipv4", "truncated", "fragment", "not_nhrp",
                                 "gre_flags", "wrong_key", "shed_unknown")
#: Control socket requests answered with an error line, by why (control.serve):
#: daemon counter "control_error.<reason>".
CONTROL_ERRORS: tuple[str, ...] = ("timeout", "too_long", "truncated", "empty", "malformed",
                                   "internal", "client_gone")
#: Route writes by result (routes.RouteWriter): daemon counter "route_<result>".
ROUTE_RESULTS: tuple[str, ...] = ("added", "deleted", "failed")
#: Route lookups the kernel did not answer (routes.RouteLookup): "route_lookup_<reason>".
ROUTE_LOOKUP_ERRORS: tuple[str, ...] = ("unanswered", "failed")
#: Why the overlay's routing table was dumped again (routes.KernelRoutes.resync):
#: daemon counter "route_resync.<reason>".
ROUTE_RESYNCS: tuple[str, ...] = ("start", "retry", "enobufs", "overrun", "address_removed",
                                  "link_down", "vrf")
#: Controller operations that failed (daemon and effects counters of these names).
FAULTS: tuple[str, ...] = ("send_failed", "route_failed", "sync_error", "housekeeping_error",
                           "reload_failed", "multicast_truncated", "mapping_write_failed")

#: Set-up latencies the `stats` answer carries (the most recent ones).
STATS_LATENCIES = 256


#: Overlay (and underlay) families as labels and JSON name them.
FAMILY_NAMES = {4: "ipv4", 6: "ipv6"}


def _family_of(client: Any) -> int:
    """The overlay family of an NHS client (the node it belongs to)."""
    ctx = getattr(client, "ctx", None)
    return ctx.p.tunnel_ip.version if ctx is not None else 4


def _per_family(node: Any, method: str, whole: Callable[[Any], T]) -> dict[int, T]:
    """node.<method>() (a Node or a Stack); a reader without it is one IPv4 node."""
    fn = getattr(node, method, None)
    return fn() if fn is not None else {4: whole(node)}


def counter_name(key: Hashable) -> str:
    """A counter key as `show stats` names it: ("rx", PacketType.X) -> "rx.x"."""
    if isinstance(key, tuple):
        return ".".join(getattr(k, "name", str(k)).lower() for k in key)
    return str(key)


def _grouped(counters: Mapping[Any, int], prefix: str) -> dict[str, int]:
    """{rest: count} of the string keys "<prefix><rest>"."""
    return {k[len(prefix):]: v for k, v in counters.items()
            if isinstance(k, str) and k.startswith(prefix)}


def _by_kind(counters: Mapping[Any, int], kind: str) -> dict[str, int]:
    """{str(x): count} of the engine's keys (kind, x)."""
    out: dict[str, int] = {}
    for key, v in counters.items():
        if isinstance(key, tuple) and len(key) == 2 and key[0] == kind:
            out[str(key[1])] = out.get(str(key[1]), 0) + v
    return out


# -- rows -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EngineInfo:
    """The node as the engine runs it; times are its monotonic clock, `now` when read."""
    interface: str
    now: float
    protocol: IPAddress
    prefix_len: int
    nbma: IPAddress
    holdtime: int
    mtu: int
    serves: bool
    redirect: bool
    shortcut: bool
    # every overlay family's (address, prefix length), the primary first, and our NBMA
    # addresses (one per underlay family, the primary first)
    protocols: tuple[tuple[IPAddress, int], ...] = ()
    nbmas: tuple[IPAddress, ...] = ()


class CacheRow(NamedTuple):
    proto: IPAddress
    prefix_len: int
    type: str                       # EntryType value
    nbma: IPAddress | None
    claimed_nbma: IPAddress | None
    expires: float | None
    created: float
    unique: bool
    used: bool
    mtu: int
    holdtime: int
    identity: str


@dataclass(frozen=True, slots=True)
class NhsRow:
    index: int
    nbma: IPAddress
    configured_protocol: IPAddress | None
    protocol: IPAddress | None
    priority: int
    state: str                      # NhcState value
    expires: float | None
    registered_at: float | None
    last_error: int | None
    family: int = 4                 # the overlay family this registration is for


class ShortcutRow(NamedTuple):
    prefix: IPNetwork
    dst: IPAddress
    via: IPAddress
    nbma: IPAddress
    hold: float
    expires: float
    installed: float


class ResolvingRow(NamedTuple):
    dst: IPAddress
    nbma: IPAddress
    sent: float
    tries: int
    first: float


@dataclass(frozen=True, slots=True)
class Latencies:
    count: int                      # set-up latencies ever timed
    recent: tuple[float, ...]       # the last ones the engine keeps (seconds)


class Traffic(NamedTuple):
    packets: int
    bytes: int


class MapRow(NamedTuple):
    """A host mapping or prefix in the data plane with what the data plane sent by it."""
    prefix: IPNetwork
    nbma: IPAddress
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """The daemon's node: configuration names, its NBMA address, how XDP is attached."""
    interface: str
    role: str
    instance: str
    nbma: IPAddress
    xdp_mode: str | None
    gre_rcvbuf: int                 # bytes the kernel gave the GRE socket's receive buffer


@dataclass(frozen=True, slots=True)
class GreCounters:
    received: int                   # datagrams read from the raw GRE socket
    kernel_drops: int               # dropped by the kernel on a full receive buffer
    discards: dict[str, int]        # read and discarded (not NHRP for us), by GRE_DISCARDS


@dataclass(frozen=True, slots=True)
class ControlCounters:
    requests: int                   # requests answered (ok or an error from the command)
    errors: dict[str, int]          # error lines for what was not a request, CONTROL_ERRORS


@dataclass(frozen=True, slots=True)
class RouteCounters:
    writes: dict[str, int]          # ROUTE_RESULTS
    batches: int                    # worker batches written
    lookups: int                    # RTM_GETROUTE questions
    lookup_errors: dict[str, int]   # ROUTE_LOOKUP_ERRORS
    resyncs: dict[str, int]         # table dumps asked for, by ROUTE_RESYNCS
    notifications_lost: int         # ENOBUFS on the monitor socket


# -- what the daemon view reads (the daemon's parts, as far as reading goes) ----------------

class MappingEntry(Protocol):
    """dataplane.maps.Mapping."""
    @property
    def prefix(self) -> IPNetwork: ...
    @property
    def nbma(self) -> IPAddress: ...
    @property
    def packets(self) -> int: ...
    @property
    def bytes(self) -> int: ...


class MapsReader(Protocol):
    """The read side of dataplane.maps.DataplaneMaps."""
    def counters(self) -> Mapping[str, Mapping[str, int]]: ...
    def drops(self) -> Mapping[str, Mapping[str, int]]: ...
    def mappings(self) -> Sequence[MappingEntry]: ...
    def prefixes(self) -> Sequence[MappingEntry]: ...
    def multicast(self) -> Sequence[IPAddress]: ...
    def nhs(self) -> Sequence[IPAddress]: ...


class EffectsReader(Protocol):
    """daemon.effects.LiveEffects: its counters and the mappings it wrote."""
    @property
    def stats(self) -> Mapping[Any, int]: ...
    @property
    def mapped(self) -> Mapping[IPAddress, IPAddress]: ...


class MirrorReader(Protocol):
    """daemon.mirror.DataplaneMirror."""
    @property
    def stats(self) -> Mapping[str, int]: ...


class IpsecReader(Protocol):
    """ipsec.peers.IpsecPeers."""
    def snapshot(self) -> dict[str, Any]: ...
    def stats_view(self) -> dict[str, Any]: ...
    def sa_counts(self) -> dict[str, int]: ...


# -- the views ----------------------------------------------------------------------------------

class EngineView:
    """One engine node, read (see the module's docstring)."""

    __slots__ = ("_node", "_interface")

    def __init__(self, node: Node | Stack, interface: str):
        self._node = node
        self._interface = interface

    def engine(self) -> EngineInfo:
        node, p = self._node, self._node.p
        families = node.params_by_family
        return EngineInfo(self._interface, node.clock.now(), p.tunnel_ip, p.prefix_len,
                          p.nbma, p.holdtime, p.mtu, bool(node.serves), p.redirect,
                          p.shortcut,
                          protocols=tuple((f.tunnel_ip, f.prefix_len) for f in families.values()),
                          nbmas=(p.nbma,) + ((p.other_nbma,) if p.other_nbma else ()))

    def cache(self) -> list[CacheRow]:
        return [CacheRow(e.proto, e.prefix_len, e.type.value, e.nbma, e.claimed_nbma,
                         e.expires, e.created, e.unique, e.used, e.mtu, e.holdtime,
                         e.identity) for e in self._node.cache]

    def cache_counts(self) -> dict[str, int]:
        """Entries per type (every type, zeros too)."""
        return self._node.cache.counts()

    def nhs(self) -> list[NhsRow]:
        return [NhsRow(c.index, c.nhs.nbma, c.nhs.proto, c.proto, c.nhs.priority,
                       c.state.value, c.expires, c.registered_at,
                       None if c.last_error is None else int(c.last_error), _family_of(c))
                for c in sorted(self._node.nhcs, key=lambda c: (_family_of(c), c.index))]

    def shortcuts(self) -> list[ShortcutRow]:
        """Installed shortcuts by prefix (IPv4 first)."""
        return [ShortcutRow(sc.prefix, sc.dst, sc.via, sc.nbma, sc.hold, sc.expires,
                            sc.installed)
                for _, sc in sorted(self._node.shortcuts.items(),
                                    key=lambda kv: (kv[0].version, kv[0]))]

    def shortcut_count(self) -> int:
        return len(self._node.shortcuts)

    def resolving(self) -> list[ResolvingRow]:
        return [ResolvingRow(r.dst, r.nbma, r.sent, r.tries, r.first)
                for _, r in sorted(self._node.resolving.items(),
                                   key=lambda kv: (kv[0].version, kv[0]))]

    def nhrp_counters_by_family(self) -> dict[str, dict[Hashable, int]]:
        """The engine's counters per overlay family ("ipv4", "ipv6")."""
        return {FAMILY_NAMES[v]: dict(c) for v, c in _per_family(
            self._node, "stats_by_family", lambda n: n.stats).items()}

    def cache_counts_by_family(self) -> dict[str, dict[str, int]]:
        return {FAMILY_NAMES[v]: dict(c) for v, c in _per_family(
            self._node, "cache_counts_by_family", lambda n: n.cache.counts()).items()}

    def shortcut_counts_by_family(self) -> dict[str, int]:
        out = {FAMILY_NAMES[v]: 0 for v in _per_family(self._node, "stats_by_family",
                                                        lambda n: n.stats)}
        for prefix in self._node.shortcuts:
            name = FAMILY_NAMES[prefix.version]
            out[name] = out.get(name, 0) + 1
        return out

    def nhrp_counters(self) -> dict[Hashable, int]:
        """The engine's counters, keys as it counts them ("name" or (kind, value))."""
        return dict(self._node.stats)

    def nhrp_drops(self) -> dict[str, int]:
        """NHRP packets the controller dropped, by reason (NHRP_DROPS)."""
        return _by_kind(self._node.stats, "drop")

    def caps(self) -> dict[str, int]:
        """What the engine refused because a table was at its cap, by table (CAPS)."""
        return _by_kind(self._node.stats, "cap")

    def latencies(self) -> Latencies:
        node = self._node
        return Latencies(node.setup_count, tuple(node.setup_latencies))


class DaemonView(EngineView):
    """A running daemon's node, read (see the module's docstring)."""

    __slots__ = ("_info", "_per_peer_limit", "_counters", "_fx", "_maps", "_mirror",
                 "_ipsec")

    def __init__(self, node: Node | Stack, info: NodeInfo, *, per_peer_limit: int | None,
                 counters: Mapping[str, int], effects: EffectsReader, maps: MapsReader,
                 mirror: MirrorReader, ipsec: IpsecReader | None):
        super().__init__(node, info.interface)
        self._info = info
        self._per_peer_limit = per_peer_limit
        self._counters = counters
        self._fx = effects
        self._maps = maps
        self._mirror = mirror
        self._ipsec = ipsec

    # the node
    def node(self) -> NodeInfo:
        return self._info

    def per_peer_limit(self) -> int | None:
        """Peers the exporter gives series (metrics.per-peer-limit; None: per-peer off)."""
        return self._per_peer_limit

    def nhrp_drops(self) -> dict[str, int]:
        out = super().nhrp_drops()
        out.update(_grouped(self._counters, "nhrp_drop."))
        return out

    # the controller's own counters
    def daemon_counters(self) -> dict[str, int]:
        """The daemon's counters and the effects', by name (as `show stats` prints them)."""
        out = {counter_name(k): v for k, v in self._counters.items()}
        out.update((counter_name(k), v) for k, v in self._fx.stats.items())
        return out

    def mirror_counters(self) -> dict[str, int]:
        return dict(self._mirror.stats)

    def faults(self) -> dict[str, int]:
        """Controller operations that failed, by kind (FAULTS)."""
        fx = self._fx.stats
        return {k: self._counters.get(k, 0) + fx.get(k, 0) for k in FAULTS}

    def gre(self) -> GreCounters:
        c = self._counters
        return GreCounters(c.get("gre_rx", 0), c.get("gre_rx_kernel_drops", 0),
                           _grouped(c, "gre_drop."))

    def control(self) -> ControlCounters:
        c = self._counters
        return ControlCounters(c.get("control_requests", 0), _grouped(c, "control_error."))

    def routes(self) -> RouteCounters:
        c = self._counters
        return RouteCounters(
            writes={r: c.get(f"route_{r}", 0) for r in ROUTE_RESULTS},
            batches=c.get("route_batches", 0), lookups=c.get("route_lookups", 0),
            lookup_errors={r: c.get(f"route_lookup_{r}", 0) for r in ROUTE_LOOKUP_ERRORS},
            resyncs=_grouped(c, "route_resync."),
            notifications_lost=c.get("route_notifications_lost", 0))

    # the data plane
    def paths(self) -> dict[str, Traffic]:
        return {k: Traffic(v["packets"], v["bytes"]) for k, v in self._maps.counters().items()}

    def drops(self) -> dict[str, Traffic]:
        return {k: Traffic(v["packets"], v["bytes"]) for k, v in self._maps.drops().items()}

    def mapping_count(self) -> int:
        """NBMA mappings (host entries) the controller keeps in the data plane."""
        return len(self._fx.mapped)

    def mappings(self) -> list[MapRow]:
        """Host entries in the data plane, by address."""
        return [MapRow(m.prefix, m.nbma, m.packets, m.bytes) for m in self._maps.mappings()]

    def prefixes(self) -> list[MapRow]:
        return [MapRow(m.prefix, m.nbma, m.packets, m.bytes) for m in self._maps.prefixes()]

    def multicast(self) -> list[IPAddress]:
        return list(self._maps.multicast())

    def dataplane_nhs(self) -> list[IPAddress]:
        return list(self._maps.nhs())

    # IPsec (None without [ipsec])
    def ipsec_peers(self) -> dict[str, Any] | None:
        return None if self._ipsec is None else self._ipsec.snapshot()

    def ipsec_counters(self) -> dict[str, Any] | None:
        return None if self._ipsec is None else self._ipsec.stats_view()

    def ipsec_sa_counts(self) -> dict[str, int] | None:
        """IPsec SAs by state; None without IPsec. May raise (charon's side failed)."""
        return None if self._ipsec is None else dict(self._ipsec.sa_counts())


class ViewSource(Protocol):
    """Where readers in other threads get a view: `read(fn)` runs fn on a fresh view on the
    daemon's loop thread and returns its result (Daemon.read)."""
    def read(self, fn: Callable[[DaemonView], T], timeout: float = 5.0) -> T: ...
