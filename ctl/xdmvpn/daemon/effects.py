"""The engine's effects in the real world: NHRP on the raw GRE socket, NBMA mappings and
shortcut prefixes in the BPF maps, shortcut routes in the kernel."""

from __future__ import annotations

import logging
from collections import Counter
from ipaddress import IPv4Address

from ..engine.effects import Effects, RouteHint
from ..errors import XdmvpnError

log = logging.getLogger(__name__)


class LiveEffects(Effects):
    def __init__(self, gre, maps, routes, nhs_order: tuple = ()):
        self.gre = gre                   # transport.GreSocket
        self.maps = maps                 # dataplane.maps.DataplaneMaps
        self.routes = routes             # daemon.routes.KernelRoutes
        self.nhs_order = tuple(nhs_order)   # configured NHS NBMAs, preferred first
        self.stats: Counter = Counter()
        self.mapped: dict = {}           # proto -> nbma, what we put in the host map
        self.on_mapping_change = None    # callback() when mappings change (route mirror)

    def send(self, nbma, packet: bytes) -> None:
        if not self.gre.send(nbma, packet):
            self.stats["send_failed"] += 1

    # -- data plane ---------------------------------------------------------------------------
    def mapping_set(self, proto, nbma) -> None:
        if proto.version != 4 or nbma.version != 4:
            self.stats["mapping_not_ipv4"] += 1
            return
        self.maps.add_mapping(proto, nbma)
        self.mapped[proto] = nbma
        self._changed()

    def mapping_del(self, proto) -> None:
        self.mapped.pop(proto, None)
        if proto.version == 4:
            self.maps.remove_mapping(proto)
        self._changed()

    def _changed(self) -> None:
        if self.on_mapping_change is not None:
            self.on_mapping_change()

    def shortcut_set(self, prefix, via, nbma) -> None:
        if prefix.version != 4:
            self.stats["shortcut_not_ipv4"] += 1
            return
        # data plane first: the route sends traffic into the overlay only once the prefix
        # map knows where it goes
        self.maps.add_prefix(prefix, nbma)
        try:
            self.routes.add(prefix, via)
        except XdmvpnError as exc:
            self.stats["route_failed"] += 1
            log.warning("%s", exc)
        log.info("shortcut %s via %s at %s", prefix, via, nbma)

    def shortcut_del(self, prefix) -> None:
        if prefix.version != 4:
            return
        try:
            self.routes.delete(prefix)
        except XdmvpnError as exc:
            self.stats["route_failed"] += 1
            log.warning("%s", exc)
        self.maps.remove_prefix(prefix)
        log.info("shortcut %s removed", prefix)

    def multicast_set(self, nbmas) -> None:
        v4 = sorted(a for a in nbmas if a.version == 4)
        try:
            self.maps.set_multicast(v4)
        except XdmvpnError as exc:          # more peers than the map holds
            self.stats["multicast_truncated"] += 1
            log.warning("%s: replicating to the first ones only", exc)
            self.maps.set_multicast(v4[:64])

    def default_nhs_set(self, nbma) -> None:
        """The NHS that is up first, then the other configured ones (an NHS is a static
        mapping: traffic keeps going to it before and between registrations, as on Cisco)."""
        order = ([nbma] if nbma is not None else []) + [
            n for n in self.nhs_order if n != nbma]
        self.maps.set_nhs([n for n in order if n.version == 4][:4])

    # -- questions ------------------------------------------------------------------------------
    def last_used(self, proto):
        """Monotonic seconds the data plane last sent to proto (its host entry, or a prefix
        that goes to the same NBMA)."""
        nbma = self.mapped.get(proto)
        latest = 0
        for m in self.maps.mappings():
            if m.prefix.network_address == proto and m.prefix.prefixlen == 32:
                latest = max(latest, m.last_used_ns)
        if nbma is not None:
            for m in self.maps.prefixes():
                if m.nbma == nbma:
                    latest = max(latest, m.last_used_ns)
        # bpf_ktime_get_coarse_ns and time.monotonic share CLOCK_MONOTONIC's epoch
        return latest / 1e9 if latest else None

    def route_lookup(self, dst) -> RouteHint:
        if not isinstance(dst, IPv4Address):
            return RouteHint()
        return self.routes.lookup(dst)
