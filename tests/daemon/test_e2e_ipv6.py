"""IPv6 end to end: real `xdmvpn run` processes in namespaces for an IPv6 overlay over an
IPv4 underlay, an IPv4 overlay over an IPv6 underlay, dual stack on one tunnel, and a hub
serving spokes of both underlay families; NHRP on the wire judged by tshark."""

from __future__ import annotations

import json
import time

import pytest

from topo import captured
from tshark_oracle import tshark_nhrp
from xdmvpn.daemon.routes import RTPROT_XDMVPN

pytestmark = pytest.mark.root

SETUPS = {
    "ipv6-over-ipv4": dict(overlay="ipv6", underlay=4),
    "ipv4-over-ipv6": dict(overlay="ipv4", underlay=6),
    "dual-over-ipv4": dict(overlay="dual", underlay=4),
    "mixed-underlays": dict(overlay="dual", spoke_underlays=(4, 6)),
}


@pytest.fixture(scope="module", params=list(SETUPS))
def lab(request, tmp_path_factory):
    with captured(tmp_path_factory.mktemp(request.param), timeout=30, spokes=2,
                  **SETUPS[request.param]) as t:
        yield t


def test_one_registration_per_family_and_show_rows(lab):
    hub = {e["protocol"]: e for e in lab.snapshot("hub1")["cache"]}
    for spoke in ("spoke1", "spoke2"):
        for f in lab.families:
            e = hub[lab.tunnel_ip(spoke, f)]
            assert (e["type"], e["nbma"]) == ("dynamic", lab.nbma(spoke)), e
    for f in lab.families:
        word = "ip" if f == 4 else "ipv6"
        out = lab.cli("hub1", "show", word, "nhrp", "cache", "--json")
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)
        assert {r["protocol"] for r in rows if r["type"] == "dynamic"} == {
            lab.tunnel_ip(s, f) for s in ("spoke1", "spoke2")}
        assert all(":" in r["protocol"] if f == 6 else ":" not in r["protocol"] for r in rows)
        nhs = json.loads(lab.cli("spoke1", "show", word, "nhrp", "nhs", "--json").stdout)
        assert [(n["nbma"], n["protocol"], n["state"]) for n in nhs] == [
            (lab.nbma("hub1", lab.underlays("spoke1")[0]), lab.tunnel_ip("hub1", f), "up")]
    table = lab.cli("hub1", "show", "dmvpn").stdout.splitlines()
    assert table[0].split()[:2] == ["Src", "Dst"]
    peers = {line.split()[1]: line.split()[0] for line in table[1:]}
    for spoke in ("spoke1", "spoke2"):       # our NBMA address of the peer's family
        assert peers[lab.nbma(spoke)] == lab.nbma("hub1", lab.underlays(spoke)[0])


def test_overlay_addresses_answer_pings_through_the_tunnel(lab):
    for f in lab.families:
        r = lab.ping("spoke1", lab.tunnel_ip("hub1", f), count=3, interval=0.1, lan=False)
        assert " 0% packet loss" in r.stdout, (f, r.stdout, lab.log("spoke1"))


def test_phase3_first_packets_via_hub_then_direct(lab):
    cross = len(set(lab.spoke_underlays)) > 1
    for f in lab.families:
        lan = lab.lan("spoke2", f)
        before = lab.path("hub1", "hairpin")
        r = lab.ping("spoke1", lab.lan_host("spoke2", f), count=1)
        assert "1 received" in r.stdout, (f, r.stdout, lab.log("hub1"))
        assert lab.path("hub1", "hairpin") - before == 2       # the echo and its reply
        if cross:
            # spokes on two underlay families: no shortcut can exist, the hub path stays
            time.sleep(1.5)
            assert not lab.snapshot("spoke1")["shortcuts"]
            assert lab.ask("hub1", "stats")["nhrp"].get("indication_cross_family", 0) >= 1
            continue
        shortcut = lab.wait_for(lambda: [s for s in lab.snapshot("spoke1")["shortcuts"]
                                         if s["prefix"] == lan], 5,
                                message=f"shortcut to {lan} on spoke1")[0]
        assert (shortcut["via"], shortcut["nbma"]) == (lab.tunnel_ip("spoke2", f),
                                                       lab.nbma("spoke2"))
        routes = lab.exec("spoke1", "ip", "-j", f"-{f}", "route", "show", "proto",
                          str(RTPROT_XDMVPN))
        assert [(r["dst"], r["gateway"]) for r in json.loads(routes.stdout)] == [
            (lan, lab.tunnel_ip("spoke2", f))]
        before = lab.path("hub1", "hairpin")
        r = lab.ping("spoke1", lab.lan_host("spoke2", f), count=10, interval=0.05)
        assert " 0% packet loss" in r.stdout, r.stdout
        assert lab.path("hub1", "hairpin") == before           # direct now
        text = lab.cli("spoke1", "show", "ip" if f == 4 else "ipv6", "nhrp",
                       "shortcut").stdout
        assert lan in text


def test_every_nhrp_packet_on_the_wire_decodes_in_tshark(lab):
    time.sleep(0.5)
    seen = tshark_nhrp(str(lab.capture))
    pkts = [p for frame in seen.values() for p in frame]
    assert len(pkts) >= 4 * len(lab.families), seen
    assert all(p["checksum_ok"] is True for p in pkts), [p for p in pkts if not p["checksum_ok"]]
    afns = {p["afn"] for p in pkts}
    assert afns == {1 if u == 4 else 2 for u in lab.spoke_underlays}, afns
    protos = {p["protocol_type"] for p in pkts}
    assert protos == {0x0800 if f == 4 else 0x86DD for f in lab.families}, protos
