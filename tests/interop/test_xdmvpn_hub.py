"""Interop (a): an xdmvpn hub (hub1) serving FRR nhrpd spokes and an xdmvpn spoke.

spoke1 is FRR with the VyOS-style `ip nhrp nhs dynamic nbma 192.0.2.1`, spoke3 FRR with a
static NHS (`ip nhrp nhs 172.16.0.1 nbma 192.0.2.1`), spoke2 xdmvpn. The FRR spokes run
on the kernel's ip_gre, so the kernel's mGRE and xdmvpn's eBPF mGRE exchange data both
ways. The cloud is conftest.py's; docs/interop.md has the matrix."""

from __future__ import annotations

import time

import pytest

import story
import wire
from mixed import MTU
from topo import KEY

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.kernel("ip_gre", "nflog", "frr")]


def test_frr_spokes_register_and_learn_the_xdmvpn_hub(cloud):
    t, hub = cloud, cloud.tunnel_ip("hub1")
    for spoke in ("spoke1", "spoke3"):
        nhs = {row["nbma"]: row for row in t.frr_table(spoke, "nhs")}
        # spoke1 learnt the hub's address from the registration reply (`nhs dynamic`)
        assert nhs[t.nbma("hub1")]["protocol"] == hub, nhs
        row = t.frr_cache(spoke)[hub]
        assert (row["type"], row["nbma"]) == ("nhs", t.nbma("hub1")), row
    seen = wire.nhrp(t.pcap)
    dyn_req = [p for p in seen if p.type == wire.REGISTRATION_REQUEST
               and p.src == t.nbma("spoke1") and p.dst == t.nbma("hub1")]
    # FRR, not knowing its NHS's address yet, puts its own there (RFC 2332 5.2.3 allows it)
    assert dyn_req and dyn_req[0].dst_proto == t.tunnel_ip("spoke1"), dyn_req[:1]
    for spoke in ("spoke1", "spoke3"):
        replies = [p for p in seen if p.type == wire.REGISTRATION_REPLY
                   and p.src == t.nbma("hub1") and p.dst == t.nbma(spoke)]
        assert replies, f"no registration reply to {spoke}"
        assert all(p.dst_proto == hub and set(p.codes) == {0} for p in replies), replies[:3]


@pytest.mark.parametrize("a,b", [("spoke1", "spoke2"), ("spoke3", "spoke2"),
                                 ("spoke1", "spoke3")],
                         ids=["frr-dynamic-to-xdmvpn", "frr-static-to-xdmvpn",
                              "frr-to-frr"])
def test_spoke_to_spoke_via_the_xdmvpn_hub_then_direct(cloud, a, b):
    story.the_story(cloud, a, b, "hub1")
    stats = cloud.ask("hub1", "stats")["nhrp"]
    assert stats.get("drop.unexpected_reply", 0) == 0, stats


def test_kernel_and_ebpf_mgre_at_the_tunnel_mtu_and_above(cloud):
    """Direct path FRR spoke1 (ip_gre) <-> xdmvpn spoke2: a 1400-byte packet (the tunnel
    MTU) with DF crosses both ways; one byte more with DF is refused by the sending spoke
    (ICMP fragmentation needed, MTU 1400); without DF it is fragmented and arrives."""
    t = cloud
    if not (t.shortcut_to("spoke1", "spoke2") and t.shortcut_to("spoke2", "spoke1")):
        story.via_hub_then_shortcut(t, "spoke1", "spoke2", "hub1")
    since = time.time()
    size = MTU - 28
    for a, b in (("spoke1", "spoke2"), ("spoke2", "spoke1")):
        r = t.exec(f"{a}lan", "ping", "-n", "-c", "3", "-i", "0.2", "-W", "3", "-M", "do",
                   "-s", str(size), t.lan_host(b), check=False)
        assert " 0% packet loss" in r.stdout, (a, b, r.stdout)
        r = t.exec(f"{a}lan", "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do",
                   "-s", str(size + 1), t.lan_host(b), check=False)
        assert f"mtu = {MTU}" in r.stdout and " 100% packet loss" in r.stdout, r.stdout
        r = t.exec(f"{a}lan", "ping", "-n", "-c", "3", "-i", "0.2", "-W", "3", "-M", "dont",
                   "-s", str(size + 1), t.lan_host(b), check=False)
        assert " 0% packet loss" in r.stdout, (a, b, r.stdout)
    seen = [d for d in wire.data(t.pcap, since)
            if {d.src, d.dst} == {t.nbma("spoke1"), t.nbma("spoke2")}]
    full = [d for d in seen if d.inner_len == MTU]
    assert {(d.src, d.dst) for d in full} == {(t.nbma("spoke1"), t.nbma("spoke2")),
                                             (t.nbma("spoke2"), t.nbma("spoke1"))}
    assert all(d.key == KEY and d.df for d in full)
    assert max(d.inner_len for d in seen) == MTU


def test_every_nhrp_packet_on_the_wire_decodes_with_a_good_checksum(cloud):
    """Everything captured so far (this module runs last): both implementations' NHRP,
    every type the cloud uses, decoded by tshark with a Good checksum."""
    seen = wire.nhrp(cloud.pcap)
    types = {p.type for p in seen}
    assert types >= {wire.REGISTRATION_REQUEST, wire.REGISTRATION_REPLY,
                     wire.RESOLUTION_REQUEST, wire.RESOLUTION_REPLY,
                     wire.TRAFFIC_INDICATION}, types
    for node in cloud.nodes:        # each node's packets are there
        assert any(p.src == cloud.nbma(node) for p in seen), node
    wire.assert_sound(seen, KEY)


def test_no_icmp_errors_answer_nhrp_though_the_kernel_has_ip_gre(cloud):
    """This kernel has ip_gre loaded (the FRR nodes run on it). ip_gre sees every GRE
    datagram that XDP passes up to the xdmvpn nodes' raw NHRP socket, and, with no tunnel
    for it, used to answer each with ICMP port unreachable (hundreds per second at a
    busy hub). Each xdmvpn node now has the GRE sink `dmvpn0-rx` (collect_md, its
    ingress drops everything), so nothing is answered once its daemon runs (before, the
    node is a host without xdmvpn, whose kernel rightly answers GRE nobody takes: the
    cloud's set-up sees one or two of those)."""
    t = cloud
    xdmvpn = [n for n in t.nodes if not t.is_frr(n)]
    seen = wire.nhrp(t.pcap)
    for node in xdmvpn:            # the check has something to check: NHRP reached each
        assert any(p.dst == t.nbma(node) for p in seen), node
    ours = {t.nbma(n) for n in xdmvpn}
    errors = [e for e in wire.unreachables(t.pcap, t.all_started) if e[0] in ours]
    assert errors == [], (len(errors), errors[:5])
    for node in xdmvpn:
        link = t.exec(node, "ip", "-d", "link", "show", "dmvpn0-rx").stdout
        flags = link.split("<", 1)[1].split(">", 1)[0].split(",")
        assert " gre " in link and "external" in link and "UP" in flags, link
        tc = t.exec(node, "tc", "filter", "show", "dev", "dmvpn0-rx", "ingress").stdout
        assert "xdmvpn_tc_sink" in tc, tc
