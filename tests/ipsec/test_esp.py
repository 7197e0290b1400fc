"""The ESP data path: traffic between IPsec peers goes through ESP and plaintext GRE never
appears on the underlay; a shortcut switches to the direct path only once its CHILD_SA is
up and falls back to the hub path when it goes down.

This needs a kernel with ESP (esp4 + xfrm) and ip_gre (the data plane receives decrypted
GRE on a GRE device): marked kernel("esp4", "ip_gre"), these tests run natively on such a
kernel and otherwise in the VM tier (docs/vm.md). They need root and fail without it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from util import need_root
from topo import Topology
from xdmvpn.daemon.routes import RTPROT_XDMVPN

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.kernel("esp4", "ip_gre")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    need_root()
    from xdmvpn.dataplane.maps import DataplaneMaps
    assert hasattr(DataplaneMaps, "set_ipsec_required"), (
        "the data plane has no set_ipsec_required(nbma, required) yet: it would still "
        "decapsulate plaintext GRE from IPsec peers and bypass xfrm (docs/ipsec.md)")
    tmp = tmp_path_factory.mktemp("esp")
    t = Topology(tmp, spokes=2, ipsec=True)
    try:
        t.start_all()
        t.wait_for(lambda: t.registered("spoke1") and t.registered("spoke2"), 40,
                   message="spokes registered over IPsec")
        yield t
    finally:
        t.close()


def capture(lab, seconds_of_traffic):
    pcap = lab.tmp / f"underlay-{time.monotonic_ns()}.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", lab.ul, "tcpdump", "-i", "br0", "-w",
                             str(pcap), "-U", "--immediate-mode", "-s", "128",
                             "ip proto 47 or ip proto 50"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        seconds_of_traffic()
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait(10)
    out = subprocess.run(["tcpdump", "-nn", "-r", str(pcap)], capture_output=True,
                         text=True, timeout=30).stdout.splitlines()
    return [x for x in out if "ESP(" in x], [x for x in out if "GRE" in x]


def child_sas(lab, node, peer):
    return [c for sa in lab.list_sas(node) if sa["remote-host"] == lab.nbma(peer)
            for c in (sa.get("child-sas") or {}).values()
            if c.get(b"state", c.get("state")) in (b"INSTALLED", "INSTALLED")]


def routes(lab, node):
    return json.loads(lab.exec(node, "ip", "-j", "route", "show", "proto",
                               str(RTPROT_XDMVPN)).stdout)


def test_ping_goes_through_esp_and_plaintext_gre_never_on_the_wire(lab):
    def traffic():
        for dst in (lab.tunnel_ip("hub1"),):
            r = lab.ping("spoke1", dst, count=5, interval=0.1, lan=False)
            assert " 0% packet loss" in r.stdout, r.stdout
        r = lab.ping("spoke1", lab.lan_host("spoke2"), count=20, interval=0.1)
        assert " 0% packet loss" in r.stdout, r.stdout
    before = {n: lab.path(n, "decap_esp") for n in ("hub1", "spoke2")}
    esp, gre = capture(lab, traffic)
    assert esp, "no ESP on the underlay"
    assert gre == [], gre[:5]
    # decrypted GRE reached the overlay through <tunnel>-rx, not XDP
    assert all(lab.path(n, "decap_esp") > before[n] for n in before)
    assert lab.path("spoke1", "encap_xfrm") >= 25
    states = lab.exec("spoke1", "ip", "xfrm", "state").stdout
    assert "proto esp" in states and "mode transport" in states


def test_shortcut_waits_for_its_child_sa_and_falls_back_without_it(lab):
    r = lab.ping("spoke1", lab.lan_host("spoke2"), count=10, interval=0.2)
    assert " 0% packet loss" in r.stdout, r.stdout
    lab.wait_for(lambda: routes(lab, "spoke1"), 20, message="shortcut on the direct path")
    assert child_sas(lab, "spoke1", "spoke2"), "direct path without a CHILD_SA"
    # take the CHILD_SA away: the shortcut goes back to the hub path at once
    for c in child_sas(lab, "spoke1", "spoke2"):
        uid = c.get(b"uniqueid", c.get("uniqueid"))
        uid = uid.decode() if isinstance(uid, bytes) else uid
        subprocess.run(["swanctl", "--terminate", "--child-id", uid, "--uri",
                        f"unix://{lab.vici_socket('spoke1')}"], capture_output=True,
                       timeout=20)
    lab.wait_for(lambda: lab.ask("spoke1", "stats")["daemon"].get("shortcut_fallback", 0)
                 >= 1, 20, message="fallback counted")
    # through the hub: ESP in, decrypted onto its overlay, back out through xfrm
    hub_before = lab.path("hub1", "encap_xfrm")
    r = lab.ping("spoke1", lab.lan_host("spoke2"), count=5, interval=0.1)
    assert " 0% packet loss" in r.stdout, r.stdout
    # through the hub, unless the manager already brought the CHILD_SA back
    assert lab.path("hub1", "encap_xfrm") > hub_before or (
        routes(lab, "spoke1") and child_sas(lab, "spoke1", "spoke2"))
    # the manager sets the CHILD_SA up again, and the shortcut returns to the direct path
    lab.wait_for(lambda: child_sas(lab, "spoke1", "spoke2") and routes(lab, "spoke1"), 40,
                 message="CHILD_SA and direct path back")
