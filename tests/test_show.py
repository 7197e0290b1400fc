"""`xdmvpn show` views: snapshots of real engine nodes (tests/engine/netsim.py), FRR's JSON
keys and values, and the text tables."""

import json
import sys
from ipaddress import ip_address as A
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "engine"))

from netsim import Net, hub_and_spokes, ipv4_head  # noqa: E402
from xdmvpn import show  # noqa: E402
from xdmvpn.engine.params import NhsParams  # noqa: E402
from xdmvpn.view import EngineView  # noqa: E402

# FakeClock starts at 1000; registration and the shortcut happen at 1000, we look at 1010.
HOLD_LEFT = 290

FRR_CACHE_KEYS = ["interface", "type", "protocol", "nbma", "claimed_nbma", "used", "timeout",
                  "auth", "identity"]
FRR_NHS_KEYS = ["interface", "fqdn", "nbma", "protocol"]
FRR_SHORTCUT_KEYS = ["type", "prefix", "via", "identity"]
FRR_DMVPN_KEYS = ["src", "dst", "notifierActive", "sas", "identity"]


@pytest.fixture
def phase3():
    return phase3_nodes()


def phase3_nodes():
    """Two spokes registered with the hub, then the hub redirects 192.168.1.10 ->
    192.168.2.20 and spoke 1 gets a shortcut to 192.168.2.0/24 via spoke 2."""
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    hub.on_trigger(A("192.0.2.11"), A("192.168.1.10"), A("192.168.2.20"),
                   ipv4_head("192.168.1.10", "192.168.2.20"))
    net.deliver()
    net.tick(10)
    return net, hub, s1, s2


def snap_of(node, iface="tun0"):
    snap = show.snapshot(EngineView(node, iface))
    # what the CLI gets is what went through the control socket
    return json.loads(json.dumps(snap))


def cache_row(type_, proto, nbma, claimed, *, used=False, timeout=True, identity="",
              unique=False, up=True, expires=HOLD_LEFT, iface="tun0"):
    return {"interface": iface, "type": type_, "protocol": proto, "nbma": nbma,
            "claimed_nbma": claimed, "claimedNbma": claimed, "used": used,
            "timeout": timeout, "auth": False, "identity": identity, "unique": unique,
            "up": up, "expires": expires}


def local_row(proto, nbma):
    return cache_row("local", proto, nbma, nbma, timeout=False, identity="-", up=False,
                     expires=None)


# -- snapshot ---------------------------------------------------------------------------------

def test_snapshot_is_plain_json_data(phase3):
    net, hub, s1, s2 = phase3
    for node in (hub, s1, s2):
        snap = show.snapshot(EngineView(node, "tun0"))
        assert json.loads(json.dumps(snap)) == snap
    snap = show.snapshot(EngineView(s1, "tun0"))
    assert snap["now"] == 1010.0 and snap["interface"] == "tun0" and snap["schema"] == 1
    assert (snap["protocol"], snap["prefix_len"], snap["nbma"]) == ("10.0.0.11", 24,
                                                                     "192.0.2.11")
    assert snap["shortcuts"] == [{"prefix": "192.168.2.0/24", "dst": "192.168.2.20",
                                  "via": "10.0.0.12", "nbma": "192.0.2.12", "hold": 300,
                                  "expires": 1300.0, "installed": 1000.0}]
    assert snap["nhs"] == [{"index": 0, "nbma": "192.0.2.1", "configured_protocol": "10.0.0.1",
                            "protocol": "10.0.0.1", "priority": 0, "state": "up",
                            "expires": 1300.0, "registered_at": 1000.0, "last_error": None}]
    assert [e["protocol"] for e in snap["cache"]] == ["10.0.0.1", "10.0.0.11", "10.0.0.12"]
    assert snap["cache"][2] == {"protocol": "10.0.0.12", "prefix_len": 32, "type": "cached",
                                "nbma": "192.0.2.12", "claimed_nbma": "192.0.2.12",
                                "expires": 1300.0, "created": 1000.0, "unique": False,
                                "used": False, "mtu": 1400, "holdtime": 300, "identity": ""}
    assert snap["resolving"] == []


def test_views_from_a_snapshot_match_views_from_the_engine_snapshot(phase3):
    net, hub, s1, s2 = phase3
    raw, sent = show.snapshot(EngineView(s1, "tun0")), snap_of(s1)
    for name in ("cache", "nhs", "shortcut", "dmvpn"):
        assert getattr(show, f"{name}_json")(raw) == getattr(show, f"{name}_json")(sent)
        assert getattr(show, f"{name}_table")(raw) == getattr(show, f"{name}_table")(sent)


# -- show ip nhrp cache -------------------------------------------------------------------------

def test_hub_cache_json(phase3):
    net, hub, s1, s2 = phase3
    rows = show.cache_json(snap_of(hub))
    assert rows == [
        local_row("10.0.0.1", "192.0.2.1"),
        cache_row("dynamic", "10.0.0.11", "192.0.2.11", "192.0.2.11", unique=True),
        cache_row("dynamic", "10.0.0.12", "192.0.2.12", "192.0.2.12", unique=True),
    ]
    for row in rows:        # FRR's keys in FRR's order (claimedNbma rides next to its twin)
        assert [k for k in row if k in FRR_CACHE_KEYS] == FRR_CACHE_KEYS


def test_spoke_cache_json(phase3):
    net, hub, s1, s2 = phase3
    assert show.cache_json(snap_of(s1)) == [
        cache_row("nhs", "10.0.0.1", "192.0.2.1", "192.0.2.1"),      # lives as long as
        local_row("10.0.0.11", "192.0.2.11"),                          # the registration
        cache_row("cached", "10.0.0.12", "192.0.2.12", "192.0.2.12"),
    ]
    assert show.cache_json(snap_of(s2)) == [                         # the way back
        cache_row("nhs", "10.0.0.1", "192.0.2.1", "192.0.2.1"),
        cache_row("cached", "10.0.0.11", "192.0.2.11", "192.0.2.11"),
        local_row("10.0.0.12", "192.0.2.12"),
    ]


def test_cache_keys_are_frrs():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    for row in show.cache_json(snap_of(hub)) + show.cache_json(snap_of(s1)):
        assert set(FRR_CACHE_KEYS) <= set(row)
        assert row["claimedNbma"] == row["claimed_nbma"]
        assert all(isinstance(row[k], bool) for k in ("used", "timeout", "auth"))
        assert all(isinstance(row[k], str) for k in ("interface", "type", "protocol", "nbma",
                                                     "claimed_nbma", "identity"))


def test_hub_cache_table(phase3):
    net, hub, s1, s2 = phase3
    assert show.cache_table(snap_of(hub)).splitlines() == [
        "Iface Type    Protocol  NBMA       Claimed NBMA Flags     Expires Identity",
        "tun0  local   10.0.0.1  192.0.2.1  192.0.2.1    -         -       -",
        "tun0  dynamic 10.0.0.11 192.0.2.11 192.0.2.11   up,unique 290     -",
        "tun0  dynamic 10.0.0.12 192.0.2.12 192.0.2.12   up,unique 290     -",
    ]


def test_spoke_cache_table_with_used_entry(phase3):
    net, hub, s1, s2 = phase3
    s1.cache.get(A("10.0.0.12")).used = True          # the data plane reported traffic
    net.tick(5)
    assert show.cache_table(snap_of(s1, "gre1")) == "\n".join([
        "Iface Type   Protocol  NBMA       Claimed NBMA Flags   Expires Identity",
        "gre1  nhs    10.0.0.1  192.0.2.1  192.0.2.1    up      285     -",
        "gre1  local  10.0.0.11 192.0.2.11 192.0.2.11   -       -       -",
        "gre1  cached 10.0.0.12 192.0.2.12 192.0.2.12   up,used 285     -",
    ])
    row = show.cache_json(snap_of(s1, "gre1"))[2]
    assert (row["used"], row["interface"], row["expires"]) == (True, "gre1", 285)


def test_negative_entry_has_no_nbma_and_no_peer():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    s1.resolve(A("172.16.0.1"), A("192.0.2.1"))
    net.deliver()
    row = show.cache_json(snap_of(s1))[-1]
    assert row == cache_row("negative", "172.16.0.1", "-", "-", identity="-", up=False,
                            expires=60)
    assert show.cache_table(snap_of(s1)).splitlines()[-1] == \
        "tun0  negative 172.16.0.1 -          -            -     60      -"


def test_cache_family_filter(phase3):
    net, hub, s1, s2 = phase3
    assert len(show.cache_json(snap_of(hub), family=4)) == 3
    assert show.cache_json(snap_of(hub), family=6) == []
    assert show.cache_table(snap_of(hub), family=6) == \
        "Iface Type Protocol NBMA Claimed NBMA Flags Expires Identity"


# -- show ip nhrp nhs ---------------------------------------------------------------------------

def test_spoke_nhs_json_and_table(phase3):
    net, hub, s1, s2 = phase3
    snap = snap_of(s1)
    assert show.nhs_json(snap) == [{"interface": "tun0", "fqdn": "192.0.2.1",
                                    "nbma": "192.0.2.1", "protocol": "10.0.0.1",
                                    "state": "up", "priority": 0, "expires": HOLD_LEFT,
                                    "lastError": None}]
    assert list(show.nhs_json(snap)[0])[:4] == FRR_NHS_KEYS
    assert show.nhs_table(snap).splitlines() == [
        "Iface FQDN      NBMA      Protocol State Expires",
        "tun0  192.0.2.1 192.0.2.1 10.0.0.1 up    290",
    ]


def test_hub_has_no_nhs(phase3):
    net, hub, s1, s2 = phase3
    assert show.nhs_json(snap_of(hub)) == []
    assert show.nhs_table(snap_of(hub)) == "Iface FQDN NBMA Protocol State Expires"


def test_nhs_states_and_dynamic_protocol():
    net = Net()
    hub = net.add("192.0.2.1", tunnel_ip=A("10.0.0.1"), prefix_len=24)
    spoke = net.add("192.0.2.11", tunnel_ip=A("10.0.0.11"), prefix_len=24, nhs=(
        NhsParams(A("192.0.2.1"), A("10.0.0.1"), priority=1),
        NhsParams(A("192.0.2.2")),                     # "nhs dynamic", no such hub
    ))
    assert [(r["protocol"], r["state"], r["expires"]) for r in show.nhs_json(snap_of(spoke))] \
        == [("10.0.0.1", "down", None), ("(unspec)", "down", None)]
    net.tick()
    rows = show.nhs_json(snap_of(spoke))
    assert [(r["nbma"], r["protocol"], r["state"], r["priority"]) for r in rows] == [
        ("192.0.2.1", "10.0.0.1", "up", 1), ("192.0.2.2", "(unspec)", "registering", 0)]
    assert show.nhs_table(snap_of(spoke)).splitlines() == [
        "Iface FQDN      NBMA      Protocol State       Expires",
        "tun0  192.0.2.1 192.0.2.1 10.0.0.1 up          7200",
        "tun0  192.0.2.2 192.0.2.2 (unspec) registering -",
    ]
    assert show.nhs_json(snap_of(spoke), family=6)[0]["protocol"] == "(unspec)"
    assert hub.cache.get(A("10.0.0.11")) is not None


# -- show ip nhrp shortcut ----------------------------------------------------------------------

def test_spoke_shortcut_json_and_table(phase3):
    net, hub, s1, s2 = phase3
    snap = snap_of(s1)
    rows = show.shortcut_json(snap)
    assert rows == [{"type": "dynamic", "prefix": "192.168.2.0/24", "via": "10.0.0.12",
                     "identity": "", "expires": HOLD_LEFT}]
    assert list(rows[0])[:4] == FRR_SHORTCUT_KEYS
    assert show.shortcut_table(snap).splitlines() == [
        "Type    Prefix         Via       Expires Identity",
        "dynamic 192.168.2.0/24 10.0.0.12 290     -",
    ]


def test_no_shortcuts_is_an_empty_list_and_a_header(phase3):
    net, hub, s1, s2 = phase3
    for node in (hub, s2):
        assert show.shortcut_json(snap_of(node)) == []
        assert show.shortcut_table(snap_of(node)) == "Type Prefix Via Expires Identity"


def test_pending_and_negative_resolutions_show_as_frr_does():
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    s1.resolve(A("192.168.2.20"), A("192.0.2.1"))   # not delivered
    rows = show.shortcut_json(snap_of(s1))
    assert rows == [{"type": "incomplete", "prefix": "192.168.2.20/32", "identity": "",
                     "expires": None}]
    assert "via" not in rows[0]                      # FRR leaves it out without a next hop
    net.deliver()
    s1.resolve(A("172.16.0.1"), A("192.0.2.1"))
    net.deliver()
    assert [(r["type"], r["prefix"]) for r in show.shortcut_json(snap_of(s1))] == [
        ("negative", "172.16.0.1/32"), ("dynamic", "192.168.2.0/24")]
    assert show.shortcut_table(snap_of(s1)).splitlines() == [
        "Type     Prefix         Via       Expires Identity",
        "negative 172.16.0.1/32  -         60      -",
        "dynamic  192.168.2.0/24 10.0.0.12 300     -",
    ]


def test_shortcut_expiry_counts_down_from_the_snapshot_clock(phase3):
    net, hub, s1, s2 = phase3
    net.tick(100.5)
    assert show.shortcut_json(snap_of(s1))[0]["expires"] == 189
    snap = snap_of(s1)
    snap["now"] = 5000.0                               # long past: never negative
    assert show.shortcut_json(snap)[0]["expires"] == 0
    assert show.remaining(None, 1.0) is None and show.remaining(10.9, 1.0) == 9


# -- show dmvpn ---------------------------------------------------------------------------------

def test_hub_dmvpn(phase3):
    net, hub, s1, s2 = phase3
    snap = snap_of(hub)
    rows = show.dmvpn_json(snap)
    assert rows == [
        {"src": "192.0.2.1", "dst": "192.0.2.11", "notifierActive": True, "sas": 0,
         "identity": ""},
        {"src": "192.0.2.1", "dst": "192.0.2.12", "notifierActive": True, "sas": 0,
         "identity": ""},
    ]
    assert all(list(r) == FRR_DMVPN_KEYS for r in rows)
    assert show.dmvpn_table(snap).splitlines() == [
        "Src       Dst        Flags SAs Identity",
        "192.0.2.1 192.0.2.11 n     0   -",
        "192.0.2.1 192.0.2.12 n     0   -",
    ]


def test_spoke_dmvpn_lists_the_hub_and_the_shortcut_peer(phase3):
    net, hub, s1, s2 = phase3
    assert show.dmvpn_table(snap_of(s1)).splitlines() == [
        "Src        Dst        Flags SAs Identity",
        "192.0.2.11 192.0.2.1  n     0   -",
        "192.0.2.11 192.0.2.12 n     0   -",
    ]
    assert [r["dst"] for r in show.dmvpn_json(snap_of(s2))] == ["192.0.2.1", "192.0.2.11"]


# -- empty state, envelope, width -------------------------------------------------------------

def test_empty_node_gives_empty_lists_and_header_only_tables():
    net = Net()
    lone = net.add("192.0.2.1", tunnel_ip=A("10.0.0.1"), prefix_len=24)
    snap = snap_of(lone)
    assert show.cache_json(snap) == [local_row("10.0.0.1", "192.0.2.1")]   # always: local
    assert show.cache_json(snap, family=6) == []
    assert show.nhs_json(snap) == [] and show.shortcut_json(snap) == []
    assert show.dmvpn_json(snap) == []
    assert show.nhs_table(snap) == "Iface FQDN NBMA Protocol State Expires"
    assert show.shortcut_table(snap) == "Type Prefix Via Expires Identity"
    assert show.dmvpn_table(snap) == "Src Dst Flags SAs Identity"
    assert show.cache_table(snap, family=6) == \
        "Iface Type Protocol NBMA Claimed NBMA Flags Expires Identity"


def test_frr_envelope():
    assert show.frr_envelope([]) == {"attr": {"entriesCount": 0}, "table": []}
    net, (hub, s1, s2) = hub_and_spokes()
    net.tick()
    rows = show.cache_json(snap_of(hub))
    assert show.frr_envelope(rows) == {"attr": {"entriesCount": 3}, "table": rows}


def test_tables_fit_80_columns_and_split_evenly(phase3):
    net, hub, s1, s2 = phase3
    for node in (hub, s1, s2):
        snap = snap_of(node)
        for name in ("cache", "nhs", "shortcut", "dmvpn"):
            lines = getattr(show, f"{name}_table")(snap).splitlines()
            assert all(len(line) <= 80 for line in lines), (name, lines)
            fields = len(lines[0].replace("Claimed NBMA", "Claimed-NBMA").split())
            assert all(len(line.split()) == fields for line in lines[1:]), (name, lines)


def test_a_refreshing_shortcut_stays_one_entry(phase3):
    net, hub, s1, s2 = phase3
    s1.resolve(A("192.168.2.20"), A("192.0.2.1"))   # the refresh
    assert snap_of(s1)["resolving"][0]["dst"] == "192.168.2.20"
    assert [r["type"] for r in show.shortcut_json(snap_of(s1))] == ["dynamic"]
    net.deliver()
    assert show.shortcut_json(snap_of(s1))[0]["expires"] == 300


def test_show_words_cisco_style():
    """`xdmvpn show [ip|ipv6] [nhrp] WHAT`: Cisco's show ip nhrp / show ipv6 nhrp."""
    from xdmvpn.cli.show_cmd import parse_words
    assert parse_words(["cache"]) == (None, "cache")
    assert parse_words(["ip", "nhrp", "cache"]) == (4, "cache")
    assert parse_words(["ipv6", "nhrp", "shortcut"]) == (6, "shortcut")
    assert parse_words(["ipv6", "nhs"]) == (6, "nhs")
    assert parse_words(["nhrp", "dmvpn"]) == (None, "dmvpn")
    for bad in (["ipv7", "cache"], ["ipv6"], ["cache", "nhs"], ["ipv6", "stats"]):
        with pytest.raises(ValueError):
            parse_words(bad)


def test_show_ipv6_exits_2_with_one_line_on_bad_words():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "xdmvpn", "show", "ipv6", "nhrp", "cachee"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("xdmvpn show: error: show what?")
