"""The vici messages that configure charon for one node (pure: config in, dicts out).

Connections, all named from the [ipsec] profile (default "dmvpn"):

``<profile>``
    the responder: any peer (remote_addrs %any) may set up an IKE_SA with us. Spokes
    initiate to their hub, and to each other for shortcuts.
``<profile>-<peer NBMA>``
    one per NBMA peer we need (an NHS, a registered spoke, a shortcut's next hop): what we
    initiate, and terminate and unload when the peer's cache entry dies.

Each has one CHILD_SA of the same name: transport mode, traffic selectors
``dynamic[gre]`` (GRE between the two NBMA addresses, so NHRP and the data both), the
configured proposals, and ``start_action = trap`` when the kernel can install ESP SAs, so
that the kernel never sends GRE to the peer in plaintext while the SA is not up yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import XdmvpnError

GRE_TS = "dynamic[gre]"
DPD_DELAY = "10s"


@dataclass(frozen=True)
class Credentials:
    """Certificate material read from the configured files (PEM or DER bytes)."""
    certificate: bytes | None = None
    private_key: bytes | None = None
    ca_certificate: bytes | None = None

    @classmethod
    def read(cls, ipsec) -> "Credentials":
        def load(path):
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise XdmvpnError(f"ipsec: cannot read {path} ({exc.strerror})") from None
        return cls(load(ipsec.certificate), load(ipsec.private_key),
                   load(ipsec.ca_certificate))


def conn_name(profile: str, peer=None) -> str:
    """The connection (and CHILD_SA) name for a peer; the responder's without one."""
    return profile if peer is None else f"{profile}-{peer}"


def is_ours(profile: str, name: str) -> bool:
    return name == profile or name.startswith(profile + "-")


def local_id(ipsec, tunnel_ip) -> str | None:
    """Our IKE identity: configured, else the tunnel address with a PSK (so that the
    default "tunnel-address" binding holds), else None (charon uses the cert subject)."""
    if ipsec.local_id is not None:
        return ipsec.local_id
    return str(tunnel_ip) if ipsec.psk is not None else None


def connection(ipsec, creds: Credentials, own_nbma, tunnel_ip, peer=None,
               trap: bool = False, if_id: int | None = None) -> dict:
    """The load-conn message for `peer` (an NBMA address), or the responder's."""
    name = conn_name(ipsec.profile, peer)
    auth = "psk" if ipsec.psk is not None else "pubkey"
    local: dict = {"auth": auth}
    ident = local_id(ipsec, tunnel_ip)
    if ident is not None:
        local["id"] = ident
    if creds.certificate is not None:
        local["certs"] = [creds.certificate]
    remote: dict = {"auth": auth, "id": "%any"}
    if creds.ca_certificate is not None:
        remote["cacerts"] = [creds.ca_certificate]
    child: dict = {
        "mode": "transport",
        "local_ts": [GRE_TS],
        "remote_ts": [GRE_TS],
        "start_action": "trap" if trap and peer is not None else "none",
        "dpd_action": "clear",
        "close_action": "none",
    }
    if ipsec.esp_proposals:
        child["esp_proposals"] = list(ipsec.esp_proposals)
    if if_id is not None:
        child["if_id_in"] = child["if_id_out"] = str(if_id)
    conn: dict = {
        "version": "2",
        "local_addrs": [str(own_nbma)],
        "remote_addrs": [str(peer) if peer is not None else "%any"],
        "encap": "no",
        "mobike": "no",
        "unique": "no",
        "keyingtries": "1",           # we retry, with backoff, ourselves
        "dpd_delay": DPD_DELAY,
        "local": local,
        "remote": remote,
        "children": {name: child},
    }
    if ipsec.proposals:
        conn["proposals"] = list(ipsec.proposals)
    return {name: conn}


def shared_key(ipsec) -> dict | None:
    """The load-shared message for the PSK (no owners: it applies to every identity)."""
    if ipsec.psk is None:
        return None
    return {"id": f"xdmvpn-{ipsec.profile}", "type": "IKE", "data": ipsec.psk.encode(),
            "owners": []}


def certificates(creds: Credentials) -> list[tuple[str, dict]]:
    """The (command, message) pairs that load our key, certificate and CA."""
    out = []
    if creds.ca_certificate is not None:
        out.append(("load-cert", {"type": "x509", "flag": "ca", "data": creds.ca_certificate}))
    if creds.certificate is not None:
        out.append(("load-cert", {"type": "x509", "flag": "none", "data": creds.certificate}))
    if creds.private_key is not None:
        out.append(("load-key", {"type": "any", "data": creds.private_key}))
    return out


def initiate(profile: str, peer, child: bool = True) -> dict:
    """The initiate message: both SAs of the peer's connection (or, without child, the
    IKE_SA alone: childless, RFC 6023), not waiting (-1). An established IKE_SA of the
    connection, ours or the peer's, carries a new CHILD_SA (CREATE_CHILD_SA)."""
    name = conn_name(profile, peer)
    return {"child": name, "ike": name, "timeout": "-1"} if child else {"ike": name,
                                                                        "timeout": "-1"}
