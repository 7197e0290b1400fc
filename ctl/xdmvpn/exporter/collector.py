"""The custom collector: on every scrape, one `sample.read` of the node's state view on the
daemon's loop thread (`ViewSource.read`), then metric families built from that plain data
here, on the HTTP server's thread.

Names, types and labels are listed in docs/metrics.md; label values come from `labels`."""

from __future__ import annotations

import logging
import platform

from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .. import __version__
from ..nhrp.constants import PacketType
from ..view import ViewSource
from . import labels as L
from .histogram import LatencyHistogram
from .sample import Sample, read

log = logging.getLogger("xdmvpn.exporter")


class DmvpnCollector(Collector):
    def __init__(self, source: ViewSource, timeout: float = 5.0):
        self.source = source
        self.timeout = timeout
        self.histogram = LatencyHistogram(L.LATENCY_BUCKETS)

    def sample(self) -> Sample:
        return self.source.read(lambda view: read(view, self.histogram), self.timeout)

    def collect(self):
        yield _build_info()
        try:
            s = self.sample()
        except Exception as exc:           # loop busy or stopping, or a read failed: say so
            log.warning("metrics scrape: the controller did not answer (%s)",
                        str(exc) or exc.__class__.__name__)
            yield _gauge("dmvpn_up", "1 if the controller answered this scrape", 0)
            return
        yield _gauge("dmvpn_up", "1 if the controller answered this scrape", 1)
        yield from families(s)


def _build_info():
    return _gauge("dmvpn_build_info", "xdmvpn version (value 1)", 1, ["version", "python"],
                  [__version__, platform.python_version()])


def _gauge(name, doc, value, labels=(), values=()):
    g = GaugeMetricFamily(name, doc, labels=list(labels))
    g.add_metric(list(values), value)
    return g


def families(s: Sample):
    """Every family of one sample (pure: the unit tests call it on fake samples)."""
    yield from _node(s)
    yield from _nhrp(s)
    yield from _shortcuts(s)
    yield from _dataplane(s)
    yield from _receive(s)
    yield from _routes(s)
    yield from _control(s)
    yield _ipsec(s)
    if s.peers is not None:
        yield from _peers(s)


def _node(s: Sample):
    g = GaugeMetricFamily("dmvpn_node_info", "This node (value 1): tunnel interface, role, "
                          "instance, XDP attach mode", labels=["interface", "role",
                                                             "xdmvpn_instance", "xdp_mode"])
    info = s.node
    g.add_metric([info.interface, info.role, info.instance,
                  L.one_of(info.xdp_mode or "none", L.XDP_MODES)], 1)
    yield g
    c = GaugeMetricFamily("dmvpn_nhrp_cache_entries", "NHRP cache entries by overlay "
                          "family and type", labels=["interface", "family", "type"])
    for family, counts in s.cache_by_family.items():
        for t in L.CACHE_TYPES:
            c.add_metric([s.node.interface, family, t], counts.get(t, 0))
    yield c
    n = GaugeMetricFamily("dmvpn_nhs_up", "1 if our registration (of this overlay family) "
                          "with this next-hop server is up",
                          labels=["interface", "nhs", "family"])
    for nbma, up, family in s.nhs_by_family:
        n.add_metric([s.node.interface, nbma, family], 1 if up else 0)
    yield n
    f = CounterMetricFamily("dmvpn_controller_faults", "Controller operations that failed, "
                            "by kind", labels=["kind"])
    for kind in L.FAULTS:
        f.add_metric([kind], s.faults[kind])
    yield f


def _by(stats, kind, name_of):
    """Sum node.stats[(kind, x)] by name_of(x) (unknown values fold into "other")."""
    out: dict[str, int] = {}
    for key, v in stats.items():
        if isinstance(key, tuple) and len(key) == 2 and key[0] == kind:
            name = name_of(key[1])
            out[name] = out.get(name, 0) + v
    return out


def _folded(got: dict[str, int], known) -> dict[str, int]:
    """Counts by name with every name outside `known` folded into "other"."""
    out: dict[str, int] = {}
    for name, v in got.items():
        name = L.one_of(name, known)
        out[name] = out.get(name, 0) + v
    return out


def _fixed(family, known, got, prefix=()):
    """One series per known value (zeros too), plus "other" when something was."""
    for value in known:
        family.add_metric([*prefix, value], got.get(value, 0))
    if got.get(L.OTHER):
        family.add_metric([*prefix, L.OTHER], got[L.OTHER])


def _nhrp(s: Sample):
    p = CounterMetricFamily("dmvpn_nhrp_packets", "NHRP packets received (decoded, before "
                            "the checksum and authentication checks) and sent, by overlay "
                            "family (protocol type) and type",
                            labels=["interface", "family", "direction", "type"])
    for family, counters in s.nhrp_by_family.items():
        for d in L.DIRECTIONS:
            _fixed(p, L.PACKET_TYPES, _by(counters, d, L.packet_type),
                   (s.node.interface, family, d))
    yield p
    e = CounterMetricFamily("dmvpn_nhrp_errors", "NHRP error indications received (rx) and "
                            "sent (tx), by error code", labels=["direction", "code"])
    _fixed(e, L.ERROR_CODES, _by(s.nhrp, "error_rx", L.error_code), ("rx",))
    _fixed(e, L.ERROR_CODES, _by(s.nhrp, "error_tx", L.error_code), ("tx",))
    yield e
    d = CounterMetricFamily("dmvpn_nhrp_drops", "NHRP packets the controller dropped, by "
                            "reason", labels=["reason"])
    _fixed(d, L.NHRP_DROPS, _folded(s.nhrp_drops, L.NHRP_DROPS))
    yield d
    cap = CounterMetricFamily("dmvpn_nhrp_cap_refusals", "What the engine refused because a "
                              "table was at its cap (registrations, cache entries, requests), "
                              "by table", labels=["table"])
    _fixed(cap, L.CAPS, _folded(s.caps, L.CAPS))
    yield cap
    r = CounterMetricFamily("dmvpn_nhrp_registrations", "Registration requests answered "
                            "(NHS), by CIE code", labels=["code"])
    _fixed(r, L.CIE_CODES, _by(s.nhrp, "registration", L.cie_code))
    yield r
    res = CounterMetricFamily("dmvpn_nhrp_resolutions", "Resolution requests answered, "
                              "answered negatively, forwarded (NHS) and given up (NHC)",
                              labels=["result"])
    for key, result in L.RESOLUTIONS.items():
        res.add_metric([result], s.nhrp.get(key, 0))
    yield res
    ti = CounterMetricFamily("dmvpn_traffic_indications", "Traffic indications (redirects) "
                             "sent (hub) and received (spoke)", labels=["direction"])
    ti.add_metric(["rx"], s.nhrp.get(("rx", PacketType.TRAFFIC_INDICATION), 0))
    ti.add_metric(["tx"], s.nhrp.get(("indication", "tx"), 0))
    yield ti


def _shortcuts(s: Sample):
    g = GaugeMetricFamily("dmvpn_shortcuts", "Shortcuts installed (phase 3), by overlay "
                          "family", labels=["interface", "family"])
    for family, n in s.shortcuts_by_family.items():
        g.add_metric([s.node.interface, family], n)
    yield g
    ev = CounterMetricFamily("dmvpn_shortcut_events", "Shortcuts installed, refreshed and "
                             "expired", labels=["event"])
    for key, event in L.SHORTCUT_EVENTS.items():
        ev.add_metric([event], s.nhrp.get(key, 0))
    yield ev
    h = HistogramMetricFamily("dmvpn_shortcut_setup_seconds", "Time from the first traffic "
                              "indication or trigger to the installed shortcut")
    v = s.latency
    h.add_metric([], [(floatToGoString(b), n) for b, n in v.cumulative()], v.total)
    yield h
    yield CounterMetricFamily("dmvpn_shortcut_setup_unobserved", "Set-up latencies the "
                              "histogram missed (more than the engine keeps between two "
                              "scrapes)", value=v.missed)


def _dataplane(s: Sample):
    pk = CounterMetricFamily("dmvpn_dataplane_packets", "Data-plane packets by path",
                             labels=["path"])
    by = CounterMetricFamily("dmvpn_dataplane_bytes", "Data-plane bytes by path",
                             labels=["path"])
    for path, c in s.paths.items():
        pk.add_metric([path], c.packets)
        by.add_metric([path], c.bytes)
    yield pk
    yield by
    dp = CounterMetricFamily("dmvpn_dataplane_drops", "Data-plane packets dropped, by reason",
                             labels=["reason"])
    db = CounterMetricFamily("dmvpn_dataplane_dropped_bytes", "Data-plane bytes dropped, "
                             "by reason", labels=["reason"])
    for reason, c in s.drops.items():
        dp.add_metric([reason], c.packets)
        db.add_metric([reason], c.bytes)
    yield dp
    yield db
    yield _gauge("dmvpn_dataplane_mappings", "NBMA mappings (host entries) the controller "
                 "keeps in the data plane", s.mappings)


def _receive(s: Sample):
    g = s.gre
    yield CounterMetricFamily("dmvpn_gre_socket_received", "GRE datagrams the controller read "
                              "from its raw socket", value=g.received)
    yield CounterMetricFamily("dmvpn_gre_socket_kernel_drops", "GRE datagrams the kernel "
                              "dropped on the controller's full socket buffer (SO_RXQ_OVFL)",
                              value=g.kernel_drops)
    d = CounterMetricFamily("dmvpn_gre_socket_discards", "GRE datagrams read and discarded "
                            "(not NHRP for this tunnel), by reason", labels=["reason"])
    _fixed(d, L.GRE_DISCARDS, _folded(g.discards, L.GRE_DISCARDS))
    yield d
    yield _gauge("dmvpn_gre_socket_receive_buffer_bytes", "Receive buffer the kernel gave "
                 "the GRE socket", s.node.gre_rcvbuf)


def _routes(s: Sample):
    r = s.routes
    w = CounterMetricFamily("dmvpn_route_writes", "Kernel route writes (shortcut routes), by "
                            "result", labels=["result"])
    _fixed(w, L.ROUTE_RESULTS, r.writes)
    yield w
    yield CounterMetricFamily("dmvpn_route_write_batches", "Batches of route writes sent to "
                              "the kernel", value=r.batches)
    yield CounterMetricFamily("dmvpn_route_lookups", "Route lookups asked of the kernel "
                              "(RTM_GETROUTE)", value=r.lookups)
    e = CounterMetricFamily("dmvpn_route_lookup_errors", "Route lookups without an answer, "
                            "by reason", labels=["reason"])
    _fixed(e, L.ROUTE_LOOKUP_ERRORS, r.lookup_errors)
    yield e
    rs = CounterMetricFamily("dmvpn_route_table_resyncs", "Dumps of the overlay's routing "
                             "table asked for, by reason", labels=["reason"])
    _fixed(rs, L.ROUTE_RESYNCS, _folded(r.resyncs, L.ROUTE_RESYNCS))
    yield rs
    yield CounterMetricFamily("dmvpn_route_notifications_lost", "Times route notifications "
                              "were lost (ENOBUFS on the monitor socket)",
                              value=r.notifications_lost)


def _control(s: Sample):
    c = s.control
    yield CounterMetricFamily("dmvpn_control_requests", "Control socket requests answered",
                              value=c.requests)
    e = CounterMetricFamily("dmvpn_control_errors", "Control socket connections answered "
                            "with an error line (or cut off), by reason", labels=["reason"])
    _fixed(e, L.CONTROL_ERRORS, _folded(c.errors, L.CONTROL_ERRORS))
    yield e


def _ipsec(s: Sample):
    g = GaugeMetricFamily("dmvpn_ipsec_sas", "IPsec security associations by state (zeros "
                          "without IPsec)", labels=["state"])
    got: dict[str, int] = {}
    for state, n in (s.ipsec or {}).items():
        name = L.one_of(state, L.IPSEC_STATES)
        got[name] = got.get(name, 0) + n
    _fixed(g, L.IPSEC_STATES, got)
    return g


def _peers(s: Sample):
    pk = CounterMetricFamily("dmvpn_peer_packets", "Data-plane packets sent to this peer "
                             "(metrics.per-peer)", labels=["peer"])
    by = CounterMetricFamily("dmvpn_peer_bytes", "Data-plane bytes sent to this peer "
                             "(metrics.per-peer)", labels=["peer"])
    for peer, packets, nbytes in s.peers:
        pk.add_metric([peer], packets)
        by.add_metric([peer], nbytes)
    yield pk
    yield by
    yield _gauge("dmvpn_peers_unexported", "Peers beyond metrics.per-peer-limit, without "
                 "series", s.peers_unexported)
