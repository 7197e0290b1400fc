"""Checking a parsed TOML document against the schema: `read(doc, source, lines)` gives the
NodeConfig or raises the first problem as one ConfigError line, ``FILE:LINE: KEY: what is
wrong (what is allowed)``, unknown keys answered with the nearest known one."""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import replace
from typing import Any, NoReturn

from ..inet import IPAddress, no_host_of
from .lines import KeyLines
from .schema import (
    ALIASES, BIND_MODES, CONTROL_KEYS, DEFAULT_HOLDTIME, DEFAULT_MAX_SEND, DEFAULT_MTU,
    DEFAULT_NAME, DEFAULT_PER_PEER_LIMIT, DEFAULT_TTL, DEFAULT_UNKNOWN_BUDGET,
    DEFAULT_VICI_SOCKET, IDENTITY_KEYS, IPSEC_KEYS, MAP_KEYS, MAX_SEND_KEYS, METRICS_KEYS,
    NHRP_KEYS, NHS_KEYS, SOCKET_DIR, TOP_KEYS, TUNNEL_KEYS, UNKNOWN_BUDGET_KEYS,
    UNKNOWN_BURST_MAX, ConfigError, ControlConfig, IdentityConfig, IpsecConfig, KeyPath,
    NHRP_FAMILY_KEYS, MapConfig, MaxSend, MetricsConfig, NhrpConfig, NhrpFamily, NhsConfig,
    NodeConfig, Role,
    TunnelConfig, UnknownBudget, key_name, quote,
)


# --- checking values --------------------------------------------------------------------

class _Invalid(Exception):
    """A value is wrong; ``at`` is the path below the key being checked (array elements)."""

    def __init__(self, message: str, at: KeyPath = ()):
        super().__init__(message)
        self.at = at


def _show(value: Any) -> str:
    """A value as TOML would write it, for "got ..." (long ones shortened)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = quote(value)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a date/time"


def _int(lo: int, hi: int, unit: str = ""):
    def check(value):
        if type(value) is int and lo <= value <= hi:
            return value
        raise _Invalid(f"must be an integer {lo}..{hi}{unit}, got {_show(value)}")
    return check


def _bool(value):
    if type(value) is bool:
        return value
    raise _Invalid(f"must be true or false, got {_show(value)}")


def _secret(lo: int, hi: int | None, what: str):
    """A secret string; an error never echoes it.  With a limit (Cisco's 8 bytes), also no
    whitespace: a Cisco or VyOS peer could not be configured with it."""
    def check(value):
        if not isinstance(value, str):
            raise _Invalid(f"must be {what}, got {_show(value)}")
        size = len(value.encode())
        if size < lo or (hi is not None and size > hi):
            raise _Invalid(f"must be {what}, got {size} byte{'s' * (size != 1)}")
        if hi is not None and any(c.isspace() or not c.isprintable() for c in value):
            raise _Invalid(f"must be {what}, got one with whitespace or control characters")
        if not value.isprintable():
            # NUL or a newline would cut or split the secret in swanctl and vici
            raise _Invalid(f"must be {what}, got one with control characters")
        return value
    return check


def _ifname(limit: int = 15, why: str = ""):
    def check(value):
        if (isinstance(value, str) and 0 < len(value.encode()) <= limit
                and value not in (".", "..")
                and all(c.isprintable() and not c.isspace() and c not in "/:" for c in value)):
            return value
        raise _Invalid(f"must be an interface name of 1..{limit} characters without '/', ':' "
                       f"or whitespace{why}, got {_show(value)}")
    return check


def _instance(value):
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", value):
        return value
    raise _Invalid("must be a name of 1..32 letters, digits, '_', '.', '-' (starting with a "
                   f"letter or digit), got {_show(value)}")


def _address(value, what: str = "an IPv4 or IPv6 address"):
    if isinstance(value, str) and "%" not in value:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            if addr.is_unspecified or addr.is_multicast or addr == _BROADCAST:
                raise _Invalid(f"must be a unicast address, got {_show(value)}")
            return addr
    raise _Invalid(f"must be {what}, got {_show(value)}")


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _tunnel_address(value):
    if isinstance(value, str) and "/" in value and "%" not in value:
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            pass
        else:
            net = iface.network
            if iface.ip.is_unspecified or iface.ip.is_multicast or iface.ip.is_loopback \
                    or iface.ip == _BROADCAST:
                raise _Invalid(f"must be a unicast address, got {_show(value)}")
            if iface.version == 4 and net.prefixlen <= 30 and iface.ip in (
                    net.network_address, net.broadcast_address):
                raise _Invalid(f"must be a host address of {net}, not its network or "
                               f"broadcast address, got {_show(value)}")
            return iface
    raise _Invalid('must be an address with prefix length, e.g. "10.0.0.1/24", '
                   f"got {_show(value)}")


def _per_family(check, what: str):
    """A value, or an array of two, one per address family (dual stack): the tuple of them,
    the first written first."""
    def read(value):
        if not isinstance(value, list):
            return (check(value),)
        if not 1 <= len(value) <= 2:
            raise _Invalid(f"must be {what}, or an array of two of them (one IPv4, one "
                           f"IPv6), got an array of {len(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(check(item))
            except _Invalid as exc:
                raise _Invalid(str(exc), at=(i,)) from None
        if len(out) == 2 and out[0].version == out[1].version:
            raise _Invalid(f"must be one IPv4 and one IPv6 address, got two IPv{out[0].version} "
                           "ones", at=(1,))
        return tuple(out)
    return read


def _df(value):
    if type(value) is bool or value == "inherit":
        return value
    raise _Invalid(f'must be true, false or "inherit", got {_show(value)}')


def _absolute_path(limit: int | None = None):
    def check(value):
        if (isinstance(value, str) and value.startswith("/") and value.isprintable()
                and (limit is None or len(value.encode()) <= limit)):
            return value
        size = f" of at most {limit} bytes" if limit else ""
        raise _Invalid(f"must be an absolute path{size} (printable characters), got "
                       f"{_show(value)}")
    return check


_PROPOSAL = re.compile(r"[a-z0-9_]+(-[a-z0-9_]+)*")
_PROFILE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _proposals(value):
    if not isinstance(value, list):
        raise _Invalid('must be an array of strongSwan proposals, e.g. '
                       f'["aes256gcm16-prfsha384-ecp384"], got {_show(value)}')
    for i, item in enumerate(value):
        if not (isinstance(item, str) and _PROPOSAL.fullmatch(item)):
            raise _Invalid("must be a strongSwan proposal (lower-case algorithms joined by "
                           f"'-', e.g. \"aes256gcm16-prfsha384-ecp384\"), got {_show(item)}",
                           at=(i,))
    return tuple(value)


def _profile(value):
    if isinstance(value, str) and _PROFILE.fullmatch(value):
        return value
    raise _Invalid("must be a name of 1..64 letters, digits, '.', '_' or '-', "
                   f"got {_show(value)}")


def _listen(value):
    match = isinstance(value, str) and re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)",
                                                     value)
    if match:
        host, port = (match[1], match[2]) if match[1] else (match[3], match[4])
        try:
            addr = ipaddress.ip_address(host) if "%" not in host else None   # no zone
        except ValueError:
            addr = None
        if addr is not None and (addr.version == 6) == bool(match[1]) and 1 <= int(port) <= 65535:
            return f"[{addr}]:{int(port)}" if addr.version == 6 else f"{addr}:{int(port)}"
    raise _Invalid('must be "address:port" with port 1..65535, IPv6 in brackets, e.g. '
                   f'"127.0.0.1:9351" or "[::1]:9351", got {_show(value)}')


def _role(value):
    if value in ("hub", "spoke", "both"):
        return value
    raise _Invalid(f'must be "hub", "spoke" or "both", got {_show(value)}')


# --- reading tables ---------------------------------------------------------------------

_REQUIRED = object()


class _Reader:
    """Checks a parsed document against the schema; the first problem raises ConfigError."""

    def __init__(self, source: str, lines: KeyLines):
        self.source, self.lines = source, lines

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        raise ConfigError(self.source, self.lines.line_of(path), key_name(path), message)

    def table(self, path: KeyPath, value, keys: tuple[str, ...], example: str) -> dict:
        """value as a table whose keys are all in keys (unknown ones: suggest the nearest)."""
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, e.g. {example}, got {_show(value)}")
        for key in sorted(value, key=lambda k: self.lines.line_of(path + (k,))):
            if key in TOP_KEYS and path:
                self.fail(path + (key,), f"unknown key here; {key} is a top-level key "
                                         "(write it before the first [table])")
            if key not in keys:
                self.fail(path + (key,), _unknown(key, keys))
        return value

    def get(self, table: dict, path: KeyPath, key: str, check, default=_REQUIRED,
            needs: str = ""):
        if key not in table:
            if default is _REQUIRED:
                self.fail(path + (key,), f"required{needs}")
            return default
        try:
            return check(table[key])
        except _Invalid as exc:
            self.fail(path + (key,) + exc.at, str(exc))


def _unknown(key: str, allowed: tuple[str, ...]) -> str:
    guess = ALIASES.get(key) if ALIASES.get(key) in allowed else None
    guess = guess or next(iter(difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)), None)
    if guess:
        return f"unknown key; did you mean {guess}?"
    return f"unknown key (allowed: {', '.join(allowed)})"


def _read_tunnel(r: _Reader, data) -> TunnelConfig:
    p = ("tunnel",)
    t = r.table(p, data, TUNNEL_KEYS, "[tunnel]")
    addresses = r.get(t, p, "address", _per_family(
        _tunnel_address, 'an address with prefix length, e.g. "10.0.0.1/24"'),
        needs=' (own tunnel address and overlay prefix, e.g. "10.0.0.1/24")')
    sources = r.get(t, p, "source-address", _per_family(
        _address, "an IPv4 or IPv6 address"), ())
    return TunnelConfig(
        name=r.get(t, p, "name", _ifname(12, " (the daemon also creates NAME-dp)"),
                   DEFAULT_NAME),
        address=addresses[0], other_address=addresses[1] if len(addresses) > 1 else None,
        source_interface=r.get(t, p, "source-interface", _ifname(),
                               needs=' (the underlay interface, e.g. "eth0")'),
        source_address=sources[0] if sources else None,
        other_source_address=sources[1] if len(sources) > 1 else None,
        key=r.get(t, p, "key", _int(0, 2**32 - 1), None),
        mtu=r.get(t, p, "mtu", _int(576, 9000), DEFAULT_MTU),
        adjust_mss=r.get(t, p, "adjust-mss", _int(536, 9000), None),
        ttl=r.get(t, p, "ttl", _int(0, 255, " (0: inherit)"), DEFAULT_TTL),
        df=r.get(t, p, "df", _df, True),
    )


def _nhs_tunnel_ip(value):
    if value == "dynamic":
        return None
    return _address(value, 'an IPv4 or IPv6 address or "dynamic"')


def _array_of_tables(r: _Reader, path: KeyPath, data: dict, key: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        r.fail(path + (key,), f"must be an array of tables, written [[{key_name(path + (key,))}]]")
    return value


def _read_nhrp(r: _Reader, data, tunnel: TunnelConfig) -> NhrpConfig:
    """[nhrp]; multicast stays () when absent (its default depends on the role)."""
    p = ("nhrp",)
    t = r.table(p, data, NHRP_KEYS, "[nhrp]")
    nets = _Addresses(r, tunnel)
    maps = _read_maps(r, t, nets)
    nhs = _read_nhs(r, t, nets, maps)
    return NhrpConfig(
        network_id=r.get(t, p, "network-id", _int(1, 2**32 - 1), 1),
        holdtime=r.get(t, p, "holdtime", _int(1, 65535, " seconds"), DEFAULT_HOLDTIME),
        authentication=r.get(t, p, "authentication", _secret(
            1, 8, "a string of 1..8 bytes without whitespace (Cisco cleartext)"), None),
        redirect=r.get(t, p, "redirect", _bool, False),
        shortcut=r.get(t, p, "shortcut", _bool, False),
        registration_no_unique=r.get(t, p, "registration-no-unique", _bool, False),
        multicast=_read_multicast(r, p + ("multicast",), t.get("multicast", []), nets,
                                  bool(nhs)),
        max_send=_read_max_send(r, p + ("max-send",), t.get("max-send", {})),
        unknown_budget=_read_unknown_budget(r, p + ("unknown-budget",),
                                            t.get("unknown-budget", {})),
        nhs=nhs, maps=maps, ipv6=_read_family(r, t, tunnel),
    )


def _read_family(r: _Reader, nhrp: dict, tunnel: TunnelConfig) -> NhrpFamily:
    """[nhrp.ipv6]: the IPv6 overlay's own values (absent: those of [nhrp])."""
    p = ("nhrp", "ipv6")
    if "ipv6" not in nhrp:
        return NhrpFamily()
    t = r.table(p, nhrp["ipv6"], NHRP_FAMILY_KEYS, "[nhrp.ipv6]")
    if tunnel.address_of(6) is None:
        r.fail(p, "needs an IPv6 tunnel address (tunnel.address, e.g. "
                  '["10.0.0.1/24", "2001:db8::1/64"])')
    return NhrpFamily(
        network_id=r.get(t, p, "network-id", _int(1, 2**32 - 1), None),
        holdtime=r.get(t, p, "holdtime", _int(1, 65535, " seconds"), None),
        authentication=r.get(t, p, "authentication", _secret(
            1, 8, "a string of 1..8 bytes without whitespace (Cisco cleartext)"), None),
        redirect=r.get(t, p, "redirect", _bool, None),
        shortcut=r.get(t, p, "shortcut", _bool, None),
        registration_no_unique=r.get(t, p, "registration-no-unique", _bool, None))


def _read_max_send(r: _Reader, p: KeyPath, data) -> MaxSend:
    t = r.table(p, data, MAX_SEND_KEYS, "max-send = { packets = 100, interval = 10 }")
    return MaxSend(packets=r.get(t, p, "packets", _int(1, 65535), DEFAULT_MAX_SEND[0]),
                   interval=r.get(t, p, "interval", _int(1, 65535, " seconds"),
                                  DEFAULT_MAX_SEND[1]))


def _read_unknown_budget(r: _Reader, p: KeyPath, data) -> UnknownBudget:
    t = r.table(p, data, UNKNOWN_BUDGET_KEYS, "unknown-budget = { rate = 10000, burst = 1000 }")
    return UnknownBudget(
        rate=r.get(t, p, "rate", _int(1, 1_000_000, " packets per second"),
                   DEFAULT_UNKNOWN_BUDGET[0]),
        burst=r.get(t, p, "burst", _int(1, UNKNOWN_BURST_MAX, " packets (what the GRE "
                                        "socket takes before the daemon sheds strangers)"), DEFAULT_UNKNOWN_BUDGET[1]))


def _read_maps(r: _Reader, nhrp: dict, nets: _Addresses) -> tuple[MapConfig, ...]:
    maps: list[MapConfig] = []
    for i, entry in enumerate(_array_of_tables(r, ("nhrp",), nhrp, "map")):
        p = ("nhrp", "map", i)
        t = r.table(p, entry, MAP_KEYS, "[[nhrp.map]]")
        tunnel_ip = nets.tunnel_ip(p, r.get(t, p, "tunnel-ip", _address), inside=True)
        nbma = nets.nbma(p + ("nbma",), r.get(t, p, "nbma", _address))
        for j, other in enumerate(maps):
            if other.tunnel_ip == tunnel_ip:
                r.fail(p + ("tunnel-ip",), f"duplicate of nhrp.map[{j}] (one mapping per "
                                           "tunnel address)")
        maps.append(MapConfig(tunnel_ip, nbma))
    return tuple(maps)


def _read_nhs(r: _Reader, nhrp: dict, nets: _Addresses,
              maps: tuple[MapConfig, ...]) -> tuple[NhsConfig, ...]:
    servers: list[NhsConfig] = []
    for i, entry in enumerate(_array_of_tables(r, ("nhrp",), nhrp, "nhs")):
        p = ("nhrp", "nhs", i)
        t = r.table(p, entry, NHS_KEYS, '[[nhrp.nhs]] with tunnel-ip = "dynamic"')
        tunnel_ip = r.get(t, p, "tunnel-ip", _nhs_tunnel_ip,
                          needs=' (the NHS tunnel address, or "dynamic" to learn it)')
        if tunnel_ip is not None:
            nets.tunnel_ip(p, tunnel_ip, inside=False)
        mapped = next((m.nbma for m in maps if m.tunnel_ip == tunnel_ip), None)
        if "nbma" in t:
            nbma = nets.nbma(p + ("nbma",), r.get(t, p, "nbma", _address))
            if mapped is not None and mapped != nbma:
                r.fail(p + ("nbma",), f"conflicts with the [[nhrp.map]] for {tunnel_ip} "
                                      f"(nbma {mapped})")
        elif tunnel_ip is None:
            r.fail(p + ("nbma",), 'required with tunnel-ip "dynamic" (the NHS NBMA '
                                  'address, e.g. "192.0.2.1")')
        elif mapped is None:
            r.fail(p + ("nbma",), f"required (or a [[nhrp.map]] with tunnel-ip {tunnel_ip})")
        else:
            nbma = mapped
        for j, other in enumerate(servers):
            if tunnel_ip is not None and other.tunnel_ip == tunnel_ip:
                r.fail(p + ("tunnel-ip",), f"duplicate of nhrp.nhs[{j}] (each NHS once)")
            if other.nbma == nbma and (tunnel_ip is None or other.tunnel_ip is None
                                       or other.tunnel_ip.version == tunnel_ip.version):
                r.fail(p + ("nbma",) if "nbma" in t else p,
                       f"duplicate of nhrp.nhs[{j}] (each NHS once per address family)")
        servers.append(NhsConfig(tunnel_ip, nbma, r.get(t, p, "priority", _int(0, 255), 0)))
    return tuple(servers)


def _read_multicast(r: _Reader, path: KeyPath, value, nets, has_nhs: bool) -> tuple:
    if not isinstance(value, list):
        r.fail(path, 'must be an array of "dynamic", "nhs" and NBMA addresses, '
                     f"got {_show(value)}")
    out: list = []
    for i, item in enumerate(value):
        if item in ("dynamic", "nhs"):
            target = item
            if item == "nhs" and not has_nhs:
                r.fail(path + (i,), '"nhs" needs [[nhrp.nhs]] entries')
        else:
            try:
                target = nets.nbma(path + (i,), _address(
                    item, '"dynamic", "nhs" or an NBMA address'))
            except _Invalid as exc:
                r.fail(path + (i,), str(exc))
        if target in out:
            r.fail(path + (i,), f"duplicate of {key_name(path)}[{out.index(target)}]")
        out.append(target)
    return tuple(out)


class _Addresses:
    """Cross-checks of tunnel (protocol) and NBMA (underlay) addresses."""

    def __init__(self, r: _Reader, tunnel: TunnelConfig):
        self.r, self.tunnel = r, tunnel
        self.nbma_family: tuple[int, str] | None = None
        if len(tunnel.source_addresses) == 1:
            self.nbma_family = (tunnel.source_addresses[0].version, "tunnel.source-address")

    def tunnel_ip(self, entry: KeyPath, addr: IPAddress, inside: bool) -> IPAddress:
        path = entry + ("tunnel-ip",)
        own = self.tunnel.address_of(addr.version)
        if own is None:
            mine = self.tunnel.address
            self.r.fail(path, f"must be an IPv{mine.version} address like tunnel.address, "
                              f"got {_show(str(addr))}")
        if addr == own.ip:
            self.r.fail(path, f"is this node's own tunnel address (tunnel.address {own})")
        if inside and addr not in own.network:
            self.r.fail(path, f"must be inside the tunnel prefix {own.network} "
                              f"(tunnel.address), got {_show(str(addr))}")
        net = own.network
        if addr in net and no_host_of(addr, net):
            self.r.fail(path, f"must be a host address of {net}, not its network or "
                              f"broadcast address, got {_show(str(addr))}")
        return addr

    def nbma(self, path: KeyPath, addr: IPAddress) -> IPAddress:
        if len(self.tunnel.source_addresses) == 2:
            pass                     # an underlay of each family: peers of both
        elif self.nbma_family is None:
            self.nbma_family = (addr.version, key_name(path))
        elif addr.version != self.nbma_family[0]:
            self.r.fail(path, f"must be an IPv{self.nbma_family[0]} address like "
                              f"{self.nbma_family[1]} (one underlay family per tunnel), "
                              f"got {_show(str(addr))}")
        if addr in self.tunnel.source_addresses:
            self.r.fail(path, "is this node's own NBMA address (tunnel.source-address)")
        if addr.is_loopback or (addr.version == 6 and addr.ipv4_mapped is not None):
            self.r.fail(path, "must be an address a peer is reached at on the underlay (not "
                              f"loopback, not IPv4-mapped IPv6), got {_show(str(addr))}")
        return addr


def _vici_socket(value):
    if (isinstance(value, str) and value.startswith("unix:///") and "\0" not in value
            and len(value[len("unix://"):].encode()) <= 107):
        return value
    raise _Invalid('must be "unix://" and an absolute path of at most 107 bytes, e.g. '
                   f'"{DEFAULT_VICI_SOCKET}", got {_show(value)}')


def _bind(value):
    if value in BIND_MODES:
        return value
    raise _Invalid(f'must be "tunnel-address", "table" or "none", got {_show(value)}')


def _identity(value):
    if (isinstance(value, str) and value.strip() and len(value.encode()) <= 255
            and value.isprintable()):
        return value
    raise _Invalid("must be an IKE identity of 1..255 printable bytes (an address, a name "
                   f'or a DN like "CN=spoke1, O=Example"), got {_show(value)}')


def _read_identities(r: _Reader, ipsec: dict, tunnel: TunnelConfig) -> tuple:
    out: list[IdentityConfig] = []
    own = tunnel.address
    for i, entry in enumerate(_array_of_tables(r, ("ipsec",), ipsec, "identities")):
        p = ("ipsec", "identities", i)
        t = r.table(p, entry, IDENTITY_KEYS, "[[ipsec.identities]]")
        ident = r.get(t, p, "id", _identity,
                      needs=' (an IKE identity, e.g. "CN=spoke1.example.net")')
        if "tunnel-ip" not in t:
            r.fail(p + ("tunnel-ip",), 'required (the tunnel addresses this identity may '
                                       'register, e.g. ["172.16.0.11"])')
        value = t["tunnel-ip"]
        if not isinstance(value, list) or not value:
            r.fail(p + ("tunnel-ip",), "must be a non-empty array of tunnel addresses or "
                                       f"prefixes, got {_show(value)}")
        nets = []
        for j, item in enumerate(value):
            try:
                net = ipaddress.ip_network(item, strict=True) if isinstance(item, str) \
                    and "%" not in item else None
            except ValueError:
                net = None
            if net is None or net.version != own.version or not net.subnet_of(own.network):
                r.fail(p + ("tunnel-ip", j), f"must be an address or prefix inside the tunnel "
                                             f"prefix {own.network}, got {_show(item)}")
            nets.append(net)
        for k, other in enumerate(out):
            if other.id == ident:
                r.fail(p + ("id",), f"duplicate of ipsec.identities[{k}] (one entry per "
                                    "identity)")
        out.append(IdentityConfig(ident, tuple(nets)))
    return tuple(out)


def _read_ipsec(r: _Reader, data, tunnel: TunnelConfig) -> IpsecConfig:
    p = ("ipsec",)
    t = r.table(p, data, IPSEC_KEYS, "[ipsec]")
    cfg = IpsecConfig(
        profile=r.get(t, p, "profile", _profile, "dmvpn"),
        required=r.get(t, p, "required", _bool, True),
        psk=r.get(t, p, "psk", _secret(1, None, "a non-empty string"), None),
        certificate=r.get(t, p, "certificate", _absolute_path(), None),
        private_key=r.get(t, p, "private-key", _absolute_path(), None),
        ca_certificate=r.get(t, p, "ca-certificate", _absolute_path(), None),
        proposals=r.get(t, p, "proposals", _proposals, ()),
        esp_proposals=r.get(t, p, "esp-proposals", _proposals, ()),
        local_id=r.get(t, p, "local-id", _identity, None),
        bind=r.get(t, p, "bind", _bind, "tunnel-address"),
        vici_socket=r.get(t, p, "vici-socket", _vici_socket, DEFAULT_VICI_SOCKET),
        identities=_read_identities(r, t, tunnel),
    )
    if cfg.bind == "table" and not cfg.identities:
        r.fail(p + ("bind",), '"table" needs [[ipsec.identities]] entries (else no peer '
                              "may register)")
    if cfg.psk is not None and cfg.certificate is not None:
        r.fail(p + ("certificate",), "psk and certificate exclude each other (choose one)")
    if cfg.psk is None and cfg.certificate is None:
        r.fail(p + ("psk",), "required (a pre-shared key, or certificate and private-key)")
    if (cfg.certificate is None) != (cfg.private_key is None):
        missing = "private-key" if cfg.private_key is None else "certificate"
        r.fail(p + (missing,), "required with " + (
            "certificate" if missing == "private-key" else "private-key"))
    return cfg


def _derive_role(r: _Reader, doc: dict, nhrp: NhrpConfig) -> Role:
    role = r.get(doc, (), "role", _role, None)
    if role is None:
        return "spoke" if nhrp.nhs else "hub"
    if role == "hub" and nhrp.nhs:
        r.fail(("role",), '"hub" registers to no NHS, but [[nhrp.nhs]] entries are set '
                          '(use "both" for a hub that registers to another hub)')
    if role != "hub" and not nhrp.nhs:
        r.fail(("role",), f'"{role}" needs at least one [[nhrp.nhs]] entry')
    return role


def _read(doc: dict, r: _Reader) -> NodeConfig:
    r.table((), doc, TOP_KEYS, "[tunnel]")
    if "tunnel" not in doc:
        r.fail(("tunnel",), 'required table missing (e.g. [tunnel] with address and '
                            'source-interface)')
    tunnel = _read_tunnel(r, doc["tunnel"])
    nhrp = _read_nhrp(r, doc.get("nhrp", {}), tunnel)
    role = _derive_role(r, doc, nhrp)
    if "multicast" not in doc.get("nhrp", {}):
        default = ("dynamic",) * (role != "spoke") + ("nhs",) * (role != "hub")
        nhrp = replace(nhrp, multicast=default)
    instance, socket_path = tunnel.name, None
    if "control" in doc:
        c = r.table(("control",), doc["control"], CONTROL_KEYS, "[control]")
        instance = r.get(c, ("control",), "instance", _instance, instance)
        socket_path = r.get(c, ("control",), "socket", _absolute_path(107), None)
    control = ControlConfig(socket_path or f"{SOCKET_DIR}/{instance}.sock", instance)
    metrics = MetricsConfig()
    if "metrics" in doc:
        m = r.table(("metrics",), doc["metrics"], METRICS_KEYS, "[metrics]")
        metrics = MetricsConfig(
            listen=r.get(m, ("metrics",), "listen", _listen, None),
            per_peer=r.get(m, ("metrics",), "per-peer", _bool, False),
            per_peer_limit=r.get(m, ("metrics",), "per-peer-limit", _int(1, 100000),
                                 DEFAULT_PER_PEER_LIMIT))
    ipsec = _read_ipsec(r, doc["ipsec"], tunnel) if "ipsec" in doc else None
    return NodeConfig(role=role, tunnel=tunnel, nhrp=nhrp, control=control,
                      metrics=metrics, ipsec=ipsec)


def read(doc: dict, source: str, lines: KeyLines) -> NodeConfig:
    """The configuration in a document tomllib parsed from the text `lines` was made of."""
    return _read(doc, _Reader(source, lines))
