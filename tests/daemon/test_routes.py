"""Kernel routes as the daemon uses them (xdmvpn.daemon.routes), in a network namespace with
real routes and rules: the kernel answers the engine's route question (ip rules included),
route writes go through the worker in batches while the loop keeps running, and the
followed table learns every change from notifications, dumping again only after lost ones.

Each check runs in a Python child inside the namespace (the sockets belong to it), which
prints one JSON line. The VRF check needs CONFIG_NET_VRF, which this host's kernel lacks:
it says so and runs where the kernel has it (test_vrf_changes_the_answer)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from util import need_root
from xdmvpn.netns import Namespaces, ip, run

pytestmark = pytest.mark.root

PRELUDE = """
import asyncio, json, subprocess, sys, time
from collections import Counter
from ipaddress import IPv4Address as A, IPv4Network as N
from xdmvpn.daemon import routes as R
def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)
async def synced(kr):
    while not kr.synced:
        await asyncio.sleep(0.001)
async def following(stats, changes=None):
    # KernelRoutes on ov0, its table loaded; each on_change appends the routes via peers
    kr = R.KernelRoutes("ov0", stats)
    if changes is not None:
        kr.on_change = lambda: changes.append(sorted(str(n) for n in kr.table.via))
    kr.follow(asyncio.get_running_loop())
    await synced(kr)
    return kr
"""


@pytest.fixture
def ns():
    """One namespace (its name): overlay ov0 (172.16.0.1/24, a veth whose peer stays in the
    namespace), a LAN lan0 (10.1.0.1/16) with the default route, routes via tunnel peers."""
    need_root()
    with Namespaces() as spaces:
        name = spaces.add("rt")
        for a, b in (("ov0", "ov1"), ("lan0", "lan1")):
            ip("link", "add", a, "type", "veth", "peer", "name", b, ns=name)
            ip("link", "set", a, "up", ns=name)
            ip("link", "set", b, "up", ns=name)
        ip("addr", "add", "172.16.0.1/24", "dev", "ov0", ns=name)
        ip("addr", "add", "10.1.0.1/16", "dev", "lan0", ns=name)
        for route in ("default via 10.1.0.254",
                      "10.9.0.0/16 via 172.16.0.12 dev ov0",
                      "10.30.0.0/16 via 172.16.0.14 dev ov0",
                      "10.7.0.0/16 nexthop via 172.16.0.12 dev ov0 nexthop via 172.16.0.13 "
                      "dev ov0",
                      "unreachable 10.8.0.0/16"):
            ip("route", "add", *route.split(), ns=name)
        yield name


def child(ns: str, code: str, timeout: float = 120) -> dict:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                          PRELUDE + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


LOOKUP = """
kr = R.KernelRoutes("ov0")
def hint(d):
    h = kr.lookup(A(d))
    return [h.local, h.prefix_len, str(h.via) if h.via else None]
out = {d: hint(d) for d in sys.argv[2:]}
n = int(sys.argv[1])                      # lookups timed
t = time.perf_counter()
for _ in range(n):
    kr.lookup(A("10.9.1.1"))
out["us"] = (time.perf_counter() - t) / max(n, 1) * 1e6
print(json.dumps(out))
"""


def lookups(ns: str, *dsts, timed: int = 20000) -> dict:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                          PRELUDE + LOOKUP, str(timed), *dsts], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_kernel_answers_the_route_question_and_ip_rules_change_it(ns):
    dsts = ("172.16.0.1", "172.16.0.7", "10.9.1.1", "10.1.2.3", "10.30.1.1", "8.8.8.8",
            "10.8.0.1", "10.7.0.1")
    before = lookups(ns, *dsts)
    assert before["172.16.0.1"] == [True, 32, None]          # our own address
    assert before["172.16.0.7"] == [False, 24, "172.16.0.7"]  # on the overlay's prefix
    assert before["10.9.1.1"] == [False, 16, "172.16.0.12"]   # via a tunnel peer
    assert before["10.1.2.3"] == [True, 16, None]            # behind us, off the tunnel
    assert before["10.30.1.1"] == [False, 16, "172.16.0.14"]
    assert before["8.8.8.8"] == [False, 32, None]            # a default route claims nothing
    assert before["10.8.0.1"] == [False, 32, None]           # unreachable
    assert before["10.7.0.1"][:2] == [False, 16]             # multipath: the kernel's pick
    assert before["10.7.0.1"][2] in ("172.16.0.12", "172.16.0.13")
    # policy routing: the main table no longer decides for these destinations
    ip("route", "add", "10.9.0.0/16", "via", "172.16.0.13", "dev", "ov0",
       "table", "100", ns=ns)
    ip("rule", "add", "to", "10.9.0.0/16", "lookup", "100", "pref", "100", ns=ns)
    ip("route", "add", "10.30.0.0/16", "dev", "lan0", "table", "101", ns=ns)
    ip("rule", "add", "to", "10.30.0.0/16", "lookup", "101", "pref", "101", ns=ns)
    after = lookups(ns, *dsts)
    assert after["10.9.1.1"] == [False, 16, "172.16.0.13"]
    assert after["10.30.1.1"] == [True, 16, None]
    assert {d: after[d] for d in dsts if d not in ("10.9.1.1", "10.30.1.1", "10.7.0.1")} == \
        {d: before[d] for d in dsts if d not in ("10.9.1.1", "10.30.1.1", "10.7.0.1")}
    print(f"route lookup: {before['us']:.1f} / {after['us']:.1f} us (main only / with rules)")


BURST = """
async def main():
    stats, changes = Counter(), []
    kr = await following(stats, changes)
    loop = asyncio.get_running_loop()
    late, running = [], True
    async def ticker():                   # how late the loop runs a 1 ms timer
        while running:
            t = loop.time()
            await asyncio.sleep(0.001)
            late.append(loop.time() - t - 0.001)
    tick = loop.create_task(ticker())
    await asyncio.sleep(0.01)
    t0 = loop.time()
    for i in range(1000):                 # a burst of shortcut routes
        kr.add(N(f"10.100.{i // 250}.{i % 250}/32"), A("172.16.0.12"))
    for i in range(100):                  # added and removed at once: must end removed
        kr.add(N(f"10.101.0.{i}/32"), A("172.16.0.12"))
        kr.delete(N(f"10.101.0.{i}/32"))
    kr.add(N("10.102.0.0/24"), A("172.16.0.12"))     # removed in a later callback
    await asyncio.sleep(0)
    kr.delete(N("10.102.0.0/24"))
    queued = loop.time() - t0
    while any(kr.writer.busy(n) for n in (N("10.100.3.249/32"), N("10.102.0.0/24"))):
        await asyncio.sleep(0.001)
    written = loop.time() - t0
    while len(kr.table.ours) < 1000:      # the notifications of our own routes
        await asyncio.sleep(0.001)
    ip("route", "add", "10.50.0.0/16", "via", "172.16.0.12", "dev", "ov0")   # someone else's
    ip("route", "add", "10.51.0.0/16", "dev", "lan0")
    while N("10.50.0.0/16") not in kr.table.via:
        await asyncio.sleep(0.001)
    ip("route", "del", "10.50.0.0/16")
    while N("10.50.0.0/16") in kr.table.via:
        await asyncio.sleep(0.001)
    running = False
    await tick
    print(json.dumps({
        "stats": dict(stats), "queued": queued, "written": written, "late_max": max(late),
        "ticks": len(late), "ours": len(kr.table.ours), "via": sorted(map(str, kr.table.via)),
        "elsewhere": str(kr.table.covers_elsewhere(N("10.50.0.0/15"))),
        "changes": changes}))
asyncio.run(main())
"""


def test_a_burst_of_route_writes_is_batched_in_the_worker_and_followed_without_dumps(ns):
    out = child(ns, BURST)
    st = out["stats"]
    kernel = ip("route", "show", "proto", "202", ns=ns).splitlines()
    assert len(kernel) == 1000
    assert not [r for r in kernel if r.startswith(("10.101.", "10.102."))]
    # 10.101/24: added and deleted in one batch, only the delete is sent; 10.102.0.0/24:
    # added in the first batch, deleted in the next one
    assert st["route_added"] == 1001 and st.get("route_failed", 0) == 0
    assert st["route_deleted"] == 101
    assert st["route_batches"] == 2             # one callback's worth per batch
    assert out["ours"] == 1000                  # learnt from notifications
    assert st["route_dumps"] == 1 and st.get("route_notifications_lost", 0) == 0
    assert st["route_notifications"] >= 1000 + 2
    assert out["via"] == ["10.30.0.0/16", "10.9.0.0/16"]
    assert out["elsewhere"] == "10.51.0.0/16"
    # our own routes never woke the mirror: only the start, then 10.50 and 10.51 coming
    # (one call when both are read at once) and 10.50 going
    assert 3 <= len(out["changes"]) <= 4
    assert "10.50.0.0/16" in out["changes"][1] and "10.50.0.0/16" not in out["changes"][-1]
    print(f"1000 routes: queued in {out['queued'] * 1e3:.1f} ms, written in "
          f"{out['written'] * 1e3:.0f} ms, {st['route_batches']} batches; the loop's 1 ms "
          f"timer at most {out['late_max'] * 1e3:.1f} ms late over {out['ticks']} ticks")


LOST = """
R.MONITOR_RCVBUF = 1024                   # the kernel's minimum: notifications get lost
async def main():
    stats = Counter()
    kr = await following(stats)
    batch = "".join(f"route add 10.200.{i // 250}.{i % 250}/32 via 172.16.0.13 dev ov0\\n"
                    for i in range(500))
    subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)  # loop blocked
    await asyncio.sleep(0.05)
    await synced(kr)
    print(json.dumps({"stats": dict(stats), "via": len(kr.table.via)}))
asyncio.run(main())
"""


def test_lost_notifications_cost_one_dump_and_nothing_is_missed(ns):
    out = child(ns, LOST)
    st = out["stats"]
    assert st["route_notifications_lost"] >= 1
    assert st["route_dumps"] >= 2 and st["route_resync.enobufs"] >= 1
    assert out["via"] == 500 + 2                # 10.9/16, 10.30/16 and the 500 new ones


def test_routes_flushed_by_a_link_going_down_are_dropped_from_the_table(ns):
    out = child(ns, """
    async def main():
        stats = Counter()
        kr = await following(stats)
        before = len(kr.table.via)
        ip("link", "set", "ov0", "down")        # IPv4 removes its routes without a word
        await asyncio.sleep(0.05)
        await synced(kr)
        print(json.dumps({"before": before, "after": len(kr.table.via),
                          "stats": dict(stats)}))
    asyncio.run(main())
    """)
    assert (out["before"], out["after"]) == (2, 0)
    assert out["stats"]["route_resync.link_down"] >= 1


VRF_FOLLOW = """
async def main():
    stats = Counter()
    kr = await following(stats)
    before = (kr.context.table, sorted(map(str, kr.table.via)))
    ip("link", "set", "ov0", "master", "blue")
    ip("link", "set", "ov0", "up")
    ip("route", "add", "10.60.0.0/16", "via", "172.16.0.15", "dev", "ov0", "vrf", "blue")
    while N("10.60.0.0/16") not in kr.table.via:
        await asyncio.sleep(0.01)
    kr.add(N("10.61.0.0/16"), A("172.16.0.15"))          # our route goes in the VRF's table
    while N("10.61.0.0/16") not in kr.table.ours:
        await asyncio.sleep(0.01)
    print(json.dumps({"before": before, "after": (kr.context.table,
                      sorted(map(str, kr.table.via))), "stats": dict(stats)}))
asyncio.run(main())
"""


def test_vrf_changes_the_answer(ns):
    """With the overlay enslaved to a VRF, the kernel answers from the VRF's table, and the
    followed table and our routes move there. Needs VRF devices (CONFIG_NET_VRF), which
    this host's kernel lacks; Debian's stock kernel has them: run it there, e.g. in a VM
    `vng --run /boot/vmlinuz-VERSION --exec 'modprobe vrf; pytest tests/daemon/test_routes.py
    -k vrf'` (passed there, 6.1.0-56-amd64)."""
    probe = run("ip", "-n", ns, "link", "add", "blue", "type", "vrf", "table", "10",
                check=False)
    if probe.returncode != 0:
        pytest.skip("this kernel has no VRF devices (CONFIG_NET_VRF), a stock kernel has: "
                    f"{probe.stderr.strip()}")
    ip("link", "set", "blue", "up", ns=ns)
    followed = child(ns, VRF_FOLLOW, timeout=600)
    assert followed["before"] == [254, ["10.30.0.0/16", "10.9.0.0/16"]]
    assert followed["after"] == [10, ["10.60.0.0/16"]]
    assert followed["stats"]["route_resync.vrf"] >= 1
    assert "10.61.0.0/16" in ip("route", "show", "vrf", "blue", ns=ns)
    ip("link", "set", "ov0", "nomaster", ns=ns)
    ip("link", "set", "ov0", "up", ns=ns)
    for route in ("10.9.0.0/16 via 172.16.0.12 dev ov0", "10.30.0.0/16 via 172.16.0.14 dev ov0"):
        ip("route", "replace", *route.split(), ns=ns)
    before = lookups(ns, "10.9.1.1", "10.60.0.1", timed=0)
    ip("link", "set", "ov0", "master", "blue", ns=ns)
    ip("link", "set", "ov0", "up", ns=ns)
    ip("route", "add", "10.60.0.0/16", "via", "172.16.0.15", "dev", "ov0",
       "vrf", "blue", ns=ns)
    after = lookups(ns, "10.9.1.1", "10.60.0.1", timed=0)
    assert before["10.9.1.1"] == [False, 16, "172.16.0.12"]
    assert before["10.60.0.1"] == [False, 32, None]           # the default route, off-tunnel
    assert after["10.60.0.1"] == [False, 16, "172.16.0.15"]   # the VRF's table
    assert after["10.9.1.1"] == [False, 32, None]             # main's routes do not apply
