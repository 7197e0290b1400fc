"""Two spokes behind the same NAT device, with IPsec (NAT-T), in a kernel with ESP:
`xdmvpn lab up --ipsec --spokes 2 --nat spoke1,spoke2` (docs/interop-ipsec-nat.md).

Cisco ("DMVPN Dynamic Tunnels Between Spokes Behind a NAT Device", restrictions) keys its
IPsec peers by address and NAT-T port and serves both spokes, their traffic through the
hub. xdmvpn does not: both spokes' IKE_SAs come from the one post-NAT address (two NAT-T
ports), and their transport-mode CHILD_SAs would have the same selectors (GRE, hub <->
that address), so the hub's kernel would send the first spoke's GRE through the second's
SA. The hub keeps the first identity at the address and refuses the second one's
IKE_SA (terminated through vici: one log line, counted in `show stats`). This test
asserts that behaviour: the first spoke registered and working, the second refused.
The second's charon tries again whenever its GRE meets its trap policy, and each try
diverts the hub's GRE to the address for a moment (docs/interop-ipsec-nat.md).
Marked kernel("esp4", "ip_gre"): the VM tier (docs/vm.md)."""

from __future__ import annotations

import subprocess

import pytest

from labvm import lab_up
from util import scaled

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.kernel("esp4", "ip_gre")]

NAT_OUTSIDE = "192.0.2.101"
SPOKES = {"172.16.0.11": "spoke1", "172.16.0.12": "spoke2"}


def test_two_spokes_behind_one_nat_the_first_served_the_second_refused(tmp_path_factory):
    # `lab up` waits for every spoke's registration, which the refused one never gets:
    # a short wait, then this test waits for what it expects itself
    with lab_up(tmp_path_factory, "n", "--spokes", "2", "--nat", "spoke1,spoke2",
                "--timeout", f"{scaled(2):g}") as (lab, up):
        assert lab.nbma("spoke1") == lab.nbma("spoke2") == NAT_OUTSIDE
        assert up.returncode != 0, up.stdout       # the refused spoke never registered

        def refused() -> int:
            return int(lab.ask("hub", "stats")["ipsec"].get(
                "manager.refused_second_identity", 0))

        def hub_sas():
            return [sa for sa in lab.sas("hub") if sa["remote-host"] == NAT_OUTSIDE
                    and sa["state"] == "ESTABLISHED"]

        def settled():
            sas = hub_sas()
            return (len(sas) == 1 and refused() >= 1
                    and any(c["state"] == "INSTALLED" for c in sas[0]["children"])
                    and lab.registered(SPOKES[sas[0]["remote-id"]]) and sas)
        # the first spoke up and registered, the second one's IKE_SA terminated
        sa = lab.wait_for(settled, 90, "one spoke served, the other refused")[0]
        first = SPOKES[sa["remote-id"]]
        second = next(s for s in SPOKES.values() if s != first)
        assert sa["nat-remote"] == "yes" and sa["remote-port"] != "500", sa
        # the hub's cache: the first at the post-NAT address, its claim beside it; the
        # second absent
        cache = {e["protocol"]: e for e in lab.snapshot("hub")["cache"]
                 if e["type"] != "local"}
        e = cache[str(lab.node(first).overlay.ip)]
        assert e["nbma"] == NAT_OUTSIDE and e["claimed_nbma"] == str(
            lab.node(first).underlay.ip), e
        assert str(lab.node(second).overlay.ip) not in cache, cache
        assert not lab.registered(second)
        # one log line (its charon tries again and again: the counter counts every
        # refusal), naming the address, the refused identity and its port
        log = lab.topo.log_path(lab.topo.hub)
        lines = [x for x in open(log).read().splitlines() if "ipsec: refused" in x]
        assert len(lines) == 1, lines
        assert f"refused {NAT_OUTSIDE} (identity {lab.node(second).overlay.ip}, port" in \
            lines[0] and f"taken by identity {lab.node(first).overlay.ip}" in lines[0], lines
        # the first keeps working across the tunnel, through its CHILD_SA: both ways
        # (each retry of the refused spoke installs its CHILD_SA on the hub for a moment,
        # which the hub's kernel prefers until it is gone: a ping then may lose an echo)
        def ping(src: str, dst: str) -> bool:
            r = subprocess.run(["ip", "netns", "exec", lab.ns(src), "ping", "-n", "-c", "5",
                                "-i", "0.2", "-W", str(int(scaled(2))),
                                str(lab.node(dst).overlay.ip)],
                               capture_output=True, text=True, timeout=scaled(30))
            return " 0% packet loss" in r.stdout
        for src, dst in (("hub", first), (first, "hub")):
            lab.wait_for(lambda: ping(src, dst), 30, f"{src} -> {dst} across the tunnel")
        def outbound() -> list[str]:
            xfrm = subprocess.run(["ip", "-n", lab.ns("hub"), "xfrm", "state"],
                                  capture_output=True, text=True, timeout=30).stdout
            return [s for s in xfrm.split("src ")[1:]
                    if s.startswith(f"192.0.2.1 dst {NAT_OUTSIDE}")]
        # one outbound SA for the address: the first spoke's (again, between retries)
        lab.wait_for(lambda: len(outbound()) == 1, 30, "one outbound SA to the NAT device")
