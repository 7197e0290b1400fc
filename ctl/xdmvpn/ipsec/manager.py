"""The connection manager: one strongSwan connection per NBMA peer we need, driven over
vici, asyncio.

The daemon says which peers it needs (`want`/`unwant`: an NHS, a registered spoke, a
shortcut's next hop) and asks what is up (`view(peer)`: IKE_SA established and with which
identity, CHILD_SAs installed). The manager

- keeps one vici connection; when it cannot connect or loses it, it logs one line, counts
  it, forgets every SA (failing closed: no SA known, no NHRP accepted, no direct path) and
  tries again after a jittered, doubling delay (RECONNECT_MIN..RECONNECT_MAX);
- on every (re)connection loads the credentials and the responder connection, lists the
  SAs (`list-sas`) and loads and initiates what is wanted and not up: after a charon
  restart the SAs come back without anyone asking;
- initiates a wanted peer that has no IKE_SA (never while one is being set up), or, where
  the kernel has ESP, no CHILD_SA; again after INITIATE_MIN..INITIATE_MAX (jittered,
  doubling) while it stays down;
- terminates the IKE_SAs of a peer no longer wanted and unloads its connection;
- follows ike-updown, ike-rekey, child-updown and child-rekey, and calls
  `on_change(peers)` with the peers whose view changed;
- for a peer that wants us as we want it (`want(peer, pair=True)`: both ends of a
  shortcut initiate, and behind two NATs they must, each one's IKE_SA_INIT opening its
  own NAT), initiates the IKE_SA alone (childless) and lets one end, the one with the
  lower identity, create the CHILD_SA inside whichever IKE_SA came up (the other after
  CHILD_GRACE, if none came): one CHILD_SA, never two with the same selectors, whose
  second, installed by its responder before the initiator has it, would take the
  outbound path over and lose what is sent meanwhile;
- terminates an IKE_SA that comes from an NBMA address where another identity already
  has one (a second node behind the same NAT device, on another NAT-T port): one log
  line, counted (`refused_second_identity`); the first keeps working
  (docs/interop-ipsec-nat.md, two spokes behind the same NAT).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from ipaddress import ip_address

from . import conns
from .client import ViciClient, ViciClosed, ViciError
from .sas import EVENTS, PeerView, SaTable

log = logging.getLogger("xdmvpn.ipsec")

RECONNECT_MIN, RECONNECT_MAX = 0.5, 30.0     # seconds, vici (re)connection backoff
INITIATE_MIN, INITIATE_MAX = 3.0, 60.0       # seconds, per-peer initiation backoff
INITIATIONS_PER_TICK = 32                    # at most this many initiations a second
TICK = 1.0                                   # seconds between retry checks
CHILD_GRACE = 6.0                            # seconds the higher identity of a pair waits
STOP_TIMEOUT = 3.0


class _Peer:
    __slots__ = ("wanted", "loaded", "next_try", "backoff", "pair")

    def __init__(self):
        self.pair = False            # it initiates to us too: IKE_SA first, one CHILD_SA
        self.wanted = False
        self.loaded = False
        self.next_try = 0.0          # monotonic time of the next initiation, 0: now
        self.backoff = INITIATE_MIN


class IpsecManager:
    def __init__(self, ipsec, tunnel_ip, own_nbma, *, trap: bool = False,
                 creds: conns.Credentials | None = None, on_change=None,
                 rng: random.Random | None = None, if_id: int | None = None):
        self.cfg = ipsec
        self.tunnel_ip = tunnel_ip
        self.own_nbma = own_nbma
        self.trap = trap
        self.creds = creds or conns.Credentials()
        self.if_id = if_id
        self.on_change = on_change          # callback(set of peers)
        self.rng = rng or random.Random()
        self.table = SaTable(ipsec.profile)
        self.peers: dict = {}               # nbma -> _Peer
        self.stats: Counter = Counter()
        self.client: ViciClient | None = None
        self.connected = False
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self._dirty: set = set()
        self._held: list | None = None      # events held while list-sas runs
        self._refuse: dict = {}             # IKE_SA uniqueid -> IkeSa, to terminate
        self._refused: set = set()          # uniqueids terminated, until they are gone
        self._refused_said: set = set()     # (address, identity) refused and logged
        self._stopping = False

    # -- what the daemon calls ------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    def want(self, peer, pair: bool = False) -> None:
        p = self.peers.setdefault(peer, _Peer())
        p.pair = pair
        if not p.wanted:
            p.wanted = True
            p.next_try, p.backoff = 0.0, INITIATE_MIN
            self._mark(peer)

    def unwant(self, peer) -> None:
        p = self.peers.get(peer)
        if p is not None and p.wanted:
            p.wanted = False
            self._mark(peer)

    def wanted(self) -> list:
        return sorted((n for n, p in self.peers.items() if p.wanted), key=str)

    def view(self, peer) -> PeerView:
        return self.table.view(peer)

    def set_own_nbma(self, nbma) -> None:
        """Our NBMA address changed: every connection is loaded again from it."""
        self.own_nbma = nbma
        self.reload_all()

    def reload_all(self) -> None:
        """Load every connection again (new local address, new xfrm interface id)."""
        for peer, p in self.peers.items():
            p.loaded = False
            self._mark(peer)
        if self.client is not None and self.connected:
            self._dirty.add(None)              # the responder connection too
            self._wake.set()

    def snapshot(self) -> dict:
        return {"connected": self.connected, "last_error": self.last_error,
                "peers": {str(peer): {"wanted": self.peers.get(peer, _Peer()).wanted,
                                      "ike_sas": v.ike_sas, "child_sas": v.child_sas,
                                      "identity": v.identity}
                          for peer in set(self.table.peers()) | set(self.peers)
                          for v in (self.table.view(peer),)},
                "stats": dict(self.stats)}

    async def stop(self, terminate: bool) -> None:
        """Stop; with terminate, first tear down our SAs and unload our connections. From
        here on nothing is initiated and the daemon is not called back: the SAs going down
        now are ours to expect, and its data plane and routes may be gone already."""
        self._stopping = True
        self.on_change = None
        if terminate and self.connected:
            try:
                await asyncio.wait_for(self._terminate_all(), STOP_TIMEOUT)
            except (asyncio.TimeoutError, ViciClosed, ViciError) as exc:
                log.warning("ipsec: clean-up at stop incomplete: %s", exc or "timeout")
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.client is not None:
            await self.client.close()

    def _mark(self, peer) -> None:
        self._dirty.add(peer)
        self._wake.set()

    # -- the connection loop ----------------------------------------------------------------
    async def run(self) -> None:
        delay = RECONNECT_MIN
        while True:
            started = time.monotonic()
            try:
                await self._session()
                error = "vici session ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:           # never crash the daemon: one line, counted
                error = str(exc)
            if self.client is not None:
                await self.client.close()
            self.stats["vici_errors"] += 1
            if self.connected:
                self.stats["vici_lost"] += 1
            self.connected = False
            self._notify(self.table.clear())    # fail closed: no SA known
            if time.monotonic() - started > RECONNECT_MAX:     # it was up a while
                delay = RECONNECT_MIN
            wait = delay * self.rng.uniform(0.5, 1.5)
            delay = min(delay * 2, RECONNECT_MAX)
            # the same failure again (charon still down): logged once, counted always
            level = logging.DEBUG if error == self.last_error else logging.WARNING
            self.last_error = error
            log.log(level, "ipsec: %s; trying again in %.1f s", error, wait)
            await asyncio.sleep(wait)

    async def _session(self) -> None:
        self._lost.clear()
        self.client = ViciClient(on_event=self._on_event, on_close=self._on_close)
        await self.client.connect(self.cfg.vici_socket)
        self.stats["vici_connects"] += 1
        for event in EVENTS:
            await self.client.register(event)
        await self._load_credentials()
        await self._load(None)
        for p in self.peers.values():
            p.loaded, p.next_try, p.backoff = False, 0.0, INITIATE_MIN
        await self._reconcile()
        self.connected = True
        self.last_error = None
        log.info("ipsec: vici %s connected, %d IKE_SAs of ours", self.cfg.vici_socket,
                 len(self.table.ike))
        while not self._lost.is_set():
            self._wake.clear()
            await self._work()
            try:
                await asyncio.wait_for(self._wake.wait(), TICK)
            except asyncio.TimeoutError:
                pass
        raise ViciClosed(f"vici connection {self.client.closed_reason}")

    def _on_close(self, reason: str) -> None:
        self._lost.set()
        self._wake.set()

    def _on_event(self, name: str, msg: dict) -> None:
        self.stats[f"event.{name}"] += 1
        if self._held is not None:           # a list-sas is running: after its snapshot
            self._held.append((name, msg))
            return
        self._changed(self.table.event(name, msg))

    def _changed(self, changed: set) -> None:
        for peer in self.table.touched | changed:
            for ike in self.table.intruders(peer):
                if ike.uid not in self._refuse and ike.uid not in self._refused:
                    self._refuse[ike.uid] = ike
                    self._wake.set()
            p = self.peers.get(peer)
            if p is None:
                continue
            if self._satisfied(peer):
                p.backoff = INITIATE_MIN
            elif p.wanted and self._childless(peer):
                # a pair's IKE_SA is up, its CHILD_SA not: the lower identity creates it
                # now, the higher only if none has come after CHILD_GRACE
                p.next_try = time.monotonic() + (0.0 if self._leads(peer) else CHILD_GRACE)
                self._wake.set()
            elif p.wanted:
                # down: initiate again soon (jittered), not at once; an SA that went
                # down right after our initiation (refused by the peer) waits out the
                # backoff that initiation set
                p.next_try = max(p.next_try, time.monotonic()
                                 + INITIATE_MIN * self.rng.uniform(0.5, 1.0))
                self._wake.set()
        self._notify(changed)

    def _childless(self, peer) -> bool:
        """A pair peer whose IKE_SA is up without a CHILD_SA (where ESP works)."""
        p = self.peers.get(peer)
        view = self.table.view(peer)
        return bool(p and p.pair and self.trap and view.ike_up and not view.child_up)

    def _leads(self, peer) -> bool:
        """Of a pair, the end that creates the CHILD_SA: the lower identity, both being
        addresses (the tunnel addresses, by default). Where either is not (a
        certificate's subject), both ends create one at once, as without pairs."""
        mine, theirs = conns.local_id(self.cfg, self.tunnel_ip), self.table.view(peer).identity
        try:
            a, b = ip_address(mine or ""), ip_address(theirs)
        except ValueError:
            return True
        return a.version != b.version or a < b

    def _satisfied(self, peer) -> bool:
        """Up as far as this kernel allows: an IKE_SA, and a CHILD_SA where ESP works."""
        view = self.table.view(peer)
        return view.ike_up and (view.child_up or not self.trap)

    def _notify(self, changed: set) -> None:
        if changed and self.on_change is not None:
            try:
                self.on_change(changed)
            except Exception:                  # a bug in the daemon's hook: log, go on
                self.stats["on_change_errors"] += 1
                log.exception("ipsec: on_change failed")

    # -- charon's configuration --------------------------------------------------------------
    async def _load_credentials(self) -> None:
        shared = conns.shared_key(self.cfg)
        if shared is not None:
            await self.client.request("load-shared", shared)
        for cmd, msg in conns.certificates(self.creds):
            await self.client.request(cmd, msg)

    async def _load(self, peer) -> None:
        await self.client.request("load-conn", conns.connection(
            self.cfg, self.creds, self.own_nbma, self.tunnel_ip, peer, self.trap, self.if_id))
        self.stats["load_conn"] += 1

    async def _reconcile(self) -> None:
        """The table from list-sas. Events that arrive meanwhile are applied after the
        snapshot, in order (each sets state, so one the snapshot already shows is
        harmless; applied before it, the snapshot would undo it)."""
        self._held = []
        try:
            _, listed = await self.client.request("list-sas", {"noblock": "yes"},
                                                  stream="list-sa")
        finally:
            held, self._held = self._held, None
        self.stats["reconcile"] += 1
        changed = self.table.replace(listed)
        for name, msg in held:
            changed |= self.table.event(name, msg)
        self.table.touched = set(self.table.peers())    # a new snapshot: look at all
        self._changed(changed)
        self._dirty |= {peer for peer, p in self.peers.items() if p.wanted}

    async def _work(self) -> None:
        """Load/initiate what is wanted, terminate what is not, retry what is due."""
        if self._stopping:
            return
        dirty, self._dirty = self._dirty, set()
        await self._refuse_intruders()
        if None in dirty:
            dirty.discard(None)
            await self._load(None)
        for peer in sorted(dirty, key=str):
            p = self.peers.get(peer)
            if p is not None and not p.wanted:
                await self._command(self._drop(peer), peer)
        now = time.monotonic()
        initiated = 0
        for peer in sorted(self.peers, key=str):
            p = self.peers[peer]
            if not p.wanted or (peer not in dirty and (p.next_try > now or p.loaded and
                                                       self._satisfied(peer))):
                continue
            if not p.loaded:
                p.loaded = await self._command(self._load(peer), peer)
            if self._satisfied(peer) or p.next_try > now:
                continue
            if initiated >= INITIATIONS_PER_TICK:
                break
            initiated += 1
            await self._command(self._initiate(peer), peer)
            p.next_try = now + p.backoff * self.rng.uniform(0.8, 1.2)
            p.backoff = min(p.backoff * 2, INITIATE_MAX)

    async def _command(self, coro, peer) -> bool:
        """Run one peer's vici commands; charon refusing one is counted, not fatal (a lost
        connection is: ViciClosed ends the session)."""
        try:
            await coro
            return True
        except ViciError as exc:
            self.stats["command_errors"] += 1
            log.warning("ipsec: %s: %s", peer, exc)
            return False

    async def _initiate(self, peer) -> None:
        """A new IKE_SA unless one with the peer is being set up; where one is up, its
        CHILD_SA (charon creates it inside an IKE_SA of the connection, ours or the
        peer's, or queues it on one being set up)."""
        ike_up = self.table.view(peer).ike_up
        if ike_up or not await self._connecting(peer):
            p = self.peers.get(peer)
            # a pair: the IKE_SA alone first (its CHILD_SA once one is up: _changed)
            child = not (p and p.pair and self.trap and not ike_up)
            await self.client.request("initiate", conns.initiate(self.cfg.profile, peer,
                                                                 child))
            self.stats["initiate" if child else "initiate_childless"] += 1

    async def _connecting(self, peer) -> bool:
        """An IKE_SA with this peer is being set up (ours or its)."""
        _, listed = await self.client.request(
            "list-sas", {"noblock": "yes", "ike": conns.conn_name(self.cfg.profile, peer)},
            stream="list-sa")
        for msg in listed:
            for sa in msg.values():
                if isinstance(sa, dict) and sa.get("state") in (b"CONNECTING", b"CREATED"):
                    return True
        return False

    async def _refuse_intruders(self) -> None:
        refuse, self._refuse = self._refuse, {}
        self._refused = {u for u in self._refused if u in self.table.ike} | set(refuse)
        for uid, ike in refuse.items():
            first = self.table.view(ike.peer).identity
            self.stats["refused_second_identity"] += 1
            # its charon tries again whenever its GRE meets its trap policy: one line
            # per address and identity, the counter for every refusal
            seen = (ike.peer, ike.identity) in self._refused_said
            self._refused_said.add((ike.peer, ike.identity))
            log.log(logging.DEBUG if seen else logging.WARNING,
                    "ipsec: refused %s (identity %s, port %s): %s is taken by identity %s; "
                    "two peers behind one NAT device are not supported (their CHILD_SAs "
                    "would share selectors)", ike.peer, ike.identity, ike.port or "?",
                    ike.peer, first)
            try:
                # force: its SAs leave the kernel at once, not after the DELETE's answer:
                # until then the kernel would send the first peer's traffic through them
                await self.client.request("terminate", {"ike-id": uid, "force": "yes",
                                                        "timeout": "-1"})
                self.stats["terminate"] += 1
            except ViciError as exc:            # already gone
                log.debug("ipsec: terminate %s: %s", uid, exc)

    async def _drop(self, peer) -> None:
        p = self.peers.pop(peer, None) or _Peer()
        for uid in self.table.uids(peer):
            try:
                await self.client.request("terminate", {"ike-id": uid, "timeout": "-1"})
                self.stats["terminate"] += 1
            except ViciError as exc:            # already gone
                log.debug("ipsec: terminate %s: %s", peer, exc)
        if p.loaded:
            try:
                await self.client.request("unload-conn",
                                          {"name": conns.conn_name(self.cfg.profile, peer)})
                self.stats["unload_conn"] += 1
            except ViciError as exc:
                log.debug("ipsec: unload %s: %s", peer, exc)

    async def _terminate_all(self) -> None:
        for peer in self.table.peers():
            for uid in self.table.uids(peer):
                await self._command(self.client.request(
                    "terminate", {"ike-id": uid, "timeout": "-1"}), peer)
        for peer, p in list(self.peers.items()):
            if p.loaded:
                await self._command(self.client.request(
                    "unload-conn", {"name": conns.conn_name(self.cfg.profile, peer)}), peer)
        self.peers.clear()
        await self._command(self.client.request(
            "unload-conn", {"name": conns.conn_name(self.cfg.profile)}), "responder")
