"""What charon says about our SAs, per NBMA peer (pure): built from list-sas, kept up to
date by the ike-updown, ike-rekey, child-updown and child-rekey events.

Messages are vici messages as decoded by `wire` (values bytes) or already text. Every
message names IKE_SAs by their connection; each IKE_SA section carries its `uniqueid`,
`state`, `remote-host`, `remote-id` and a `child-sas` section whose entries carry their
own `uniqueid` and `state`. Only connections of our profile count.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .conns import is_ours
from .wire import text

IKE_UP_STATES = frozenset({"ESTABLISHED", "REKEYING"})
CHILD_UP_STATES = frozenset({"INSTALLED", "REKEYING"})


@dataclass
class IkeSa:
    uid: str
    name: str
    state: str
    peer: object                          # remote-host, an ip_address
    identity: str                         # remote-id
    children: dict = field(default_factory=dict)   # child uniqueid -> state
    port: str = ""                        # remote-port (NAT-T: the NAT's mapping)


@dataclass(frozen=True)
class PeerView:
    ike_up: bool = False
    identity: str = ""
    ike_sas: int = 0
    child_sas: int = 0                    # CHILD_SAs installed (ESP in the kernel)

    @property
    def child_up(self) -> bool:
        return self.child_sas > 0


def _peer(value):
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class SaTable:
    def __init__(self, profile: str):
        self.profile = profile
        self.ike: dict[str, IkeSa] = {}         # uniqueid -> IkeSa
        self.by_peer: dict = {}                 # peer -> {uniqueid}
        self._before: dict = {}                 # peer -> view, while a change is applied
        self.touched: set = set()

    # -- the index ----------------------------------------------------------------------
    def _touch(self, peer) -> None:
        if peer not in self._before:
            self._before[peer] = self.view(peer)

    def _put(self, ike: IkeSa) -> None:
        old = self.ike.get(ike.uid)
        if old is not None:
            self._pop(old.uid)
        self._touch(ike.peer)
        self.ike[ike.uid] = ike
        self.by_peer.setdefault(ike.peer, set()).add(ike.uid)

    def _pop(self, uid: str) -> IkeSa | None:
        ike = self.ike.get(uid)
        if ike is None:
            return None
        self._touch(ike.peer)
        del self.ike[uid]
        uids = self.by_peer.get(ike.peer)
        uids.discard(uid)
        if not uids:
            del self.by_peer[ike.peer]
        return ike

    def _changed(self) -> set:
        before, self._before = self._before, {}
        self.touched = set(before)              # every peer the last change was about
        return {p for p, v in before.items() if self.view(p) != v}

    # -- building ---------------------------------------------------------------------
    def _ike_from(self, name: str, sa: dict) -> IkeSa | None:
        if not is_ours(self.profile, name) or not isinstance(sa, dict):
            return None
        peer = _peer(sa.get("remote-host", ""))
        uid = sa.get("uniqueid")
        if peer is None or not uid:
            return None
        children = {}
        for child in (sa.get("child-sas") or {}).values():
            if isinstance(child, dict) and child.get("uniqueid"):
                children[child["uniqueid"]] = child.get("state", "")
        return IkeSa(uid, name, sa.get("state", ""), peer, sa.get("remote-id", ""), children,
                     str(sa.get("remote-port", "")))

    def replace(self, list_sa_events: list) -> set:
        """The whole table from list-sas' list-sa events; returns the peers whose view
        changed."""
        for uid in list(self.ike):
            self._pop(uid)
        for msg in list_sa_events:
            for name, sa in text(msg).items():
                ike = self._ike_from(name, sa)
                if ike is not None:
                    self._put(ike)
        return self._changed()

    def clear(self) -> set:
        return self.replace([])

    # -- events -------------------------------------------------------------------------
    def event(self, name: str, msg: dict) -> set:
        """Apply one vici event; returns the peers whose view changed."""
        msg = text(msg)
        up = msg.pop("up", "no") == "yes"
        handler = _EVENTS.get(name)
        if handler is None:
            return set()
        for conn, sa in msg.items():
            if is_ours(self.profile, conn) and isinstance(sa, dict):
                handler(self, conn, sa, up)
        return self._changed()

    def _ike_updown(self, conn: str, sa: dict, up: bool) -> None:
        ike = self._ike_from(conn, sa)
        if ike is None:
            return
        if up:
            old = self.ike.get(ike.uid)
            if old is not None and not ike.children:
                ike.children = dict(old.children)
            self._put(ike)
        else:
            self._pop(ike.uid)

    def _ike_rekey(self, conn: str, sa: dict, up: bool) -> None:
        old, new = sa.get("old"), sa.get("new")
        gone = self._pop(old.get("uniqueid", "")) if isinstance(old, dict) else None
        ike = self._ike_from(conn, new) if isinstance(new, dict) else None
        if ike is not None:
            if gone is not None and not ike.children:
                ike.children = gone.children
            self._put(ike)

    def _child_updown(self, conn: str, sa: dict, up: bool) -> None:
        ike = self.ike.get(sa.get("uniqueid"))
        if ike is None:
            ike = self._ike_from(conn, {**sa, "child-sas": {}})
            if ike is None or not up:
                return
            self._put(ike)
        self._touch(ike.peer)
        for child in (sa.get("child-sas") or {}).values():
            if not isinstance(child, dict) or not child.get("uniqueid"):
                continue
            if up:
                ike.children[child["uniqueid"]] = child.get("state", "INSTALLED")
            else:
                ike.children.pop(child["uniqueid"], None)

    def _child_rekey(self, conn: str, sa: dict, up: bool) -> None:
        ike = self.ike.get(sa.get("uniqueid"))
        if ike is None:
            return
        self._touch(ike.peer)
        for child in (sa.get("child-sas") or {}).values():
            if not isinstance(child, dict):
                continue
            old, new = child.get("old"), child.get("new")
            if isinstance(old, dict):
                ike.children.pop(old.get("uniqueid"), None)
            if isinstance(new, dict) and new.get("uniqueid"):
                ike.children[new["uniqueid"]] = new.get("state", "INSTALLED")

    # -- questions ----------------------------------------------------------------------
    def view(self, peer) -> PeerView:
        intruders = {i.uid for i in self.intruders(peer)}
        ikes = [self.ike[u] for u in self.by_peer.get(peer, ())
                if self.ike[u].state in IKE_UP_STATES and u not in intruders]
        if not ikes:
            return PeerView()
        ikes.sort(key=lambda i: (-sum(s in CHILD_UP_STATES for s in i.children.values()),
                                 i.uid))
        children = sum(s in CHILD_UP_STATES for i in ikes for s in i.children.values())
        return PeerView(True, ikes[0].identity, len(ikes), children)

    def peers(self) -> list:
        return list(self.by_peer)

    def intruders(self, peer) -> list[IkeSa]:
        """The established IKE_SAs at this NBMA address whose identity is not that of the
        oldest one there: a second node behind the same NAT device (another NAT-T port).
        Their transport-mode CHILD_SAs would have the same selectors as the first's, and
        the kernel would send the first's traffic through the newest of them."""
        ikes = sorted((self.ike[u] for u in self.by_peer.get(peer, ())
                       if self.ike[u].state in IKE_UP_STATES), key=_age)
        return [i for i in ikes[1:] if i.identity != ikes[0].identity]

    def uids(self, peer) -> list[str]:
        return sorted(self.by_peer.get(peer, ()))


def _age(ike: IkeSa) -> tuple:
    """charon numbers its IKE_SAs in order of creation."""
    return (int(ike.uid), ike.uid) if ike.uid.isdigit() else (1 << 62, ike.uid)


_EVENTS = {
    "ike-updown": SaTable._ike_updown,
    "ike-rekey": SaTable._ike_rekey,
    "child-updown": SaTable._child_updown,
    "child-rekey": SaTable._child_rekey,
}
EVENTS = tuple(_EVENTS)
