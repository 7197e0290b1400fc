"""The DMVPN phase-3 story between two spokes of a Mixed topology, checked on both
implementations' own views and on the wire (test helper):

1. a LAN host behind spoke a pings one behind spoke b: the first packets go through the
   hub (its relay counter grows), the hub sends traffic indications, each spoke resolves
   the other's LAN, and both get a shortcut (FRR: `show ip nhrp shortcut`; xdmvpn: its
   snapshot, installed);
2. then direct: more pings, the hub relays none of them, and tshark sees the spokes' GRE
   between their NBMA addresses both ways, with the tunnel's key.

The capture is decoded once per story (tshark takes seconds under emulation)."""

from __future__ import annotations

import time

import wire
from mixed import Mixed
from topo import KEY


def ping_ok(t: Mixed, src: str, dst: str, count: int = 5, interval: float = 0.2,
            **kw) -> None:
    r = t.ping(src, t.lan_host(dst), count=count, interval=interval, **kw)
    assert " 0% packet loss" in r.stdout, (src, dst, r.stdout, r.stderr)


def via_hub_then_shortcut(t: Mixed, a: str, b: str, hub: str) -> float:
    """Step 1; returns when it started (for the capture)."""
    t0 = time.time()
    relayed = t.forwarded(hub)
    ping_ok(t, a, b, count=8, interval=0.5)
    assert t.forwarded(hub) > relayed, f"the first packets {a} -> {b} did not go via {hub}"
    t.wait_for(lambda: t.shortcut_to(a, b) and t.shortcut_to(b, a), 30,
               message=f"shortcuts {a} <-> {b}")
    return t0


def nhrp_exchange(t: Mixed, a: str, b: str, hub: str,
                  seen: list[wire.Nhrp]) -> dict[str, list]:
    """Of the NHRP packets seen: the hub's traffic indications to a and b, and the
    resolution requests of a and b and the replies to them (a reply carries the
    requester's address as its source protocol address, RFC 2332 5.2.2)."""
    wire.assert_sound(seen, KEY)
    nb = {n: t.nbma(n) for n in (a, b, hub)}
    ours = (t.tunnel_ip(a), t.tunnel_ip(b))
    return {
        "indications": [p for p in seen if p.type == wire.TRAFFIC_INDICATION
                        and p.src == nb[hub] and p.dst in (nb[a], nb[b])],
        "requests": [p for p in seen if p.type == wire.RESOLUTION_REQUEST
                     and p.src_proto in ours],
        "replies": [p for p in seen if p.type == wire.RESOLUTION_REPLY
                    and p.src_proto in ours],
    }


def direct_pings(t: Mixed, a: str, b: str, hub: str, count: int = 20) -> float:
    """Step 2: pings after the shortcut, none relayed by the hub; returns when they
    started (the capture is read once, afterwards: check_direct)."""
    relayed = t.forwarded(hub)
    t1 = time.time()
    ping_ok(t, a, b, count=count, interval=0.05)
    t.settle(0.5)
    assert t.forwarded(hub) == relayed, f"{hub} still relayed {a} <-> {b}"
    return t1


def check_direct(t: Mixed, a: str, b: str, data: list[wire.Data], since: float) -> None:
    """The LAN hosts' packets since `since` went straight between the spokes' NBMA
    addresses, both ways, with the tunnel's key."""
    lan = {t.lan_host(a), t.lan_host(b)}
    seen = [d for d in data if d.time >= since and {d.inner_src, d.inner_dst} == lan]
    pair = {t.nbma(a), t.nbma(b)}
    assert seen and all({d.src, d.dst} == pair for d in seen), \
        [(d.src, d.dst) for d in seen if {d.src, d.dst} != pair][:5]
    ways = {(d.src, d.dst) for d in seen}
    assert ways == {(t.nbma(a), t.nbma(b)), (t.nbma(b), t.nbma(a))}, ways
    assert {d.key for d in seen} == {KEY}


def the_story(t: Mixed, a: str, b: str, hub: str) -> dict[str, list]:
    since = via_hub_then_shortcut(t, a, b, hub)
    t1 = direct_pings(t, a, b, hub)
    seen, data = wire.read(t.pcap, since)
    check_direct(t, a, b, data, t1)
    got = nhrp_exchange(t, a, b, hub, seen)
    assert {p.dst for p in got["indications"]} >= {t.nbma(a)}, got["indications"]
    assert {p.src_proto for p in got["requests"]} == {t.tunnel_ip(a), t.tunnel_ip(b)}, \
        got["requests"]
    assert {p.src_proto for p in got["replies"]} == {t.tunnel_ip(a), t.tunnel_ip(b)}, \
        got["replies"]
    assert all(c == 0 for p in got["replies"] for c in p.codes), got["replies"]
    return got
