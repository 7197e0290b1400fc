"""DMVPN phase 3 end to end: real `xdmvpn run` processes (hub and spokes) in network
namespaces, the BPF data plane in the kernel, NHRP on the wire, tshark as the judge."""

from __future__ import annotations

import json
import sys
import time

import pytest

from topo import captured
from tshark_oracle import tshark_nhrp
from util import run_cli
from xdmvpn.daemon.routes import RTPROT_XDMVPN

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with captured(tmp_path_factory.mktemp("lab"), spokes=2) as t:
        yield t


def cache(t, node):
    return {e["protocol"]: e for e in t.snapshot(node)["cache"]}


def test_spokes_register_and_show_commands_answer(lab):
    hub = cache(lab, "hub1")
    for spoke in ("spoke1", "spoke2"):
        e = hub[lab.tunnel_ip(spoke)]
        assert (e["type"], e["nbma"], e["unique"]) == ("dynamic", lab.nbma(spoke), True)
    out = lab.cli("hub1", "show", "cache", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["protocol"]: r for r in json.loads(out.stdout)}
    assert rows[lab.tunnel_ip("spoke1")]["nbma"] == lab.nbma("spoke1")
    assert rows[lab.tunnel_ip("spoke1")]["type"] == "dynamic"
    nhs = json.loads(lab.cli("spoke1", "show", "nhs", "--json").stdout)
    assert [(n["nbma"], n["protocol"], n["state"]) for n in nhs] == \
        [(lab.nbma("hub1"), lab.tunnel_ip("hub1"), "up")]
    table = lab.cli("spoke1", "show", "dmvpn").stdout.splitlines()
    assert table[0].split()[:2] == ["Src", "Dst"] and lab.nbma("hub1") in table[1]
    # the data plane of the hub knows both spokes, and multicast goes to both
    st = lab.ask("hub1", "stats")
    assert {m["prefix"]: m["nbma"] for m in st["mappings"]} == {
        f"{lab.tunnel_ip(s)}/32": lab.nbma(s) for s in ("spoke1", "spoke2")}
    assert sorted(st["multicast"]) == [lab.nbma("spoke1"), lab.nbma("spoke2")]
    assert lab.ask("spoke1", "stats")["nhs_dataplane"] == [lab.nbma("hub1")]


def test_overlay_addresses_answer_pings_through_the_tunnel(lab):
    r = lab.ping("spoke1", lab.tunnel_ip("hub1"), count=5, interval=0.05, lan=False)
    assert " 0% packet loss" in r.stdout, r.stdout


def test_phase3_first_packets_via_hub_then_direct(lab):
    hub_before = lab.path("hub1", "hairpin")
    r = lab.ping("spoke1", lab.lan_host("spoke2"), count=1)
    assert "1 received" in r.stdout, r.stdout + lab.log("hub1")
    assert lab.path("hub1", "hairpin") - hub_before == 2      # the echo and its reply
    shortcut = lab.wait_for(lambda: [s for s in lab.snapshot("spoke1")["shortcuts"]
                                     if s["prefix"] == "10.0.2.0/24"], 5,
                            message="shortcut on spoke1")[0]
    assert (shortcut["via"], shortcut["nbma"]) == (lab.tunnel_ip("spoke2"),
                                                   lab.nbma("spoke2"))
    lab.wait_for(lambda: any(s["prefix"] == "10.0.1.0/24"
                             for s in lab.snapshot("spoke2")["shortcuts"]), 5,
                 message="reverse shortcut on spoke2")
    # the shortcut route is in the kernel under our protocol number
    routes = lab.exec("spoke1", "ip", "-j", "route", "show", "proto", str(RTPROT_XDMVPN))
    assert [(r["dst"], r["gateway"], r["dev"]) for r in json.loads(routes.stdout)] == \
        [("10.0.2.0/24", lab.tunnel_ip("spoke2"), "dmvpn0")]
    # from now on, direct: the hub sees nothing
    hub_before = lab.path("hub1", "hairpin")
    r = lab.ping("spoke1", lab.lan_host("spoke2"), count=20, interval=0.02)
    assert " 0% packet loss" in r.stdout, r.stdout
    assert lab.path("hub1", "hairpin") == hub_before
    st = lab.ask("spoke1", "stats")
    assert [p["packets"] for p in st["prefixes"] if p["prefix"] == "10.0.2.0/24"][0] >= 20
    assert lab.snapshot("hub1")["cache"] and lab.ask("hub1", "stats")["nhrp"][
        "tx.traffic_indication"] >= 2
    text = lab.cli("spoke1", "show", "shortcut").stdout
    assert "10.0.2.0/24" in text and lab.tunnel_ip("spoke2") in text


def test_clear_shortcut_goes_back_through_the_hub(lab):
    lab.ping("spoke1", lab.lan_host("spoke2"), count=1)
    lab.wait_for(lambda: lab.snapshot("spoke1")["shortcuts"], 5, message="shortcut")
    out = lab.cli("spoke1", "clear", "shortcut")
    assert out.returncode == 0 and out.stdout.startswith("cleared "), out.stderr
    assert lab.snapshot("spoke1")["shortcuts"] == []
    routes = lab.exec("spoke1", "ip", "-j", "route", "show", "proto", str(RTPROT_XDMVPN))
    assert json.loads(routes.stdout) == []
    before = lab.path("hub1", "hairpin")
    # the hub's data plane triggers at most once a second per pair: keep traffic going
    r = lab.ping("spoke1", lab.lan_host("spoke2"), count=15, interval=0.2)
    assert " 0% packet loss" in r.stdout, r.stdout
    assert lab.path("hub1", "hairpin") > before                  # via the hub again
    lab.wait_for(lambda: lab.snapshot("spoke1")["shortcuts"], 5, message="shortcut again")


def test_every_packet_our_nodes_sent_decodes_in_tshark(lab):
    lab.ping("spoke2", lab.lan_host("spoke1"), count=2, interval=0.1)
    time.sleep(0.5)
    seen = tshark_nhrp(str(lab.capture))
    pkts = [p for frame in seen.values() for p in frame]
    kinds = {p.get("op_type") or p.get("type") for p in pkts}
    assert len(pkts) >= 8, seen
    assert all(p["checksum_ok"] is True for p in pkts), [p for p in pkts if not p["checksum_ok"]]
    assert len(kinds) >= 3, kinds       # registration, resolution, indication at least


def test_bad_requests_on_the_control_socket_get_one_line_errors(lab):
    out = lab.cli("spoke1", "clear", "cache")
    assert out.returncode == 0
    import socket as so
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.connect(lab.socket("spoke1"))
    s.sendall(b"not json\n")
    answer = json.loads(s.recv(4096))
    s.close()
    assert answer == {"ok": False, "error": "malformed request (one JSON object per line)"}
    with pytest.raises(Exception, match="unknown command 'nope'"):
        lab.ask("spoke1", "nope")
    assert lab.procs["spoke1"].poll() is None                     # still running
    missing = run_cli("show", "cache", "--socket", "/run/xdmvpn/none.sock")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no daemon at /run/xdmvpn/none.sock" in missing.stderr


def test_malformed_nhrp_on_the_wire_is_counted_and_the_hub_goes_on(lab):
    """Garbage, truncated and bad-checksum NHRP from a spoke's NBMA: counted, no answer
    that changes state, the daemon keeps serving."""
    from topo import REPO
    code = (
        "import socket, sys\n"
        f"sys.path.insert(0, {str(REPO / 'ctl')!r})\n"
        "from xdmvpn.transport import gre_header\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)\n"
        "h = gre_header(42)\n"
        "good = bytes.fromhex('0001080000000000000000000000000000000000')\n"
        "bad_size = good[:8] + bytes([0, 48]) + good[10:]\n"
        "for body in (b'', bytes(3), bytes([255]) * 40, good, bad_size):\n"
        f"    s.sendto(h + body, ({lab.nbma('hub1')!r}, 0))\n")
    before = lab.ask("hub1", "stats")["nhrp"].get("drop.malformed", 0)
    lab.exec("spoke1", sys.executable, "-c", code)
    lab.wait_for(lambda: lab.ask("hub1", "stats")["nhrp"].get("drop.malformed", 0)
                 >= before + 5, 5, message="malformed NHRP counted")
    assert lab.procs["hub1"].poll() is None
    assert lab.registered("spoke1")
    assert "bug." not in json.dumps(lab.ask("hub1", "stats")["daemon"])
