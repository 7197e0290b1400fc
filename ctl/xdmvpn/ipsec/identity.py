"""Which tunnel addresses an IKE identity may register (pure).

charon prints identities as text: an IP address ("172.16.0.11"), an FQDN or e-mail
("spoke1.example.net", "ops@example.net"), a distinguished name ("C=CH, O=Example,
CN=172.16.0.11"). The binding, configured with [ipsec] bind and [[ipsec.identities]]:

``"tunnel-address"`` (the default)
    an identity may register the tunnel address it names: an IP identity equal to the
    address, a name equal to the address's text, or a DN whose CN is the address. An
    identity listed in [[ipsec.identities]] may register the addresses listed there (and
    only those).
``"table"``
    only [[ipsec.identities]]: an identity not listed may register nothing.
``"none"``
    any authenticated peer may register any address (what FRR and Cisco do).
"""

from __future__ import annotations

import ipaddress
import re

BIND_MODES = ("tunnel-address", "table", "none")

_RDN_SPLIT = re.compile(r"\s*[,/]\s*")


def normalize(identity: str) -> str:
    """A canonical form for comparing: DNs as "K=V, K=V" with upper-case attribute types
    (charon's own printing), addresses compressed, other names lower-cased."""
    identity = identity.strip()
    if _is_dn(identity):
        parts = [p for p in _RDN_SPLIT.split(identity.lstrip("/")) if p]
        out = []
        for part in parts:
            key, _, value = part.partition("=")
            out.append(f"{key.strip().upper()}={value.strip()}")
        return ", ".join(out)
    try:
        return str(ipaddress.ip_address(identity))
    except ValueError:
        return identity.lower()


def _is_dn(identity: str) -> bool:
    return bool(re.match(r"/?[A-Za-z][A-Za-z0-9.]*\s*=", identity))


def common_name(identity: str) -> str | None:
    """The CN of a DN identity (the last one, the most specific), else None."""
    if not _is_dn(identity):
        return None
    cns = [p.split("=", 1)[1] for p in normalize(identity).split(", ") if p.startswith("CN=")]
    return cns[-1] if cns else None


def names_address(identity: str, address) -> bool:
    """identity names this tunnel address (the "tunnel-address" rule)."""
    cn = common_name(identity)
    candidate = cn if cn is not None else identity.strip()
    try:
        return ipaddress.ip_address(candidate) == address
    except ValueError:
        return False


class Binding:
    """The configured binding: `allows(identity, address)`."""

    def __init__(self, mode: str = "tunnel-address", table: tuple = ()):
        if mode not in BIND_MODES:
            raise ValueError(f"bind mode {mode!r}")
        self.mode = mode
        # normalized identity -> networks it may register
        self.table: dict[str, list] = {}
        for identity, networks in table:
            self.table.setdefault(normalize(identity), []).extend(
                ipaddress.ip_network(n, strict=False) for n in networks)

    @classmethod
    def from_config(cls, ipsec) -> "Binding":
        return cls(ipsec.bind, tuple((i.id, i.tunnel_ip) for i in ipsec.identities))

    def allows(self, identity: str, address) -> bool:
        if self.mode == "none":
            return True
        if not identity:
            return False
        listed = self.table.get(normalize(identity))
        if listed is not None:
            return any(address in net for net in listed)
        return self.mode == "tunnel-address" and names_address(identity, address)
