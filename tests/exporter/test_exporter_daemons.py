"""The exporter of real `xdmvpn run` daemons (hub and spokes in namespaces): scraped over
HTTP from inside each node's namespace, parsed with prometheus_client's parser, and held
against what the control socket says in the same quiet moment."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from topo import Topology

pytestmark = pytest.mark.root

PORT = 9351
METRICS = f'listen = "127.0.0.1:{PORT}"\nper-peer = true\nper-peer-limit = 1'


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    t = Topology(tmp_path_factory.mktemp("exporter"), spokes=2, metrics=METRICS)
    try:
        t.start_all()
        t.wait_for(lambda: t.registered("spoke1") and t.registered("spoke2"), 20,
                   message="spokes registered")
        yield t
    finally:
        t.close()


def fetch(t, name: str, url: str = f"http://127.0.0.1:{PORT}/metrics") -> str:
    code = ("import sys, urllib.request\n"
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=10).read().decode())")
    out = subprocess.run(["nsenter", f"--net=/run/netns/{t.ns(name)}", sys.executable, "-c",
                          code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr + t.log(name)
    return out.stdout


def parse(text: str) -> dict:
    """{sample name: {frozenset of (label, value): value}}."""
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def scrape(t, name: str, **kw) -> dict:
    return parse(fetch(t, name, **kw))


def by(samples: dict, label: str, **fixed) -> dict:
    """{value of label: sample value} for the samples that also carry the fixed labels."""
    out = {}
    for labels, value in samples.items():
        d = dict(labels)
        if all(d.get(k) == v for k, v in fixed.items()):
            out[d[label]] = value
    return out


def settled(t, name: str, pick, ask):
    """Scrape, ask the control socket, scrape again until both scrapes agree on pick():
    then the answer is from the same quiet moment as the scrape."""
    for _ in range(20):
        a = scrape(t, name)
        answer = ask()
        b = scrape(t, name)
        if pick(a) == pick(b):
            return b, answer
        time.sleep(0.3)
    raise AssertionError(f"{name}: never quiet for a scrape")


def dataplane(m: dict):
    return (m["dmvpn_dataplane_packets_total"], m["dmvpn_dataplane_bytes_total"],
            m["dmvpn_dataplane_drops_total"])


def nhrp(m: dict):
    return (m["dmvpn_nhrp_packets_total"], m["dmvpn_nhrp_cache_entries"],
            m["dmvpn_traffic_indications_total"], m["dmvpn_shortcuts"])


def test_scrape_answers_with_build_and_node_info(lab):
    for name, role in (("hub1", "hub"), ("spoke1", "spoke"), ("spoke2", "spoke")):
        m = scrape(lab, name)
        assert m["dmvpn_up"] == {frozenset(): 1.0}
        assert list(m["dmvpn_build_info"].values()) == [1.0]
        (info,) = m["dmvpn_node_info"]
        info = dict(info)
        assert (info["interface"], info["role"], info["xdmvpn_instance"]) == (
            "dmvpn0", role, lab.instance(name))
        assert info["xdp_mode"] in ("native", "generic")
        assert by(m["dmvpn_ipsec_sas"], "state") == {"up": 0, "connecting": 0, "down": 0}
        assert "process_resident_memory_bytes" in m


def test_cache_entries_and_nhs_match_the_snapshot(lab):
    for name in ("hub1", "spoke1"):
        m, snap = settled(lab, name, nhrp, lambda: lab.snapshot(name))
        want = Counter(e["type"] for e in snap["cache"])
        got = by(m["dmvpn_nhrp_cache_entries"], "type", interface="dmvpn0")
        assert got == {t: float(want.get(t, 0)) for t in got}, (got, want)
        assert set(want) <= set(got)
        nhs = by(m["dmvpn_nhs_up"], "nhs", interface="dmvpn0") if "dmvpn_nhs_up" in m else {}
        assert nhs == {c["nbma"]: float(c["state"] == "up") for c in snap["nhs"]}
    assert by(scrape(lab, "hub1")["dmvpn_nhrp_cache_entries"], "type")["dynamic"] == 2
    assert by(scrape(lab, "spoke1")["dmvpn_nhs_up"], "nhs") == {lab.nbma("hub1"): 1.0}


def test_dataplane_counters_equal_the_stats(lab):
    lab.ping("spoke1", lab.tunnel_ip("hub1"), count=3, interval=0.05, lan=False)
    for name in ("hub1", "spoke1"):
        m, st = settled(lab, name, dataplane, lambda: lab.ask(name, "stats"))
        packets, nbytes, drops = dataplane(m)
        assert by(packets, "path") == {p: float(c["packets"]) for p, c in st["paths"].items()}
        assert by(nbytes, "path") == {p: float(c["bytes"]) for p, c in st["paths"].items()}
        assert by(drops, "reason") == {r: float(c["packets"]) for r, c in st["drops"].items()}
    assert by(m["dmvpn_dataplane_packets_total"], "path")["encap"] >= 3      # spoke1


def test_nhrp_packet_counters_equal_the_stats(lab):
    for name in ("hub1", "spoke1"):
        m, st = settled(lab, name, nhrp, lambda: lab.ask(name, "stats"))
        for direction in ("rx", "tx"):
            got = by(m["dmvpn_nhrp_packets_total"], "type", direction=direction)
            want = {k.split(".", 1)[1]: v for k, v in st["nhrp"].items()
                    if k.startswith(direction + ".")}
            assert {k: v for k, v in got.items() if v} == want, (name, direction)
    assert by(m["dmvpn_nhrp_packets_total"], "type", direction="tx")[
        "registration_request"] >= 1                                          # spoke1


def test_phase3_shortcut_latency_and_indications(lab):
    hub0, s0 = scrape(lab, "hub1"), scrape(lab, "spoke1")
    ti = "dmvpn_traffic_indications_total"
    hist = "dmvpn_shortcut_setup_seconds_count"
    r = lab.ping("spoke1", lab.lan_host("spoke2"), count=1)
    assert "1 received" in r.stdout, r.stdout + lab.log("hub1")
    lab.wait_for(lambda: any(s["prefix"] == "10.0.2.0/24"
                             for s in lab.snapshot("spoke1")["shortcuts"]), 5,
                 message="shortcut on spoke1")
    m, (snap, st) = settled(lab, "spoke1", nhrp, lambda: (lab.snapshot("spoke1"),
                                                          lab.ask("spoke1", "stats")))
    assert m["dmvpn_shortcuts"] == {frozenset({("interface", "dmvpn0"), ("family", "ipv4")}):
                                    float(len(snap["shortcuts"]))}
    assert len(snap["shortcuts"]) >= 1
    assert by(m[ti], "direction")["rx"] == st["nhrp"]["rx.traffic_indication"] >= \
        by(s0[ti], "direction")["rx"] + 1
    # the histogram saw every set-up the engine timed, each once
    assert m[hist][frozenset()] == len(st["setup_latencies"]) >= s0[hist][frozenset()] + 1
    assert m["dmvpn_shortcut_setup_seconds_sum"][frozenset()] == pytest.approx(
        sum(st["setup_latencies"]))
    buckets = by(m["dmvpn_shortcut_setup_seconds_bucket"], "le")
    assert buckets["+Inf"] == m[hist][frozenset()] and buckets["2.0"] == buckets["+Inf"]
    assert by(m["dmvpn_shortcut_events_total"], "event")["installed"] >= 1
    hub, hst = settled(lab, "hub1", nhrp, lambda: lab.ask("hub1", "stats"))
    assert by(hub[ti], "direction")["tx"] == hst["nhrp"]["indication.tx"] >= \
        by(hub0[ti], "direction")["tx"] + 1
    assert by(hub["dmvpn_dataplane_packets_total"], "path")["hairpin"] >= \
        by(hub0["dmvpn_dataplane_packets_total"], "path")["hairpin"] + 2


def test_controller_counters_equal_the_stats(lab):
    """The daemon's own counters (GRE socket, control socket, routes) as metrics: the
    same numbers as `show stats` in the same quiet moment."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(lab.socket("hub1"))
    sock.sendall(b"not json\n")
    assert b'"ok": false' in sock.recv(4096)
    sock.close()

    def pick(m):
        return (m["dmvpn_gre_socket_received_total"], m["dmvpn_control_errors_total"],
                m["dmvpn_route_writes_total"], m["dmvpn_gre_socket_kernel_drops_total"])
    m, st = settled(lab, "hub1", pick, lambda: lab.ask("hub1", "stats"))
    d = st["daemon"]
    one = frozenset()
    assert m["dmvpn_gre_socket_received_total"][one] == d["gre_rx"] > 0
    assert m["dmvpn_gre_socket_kernel_drops_total"][one] == d.get("gre_rx_kernel_drops", 0)
    assert m["dmvpn_gre_socket_receive_buffer_bytes"][one] == st["gre_rcvbuf"] > 0
    errors = by(m["dmvpn_control_errors_total"], "reason")
    assert errors["malformed"] == d["control_error.malformed"] >= 1
    assert m["dmvpn_control_requests_total"][one] > d["control_requests"] > 0  # + the ask
    writes = by(m["dmvpn_route_writes_total"], "result")
    assert writes == {r: float(d.get(f"route_{r}", 0)) for r in ("added", "deleted",
                                                                  "failed")}
    resyncs = by(m["dmvpn_route_table_resyncs_total"], "reason")
    assert resyncs["start"] == d["route_resync.start"] == 1
    assert m["dmvpn_route_lookups_total"][one] == d.get("route_lookups", 0)
    caps = by(m["dmvpn_nhrp_cap_refusals_total"], "table")
    assert caps == {t: float(st["nhrp"].get(f"cap.{t}", 0)) for t in caps}


def test_per_peer_series_are_capped_by_the_limit(lab):
    m, st = settled(lab, "hub1", lambda m: m["dmvpn_peer_packets_total"],
                    lambda: lab.ask("hub1", "stats"))
    first = sorted(st["mappings"], key=lambda r: r["prefix"])[0]
    assert by(m["dmvpn_peer_packets_total"], "peer") == {
        first["prefix"].split("/")[0]: float(first["packets"])}
    assert by(m["dmvpn_peer_bytes_total"], "peer") == {
        first["prefix"].split("/")[0]: float(first["bytes"])}
    assert m["dmvpn_peers_unexported"] == {frozenset(): float(len(st["mappings"]) - 1)}


def test_reload_that_moves_the_listener_is_refused(lab):
    path = lab.tmp / "spoke1.toml"
    text = path.read_text()
    path.write_text(text.replace(f":{PORT}", f":{PORT + 1}"))
    try:
        lab.procs["spoke1"].send_signal(signal.SIGHUP)
        lab.wait_for(lambda: "metrics.listen change only with a restart" in lab.log("spoke1"),
                     5, message="reload refused")
    finally:
        path.write_text(text)
    m = scrape(lab, "spoke1")
    assert by(m["dmvpn_controller_faults_total"], "kind")["reload_failed"] >= 1


def test_bind_failure_is_one_line_and_ipv6_listens(lab):
    """Last: restarts spoke2. A port in use stops the start with one error line; then the
    same node listens on [::1]."""
    assert lab.stop("spoke2") == 0
    blocker = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{lab.ns('spoke2')}", sys.executable, "-c",
         "import socket, sys, time\n"
         f"s = socket.create_server(('127.0.0.1', {PORT}))\n"
         "print('bound', flush=True)\n"
         "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert blocker.stdout.readline().strip() == "bound"
        proc = lab.start("spoke2", wait=False)
        assert proc.wait(60) == 2, lab.log("spoke2")
        lab.procs.pop("spoke2")
        last = lab.log("spoke2").rstrip("\n").splitlines()[-1]
        assert last == (f"xdmvpn: error: metrics.listen 127.0.0.1:{PORT}: cannot listen "
                        "(Address already in use)"), lab.log("spoke2")
    finally:
        blocker.kill()
        blocker.wait()
    path = lab.tmp / "spoke2.toml"
    path.write_text(path.read_text().replace(f'"127.0.0.1:{PORT}"', f'"[::1]:{PORT}"'))
    lab.start("spoke2")
    lab.wait_for(lambda: lab.registered("spoke2"), 20, message="spoke2 registered again")
    m = scrape(lab, "spoke2", url=f"http://[::1]:{PORT}/metrics")
    assert m["dmvpn_up"] == {frozenset(): 1.0}
    assert by(m["dmvpn_nhs_up"], "nhs") == {lab.nbma("hub1"): 1.0}
