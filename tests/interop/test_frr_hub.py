"""Interop (b): an FRR nhrpd hub (hub2, `ip nhrp redirect` fed by the NFLOG rule FRR
documents) serving two xdmvpn spokes (spoke2, spoke4): registration, spoke to spoke via
the hub, FRR's traffic indication, resolution through FRR, shortcuts on both spokes, then
direct. The cloud is conftest.py's; docs/interop.md has the matrix."""

from __future__ import annotations

import pytest

import story
import wire
from topo import KEY

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.kernel("ip_gre", "nflog", "frr")]


def test_xdmvpn_spokes_register_with_the_frr_hub(cloud):
    t, hub = cloud, cloud.tunnel_ip("hub2")
    cache = t.frr_cache("hub2")
    for spoke in ("spoke2", "spoke4"):
        row = cache[t.tunnel_ip(spoke)]
        assert (row["type"], row["nbma"]) == ("dynamic", t.nbma(spoke)), row
        nhs = {c["nbma"]: c for c in t.snapshot(spoke)["nhs"]}[t.nbma("hub2")]
        assert (nhs["state"], nhs["protocol"]) == ("up", hub), nhs
    seen = wire.nhrp(t.pcap)
    replies = [p for p in seen if p.type == wire.REGISTRATION_REPLY and p.src == t.nbma("hub2")
               and p.dst in (t.nbma("spoke2"), t.nbma("spoke4"))]
    assert {p.dst for p in replies} == {t.nbma("spoke2"), t.nbma("spoke4")}
    assert all(set(p.codes) == {0} for p in replies), replies[:3]
    wire.assert_sound(replies, KEY)


def test_spoke_to_spoke_via_the_frr_hub_then_direct(cloud):
    got = story.the_story(cloud, "spoke4", "spoke2", "hub2")
    # FRR's NFLOG-driven indication reached both xdmvpn spokes, which acted on it
    assert {p.dst for p in got["indications"]} == {cloud.nbma("spoke4"), cloud.nbma("spoke2")}
    for spoke in ("spoke2", "spoke4"):
        assert cloud.ask(spoke, "stats")["nhrp"].get("indication_acted", 0) >= 1
