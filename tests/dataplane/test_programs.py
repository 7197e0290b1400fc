"""Program tests through BPF test-run: a table of {input, verdict, output, counters}.

Every branch of the XDP underlay program and the tc encap program has a row,
plus the malformed outer packets; every drop reason has a row (or is listed in
UNREACHABLE with the reason no input reaches it); NHRP admission is a table of
steps on a test build whose clock the test sets.  Expected outputs are built
independently with xdmvpn_bench.packets (every byte explicit, no scapy).
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import struct

import pytest

from xdmvpn.dataplane import abi
from xdmvpn.netns import in_netns
from xdmvpn_bench import packets as P
from xdmvpn_bench.testrun import run as run_once
from conftest import DP_MAC, LOCAL, OVL_MAC, PEER2_MAC, PEER3_MAC, UL_MAC, Harness, check_row

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
    ("outer-ihl-6-hairpin", outer(P.gre(I_PEER, key=KEY), options=b"\x01\x01\x01\x00"),
     XDP_TX, hairpinned(I_PEER), {"hairpin": 1, "trigger": 1, "nh_fill": 1}),
    ("gre-checksum-hairpin-sends-our-gre", outer(P.gre(I_PEER, key=KEY, csum_word=True, seq=9)),
     XDP_TX, hairpinned(I_PEER), {"hairpin": 1, "trigger": 1, "nh_fill": 1}),
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
    ("unknown-inner-proto", outer(P.gre(bytes(40), proto=0x88B5, key=KEY)), XDP_DROP, None,
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
    check_row(hub, "xdmvpn_xdp_underlay", pkt, verdict, expected, counters)


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
    assert ev.packet == I_PEER  # whole packet as it came (limit 128 bytes)
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
        h.maps.add_mapping("10.0.0.2", "192.0.2.2")
        h.maps.add_mapping("10.0.0.3", "192.0.2.3")
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
    ("no-mapping-hub-drops", ovl(E_MISS), TC_ACT_SHOT, None, {"drop_no_mapping": 1}),
    ("not-ipv4-drops", P.eth(DP_MAC, OVL_MAC, 0x86DD) + bytes(40), TC_ACT_SHOT, None,
     {"drop_overlay_not_ipv4": 1}),
    ("too-big-for-underlay", ovl(E_BIG), TC_ACT_SHOT, None, {"drop_too_big": 1, "nh_fill": 1}),
]


@pytest.mark.root
@pytest.mark.parametrize("name,pkt,verdict,expected,counters", TC_TABLE,
                         ids=[r[0] for r in TC_TABLE])
def test_tc_encap(hub, name, pkt, verdict, expected, counters):
    check_row(hub, "xdmvpn_tc_encap", pkt, verdict, expected, counters)


@pytest.mark.root
def test_nhs_fallback_without_event(hub):
    """No mapping: the NHS gets the packet, and the controller no event (a spoke
    resolves when the hub's traffic indication says so, not on a miss)."""
    hub.maps.events()
    hub.maps.set_nhs(["192.0.2.2"])
    try:
        res, c = hub.run("xdmvpn_tc_encap", ovl(E_MISS))
        assert res.retval == TC_ACT_REDIRECT
        assert res.data.hex() == encapped(E_MISS, "192.0.2.2", PEER2_MAC).hex()
        assert c == {"encap_nhs": 1, "nh_fill": 1}
        _, c = hub.run("xdmvpn_tc_encap", ovl(E_MISS))
        assert c == {"encap_nhs": 1}
        assert hub.maps.events() == []
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


# ---- NHRP admission: known sources before unknown ones ----------------------------------------

NHRP = P.gre(bytes(44), proto=0x2001, key=KEY)
KNOWN = "192.0.2.2"            # has a mapping in the admission harness
BUDGET, EVERY_MS = 4, 1000     # unknown sources together: 4 packets per second, burst 4
PER_SOURCE = 3                 # max-send: 3 packets per minute, per source


def nhrp_from(src: str) -> bytes:
    return P.eth(UL_MAC, PEER2_MAC) + P.ipv4(src, LOCAL, NHRP)


@pytest.fixture(scope="module")
def admission(fx_ns):
    h = Harness(fx_ns, gre_key=KEY, test_clock=True, nhrp_max_send=PER_SOURCE,
                nhrp_max_send_every=60, nhrp_unknown_budget=BUDGET,
                nhrp_unknown_every=EVERY_MS / 1000)
    h.maps.add_mapping("10.0.0.2", KNOWN)
    yield h
    h.close()


def set_clock(h: Harness, ms: float) -> None:
    t = h.module[b"xdmvpn_test_clock"]
    t[t.Key(0)] = ctypes.c_uint64(int(ms * 1e6) + 10**12)   # far from 0: "never seen"


def forget_budgets(h: Harness) -> None:
    for name in (b"xdmvpn_nhrp_buckets", b"xdmvpn_nhrp_unknown_buckets", b"xdmvpn_nhrp_budget"):
        h.module[name].clear()


def U(i: int) -> str:
    return f"198.51.100.{i}"   # unknown sources


PASS_KNOWN = (XDP_PASS, {"nhrp": 1})
PASS_UNKNOWN = (XDP_PASS, {"nhrp": 1, "nhrp_unknown": 1})
OVER_BUDGET = (XDP_DROP, {"drop_nhrp_unknown_budget": 1})
EXHAUST = [(0, U(i), *PASS_UNKNOWN) for i in range(1, BUDGET + 1)]

# (id, steps: [(clock ms, source, verdict, counters)]), each from fresh budgets
ADMISSION_TABLE = [
    ("unknown-sources-share-one-budget", EXHAUST + [(0, U(9), *OVER_BUDGET)]),
    ("known-source-admitted-while-budget-exhausted",
     EXHAUST + [(0, U(9), *OVER_BUDGET), (0, KNOWN, *PASS_KNOWN), (0, KNOWN, *PASS_KNOWN),
                (0, U(10), *OVER_BUDGET)]),
    ("budget-refills-one-packet-per-250-ms",
     EXHAUST + [(0, U(9), *OVER_BUDGET), (200, U(9), *OVER_BUDGET), (250, U(9), *PASS_UNKNOWN),
                (250, U(10), *OVER_BUDGET), (500, U(10), *PASS_UNKNOWN),
                (600, U(11), *OVER_BUDGET)]),
    ("budget-refill-stops-at-the-burst",
     EXHAUST + [(60_000, U(i), *PASS_UNKNOWN) for i in range(20, 20 + BUDGET)]
     + [(60_000, U(30), *OVER_BUDGET)]),
    ("unknown-source-over-its-own-bucket",
     [(i * 300, U(1), *PASS_UNKNOWN) for i in range(PER_SOURCE)]
     + [(900, U(1), XDP_DROP, {"drop_nhrp_unknown_rate": 1}), (900, U(2), *PASS_UNKNOWN)]),
    ("known-source-over-its-bucket-only",
     [(0, KNOWN, *PASS_KNOWN)] * PER_SOURCE
     + [(0, KNOWN, XDP_DROP, {"drop_nhrp_rate": 1}), (0, U(1), *PASS_UNKNOWN),
        (20_000, KNOWN, *PASS_KNOWN), (20_000, KNOWN, XDP_DROP, {"drop_nhrp_rate": 1})]),
]


@pytest.mark.root
@pytest.mark.parametrize("steps", [r[1] for r in ADMISSION_TABLE],
                         ids=[r[0] for r in ADMISSION_TABLE])
def test_nhrp_admission(admission, steps):
    forget_budgets(admission)
    got = []
    for ms, src, _, _ in steps:
        set_clock(admission, ms)
        res, c = admission.run("xdmvpn_xdp_underlay", nhrp_from(src))
        got.append((ms, src, res.retval, c))
    assert got == [tuple(s) for s in steps]


@pytest.mark.root
def test_refused_unknown_sources_create_no_state(admission):
    forget_budgets(admission)
    set_clock(admission, 0)
    for i in range(1, BUDGET + 6):
        admission.run("xdmvpn_xdp_underlay", nhrp_from(U(i)))
    buckets = {abi.ipv4(k.value) for k in admission.module[b"xdmvpn_nhrp_unknown_buckets"].keys()}
    assert buckets == {ipaddress.IPv4Address(U(i)) for i in range(1, BUDGET + 1)}


@pytest.mark.root
def test_unknown_flood_cannot_evict_a_known_bucket(fx_ns):
    """A known peer over its bucket stays over it while more unknown sources than the
    unknown LRU holds are admitted (were its bucket evicted, it would come back full)."""
    flood = abi.NHRP_UNKNOWN_SOURCES + 1000
    h = Harness(fx_ns, gre_key=KEY, test_clock=True, nhrp_max_send=PER_SOURCE,
                nhrp_max_send_every=60, nhrp_unknown_budget=flood)
    try:
        h.maps.add_mapping("10.0.0.2", KNOWN)
        set_clock(h, 0)
        verdicts = [h.run("xdmvpn_xdp_underlay", nhrp_from(KNOWN))[0].retval
                    for _ in range(PER_SOURCE + 1)]
        assert verdicts == [XDP_PASS] * PER_SOURCE + [XDP_DROP]
        fd = h.progs["xdmvpn_xdp_underlay"].fd
        with in_netns(h.ns):
            passed = sum(run_once(fd, nhrp_from(str(ipaddress.IPv4Address("10.64.0.0") + i)))
                         .retval == XDP_PASS for i in range(flood))
        assert passed == flood
        unknown = sum(1 for _ in h.module[b"xdmvpn_nhrp_unknown_buckets"].keys())
        assert 0 < unknown <= abi.NHRP_UNKNOWN_SOURCES
        res, c = h.run("xdmvpn_xdp_underlay", nhrp_from(KNOWN))
        assert (res.retval, c) == (XDP_DROP, {"drop_nhrp_rate": 1})
    finally:
        h.close()


@pytest.mark.root
def test_known_peers_follow_the_entries(admission):
    """The controller counts the host entries, prefixes and NHS slots at each NBMA
    address in xdmvpn_known_peers; a source is unknown again with the last one gone."""
    m = admission.maps
    known = ipaddress.IPv4Address(KNOWN)
    other = ipaddress.IPv4Address("192.0.2.3")
    assert m.known_peers() == {known: 1}
    m.add_prefix("172.16.0.0/16", KNOWN)
    m.set_nhs([KNOWN, "192.0.2.3"])
    assert m.known_peers() == {known: 3, other: 1}
    m.add_mapping("10.0.0.2", "192.0.2.3")          # re-pointed
    assert m.known_peers() == {known: 2, other: 2}
    m.set_nhs([])
    m.remove_prefix("172.16.0.0/16")
    assert m.known_peers() == {other: 1}
    forget_budgets(admission)
    set_clock(admission, 0)
    assert admission.run("xdmvpn_xdp_underlay", nhrp_from(KNOWN))[1] == PASS_UNKNOWN[1]
    m.add_mapping("10.0.0.2", KNOWN)
    assert m.known_peers() == {known: 1}
    assert admission.run("xdmvpn_xdp_underlay", nhrp_from(KNOWN))[1] == PASS_KNOWN[1]
    # a map out of step (a controller that died between two writes) is rewritten
    km = m.known_map
    km[ctypes.c_uint32(abi.be32("203.0.113.9"))] = ctypes.c_uint32(5)
    del km[ctypes.c_uint32(abi.be32(KNOWN))]
    m.sync_known()
    assert m.known_peers() == {known: 1}


# ---- every drop reason ---------------------------------------------------------------------

def set_scratch(h: Harness, strip: int, nbma: str = "0.0.0.0", stats_idx: int = 0,
                frame: int = 0) -> None:
    """What the underlay program hands over, written for every CPU."""
    t = h.module[b"xdmvpn_scratch"]
    one = abi.Scratch(bytes=frame, strip=strip, nbma=abi.be32(nbma), stats_idx=stats_idx)
    t[t.Key(0)] = abi.percpu(abi.Scratch, t.total_cpu)(*[one] * t.total_cpu)


ARP = P.eth("ff:ff:ff:ff:ff:ff", PEER2_MAC, 0x0806) + bytes(40)


class SkbCb(ctypes.Structure):
    """The start of struct __sk_buff up to cb[] (uapi/linux/bpf.h), as a tc test run's
    context: the kernel fills the rest with zeros."""

    _fields_ = [("head", ctypes.c_uint32 * 12), ("cb", ctypes.c_uint32 * 5)]
GRE_60 = outer(P.gre(I_US, key=KEY))[:60]

# The tail-called programs run on their own, with a hand-over no dispatcher makes:
# (id, program, scratch strip or None, packet, verdict, counters)
DIRECT_TABLE = [
    ("decap-strip-beyond-headers", "xdmvpn_xdp_decap", 200, outer(P.gre(I_US, key=KEY)),
     XDP_DROP, {"drop_bounds": 1}),
    ("decap-strip-leaves-no-ethernet", "xdmvpn_xdp_decap", 50, GRE_60, XDP_DROP,
     {"drop_adjust_head": 1}),
    ("hairpin-strip-beyond-headers", "xdmvpn_xdp_hairpin", 200, outer(P.gre(I_PEER, key=KEY)),
     XDP_DROP, {"drop_bounds": 1}),

    # (test-run refuses an IPv4 skb shorter than its header: another EtherType)
    ("build-on-arp-cannot-push", "xdmvpn_tc_build", "mcast", ARP, TC_ACT_SHOT,
     {"drop_adjust_room": 1}),
]


@pytest.mark.root
@pytest.mark.parametrize("prog,strip,pkt,verdict,counters", [r[1:] for r in DIRECT_TABLE],
                         ids=[r[0] for r in DIRECT_TABLE])
def test_tail_called_program_refuses_a_bad_hand_over(hub, prog, strip, pkt, verdict, counters):
    ctx = None
    if strip == "mcast":         # tc: skb->cb says "a multicast to build"
        ctx = SkbCb()
        ctx.cb[abi.CB_PATH] = abi.Path.MCAST
    elif strip is not None:
        set_scratch(hub, strip, "192.0.2.3", 1, len(pkt))
    res, got = hub.run(prog, pkt, ctx)
    assert (res.retval, got) == (verdict, counters)


@pytest.mark.root
def test_mapping_slot_outside_the_nexthop_cache(hub):
    key = ctypes.c_uint32(abi.be32("10.0.0.77"))
    hub.maps.peers[key] = abi.Peer(nbma=abi.be32("192.0.2.3"), stats_idx=abi.MAX_STATS + 5)
    try:
        res, c = hub.run("xdmvpn_xdp_underlay", outer(P.gre(inner(dst="10.0.0.77"), key=KEY)))
        assert (res.retval, c) == (XDP_DROP, {"drop_nh_slot": 1})
    finally:
        del hub.maps.peers[key]


@pytest.fixture(scope="module")
def ipsec_hub(fx_ns):
    """IPsec build whose overlay ifindex names no interface: the hand-over of an IPsec
    peer's multicast copy into it fails."""
    h = Harness(fx_ns, gre_key=KEY, ipsec=True, overlay_ifindex=999_999)
    h.maps.set_ipsec_required("192.0.2.3", True, sa_up=True)
    yield h
    h.close()


# (id, harness fixture, multicast set, counters): one copy sent, one dropped
MCAST_DROPS = [
    ("member-without-neighbour", "hub", ["192.0.2.2", "192.0.2.99"],  # on link, no neighbour
     {"mcast": 1, "drop_no_neigh": 1}),
    ("ipsec-copy-that-cannot-be-cloned", "ipsec_hub", ["192.0.2.2", "192.0.2.3"],
     {"mcast": 1, "drop_clone": 1}),
]


@pytest.mark.root
@pytest.mark.parametrize("harness,members,counters", [r[1:] for r in MCAST_DROPS],
                         ids=[r[0] for r in MCAST_DROPS])
def test_multicast_copy_dropped(request, harness, members, counters):
    h = request.getfixturevalue(harness)
    h.maps.set_multicast(members)
    try:
        mc = P.ipv4("10.0.0.1", "224.0.0.5", bytes(40), proto=89, ttl=1)
        res, c = h.run("xdmvpn_tc_encap", ovl(mc))
        assert (res.retval, c) == (TC_ACT_SHOT, counters)
    finally:
        h.maps.set_multicast([])


@pytest.mark.root
def test_esp_receive_without_tunnel_metadata(ipsec_hub):
    """Test-run gives the skb no tunnel key: what did not come from the GRE device is
    not ours."""
    res, c = ipsec_hub.run("xdmvpn_tc_esp_rx", ovl(I_US))
    assert (res.retval, c) == (TC_ACT_SHOT, {"drop_esp_not_ours": 1})


@pytest.mark.root
@pytest.mark.parametrize("packet", [ovl(I_US), bytes(14) + bytes(range(46))],
                         ids=["ipv4", "anything"])
def test_the_gre_sink_drops_everything_uncounted(hub, packet):
    """xdmvpn_tc_sink (the collect_md GRE device's ingress when ip_gre is loaded): what
    reaches it was counted by XDP already and would have been discarded by the kernel;
    nothing of it may enter the stack."""
    res, c = hub.run("xdmvpn_tc_sink", packet)
    assert (res.retval, c) == (TC_ACT_SHOT, {})


@pytest.mark.root
def test_multicast_batch_whose_next_call_fails(fx_ns):
    h = Harness(fx_ns, gre_key=KEY)
    try:
        h.maps.set_multicast([f"198.51.100.{i}" for i in range(1, 6)] + ["192.0.2.2"])
        arr = h.module[b"xdmvpn_progs"]
        del arr[arr.Key(abi.TcSlot.MCAST)]
        built = encapped(P.ipv4("10.0.0.1", "224.0.0.5", bytes(40), proto=89, ttl=1))
        res, c = h.run("xdmvpn_tc_mcast", built)      # the first batch, then no slot
        assert (res.retval, c) == (TC_ACT_SHOT, {"drop_no_route": 4, "drop_tail_call": 1})
    finally:
        h.close()


# Reasons no input reaches here, each with why; every other one has a row above or in
# test_options.py / test_ipsec_dataplane.py (DROP_TESTS).
UNREACHABLE = {
    "scratch": "a one-entry per-CPU array always has its entry; the check is the verifier's",
    "change_head": "bpf_skb_change_head fails only past the maximum skb size or out of memory",
    "change_type": "bpf_skb_change_type fails only for a packet type above OTHERHOST, which "
                   "no skb on a veth ingress has",
    "redirect": "bpf_redirect and bpf_redirect_neigh refuse only unknown flags (ours are 0)",
}
DROP_TESTS = {
    "gre_truncated": "XDP_TABLE", "inner_malformed": "XDP_TABLE", "inner_proto": "XDP_TABLE",
    "overlay_not_ipv4": "TC_TABLE", "loop": "XDP_TABLE", "too_big": "TC_TABLE",
    "nhrp_rate": "ADMISSION_TABLE", "nhrp_unknown_rate": "ADMISSION_TABLE",
    "nhrp_unknown_budget": "ADMISSION_TABLE",
    "plaintext_ipsec": "test_ipsec_dataplane.py", "ipsec_no_sa": "test_ipsec_dataplane.py",
    "esp_not_ours": "test_esp_receive_without_tunnel_metadata",
    "no_mapping": "TC_TABLE", "no_route": "XDP_TABLE",
    "no_neigh": "MCAST_DROPS",
    "nh_slot": "test_mapping_slot_outside_the_nexthop_cache",
    "tail_call": "test_multicast_batch_whose_next_call_fails",
    "bounds": "DIRECT_TABLE", "adjust_head": "DIRECT_TABLE", "adjust_room": "DIRECT_TABLE",
    "clone": "MCAST_DROPS",
    "outer_malformed": "test_programs6.py", "mcast_scope": "test_programs6.py",
}


def test_every_drop_reason_is_tested_or_unreachable():
    names = {d.name.lower() for d in abi.Drop}
    assert set(DROP_TESTS) | set(UNREACHABLE) == names
    assert not set(DROP_TESTS) & set(UNREACHABLE)
    tables = {"XDP_TABLE": XDP_TABLE, "TC_TABLE": TC_TABLE, "DIRECT_TABLE": DIRECT_TABLE,
              "MCAST_DROPS": MCAST_DROPS,
              "ADMISSION_TABLE": [s for r in ADMISSION_TABLE for s in r[1]]}
    for reason, where in DROP_TESTS.items():
        if where in tables:
            assert any(f"drop_{reason}" in row[-1] for row in tables[where]), reason
