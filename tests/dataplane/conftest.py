"""Shared set-up for the data-plane tests.

These tests need root, BPF and network namespaces.  They never skip: without
root they fail with a message saying so (CI runs them as root).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ctl"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from xdmvpn import netns  # noqa: E402
from xdmvpn.dataplane import build  # noqa: E402
from xdmvpn.dataplane.maps import DataplaneMaps  # noqa: E402
from xdmvpn.netns import in_netns  # noqa: E402
from xdmvpn_bench.testrun import run  # noqa: E402

UL_MAC = "02:00:00:00:01:01"
PEER2_MAC = "02:00:00:00:02:02"
PEER3_MAC = "02:00:00:00:03:03"
OVL_MAC = "02:00:00:00:0a:01"
DP_MAC = "02:00:00:00:0a:02"
LOCAL = "192.0.2.1"
LOCAL6 = "2001:db8::1"


def pytest_collection_modifyitems(items):
    """Every test here needs root: marked so that `-m "not root"` leaves them out."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.root)


def require_root():
    if os.geteuid() != 0:
        pytest.fail("data-plane tests need root (BPF, XDP, netns): run them as root", pytrace=False)


class Harness:
    """Programs compiled for the fixture namespace, run through BPF test-run."""

    def __init__(self, ns: str, **cfg):
        self.ns = ns
        self.config = build.DataplaneConfig(**{
            "local_nbma": LOCAL, "underlay_ifindex": netns.ifindex(ns, "ul0"),
            "overlay_ifindex": netns.ifindex(ns, "dmvpn0-dp"), "overlay_mac": OVL_MAC,
            "overlay_dp_mac": DP_MAC, **cfg})
        self.module = build.compile_bpf(self.config)
        self.progs = build.load_programs(self.module, ipsec=self.config.ipsec)
        self.maps = DataplaneMaps(self.module)

    def run(self, prog: str, packet: bytes, ctx=None):
        self.maps.reset_counters()
        # One CPU for every run: the next-hop cache and the counters are per CPU,
        # so "filled once, then cached" must not depend on where the test runs.
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(saved)})
        try:
            with in_netns(self.ns):
                res = run(self.progs[prog].fd, packet, ctx=ctx)
        finally:
            os.sched_setaffinity(0, saved)
        counters = {k: v["packets"] for k, v in self.maps.counters().items() if v["packets"]}
        counters.update({f"drop_{k}": v["packets"] for k, v in self.maps.drops().items()
                         if v["packets"]})
        return res, counters

    def close(self):
        self.module.cleanup()


def check_row(h: Harness, prog: str, pkt: bytes, verdict: int, expected, counters: dict
              ) -> None:
    """One row of a program table: fresh rate limit, next hops and events, then the
    verdict, the output (None: not compared; "same": untouched) and the counters."""
    h.maps.events()  # drain
    h.module[b"xdmvpn_ratelimit"].clear()
    h.maps.flush_nexthops()
    res, got = h.run(prog, pkt)
    assert res.retval == verdict
    if expected == "same":
        assert res.data == pkt
    elif expected is not None:
        assert res.data.hex() == expected.hex()
    assert got == counters


@pytest.fixture(scope="session")
def fx_ns():
    """A namespace with an underlay ul0 (192.0.2.1/24, 2001:db8::1/64), two static
    neighbours of each family (.2, .3; ::2, ::3) and an overlay pair dmvpn0/dmvpn0-dp."""
    require_root()
    name = f"xdt-fx-{os.getpid()}"
    netns.add(name)
    try:
        netns.veth("ul0", name, "ulp", name, mac_a=UL_MAC)
        netns.addr(name, "ul0", f"{LOCAL}/24")
        netns.neigh(name, "ul0", "192.0.2.2", PEER2_MAC)
        netns.neigh(name, "ul0", "192.0.2.3", PEER3_MAC)
        netns.sysctl(name, "net.ipv4.conf.ul0.forwarding=1", "net.ipv6.conf.ul0.forwarding=1")
        netns.ip("addr", "add", f"{LOCAL6}/64", "dev", "ul0", "nodad", ns=name)
        netns.neigh(name, "ul0", "2001:db8::2", PEER2_MAC)
        netns.neigh(name, "ul0", "2001:db8::3", PEER3_MAC)
        netns.veth("dmvpn0", name, "dmvpn0-dp", name, mac_a=OVL_MAC, mac_b=DP_MAC)
        yield name
    finally:
        netns.delete(name)
