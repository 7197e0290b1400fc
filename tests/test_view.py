"""The one read-only state view (xdmvpn.view) that `show` (the control socket's snapshot and
stats answers) and the exporter read: what it returns from real engine nodes, that its
results are copies, that its counter vocabularies are the ones the code counts, and that
`show` and the exporter read nothing but the view (issue 11: "one read-only state view that
show, stats and the exporter share")."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import sys
from collections import Counter
from ipaddress import ip_address as A, ip_network as N
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "engine"))

from test_show import phase3_nodes  # noqa: E402
from xdmvpn import show, view as V  # noqa: E402
from xdmvpn.dataplane.maps import Mapping  # noqa: E402

CTL = Path(__file__).resolve().parents[1] / "ctl" / "xdmvpn"


class MemoryMaps:
    """The read side of the data plane's maps, in memory: BPF maps need root (the daemon
    tests read the real ones through the same view)."""

    def __init__(self, hosts, prefixes=()):
        self.hosts = [Mapping(N(f"{p}/32"), A(n), i, 100 * i, 0)
                      for i, (p, n) in enumerate(hosts, 1)]
        self.nets = [Mapping(N(p), A(n), 7, 700, 0) for p, n in prefixes]

    def counters(self):
        return {"decap": {"packets": 5, "bytes": 500}, "encap": {"packets": 3, "bytes": 300}}

    def drops(self):
        return {"no_mapping": {"packets": 1, "bytes": 60}}

    def mappings(self):
        return list(self.hosts)

    def prefixes(self):
        return list(self.nets)

    def multicast(self):
        return [A("192.0.2.1")]

    def nhs(self):
        return [A("192.0.2.1")]


class Peers:
    """ipsec.peers.IpsecPeers as the view reads it (charon is not running here)."""

    def snapshot(self):
        return {"peers": {"192.0.2.12": {"ike_sas": 1, "child_sas": 2, "identity": "s2"}}}

    def stats_view(self):
        return {"manager.initiated": 2}

    def sa_counts(self):
        return {"up": 1, "connecting": 0, "down": 0}


@pytest.fixture
def spoke1():
    """Spoke 1 with a shortcut to 192.168.2.0/24 via spoke 2 (tests/test_show.py)."""
    return phase3_nodes()[2]


def daemon_view(node, ipsec=None, per_peer_limit=None, counters=None):
    fx = SimpleNamespace(stats=Counter(send_failed=2, shortcut_deferred=1),
                         mapped={A("10.0.0.1"): A("192.0.2.1"), A("10.0.0.12"): A("192.0.2.12")})
    info = V.NodeInfo("tun0", "spoke", "lab-s1", A("192.0.2.11"), "native", 8 << 20)
    return V.DaemonView(
        node, info, per_peer_limit=per_peer_limit,
        counters=counters if counters is not None else Counter(
            gre_rx=12, route_added=1, **{"control_error.malformed": 1}),
        effects=fx, maps=MemoryMaps([("10.0.0.1", "192.0.2.1"), ("10.0.0.12", "192.0.2.12")],
                                    [("192.168.2.0/24", "192.0.2.12")]),
        mirror=SimpleNamespace(stats={"mirrored": 0}), ipsec=ipsec)


# -- what the view reads ----------------------------------------------------------------------

def test_a_daemon_views_snapshot_is_the_engine_snapshot_with_its_ipsec_part(spoke1):
    engine = show.snapshot(V.EngineView(spoke1, "tun0"))
    assert show.snapshot(daemon_view(spoke1)) == engine
    with_ipsec = show.snapshot(daemon_view(spoke1, Peers()))
    assert with_ipsec == engine | {"ipsec": Peers().snapshot()}
    assert [r["auth"] for r in show.cache_json(with_ipsec)
            if r["protocol"] == "10.0.0.12"] == [True]
    assert json.loads(json.dumps(with_ipsec)) == with_ipsec


def test_the_stats_answer_keeps_its_keys_and_names(spoke1):
    st = show.stats(daemon_view(spoke1, Peers()))
    assert list(st) == ["paths", "drops", "nhrp", "daemon", "mirror", "mappings", "prefixes",
                        "multicast", "nhs_dataplane", "setup_latencies", "nbma", "xdp_mode",
                        "gre_rcvbuf", "ipsec"]
    assert st["paths"]["encap"] == {"packets": 3, "bytes": 300}
    assert st["drops"] == {"no_mapping": {"packets": 1, "bytes": 60}}
    assert st["nhrp"]["rx.resolution_reply"] == 1 and st["nhrp"]["shortcut_installed"] == 1
    assert st["daemon"] == {"gre_rx": 12, "route_added": 1, "control_error.malformed": 1,
                            "send_failed": 2, "shortcut_deferred": 1}
    assert st["mappings"][1] == {"prefix": "10.0.0.12/32", "nbma": "192.0.2.12",
                                 "packets": 2, "bytes": 200}
    assert st["prefixes"] == [{"prefix": "192.168.2.0/24", "nbma": "192.0.2.12",
                               "packets": 7, "bytes": 700}]
    assert (st["multicast"], st["nhs_dataplane"]) == (["192.0.2.1"], ["192.0.2.1"])
    assert st["setup_latencies"] == [0.0]           # the fake clock did not move
    assert (st["nbma"], st["xdp_mode"], st["gre_rcvbuf"]) == ("192.0.2.11", "native", 8 << 20)
    assert st["ipsec"] == {"manager.initiated": 2} and st["mirror"] == {"mirrored": 0}
    assert json.loads(json.dumps(st)) == st
    assert show.stats(daemon_view(spoke1))["ipsec"] is None


def test_grouped_counters_and_faults(spoke1):
    spoke1.stats[("cap", "shortcuts")] += 2
    spoke1.stats[("drop", "checksum")] += 1
    v = daemon_view(spoke1, counters=Counter({
        "gre_rx": 9, "gre_rx_kernel_drops": 4, "gre_drop.wrong_key": 3,
        "nhrp_drop.no_ipsec_sa": 6, "control_requests": 5, "control_error.timeout": 1,
        "route_added": 2, "route_failed": 1, "route_batches": 2, "route_lookups": 8,
        "route_lookup_failed": 1, "route_resync.start": 1, "reload_failed": 1}))
    assert v.caps() == {"shortcuts": 2}
    assert v.nhrp_drops() == {"checksum": 1, "no_ipsec_sa": 6}
    assert v.gre() == V.GreCounters(9, 4, {"wrong_key": 3})
    assert v.control() == V.ControlCounters(5, {"timeout": 1})
    r = v.routes()
    assert (r.writes, r.batches, r.lookups) == ({"added": 2, "deleted": 0, "failed": 1}, 2, 8)
    assert r.lookup_errors == {"unanswered": 0, "failed": 1} and r.resyncs == {"start": 1}
    assert v.faults()["reload_failed"] == 1 and v.faults()["send_failed"] == 2
    assert set(v.faults()) == set(V.FAULTS)
    assert v.mapping_count() == 2 and v.shortcut_count() == 1
    assert v.per_peer_limit() is None


def test_what_the_view_returns_is_a_copy(spoke1):
    v = daemon_view(spoke1)
    counters = v.nhrp_counters()
    counters.clear()
    assert v.nhrp_counters()
    v.daemon_counters()["gre_rx"] = 0
    assert v.daemon_counters()["gre_rx"] == 12
    row = v.cache()[0]
    with pytest.raises(AttributeError):
        row.expires = 0.0                                    # a named tuple
    nhs = v.nhs()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        nhs.state = "down"
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.node().nbma = A("192.0.2.99")
    with pytest.raises(AttributeError):                      # no attributes beyond its slots
        v.extra = 1
    assert not hasattr(v, "__dict__")


# -- the vocabularies are what the code counts -----------------------------------------------

def _src(*parts: str) -> str:
    path = CTL.joinpath(*parts)
    if path.is_dir():
        return "\n".join(p.read_text() for p in sorted(path.glob("*.py")))
    return path.read_text()


def test_cap_names_are_the_engines():
    assert set(re.findall(r'\("cap", "([a-z0-9_]+)"\)', _src("engine"))) == set(V.CAPS)


def test_gre_discard_reasons_are_the_transports():
    # the transport's reasons, and the daemon's own: NHRP of strangers shed while behind
    assert set(re.findall(r'return None, "([a-z0-9_]+)"', _src("transport.py"))) | {
        "shed_unknown"} == set(V.GRE_DISCARDS)
    assert 'stats[f"gre_drop.{src}"]' in _src("daemon", "service.py")
    assert 'stats["gre_drop.shed_unknown"]' in _src("daemon", "service.py")


def test_control_error_reasons_are_the_control_sockets():
    src = _src("control.py")
    counted = set(re.findall(r'_error\(stats, "([a-z0-9_]+)"', src))
    counted |= set(re.findall(r'control_error\.([a-z0-9_]+)"', src))
    assert counted == set(V.CONTROL_ERRORS)


def test_route_counters_are_the_routes():
    src = _src("daemon", "routes.py")
    resyncs = set(re.findall(r'resync(?:\(|, )"([a-z0-9_]+)"', src))
    assert resyncs == set(V.ROUTE_RESYNCS)
    for name in [f"route_{r}" for r in V.ROUTE_RESULTS] + [
            f"route_lookup_{r}" for r in V.ROUTE_LOOKUP_ERRORS] + [
            "route_batches", "route_lookups", "route_notifications_lost"]:
        assert f'stats["{name}"]' in src, name


def test_daemon_counters_the_view_reads_are_counted():
    src = _src("daemon") + _src("control.py")
    assert set(re.findall(r'nhrp_drop\.([a-z0-9_]+)"', src)) == set(V.DAEMON_NHRP_DROPS)
    for name in ("gre_rx", "gre_rx_kernel_drops", "control_requests"):
        assert f'stats["{name}"]' in src, name


# -- show and the exporter read the view, nothing else -----------------------------------------

READERS = [CTL / "show.py", CTL / "cli" / "show_cmd.py", *sorted((CTL / "exporter").glob("*.py"))]
# xdmvpn modules a reader may import: the view, vocabularies of the codec, its own package
ALLOWED_IMPORTS = {"xdmvpn", "xdmvpn.view", "xdmvpn.nhrp.constants", "xdmvpn.errors",
                   "xdmvpn.show", "xdmvpn.control", "xdmvpn.config"}
# attributes only the live parts have (the daemon's, the engine node's, the effects')
LIVE = {"fx", "dp", "mirror", "netlink", "ctx", "nhcs", "clock", "setup_latencies",
        "setup_count", "mapped", "call_in_loop", "daemon", "gre_socket"}


def _imports(path: Path) -> set[str]:
    package = "xdmvpn." + ".".join(path.relative_to(CTL).parent.parts)
    package = package.rstrip(".")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
    return {m for m in out if m == "xdmvpn" or m.startswith("xdmvpn.")}


@pytest.mark.parametrize("path", READERS, ids=lambda p: str(p.relative_to(CTL)))
def test_readers_reach_state_only_through_the_view(path):
    imports = _imports(path)
    own = {m for m in imports if m.startswith("xdmvpn.exporter")}
    assert imports - own <= ALLOWED_IMPORTS, imports - own - ALLOWED_IMPORTS
    private = set(V.EngineView.__slots__) | set(V.DaemonView.__slots__)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            assert node.attr not in private | LIVE, (path.name, node.lineno, node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("getattr", "vars"), (path.name, node.lineno)


def test_the_daemon_answers_and_serves_metrics_from_its_view():
    src = _src("daemon", "service.py")
    assert 'return {"snapshot": show.snapshot(self.view())}' in src
    assert "return show.stats(self.view())" in src
    assert "metrics_server.start(self.cfg.metrics, self)" in src
    assert src.count("DaemonView(") == 1                    # built in one place: view()
    tree = ast.parse(src)
    handle = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                  and n.name == "handle")
    reads = {n.attr for n in ast.walk(handle) if isinstance(n, ast.Attribute)
             and isinstance(n.value, ast.Attribute) and isinstance(n.value.value, ast.Name)
             and n.value.value.id == "self"}
    assert not reads & {"stats", "cache", "shortcuts", "mappings", "counters"}, reads
