"""The label values the exporter may emit. Each comes from a fixed enum of the code or from
the configuration: the counters' vocabularies (drop reasons, cap names, fault kinds, ...)
are the state view's (xdmvpn.view), re-exported here. A value seen on the wire (an NHRP
type, an error or CIE code) is mapped onto one of these, anything unknown to "other", so a
peer cannot create series."""

from __future__ import annotations

from ..nhrp.constants import CieCode, ErrorCode, PacketType
from ..view import (  # noqa: F401  (the collector's label values, re-exported)
    CACHE_TYPES, CAPS, CONTROL_ERRORS, FAULTS, GRE_DISCARDS, NHRP_DROPS, ROUTE_LOOKUP_ERRORS,
    ROUTE_RESULTS, ROUTE_RESYNCS,
)

OTHER = "other"

PACKET_TYPES = tuple(t.name.lower() for t in PacketType)
ERROR_CODES = tuple(c.name.lower() for c in ErrorCode)
CIE_CODES = tuple(c.name.lower() for c in CieCode)
DIRECTIONS = ("rx", "tx")
FAMILIES = ("ipv4", "ipv6")         # overlay families (view.FAMILY_NAMES)
IPSEC_STATES = ("up", "connecting", "down")

# node.stats keys counted per outcome.
RESOLUTIONS = {"resolution_answered": "answered", "resolution_negative": "negative",
               "resolution_forwarded": "forwarded", "resolution_failed": "failed"}
SHORTCUT_EVENTS = {"shortcut_installed": "installed", "shortcut_refreshed": "refreshed",
                   "shortcut_expired": "expired"}

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
