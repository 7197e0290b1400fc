"""The data plane's side of IPsec, in the real kernel: a peer that must use IPsec never
gets or delivers plaintext GRE through us.

- XDP drops plaintext GRE (data and NHRP) from such a peer before decap, hairpin or NHRP;
- encap to it never redirects: without a CHILD_SA it drops, with one it hands the packet
  to the stack, which forwards it through the xfrm output policy;
- the hub's hairpin toward it leaves XDP for the kernel path (decap, forward, encap, xfrm);
- multicast copies for it take the same xfrm path;
- at the underlay's egress, plaintext GRE to it is dropped whatever produced it.

This kernel has XFRM but no esp4, so no ESP SA can be installed and charon cannot install
its policies (it installs them with the SA). The out policy a CHILD_SA would bring is
installed here by hand, the one stand-in in these tests: with it, the kernel's xfrm takes
the packets (counted as XfrmOutNoStates, since there is no SA) and none reaches the wire.
The encrypted path itself runs on the Vagrant boxes (tests/ipsec/test_esp.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from ipaddress import IPv4Address

import pytest

from conftest import require_root
from test_lab import NODES, Lab
from xdmvpn import netns
from xdmvpn.netns import in_netns
from xdmvpn.dataplane.tunnel import TunnelDataplane

pytestmark = [pytest.mark.root, pytest.mark.slow]

HUB, S1, S2 = (NODES[n][0] for n in ("hub", "s1", "s2"))


class IpsecLab(Lab):
    def start(self, n):
        with in_netns(self.ns[n]):
            dp = TunnelDataplane(name="dmvpn0", underlay="ul0", local_nbma=NODES[n][0],
                                 gre_key=42, redirect=(n == "hub"), trigger_interval_ms=60000,
                                 pin_name=f"xdi-{n}-{self.tag}", ipsec=True)
            dp.start()
        self.dp[n] = dp
        return dp


@pytest.fixture(scope="module")
def lab():
    require_root()
    lab = IpsecLab()
    lab.tag = f"{os.getpid()}i"
    lab.ns = {n: f"xdi-{n}-{lab.tag}" for n in NODES}
    lab.br = f"xdi-br-{lab.tag}"
    try:
        lab.build()
        yield lab
    finally:
        lab.destroy()


@pytest.fixture(autouse=True)
def clean(lab):
    yield
    for n, dp in lab.dp.items():
        for peer in list(dp.maps.ipsec_peers()):
            dp.maps.set_ipsec_required(peer, False)
        netns.sh("ip", "xfrm", "policy", "flush", ns=lab.ns[n])


def drops(lab, n):
    return {k: v["packets"] for k, v in lab.dp[n].maps.drops().items()}


def xfrm_stat(lab, n) -> dict:
    out = netns.sh("cat", "/proc/net/xfrm_stat", ns=lab.ns[n])
    return {k: int(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}


def out_policy(lab, n, src, dst):
    """What charon installs with a transport-mode CHILD_SA for GRE (here by hand)."""
    netns.sh("ip", "xfrm", "policy", "add", "src", src, "dst", dst, "proto", "gre", "dir",
             "out", "tmpl", "src", src, "dst", dst, "proto", "esp", "mode", "transport",
             ns=lab.ns[n])


@contextlib.contextmanager
def single_node(kind: str, nbma: str):
    """A namespace of one node: underlay ul0 (a veth, its peer ul0p) with address nbma.
    Yields its name (also the pin name), removes the namespace after."""
    tag = f"xdi-{kind}-{os.getpid()}"
    netns.add(tag)
    try:
        netns.sh("ip", "link", "add", "ul0", "type", "veth", "peer", "ul0p", ns=tag)
        for dev in ("ul0", "ul0p"):
            netns.sh("ip", "link", "set", dev, "up", ns=tag)
        netns.addr(tag, "ul0", f"{nbma}/24")
        yield tag
    finally:
        netns.delete(tag)


class Wire:
    """GRE on the bridge, captured with tcpdump and counted with tshark."""

    def __init__(self, lab):
        self.lab = lab
        self.dir = tempfile.TemporaryDirectory()
        self.pcap = os.path.join(self.dir.name, "wire.pcap")

    def __enter__(self):
        self.cap = subprocess.Popen(["ip", "netns", "exec", self.lab.br, "tcpdump", "-i",
                                     "br0", "-U", "-w", self.pcap, "ip proto 47"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)
        self.cap.terminate()
        self.cap.wait(10)
        out = subprocess.run(["tshark", "-r", self.pcap, "-T", "fields", "-e", "ip.src",
                              "-e", "ip.dst", "-e", "gre.proto"],
                             capture_output=True, text=True, check=True).stdout
        # outer addresses: tshark lists the inner IPv4 header's after a comma
        self.rows = [tuple(f.split(",")[0] for f in r.split("\t"))
                     for r in out.splitlines() if r.strip()]
        self.dir.cleanup()

    def between(self, src, dst):
        return [r for r in self.rows if r[0] == src and r[1] == dst]


def test_plaintext_gre_from_an_ipsec_peer_is_dropped_before_decap_and_nhrp(lab):
    assert lab.ping("s1", "10.0.0.1", count=3) == 3               # plaintext is fine
    hub = lab.dp["hub"].maps
    hub.set_ipsec_required(S1, True, sa_up=True)
    assert hub.ipsec_peers() == {IPv4Address(S1): {"required": True, "sa_up": True}}
    d0, c0 = drops(lab, "hub"), lab.counters("hub")
    assert lab.ping("s1", "10.0.0.1", count=5) == 0
    # NHRP (GRE 0x2001) from it never reaches the controller's socket either
    with in_netns(lab.ns["s1"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
        s.sendto(b"\x20\x00\x20\x01" + (42).to_bytes(4, "big") + b"\x00" * 20, (HUB, 0))
        s.close()
    time.sleep(0.3)
    d1, c1 = drops(lab, "hub"), lab.counters("hub")
    assert d1["plaintext_ipsec"] - d0["plaintext_ipsec"] == 6
    assert c1["decap"] == c0["decap"] and c1["nhrp"] == c0["nhrp"]
    # another spoke is not affected, and the peer is accepted again once forgotten
    assert lab.ping("s2", "10.0.0.1", count=3) == 3
    hub.set_ipsec_required(S1, False)
    assert hub.ipsec_peers() == {}
    assert lab.ping("s1", "10.0.0.1", count=3) == 3


def test_encap_to_an_ipsec_peer_never_leaves_as_plaintext(lab):
    s1 = lab.dp["s1"].maps
    # no CHILD_SA yet: dropped in encap (the controller keeps the hub path meanwhile)
    s1.set_ipsec_required(HUB, True, sa_up=False)
    d0 = drops(lab, "s1")
    with Wire(lab) as w:
        assert lab.ping("s1", "10.0.0.1", count=4) == 0
    assert drops(lab, "s1")["ipsec_no_sa"] - d0["ipsec_no_sa"] == 4
    assert w.between(S1, HUB) == []

    # CHILD_SA "up" but no policy in the kernel (charon removed it, or not there yet):
    # the stack would forward plaintext, the underlay egress guard drops it
    s1.set_ipsec_required(HUB, True, sa_up=True)
    d0, c0 = drops(lab, "s1"), lab.counters("s1")
    with Wire(lab) as w:
        assert lab.ping("s1", "10.0.0.1", count=4) == 0
    assert lab.counters("s1")["encap_xfrm"] - c0["encap_xfrm"] == 4
    assert drops(lab, "s1")["plaintext_ipsec"] - d0["plaintext_ipsec"] == 4
    assert w.between(S1, HUB) == []

    # with the CHILD_SA's out policy the kernel's xfrm takes every packet
    out_policy(lab, "s1", S1, HUB)
    d0, x0 = drops(lab, "s1"), xfrm_stat(lab, "s1")
    with Wire(lab) as w:
        assert lab.ping("s1", "10.0.0.1", count=4) == 0
    assert xfrm_stat(lab, "s1")["XfrmOutNoStates"] - x0["XfrmOutNoStates"] == 4
    assert drops(lab, "s1")["plaintext_ipsec"] == d0["plaintext_ipsec"]
    assert w.between(S1, HUB) == []
    # the other spoke, not an IPsec peer, still gets plaintext GRE straight from tc; its
    # replies come back through the hub (no shortcut there), as plaintext from the hub,
    # an IPsec peer of s1: dropped
    s1.add_mapping("10.0.0.3", S2)
    d0 = drops(lab, "s1")
    try:
        with Wire(lab) as w:
            assert lab.ping("s1", "10.0.0.3", count=2) == 0
        assert len(w.between(S1, S2)) == 2 and len(w.between(HUB, S1)) == 2
        assert drops(lab, "s1")["plaintext_ipsec"] - d0["plaintext_ipsec"] == 2
    finally:
        s1.remove_mapping("10.0.0.3")


def test_hub_hairpin_toward_an_ipsec_peer_goes_through_the_kernel_and_xfrm(lab):
    hub = lab.dp["hub"].maps
    hub.set_ipsec_required(S2, True, sa_up=True)
    out_policy(lab, "hub", HUB, S2)
    c0, x0 = lab.counters("hub"), xfrm_stat(lab, "hub")
    with Wire(lab) as w:
        assert lab.ping("s1", "10.0.0.3", count=5) == 0
    c1 = lab.counters("hub")
    assert c1["hairpin_xfrm"] - c0["hairpin_xfrm"] == 5
    assert c1["hairpin"] == c0["hairpin"]
    assert c1["encap_xfrm"] - c0["encap_xfrm"] == 5                # forwarded back in
    assert xfrm_stat(lab, "hub")["XfrmOutNoStates"] - x0["XfrmOutNoStates"] == 5
    assert w.between(HUB, S2) == [] and len(w.between(S1, HUB)) == 5


def test_multicast_copies_for_an_ipsec_peer_take_the_xfrm_path(lab):
    hub = lab.dp["hub"].maps
    hub.set_ipsec_required(S2, True, sa_up=True)
    out_policy(lab, "hub", HUB, S2)
    before = {n: lab.counters(n)["decap"] for n in ("s1", "s2")}
    x0 = xfrm_stat(lab, "hub")
    with Wire(lab) as w:
        with in_netns(lab.ns["hub"]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                         socket.inet_aton("10.0.0.1"))
            for _ in range(3):
                s.sendto(b"hello spokes", ("224.0.0.9", 520))
            s.close()
    after = {n: lab.counters(n)["decap"] for n in ("s1", "s2")}
    assert {n: after[n] - before[n] for n in after} == {"s1": 3, "s2": 0}
    assert xfrm_stat(lab, "hub")["XfrmOutNoStates"] - x0["XfrmOutNoStates"] == 3
    assert len(w.between(HUB, S1)) == 3 and w.between(HUB, S2) == []


def test_without_ipsec_in_the_build_the_guard_is_not_attached(lab):
    out = netns.sh("tc", "filter", "show", "dev", "ul0", "egress", ns=lab.ns["hub"])
    assert "xdmvpn_tc_guard" in out
    with single_node("plain", "192.0.2.50") as ns:
        with in_netns(ns):
            dp = TunnelDataplane(name="dmvpn0", underlay="ul0", local_nbma="192.0.2.50",
                                 pin_name=ns)
            dp.start()
            try:
                assert "xdmvpn_tc_guard" not in dp.progs
                out = netns.sh("tc", "filter", "show", "dev", "ul0", "egress", ns=ns)
                assert "xdmvpn" not in out
            finally:
                dp.destroy()


def test_every_program_stays_small_with_ipsec_compiled_in(lab):
    info = lab.dp["hub"].program_info()
    assert {"xdmvpn_tc_guard", "xdmvpn_tc_esp_rx"} <= set(info)
    sizes = {n: i["verified_insns"] for n, i in info.items()}
    assert all(0 < v < 1000 for v in sizes.values()), str(sizes)


def test_the_esp_receive_device_or_a_one_line_error(lab):
    """With ESP in the kernel the data plane receives decrypted GRE on a collect_md GRE
    device <tunnel>-rx (ip_gre). Here there is no ip_gre: starting with it is one clear
    line, and nothing is left attached; where there is, the device is made and carries
    xdmvpn_tc_esp_rx."""
    from xdmvpn.errors import XdmvpnError
    with single_node("rx", "192.0.2.60") as ns:
        has_gre = subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", "probe0",
                                  "type", "gre", "external"], capture_output=True).returncode == 0
        if has_gre:
            netns.sh("ip", "link", "del", "probe0", ns=ns)
        with in_netns(ns):
            dp = TunnelDataplane(name="dmvpn0", underlay="ul0", local_nbma="192.0.2.60",
                                 gre_key=42, pin_name=ns, ipsec=True,
                                 esp_rx=True)
            try:
                if has_gre:
                    dp.start()
                    out = netns.sh("tc", "filter", "show", "dev", "dmvpn0-rx", "ingress", ns=ns)
                    assert "xdmvpn_tc_esp_rx" in out
                    assert "external" in netns.sh("ip", "-d", "link", "show", "dmvpn0-rx", ns=ns)
                else:
                    with pytest.raises(XdmvpnError) as err:
                        dp.start()
                    msg = str(err.value)
                    assert "\n" not in msg and "dmvpn0-rx" in msg and "ip_gre" in msg, msg
            finally:
                dp.destroy()
        assert "dmvpn0" not in netns.sh("ip", "link", "show", ns=ns)
