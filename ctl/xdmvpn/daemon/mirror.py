"""What the daemon keeps in the data plane besides the engine's own mappings:

* Routes on the overlay whose gateway is a tunnel peer (a hub's `10.0.2.0/24 via
  172.16.0.12 dev dmvpn0`, from a routing daemon or static) become prefixes in the data
  plane's LPM map, so that the hub hairpins traffic for the LAN behind a spoke in XDP and
  the encap knows where routed traffic goes. Shortcut prefixes (the engine's) win. The
  routes come from `KernelRoutes.table`, which follows the kernel's notifications: `sync`
  reads no netlink and costs what the routes via peers cost, not what the table holds.
* Adoption: after a restart the pinned maps still hold what the previous controller put
  there. Forwarding keeps using it; whatever the new engine has not claimed again within a
  grace period is removed."""

from __future__ import annotations

import logging
from ipaddress import IPv4Network

from ..engine.cache import EntryType

log = logging.getLogger(__name__)

SHORTCUT_GRACE = 60.0       # seconds an adopted prefix or route of ours survives unclaimed


class DataplaneMirror:
    def __init__(self, node, effects, routes):
        self.node = node
        self.fx = effects
        self.routes = routes
        self.mirrored: dict[IPv4Network, object] = {}     # prefix -> nbma we installed
        self.adopted_mappings: dict = {}                   # proto -> deadline
        self.adopted_prefixes: dict = {}                   # prefix -> deadline
        self.skipped: set = set()                          # routes covering local ones
        self.gateways: set = set()                         # of overlay routes, last sync
        self.stats = {"mirrored": 0, "adopted_removed": 0, "stale_routes_removed": 0}

    # -- adoption -------------------------------------------------------------------------
    def adopt(self, now: float, holdtime: float) -> tuple[int, int]:
        maps = self.fx.maps
        mapped = self.fx.mapped
        for m in maps.mappings():
            proto = m.prefix.network_address
            if proto not in mapped:
                self.adopted_mappings[proto] = now + holdtime
        for m in maps.prefixes():
            self.adopted_prefixes[m.prefix] = now + SHORTCUT_GRACE
        return len(self.adopted_mappings), len(self.adopted_prefixes)

    def _claimed_prefix(self, prefix) -> bool:
        return prefix in self.node.shortcuts or prefix in self.mirrored

    def expire_adopted(self, now: float) -> None:
        for proto, deadline in list(self.adopted_mappings.items()):
            if proto in self.fx.mapped:
                del self.adopted_mappings[proto]
            elif now >= deadline:
                del self.adopted_mappings[proto]
                self.fx.maps.remove_mapping(proto)
                self.stats["adopted_removed"] += 1
        for prefix, deadline in list(self.adopted_prefixes.items()):
            if self._claimed_prefix(prefix):
                del self.adopted_prefixes[prefix]
            elif now >= deadline:
                del self.adopted_prefixes[prefix]
                self.fx.maps.remove_prefix(prefix)
                self.stats["adopted_removed"] += 1
        if not self.adopted_prefixes:      # ours in the kernel that nobody claims
            shortcuts = self.node.shortcuts
            for net in [n for n in self.routes.table.ours if n not in shortcuts
                        and not self.routes.writer.busy(n)]:
                self.routes.delete(net)
                self.stats["stale_routes_removed"] += 1

    # -- routes via tunnel peers -------------------------------------------------------------
    def _nbma_of(self, gateway):
        entry = self.node.cache.get(gateway)
        if entry is None or entry.nbma is None or entry.type in (EntryType.LOCAL,
                                                                 EntryType.NEGATIVE):
            return None
        return entry.nbma

    def sync(self) -> None:
        want = {}
        table = self.routes.table
        via = table.via
        self.gateways = set(via.values())
        for net, gw in via.items():
            if net in self.node.shortcuts:
                continue
            nbma = self._nbma_of(gw)
            if nbma is None:
                continue
            inside = table.covers_elsewhere(net)
            if inside is not None:
                # a spoke's summary via the hub covers its own LAN: in the prefix map it
                # would send the LAN's traffic arriving from the tunnel back out (the
                # kernel prefers the longer local route). Leave such routes to the kernel.
                if net not in self.skipped:
                    log.info("route %s not mirrored: it covers %s off the tunnel", net,
                             inside)
                    self.skipped.add(net)
                continue
            self.skipped.discard(net)
            want[net] = nbma
        for net in list(self.mirrored):
            if net not in want:
                del self.mirrored[net]
                if net not in self.node.shortcuts:
                    self.fx.maps.remove_prefix(net)
                log.info("route %s no longer mirrored", net)
        for net, nbma in want.items():
            if self.mirrored.get(net) != nbma:
                self.fx.maps.add_prefix(net, nbma)
                self.mirrored[net] = nbma
                self.adopted_prefixes.pop(net, None)
                log.info("route %s mirrored to NBMA %s", net, nbma)
        self.skipped &= set(via)
        self.stats["mirrored"] = len(self.mirrored)
        self.stats["not_mirrored"] = len(self.skipped)
