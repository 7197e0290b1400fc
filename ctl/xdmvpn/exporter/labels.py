"""The label values the exporter may emit. Each comes from a fixed enum of the code or from
the configuration; a value seen on the wire (an NHRP type, an error or CIE code) is mapped
onto one of these, anything unknown to "other", so a peer cannot create series."""

from __future__ import annotations

from ..engine.cache import EntryType
from ..engine.drops import DROP_REASONS
from ..nhrp.constants import CieCode, ErrorCode, PacketType

OTHER = "other"

PACKET_TYPES = tuple(t.name.lower() for t in PacketType)
ERROR_CODES = tuple(c.name.lower() for c in ErrorCode)
CIE_CODES = tuple(c.name.lower() for c in CieCode)
CACHE_TYPES = tuple(t.value for t in EntryType)
DIRECTIONS = ("rx", "tx")
IPSEC_STATES = ("up", "connecting", "down")

# node.stats[("drop", reason)]: packets the controller received and did not act on.
NHRP_DROPS = DROP_REASONS

# node.stats keys counted per outcome.
RESOLUTIONS = {"resolution_answered": "answered", "resolution_negative": "negative",
               "resolution_forwarded": "forwarded", "resolution_failed": "failed"}
SHORTCUT_EVENTS = {"shortcut_installed": "installed", "shortcut_refreshed": "refreshed",
                   "shortcut_expired": "expired"}

# Controller faults (daemon.stats and the effects' stats, string keys).
FAULTS = ("send_failed", "route_failed", "sync_error", "housekeeping_error",
          "reload_failed", "multicast_truncated", "mapping_not_ipv4", "shortcut_not_ipv4")

XDP_MODES = ("native", "generic", "offload", "none")

# Shortcut set-up latency: 1 ms .. 2 s.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def _name(enum, value) -> str:
    try:
        return enum(value).name.lower()
    except (ValueError, TypeError):
        return OTHER


def packet_type(value) -> str:
    return _name(PacketType, value)


def error_code(value) -> str:
    return _name(ErrorCode, value)


def cie_code(value) -> str:
    return _name(CieCode, value)


def one_of(value, allowed) -> str:
    return value if value in allowed else OTHER
