"""Dual stack on one tunnel: one engine node per overlay address family, as Cisco
(`ip nhrp ...` and `ipv6 nhrp ...`) and FRR run them. Each family has its own tunnel
address, NHSs, static maps, cache, registrations (one per family at each NHS), resolutions
and shortcuts; both share the NBMA underlay(s), the GRE socket(s) and the data plane.

`Stack` is what the daemon drives and what the state view reads: the Node interface, with
packets handed to the node of their NHRP protocol type and hairpin triggers to the node of
their inner family, state merged for reading (cache, NHS clients, shortcuts, counters), and
the two effects that both families set (multicast targets, the default NHSs) merged before
they reach the data plane."""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

from ..inet import IPAddress, IPNetwork
from ..nhrp import ProtocolType
from .cache import CacheEntry
from .clock import Clock, MonotonicClock
from .effects import Effects, RouteHint
from .node import Node
from .params import NodeParams
from .registration_client import NhsClient
from .resolution import Resolving
from .shortcut import Shortcut

_VERSION_OF_PROTOCOL = {int(ProtocolType.IPV4): 4, int(ProtocolType.IPV6): 6}


class _Shared:
    """What every family sets and the data plane holds once: merged here."""

    def __init__(self, fx: Effects):
        self.fx = fx
        self.multicast: dict[int, frozenset[IPAddress]] = {}
        self.nhs: dict[int, IPAddress | None] = {}
        self.order: list[int] = []          # families, the primary first

    def multicast_set(self, family: int, nbmas: frozenset[IPAddress]) -> None:
        self.multicast[family] = nbmas
        self.fx.multicast_set(frozenset().union(*self.multicast.values()))

    def default_nhs_set(self, family: int, nbma: IPAddress | None) -> None:
        self.nhs[family] = nbma
        # the primary family's choice first (the data plane keeps one preferred NHS)
        chosen = next((self.nhs[f] for f in self.order if self.nhs.get(f) is not None), None)
        self.fx.default_nhs_set(chosen)


class FamilyEffects(Effects):
    """One family's node's effects: the shared ones merged, the rest passed through (the
    methods below say what each does; an instance calls the inner effects' own methods,
    bound at construction: one call per effect, not two, on a hub's hot path)."""

    PASSED = ("send", "mapping_set", "mapping_del", "shortcut_set", "shortcut_del",
              "last_used", "route_lookup", "peer_identity", "may_register")

    def __init__(self, shared: _Shared, family: int):
        self._shared = shared
        self._family = family
        for name in self.PASSED:
            setattr(self, name, getattr(shared.fx, name))

    @property
    def inner(self) -> Effects:
        return self._shared.fx

    def send(self, nbma: IPAddress, packet: bytes) -> None:
        self._shared.fx.send(nbma, packet)

    def mapping_set(self, proto: IPAddress, nbma: IPAddress) -> None:
        self._shared.fx.mapping_set(proto, nbma)

    def mapping_del(self, proto: IPAddress) -> None:
        self._shared.fx.mapping_del(proto)

    def shortcut_set(self, prefix: IPNetwork, via: IPAddress, nbma: IPAddress) -> None:
        self._shared.fx.shortcut_set(prefix, via, nbma)

    def shortcut_del(self, prefix: IPNetwork) -> None:
        self._shared.fx.shortcut_del(prefix)

    def multicast_set(self, nbmas: frozenset[IPAddress]) -> None:
        self._shared.multicast_set(self._family, nbmas)

    def default_nhs_set(self, nbma: IPAddress | None) -> None:
        self._shared.default_nhs_set(self._family, nbma)

    def last_used(self, proto: IPAddress) -> float | None:
        return self._shared.fx.last_used(proto)

    def route_lookup(self, dst: IPAddress) -> RouteHint:
        return self._shared.fx.route_lookup(dst)

    def peer_identity(self, nbma: IPAddress) -> str:
        return self._shared.fx.peer_identity(nbma)

    def may_register(self, nbma: IPAddress, proto: IPAddress) -> bool:
        return self._shared.fx.may_register(nbma, proto)


class MergedCache:
    """The families' caches read as one (entries of different families never collide)."""

    def __init__(self, nodes: Iterable[Node]):
        self._nodes = list(nodes)

    def _of(self, proto: IPAddress) -> Node | None:
        return next((n for n in self._nodes if n.p.tunnel_ip.version == proto.version), None)

    def __len__(self) -> int:
        return sum(len(n.cache) for n in self._nodes)

    def __iter__(self) -> Iterator[CacheEntry]:
        for n in self._nodes:
            yield from n.cache

    def get(self, proto: IPAddress) -> CacheEntry | None:
        node = self._of(proto)
        return None if node is None else node.cache.get(proto)

    def counts(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for n in self._nodes:
            out.update(n.cache.counts())
        return dict(out)


class Stack:
    """The nodes of one tunnel, one per overlay family, the first given the primary."""

    def __init__(self, params: Iterable[NodeParams], effects: Effects | None = None,
                 clock: Clock | None = None, rng: random.Random | None = None):
        plist = list(params)
        families: list[int] = [p.tunnel_ip.version for p in plist]
        if not plist or len(set(families)) != len(families):
            raise ValueError("one set of parameters per overlay family (IPv4, IPv6)")
        self.shared = _Shared(effects or Effects())
        self.shared.order = families
        clock = clock or MonotonicClock()
        rng = rng or random.Random()
        self.nodes: dict[int, Node] = {
            p.tunnel_ip.version: Node(p, FamilyEffects(self.shared, p.tunnel_ip.version),
                                      clock, random.Random(rng.getrandbits(64)))
            for p in plist}
        self.primary = self.nodes[families[0]]
        self.clock = clock

    # -- reading (show, exporter, the daemon's mirror) -------------------------------------
    @property
    def p(self) -> NodeParams:
        return self.primary.p

    @property
    def fx(self) -> Effects:
        return self.shared.fx

    @property
    def params_by_family(self) -> dict[int, NodeParams]:
        return {v: n.p for v, n in self.nodes.items()}

    def node(self, version: int) -> Node | None:
        return self.nodes.get(version)

    def known(self, nbma: IPAddress) -> bool:
        """An NBMA address one of the nodes has a binding for (or one of their NHSs)."""
        return any(n.ctx.known(nbma) for n in self.nodes.values())

    @property
    def cache(self) -> MergedCache:
        return MergedCache(self.nodes.values())

    @property
    def nhcs(self) -> list[NhsClient]:
        return [c for n in self.nodes.values() for c in n.nhcs]

    # merged for reading; with one family, that node's own (no copy per look: the daemon's
    # route mirror asks `prefix in shortcuts` once per route)
    @property
    def shortcuts(self) -> dict[IPNetwork, Shortcut]:
        if len(self.nodes) == 1:
            return self.primary.shortcuts
        return {k: v for n in self.nodes.values() for k, v in n.shortcuts.items()}

    @property
    def resolving(self) -> dict[IPAddress, Resolving]:
        if len(self.nodes) == 1:
            return self.primary.resolving
        return {k: v for n in self.nodes.values() for k, v in n.resolving.items()}

    @property
    def stats(self) -> Counter[Any]:
        """Every family's counters summed (per family: stats_by_family)."""
        if len(self.nodes) == 1:
            return self.primary.stats
        out: Counter[Any] = Counter()
        for n in self.nodes.values():
            out.update(n.stats)
        return out

    def stats_by_family(self) -> dict[int, Counter[Any]]:
        return {v: n.stats for v, n in self.nodes.items()}

    def cache_counts_by_family(self) -> dict[int, dict[str, int]]:
        return {v: n.cache.counts() for v, n in self.nodes.items()}

    @property
    def setup_latencies(self) -> deque[float]:
        out: deque[float] = deque(maxlen=4096)
        for n in self.nodes.values():
            out.extend(n.setup_latencies)
        return out

    @property
    def setup_count(self) -> int:
        return sum(n.setup_count for n in self.nodes.values())

    @property
    def serves(self) -> bool:
        return any(n.serves for n in self.nodes.values())

    @property
    def last_bug(self) -> str:
        return next((n.last_bug for n in self.nodes.values() if n.last_bug), "")

    # -- driving ------------------------------------------------------------------------
    def receive(self, data: bytes | bytearray | memoryview, observed: IPAddress) -> None:
        """One NHRP packet: to the node of its protocol type (bytes 2..3). A type no node
        runs goes to the primary node, whose validation counts and answers it."""
        family = _VERSION_OF_PROTOCOL.get((data[2] << 8) | data[3]) if len(data) > 3 \
            else None
        node = self.nodes.get(family) if family is not None else None
        (node or self.primary).receive(bytes(data), observed)

    def tick(self) -> float | None:
        deadlines = [n.tick() for n in self.nodes.values()]
        return min((d for d in deadlines if d is not None), default=None)

    def on_trigger(self, sender_nbma: IPAddress, inner_src: IPAddress, inner_dst: IPAddress,
                   head: bytes) -> bool:
        node = self.nodes.get(inner_src.version)
        if node is None:
            self.primary.stats["trigger_no_family"] += 1
            return False
        return node.on_trigger(sender_nbma, inner_src, inner_dst, head)

    def resolve(self, dst: IPAddress, nbma: IPAddress | None = None) -> int | None:
        node = self.nodes.get(dst.version)
        return None if node is None else node.resolve(dst, nbma)

    def set_identity(self, nbma: IPAddress, identity: str) -> int:
        return sum(n.set_identity(nbma, identity) for n in self.nodes.values())

    def path_up(self, nbma: IPAddress) -> None:
        for n in self.nodes.values():
            n.path_up(nbma)

    def clear_cache(self) -> int:
        return sum(n.clear_cache() for n in self.nodes.values())

    def clear_shortcuts(self) -> int:
        return sum(n.clear_shortcuts() for n in self.nodes.values())

    def shutdown(self) -> int:
        return sum(n.shutdown() for n in self.nodes.values())

    def nbma_changed(self, new_nbma: IPAddress) -> int:
        """Our NBMA address of new_nbma's family changed (on every family's node)."""
        return sum(n.nbma_changed(new_nbma) for n in self.nodes.values()
                   if n.p.nbma.version == new_nbma.version)

    def reconfigure(self, params: Iterable[NodeParams]) -> None:
        plist = list(params)
        if sorted(p.tunnel_ip.version for p in plist) != sorted(self.nodes):
            raise ValueError("the tunnel's address families cannot change without a restart")
        for p in plist:
            self.nodes[p.tunnel_ip.version].reconfigure(p)
