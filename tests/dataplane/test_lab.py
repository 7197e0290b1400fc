"""Namespace integration: a hub and two spokes on a bridge, mappings set
through the Python API (no NHRP yet)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import require_root
from xdmvpn import netns
from xdmvpn.dataplane import attach
from xdmvpn.dataplane.tunnel import TunnelDataplane
from xdmvpn.netns import in_netns
from xdmvpn.pinger import Pinger

KEY = 42
NODES = {  # name: (NBMA, overlay, MAC)
    "hub": ("192.0.2.1", "10.0.0.1", "02:00:00:00:00:01"),
    "s1": ("192.0.2.2", "10.0.0.2", "02:00:00:00:00:02"),
    "s2": ("192.0.2.3", "10.0.0.3", "02:00:00:00:00:03"),
}


class Lab:
    def __init__(self):
        tag = f"{os.getpid()}"
        self.ns = {n: f"xdl-{n}-{tag}" for n in NODES}
        self.br = f"xdl-br-{tag}"
        self.dp: dict[str, TunnelDataplane] = {}
        self.tag = tag

    def build(self):
        netns.add(self.br)
        netns.sh("ip", "link", "add", "br0", "type", "bridge", ns=self.br)
        netns.sh("ip", "link", "set", "br0", "up", ns=self.br)
        for n, (nbma, ovl, mac) in NODES.items():
            ns = self.ns[n]
            netns.add(ns)
            netns.veth("ul0", ns, f"p-{n}", self.br, mac_a=mac)
            netns.sh("ip", "link", "set", f"p-{n}", "master", "br0", ns=self.br)
            netns.addr(ns, "ul0", f"{nbma}/24")
            for m, (nbma2, _, mac2) in NODES.items():
                if m != n:
                    netns.neigh(ns, "ul0", nbma2, mac2)
        for n, (nbma, ovl, _) in NODES.items():
            self.start(n)
            netns.addr(self.ns[n], "dmvpn0", f"{ovl}/32")
            netns.sh("ip", "route", "add", "10.0.0.0/24", "dev", "dmvpn0", "src", ovl, ns=self.ns[n])
        # XDP_TX into a veth needs a program on the receiving end: the bridge ports.
        with in_netns(self.br):
            for n in NODES:
                attach.attach_xdp(f"p-{n}", self.dp["hub"].progs["xdmvpn_xdp_pass"])
        hub, s1, s2 = (self.dp[n].maps for n in ("hub", "s1", "s2"))
        hub.add_mapping("10.0.0.2", "192.0.2.2")
        hub.add_mapping("10.0.0.3", "192.0.2.3")
        for s in (s1, s2):
            s.add_mapping("10.0.0.1", "192.0.2.1")
            s.set_nhs(["192.0.2.1"])
            s.set_multicast(["192.0.2.1"])
        hub.set_multicast(["192.0.2.2", "192.0.2.3"])

    def start(self, n):
        nbma = NODES[n][0]
        with in_netns(self.ns[n]):
            dp = TunnelDataplane(name="dmvpn0", underlay="ul0", local_nbma=nbma, gre_key=KEY,
                                 redirect=(n == "hub"), trigger_interval_ms=60000,
                                 pin_name=f"xdl-{n}-{self.tag}")
            dp.start()
        self.dp[n] = dp
        return dp

    def destroy(self):
        for n, dp in self.dp.items():
            try:
                with in_netns(self.ns[n]):
                    dp.destroy()
            except Exception:
                attach.remove_pins(f"xdl-{n}-{self.tag}")
        netns.delete(*self.ns.values(), self.br)

    def ping(self, n, dst, count=5, interval=0.05):
        """Echo replies received of count echoes sent interval apart."""
        with Pinger(self.ns[n]) as pinger:
            return pinger.burst(dst, count, interval)

    def counters(self, n):
        return {k: v["packets"] for k, v in self.dp[n].maps.counters().items()}


def received(n: int) -> int:
    return n


@pytest.fixture(scope="module")
def lab():
    require_root()
    lab = Lab()
    try:
        lab.build()
        yield lab
    finally:
        lab.destroy()


@pytest.mark.root
@pytest.mark.slow
def test_spoke_to_spoke_through_hub_xdp_then_direct(lab):
    hub = lab.dp["hub"].maps
    hub.events()
    c0, ip0 = lab.counters("hub"), netns.snmp_ip(lab.ns["hub"])
    assert received(lab.ping("s1", "10.0.0.3", count=10)) == 10
    c1, ip1 = lab.counters("hub"), netns.snmp_ip(lab.ns["hub"])
    assert c1["hairpin"] - c0["hairpin"] == 20  # requests and replies
    assert c1["decap"] == c0["decap"]
    assert ip1["InReceives"] == ip0["InReceives"]  # the hub's stack saw nothing
    assert ip1["ForwDatagrams"] == ip0["ForwDatagrams"]
    events = hub.events(timeout_ms=200)
    assert sorted((str(e.src), str(e.dst), str(e.nbma_src)) for e in events) == [
        ("10.0.0.2", "10.0.0.3", "192.0.2.2"), ("10.0.0.3", "10.0.0.2", "192.0.2.3")]
    assert c1["trigger"] - c0["trigger"] == 2 and c1["trigger_held"] - c0["trigger_held"] == 18

    # shortcut installed on both spokes: traffic goes direct
    lab.dp["s1"].maps.add_mapping("10.0.0.3", "192.0.2.3")
    lab.dp["s2"].maps.add_mapping("10.0.0.2", "192.0.2.2")
    try:
        assert received(lab.ping("s1", "10.0.0.3", count=10)) == 10
        c2 = lab.counters("hub")
        assert c2["hairpin"] == c1["hairpin"]
        s1 = {str(m.prefix): m for m in lab.dp["s1"].maps.mappings()}["10.0.0.3/32"]
        assert s1.packets >= 10 and s1.last_used_ns > 0
    finally:
        lab.dp["s1"].maps.remove_mapping("10.0.0.3")
        lab.dp["s2"].maps.remove_mapping("10.0.0.2")


@pytest.mark.root
@pytest.mark.slow
def test_multicast_reaches_every_peer_once(lab):
    before = {n: lab.counters(n)["decap"] for n in ("s1", "s2")}
    with in_netns(lab.ns["hub"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.0.0.1"))
        s.sendto(b"hello spokes", ("224.0.0.9", 520))
        s.close()
    time.sleep(0.3)
    after = {n: lab.counters(n)["decap"] for n in ("s1", "s2")}
    assert {n: after[n] - before[n] for n in after} == {"s1": 1, "s2": 1}
    assert lab.counters("hub")["mcast"] >= 2


@pytest.mark.root
@pytest.mark.slow
def test_wire_packets_decode_in_tshark(lab):
    with tempfile.TemporaryDirectory() as d:
        pcap = os.path.join(d, "s2.pcap")
        cap = subprocess.Popen(["ip", "netns", "exec", lab.br, "tcpdump", "-i", "p-s2",
                                "-U", "-w", pcap, "-c", "4", "ip proto 47"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        lab.ping("s1", "10.0.0.3", count=2)
        try:
            cap.wait(timeout=10)
        finally:
            cap.kill()
        out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "gre.key",
                              "-e", "gre.proto", "-e", "ip.src", "-e", "ip.dst"],
                             capture_output=True, text=True, check=True).stdout.split("\n")
    rows = [r.split("\t") for r in out if r.strip()]
    assert len(rows) == 4
    for key, proto, _src, _dst in rows:
        assert int(key, 0) == KEY and int(proto, 0) == 0x0800
        assert _src.split(",")[0] == "192.0.2.1" or _dst.split(",")[0] == "192.0.2.1"


@pytest.mark.root
@pytest.mark.slow
def test_controller_restart_loses_nothing(lab):
    """Forwarding continues while the hub's controller is gone, and a new
    one adopts the pinned maps and replaces the programs atomically."""
    result = {}

    def flood():
        result["out"] = lab.ping("s1", "10.0.0.3", count=300, interval=0.01)

    t = threading.Thread(target=flood)
    t.start()
    time.sleep(0.5)
    old = lab.dp["hub"]
    old.stop()  # the controller dies: nothing detached, maps pinned
    time.sleep(0.5)
    new = lab.start("hub")  # restart: adopt
    assert {str(m.prefix) for m in new.maps.mappings()} == {"10.0.0.2/32", "10.0.0.3/32"}
    t.join(timeout=60)
    assert received(result["out"]) == 300, result["out"]


def _controller(lab) -> subprocess.Popen:
    """The hub's controller as a separate process; returns once it says ready."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "ctl"))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      "hub_controller.py"), lab.ns["hub"], f"xdl-hub-{lab.tag}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.strip() == "ready":
            return proc, lines
    proc.kill()
    raise AssertionError(f"controller never ready: {lines} {proc.stderr.read()[-2000:]}")


@pytest.mark.root
@pytest.mark.slow
def test_controller_process_killed_and_replaced_loses_nothing(lab):
    """The hub's controller is a real process: SIGKILL it while spoke-to-spoke
    traffic (100 pings/s through the hub's XDP hairpin) flows on the installed
    mappings, start a new process that adopts the pinned maps and replaces the
    programs, and not one packet is lost."""
    before = lab.counters("hub")
    lab.dp["hub"].stop()  # the in-process controller hands over
    first, lines = _controller(lab)
    second = None
    count, result = 800, {}
    try:
        assert lines[0] == "adopted 10.0.0.2/32=192.0.2.2,10.0.0.3/32=192.0.2.3"

        def flood():
            result["out"] = lab.ping("s1", "10.0.0.3", count=count, interval=0.01)

        t = threading.Thread(target=flood)
        t.start()
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        time.sleep(0.5)  # nobody controls the hub now; forwarding goes on
        second, lines = _controller(lab)  # compiles, adopts, replaces while traffic flows
        assert lines[0] == "adopted 10.0.0.2/32=192.0.2.2,10.0.0.3/32=192.0.2.3"
        assert t.is_alive(), "traffic ended before the new controller took over"
        t.join(timeout=60)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=10)
        lab.start("hub")  # back to an in-process controller for the other tests
    assert result["out"] == count  # zero loss
    after = lab.counters("hub")  # pinned counters survived both processes
    assert after["hairpin"] - before["hairpin"] >= 2 * count  # the hub's XDP carried them
    assert after["decap"] == before["decap"]


@pytest.mark.root
@pytest.mark.slow
def test_encap_follows_a_kernel_route_via_a_mapped_peer(lab):
    """A route on the overlay via a tunnel peer that is in no host or prefix entry (the
    controller has not mirrored it yet, or leaves it to the kernel) goes to the gateway's
    NBMA address, as a kernel mGRE device would send it, not to the NHS."""
    s1 = lab.dp["s1"].maps
    s1.add_mapping("10.0.0.3", "192.0.2.3")
    netns.sh("ip", "route", "add", "10.9.0.0/24", "via", "10.0.0.3", "dev", "dmvpn0",
             ns=lab.ns["s1"])
    try:
        c0 = lab.counters("s1")
        d0 = lab.counters("s2")["decap"]
        lab.ping("s1", "10.9.0.1", count=3)          # s2 has no such address: no reply
        c1 = lab.counters("s1")
        assert c1["encap_route"] - c0["encap_route"] == 3
        assert c1["encap_nhs"] == c0["encap_nhs"]
        assert lab.counters("s2")["decap"] - d0 == 3
    finally:
        netns.sh("ip", "route", "del", "10.9.0.0/24", ns=lab.ns["s1"])
        s1.remove_mapping("10.0.0.3")
