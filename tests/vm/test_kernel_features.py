"""What the VM tier is for, checked in the kernel that runs the tier: kernel GRE devices,
ESP, the bpf filesystem, and bcc compiling and loading our data plane there.

Marked kernel("ip_gre", "esp4"): natively on a kernel that has both, else inside the VM
(tests/vmtier.py), where the modules were loaded before pytest started."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from util import need_root
from xdmvpn import netns
from xdmvpn.lab import vm

pytestmark = [pytest.mark.root, pytest.mark.kernel("ip_gre", "esp4")]

KEY = 42


@pytest.fixture
def pair():
    """Two namespaces joined by a veth: a (192.0.2.1) and b (192.0.2.2) on eth0."""
    need_root()
    with netns.Namespaces() as spaces:
        a, b = spaces.add("a"), spaces.add("b")
        spaces.link(a, "eth0", b, "eth0", "192.0.2.1/24", "192.0.2.2/24")
        yield a, b


def ip(ns, *args) -> None:
    netns.ip(*args, ns=ns)


def ping_seen(src, dst_ns, dst, flt) -> list[str]:
    """Ping dst from src (3 packets, all answered); tcpdump's lines for the packets
    matching flt on dst_ns's eth0 meanwhile."""
    dump = netns.popen("tcpdump", "-nn", "-l", "-v", "-i", "eth0", flt, ns=dst_ns)
    time.sleep(1.0 * vm.time_scale())
    try:
        r = netns.run("ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "5", dst, ns=src,
                      check=False)
        time.sleep(0.5 * vm.time_scale())
    finally:
        dump.terminate()
        out, _ = dump.communicate(timeout=30)
    assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
    return out.splitlines()


def test_the_kernel_has_gre_and_esp():
    need_root()
    from vmtier import present
    assert present("ip_gre") and present("esp4")
    if vm.in_vm():                   # loaded by the guest's start (xdmvpn.lab.vm)
        for module in ("ip_gre", "esp4", "xfrm_user", "nfnetlink_log"):
            assert os.path.isdir(f"/sys/module/{module}"), f"{module} not loaded"


def test_a_kernel_gre_device_exchanges_packets_with_the_key(pair):
    a, b = pair
    for n, local, remote, inner in ((a, "192.0.2.1", "192.0.2.2", "10.99.0.1/30"),
                                    (b, "192.0.2.2", "192.0.2.1", "10.99.0.2/30")):
        ip(n, "tunnel", "add", "gre1", "mode", "gre", "key", str(KEY), "ttl", "64",
           "local", local, "remote", remote, "dev", "eth0")
        ip(n, "addr", "add", inner, "dev", "gre1")
        ip(n, "link", "set", "gre1", "up")
    lines = ping_seen(a, b, "10.99.0.2", "ip proto 47")
    gre = [x for x in lines if "GREv0" in x]
    assert gre, lines
    assert all(f"key=0x{KEY:x}" in x for x in gre), gre
    rx = int(netns.sh("cat", "/sys/class/net/gre1/statistics/rx_packets", ns=b))
    assert rx >= 3


def test_esp_transport_mode_carries_a_ping(pair):
    """Hand-made SAs and policies (no IKE): the kernel's own ESP, both ways."""
    a, b = pair
    key = "0x" + "11" * 20                     # rfc4106(gcm(aes)): 16-byte key + 4 salt
    for n in (a, b):
        for src, dst, spi in (("192.0.2.1", "192.0.2.2", "0x101"),
                              ("192.0.2.2", "192.0.2.1", "0x102")):
            ip(n, "xfrm", "state", "add", "src", src, "dst", dst, "proto", "esp", "spi", spi,
               "mode", "transport", "aead", "rfc4106(gcm(aes))", key, "128")
    for n, src, dst in ((a, "192.0.2.1", "192.0.2.2"), (b, "192.0.2.2", "192.0.2.1")):
        ip(n, "xfrm", "policy", "add", "src", src, "dst", dst, "dir", "out",
           "tmpl", "proto", "esp", "mode", "transport")
        ip(n, "xfrm", "policy", "add", "src", dst, "dst", src, "dir", "in",
           "tmpl", "proto", "esp", "mode", "transport")
    lines = ping_seen(a, b, "192.0.2.2", "ip proto 50 or icmp")
    esp = [x for x in lines if "ESP(spi=" in x]
    assert any("spi=0x00000101" in x for x in esp) and any("spi=0x00000102" in x
                                                             for x in esp), lines
    assert not [x for x in lines if "ICMP echo" in x], "plaintext ICMP on the wire"


def test_the_bpf_filesystem_is_mounted():
    need_root()
    out = subprocess.run(["stat", "-f", "-c", "%T", "/sys/fs/bpf"], capture_output=True,
                         text=True, timeout=10).stdout.strip()
    assert out == "bpf_fs", out


def test_bcc_compiles_and_the_kernel_verifies_the_data_plane():
    """With IPsec and an IPv6 NBMA address compiled in (the guard, the ESP receive program
    and the IPv6 programs too); the figure printed is the compile time docs/vm.md quotes."""
    need_root()
    from xdmvpn.dataplane import build
    from xdmvpn.dataplane.libbpf import prog_info
    start = time.monotonic()
    module = build.compile_bpf(build.DataplaneConfig(ipsec=True, local_nbma="192.0.2.1",
                                                     local_nbma6="2001:db8::1", gre_key=42,
                                                     redirect=True, adjust_mss=1360))
    compiled = time.monotonic() - start
    try:
        progs = build.load_programs(module, ipsec=True)
        sizes = {n: prog_info(fn.fd)["verified_insns"] for n, fn in progs.items()}
    finally:
        module.cleanup()
    print(f"bcc compile {compiled:.1f} s, load {time.monotonic() - start - compiled:.1f} s "
          f"on {os.uname().release}; verified instructions: {sizes}")
    assert {"xdmvpn_xdp_underlay", "xdmvpn_tc_encap", "xdmvpn_tc_guard",
            "xdmvpn_tc_esp_rx"} <= set(sizes)
    # the 1,000-instruction goal (docs/dataplane.md) holds on this verifier too (docs/vm.md)
    assert all(0 < v < 1000 for v in sizes.values()), sizes
