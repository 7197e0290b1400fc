"""Program tests through BPF test-run: a table of {input, verdict, output, counters}.

Every branch of the XDP underlay program and the tc encap program has a row,
plus the malformed outer packets.  Expected outputs are built independently
with xdmvpn_bench.packets (every byte explicit, no scapy).
"""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest

from xdmvpn_bench import packets as P
from conftest import DP_MAC, LOCAL, OVL_MAC, PEER2_MAC, PEER3_MAC, UL_MAC, Harness

XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 1, 2, 3, 4
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
KEY = 42

ICMP = P.icmp_echo()


def inner(src="10.0.0.2", dst="10.0.0.1", ttl=64, tos=0):
    return P.ipv4(src, dst, ICMP, proto=1, ttl=ttl, tos=tos)


def outer(payload_gre: bytes, src="192.0.2.2", dst=LOCAL, **kw):
    return P.eth(UL_MAC, PEER2_MAC if src == "192.0.2.2" else PEER3_MAC) + \
        P.ipv4(src, dst, payload_gre, **kw)


def decapped(inner_pkt: bytes) -> bytes:
    return P.eth(OVL_MAC, DP_MAC) + inner_pkt


def hairpinned(inner_pkt: bytes, to="192.0.2.3", to_mac=PEER3_MAC, ident=0) -> bytes:
    i = P.dec_ttl(inner_pkt)
    return P.eth(to_mac, UL_MAC) + P.ipv4(LOCAL, to, P.gre(i, key=KEY), tos=i[1], ident=ident,
                                          frag=0x4000 & struct.unpack("!H", i[6:8])[0])


def encapped(inner_pkt: bytes, to="192.0.2.3", to_mac=PEER3_MAC) -> bytes:
    return P.eth(to_mac, UL_MAC) + P.ipv4(LOCAL, to, P.gre(inner_pkt, key=KEY),
                                          tos=inner_pkt[1], frag=0x4000)


@pytest.fixture(scope="module")
def hub(fx_ns):
    h = Harness(fx_ns, gre_key=KEY, redirect=True, trigger_interval_ms=60000)
    m = h.maps
    m.add_mapping("10.0.0.1", LOCAL)
    m.add_mapping("10.0.0.2", "192.0.2.2")
    m.add_mapping("10.0.0.3", "192.0.2.3")
    m.add_mapping("10.0.0.8", "192.0.2.99")  # on link, no neighbour entry
    m.add_mapping("10.0.0.9", "198.51.100.9")  # no route on the underlay
    m.add_prefix("192.168.3.0/24", "192.0.2.3")
    yield h
    h.close()


I_US = inner()
I_PEER = inner(dst="10.0.0.3", tos=0x28)
I_PREFIX = inner(dst="192.168.3.7")
I_TTL1 = inner(dst="10.0.0.3", ttl=1)
VLAN = bytes.fromhex("8100 0064 0800".replace(" ", ""))

# (id, input, verdict, expected output or None, expected counters)
XDP_TABLE = [
    ("decap-local-mapping", outer(P.gre(I_US, key=KEY)), XDP_REDIRECT, decapped(I_US), {"decap": 1}),
    ("decap-unmapped", outer(P.gre(inner(dst="10.99.0.1"), key=KEY)), XDP_REDIRECT,
     decapped(inner(dst="10.99.0.1")), {"decap": 1}),
    ("hairpin-host-entry", outer(P.gre(I_PEER, key=KEY)), XDP_TX, hairpinned(I_PEER),
     {"hairpin": 1, "trigger": 1, "nh_fill": 1}),
    ("hairpin-prefix", outer(P.gre(I_PREFIX, key=KEY)), XDP_TX, hairpinned(I_PREFIX),
     {"hairpin": 1, "trigger": 1, "nh_fill": 1}),
    ("hairpin-inner-ttl-1-goes-to-kernel", outer(P.gre(I_TTL1, key=KEY)), XDP_REDIRECT,
     decapped(I_TTL1), {"hairpin_slow": 1, "decap": 1}),
    ("hairpin-no-underlay-route", outer(P.gre(inner(dst="10.0.0.9"), key=KEY)), XDP_DROP, None,
     {"drop_no_route": 1}),
    ("hairpin-no-neighbour-goes-to-kernel", outer(P.gre(inner(dst="10.0.0.8"), key=KEY)),
     XDP_REDIRECT, decapped(inner(dst="10.0.0.8")), {"hairpin_slow": 1, "decap": 1}),
    ("loop-back-to-sender", outer(P.gre(inner(dst="10.0.0.2"), key=KEY)), XDP_DROP, None,
     {"drop_loop": 1}),
    ("nhrp-to-controller", outer(P.gre(b"\x00\x01\x08\x00" + bytes(40), proto=0x2001, key=KEY)),
     XDP_PASS, "same", {"nhrp": 1}),
    ("arp-passes", P.eth("ff:ff:ff:ff:ff:ff", PEER2_MAC, 0x0806) + bytes(28), XDP_PASS, "same",
     {"pass_not_ipv4": 1}),
    ("vlan-tag-passes", P.eth(UL_MAC, PEER2_MAC, 0x8100)[:12] + VLAN
     + P.ipv4("192.0.2.2", LOCAL, P.gre(I_US, key=KEY)), XDP_PASS, "same", {"pass_not_ipv4": 1}),
    ("truncated-ipv4", P.eth(UL_MAC, PEER2_MAC) + bytes.fromhex("4500001c"), XDP_PASS, "same",
     {"pass_not_ipv4": 1}),
    ("ipv4-version-6-in-header", P.eth(UL_MAC, PEER2_MAC) + b"\x65" + bytes(40), XDP_PASS, "same",
     {"pass_not_ipv4": 1}),
    ("udp-to-us-passes", outer(P.udp(1, 2, b"hi"), proto=17), XDP_PASS, "same", {"pass_not_gre": 1}),
    ("gre-not-to-us-passes", outer(P.gre(I_US, key=KEY), dst="192.0.2.77"), XDP_PASS, "same",
     {"pass_not_gre": 1}),
    ("truncated-gre", outer(b"\x20"), XDP_DROP, None, {"drop_gre_truncated": 1}),
    ("truncated-gre-key", outer(b"\x20\x00\x08\x00\x00\x00"), XDP_DROP, None,
     {"drop_gre_truncated": 1}),
    ("outer-ihl-6-decap", outer(P.gre(I_US, key=KEY), options=b"\x01\x01\x01\x00"), XDP_REDIRECT,
     decapped(I_US), {"decap": 1}),
    ("outer-ihl-6-hairpin-via-kernel", outer(P.gre(I_PEER, key=KEY), options=b"\x01\x01\x01\x00"),
     XDP_REDIRECT, decapped(I_PEER), {"hairpin_slow": 1, "decap": 1}),
    ("fragment-mf-passes", outer(P.gre(I_US, key=KEY), frag=0x2000), XDP_PASS, "same",
     {"pass_fragment": 1}),
    ("fragment-offset-passes", outer(b"\x00" * 24, frag=0x0010), XDP_PASS, "same",
     {"pass_fragment": 1}),
    ("gre-checksum-and-key-decap", outer(P.gre(I_US, key=KEY, csum_word=True)), XDP_REDIRECT,
     decapped(I_US), {"decap": 1}),
    ("gre-sequence-decap", outer(P.gre(I_US, key=KEY, seq=7)), XDP_REDIRECT, decapped(I_US),
     {"decap": 1}),
    ("gre-version-1-passes", outer(P.gre(I_US, key=KEY, version=1)), XDP_PASS, "same",
     {"pass_gre_other": 1}),
    ("gre-routing-bit-passes", outer(P.gre(I_US, key=KEY, flags_extra=0x4000)), XDP_PASS, "same",
     {"pass_gre_other": 1}),
    ("wrong-key-passes", outer(P.gre(I_US, key=KEY + 1)), XDP_PASS, "same", {"pass_wrong_key": 1}),
    ("missing-key-passes", outer(P.gre(I_US)), XDP_PASS, "same", {"pass_wrong_key": 1}),
    ("unknown-inner-proto", outer(P.gre(bytes(40), proto=0x86DD, key=KEY)), XDP_DROP, None,
     {"drop_inner_proto": 1}),
    ("inner-truncated", outer(P.gre(I_US[:12], key=KEY)), XDP_DROP, None,
     {"drop_inner_malformed": 1}),
    ("inner-ihl-4", outer(P.gre(b"\x44" + I_US[1:], key=KEY)), XDP_DROP, None,
     {"drop_inner_malformed": 1}),
]


@pytest.mark.root
@pytest.mark.parametrize("name,pkt,verdict,expected,counters", XDP_TABLE,
                         ids=[r[0] for r in XDP_TABLE])
def test_xdp_underlay(hub, name, pkt, verdict, expected, counters):
    hub.maps.events()  # drain
    hub.module[b"xdmvpn_ratelimit"].clear()
    hub.maps.flush_nexthops()
    res, got = hub.run("xdmvpn_xdp_underlay", pkt)
    assert res.retval == verdict
    if expected == "same":
        assert res.data == pkt
    elif expected is not None:
        assert res.data.hex() == expected.hex()
    assert got == counters


@pytest.mark.root
def test_xdp_truncated_ethernet_never_reaches_program(hub):
    with pytest.raises(OSError) as exc:
        hub.run("xdmvpn_xdp_underlay", bytes(10))
    assert exc.value.errno == errno.EINVAL


@pytest.mark.root
def test_xdp_jumbo_frame(hub):
    """A 9000-byte frame: test-run puts what exceeds a page in fragments; the
    headers are in the linear part, so decap works and keeps every byte.
    (Attaching to a veth with a 9000-byte MTU would need a multi-buffer
    program: the kernel refuses that attach instead.)"""
    i = P.ipv4("10.0.0.2", "10.0.0.1", (bytes(range(256)) * 36)[: 9000 - 62],
               proto=17)
    big = outer(P.gre(i, key=KEY))
    assert len(big) == 9000
    res, c = hub.run("xdmvpn_xdp_underlay", big)
    assert (res.retval, c) == (XDP_REDIRECT, {"decap": 1})
    assert res.data == decapped(i)


@pytest.mark.root
def test_trigger_rate_limited_and_carries_packet(hub):
    hub.module[b"xdmvpn_ratelimit"].clear()
    hub.maps.events()
    hub.maps.flush_nexthops()
    pkt = outer(P.gre(I_PEER, key=KEY))
    seen = {}
    for _ in range(5):
        _, c = hub.run("xdmvpn_xdp_underlay", pkt)
        for k, v in c.items():
            seen[k] = seen.get(k, 0) + v
    # one fib lookup, then the next-hop cache
    assert seen == {"hairpin": 5, "trigger": 1, "trigger_held": 4, "nh_fill": 1}
    events = hub.maps.events()
    assert len(events) == 1
    ev = events[0]
    assert (ev.kind, str(ev.nbma_src), str(ev.src), str(ev.dst)) == \
        ("trigger", "192.0.2.2", "10.0.0.2", "10.0.0.3")
    assert ev.packet == P.dec_ttl(I_PEER)  # whole packet as forwarded (limit 128 bytes)
    # another pair is not held by the first
    _, c = hub.run("xdmvpn_xdp_underlay", outer(P.gre(I_PREFIX, key=KEY)))
    assert c["trigger"] == 1


@pytest.mark.root
def test_mapping_stats_and_last_used(hub):
    before = {str(m.prefix): m for m in hub.maps.mappings()}["10.0.0.3/32"]
    pkt = outer(P.gre(I_PEER, key=KEY))
    hub.run("xdmvpn_xdp_underlay", pkt)
    after = {str(m.prefix): m for m in hub.maps.mappings()}["10.0.0.3/32"]
    assert after.packets == before.packets + 1
    assert after.bytes == before.bytes + len(pkt)
    assert after.last_used_ns > 0


@pytest.mark.root
def test_nhrp_token_bucket(fx_ns):
    h = Harness(fx_ns, gre_key=KEY, nhrp_max_send=3, nhrp_max_send_every=60)
    try:
        pkt = outer(P.gre(bytes(44), proto=0x2001, key=KEY))
        verdicts = [h.run("xdmvpn_xdp_underlay", pkt)[0].retval for _ in range(5)]
        assert verdicts == [XDP_PASS] * 3 + [XDP_DROP] * 2
        _, c = h.run("xdmvpn_xdp_underlay", outer(P.gre(bytes(44), proto=0x2001, key=KEY),
                                                  src="192.0.2.3"))
        assert c == {"nhrp": 1}  # per source
    finally:
        h.close()


@pytest.mark.root
def test_no_key_tunnel(fx_ns):
    h = Harness(fx_ns)
    try:
        res, c = h.run("xdmvpn_xdp_underlay", outer(P.gre(I_US)))
        assert (res.retval, c) == (XDP_REDIRECT, {"decap": 1})
        res, c = h.run("xdmvpn_xdp_underlay", outer(P.gre(I_US, key=KEY)))
        assert (res.retval, c) == (XDP_PASS, {"pass_wrong_key": 1})
    finally:
        h.close()


# ---- tc encap -------------------------------------------------------------

def ovl(inner_pkt: bytes) -> bytes:
    return P.eth(DP_MAC, OVL_MAC) + inner_pkt


E_PEER = inner(src="10.0.0.1", dst="10.0.0.3", tos=0xB8)
E_PREFIX = inner(src="10.0.0.1", dst="192.168.3.9")
E_MISS = inner(src="10.0.0.1", dst="10.77.0.1")
E_BIG = P.ipv4("10.0.0.1", "10.0.0.3", bytes(1480 - 20), proto=17)

TC_TABLE = [
    ("encap-host-entry", ovl(E_PEER), TC_ACT_REDIRECT, encapped(E_PEER),
     {"encap": 1, "nh_fill": 1}),
    ("encap-prefix", ovl(E_PREFIX), TC_ACT_REDIRECT, encapped(E_PREFIX),
     {"encap": 1, "nh_fill": 1}),
    ("no-mapping-hub-drops", ovl(E_MISS), TC_ACT_SHOT, None,
     {"drop_no_mapping": 1, "miss": 1}),
    ("not-ipv4-drops", P.eth(DP_MAC, OVL_MAC, 0x86DD) + bytes(40), TC_ACT_SHOT, None,
     {"drop_overlay_not_ipv4": 1}),
    ("too-big-for-underlay", ovl(E_BIG), TC_ACT_SHOT, None, {"drop_too_big": 1}),
]


@pytest.mark.root
@pytest.mark.parametrize("name,pkt,verdict,expected,counters", TC_TABLE,
                         ids=[r[0] for r in TC_TABLE])
def test_tc_encap(hub, name, pkt, verdict, expected, counters):
    hub.module[b"xdmvpn_ratelimit"].clear()
    hub.maps.flush_nexthops()
    res, got = hub.run("xdmvpn_tc_encap", pkt)
    assert res.retval == verdict
    if expected is not None:
        assert res.data.hex() == expected.hex()
    assert got == counters


@pytest.mark.root
def test_miss_event_and_nhs_fallback(hub):
    hub.module[b"xdmvpn_ratelimit"].clear()
    hub.maps.events()
    hub.maps.set_nhs(["192.0.2.2"])
    try:
        res, c = hub.run("xdmvpn_tc_encap", ovl(E_MISS))
        assert res.retval == TC_ACT_REDIRECT
        assert res.data.hex() == encapped(E_MISS, "192.0.2.2", PEER2_MAC).hex()
        assert c == {"encap_nhs": 1, "miss": 1, "nh_fill": 1}
        _, c = hub.run("xdmvpn_tc_encap", ovl(E_MISS))
        assert c == {"encap_nhs": 1}  # miss rate-limited
        ev = hub.maps.events()
        assert [(e.kind, str(e.src), str(e.dst), e.packet) for e in ev] == \
            [("miss", "10.0.0.1", "10.77.0.1", E_MISS)]
    finally:
        hub.maps.set_nhs([])


@pytest.mark.root
def test_multicast_one_copy_per_member(hub):
    hub.maps.set_multicast(["192.0.2.2", "192.0.2.3"])
    try:
        mc = P.ipv4("10.0.0.1", "224.0.0.5", bytes(40), proto=89, ttl=1)
        res, c = hub.run("xdmvpn_tc_encap", ovl(mc))
        assert res.retval == TC_ACT_SHOT  # the original; the copies went out
        assert c == {"mcast": 2}
        res, c = hub.run("xdmvpn_tc_encap", ovl(P.ipv4("10.0.0.1", "255.255.255.255",
                                                        bytes(8), proto=17)))
        assert c == {"mcast": 2}
    finally:
        hub.maps.set_multicast([])
    res, c = hub.run("xdmvpn_tc_encap", ovl(P.ipv4("10.0.0.1", "224.0.0.5", bytes(8), proto=89)))
    assert c == {}  # empty set: nothing sent, not an error


@pytest.mark.root
def test_multicast_set_larger_than_one_batch(hub):
    members = [f"192.0.2.{i}" for i in (2, 3)] * 1
    hub.maps.set_multicast(members + [f"198.51.100.{i}" for i in range(1, 10)])
    try:
        mc = P.ipv4("10.0.0.1", "224.0.0.5", bytes(40), proto=89, ttl=1)
        _, c = hub.run("xdmvpn_tc_encap", ovl(mc))
        assert c["mcast"] == 2 and c["drop_no_route"] == 9
    finally:
        hub.maps.set_multicast([])


@pytest.mark.root
def test_mss_clamp(fx_ns):
    h = Harness(fx_ns, gre_key=KEY, adjust_mss=1360)
    try:
        h.maps.add_mapping("10.0.0.3", "192.0.2.3")
        for prefix in (b"", b"\x01"):  # MSS at an even and at an odd offset
            syn = P.ipv4("10.0.0.1", "10.0.0.3", P.tcp_syn("10.0.0.1", "10.0.0.3", 1460, prefix),
                         proto=6)
            h.maps.flush_nexthops()
            res, c = h.run("xdmvpn_tc_encap", ovl(syn))
            assert res.retval == TC_ACT_REDIRECT
            assert c == {"encap": 1, "mss_clamped": 1, "nh_fill": 1}
            out_inner = res.data[14 + 20 + 8:]
            seg = out_inner[20:]
            opt = seg[20 + len(prefix):]
            assert opt[:2] == b"\x02\x04" and struct.unpack("!H", opt[2:4])[0] == 1360
            assert P.tcp_csum("10.0.0.1", "10.0.0.3", seg) == 0
        small = P.ipv4("10.0.0.1", "10.0.0.3", P.tcp_syn("10.0.0.1", "10.0.0.3", 1200), proto=6)
        res, c = h.run("xdmvpn_tc_encap", ovl(small))
        assert c == {"encap": 1} and res.data[14 + 28:] == small
    finally:
        h.close()


def test_python_api_roundtrip(hub):
    m = hub.maps
    m.add_prefix("172.16.0.0/12", "192.0.2.2")
    assert any(str(p.prefix) == "172.16.0.0/12" and str(p.nbma) == "192.0.2.2"
               for p in m.prefixes())
    assert m.remove_prefix("172.16.0.0/12") and not m.remove_prefix("172.16.0.0/12")
    m.add_multicast("192.0.2.2")
    m.add_multicast("192.0.2.3")
    m.remove_multicast("192.0.2.2")
    assert [str(a) for a in m.multicast()] == ["192.0.2.3"]
    m.set_multicast([])
    assert ipaddress.IPv4Address("192.0.2.3") in {x.nbma for x in m.mappings()}
