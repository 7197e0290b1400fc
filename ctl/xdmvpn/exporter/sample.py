"""What one scrape reads: the controller's state and the BPF maps' counters, copied into
plain data. `read` runs on the daemon's loop thread (Daemon.call_in_loop), so it sees no
state mid-change and every number of one scrape is from the same moment."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from .histogram import HistogramView, LatencyHistogram

log = logging.getLogger("xdmvpn.exporter")


@dataclass
class Sample:
    interface: str
    role: str
    instance: str
    xdp_mode: str | None
    nhrp: Counter                            # node.stats
    faults: Counter                          # daemon.stats + effects.stats (string keys)
    cache: dict[str, int]                    # entry type -> entries
    nhs: list[tuple[str, bool]]              # (configured NBMA, up)
    shortcuts: int
    mappings: int                            # host entries the controller put in the map
    paths: dict[str, dict[str, int]]         # maps.counters()
    drops: dict[str, dict[str, int]]         # maps.drops()
    latency: HistogramView
    ipsec: dict | None = None                # provider's sa_counts(), None without one
    peers: list[tuple[str, int, int]] | None = None   # (overlay address, packets, bytes)
    peers_unexported: int = 0


def read(daemon, histogram: LatencyHistogram) -> Sample:
    """On the loop thread: copy what the collector needs; feed the latency histogram."""
    cfg, node, fx = daemon.cfg, daemon.node, daemon.fx
    maps = fx.maps
    histogram.feed(node.setup_count, node.setup_latencies)
    faults = Counter({k: v for k, v in daemon.stats.items() if isinstance(k, str)})
    faults.update({k: v for k, v in fx.stats.items() if isinstance(k, str)})
    s = Sample(
        interface=cfg.tunnel.name, role=cfg.role, instance=cfg.control.instance,
        xdp_mode=getattr(daemon.dp, "xdp_used_mode", None),
        nhrp=Counter(node.stats), faults=faults, cache=node.cache.counts(),
        nhs=[(str(c.nhs.nbma), c.state.value == "up")
             for c in sorted(node.nhcs, key=lambda c: c.index)],
        shortcuts=len(node.shortcuts), mappings=len(fx.mapped),
        paths=maps.counters(), drops=maps.drops(), latency=histogram.view())
    counts = getattr(getattr(daemon, "ipsec", None), "sa_counts", None)
    if counts is not None:               # IPsec provider: {state: SAs}; a failure costs
        try:                             # the IPsec numbers only, not the scrape
            s.ipsec = dict(counts())
        except Exception as exc:
            log.warning("metrics scrape: IPsec SA counts failed (%s)", exc)
    m = cfg.metrics
    if m.per_peer:
        rows = maps.mappings()                 # sorted by address
        s.peers = [(str(r.prefix.network_address), r.packets, r.bytes)
                   for r in rows[:m.per_peer_limit]]
        s.peers_unexported = max(len(rows) - m.per_peer_limit, 0)
    return s
