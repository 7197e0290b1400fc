"""What one scrape reads: the node's state through its read-only view (xdmvpn.view), copied
into plain data. `read` runs on the daemon's loop thread (the view source's `read`), so it
sees no state mid-change and every number of one scrape is from the same moment."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..view import (
    FAMILY_NAMES, ControlCounters, DaemonView, GreCounters, NodeInfo, RouteCounters, Traffic,
)
from .histogram import HistogramView, LatencyHistogram

log = logging.getLogger("xdmvpn.exporter")


@dataclass
class Sample:
    node: NodeInfo
    nhrp: dict                               # the engine's counters, keys as it counts
    nhrp_drops: dict[str, int]               # by reason (engine and daemon)
    caps: dict[str, int]                     # refused at a table's cap, by table
    faults: dict[str, int]                   # by kind
    gre: GreCounters
    control: ControlCounters
    routes: RouteCounters
    cache: dict[str, int]                    # entry type -> entries
    nhs: list[tuple[str, bool]]              # (configured NBMA, up)
    shortcuts: int
    mappings: int                            # host entries the controller put in the map
    paths: dict[str, Traffic]
    drops: dict[str, Traffic]
    latency: HistogramView
    ipsec: dict | None = None                # IPsec SAs by state, None without IPsec
    peers: list[tuple[str, int, int]] | None = None   # (overlay address, packets, bytes)
    peers_unexported: int = 0
    # per overlay family ("ipv4", "ipv6"): the engine's counters, cache entries by type,
    # shortcuts, and (NBMA, up, family) of every registration
    nhrp_by_family: dict = field(default_factory=dict)
    cache_by_family: dict = field(default_factory=dict)
    shortcuts_by_family: dict = field(default_factory=dict)
    nhs_by_family: list = field(default_factory=list)


def read(view: DaemonView, histogram: LatencyHistogram) -> Sample:
    """On the loop thread: copy what the collector needs; feed the latency histogram."""
    latencies = view.latencies()
    histogram.feed(latencies.count, latencies.recent)
    s = Sample(
        node=view.node(), nhrp=view.nhrp_counters(), nhrp_drops=view.nhrp_drops(),
        caps=view.caps(), faults=view.faults(), gre=view.gre(), control=view.control(),
        routes=view.routes(), cache=view.cache_counts(),
        nhs=[(str(c.nbma), c.state == "up") for c in view.nhs()],
        shortcuts=view.shortcut_count(), mappings=view.mapping_count(),
        paths=view.paths(), drops=view.drops(), latency=histogram.view(),
        nhrp_by_family=view.nhrp_counters_by_family(),
        cache_by_family=view.cache_counts_by_family(),
        shortcuts_by_family=view.shortcut_counts_by_family(),
        nhs_by_family=[(str(c.nbma), c.state == "up", FAMILY_NAMES[c.family])
                       for c in view.nhs()])
    try:                                 # a failure costs the IPsec numbers only
        s.ipsec = view.ipsec_sa_counts()
    except Exception as exc:
        log.warning("metrics scrape: IPsec SA counts failed (%s)", exc)
    limit = view.per_peer_limit()
    if limit is not None:
        rows = view.mappings()                 # sorted by address
        s.peers = [(str(r.prefix.network_address), r.packets, r.bytes) for r in rows[:limit]]
        s.peers_unexported = max(len(rows) - limit, 0)
    return s
