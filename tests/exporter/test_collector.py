"""The collector against a fake daemon (no root, no BPF): every family parses, values are
where they belong, and no label value comes from outside the fixed sets even when the
counters hold codes a peer made up."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, deque
from ipaddress import ip_address, ip_network
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from xdmvpn import config as C
from xdmvpn.dataplane import maps as M
from xdmvpn.engine.cache import EntryType
from xdmvpn.engine.registration_client import NhcState
from xdmvpn.exporter import labels as L
from xdmvpn.exporter.collector import DmvpnCollector
from xdmvpn.exporter.histogram import LatencyHistogram
from xdmvpn.nhrp.constants import ErrorCode, PacketType
from xdmvpn.view import DaemonView, NodeInfo

CTL = Path(__file__).resolve().parents[2] / "ctl" / "xdmvpn"

CONFIG = """\
role = "spoke"
[tunnel]
name = "tun7"
address = "10.0.0.11/24"
source-interface = "eth0"
[[nhrp.nhs]]
tunnel-ip = "10.0.0.1"
nbma = "192.0.2.1"
[[nhrp.nhs]]
tunnel-ip = "10.0.0.2"
nbma = "192.0.2.2"
[control]
instance = "lab-s1"
[metrics]
listen = "127.0.0.1:9351"
"""


class FakeMaps:
    def __init__(self, peers: int):
        self.peers = peers

    def counters(self):
        return {p: {"packets": i, "bytes": 100 * i} for i, p in enumerate(M.PATHS)}

    def drops(self):
        return {d: {"packets": i + 1, "bytes": 60 * (i + 1)} for i, d in enumerate(M.DROPS)}

    def mappings(self):
        return [M.Mapping(ip_network(f"10.0.1.{i}/32"), ip_address(f"192.0.2.{i}"), i, 10 * i, 0)
                for i in range(1, self.peers + 1)]


class FakeIpsec:
    def snapshot(self):
        return {"peers": {}}

    def stats_view(self):
        return {}

    def sa_counts(self):
        return {"up": 3, "connecting": 1, "rekeying\n{evil}": 2}


class FakeCache:
    def counts(self):
        out = {t.value: 0 for t in EntryType}
        out.update(local=1, nhs=1, dynamic=5, cached=2)
        return out


def nhc(index, nbma, state):
    return SimpleNamespace(index=index, nhs=SimpleNamespace(nbma=ip_address(nbma), proto=None,
                                                            priority=0),
                           proto=None, state=state, expires=None, registered_at=None,
                           last_error=None)


class FakeSource:
    """The daemon's side of the collector (Daemon.read): a DaemonView of fake parts, read
    at once on the test's thread. The parts are fakes because a scrape's values must hold
    codes no enum knows, which real parts would refuse to count."""

    def __init__(self, cfg, node, fx, maps, stats, ipsec):
        self.cfg, self.node, self.fx, self.maps, self.stats = cfg, node, fx, maps, stats
        self.ipsec = ipsec
        self.busy = False

    def read(self, fn, timeout=5.0):
        if self.busy:
            raise TimeoutError
        m = self.cfg.metrics
        info = NodeInfo(self.cfg.tunnel.name, self.cfg.role, self.cfg.control.instance,
                        ip_address("192.0.2.11"), "native", 8 << 20)
        return fn(DaemonView(self.node, info,
                             per_peer_limit=m.per_peer_limit if m.per_peer else None,
                             counters=self.stats, effects=self.fx, maps=self.maps,
                             mirror=SimpleNamespace(stats={}), ipsec=self.ipsec))


def fake_daemon(per_peer=False, limit=100, peers=0, ipsec=False):
    cfg = C.loads(CONFIG)
    cfg = dataclasses.replace(cfg, metrics=C.MetricsConfig(cfg.metrics.listen, per_peer, limit))
    stats = Counter({
        ("rx", PacketType.REGISTRATION_REPLY): 7, ("tx", PacketType.REGISTRATION_REQUEST): 8,
        ("rx", PacketType.TRAFFIC_INDICATION): 2, ("tx", PacketType.RESOLUTION_REQUEST): 2,
        ("rx", 99): 4,                                        # no such type
        ("error_rx", int(ErrorCode.LOOP_DETECTED)): 1, ("error_rx", 200): 5,
        ("error_tx", int(ErrorCode.HOP_COUNT_EXCEEDED)): 3,
        ("drop", "checksum"): 1, ("drop", "a reason nobody listed"): 6,
        ("cap", "shortcuts"): 3, ("cap", "entries"): 2, ("cap", "a table made up"): 1,
        ("registration", 0): 9, ("registration", 13): 1, ("registration", 250): 2,
        ("indication", "tx"): 4, "shortcut_installed": 2, "shortcut_expired": 1,
        "resolution_answered": 3, "resolution_failed": 1,
    })
    nhcs = [nhc(0, "192.0.2.1", NhcState.UP), nhc(1, "192.0.2.2", NhcState.REGISTERING)]
    node = SimpleNamespace(stats=stats, cache=FakeCache(), nhcs=nhcs,
                           shortcuts={ip_network("10.0.2.0/24"): object()},
                           setup_latencies=deque([0.0004, 0.003, 0.25, 7.0], maxlen=4),
                           setup_count=4)
    fx = SimpleNamespace(stats=Counter(send_failed=2, multicast_truncated=1),
                         mapped={ip_address("10.0.0.1"): ip_address("192.0.2.1")})
    daemon_stats = Counter({
        "reload_failed": 1, "gre_rx": 120, "gre_rx_kernel_drops": 17,
        "gre_drop.wrong_key": 9, "gre_drop.not_nhrp": 2, "nhrp_drop.no_ipsec_sa": 5,
        "control_requests": 40, "control_error.malformed": 3, "control_error.too_long": 1,
        "route_added": 11, "route_deleted": 4, "route_failed": 2, "route_batches": 6,
        "route_lookups": 30, "route_lookup_unanswered": 1, "route_resync.start": 1,
        "route_resync.link_down": 2, "route_notifications_lost": 1, "route_dumps": 3})
    return FakeSource(cfg, node, fx, FakeMaps(peers), daemon_stats,
                      FakeIpsec() if ipsec else None)


def scrape(daemon) -> dict:
    """{(sample name, frozenset of labels): value} and the families by name."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DmvpnCollector(daemon))
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, frozenset(s.labels.items())): s.value
              for f in fams.values() for s in f.samples}
    return fams, values


def v(values, name, **labels):
    return values[(name, frozenset(labels.items()))]


ALLOWED = {
    "interface": {"tun7"}, "role": {"spoke"}, "xdmvpn_instance": {"lab-s1"},
    "xdp_mode": set(L.XDP_MODES), "direction": set(L.DIRECTIONS), "family": set(L.FAMILIES),
    "type": set(L.PACKET_TYPES) | set(L.CACHE_TYPES) | {L.OTHER},
    "code": set(L.ERROR_CODES) | set(L.CIE_CODES) | {L.OTHER},
    "reason": set(L.NHRP_DROPS) | set(M.DROPS) | set(L.GRE_DISCARDS) | set(L.CONTROL_ERRORS)
    | set(L.ROUTE_LOOKUP_ERRORS) | set(L.ROUTE_RESYNCS) | {L.OTHER},
    "table": set(L.CAPS) | {L.OTHER},
    "path": set(M.PATHS), "nhs": {"192.0.2.1", "192.0.2.2"},
    "state": set(L.IPSEC_STATES) | {L.OTHER}, "kind": set(L.FAULTS),
    "event": set(L.SHORTCUT_EVENTS.values()),
    "result": set(L.RESOLUTIONS.values()) | set(L.ROUTE_RESULTS),
    "le": {"0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0",
           "2.0", "+Inf"},
    "peer": {f"10.0.1.{i}" for i in range(1, 300)},
    "version": None, "python": None,                 # build info: ours, not a peer's
}


@pytest.mark.parametrize("kw", [{}, {"per_peer": True, "limit": 3, "peers": 5, "ipsec": True}])
def test_label_values_are_fixed(kw):
    fams, values = scrape(fake_daemon(**kw))
    for (name, labels), _ in values.items():
        for key, value in labels:
            assert key in ALLOWED, (name, key)
            assert ALLOWED[key] is None or value in ALLOWED[key], (name, key, value)
    assert all(n.startswith(("dmvpn_",)) for n in fams)


def test_values_from_the_sample():
    fams, values = scrape(fake_daemon(ipsec=True))
    assert v(values, "dmvpn_up") == 1
    assert v(values, "dmvpn_nhrp_cache_entries", interface="tun7", family="ipv4", type="dynamic") == 5
    assert v(values, "dmvpn_nhrp_cache_entries", interface="tun7", family="ipv4", type="negative") == 0
    packets = dict(interface="tun7", family="ipv4")
    assert v(values, "dmvpn_nhrp_packets_total", direction="rx", type="registration_reply",
             **packets) == 7
    assert v(values, "dmvpn_nhrp_packets_total", direction="rx", type="other", **packets) == 4
    assert v(values, "dmvpn_nhrp_packets_total", direction="tx", type="purge_reply",
             **packets) == 0
    assert ("dmvpn_nhrp_packets_total", frozenset(dict(
        direction="tx", type="other", **packets).items())) not in values
    assert v(values, "dmvpn_nhrp_errors_total", direction="rx", code="loop_detected") == 1
    assert v(values, "dmvpn_nhrp_errors_total", direction="rx", code="other") == 5
    assert v(values, "dmvpn_nhrp_errors_total", direction="tx", code="hop_count_exceeded") == 3
    assert v(values, "dmvpn_nhrp_drops_total", reason="other") == 6
    assert v(values, "dmvpn_nhrp_registrations_total", code="success") == 9
    assert v(values, "dmvpn_nhrp_registrations_total", code="binding_not_unique") == 1
    assert v(values, "dmvpn_nhrp_registrations_total", code="other") == 2
    assert v(values, "dmvpn_nhs_up", interface="tun7", family="ipv4", nhs="192.0.2.1") == 1
    assert v(values, "dmvpn_nhs_up", interface="tun7", family="ipv4", nhs="192.0.2.2") == 0
    assert v(values, "dmvpn_shortcuts", interface="tun7", family="ipv4") == 1
    assert v(values, "dmvpn_traffic_indications_total", direction="rx") == 2
    assert v(values, "dmvpn_traffic_indications_total", direction="tx") == 4
    assert v(values, "dmvpn_shortcut_events_total", event="installed") == 2
    assert v(values, "dmvpn_nhrp_resolutions_total", result="answered") == 3
    for i, p in enumerate(M.PATHS):
        assert v(values, "dmvpn_dataplane_packets_total", path=p) == i
        assert v(values, "dmvpn_dataplane_bytes_total", path=p) == 100 * i
    assert v(values, "dmvpn_dataplane_drops_total", reason=M.DROPS[0]) == 1
    assert v(values, "dmvpn_dataplane_dropped_bytes_total", reason=M.DROPS[0]) == 60
    assert v(values, "dmvpn_dataplane_mappings") == 1
    assert v(values, "dmvpn_controller_faults_total", kind="send_failed") == 2
    assert v(values, "dmvpn_controller_faults_total", kind="reload_failed") == 1
    assert v(values, "dmvpn_ipsec_sas", state="up") == 3
    assert v(values, "dmvpn_ipsec_sas", state="other") == 2
    assert v(values, "dmvpn_node_info", interface="tun7", role="spoke",
             xdmvpn_instance="lab-s1", xdp_mode="native") == 1
    assert fams["dmvpn_shortcut_setup_seconds"].type == "histogram"
    b = {s.labels["le"]: s.value for s in fams["dmvpn_shortcut_setup_seconds"].samples
         if s.name.endswith("_bucket")}
    assert (b["0.001"], b["0.005"], b["0.5"], b["2.0"], b["+Inf"]) == (1, 2, 3, 3, 4)
    assert v(values, "dmvpn_shortcut_setup_seconds_count") == 4
    assert v(values, "dmvpn_shortcut_setup_seconds_sum") == pytest.approx(7.2534)
    assert "dmvpn_peer_packets" not in fams and "dmvpn_peers_unexported" not in fams


RECEIVE_ROUTE_CONTROL_CAPS = [      # (sample, labels, value in fake_daemon())
    ("dmvpn_nhrp_drops_total", {"reason": "no_ipsec_sa"}, 5),       # the daemon's
    ("dmvpn_nhrp_drops_total", {"reason": "checksum"}, 1),          # the engine's
    ("dmvpn_nhrp_cap_refusals_total", {"table": "shortcuts"}, 3),
    ("dmvpn_nhrp_cap_refusals_total", {"table": "entries"}, 2),
    ("dmvpn_nhrp_cap_refusals_total", {"table": "pending"}, 0),
    ("dmvpn_nhrp_cap_refusals_total", {"table": "other"}, 1),
    ("dmvpn_gre_socket_received_total", {}, 120),
    ("dmvpn_gre_socket_kernel_drops_total", {}, 17),
    ("dmvpn_gre_socket_discards_total", {"reason": "wrong_key"}, 9),
    ("dmvpn_gre_socket_discards_total", {"reason": "fragment"}, 0),
    ("dmvpn_gre_socket_receive_buffer_bytes", {}, 8 << 20),
    ("dmvpn_control_requests_total", {}, 40),
    ("dmvpn_control_errors_total", {"reason": "malformed"}, 3),
    ("dmvpn_control_errors_total", {"reason": "timeout"}, 0),
    ("dmvpn_route_writes_total", {"result": "added"}, 11),
    ("dmvpn_route_writes_total", {"result": "failed"}, 2),
    ("dmvpn_route_write_batches_total", {}, 6),
    ("dmvpn_route_lookups_total", {}, 30),
    ("dmvpn_route_lookup_errors_total", {"reason": "unanswered"}, 1),
    ("dmvpn_route_table_resyncs_total", {"reason": "link_down"}, 2),
    ("dmvpn_route_table_resyncs_total", {"reason": "vrf"}, 0),
    ("dmvpn_route_notifications_lost_total", {}, 1),
]


def test_receive_route_control_and_cap_counters():
    _, values = scrape(fake_daemon())
    got = [(name, labels, v(values, name, **labels))
           for name, labels, _ in RECEIVE_ROUTE_CONTROL_CAPS]
    assert got == RECEIVE_ROUTE_CONTROL_CAPS


def test_ipsec_zeros_without_a_provider():
    _, values = scrape(fake_daemon())
    for state in ("up", "connecting", "down"):
        assert v(values, "dmvpn_ipsec_sas", state=state) == 0


def test_per_peer_series_are_capped():
    fams, values = scrape(fake_daemon(per_peer=True, limit=3, peers=5))
    peers = {s.labels["peer"]: s.value for s in fams["dmvpn_peer_packets"].samples}
    assert peers == {"10.0.1.1": 1, "10.0.1.2": 2, "10.0.1.3": 3}
    assert v(values, "dmvpn_peer_bytes_total", peer="10.0.1.2") == 20
    assert v(values, "dmvpn_peers_unexported") == 2


def test_ipsec_provider_failing_gives_zeros():
    d = fake_daemon(ipsec=True)

    def broken():
        raise RuntimeError("vici gone")
    d.ipsec.sa_counts = broken
    _, values = scrape(d)
    assert v(values, "dmvpn_ipsec_sas", state="down") == 0 and v(values, "dmvpn_up") == 1
    assert v(values, "dmvpn_nhs_up", interface="tun7", family="ipv4", nhs="192.0.2.1") == 1


def test_scrape_without_an_answer_says_down():
    d = fake_daemon()
    d.busy = True
    fams, values = scrape(d)
    assert v(values, "dmvpn_up") == 0 and set(fams) == {"dmvpn_build_info", "dmvpn_up"}


def test_histogram_counts_each_latency_once():
    h = LatencyHistogram(L.LATENCY_BUCKETS)
    recent = deque(maxlen=3)
    count = 0

    def add(*values):
        nonlocal count
        for x in values:
            recent.append(x)
            count += 1
    add(0.001, 0.003)
    h.feed(count, recent)
    h.feed(count, recent)                      # nothing new: nothing counted
    assert sum(h.counts) == 2 and h.counts[0] == 1
    add(0.04, 0.04, 0.04, 0.04, 3.0)           # 5 new, the deque keeps 3
    h.feed(count, recent)
    view = h.view()
    assert sum(view.counts) == 5 and view.missed == 2 and view.counts[-1] == 1
    assert view.cumulative()[-1] == (float("inf"), 5)
    assert view.total == pytest.approx(0.004 + 0.08 + 3.0)


def _source() -> str:
    return "\n".join(p.read_text() for p in (CTL / "engine").glob("*.py"))


def test_every_drop_reason_of_the_engine_is_listed():
    used = set(re.findall(r'\("drop", "([a-z_]+)"\)', _source()))
    assert used and used <= set(L.NHRP_DROPS), used - set(L.NHRP_DROPS)


def test_every_counted_outcome_exists_in_the_engine():
    src = _source()
    for key in list(L.RESOLUTIONS) + list(L.SHORTCUT_EVENTS):
        assert f'stats["{key}"]' in src, key
    daemon_src = "\n".join(p.read_text() for p in (CTL / "daemon").glob("*.py"))
    for kind in L.FAULTS:
        assert f'stats["{kind}"]' in daemon_src, kind
