"""Tunnel options as the node configuration gives them (ttl 0..255 with 0 =
inherit, df true/false/"inherit", nhrp max-send per N seconds), the next-hop
cache and the tail-call plumbing, through BPF test-run."""

from __future__ import annotations

import ipaddress
import os
import struct
import time

import pytest

from conftest import LOCAL, PEER3_MAC, UL_MAC, Harness
from test_programs import KEY, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX, \
    inner, outer, ovl
from xdmvpn import netns
from xdmvpn.netns import in_netns
from xdmvpn_bench.testrun import run as run_once
from xdmvpn.dataplane import abi, attach, build
from xdmvpn.errors import XdmvpnError
from xdmvpn.inet import checksum
from xdmvpn_bench import packets as P


def outer_fields(frame: bytes) -> dict:
    ip = frame[14:34]
    return {"ttl": ip[8], "df": bool(struct.unpack("!H", ip[6:8])[0] & 0x4000),
            "id": struct.unpack("!H", ip[4:6])[0], "csum_ok": checksum(ip) == 0}


@pytest.fixture(scope="module")
def harnesses(fx_ns):
    made = {}

    def get(**cfg):
        key = tuple(sorted(cfg.items()))
        if key not in made:
            h = Harness(fx_ns, gre_key=KEY, **cfg)
            h.maps.add_mapping("10.0.0.2", "192.0.2.2")
            h.maps.add_mapping("10.0.0.3", "192.0.2.3")
            made[key] = h
        return made[key]

    yield get
    for h in made.values():
        h.close()


@pytest.mark.root
@pytest.mark.parametrize("inner_ttl", [64, 9, 255])
def test_ttl_inherit_copies_inner_ttl(harnesses, inner_ttl):
    h = harnesses(ttl=0)
    pkt = inner(src="10.0.0.1", dst="10.0.0.3", ttl=inner_ttl)
    res, c = h.run("xdmvpn_tc_encap", ovl(pkt))
    assert res.retval == TC_ACT_REDIRECT and c.get("encap") == 1
    f = outer_fields(res.data)
    assert f["ttl"] == inner_ttl and f["csum_ok"]
    assert res.data[14 + 28:] == pkt  # inner untouched by encap
    # hairpin: one overlay hop first, then the outer TTL copies the inner
    res, c = h.run("xdmvpn_xdp_underlay", outer(P.gre(inner(dst="10.0.0.3", ttl=inner_ttl),
                                                      key=KEY)))
    assert res.retval == XDP_TX and c.get("hairpin") == 1
    f = outer_fields(res.data)
    assert f["ttl"] == inner_ttl - 1 and res.data[14 + 28 + 8] == inner_ttl - 1
    assert f["csum_ok"]


@pytest.mark.root
@pytest.mark.parametrize("ttl", [1, 64, 255])
def test_fixed_ttl(harnesses, ttl):
    h = harnesses(ttl=ttl)
    res, _ = h.run("xdmvpn_tc_encap", ovl(inner(src="10.0.0.1", dst="10.0.0.3", ttl=7)))
    assert outer_fields(res.data)["ttl"] == ttl
    res, _ = h.run("xdmvpn_xdp_underlay", outer(P.gre(inner(dst="10.0.0.3", ttl=7), key=KEY)))
    assert outer_fields(res.data)["ttl"] == ttl


DF_CASES = [  # df setting, inner DF bit -> outer DF bit
    (True, True, True), (True, False, True), ("set", False, True),
    (False, True, False), (False, False, False), ("clear", True, False),
    ("inherit", True, True), ("inherit", False, False),
]


@pytest.mark.root
@pytest.mark.parametrize("df,inner_df,want", DF_CASES,
                         ids=[f"{d}-inner{i:d}" for d, i, _ in DF_CASES])
def test_df_variants(harnesses, df, inner_df, want):
    h = harnesses(df=df)
    frag = 0x4000 if inner_df else 0
    pkt = P.ipv4("10.0.0.1", "10.0.0.3", P.icmp_echo(), proto=1, frag=frag)
    res, c = h.run("xdmvpn_tc_encap", ovl(pkt))
    assert res.retval == TC_ACT_REDIRECT, c
    f = outer_fields(res.data)
    assert f["df"] is want and f["csum_ok"]
    if want:
        assert f["id"] == 0  # RFC 6864: atomic datagram
    res, c = h.run("xdmvpn_xdp_underlay",
                   outer(P.gre(P.ipv4("10.0.0.2", "10.0.0.3", P.icmp_echo(), proto=1, frag=frag),
                               key=KEY)))
    assert res.retval == XDP_TX, c
    assert outer_fields(res.data)["df"] is want


@pytest.mark.root
def test_nhrp_max_send_default_100_every_10s(harnesses):
    h = harnesses()  # config defaults: 100 packets every 10 s
    pkt = outer(P.gre(bytes(44), proto=0x2001, key=KEY), src="192.0.2.3")
    # bare test runs (no counter reads between them); one token comes back every 100 ms,
    # so the bounds count the refills the time taken allows (a loaded machine is slow)
    fd = h.progs["xdmvpn_xdp_underlay"].fd
    t0 = time.monotonic()
    with in_netns(h.ns):
        verdicts = [run_once(fd, pkt).retval for _ in range(102)]
    refills = int((time.monotonic() - t0) / 0.1) + 1
    assert verdicts[:100] == [XDP_PASS] * 100
    assert set(verdicts) <= {XDP_PASS, XDP_DROP}
    assert verdicts.count(XDP_PASS) <= 100 + refills
    if refills == 1:
        assert verdicts[100:] == [XDP_DROP] * 2
    while h.run("xdmvpn_xdp_underlay", pkt)[0].retval == XDP_PASS:   # empty the bucket
        assert time.monotonic() - t0 < 30, "the bucket never empties"
    # refill: one token per 100 ms
    time.sleep(0.25)
    t0 = time.monotonic()
    verdicts = [h.run("xdmvpn_xdp_underlay", pkt)[0].retval for _ in range(4)]
    refills = int((time.monotonic() - t0) / 0.1) + 1
    assert 2 <= verdicts.count(XDP_PASS) <= 2 + refills
    if refills == 1:
        assert verdicts[-1] == XDP_DROP


@pytest.mark.parametrize("cfg,words", [
    ({"ttl": 256}, "ttl"), ({"ttl": -1}, "ttl"), ({"ttl": True}, "ttl"),
    ({"df": "maybe"}, "df"), ({"df": None}, "df"),
    ({"nhrp_max_send_every": 0}, "interval"), ({"nhrp_max_send": 0}, "packets"),
    ({"local_nbma": "300.1.1.1"}, "NBMA"), ({"gre_key": 2 ** 32}, "GRE key"),
])
def test_bad_settings_are_one_line_errors(cfg, words):
    with pytest.raises(XdmvpnError) as exc:
        build.DataplaneConfig(**cfg).cflags()
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_settings_accepted_as_configured():
    for df in (True, False, "inherit", "set", "clear"):
        build.DataplaneConfig(df=df).cflags()
    flags = build.DataplaneConfig(ttl=0, nhrp_max_send=100, nhrp_max_send_every=10).cflags()
    assert "-DXDMVPN_TTL=0" in flags and "-DXDMVPN_NHRP_COST_NS=100000000ULL" in flags


# ---- next-hop cache -----------------------------------------------------------

@pytest.mark.root
def test_nexthop_cache_follows_flush_and_age(fx_ns, harnesses):
    h = harnesses(nexthop_cache_ms=300)
    pkt = outer(P.gre(inner(dst="10.0.0.3"), key=KEY))
    new_mac = "02:00:00:00:33:33"
    h.maps.flush_nexthops()
    res, c = h.run("xdmvpn_xdp_underlay", pkt)
    assert res.data[:6] == P.mac(PEER3_MAC) and c["nh_fill"] == 1
    netns.neigh(fx_ns, "ul0", "192.0.2.3", new_mac)
    try:
        res, c = h.run("xdmvpn_xdp_underlay", pkt)
        assert res.data[:6] == P.mac(PEER3_MAC) and "nh_fill" not in c  # cached
        time.sleep(0.35)  # older than nexthop_cache_ms: looked up again
        res, c = h.run("xdmvpn_xdp_underlay", pkt)
        assert res.data[:6] == P.mac(new_mac) and c["nh_fill"] == 1
        netns.neigh(fx_ns, "ul0", "192.0.2.3", PEER3_MAC)
        h.maps.flush_nexthops()  # the controller can force it at once
        res, c = h.run("xdmvpn_xdp_underlay", pkt)
        assert res.data[:6] == P.mac(PEER3_MAC) and c["nh_fill"] == 1
        assert h.maps.nexthops()[ipaddress.IPv4Address("192.0.2.3")] == [PEER3_MAC]
    finally:
        netns.neigh(fx_ns, "ul0", "192.0.2.3", PEER3_MAC)


@pytest.mark.root
def test_cached_next_hop_keeps_the_mtu_check(harnesses):
    h = harnesses()
    h.maps.flush_nexthops()
    small = outer(P.gre(inner(dst="10.0.0.3"), key=KEY))
    big_inner = P.ipv4("10.0.0.2", "10.0.0.3", bytes(1500), proto=17)
    big = outer(P.gre(big_inner, key=KEY))
    assert h.run("xdmvpn_xdp_underlay", small)[0].retval == XDP_TX
    res, c = h.run("xdmvpn_xdp_underlay", big)  # over ul0's 1500 from the cache
    assert (res.retval, c) == (XDP_DROP, {"drop_too_big": 1})
    # tc: same, a cached next hop still refuses what the underlay cannot carry
    assert h.run("xdmvpn_tc_encap", ovl(inner(src="10.0.0.1", dst="10.0.0.3")))[0].retval \
        == TC_ACT_REDIRECT
    res, c = h.run("xdmvpn_tc_encap", ovl(P.ipv4("10.0.0.1", "10.0.0.3", bytes(1460),
                                                 proto=17)))
    assert (res.retval, c) == (TC_ACT_SHOT, {"drop_too_big": 1})


@pytest.mark.root
def test_nexthop_is_per_mapping_nbma(harnesses):
    """Re-pointing a mapping to another NBMA must not reuse the old next hop."""
    h = harnesses()
    pkt = outer(P.gre(inner(dst="10.0.0.3"), key=KEY))
    assert h.run("xdmvpn_xdp_underlay", pkt)[0].data[:6] == P.mac(PEER3_MAC)
    h.maps.add_mapping("10.0.0.3", "192.0.2.77")  # same slot, new NBMA, no neighbour
    try:
        res, c = h.run("xdmvpn_xdp_underlay", pkt)
        assert c == {"hairpin_slow": 1, "decap": 1}
    finally:
        h.maps.add_mapping("10.0.0.3", "192.0.2.3")


@pytest.mark.root
def test_empty_tail_call_slot_drops_and_counts(fx_ns):
    h = Harness(fx_ns, gre_key=KEY)
    try:
        h.maps.add_mapping("10.0.0.3", "192.0.2.3")
        arr = h.module[b"xdmvpn_xdp_progs"]
        del arr[arr.Key(1)]  # hairpin
        res, c = h.run("xdmvpn_xdp_underlay", outer(P.gre(inner(dst="10.0.0.3"), key=KEY)))
        assert (res.retval, c) == (XDP_DROP, {"drop_tail_call": 1})
        res, c = h.run("xdmvpn_xdp_underlay", outer(P.gre(inner(dst="10.0.0.1"), key=KEY)))
        assert c == {"decap": 1}  # the other slots still work
    finally:
        h.close()


@pytest.mark.root
def test_outer_header_from_cache_is_complete(harnesses):
    h = harnesses()
    h.maps.flush_nexthops()
    i = inner(dst="10.0.0.3", tos=0x28)
    for _ in range(2):  # fill, then cached
        res, _ = h.run("xdmvpn_xdp_underlay", outer(P.gre(i, key=KEY)))
        assert res.data == P.eth(PEER3_MAC, UL_MAC) + P.ipv4(
            LOCAL, "192.0.2.3", P.gre(P.dec_ttl(i), key=KEY), tos=0x28, frag=0x4000)


def test_tunnel_checks_settings_before_creating_anything():
    from xdmvpn.dataplane.tunnel import TunnelDataplane

    for bad in ({"ttl": 300}, {"df": "sometimes"}, {"nhrp_max_send_every": -10}):
        dp = TunnelDataplane(name="xdt-none0", underlay="xdt-none1", local_nbma="192.0.2.1", **bad)
        with pytest.raises(XdmvpnError) as exc:
            dp.check()
        assert "\n" not in str(exc.value)
    TunnelDataplane(name="xdt-none0", underlay="xdt-none1", local_nbma="192.0.2.1", ttl=0,
                    df="inherit", nhrp_max_send=100, nhrp_max_send_every=10).check()


@pytest.mark.root
def test_pins_of_another_layout_are_refused(fx_ns):
    """bcc reuses a pinned map whatever its layout; start() first compares every pin
    with abi.MAPS and refuses in one line."""
    from bcc import BPF

    tunnel = f"xdt-pins-{os.getpid()}"
    d = attach.pin_dir(tunnel)
    d.mkdir(parents=True, exist_ok=True)
    try:
        Harness(fx_ns, gre_key=KEY, pin_dir=str(d)).close()
        assert {p.name for p in d.iterdir()} == {m.name for m in abi.MAPS}
        attach.check_pins(tunnel)                        # this version's own pins
        (d / "xdmvpn_drops").unlink()                    # an older version's drops array
        old = BPF(text=f'BPF_TABLE_PINNED("percpu_array", u32, u64, xdmvpn_drops, 14, '
                       f'"{d}/xdmvpn_drops");'.encode())
        old.cleanup()
        with pytest.raises(XdmvpnError) as exc:
            attach.check_pins(tunnel)
        assert "xdmvpn_drops" in str(exc.value) and "\n" not in str(exc.value)
    finally:
        attach.remove_pins(tunnel)
