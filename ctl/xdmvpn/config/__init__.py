"""Per-node configuration: one TOML file per node, keys named as VyOS names them.

``load(path)`` / ``loads(text)`` -> ``NodeConfig`` (frozen dataclasses, defaults filled,
addresses as ``ipaddress`` objects); ``NodeConfig.to_dict()`` is the normalized JSON view and
``render_toml(cfg)`` writes a config back, with ``loads(render_toml(cfg)) == cfg``.
Every problem is one ``ConfigError`` line, ``FILE:LINE: KEY: what is wrong (what is allowed)``.

The package: ``schema`` (the dataclasses, the keys of each table, defaults), ``validation``
(the readers that check a parsed document against the schema), ``lines`` (the line each key
is written on) and ``io`` (files and text in, TOML out). The reference, with the
VyOS/FRR/Cisco equivalent of every key, is docs/config.md.
"""

from .io import load, loads, render_toml
from .lines import KeyLines
from .schema import (
    ALIASES, BIND_MODES, CONTROL_KEYS, DEFAULT_HOLDTIME, DEFAULT_MAX_SEND, DEFAULT_MTU, DEFAULT_NAME,
    DEFAULT_PER_PEER_LIMIT, DEFAULT_TTL, DEFAULT_VICI_SOCKET, IDENTITY_KEYS, IPSEC_KEYS,
    MAP_KEYS, MAX_SEND_KEYS, METRICS_KEYS, NHRP_FAMILY_KEYS, NHRP_KEYS, NHS_KEYS, SOCKET_DIR,
    TOP_KEYS,
    TUNNEL_KEYS, UNKNOWN_BUDGET_KEYS, ConfigError,
    ControlConfig, IdentityConfig, IpsecConfig, KeyPath, MapConfig, MaxSend, MetricsConfig,
    MulticastTarget, NhrpConfig, NhrpFamily, NhsConfig, NodeConfig, Role, TunnelConfig,
    UnknownBudget, key_name,
)

__all__ = [
    "load", "loads", "render_toml", "KeyLines", "ALIASES", "BIND_MODES", "CONTROL_KEYS",
    "IDENTITY_KEYS", "IPSEC_KEYS", "MAP_KEYS", "MAX_SEND_KEYS", "METRICS_KEYS", "NHRP_FAMILY_KEYS", "NHRP_KEYS",
    "NHS_KEYS", "TOP_KEYS", "TUNNEL_KEYS", "UNKNOWN_BUDGET_KEYS", "DEFAULT_HOLDTIME",
    "DEFAULT_MAX_SEND", "DEFAULT_MTU", "DEFAULT_NAME", "DEFAULT_PER_PEER_LIMIT", "DEFAULT_TTL",
    "DEFAULT_VICI_SOCKET", "SOCKET_DIR", "ConfigError", "ControlConfig", "IdentityConfig",
    "IpsecConfig", "KeyPath", "MapConfig", "MaxSend", "MetricsConfig", "MulticastTarget",
    "NhrpConfig", "NhrpFamily", "NhsConfig", "NodeConfig", "Role", "TunnelConfig", "UnknownBudget", "key_name",
]
