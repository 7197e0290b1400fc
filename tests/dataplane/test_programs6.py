"""IPv6 program tests through BPF test-run: the same kind of table as test_programs.py
for IPv6 overlays, IPv6 NBMA and both mixed, on a hub with an IPv4 and an IPv6 NBMA
address: {input, verdict, output, counters}, malformed outer IPv6 included
(truncated header, bad payload length, extension header chains, other next headers).
Expected outputs are built independently with xdmvpn_bench.packets (every byte
explicit).
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from xdmvpn.errors import XdmvpnError
from xdmvpn_bench import packets as P
from conftest import (DP_MAC, LOCAL, LOCAL6, OVL_MAC, PEER2_MAC, PEER3_MAC, UL_MAC, Harness,
                      check_row)

XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 1, 2, 3, 4
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
KEY = 42
GRE, UDP, HOPOPTS, ROUTING, FRAGMENT, DSTOPTS, ESP = 47, 17, 0, 43, 44, 60, 50
N2, N3 = "2001:db8::2", "2001:db8::3"          # IPv6 NBMA peers (static neighbours)
OVERLAY6 = "fd00::1"                            # the hub's own tunnel address


def inner6(src="fd00::2", dst="fd00::1", hlim=64, tclass=0):
    return P.ipv6(src, dst, P.icmp6_echo(src, dst), nh=58, hlim=hlim, tclass=tclass)


def inner4(src="10.0.0.2", dst="10.0.0.1", ttl=64):
    return P.ipv4(src, dst, P.icmp_echo(), proto=1, ttl=ttl)


def gre6(pkt: bytes, key=KEY) -> bytes:
    return P.gre(pkt, proto=0x86DD, key=key)


def outer6(payload: bytes, src=N2, dst=LOCAL6, nh=GRE, **kw) -> bytes:
    return P.eth(UL_MAC, PEER2_MAC, 0x86DD) + P.ipv6(src, dst, payload, nh=nh, **kw)


def outer4(payload: bytes, src="192.0.2.2") -> bytes:
    return P.eth(UL_MAC, PEER2_MAC) + P.ipv4(src, LOCAL, payload)


def decapped(pkt: bytes) -> bytes:
    return P.eth(OVL_MAC, DP_MAC, 0x86DD if pkt[0] >> 4 == 6 else 0x0800) + pkt


def tos_of(pkt: bytes) -> int:
    if pkt[0] >> 4 == 6:
        return (struct.unpack("!I", pkt[:4])[0] >> 20) & 0xFF
    return pkt[1]


def df_of(pkt: bytes) -> int:
    return 0x4000 if pkt[0] >> 4 == 6 else 0x4000 & struct.unpack("!H", pkt[6:8])[0]


def wrapped(pkt: bytes, to: str, to_mac=PEER3_MAC) -> bytes:
    """pkt in our GRE toward NBMA address `to` (either family), as the hub sends it."""
    proto = 0x86DD if pkt[0] >> 4 == 6 else 0x0800
    body = P.gre(pkt, proto=proto, key=KEY)
    if ":" in to:
        return P.eth(to_mac, UL_MAC, 0x86DD) + P.ipv6(LOCAL6, to, body, tclass=tos_of(pkt))
    return P.eth(to_mac, UL_MAC) + P.ipv4(LOCAL, to, body, tos=tos_of(pkt), frag=df_of(pkt))


def hop(pkt: bytes) -> bytes:
    return P.dec_hlim(pkt) if pkt[0] >> 4 == 6 else P.dec_ttl(pkt)


@pytest.fixture(scope="module")
def hub6(fx_ns):
    """A hub with NBMA addresses of both families and mappings of every mix."""
    h = Harness(fx_ns, gre_key=KEY, redirect=True, trigger_interval_ms=60000,
                local_nbma6=LOCAL6)
    m = h.maps
    m.add_mapping("fd00::1", LOCAL6)
    m.add_mapping("fd00::2", N2)
    m.add_mapping("fd00::3", N3)
    m.add_mapping("fd00::4", "192.0.2.3")            # IPv6 overlay, IPv4 NBMA
    m.add_mapping("fe80::3", N3)                     # link-local of a peer
    m.add_mapping("fd00::8", "2001:db8::99")         # on link, no neighbour entry
    m.add_mapping("fd00::9", "2001:db8:99::9")       # no route on the underlay
    m.add_prefix("fd00:3::/48", N3)
    m.add_mapping("10.0.0.1", LOCAL)
    m.add_mapping("10.0.0.2", "192.0.2.2")
    m.add_mapping("10.0.0.3", "192.0.2.3")
    m.add_mapping("10.0.0.6", N3)                    # IPv4 overlay, IPv6 NBMA
    yield h
    h.close()


I6_US = inner6()
I6_PEER = inner6(dst="fd00::3", tclass=0x28)
I6_PREFIX = inner6(dst="fd00:3::7")
I6_TO_V4 = inner6(dst="fd00::4")
I4_TO_V6 = inner4(dst="10.0.0.6")
I4_TO_V4 = inner4(dst="10.0.0.3")
HBH = P.ext6(GRE)                                # one hop-by-hop header, then GRE
NHRP = P.gre(bytes(44), proto=0x2001, key=KEY)
HAIRPIN = {"hairpin": 1, "trigger": 1, "nh_fill": 1}
SLOW = {"hairpin_slow": 1, "decap": 1}

# (id, input, verdict, expected output ("same": untouched) or None, expected counters)
XDP6_TABLE = [
    # to us
    ("decap-6-in-6", outer6(gre6(I6_US)), XDP_REDIRECT, decapped(I6_US), {"decap": 1}),
    ("decap-4-in-6", outer6(P.gre(inner4(), key=KEY)), XDP_REDIRECT, decapped(inner4()),
     {"decap": 1}),
    ("decap-6-in-4", outer4(gre6(I6_US)), XDP_REDIRECT, decapped(I6_US), {"decap": 1}),
    ("decap-6-unmapped", outer6(gre6(inner6(dst="fd00:77::1"))), XDP_REDIRECT,
     decapped(inner6(dst="fd00:77::1")), {"decap": 1}),
    ("decap-6-multicast", outer6(gre6(inner6(dst="ff02::5"))), XDP_REDIRECT,
     decapped(inner6(dst="ff02::5")), {"decap": 1}),
    # hairpin, every mix of inner and NBMA family
    ("hairpin-6-in-6-host-entry", outer6(gre6(I6_PEER)), XDP_TX, wrapped(hop(I6_PEER), N3),
     HAIRPIN),
    ("hairpin-6-in-6-prefix", outer6(gre6(I6_PREFIX)), XDP_TX, wrapped(hop(I6_PREFIX), N3),
     HAIRPIN),
    ("hairpin-6-from-4-to-6", outer4(gre6(I6_PEER)), XDP_TX, wrapped(hop(I6_PEER), N3),
     HAIRPIN),
    ("hairpin-6-from-6-to-4", outer6(gre6(I6_TO_V4)), XDP_TX,
     wrapped(hop(I6_TO_V4), "192.0.2.3"), HAIRPIN),
    ("hairpin-4-from-6-to-4", outer6(P.gre(I4_TO_V4, key=KEY)), XDP_TX,
     wrapped(hop(I4_TO_V4), "192.0.2.3"), HAIRPIN),
    ("hairpin-4-from-4-to-6", outer4(P.gre(I4_TO_V6, key=KEY)), XDP_TX,
     wrapped(hop(I4_TO_V6), N3), HAIRPIN),
    ("hairpin-6-after-hop-by-hop", outer6(HBH + gre6(I6_PEER), nh=HOPOPTS), XDP_TX,
     wrapped(hop(I6_PEER), N3), HAIRPIN),
    # the kernel's, or nobody's
    ("hop-limit-1-goes-to-kernel", outer6(gre6(inner6(dst="fd00::3", hlim=1))), XDP_REDIRECT,
     decapped(inner6(dst="fd00::3", hlim=1)), SLOW),
    ("link-local-destination-goes-to-kernel", outer6(gre6(inner6(src="fe80::2", dst="fe80::3"))),
     XDP_REDIRECT, decapped(inner6(src="fe80::2", dst="fe80::3")), SLOW),
    ("link-local-source-goes-to-kernel", outer6(gre6(inner6(src="fe80::2", dst="fd00::3"))),
     XDP_REDIRECT, decapped(inner6(src="fe80::2", dst="fd00::3")), SLOW),
    ("no-neighbour-goes-to-kernel", outer6(gre6(inner6(dst="fd00::8"))), XDP_REDIRECT,
     decapped(inner6(dst="fd00::8")), SLOW),
    ("no-underlay-route", outer6(gre6(inner6(dst="fd00::9"))), XDP_DROP, None,
     {"drop_no_route": 1}),
    ("loop-back-to-sender", outer6(gre6(inner6(dst="fd00::2"))), XDP_DROP, None,
     {"drop_loop": 1}),
    ("nhrp-over-ipv6-known-sender", outer6(NHRP), XDP_PASS, "same", {"nhrp": 1}),
    ("nhrp-over-ipv6-unknown-sender", outer6(NHRP, src="2001:db8:5::5"), XDP_PASS, "same",
     {"nhrp": 1, "nhrp_unknown": 1}),
    # malformed or not ours
    ("truncated-ipv6-header", P.eth(UL_MAC, PEER2_MAC, 0x86DD) + bytes.fromhex("6000000000")
     + bytes(15), XDP_PASS, "same", {"pass_not_ipv4": 1}),
    ("version-4-in-ipv6-frame", P.eth(UL_MAC, PEER2_MAC, 0x86DD) + b"\x45" + bytes(59),
     XDP_PASS, "same", {"pass_not_ipv4": 1}),
    ("gre-not-to-us", outer6(gre6(I6_US), dst="2001:db8::77"), XDP_PASS, "same",
     {"pass_not_gre": 1}),
    ("payload-length-beyond-frame", outer6(gre6(I6_US), plen=len(gre6(I6_US)) + 100), XDP_DROP,
     None, {"drop_outer_malformed": 1}),
    ("payload-length-zero", outer6(gre6(I6_US), plen=0), XDP_DROP, None,
     {"drop_outer_malformed": 1}),
    ("hop-by-hop-then-gre-decap", outer6(HBH + gre6(I6_US), nh=HOPOPTS), XDP_REDIRECT,
     decapped(I6_US), {"decap": 1}),
    ("hop-by-hop-destination-options-then-gre", outer6(P.ext6(DSTOPTS) + P.ext6(GRE)
                                                       + gre6(I6_US), nh=HOPOPTS),
     XDP_REDIRECT, decapped(I6_US), {"decap": 1}),
    ("routing-header-no-segments-left", outer6(P.ext6(GRE, segments_left=0) + gre6(I6_US),
                                               nh=ROUTING), XDP_REDIRECT, decapped(I6_US),
     {"decap": 1}),
    ("routing-header-with-segments-left", outer6(P.ext6(GRE, segments_left=1) + gre6(I6_US),
                                                 nh=ROUTING), XDP_PASS, "same",
     {"pass_ipv6_ext": 1}),
    ("three-extension-headers", outer6(P.ext6(DSTOPTS) + P.ext6(DSTOPTS) + P.ext6(GRE)
                                       + gre6(I6_US), nh=HOPOPTS), XDP_PASS, "same",
     {"pass_ipv6_ext": 1}),
    ("extension-header-longer-than-walked", outer6(P.ext6(GRE, bytes(150)) + gre6(I6_US),
                                                   nh=HOPOPTS), XDP_PASS, "same",
     {"pass_ipv6_ext": 1}),
    ("extension-header-cut-short", outer6(P.ext6(GRE)[:4], nh=HOPOPTS), XDP_DROP, None,
     {"drop_outer_malformed": 1}),
    ("fragment-header", outer6(bytes([GRE, 0, 0, 1, 0, 0, 0, 7]) + gre6(I6_US), nh=FRAGMENT),
     XDP_PASS, "same", {"pass_fragment": 1}),
    ("udp-next-header", outer6(P.udp(1, 2, b"hi"), nh=UDP), XDP_PASS, "same",
     {"pass_not_gre": 1}),
    ("esp-next-header", outer6(bytes(40), nh=ESP), XDP_PASS, "same", {"pass_not_gre": 1}),
    ("truncated-gre", outer6(b"\x20"), XDP_DROP, None, {"drop_gre_truncated": 1}),
    ("wrong-key", outer6(gre6(I6_US, key=KEY + 1)), XDP_PASS, "same", {"pass_wrong_key": 1}),
    ("inner-ipv6-truncated", outer6(gre6(I6_US[:30])), XDP_DROP, None,
     {"drop_inner_malformed": 1}),
    ("inner-version-4-as-ipv6", outer6(gre6(inner4())), XDP_DROP, None,
     {"drop_inner_malformed": 1}),
]


@pytest.mark.root
@pytest.mark.parametrize("name,pkt,verdict,expected,counters", XDP6_TABLE,
                         ids=[r[0] for r in XDP6_TABLE])
def test_xdp_underlay_ipv6(hub6, name, pkt, verdict, expected, counters):
    check_row(hub6, "xdmvpn_xdp_underlay", pkt, verdict, expected, counters)


@pytest.mark.root
def test_ipv6_trigger_carries_the_pair_and_the_packet(hub6):
    hub6.module[b"xdmvpn_ratelimit"].clear()
    hub6.maps.events()
    hub6.maps.flush_nexthops()
    seen: dict = {}
    for _ in range(3):
        _, c = hub6.run("xdmvpn_xdp_underlay", outer6(gre6(I6_PEER)))
        for k, v in c.items():
            seen[k] = seen.get(k, 0) + v
    assert seen == {"hairpin": 3, "trigger": 1, "trigger_held": 2, "nh_fill": 1}
    (ev,) = hub6.maps.events()
    assert (ev.kind, str(ev.nbma_src), str(ev.src), str(ev.dst)) == \
        ("trigger", N2, "fd00::2", "fd00::3")
    assert ev.packet == I6_PEER      # as it came (before the hub's hop)
    # an IPv6 pair over an IPv4 sender
    _, c = hub6.run("xdmvpn_xdp_underlay", outer4(gre6(I6_PREFIX)))
    (ev,) = hub6.maps.events()
    assert c["trigger"] == 1 and (str(ev.nbma_src), str(ev.dst)) == ("192.0.2.2", "fd00:3::7")


@pytest.mark.root
def test_ipv4_only_node_passes_ipv6(fx_ns):
    h = Harness(fx_ns, gre_key=KEY)
    try:
        pkt = outer6(gre6(I6_US))
        res, c = h.run("xdmvpn_xdp_underlay", pkt)
        assert (res.retval, c) == (XDP_PASS, {"pass_not_ipv4": 1}) and res.data == pkt
    finally:
        h.close()


@pytest.mark.root
def test_ipv6_only_node(fx_ns):
    """local_nbma may be IPv6 alone: IPv4 GRE is then not ours."""
    h = Harness(fx_ns, gre_key=KEY, local_nbma=LOCAL6)
    try:
        res, c = h.run("xdmvpn_xdp_underlay", outer6(gre6(I6_US)))
        assert (res.retval, c) == (XDP_REDIRECT, {"decap": 1})
        res, c = h.run("xdmvpn_xdp_underlay", outer4(gre6(I6_US)))
        assert (res.retval, c) == (XDP_PASS, {"pass_not_gre": 1})
    finally:
        h.close()


# ---- NHRP admission of IPv6 senders --------------------------------------------------------

@pytest.mark.root
def test_nhrp_admission_by_ipv6_source(fx_ns):
    """Known IPv6 senders face their own bucket; unknown ones share one per /64 and the
    global budget of all unknown senders of both families."""
    h = Harness(fx_ns, gre_key=KEY, test_clock=True, local_nbma6=LOCAL6, nhrp_max_send=2,
                nhrp_max_send_every=60, nhrp_unknown_budget=5, nhrp_unknown_every=60)
    try:
        h.maps.add_mapping("fd00::2", N2)
        t = h.module[b"xdmvpn_test_clock"]
        t[t.Key(0)] = type(t[t.Key(0)])(10**12)

        def send(src):
            res, c = h.run("xdmvpn_xdp_underlay", outer6(NHRP, src=src))
            return res.retval, c
        known = [send(N2) for _ in range(3)]
        assert known == [(XDP_PASS, {"nhrp": 1})] * 2 + [(XDP_DROP, {"drop_nhrp_rate": 1})]
        same64 = [send(f"2001:db8:5::{i}") for i in (1, 2, 3)]   # one /64: one bucket
        assert same64 == [(XDP_PASS, {"nhrp": 1, "nhrp_unknown": 1})] * 2 + \
            [(XDP_DROP, {"drop_nhrp_unknown_rate": 1})]
        other = [send(f"2001:db8:{i}::1") for i in (6, 7, 8, 9)]  # budget 5: 2 used
        assert [r[0] for r in other] == [XDP_PASS] * 3 + [XDP_DROP]
        assert other[-1][1] == {"drop_nhrp_unknown_budget": 1}
        # the IPv4 unknown senders share that budget
        res, c = h.run("xdmvpn_xdp_underlay", outer4(NHRP, src="198.51.100.1"))
        assert (res.retval, c) == (XDP_DROP, {"drop_nhrp_unknown_budget": 1})
        assert h.maps.known_peers() == {ipaddress.IPv6Address(N2): 1}
    finally:
        h.close()


# ---- tc encap ----------------------------------------------------------------------------------

def ovl(pkt: bytes) -> bytes:
    return P.eth(DP_MAC, OVL_MAC, 0x86DD if pkt[0] >> 4 == 6 else 0x0800) + pkt


E6_PEER = inner6(src="fd00::1", dst="fd00::3", tclass=0xB8)
E6_PREFIX = inner6(src="fd00::1", dst="fd00:3::9")
E6_V4NBMA = inner6(src="fd00::1", dst="fd00::4")
E4_V6NBMA = inner4(src="10.0.0.1", dst="10.0.0.6")
E6_MISS = inner6(src="fd00::1", dst="fd00:77::1")
E6_BIG = P.ipv6("fd00::1", "fd00::3", P.udp(1, 2, bytes(1480 - 48)), nh=UDP)
ENCAP = {"encap": 1, "nh_fill": 1}

TC6_TABLE = [
    ("encap-6-in-6-host-entry", ovl(E6_PEER), TC_ACT_REDIRECT, wrapped(E6_PEER, N3), ENCAP),
    ("encap-6-in-6-prefix", ovl(E6_PREFIX), TC_ACT_REDIRECT, wrapped(E6_PREFIX, N3), ENCAP),
    ("encap-6-in-4", ovl(E6_V4NBMA), TC_ACT_REDIRECT, wrapped(E6_V4NBMA, "192.0.2.3"), ENCAP),
    ("encap-4-in-6", ovl(E4_V6NBMA), TC_ACT_REDIRECT, wrapped(E4_V6NBMA, N3), ENCAP),
    ("no-mapping-hub-drops", ovl(E6_MISS), TC_ACT_SHOT, None, {"drop_no_mapping": 1}),
    ("multicast-interface-local-scope", ovl(inner6(src="fd00::1", dst="ff01::1")), TC_ACT_SHOT,
     None, {"drop_mcast_scope": 1}),
    ("multicast-reserved-scope-0", ovl(inner6(src="fd00::1", dst="ff00::1")), TC_ACT_SHOT,
     None, {"drop_mcast_scope": 1}),
    # (test-run refuses an IPv6 skb shorter than its header: a wrong version instead)
    ("version-4-in-ipv6-frame-drops", P.eth(DP_MAC, OVL_MAC, 0x86DD) + b"\x45" + bytes(39),
     TC_ACT_SHOT, None, {"drop_overlay_not_ipv4": 1}),
]


@pytest.mark.root
@pytest.mark.parametrize("name,pkt,verdict,expected,counters", TC6_TABLE,
                         ids=[r[0] for r in TC6_TABLE])
def test_tc_encap_ipv6(hub6, name, pkt, verdict, expected, counters):
    check_row(hub6, "xdmvpn_tc_encap", pkt, verdict, expected, counters)


@pytest.mark.root
def test_ipv6_nhs_fallback(hub6):
    hub6.maps.set_nhs([N2])
    try:
        res, c = hub6.run("xdmvpn_tc_encap", ovl(E6_MISS))
        assert (res.retval, c) == (TC_ACT_REDIRECT, {"encap_nhs": 1, "nh_fill": 1})
        assert res.data == wrapped(E6_MISS, N2, PEER2_MAC)
    finally:
        hub6.maps.set_nhs([])


@pytest.mark.root
def test_packet_too_big_answers_an_ipv6_packet(hub6):
    """Encapsulated, E6_BIG exceeds ul0's MTU (1500): the encap answers its source with an
    ICMPv6 Packet Too Big from the tunnel's address, the MTU left for IPv6 inside the
    tunnel (1500 - 40 - 8), quoting the packet up to 1,280 bytes, sent into dmvpn0."""
    hub6.maps.set_overlay_address6(OVERLAY6)
    try:
        hub6.maps.flush_nexthops()
        res, c = hub6.run("xdmvpn_tc_encap", ovl(E6_BIG))
        assert (res.retval, c) == (TC_ACT_REDIRECT, {"nh_fill": 1, "ptb": 1, "drop_too_big": 1})
        want = P.eth(OVL_MAC, DP_MAC, 0x86DD) + P.icmp6_ptb(OVERLAY6, "fd00::1", 1452,
                                                            E6_BIG[:1232])
        assert len(res.data) == 14 + 1280
        assert res.data.hex() == want.hex()
    finally:
        hub6.maps.set_overlay_address6(None)
    res, c = hub6.run("xdmvpn_tc_encap", ovl(E6_BIG))   # no address to send it from
    assert (res.retval, c) == (TC_ACT_SHOT, {"drop_too_big": 1})


@pytest.mark.root
def test_packet_too_big_has_a_budget(fx_ns):
    h = Harness(fx_ns, gre_key=KEY, local_nbma6=LOCAL6, test_clock=True)
    try:
        h.maps.add_mapping("fd00::3", N3)
        h.maps.set_overlay_address6(OVERLAY6)
        t = h.module[b"xdmvpn_test_clock"]
        t[t.Key(0)] = type(t[t.Key(0)])(10**12)
        got = [h.run("xdmvpn_tc_encap", ovl(E6_BIG))[1] for _ in range(52)]
        assert got[0] == {"nh_fill": 1, "ptb": 1, "drop_too_big": 1}   # then cached
        assert got[1:50] == [{"ptb": 1, "drop_too_big": 1}] * 49
        assert got[50:] == [{"ptb_held": 1, "drop_too_big": 1}] * 2
    finally:
        h.close()


@pytest.mark.root
def test_mss_clamp_ipv6(fx_ns):
    h = Harness(fx_ns, gre_key=KEY, adjust_mss=1340, local_nbma6=LOCAL6)
    try:
        h.maps.add_mapping("fd00::3", N3)
        for prefix in (b"", b"\x01"):  # MSS at an even and at an odd offset
            syn = P.ipv6("fd00::1", "fd00::3", P.tcp_syn6("fd00::1", "fd00::3", 1440, prefix),
                         nh=6)
            h.maps.flush_nexthops()
            res, c = h.run("xdmvpn_tc_encap", ovl(syn))
            assert (res.retval, c) == (TC_ACT_REDIRECT, {"encap": 1, "mss_clamped": 1,
                                                         "nh_fill": 1})
            seg = res.data[14 + 40 + 8 + 40:]
            opt = seg[20 + len(prefix):]
            assert opt[:2] == b"\x02\x04" and struct.unpack("!H", opt[2:4])[0] == 1340
            assert P.tcp6_csum("fd00::1", "fd00::3", seg) == 0
    finally:
        h.close()


# (id, multicast set, counters): every member of both families gets a copy
MCAST6 = [
    ("ipv6-to-both-families", ["192.0.2.2", N2, "192.0.2.3", N3], {"mcast": 4}),
    ("ipv6-to-ipv6-members-only", [N2, N3], {"mcast": 2}),
    ("ipv6-to-ipv4-members-only", ["192.0.2.2"], {"mcast": 1}),
    ("ipv6-member-without-neighbour", [N2, "2001:db8::99"], {"mcast": 1, "drop_no_neigh": 1}),
    ("ipv6-set-larger-than-one-batch", [N2, N3] + [f"2001:db8:99::{i}" for i in range(1, 6)],
     {"mcast": 2, "drop_no_route": 5}),
]


@pytest.mark.root
@pytest.mark.parametrize("members,counters", [r[1:] for r in MCAST6], ids=[r[0] for r in MCAST6])
def test_ipv6_multicast_replication(hub6, members, counters):
    hub6.maps.set_multicast(members)
    try:
        res, c = hub6.run("xdmvpn_tc_encap", ovl(inner6(src="fd00::1", dst="ff02::5")))
        assert (res.retval, c) == (TC_ACT_SHOT, counters)
        res, c = hub6.run("xdmvpn_tc_encap", ovl(inner4(src="10.0.0.1", dst="224.0.0.5")))
        assert (res.retval, c) == (TC_ACT_SHOT, counters)     # IPv4 multicast alike
    finally:
        hub6.maps.set_multicast([])


# ---- the Python side ----------------------------------------------------------------------------

@pytest.mark.root
def test_python_api_both_families(hub6):
    m = hub6.maps
    V6 = ipaddress.IPv6Address
    rows = {str(r.prefix): str(r.nbma) for r in m.mappings()}
    assert rows["fd00::4/128"] == "192.0.2.3" and rows["10.0.0.6/32"] == N3
    m.add_prefix("fd00:9::/32", "192.0.2.2")
    assert {str(p.prefix): str(p.nbma) for p in m.prefixes()}["fd00:9::/32"] == "192.0.2.2"
    assert m.remove_prefix("fd00:9::/32") and not m.remove_prefix("fd00:9::/32")
    m.add_mapping("fd00::77", N2)
    assert m.known_peers()[V6(N2)] == 2
    m.add_mapping("fd00::77", "192.0.2.2")     # re-pointed across families
    assert m.known_peers()[V6(N2)] == 1
    assert m.remove_mapping(ipaddress.ip_address("fd00::77"))
    m.set_multicast([N3, "192.0.2.3", N3])
    assert [str(a) for a in m.multicast()] == ["192.0.2.3", N3]
    m.remove_multicast(N3)
    assert [str(a) for a in m.multicast()] == ["192.0.2.3"]
    m.set_multicast([])
    m.set_nhs([N2, "192.0.2.2"])
    assert [str(a) for a in m.nhs()] == [N2, "192.0.2.2"]
    m.set_nhs([])
    assert m.nhs() == []
    with pytest.raises(XdmvpnError, match="IPv6 NBMA"):
        m.set_ipsec_required(N2, True)
    with pytest.raises(XdmvpnError, match="not an IPv4 or IPv6"):
        m.add_mapping("fd00::zz", N2)
    with pytest.raises(XdmvpnError, match="IPv6 address expected"):
        m.set_overlay_address6("10.0.0.1")
