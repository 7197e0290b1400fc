"""Interop (c): two hubs of different implementations (hub1 xdmvpn, hub2 FRR) for one
spoke of each implementation (spoke1 FRR with `nhs dynamic` to both, spoke2 xdmvpn with
both as NHSs): registered at both; when one hub goes down (its underlay link), the spokes
stay registered at the other, and once the routes move there (a routing protocol's job:
the test moves them) spoke to spoke works through it, shortcuts included; when it comes
back the spokes register with it again. The cloud is conftest.py's."""

from __future__ import annotations

import time

import pytest

import story
import wire
from topo import KEY

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.kernel("ip_gre", "nflog", "frr")]

SPOKES = ("spoke1", "spoke2")


def test_each_spoke_registered_at_both_hubs(cloud):
    t = cloud
    for spoke in SPOKES:
        for hub in ("hub1", "hub2"):
            assert t.registered_at(spoke, hub), (spoke, hub)
    # the FRR spoke learnt both hubs' addresses (`nhs dynamic` twice)
    nhs = {row["nbma"]: row["protocol"] for row in t.frr_table("spoke1", "nhs")}
    assert nhs == {t.nbma(h): t.tunnel_ip(h) for h in ("hub1", "hub2")}, nhs
    # the xdmvpn spoke: both up, the xdmvpn hub preferred
    state = {c["nbma"]: (c["state"], c["priority"]) for c in t.snapshot("spoke2")["nhs"]}
    assert state == {t.nbma("hub1"): ("up", 1), t.nbma("hub2"): ("up", 2)}, state


def nhs_state(t, spoke: str, hub: str) -> str:
    return next(c["state"] for c in t.snapshot(spoke)["nhs"] if c["nbma"] == t.nbma(hub))


def test_failover_from_the_xdmvpn_hub_to_the_frr_hub_and_back(cloud):
    """The xdmvpn hub's underlay goes down: the FRR spoke and the xdmvpn spoke meet
    through the FRR hub (the way through the xdmvpn hub is test_xdmvpn_hub.py's
    frr-dynamic-to-xdmvpn case; the FRR hub going down is not run, to keep the VM tier
    within its time)."""
    t, down, other = cloud, "hub1", "hub2"
    t.clear_shortcuts(*SPOKES)
    for spoke in SPOKES:
        t.spoke_via(spoke, other)
    t.exec(down, "ip", "link", "set", "eth0", "down")
    try:
        # the xdmvpn spoke notices when its registration at the dead hub runs out
        t.wait_for(lambda: nhs_state(t, "spoke2", down) != "up", t.holdtime + 15,
                   message=f"spoke2 sees {down} down")
        assert nhs_state(t, "spoke2", other) == "up"
        for spoke in SPOKES:
            assert t.registered_at(spoke, other), (spoke, other)
        story.the_story(t, "spoke1", "spoke2", other)
    finally:
        back = time.time()
        t.exec(down, "ip", "link", "set", "eth0", "up")
        t.clear_shortcuts(*SPOKES)
        t.add_routes()
    t.wait_for(lambda: nhs_state(t, "spoke2", down) == "up", t.holdtime,
               message=f"spoke2 registered with {down} again")

    def frr_spoke_back() -> bool:
        return any(p.type == wire.REGISTRATION_REPLY and p.src == t.nbma(down)
                   and p.dst == t.nbma("spoke1") and set(p.codes) == {0}
                   for p in wire.nhrp(t.pcap, back))
    t.wait_for(frr_spoke_back, t.holdtime, step=10.0,
               message=f"spoke1 (FRR) registered with {down} again")
    wire.assert_sound(wire.nhrp(t.pcap, back), KEY)
