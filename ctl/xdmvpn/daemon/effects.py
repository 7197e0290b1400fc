"""The engine's effects in the real world: NHRP on the raw GRE socket, NBMA mappings and
shortcut prefixes in the BPF maps, shortcut routes in the kernel.

With IPsec (`ipsec`, an ipsec.peers.IpsecPeers): every NBMA address a mapping refers to is
a peer IPsec must set up (`ipsec.ref`/`unref`), identities come from its IKE_SAs, and a
shortcut whose direct path is not ready (no CHILD_SA yet) is deferred: the engine holds it,
traffic keeps following the hub path, and `recheck_shortcuts` installs it once the SA is up
(and takes it back to the hub path when the SA goes down).

Writes to the data plane happen only when something changed (a refresh of a registration
writes nothing). Sends may be held and sent in one batch (`hold()`, with a SendBatch from
xdmvpn.mmsg): the receive loop holds them while it handles a burst. New NBMA mappings are
held with them and written together (DataplaneMaps.add_mappings: one batch write per map)
just before the batch's replies leave, so a spoke's traffic finds its mapping in the data
plane by the time it has its registration reply."""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections import Counter
from collections.abc import Iterator
from ipaddress import IPv4Address

from ..dataplane.maps import MCAST_MAX
from ..engine.effects import Effects, RouteHint
from ..errors import XdmvpnError

log = logging.getLogger(__name__)


class LiveEffects(Effects):
    """Built with every collaborator; the daemon swaps `gre` and `maps` only when it
    rebuilds them (NBMA address change, data-plane reload)."""

    def __init__(self, gre, maps, routes, nhs_order: tuple = (), *, ipsec=None,
                 on_mapping_change=None, gres=None):
        self.gre = gre                   # transport.GreSocket (the primary underlay's)
        self.gres = dict(gres or {})     # version -> GreSocket, one per underlay family
        self.maps = maps                 # dataplane.maps.DataplaneMaps
        self.routes = routes             # daemon.routes.KernelRoutes (add/delete/lookup)
        self.nhs_order = tuple(nhs_order)   # configured NHS NBMAs, preferred first
        self.ipsec = ipsec               # ipsec.peers.IpsecPeers, with [ipsec]
        self.on_mapping_change = on_mapping_change   # callback(proto): a mapping changed
        self.stats: Counter = Counter()
        self.mapped: dict = {}           # proto -> nbma, what we put in the host map
        self._mcast_written: list | None = None   # what multicast_set last wrote
        self._mcast_seen: frozenset | None = None  # the set it was given then
        self._mcast_warned = False
        self.installed: dict = {}        # shortcut prefix -> (via, nbma) on the direct path
        self.deferred: dict = {}         # shortcut prefix -> (via, nbma) waiting for its SA
        self.send_batch = None           # mmsg.SendBatch (GRE header included): see hold()
        self.flush_every = 1 << 30       # held sends that leave without waiting for the end
        self._holding = 0
        self._new_mappings: list = []    # (proto, nbma) held for one batch write

    def send(self, nbma, packet: bytes) -> None:
        # the socket of the destination's family, else the primary one
        gre = self.gres.get(4 if isinstance(nbma, IPv4Address) else 6, self.gre)
        if self._holding and gre is self.gre and isinstance(nbma, IPv4Address):
            batch = self.send_batch
            n = batch.add(gre.fileno(), nbma, packet)
            if n >= self.flush_every or n == batch.capacity:
                self.flush()         # the mappings first, then these replies
        elif not gre.send(nbma, packet):
            self.stats["send_failed"] += 1

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Sends inside the block are queued and leave together when it ends (one
        sendmmsg: one system call and one round of wake-ups per burst, not per packet),
        or earlier, every `flush_every` of them (the first replies of a long burst need
        not wait for its end). Without a send_batch, sends go out at once as always."""
        if self.send_batch is None:
            yield
            return
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                self.flush()

    def flush(self) -> None:
        """Write the mappings hold() kept, then send what it queued (failures counted as
        send_failed)."""
        self._write_mappings()
        batch = self.send_batch
        if batch is None or not len(batch):
            return
        failed = batch.failed
        batch.flush(self.gre.fileno())
        if batch.failed != failed:
            self.stats["send_failed"] += batch.failed - failed

    # -- data plane ---------------------------------------------------------------------------
    def mapping_set(self, proto, nbma) -> None:
        old = self.mapped.get(proto)
        if old is not None and old == nbma:    # (None == address raises inside ipaddress)
            return                       # the data plane has it already: no write
        if self._holding and self.send_batch is not None:
            self._new_mappings.append((proto, nbma))
        else:
            self.maps.add_mapping(proto, nbma)
        self.mapped[proto] = nbma
        if self.ipsec is not None and old != nbma:
            self.ipsec.ref(nbma)
            if old is not None:
                self.ipsec.unref(old)
        self._changed(proto)

    def _write_mappings(self) -> None:
        """The mappings held since the batch began, in one write per map. A failure (no
        statistics slot left) is counted and logged; the replies still go."""
        pending = self._new_mappings
        if not pending:
            return
        self._new_mappings = []
        try:
            self.maps.add_mappings(pending)
        except XdmvpnError as exc:
            self.stats["mapping_write_failed"] += len(pending)
            log.warning("%s", exc)

    def mapping_del(self, proto) -> None:
        self._write_mappings()               # in the order the engine asked
        old = self.mapped.pop(proto, None)
        self.maps.remove_mapping(proto)
        if self.ipsec is not None and old is not None:
            self.ipsec.unref(old)
        self._changed(proto)

    def _changed(self, proto) -> None:
        if self.on_mapping_change is not None:
            self.on_mapping_change(proto)

    def shortcut_set(self, prefix, via, nbma) -> None:
        if self.ipsec is not None and not self.ipsec.direct_ready(nbma, via):
            # make-before-break: the hub path until the SA to nbma is up
            if prefix in self.installed:
                self._uninstall(prefix)
            self.deferred[prefix] = (via, nbma)
            self.stats["shortcut_deferred"] += 1
            log.info("shortcut %s via %s at %s waits for its IPsec SA", prefix, via, nbma)
            return
        self.deferred.pop(prefix, None)
        self._install(prefix, via, nbma)

    def _install(self, prefix, via, nbma) -> None:
        self.installed[prefix] = (via, nbma)
        # data plane first: the route sends traffic into the overlay only once the prefix
        # map knows where it goes
        self.maps.add_prefix(prefix, nbma)
        self.routes.add(prefix, via)        # written in the background, failures counted
        log.info("shortcut %s via %s at %s", prefix, via, nbma)

    def shortcut_del(self, prefix) -> None:
        self.deferred.pop(prefix, None)
        if self.ipsec is None or prefix in self.installed:
            self._uninstall(prefix)

    def recheck_shortcuts(self, peers) -> None:
        """IPsec changed for these NBMA peers: install the deferred shortcuts whose SA is
        up now, take those whose SA went down back to the hub path."""
        if self.ipsec is None:
            return
        for prefix, (via, nbma) in list(self.installed.items()):
            if nbma in peers and not self.ipsec.direct_ready(nbma, via):
                self._uninstall(prefix)
                self.deferred[prefix] = (via, nbma)
                self.stats["shortcut_fallback"] += 1
                log.info("shortcut %s: IPsec SA to %s down, back to the hub path", prefix, nbma)
        for prefix, (via, nbma) in list(self.deferred.items()):
            if nbma in peers and self.ipsec.direct_ready(nbma, via):
                del self.deferred[prefix]
                self.stats["shortcut_activated"] += 1
                self._install(prefix, via, nbma)

    def _uninstall(self, prefix) -> None:
        self.installed.pop(prefix, None)
        self.routes.delete(prefix)          # queued behind any add of the same prefix
        self.maps.remove_prefix(prefix)
        log.info("shortcut %s removed", prefix)

    def multicast_set(self, nbmas) -> None:
        """The data plane holds MCAST_MAX addresses: the lowest ones of a bigger set (found
        without sorting it all), written only when they change, the truncation said once.
        A hub registering thousands of spokes calls this often with a set that only grew
        above the lowest ones: that is found from the difference (set operations on stored
        hashes), without looking at every address again."""
        nbmas = frozenset(nbmas)
        if self._mcast_unchanged(nbmas):
            self.stats["multicast_truncated"] += 1
            self._mcast_seen = nbmas
            return
        targets = list(nbmas)
        if len(targets) > MCAST_MAX:
            self.stats["multicast_truncated"] += 1
            if not self._mcast_warned:
                log.warning("%d multicast peers, the data plane holds %d: replicating to "
                            "the first ones only", len(targets), MCAST_MAX)
                self._mcast_warned = True
            targets = heapq.nsmallest(MCAST_MAX, targets, key=lambda a: (a.version, int(a)))
        else:
            targets.sort(key=lambda a: (a.version, int(a)))
            self._mcast_warned = False
        self._mcast_seen = nbmas
        if targets != self._mcast_written:
            self.maps.set_multicast(targets)
            self._mcast_written = targets

    def _mcast_unchanged(self, nbmas: frozenset) -> bool:
        """Truncated before, and since then only addresses above the highest written one
        came (none of the written ones left): the lowest MCAST_MAX are the same."""
        written, seen = self._mcast_written, self._mcast_seen
        if seen is None or written is None or len(written) < MCAST_MAX:
            return False
        if not nbmas.issuperset(written):
            return False
        top = (written[-1].version, int(written[-1]))
        return all((a.version, int(a)) > top for a in nbmas - seen)

    def default_nhs_set(self, nbma) -> None:
        """The NHS that is up first, then the other configured ones (an NHS is a static
        mapping: traffic keeps going to it before and between registrations, as on Cisco)."""
        order = ([nbma] if nbma is not None else []) + [
            n for n in self.nhs_order if n != nbma]
        self.maps.set_nhs(order[:4])

    # -- questions ------------------------------------------------------------------------------
    def last_used(self, proto):
        """Monotonic seconds the data plane last sent to proto (its host entry, or a prefix
        that goes to the same NBMA)."""
        self._write_mappings()
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

    def peer_identity(self, nbma) -> str:
        return self.ipsec.identity(nbma) if self.ipsec is not None else ""

    def may_register(self, nbma, proto) -> bool:
        return self.ipsec is None or self.ipsec.may_register(nbma, proto)

    def route_lookup(self, dst) -> RouteHint:
        return self.routes.lookup(dst)
