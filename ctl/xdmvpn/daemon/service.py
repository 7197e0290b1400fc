"""`xdmvpn run`: one node's daemon. asyncio; NHRP on the raw GRE socket into the engine,
data-plane triggers into the engine, the engine's timers, the control socket, signals.

SIGTERM/SIGINT: clean shutdown (purge our bindings, remove routes, detach the data plane),
or with --keep-dataplane leave forwarding running for the next controller to adopt.
SIGHUP: reload the configuration without losing state."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import resource
import signal
import socket
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from .. import config as config_mod
from .. import control, show
from ..dataplane.maps import MAX_PEERS, DataplaneMaps
from ..dataplane.tunnel import TunnelDataplane
from ..engine.registration_client import NhcState
from ..engine.params import NodeParams, stack_from_config
from ..engine.stack import Stack
from ..inet import IPAddress
from ..errors import XdmvpnError
from ..ipsec.kernel import esp_missing
from ..ipsec.peers import IpsecPeers
from ..mmsg import SendBatch
from ..transport import GreSocket, gre_header
from ..view import DaemonView, NodeInfo
from .effects import LiveEffects
from .events import ring_epoll_fd
from .mirror import DataplaneMirror
from .receive import GreReceiver
from .routes import KernelRoutes, NetlinkThread, ensure_address, first_address

if TYPE_CHECKING:
    from ..exporter.server import MetricsServer

log = logging.getLogger("xdmvpn")

HOUSEKEEPING = 1.0          # seconds between route-mirror/adoption checks (no netlink)
SYNC_DELAY = 0.01           # seconds from a route/address/mapping change to the mirror sync
EVENT_POLL = 0.005          # ring-buffer polling period when no epoll fd is available
GRE_BATCH = 256             # NHRP datagrams handled per loop turn (one recvmmsg, one
                            # sendmmsg for the replies)
FLUSH_EVERY = 32            # replies held before they leave with one sendmmsg (a spoke
                            # waits for at most this many others' answers before its own)
GC_THRESHOLD = (20_000, 20, 20)   # gen0 allocations, gen0 and gen1 collections (settle_gc)
GRE_RCVBUF = 8 << 20        # bytes asked for (the kernel reports twice that)
RESTART_KEYS = ("name", "address", "source-interface", "source-address", "key")
DATAPLANE_KEYS = ("mtu", "adjust-mss", "ttl", "df")

T = TypeVar("T")


def _df(value) -> str:
    """Config df (true, false, "inherit") as the data plane names it."""
    return {True: "set", False: "clear"}.get(value, "inherit")


def guarded(fn):
    """A loop callback that must not stop the daemon: an unexpected error (a bug) is
    logged once per kind with its traceback at debug level, counted, and the loop goes on."""
    import functools

    @functools.wraps(fn)
    def wrapper(self, *args):
        try:
            return fn(self, *args)
        except XdmvpnError as exc:
            self.stats[f"error.{fn.__name__}"] += 1
            log.warning("%s", exc)
        except Exception as exc:
            self.stats[f"bug.{fn.__name__}"] += 1
            log.error("internal error in %s: %s: %s (counted as bug.%s; the daemon goes on)",
                      fn.__name__, type(exc).__name__, exc, fn.__name__)
            log.debug("traceback", exc_info=True)
    return wrapper


def need_root() -> None:
    if os.geteuid() != 0:
        raise XdmvpnError("xdmvpn run needs root (BPF, raw sockets, netlink): run it as "
                          "root or under the systemd unit")


def _check_listen(m) -> None:
    """A one-line XdmvpnError when the metrics address cannot be listened on (port taken,
    address not on this host), found before the data plane is built; the exporter binds
    it later and says the same if it was taken meanwhile."""
    if m.listen is None:
        return
    family = socket.AF_INET6 if ":" in m.host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the exporter does
        probe.bind((m.host, m.port))
    except OSError as exc:
        raise XdmvpnError(f"metrics.listen {m.listen}: cannot listen "
                          f"({exc.strerror or exc})") from None
    finally:
        probe.close()


OPEN_FILES = 65536     # what the daemon raises its soft RLIMIT_NOFILE to (within the hard one)


def raise_open_files(want: int = OPEN_FILES) -> int:
    """Raise the soft limit on open files toward want (never above the hard limit, never
    down): a daemon started by hand gets the shell's 1,024, which 1,100 idle control-socket
    clients exhausted. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class Daemon:
    """One node's daemon, built on the loop thread with all its parts in dependency order:
    configuration -> NBMA address -> IPsec peers (credentials refused before any BPF) ->
    data plane -> routes -> GRE socket -> effects (with IPsec and the mirror's callback) ->
    engine node -> data-plane mirror. Each part gets its collaborators in its constructor;
    the callbacks into the daemon run only once `main` has started the loop's readers (a
    mapping change during the construction finds the first mirror sync pending). Should
    the tunnel address, routes or GRE socket fail, the data plane just started is taken
    down again (left running with --keep-dataplane).

    Readers get the node's state through `view()` (on the loop thread) or `read(fn)` (from
    another thread): the control socket's snapshot and stats, the metrics exporter."""

    def __init__(self, cfg, config_path: str | None = None, keep_dataplane: bool = False):
        need_root()
        raise_open_files()
        self.cfg = cfg
        self.config_path = config_path
        self.keep_dataplane = keep_dataplane
        self._serving = False             # our control socket is bound (teardown removes it)
        self.stats: Counter[str] = Counter()
        self.netlink = NetlinkThread()
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._ring_fd: int | None = None     # None: the ring buffer is polled
        self._nhs_states: tuple = ()
        self._sync_pending = True            # the first mirror sync ends the construction
        self._nbma_checking = False    # a look for our NBMA address is under way
        self._nbma_again = False       # an address event came meanwhile: look once more
        self._gre_more: set[int] = set()     # GRE sockets (by family) whose full batch asked
        #                                      for the next one

        # our NBMA addresses, the primary first: one per underlay family (a hub may have
        # both); NHRP over each has its own GRE socket
        self.nbmas: tuple[IPAddress, ...] = self._own_nbmas()
        self.nbma: IPAddress = self.nbmas[0]
        if cfg.ipsec is not None and any(a.version == 6 for a in self.nbmas):
            raise XdmvpnError("[ipsec] runs over an IPv4 underlay only (NBMA "
                              f"{' '.join(str(a) for a in self.nbmas)}): leave out [ipsec] "
                              "or use an IPv4 source-address")
        self.ipsec: IpsecPeers | None = None if cfg.ipsec is None else IpsecPeers.for_daemon(
            cfg, self.nbma, None, self._on_ipsec_change)
        self.dp: TunnelDataplane
        self.maps: DataplaneMaps
        # before anything is built: a refusal leaves nothing behind
        control.check_free(cfg.control.socket)
        _check_listen(cfg.metrics)
        self.dp, self.maps = self._start_dataplane()
        self.gres: dict[int, GreSocket] = {}
        self.rxs: dict[int, GreReceiver] = {}
        try:
            for address in cfg.tunnel.addresses:
                self.netlink.call(ensure_address, cfg.tunnel.name, address)
            self.routes = KernelRoutes(cfg.tunnel.name, self.stats,
                                       on_change=self._schedule_sync,
                                       on_address=self._address_changed)
            for nbma in self.nbmas:
                self.gres[nbma.version] = GreSocket(nbma, cfg.tunnel.key,
                                                    device=cfg.tunnel.source_interface,
                                                    rcvbuf=GRE_RCVBUF)
                self.rxs[nbma.version] = GreReceiver(self.gres[nbma.version], GRE_BATCH)
            self.gre = self.gres[self.nbma.version]
        except BaseException:
            for sock in self.gres.values():
                sock.close()
            self.netlink.call(self.dp.stop if self.keep_dataplane else self.dp.destroy)
            raise
        params = self._params(cfg)
        if self.ipsec is not None:
            self.ipsec.set_maps(self.maps)
            self.ipsec.set_nhs(n.nbma for p in params for n in p.nhs)
        self.fx = LiveEffects(self.gre, self.maps, self.routes, self._nhs_order(params),
                              ipsec=self.ipsec, on_mapping_change=self._mapping_changed,
                              gres=self.gres)
        self.fx.send_batch = SendBatch(gre_header(cfg.tunnel.key), GRE_BATCH)
        self.fx.flush_every = FLUSH_EVERY
        already = {m.prefix.network_address: m.nbma for m in self.maps.mappings()}
        self.node = Stack(params, self.fx, rng=random.Random())
        self.mirror = DataplaneMirror(self.node, self.fx, self.routes)
        kept = self.mirror.adopt(self.node.clock.now(), params[0].holdtime)
        if already:
            log.info("adopted the pinned data plane: %d mappings, %d prefixes kept until "
                     "claimed again", *kept)
        self.mirror.sync()
        self._sync_pending = False
        log.info("%s %s: tunnel %s on %s, NBMA %s, XDP %s", cfg.role, cfg.control.instance,
                 " ".join(str(a) for a in cfg.tunnel.addresses), cfg.tunnel.source_interface,
                 " ".join(str(a) for a in self.nbmas), self.dp.xdp_used_mode)

    def _own_nbmas(self) -> tuple[IPAddress, ...]:
        """The configured source addresses, else the underlay's first IPv4 address, else
        its first global IPv6 address."""
        t = self.cfg.tunnel
        if t.source_addresses:
            return t.source_addresses
        for version in (4, 6):
            addr = self.netlink.call(first_address, t.source_interface, version)
            if addr is not None:
                return (addr,)
        raise XdmvpnError(f"{t.source_interface} has no IPv4 or global IPv6 address yet and "
                          "tunnel.source-address is not set")

    def _start_dataplane(self) -> tuple[TunnelDataplane, DataplaneMaps]:
        """Compile, load and attach (or adopt what is pinned) for our NBMA address."""
        t, n = self.cfg.tunnel, self.cfg.nhrp
        ipsec = self.cfg.ipsec
        dp = self.netlink.call(TunnelDataplane(
            name=t.name, underlay=t.source_interface, **self._dataplane_families(),
            gre_key=t.key, redirect=n.redirect, ttl=t.ttl, df=_df(t.df),
            adjust_mss=t.adjust_mss or 0, nhrp_max_send=n.max_send.packets,
            nhrp_max_send_every=n.max_send.interval, mtu=t.mtu,
            nhrp_unknown_budget=n.unknown_budget.burst,
            nhrp_unknown_every=n.unknown_budget.burst / n.unknown_budget.rate,
            pin_name=self.cfg.control.instance,
            ipsec=ipsec is not None and ipsec.required,
            esp_rx=ipsec is not None and esp_missing() is None).start)
        assert dp.maps is not None and dp.loaded is not None     # start() opened them
        ld = dp.loaded
        log.info("data plane compiled and loaded by a child process in %.2f s (compile "
                 "%.2f s, load %.2f s, child peak RSS %d MB); maps reached through their pins",
                 ld.child_s, ld.compile_s, ld.load_s, ld.child_rss_bytes >> 20)
        own6 = t.address_of(6)
        if own6 is not None:
            dp.maps.set_overlay_address6(own6.ip)    # the source of Packet Too Big
        return dp, dp.maps

    def _dataplane_families(self) -> dict:
        """Our NBMA address(es) and overlay families as the data plane is built with them:
        the IPv4 one (else the IPv6 one) as local_nbma, an IPv6 one besides as
        local_nbma6, IPv6 on the tunnel interface for an IPv6 overlay."""
        v4 = next((a for a in self.nbmas if a.version == 4), None)
        v6 = next((a for a in self.nbmas if a.version == 6), None)
        return {"local_nbma": str(v4 or v6), "local_nbma6": str(v6) if v4 and v6 else None,
                "overlay_ipv6": self.cfg.tunnel.address_of(6) is not None}

    def _params(self, cfg) -> list[NodeParams]:
        """The engine's parameters, one set per overlay family; a hub refuses
        registrations (insufficient resources) before the data plane's mapping table is
        full, never after."""
        return [replace(p, max_entries=min(p.max_entries, MAX_PEERS - 256))
                for p in stack_from_config(cfg, self.nbmas)]

    def _nhs_order(self, params: list[NodeParams]) -> tuple:
        servers = sorted((n for p in params for n in p.nhs), key=lambda n: n.priority)
        return tuple(dict.fromkeys(n.nbma for n in servers))

    # -- the state view ------------------------------------------------------------------------
    def view(self) -> DaemonView:
        """The node's state, read-only; on the loop thread."""
        cfg = self.cfg
        m = cfg.metrics
        info = NodeInfo(cfg.tunnel.name, cfg.role, cfg.control.instance, self.nbma,
                        self.dp.xdp_used_mode, self.gre.rcvbuf)
        return DaemonView(self.node, info,
                          per_peer_limit=m.per_peer_limit if m.per_peer else None,
                          counters=self.stats, effects=self.fx, maps=self.maps,
                          mirror=self.mirror, ipsec=self.ipsec)

    def read(self, fn: Callable[[DaemonView], T], timeout: float = 5.0) -> T:
        """fn(view()) run on the loop thread, its result returned: for readers in other
        threads (the metrics HTTP server), so they never see state mid-change."""
        async def call() -> T:
            return fn(self.view())
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    # -- the loop -------------------------------------------------------------------------------
    async def main(self) -> int:
        loop = self._loop
        try:
            server = await control.serve(self.cfg.control.socket, self.handle, self.stats)
            self._serving = True
        except BaseException:
            self._teardown(purge=False)
            raise
        try:
            metrics = None
            if self.cfg.metrics.listen is not None:
                # prometheus_client (~3.5 MB resident) only in a daemon that serves metrics
                from ..exporter import server as metrics_server
                metrics = metrics_server.start(self.cfg.metrics, self)
        except BaseException:
            server.close()
            self._teardown(purge=False)
            raise
        for gre in self.gres.values():
            loop.add_reader(gre.fileno(), self._on_gre, gre)
        self._open_events(loop)
        self.routes.follow(loop)
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        housekeeping = loop.create_task(self._housekeeping())
        if self.ipsec is not None:
            self.ipsec.start()
        self._after_event()
        settle_gc()
        log.info("control socket %s", self.cfg.control.socket)
        await self._stopping.wait()
        housekeeping.cancel()
        server.close()
        for gre in self.gres.values():
            loop.remove_reader(gre.fileno())
        if self._ring_fd is not None:
            loop.remove_reader(self._ring_fd)
        if self._timer is not None:
            self._timer.cancel()
        self._teardown(purge=not self.keep_dataplane, metrics=metrics)
        if self.ipsec is not None:
            await self.ipsec.stop(terminate=not self.keep_dataplane)
        return 0

    def _open_events(self, loop) -> None:
        self.maps.events(0)                       # opens the ring buffer
        self._ring_fd = ring_epoll_fd(self.dp.module)
        if self._ring_fd is not None:
            loop.add_reader(self._ring_fd, self._on_events)
        else:
            log.warning("no epoll fd for the ring buffer: polling every %g ms",
                        EVENT_POLL * 1000)
            loop.call_later(EVENT_POLL, self._poll_events)

    def _mapping_changed(self, proto) -> None:
        """Only a gateway of a route on the overlay matters to the mirror: a hub
        registering thousands of spokes must not dump the routing table for each. (While
        a sync is pending, as during the construction, there is nothing to ask.)"""
        if not self._sync_pending and proto in self.mirror.gateways:
            self._schedule_sync()

    def _schedule_sync(self) -> None:
        if self._sync_pending:
            return
        self._sync_pending = True
        asyncio.get_running_loop().call_later(SYNC_DELAY, self._sync)

    @guarded
    def _sync(self) -> None:
        """The mirror looks at the routes the kernel told us about (no netlink here)."""
        self._sync_pending = False
        try:
            self.mirror.sync()
        except XdmvpnError as exc:
            self.stats["sync_error"] += 1
            log.warning("%s", exc)

    def _poll_events(self) -> None:
        self._on_events()
        if not self._stopping.is_set():
            asyncio.get_running_loop().call_later(EVENT_POLL, self._poll_events)

    @guarded
    def _on_gre(self, gre: GreSocket | None = None) -> None:
        """One batch from a GRE socket (one per underlay family, the primary by default: one
        recvmmsg), its replies sent together at the end (one sendmmsg). A full batch means
        more is waiting: the next batch runs at the loop's next turn (after timers and the
        control socket had theirs), the reader paused meanwhile so that it does not run
        twice."""
        gre = gre or self.gre
        rx = self.rxs[gre.version]
        batch = rx.receive()
        stats = self.stats
        stats["gre_rx"] += len(batch)
        ipsec, receive = self.ipsec, self.node.receive
        # behind (the socket's buffer half full): what strangers sent is shed, so that the
        # buffer never fills and drops what known peers send (a flood of random sources
        # the data plane's global budget admitted, more than the engine can take)
        known = self.node.known if len(batch) == rx.capacity and rx.behind() else None
        with self.fx.hold():
            for data, src in batch:
                if data is None:
                    stats[f"gre_drop.{src}"] += 1
                    continue
                if known is not None and not known(src):
                    stats["gre_drop.shed_unknown"] += 1
                    continue
                if ipsec is not None and not ipsec.accepts(src):
                    stats["nhrp_drop.no_ipsec_sa"] += 1      # before any state changes
                    continue
                try:
                    receive(data, src)
                except Exception as exc:      # a bug: this packet is lost, not the batch
                    stats["bug.receive"] += 1
                    log.error("internal error on NHRP from %s: %s: %s (counted as "
                              "bug.receive)", src, type(exc).__name__, exc)
                    log.debug("traceback", exc_info=True)
        dropped = rx.take_dropped()
        if dropped:
            stats["gre_rx_kernel_drops"] += dropped
        if len(batch) == rx.capacity and gre.version not in self._gre_more:
            self._gre_more.add(gre.version)
            loop = asyncio.get_running_loop()
            loop.remove_reader(gre.fileno())
            loop.call_soon(self._gre_next_batch, gre)
        self._after_event()

    def _gre_next_batch(self, gre: GreSocket) -> None:
        self._gre_more.discard(gre.version)
        if self._stopping.is_set() or self.gres.get(gre.version) is not gre:
            return
        asyncio.get_running_loop().add_reader(gre.fileno(), self._on_gre, gre)
        self._on_gre(gre)

    @guarded
    def _on_events(self) -> None:
        for ev in self.maps.events(0):
            if ev.kind == "trigger":
                self.stats["trigger"] += 1
                self.node.on_trigger(ev.nbma_src, ev.src, ev.dst, ev.packet)
            else:
                self.stats[f"event.{ev.kind}"] += 1
        self._after_event()

    @guarded
    def _after_event(self) -> None:
        """Run what is due and arm the timer for the next deadline."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        # armed first: if tick() fails (a bug), the timers still run a second later
        self._timer = loop.call_at(loop.time() + 1.0, self._after_event)
        deadline = self.node.tick()
        if deadline is not None:
            self._timer.cancel()
            self._timer = loop.call_at(max(deadline, loop.time()) + 0.001, self._after_event)
        states = tuple(c.state for c in self.node.nhcs)
        if states != self._nhs_states:
            for i, c in enumerate(self.node.nhcs):
                before = self._nhs_states[i] if i < len(self._nhs_states) else None
                if c.state is not before and c.state is not NhcState.REGISTERING:
                    log.info("NHS %s (%s) %s", c.nhs.nbma, c.proto or "dynamic",
                             c.state.value)
            self._nhs_states = states

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            try:
                self.mirror.expire_adopted(self.node.clock.now())
            except XdmvpnError as exc:
                self.stats["housekeeping_error"] += 1
                log.warning("%s", exc)
            self._sync()

    def _on_ipsec_change(self, peers: set) -> None:
        """IKE/CHILD SAs to these NBMA peers came or went: identities in the cache,
        shortcuts onto (or off) the direct path."""
        ipsec = self.ipsec
        if ipsec is None:                    # only IPsec calls this
            return
        for peer in peers:
            self.node.set_identity(peer, ipsec.identity(peer))
            if peer in ipsec.just_up:
                self.node.path_up(peer)
        self.fx.recheck_shortcuts(peers)
        self._after_event()

    # -- NBMA change, reload -----------------------------------------------------------------------
    def _address_changed(self) -> None:
        """An IPv4 address came or went: without tunnel.source-address, look (in the
        netlink thread) whether ours changed. An event while a look is under way asks for
        one more after it (renumbering is a removal then an addition: the look answering
        the first may run before the second exists)."""
        if self.cfg.tunnel.source_address is not None:
            return
        if self._nbma_checking:
            self._nbma_again = True
            return
        self._nbma_checking = True
        future = asyncio.wrap_future(self.netlink.submit(
            first_address, self.cfg.tunnel.source_interface, self.nbma.version))
        future.add_done_callback(self._nbma_found)

    @guarded
    def _nbma_found(self, future) -> None:
        self._nbma_checking = False
        again, self._nbma_again = self._nbma_again, False
        if future.cancelled() or self._stopping.is_set():
            return
        try:
            new = future.result()
        except XdmvpnError as exc:
            self.stats["sync_error"] += 1
            log.warning("%s", exc)
            new = None
        self._check_nbma(new)
        if again:
            self._address_changed()

    def _check_nbma(self, new) -> None:
        if new is None or new == self.nbma:
            return
        log.info("NBMA address changed %s -> %s: purging and registering again",
                 self.nbma, new)
        self.nbma = new
        self.nbmas = (new,) + self.nbmas[1:]
        self._rebuild_dataplane()
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.gre.fileno())
        self.gre.close()
        self.gre = GreSocket(new, self.cfg.tunnel.key, device=self.cfg.tunnel.source_interface,
                             rcvbuf=GRE_RCVBUF)
        self.gres[new.version] = self.gre
        self.rxs[new.version] = GreReceiver(self.gre, GRE_BATCH)
        self.fx.gre = self.gre
        self.fx.gres = self.gres
        loop.add_reader(self.gre.fileno(), self._on_gre, self.gre)
        if self.ipsec is not None:
            self.ipsec.manager.set_own_nbma(new)
        self.node.nbma_changed(new)
        self._after_event()

    def _rebuild_dataplane(self) -> None:
        """Recompile with new -D values; the pinned maps are adopted, programs replaced in
        place, so forwarding does not stop."""
        loop = asyncio.get_running_loop()
        if self._ring_fd is not None:
            loop.remove_reader(self._ring_fd)
            self._ring_fd = None
        self.dp.stop()
        self.dp, self.maps = self._start_dataplane()
        self.fx.maps = self.maps
        if self.ipsec is not None:
            self.ipsec.set_maps(self.maps)
        self._open_events(loop)

    @guarded
    def reload(self) -> None:
        path = self.config_path
        try:
            new = config_mod.load(path)
        except XdmvpnError as exc:
            log.error("reload refused, running configuration kept: %s", exc)
            self.stats["reload_failed"] += 1
            return
        old_d, new_d = self.cfg.to_dict(), new.to_dict()
        fixed = [f"tunnel.{k}" for k in RESTART_KEYS if old_d["tunnel"][k] != new_d["tunnel"][k]]
        fixed += [f"control.{k}" for k in ("instance", "socket")
                  if old_d["control"][k] != new_d["control"][k]]
        if old_d["metrics"]["listen"] != new_d["metrics"]["listen"]:
            fixed.append("metrics.listen")
        if new.role != self.cfg.role:
            fixed.append("role")
        fixed += IpsecPeers.restart_keys(self.cfg.ipsec, new.ipsec)
        if fixed:
            log.error("reload refused, running configuration kept: %s change only with a "
                      "restart", ", ".join(fixed))
            self.stats["reload_failed"] += 1
            return
        rebuild = any(old_d["tunnel"][k] != new_d["tunnel"][k] for k in DATAPLANE_KEYS) or (
            self.cfg.nhrp.redirect != new.nhrp.redirect
            or self.cfg.nhrp.max_send != new.nhrp.max_send
            or self.cfg.nhrp.unknown_budget != new.nhrp.unknown_budget)
        self.cfg = new
        params = self._params(new)
        self.fx.nhs_order = self._nhs_order(params)
        if self.ipsec is not None:
            self.ipsec.reconfigure(new.ipsec, (n.nbma for p in params for n in p.nhs))
        self.node.reconfigure(params)
        if rebuild:
            self._rebuild_dataplane()
        self.mirror.sync()
        self.stats["reloads"] += 1
        log.info("configuration reloaded from %s%s", path,
                 " (data plane rebuilt)" if rebuild else "")
        self._after_event()

    # -- stop -------------------------------------------------------------------------------------------
    def _teardown(self, purge: bool, metrics: MetricsServer | None = None) -> None:
        if metrics is not None:
            metrics.stop()
        if purge:
            n = self.node.shutdown()
            log.info("clean shutdown: %d purge requests sent", n)
        for gre in self.gres.values():
            gre.close()
        if purge:
            self.routes.flush_ours()
            self.netlink.call(self.dp.destroy)
        else:
            self.dp.stop()
            log.info("data plane left running (pinned under /sys/fs/bpf/xdmvpn/%s)",
                     self.cfg.control.instance)
        self.routes.close()
        self.netlink.close()
        if self._serving:                # never another daemon's socket, nor a file
            try:
                Path(self.cfg.control.socket).unlink()
            except FileNotFoundError:
                pass

    # -- control requests ---------------------------------------------------------------------------
    def handle(self, req: dict) -> dict:
        cmd = req["cmd"]
        if cmd == "ping":
            return {"instance": self.cfg.control.instance, "pid": os.getpid()}
        if cmd == "snapshot":
            return {"snapshot": show.snapshot(self.view())}
        if cmd == "stats":
            return show.stats(self.view())
        if cmd == "clear":
            what = req.get("what")
            if what == "cache":
                n = self.node.clear_cache()
            elif what == "shortcut":
                n = self.node.clear_shortcuts()
            else:
                raise XdmvpnError('clear what? "cache" or "shortcut"')
            self._after_event()
            return {"cleared": n}
        if cmd == "reload":
            self.reload()
            return {"reloads": self.stats["reloads"]}
        raise XdmvpnError(f"unknown command {cmd!r}")


def settle_gc() -> None:
    """After start-up: what it made (modules, configuration, the data plane's tables) lives
    as long as the daemon, so it is moved out of the collector's sight (gc.freeze), and the
    youngest generation is collected every GC_THRESHOLD[0] container allocations instead of
    700. A hub registering spokes keeps most of what it allocates (cache entries, reply
    templates, heap items): with the defaults the collector walked them again and again,
    and the start-up objects with every full collection (`xdmvpn bench control`: a fifth of
    the hub's CPU per new registration). Only reference cycles wait longer for collection;
    the engine's tables make none."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run(cfg, config_path: str | None, keep_dataplane: bool = False) -> int:
    async def main() -> int:
        return await Daemon(cfg, config_path, keep_dataplane).main()
    return asyncio.run(main())
