"""`xdmvpn lab up --ipsec --nat ...` end to end, in a kernel with ESP: real charons, the
real CLI, tcpdump on the underlay bridge decoded by tshark.

One lab for the module (setting one up takes minutes under emulation), each test a whole
scenario asserting many things:

- spoke1, spoke2 on the underlay: ESP on the wire and never plaintext GRE; a shortcut
  protected by its own CHILD_SA and used only once that is up (make-before-break: meanwhile
  via the hub, no echo lost); rekeying under continuous traffic loses nothing; a spoke's
  charon restarted recovers without touching the hub.
- the ESP data path itself (once with a lab of its own): decrypted GRE reaches
  the overlay through `<tunnel>-rx` (decap_esp), encap goes through xfrm (encap_xfrm); a
  shortcut whose CHILD_SA is terminated falls back to the hub path and comes back when the
  manager has set it up again.
- spoke3 behind nat1, spoke4 behind nat2 (nftables masquerade, both with the same inside
  network): IKE and ESP over UDP 4500, the hub's cache shows the post-NAT addresses
  (Cisco's NAT extension), shortcuts NATed <-> public and between the two NATs.
Two spokes behind one NAT: test_esp_same_nat.py.

Marked kernel("esp4", "ip_gre"): natively where the kernel has them, else in the VM tier
(docs/vm.md)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from labvm import Capture, Ping, between, lab_up, ping_ok
from util import scaled
from xdmvpn.ipsec.charon import start_charon, stop_charon
from xdmvpn.lab import runner
from xdmvpn.lab.manage import CHARON_DIR

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.kernel("esp4", "ip_gre")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_up(tmp_path_factory, "v", "--spokes", "4", "--nat", "spoke3", "--nat", "spoke4",
                "--timeout", f"{scaled(90):g}") as (lab, up):
        assert up.returncode == 0, up.stderr
        assert "Behind NAT" in up.stdout and "nat2 192.0.2.102" in up.stdout, up.stdout
        yield lab


def test_ipsec_end_to_end_make_before_break_rekey_and_charon_restart(lab):
    hub, s1, s2 = lab.nbma("hub"), lab.nbma("spoke1"), lab.nbma("spoke2")
    charon_pid = Path(lab.topo.state_dir) / f"{CHARON_DIR}hub" / "charon.pid"
    hub_pid, hub_charon = runner.pid_of(lab.topo, lab.topo.hub), charon_pid.read_text()
    assert hub_pid
    cap = Capture(lab, "e2e")

    # -- make-before-break: no shortcut yet; it is installed only with its CHILD_SA up ------
    assert not lab.shortcut_routes("spoke1") and not lab.child_sas("spoke1", "spoke2")
    hub_xfrm = lab.path("hub", "encap_xfrm")
    ping = Ping(lab, "spoke1", lab.host_ip("spoke2"))
    seen = []                           # (route to spoke2's LAN, CHILD_SA spoke1 <-> spoke2)
    deadline = time.monotonic() + scaled(40)
    while time.monotonic() < deadline:
        route = any(r["dst"] == str(lab.node("spoke2").lan) for r in lab.shortcut_routes("spoke1"))
        seen.append((route, bool(route and lab.child_sas("spoke1", "spoke2"))))
        if route and len(seen) > 3 and all(r for r, _ in seen[-3:]):
            break
        time.sleep(0.2)
    sent, lost = ping.stop()
    assert any(r for r, _ in seen), f"no shortcut within {scaled(40):g} s: {seen}"
    assert all(c for r, c in seen if r), f"a shortcut route without its CHILD_SA: {seen}"
    assert not seen[0][0], "the shortcut was there before the traffic"
    assert lost == [], f"lost {lost} of {sent} while the shortcut was set up"
    assert lab.path("hub", "encap_xfrm") > hub_xfrm, "nothing went via the hub meanwhile"
    # now direct: the hub forwards none of a burst
    hub_xfrm = lab.path("hub", "encap_xfrm")
    assert ping_ok(lab, "spoke1", "spoke2", 10)
    assert lab.path("hub", "encap_xfrm") - hub_xfrm <= 2

    # -- rekey of every SA of spoke1 (IKE and CHILD) under continuous traffic ---------------
    spis = lambda: {c["spi-in"] for p in ("hub", "spoke2")   # noqa: E731
                    for c in lab.child_sas("spoke1", p)}
    before = spis()
    assert len(before) >= 2, lab.sas("spoke1")
    pings = [Ping(lab, "spoke1", lab.host_ip("spoke2")), Ping(lab, "spoke1", lab.host_ip("hub"))]
    time.sleep(scaled(0.5))
    for sa in lab.sas("spoke1"):
        for c in sa["children"]:
            assert lab.swanctl("spoke1", "--rekey", "--child-id", c["uniqueid"]).returncode == 0
        assert lab.swanctl("spoke1", "--rekey", "--ike-id", sa["uniqueid"]).returncode == 0
    lab.wait_for(lambda: len(spis()) >= 2 and not spis() & before, 30,
                 "every CHILD_SA of spoke1 rekeyed (new SPIs)")
    time.sleep(scaled(1.0))
    for p in pings:
        sent, lost = p.stop()
        assert lost == [], f"lost {lost} of {sent} across the rekeying"

    # -- spoke2's charon restarted: back without touching the hub ---------------------------
    workdir = Path(lab.topo.state_dir) / f"{CHARON_DIR}spoke2"
    assert stop_charon(workdir)
    start_charon(lab.ns("spoke2"), workdir, timeout=scaled(10))
    lab.wait_for(lambda: lab.child_sas("spoke2", "hub") and lab.registered("spoke2"), 60,
                 "spoke2 back: CHILD_SA with the hub and registered")
    lab.wait_for(lambda: ping_ok(lab, "spoke1", "spoke2"), 60,
                 "spoke1 -> spoke2 after spoke2's charon restart")
    assert ping_ok(lab, "spoke2", "hub")
    assert runner.pid_of(lab.topo, lab.topo.hub) == hub_pid, "the hub's daemon restarted"
    assert charon_pid.read_text() == hub_charon, "the hub's charon restarted"

    # -- the wire, all along: ESP where expected, never plaintext GRE -----------------------
    rows = cap.read()
    gre = [r for r in rows if r["proto"] == "47"]
    assert gre == [], f"plaintext GRE on the underlay: {gre[:3]}"
    esp = [r for r in rows if r["proto"] == "50"]
    assert between(esp, hub, s1) and between(esp, hub, s2), "no ESP hub <-> spokes"
    direct = between(esp, s1, s2)
    assert direct, "no ESP spoke1 <-> spoke2"
    ike_auth = [r for r in between(rows, s1, s2) if r["ike"] == "35"]
    assert ike_auth and float(direct[0]["t"]) > float(ike_auth[0]["t"])


def test_ping_goes_through_esp_and_plaintext_gre_never_on_the_wire(lab):
    """spoke1 -> the hub's tunnel address and -> spoke2's LAN (the shortcut of the test
    above, or the hub path): ESP on the wire, no GRE; decrypted GRE reached the overlay
    through <tunnel>-rx (decap_esp), not XDP; spoke1's encap went through xfrm."""
    before = {n: lab.path(n, "decap_esp") for n in ("hub", "spoke1", "spoke2")}
    xfrm = lab.path("spoke1", "encap_xfrm")
    cap = Capture(lab, "esp")
    hub_ip = str(lab.node("hub").overlay.ip)
    r = subprocess.run(["ip", "netns", "exec", lab.ns("spoke1"), "ping", "-n", "-c", "5",
                        "-i", "0.1", "-W", str(int(scaled(2))), hub_ip],
                       capture_output=True, text=True, timeout=scaled(30))
    assert " 0% packet loss" in r.stdout, r.stdout
    assert ping_ok(lab, "spoke1", "spoke2", 20)
    rows = cap.read()
    assert [r for r in rows if r["proto"] == "50"], "no ESP on the underlay"
    assert [r for r in rows if r["proto"] == "47"] == []
    after = {n: lab.path(n, "decap_esp") for n in before}
    assert after["hub"] > before["hub"] and after["spoke1"] > before["spoke1"], after
    assert after["spoke2"] > before["spoke2"], after
    assert lab.path("spoke1", "encap_xfrm") - xfrm >= 25
    for n in before:     # NHRP decrypted from ESP reaches <tunnel>-rx too: not a drop
        drops = lab.ask(n, "stats")["drops"]
        assert drops["inner_proto"]["packets"] == 0, (n, drops["inner_proto"])
    states = subprocess.run(["ip", "-n", lab.ns("spoke1"), "xfrm", "state"],
                            capture_output=True, text=True, timeout=30).stdout
    assert "proto esp" in states and "mode transport" in states


def test_shortcut_waits_for_its_child_sa_and_falls_back_without_it(lab):
    """The CHILD_SA of spoke1's shortcut to spoke2 taken away: the shortcut goes back to
    the hub path at once (counted), traffic goes via the hub, and once the manager has set
    the CHILD_SA up again the shortcut is direct again."""
    lan2 = str(lab.node("spoke2").lan)
    shortcut = lambda: any(r["dst"] == lan2 for r in lab.shortcut_routes("spoke1"))  # noqa: E731
    lab.wait_for(lambda: ping_ok(lab, "spoke1", "spoke2") and shortcut(), 20,
                 "shortcut spoke1 -> spoke2 on the direct path")
    assert lab.child_sas("spoke1", "spoke2"), "direct path without a CHILD_SA"
    fallbacks = lambda: lab.ask("spoke1", "stats")["daemon"].get(  # noqa: E731
        "shortcut_fallback", 0)
    before = fallbacks()
    for c in lab.child_sas("spoke1", "spoke2"):
        assert lab.swanctl("spoke1", "--terminate", "--child-id",
                           c["uniqueid"]).returncode == 0
    lab.wait_for(lambda: fallbacks() > before, 20, "fallback counted")
    # through the hub: ESP in, decrypted onto its overlay, back out through xfrm
    hub_before = lab.path("hub", "encap_xfrm")
    assert ping_ok(lab, "spoke1", "spoke2")
    # through the hub, unless the manager already brought the CHILD_SA back
    assert lab.path("hub", "encap_xfrm") > hub_before or (
        shortcut() and lab.child_sas("spoke1", "spoke2"))
    lab.wait_for(lambda: lab.child_sas("spoke1", "spoke2") and shortcut(), 40,
                 "CHILD_SA and direct path back")


def test_spokes_behind_nat_register_with_post_nat_addresses_and_shortcuts_form(lab):
    nat = {n: lab.nbma(n) for n in ("spoke3", "spoke4")}
    assert nat == {"spoke3": "192.0.2.101", "spoke4": "192.0.2.102"}
    cap = Capture(lab, "nat")
    # the hub's cache: the post-NAT address, the claimed (private) one beside it
    cache = {e["protocol"]: e for e in lab.snapshot("hub")["cache"]}
    for name, post in nat.items():
        e = cache[str(lab.node(name).overlay.ip)]
        assert (e["nbma"], e["claimed_nbma"]) == (post, str(lab.node(name).underlay.ip)), e
    # the hub's IKE_SAs with NATed spokes: NAT-T, from the NAT's outside address
    for sa in lab.sas("hub"):
        if sa["remote-host"] in nat.values():
            assert sa.get("nat-remote") == "yes" and sa["remote-port"] != "500", sa

    def shortcut(a: str, b: str):
        """a's LAN host pings b's until a's shortcut to b's LAN has its CHILD_SA; no echo
        lost on the way; then a burst goes direct (the hub forwards none of it)."""
        ping = Ping(lab, a, lab.host_ip(b))
        try:
            lab.wait_for(lambda: any(r["dst"] == str(lab.node(b).lan)
                                     for r in lab.shortcut_routes(a))
                         and lab.child_sas(a, b), 60, f"{a} -> {b}: shortcut with its CHILD_SA")
        finally:
            sent, lost = ping.stop()
        assert lost == [], f"{a} -> {b}: lost {lost} of {sent}"
        before = lab.path("hub", "encap_xfrm")
        assert ping_ok(lab, a, b, 10)
        assert lab.path("hub", "encap_xfrm") - before <= 1, f"{a} -> {b} still via the hub"

    shortcut("spoke3", "spoke1")          # behind NAT -> public
    shortcut("spoke1", "spoke4")          # public -> behind NAT
    # Behind two NATs both spokes must initiate (each one's IKE_SA_INIT opens its own NAT
    # for the other's): both initiate the IKE_SA alone, and only the lower identity
    # (spoke3) creates a CHILD_SA, in whichever IKE_SA came up. Two CHILD_SAs with the
    # same selectors, each installed by its responder before its initiator has it, took
    # the outbound path over in turn: one echo was lost that way.
    shortcut("spoke3", "spoke4")          # behind two different NATs
    for a, b in (("spoke3", "spoke4"), ("spoke4", "spoke3")):
        assert len(lab.child_sas(a, b)) == 1, lab.sas(a)
    rows = cap.read()
    outside = set(nat.values())
    leaks = [r for r in rows if (r["src"] in outside or r["dst"] in outside)
             and r["proto"] != "17"]
    assert leaks == [], f"not UDP-encapsulated from/to a NAT device: {leaks[:3]}"
    for a, b in (("spoke3", "spoke1"), ("spoke1", "spoke4"), ("spoke3", "spoke4")):
        udp = [r for r in between(rows, lab.nbma(a), lab.nbma(b)) if "4500" in (r["sport"],
                                                                              r["dport"])]
        assert udp, f"no UDP 4500 between {a} and {b} on the underlay"
    assert [r for r in rows if r["proto"] == "47"] == []
