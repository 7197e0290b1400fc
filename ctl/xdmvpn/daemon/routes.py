"""Kernel routes for the daemon, without ever blocking its event loop on netlink.

* **Writes** (shortcut routes, under our own protocol number) go to one worker thread with
  its own netlink socket. `add`/`delete` return at once: what the loop asks for in one
  callback becomes one batch (the last operation per prefix wins, so an add then a delete of
  one prefix ends deleted), the worker sends it and reads the kernel's acknowledgements,
  and the loop gets the results back: a failure is counted (`route_failed`) and logged.
  One batch at a time, in order, so operations on one prefix never overtake each other.
* **The engine's question** "where does the routing table send dst" is answered by the
  kernel itself (RTM_GETROUTE, what `ip route get fibmatch` asks): ip rules, and the VRF
  when the overlay is enslaved to one. The kernel answers within the send() on a dedicated
  socket (no lock taken: the IPv4 getroute handler runs without RTNL), so the loop asks
  synchronously: about 17 microseconds a lookup, measured in tests/daemon/test_routes.py.
* **The overlay's table as the mirror needs it** (`RouteTable`) is dumped once and then
  followed through the route notifications of the monitor socket; it is dumped again only
  when notifications were lost (ENOBUFS) or the kernel removed routes without telling
  (an interface going down, an address removed, the overlay moving to another VRF).
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import logging
import os
import socket
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address, ip_network
from typing import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..engine.effects import RouteHint
from ..inet import IPAddress
from ..errors import XdmvpnError
from ..transport import size_receive_buffer
from . import rtnl
from .rtnl import Ack, AddrMsg, Done, LinkMsg, RouteMsg

log = logging.getLogger(__name__)

#: rtm_protocol of the routes xdmvpn installs (FRR uses 186-198 and 11, bird 12): routing
#: daemons and `ip route show proto 202` tell them apart.
RTPROT_XDMVPN = 202
RT_TABLE_MAIN = rtnl.RT_TABLE_MAIN
BATCH = 128                 # route messages per send() to the kernel
ANSWER_TIMEOUT = 5.0        # seconds the worker waits for the kernel (it answers at once)
MONITOR_RCVBUF = 4 << 20    # bytes of notifications the monitor socket may hold
RECV_SIZE = 1 << 17         # a dump datagram is at most a few pages


class Channel:
    """One rtnetlink socket for requests and their answers (member of no multicast group).
    timeout None: non-blocking (the loop's lookups); else blocking with that timeout."""

    def __init__(self, timeout: float | None):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        for option in (rtnl.NETLINK_CAP_ACK, rtnl.NETLINK_GET_STRICT_CHK):
            try:
                self.sock.setsockopt(rtnl.SOL_NETLINK, option, 1)
            except OSError:
                pass        # older kernels: longer error answers, dumps not filtered
        self.sock.bind((0, 0))
        if timeout is None:
            self.sock.setblocking(False)
        else:
            self.sock.settimeout(timeout)
        self._seq = 0

    def seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    def close(self) -> None:
        self.sock.close()

    def call(self, build: Callable[[int], bytes]) -> rtnl.Message:
        """Send one request, return its one answer (a message, or an Ack with the error)."""
        seq = self.seq()
        self.sock.send(build(seq))
        while True:
            for got, msg in rtnl.parse(self.sock.recv(RECV_SIZE)):
                if got == seq:
                    return msg

    def dump(self, build: Callable[[int], bytes]) -> list[rtnl.Message]:
        seq = self.seq()
        self.sock.send(build(seq))
        out: list[rtnl.Message] = []
        while True:
            for got, msg in rtnl.parse(self.sock.recv(RECV_SIZE)):
                if got != seq:
                    continue
                if isinstance(msg, Done):
                    return out
                if isinstance(msg, Ack):
                    if msg.error:
                        raise OSError(msg.error, os.strerror(msg.error))
                    continue
                out.append(msg)

    def write(self, requests: list[Callable[[int], bytes]]) -> list[int]:
        """Send acknowledged requests in one datagram (each built with its sequence number),
        return each one's errno (0: done). The kernel takes them one after the other."""
        seqs = [self.seq() for _ in requests]
        self.sock.send(b"".join(build(seq) for build, seq in zip(requests, seqs)))
        wanted = set(seqs)
        results: dict[int, int] = {}
        while len(results) < len(seqs):
            for got, msg in rtnl.parse(self.sock.recv(RECV_SIZE)):
                if isinstance(msg, Ack) and got in wanted:
                    results[got] = msg.error
        return [results[seq] for seq in seqs]


@dataclass(frozen=True)
class Context:
    """Where the overlay's routes live: its interface index, the VRF device it is
    enslaved to (0: none) and the table the overlay's routes are in (the VRF's, or main)."""
    overlay: int
    vrf: int = 0
    table: int = RT_TABLE_MAIN


def overlay_context(channel: Channel, overlay: int) -> Context:
    """The overlay's context, asked of the kernel (RTM_GETLINK of it and of its master)."""
    link = channel.call(lambda seq: rtnl.link_get(seq, overlay))
    if not isinstance(link, LinkMsg):
        raise XdmvpnError(f"overlay interface index {overlay} is gone")
    if link.master:
        master = channel.call(lambda seq: rtnl.link_get(seq, link.master))
        if isinstance(master, LinkMsg) and master.kind == "vrf" and master.vrf_table:
            return Context(overlay, master.index, master.vrf_table)
    return Context(overlay)


# -- the engine's question --------------------------------------------------------------------

class RouteLookup:
    """The kernel's routing decision for one destination, asked synchronously on the loop
    (the kernel queues the answer before send() returns, so recv() never waits)."""

    def __init__(self, context: Context, stats: Counter | None = None):
        self.context = context
        self.channel = Channel(timeout=None)
        self.stats = stats if stats is not None else Counter()

    def close(self) -> None:
        self.channel.close()

    def _ask(self, dst: IPv4Address, fib_match: bool) -> RouteMsg | None:
        ch = self.channel
        seq = ch.seq()
        try:
            ch.sock.send(rtnl.route_get(seq, dst, self.context.vrf, fib_match))
            while True:
                for got, msg in rtnl.parse(ch.sock.recv(RECV_SIZE)):
                    if got == seq:
                        return msg if isinstance(msg, RouteMsg) else None   # no route
        except BlockingIOError:
            self.stats["route_lookup_unanswered"] += 1
        except OSError as exc:
            self.stats["route_lookup_failed"] += 1
            log.warning("route lookup for %s: %s", dst, exc.strerror or exc)
        return None

    def lookup(self, dst: IPv4Address) -> RouteHint:
        """Do we answer for dst (ours, or behind us off the tunnel: local, with the length
        of that route), or which tunnel next hop does the routing table send it to?"""
        self.stats["route_lookups"] += 1
        match = self._ask(dst, fib_match=True)
        if match is None:
            return RouteHint()
        if match.type == rtnl.RTN_LOCAL:
            return RouteHint(local=True, prefix_len=dst.max_prefixlen)
        if match.type != rtnl.RTN_UNICAST:        # blackhole, unreachable, broadcast...
            return RouteHint()
        oif, gateway = match.oif, match.gateway
        if match.multipath:                       # the path the kernel picks for dst
            path = self._ask(dst, fib_match=False)
            if path is None:
                return RouteHint()
            oif, gateway = path.oif, path.gateway
        if oif != self.context.overlay:
            if match.dst.prefixlen == 0:          # a default route elsewhere claims nothing
                return RouteHint()
            return RouteHint(local=True, prefix_len=match.dst.prefixlen)
        return RouteHint(via=gateway or dst, prefix_len=match.dst.prefixlen)


# -- writing ----------------------------------------------------------------------------------

class RouteWriter:
    """Our routes written by one worker thread; see the module's docstring."""

    def __init__(self, context: Context, stats: Counter, overlay_name: str = ""):
        self.context = context
        self.stats = stats
        self.name = overlay_name or f"ifindex {context.overlay}"
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routes")
        self._channel = Channel(timeout=ANSWER_TIMEOUT)      # used by the worker only
        self._pending: dict[IPv4Network, IPv4Address | None] = {}   # prefix -> via; None: del
        self._writing: dict[IPv4Network, IPv4Address | None] = {}
        self._batch: Future | None = None
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # the loop's side
    def add(self, prefix: IPv4Network, via: IPv4Address) -> None:
        self._queue(prefix, via)

    def delete(self, prefix: IPv4Network) -> None:
        self._queue(prefix, None)

    def busy(self, prefix: IPv4Network) -> bool:
        """An operation on prefix is queued or being written."""
        return prefix in self._pending or prefix in self._writing

    def _queue(self, prefix: IPv4Network, via: IPv4Address | None) -> None:
        self._pending.pop(prefix, None)           # the latest operation goes last
        self._pending[prefix] = via
        if not self._scheduled and self._batch is None:
            self._loop = self._loop or asyncio.get_running_loop()
            self._loop.call_soon(self._flush)
            self._scheduled = True

    def _flush(self) -> None:
        self._scheduled = False
        if self._batch is not None or not self._pending:
            return
        self._writing, self._pending = self._pending, {}
        self.stats["route_batches"] += 1
        self._batch = self._worker.submit(self._write, list(self._writing.items()),
                                          self.context)
        loop = self._loop
        self._batch.add_done_callback(lambda f: loop.call_soon_threadsafe(self._written, f))

    def _written(self, batch: Future) -> None:
        self._batch = None
        try:
            results = batch.result()
        except Exception as exc:       # the socket failed or the kernel never answered
            results = [(p, via, exc) for p, via in self._writing.items()]
        self._account(results)
        self._writing = {}
        if self._pending:
            self._flush()

    def _account(self, results) -> None:
        for prefix, via, err in results:
            if via is None and err in (0, errno.ESRCH, errno.ENOENT):
                self.stats["route_deleted"] += 1
            elif err == 0:
                self.stats["route_added"] += 1
            else:
                self.stats["route_failed"] += 1
                why = os.strerror(err) if isinstance(err, int) else str(err)
                if via is None:
                    log.warning("cannot remove route %s from %s: %s", prefix, self.name, why)
                else:
                    log.warning("cannot install route %s via %s on %s: %s", prefix, via,
                                self.name, why)

    # the worker's side
    def _write(self, ops, context: Context) -> list:
        out = []
        for i in range(0, len(ops), BATCH):
            chunk = ops[i:i + BATCH]
            requests = [_route_request(prefix, via, context) for prefix, via in chunk]
            try:
                errs: list = self._channel.write(requests)
            except OSError as exc:
                errs = [exc] * len(chunk)
            out += [(prefix, via, err) for (prefix, via), err in zip(chunk, errs)]
        return out

    def submit(self, fn, *args) -> Future:
        """Run fn(channel, *args) in the worker after the writes asked for so far."""
        self._flush()
        return self._worker.submit(fn, self._channel, *args)

    def flush_sync(self) -> None:
        """Block until every operation asked for is written (shutdown only)."""
        if self._batch is not None:
            batch, self._batch = self._batch, None
            try:
                self._account(batch.result(timeout=ANSWER_TIMEOUT * 2))
            except Exception as exc:
                log.warning("route writes did not finish: %s", exc)
            self._writing = {}
        if self._pending:
            ops, self._pending = list(self._pending.items()), {}
            self._account(self._worker.submit(self._write, ops, self.context).result())

    def remove_all(self) -> int:
        """Remove every route of ours on the overlay, whoever's they were (shutdown)."""
        self.flush_sync()

        def job(channel: Channel, context: Context) -> list:
            return self._write([(r.dst, None) for r in _dump_table(channel, context.table)
                                if r.proto == RTPROT_XDMVPN and r.oif == context.overlay],
                               context)
        results = self._worker.submit(job, self._channel, self.context).result()
        self._account(results)
        return len(results)

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self._channel.close()


# -- following the overlay's table ------------------------------------------------------------

class RouteTable:
    """The overlay's routing table as far as the mirror needs it: routes on the overlay with
    a tunnel gateway (not ours), our own routes, and the prefixes routed elsewhere (a route
    on the overlay covering one of those is not mirrored). Kept from one dump and then from
    notifications; where a prefix has several routes, the lowest metric is the one in use."""

    def __init__(self, context: Context):
        self.context = context
        self._routes: dict[IPv4Network, dict[int, RouteMsg]] = {}    # dst -> metric -> route
        self.via: dict[IPv4Network, IPv4Address] = {}
        self.ours: set[IPv4Network] = set()
        self._elsewhere: list[tuple[int, int, int]] = []   # sorted (version, network, length)

    def load(self, routes) -> None:
        self._routes, self.via, self.ours, self._elsewhere = {}, {}, set(), []
        for r in routes:
            self.apply(r)

    def apply(self, msg: RouteMsg) -> bool:
        """Take one route message; True when what the mirror reads (via, elsewhere)
        changed (our own routes coming and going do not count)."""
        if msg.table != self.context.table:
            return False
        dst = msg.dst
        before = self._derive(dst)
        entries = self._routes.get(dst)
        if msg.event == rtnl.RTM_NEWROUTE:
            self._routes.setdefault(dst, {})[msg.metric] = msg
        elif entries is not None:
            entries.pop(msg.metric, None)
            if not entries:
                del self._routes[dst]
        after = self._derive(dst)
        if after[2]:
            self.ours.add(dst)
        else:
            self.ours.discard(dst)
        if after[0] is None:
            self.via.pop(dst, None)
        else:
            self.via[dst] = after[0]
        key = (dst.version, int(dst.network_address), dst.prefixlen)
        if before[1] and not after[1]:
            self._elsewhere.pop(bisect.bisect_left(self._elsewhere, key))
        elif after[1] and not before[1]:
            bisect.insort(self._elsewhere, key)
        return before[:2] != after[:2]

    def _derive(self, dst: IPv4Network) -> tuple[IPv4Address | None, bool, bool]:
        """(tunnel gateway, routed elsewhere, one of ours) for dst."""
        entries = self._routes.get(dst)
        if not entries:
            return None, False, False
        overlay = self.context.overlay
        ours = any(r.proto == RTPROT_XDMVPN and r.oif == overlay for r in entries.values())
        best = entries[min(entries)]
        if best.type != rtnl.RTN_UNICAST:
            return None, False, ours
        if best.oif != overlay:
            return None, dst.prefixlen > 0, ours
        if best.gateway is None or best.proto == RTPROT_XDMVPN:
            return None, False, ours
        return best.gateway, False, ours

    def covers_elsewhere(self, net: IPv4Network) -> IPv4Network | None:
        """A prefix routed elsewhere that lies strictly inside net, if any (sorted by
        address then length, the first one after (net, its length) is inside net or
        nothing is)."""
        i = bisect.bisect_right(self._elsewhere,
                                (net.version, int(net.network_address), net.prefixlen))
        if i < len(self._elsewhere) and self._elsewhere[i][0] == net.version \
                and self._elsewhere[i][1] <= int(net.broadcast_address):
            return ip_network(self._elsewhere[i][1:]) if net.version == 4 \
                else IPv6Network(self._elsewhere[i][1:])
        return None


# -- the whole: writes, lookups, the followed table, the monitor socket -------------------------

class KernelRoutes:
    """What the daemon does with kernel routes. Built on the loop thread; `follow` starts
    reading notifications (and the first dump). `on_change` is called when what the mirror
    reads changed; `on_address` when an IPv4 address came or went on some interface."""

    def __init__(self, overlay: str, stats: Counter | None = None, *,
                 on_change: Callable[[], None] = lambda: None,
                 on_address: Callable[[], None] = lambda: None):
        self.overlay = overlay
        try:
            index = socket.if_nametoindex(overlay)
        except OSError:
            raise XdmvpnError(f"overlay interface {overlay} does not exist") from None
        self.stats = stats if stats is not None else Counter()
        probe = Channel(timeout=ANSWER_TIMEOUT)
        try:
            self.context = overlay_context(probe, index)
        finally:
            probe.close()
        self.writer = RouteWriter(self.context, self.stats, overlay)
        self.finder = RouteLookup(self.context, self.stats)
        self.table = RouteTable(self.context)
        self.on_change = on_change
        self.on_address = on_address
        self._monitor: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffered: list[RouteMsg] | None = None    # notifications during a dump
        self._resync_again = False
        self._loaded = False
        self._down: set[int] = set()

    @property
    def synced(self) -> bool:
        """The followed table is loaded and no dump is under way."""
        return self._loaded and self._buffered is None

    # writes and lookups
    def add(self, prefix: IPv4Network, via: IPv4Address) -> None:
        self.writer.add(prefix, via)

    def delete(self, prefix: IPv4Network) -> None:
        self.writer.delete(prefix)

    def lookup(self, dst: IPv4Address) -> RouteHint:
        return self.finder.lookup(dst)

    # following
    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen to route, address and link notifications, then dump the table once."""
        self._loop = loop
        self._monitor = monitor_socket()
        loop.add_reader(self._monitor.fileno(), self._on_monitor)
        self.resync("start")

    def resync(self, why: str) -> None:
        """Dump the overlay's table again (in the worker); notifications that arrive
        meanwhile are applied after it. Asked during a dump: one more dump after it."""
        self.stats[f"route_resync.{why}"] += 1
        if self._buffered is not None:
            self._resync_again = True
            return
        self._dump()

    def _dump(self) -> None:
        self._buffered = []
        self.stats["route_dumps"] += 1
        table = self.context.table
        future = self.writer.submit(_dump_table, table)
        future.add_done_callback(lambda f: self._loop.call_soon_threadsafe(self._dumped, f))

    def _dumped(self, future: Future) -> None:
        buffered, self._buffered = self._buffered or [], None
        try:
            routes = future.result()
        except Exception as exc:
            self.stats["route_dump_failed"] += 1
            log.warning("route dump of table %d failed: %s", self.context.table, exc)
            routes = None
        if routes is None:          # try again in a second (the mirror keeps what it has)
            self._loop.call_later(1.0, self.resync, "retry")
            return
        self.table.load(routes)
        self._loaded = True
        for msg in buffered:
            self.table.apply(msg)
        if self._resync_again:
            self._resync_again = False
            self._dump()
        self.on_change()

    def _on_monitor(self) -> None:
        changed = address = False
        while True:
            try:
                data = self._monitor.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.stats["route_notifications_lost"] += 1
                self.resync("enobufs")
                address = True
                self._context_check()
                continue
            try:
                messages = list(rtnl.parse(data))
            except rtnl.Overrun:
                self.resync("overrun")
                continue
            for _, msg in messages:
                if isinstance(msg, RouteMsg):
                    self.stats["route_notifications"] += 1
                    if self._buffered is not None:
                        self._buffered.append(msg)
                    else:
                        changed |= self.table.apply(msg)
                elif isinstance(msg, AddrMsg):
                    address = True
                    if msg.event == rtnl.RTM_DELADDR:   # routes through it went silently
                        self.resync("address_removed")
                elif isinstance(msg, LinkMsg):
                    self._on_link(msg)
        if changed:
            self.on_change()
        if address:
            self.on_address()

    def _on_link(self, msg: LinkMsg) -> None:
        gone = msg.event == rtnl.RTM_DELLINK or not msg.up
        if gone and msg.index not in self._down:
            self.resync("link_down")           # IPv4 flushes its routes without a word
        if gone:
            self._down.add(msg.index)
        else:
            self._down.discard(msg.index)
        if msg.index == self.context.overlay and msg.master != self.context.vrf:
            self._context_check()

    def _context_check(self) -> None:
        future = self.writer.submit(overlay_context, self.context.overlay)
        future.add_done_callback(lambda f: self._loop.call_soon_threadsafe(self._context, f))

    def _context(self, future: Future) -> None:
        try:
            context = future.result()
        except Exception as exc:
            log.warning("overlay %s: %s", self.overlay, exc)
            return
        if context == self.context:
            return
        log.info("overlay %s now routes in table %d%s", self.overlay, context.table,
                 f" (VRF ifindex {context.vrf})" if context.vrf else "")
        self.context = self.writer.context = self.finder.context = context
        self.table.context = context
        self.resync("vrf")

    def close(self) -> None:
        if self._monitor is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._monitor.fileno())
            self._monitor.close()
            self._monitor = None
        self.writer.close()
        self.finder.close()

    def flush_ours(self) -> int:
        """Remove every route of ours on the overlay (shutdown; blocks until done)."""
        return self.writer.remove_all()


def _route_request(prefix: IPv4Network, via: IPv4Address | None,
                   context: Context) -> Callable[[int], bytes]:
    if via is None:
        return lambda seq: rtnl.route_del(seq, prefix, context.overlay, RTPROT_XDMVPN,
                                          context.table)
    return lambda seq: rtnl.route_add(seq, prefix, via, context.overlay, RTPROT_XDMVPN,
                                      context.table)


def _dump_table(channel: Channel, table: int) -> list[RouteMsg]:
    """The table's IPv4 and IPv6 routes (one dump per family)."""
    return [m for version in (4, 6)
            for m in channel.dump(lambda seq, v=version: rtnl.route_dump(seq, table, v))
            if isinstance(m, RouteMsg) and m.table == table]


def monitor_socket() -> socket.socket:
    """A non-blocking rtnetlink socket that receives link, IPv4 address and IPv4 route
    notifications, with room for bursts (thousands of route changes)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    size_receive_buffer(sock, MONITOR_RCVBUF)
    sock.bind((0, rtnl.RTMGRP_LINK | rtnl.RTMGRP_IPV4_IFADDR | rtnl.RTMGRP_IPV4_ROUTE
               | rtnl.RTMGRP_IPV6_IFADDR | rtnl.RTMGRP_IPV6_ROUTE))
    sock.setblocking(False)
    return sock


# -- addresses (start-up and NBMA checks, in the NetlinkThread) ---------------------------------

def first_ipv4(ifname: str) -> IPv4Address | None:
    """The first IPv4 address of an interface (the NBMA address when none is configured)."""
    addr = first_address(ifname, 4)
    return addr if isinstance(addr, IPv4Address) else None


def first_address(ifname: str, version: int) -> IPAddress | None:
    """The first address of this family of an interface (IPv6: global scope, not
    tentative), the NBMA address when none is configured."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise XdmvpnError(f"underlay interface {ifname} does not exist")
        for msg in ipr.get_addr(family=family, index=found[0]):
            addr = msg.get_attr("IFA_ADDRESS")
            if not addr:
                continue
            if version == 6 and (msg["scope"] != 0 or msg["flags"] & IFA_F_TENTATIVE):
                continue
            return ip_address(addr)
    return None


IFA_F_NODAD, IFA_F_TENTATIVE = 0x02, 0x40       # linux/if_addr.h


def ensure_address(ifname: str, address) -> None:
    """Put the tunnel address (an ip_interface) on the overlay interface, once (IPv6 with
    no duplicate address detection: the overlay is ours, and a tentative address could
    not send yet)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    if address.version == 6:            # the overlay pair is made with IPv6 off
        try:
            Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("0")
        except OSError as exc:
            raise XdmvpnError(f"cannot enable IPv6 on {ifname}: {exc.strerror}") from None
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        have = {(m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in ipr.get_addr(family=family, index=idx)}
        want = (str(address.ip), address.network.prefixlen)
        if want in have:
            return
        extra = {"flags": IFA_F_NODAD} if address.version == 6 else {}
        try:
            ipr.addr("add", index=idx, address=want[0], prefixlen=want[1], **extra)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise XdmvpnError(f"cannot add {address} to {ifname}: {exc}") from None


class NetlinkThread:
    """pyroute2's synchronous API runs its own asyncio loop, which it cannot do in a thread
    where the daemon's loop runs: start-up work (the data plane's attach code, addresses)
    runs in this one worker thread. `call` waits for the answer (start-up and data-plane
    rebuilds only); `submit` returns a future the loop gets a callback from."""

    def __init__(self):
        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")

    def call(self, fn, *args, **kw):
        return self._ex.submit(fn, *args, **kw).result()

    def submit(self, fn, *args, **kw) -> Future:
        return self._ex.submit(fn, *args, **kw)

    def close(self) -> None:
        self._ex.shutdown(wait=True)
