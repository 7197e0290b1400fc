"""What the daemon asks of IPsec, per NBMA peer: may NHRP from it be processed, may its
identity register a tunnel address, may a shortcut use the direct path to it; and which
peers are needed (so that the manager sets their SAs up and tears them down).

A peer is needed while something refers to it: a configured NHS, or a cache entry with
that NBMA address (registration, static map, NHS, resolution: what the data plane maps).
LiveEffects counts the references (`ref`/`unref`); when the last one goes, the peer's SAs
are terminated.

With ``required = true`` (the default):

- NHRP from a peer is processed only when an IKE_SA with it is established (its identity
  authenticated); otherwise it is dropped before it changes any state, and counted;
- where the kernel has ESP, the data plane is told the peer needs IPsec
  (`maps.set_ipsec_required`, when the data plane has it): no plaintext GRE from it is
  accepted, its encap goes through xfrm (docs/ipsec.md, "What the data plane must do");
- a shortcut to the peer uses the direct path only once a CHILD_SA with it is installed
  and its identity is bound to the shortcut's next hop (make-before-break); until then,
  and again when the CHILD_SA goes down, traffic follows the hub path.

With ``required = false`` NHRP is accepted without an SA and shortcuts do not wait; an
identity, when the peer has one, is still bound (`may_register`).
"""

from __future__ import annotations

import logging
from collections import Counter

from .conns import Credentials
from .identity import Binding
from .kernel import esp_missing
from .manager import IpsecManager

log = logging.getLogger("xdmvpn.ipsec")


class IpsecPeers:
    def __init__(self, ipsec, tunnel_ip, own_nbma, maps=None, *, esp: bool = False,
                 on_change=None, rng=None, creds: Credentials | None = None):
        self.cfg = ipsec
        self.required = ipsec.required
        self.binding = Binding.from_config(ipsec)
        self.maps = maps
        self.esp = esp
        self.on_change = on_change            # daemon callback(set of peers)
        self.stats: Counter = Counter()
        self.refs: Counter = Counter()        # peer -> cache entries / NHS referring to it
        self._nhs: set = set()
        self._up: set = set()                 # peers with an IKE_SA established
        self.just_up: set = set()             # of the peers in the last change: came up
        self.manager = IpsecManager(ipsec, tunnel_ip, own_nbma, trap=esp and ipsec.required,
                                    creds=creds or Credentials.read(ipsec),
                                    on_change=self._changed,
                                    rng=rng)

    @classmethod
    def for_daemon(cls, cfg, own_nbma, maps, on_change) -> "IpsecPeers":
        """The daemon's IPsec, for a node configuration with [ipsec]; says once, loudly,
        when the kernel cannot carry ESP."""
        creds = Credentials.read(cfg.ipsec)          # unreadable: fail before anything
        missing = esp_missing()
        if missing is not None:
            log.warning("ipsec: %s; IKE only: identities are authenticated and NHRP is gated "
                        "on IKE_SAs, but GRE (NHRP and data) is not encrypted and shortcuts "
                        "stay on the hub path%s", missing,
                        " (required = true cannot be enforced on the wire)"
                        if cfg.ipsec.required else "")
        return cls(cfg.ipsec, cfg.tunnel.address.ip, own_nbma, maps, esp=missing is None,
                   on_change=on_change, creds=creds)

    @staticmethod
    def restart_keys(old, new) -> list[str]:
        """The [ipsec] keys whose change a reload cannot apply (bind and identities can)."""
        if (old is None) != (new is None):
            return ["ipsec"]
        if old is None:
            return []
        a, b = old.__dict__, new.__dict__
        return [f"ipsec.{k.replace('_', '-')}" for k in a
                if k not in ("bind", "identities") and a[k] != b[k]]

    def reconfigure(self, ipsec, nhs_nbmas) -> None:
        self.cfg = ipsec
        self.binding = Binding.from_config(ipsec)
        self.set_nhs(nhs_nbmas)

    def set_maps(self, maps) -> None:
        """The data plane (at start, or rebuilt): tell it which peers need IPsec; take its
        xfrm interface id, if it has one, for the CHILD_SAs (if_id_in/if_id_out)."""
        self.maps = maps
        if_id = getattr(maps, "ipsec_if_id", None)
        if isinstance(if_id, int) and if_id != self.manager.if_id:
            self.manager.if_id = if_id
            self.manager.reload_all()
        for peer in self.refs:
            self._dataplane(peer, True)

    # -- needing peers -------------------------------------------------------------------
    def ref(self, peer) -> None:
        self.refs[peer] += 1
        if self.refs[peer] == 1:
            # a peer other than our NHS (a shortcut's other end, a registered spoke)
            # wants us too: the manager sets up one CHILD_SA for the two of us
            self.manager.want(peer, pair=peer not in self._nhs)
            self._dataplane(peer, True)

    def unref(self, peer) -> None:
        if self.refs[peer] <= 0:
            return
        self.refs[peer] -= 1
        if self.refs[peer] == 0:
            del self.refs[peer]
            self.manager.unwant(peer)
            self._dataplane(peer, False)

    def set_nhs(self, nbmas) -> None:
        """The configured NHSs are needed from the start (and after a reload)."""
        new, old = set(nbmas), self._nhs
        self._nhs = new
        for peer in new - old:
            self.ref(peer)
        for peer in old - new:
            self.unref(peer)

    def _dataplane(self, peer, needed: bool) -> None:
        if self.maps is None or not hasattr(self.maps, "set_ipsec_required"):
            return
        try:
            # without ESP in the kernel, "required" on the wire would be a black hole
            self.maps.set_ipsec_required(peer, needed and self.required and self.esp,
                                         self.manager.view(peer).child_up)
        except Exception as exc:
            self.stats["dataplane_errors"] += 1
            log.warning("ipsec: data plane set_ipsec_required(%s): %s", peer, exc)

    # -- questions -------------------------------------------------------------------------
    def accepts(self, peer) -> bool:
        """May NHRP from this NBMA address be processed?"""
        if not self.required or self.manager.view(peer).ike_up:
            return True
        self.stats["nhrp_dropped_no_sa"] += 1
        return False

    def identity(self, peer) -> str:
        return self.manager.view(peer).identity

    def may_register(self, peer, address) -> bool:
        """May the peer at this NBMA address register (or purge) this tunnel address?"""
        identity = self.identity(peer)
        if not identity:
            ok = not self.required
        else:
            ok = self.binding.allows(identity, address)
        if not ok:
            self.stats["identity_refused"] += 1
            log.info("ipsec: %s (identity %r) may not register %s", peer, identity or "none",
                     address)
        return ok

    def direct_ready(self, peer, via) -> bool:
        """May a shortcut to next hop `via` at this NBMA address leave the hub path?"""
        if not self.required:
            return True
        view = self.manager.view(peer)
        return view.child_up and self.binding.allows(view.identity, via)

    # -- changes ---------------------------------------------------------------------------
    def _changed(self, peers: set) -> None:
        self.stats["peer_changes"] += len(peers)
        up = {p for p in peers if self.manager.view(p).ike_up}
        self.just_up = up - self._up
        self._up = (self._up - peers) | up
        for peer in peers:
            if peer in self.refs:        # CHILD_SA up or down: encap may hand over or not
                self._dataplane(peer, True)
        if self.on_change is not None:
            self.on_change(peers)

    def snapshot(self) -> dict:
        snap = self.manager.snapshot()
        snap["required"] = self.required
        snap["esp"] = self.esp
        snap["bind"] = self.binding.mode
        return snap

    def sa_counts(self) -> dict:
        """For the exporter's dmvpn_ipsec_sas{state}: "up" counts our established IKE_SAs;
        a wanted peer without one is "connecting" while charon is reachable (the manager is
        initiating it) and "down" while it is not."""
        m = self.manager
        up = sum(ike.state in ("ESTABLISHED", "REKEYING") for ike in m.table.ike.values())
        missing = sum(not m.view(peer).ike_up for peer in m.wanted())
        return {"up": up, "connecting": missing if m.connected else 0,
                "down": 0 if m.connected else missing}

    def stats_view(self) -> dict:
        return dict(self.stats) | {f"manager.{k}": v for k, v in self.manager.stats.items()}

    def start(self) -> None:
        self.manager.start()

    async def stop(self, terminate: bool) -> None:
        await self.manager.stop(terminate)
