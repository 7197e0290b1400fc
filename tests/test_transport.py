"""NHRP over the raw GRE socket between two namespaces; tshark decodes what we send."""

import json
import subprocess
import sys

import pytest

from nhrp_samples import samples
from tshark_oracle import tshark_nhrp
from util import need_root
from xdmvpn import netns
from xdmvpn.nhrp import encode
from xdmvpn.netns import Namespaces
from xdmvpn.transport import gre_header, parse_gre, parse_gre_nhrp

WIRES = [encode(m) for _, m in samples()]


def test_parse_gre_rejects_what_is_not_ours():
    ip = bytes.fromhex("45000000000040004000000a") + bytes(8)
    def pkt(gre, payload=b"\x00\x01"):
        raw = bytearray(ip + gre + payload)
        raw[2:4] = len(raw).to_bytes(2, "big")
        return bytes(raw)
    assert parse_gre_nhrp(pkt(gre_header(7)), 7) == (b"\x00\x01", "")
    assert parse_gre_nhrp(pkt(gre_header(8)), 7) == (None, "wrong_key")
    assert parse_gre_nhrp(pkt(gre_header(None)), 7) == (None, "wrong_key")
    assert parse_gre_nhrp(pkt(gre_header(None)), None) == (b"\x00\x01", "")
    assert parse_gre_nhrp(pkt(b"\x00\x00\x08\x00"), None) == (None, "not_nhrp")
    assert parse_gre_nhrp(pkt(b"\x00\x01\x20\x01"), None) == (None, "gre_flags")   # version 1
    assert parse_gre_nhrp(pkt(b"\x20\x00\x20\x01\x00"), 7)[1] == "truncated"
    assert parse_gre_nhrp(ip[:10], None) == (None, "not_ipv4")
    # what an IPv6 raw socket gives: the GRE header first
    assert parse_gre(gre_header(7) + b"\x00\x01", 0, 10, 7) == (b"\x00\x01", "")
    assert parse_gre(gre_header(8) + b"\x00\x01", 0, 10, 7) == (None, "wrong_key")
    assert parse_gre(b"\x20\x00", 0, 2, 7) == (None, "truncated")


SENDER = """
import sys
from ipaddress import ip_address
from xdmvpn.transport import GreSocket
s = GreSocket(ip_address(sys.argv[1]), 7, "u0")
for line in sys.stdin:
    s.send(ip_address(sys.argv[2]), bytes.fromhex(line.strip()))
"""

RECEIVER = """
import json, select, sys, time
from ipaddress import ip_address
from xdmvpn.transport import GreSocket
s = GreSocket(ip_address(sys.argv[2]), 7, "u0")
print("ready", flush=True)
got, deadline = [], time.monotonic() + 10
while len(got) < int(sys.argv[1]) and time.monotonic() < deadline:
    select.select([s], [], [], 0.5)
    while (item := s.recv()) is not None:
        got.append([item[0].hex() if item[0] else None, str(item[1])])
print(json.dumps(got), flush=True)
"""


@pytest.mark.root
@pytest.mark.parametrize("one,two,bits", [("192.0.2.1", "192.0.2.2", 24),
                                          ("2001:db8:ff::1", "2001:db8:ff::2", 64)],
                         ids=["ipv4", "ipv6"])
def test_send_and_receive_between_namespaces_and_tshark_agrees(tmp_path, one, two, bits):
    """Over either underlay: an IPv6 raw GRE socket gets the GRE header first and the
    source with the datagram."""
    need_root()
    with Namespaces() as ns:
        a, b = ns.add("a"), ns.add("b")
        ns.link(a, "u0", b, "u0", f"{one}/{bits}", f"{two}/{bits}")
        cap = tmp_path / "wire.pcap"
        proto = "ip" if bits == 24 else "ip6"
        dump = netns.popen("tcpdump", "-Z", "root", "--immediate-mode", "-U", "-n",
                           "-i", "u0", "-w", str(cap), f"{proto} proto 47", ns=b)
        recv = netns.popen(sys.executable, "-c", RECEIVER, str(len(WIRES)), two, ns=b)
        assert recv.stdout.readline().strip() == "ready"
        assert "listening on" in dump.stderr.readline()      # tcpdump is attached
        netns.run(sys.executable, "-c", SENDER, one, two, ns=a,
                  input="".join(w.hex() + "\n" for w in WIRES))
        out, err = recv.communicate(timeout=20)
        dump.terminate()
        dump.communicate(timeout=10)
        got = json.loads(out.strip().splitlines()[-1])
        assert [bytes.fromhex(h) for h, _ in got] == WIRES
        assert {src for _, src in got} == {one}
        seen = tshark_nhrp(str(cap))
        assert len(seen) == len(WIRES)
        assert all(p[0]["checksum_ok"] is True for p in seen.values())
        keys = subprocess.run(
            ["tshark", "-r", str(cap), "-T", "fields", "-e", "gre.key"],
            capture_output=True, text=True).stdout.split()
        assert set(keys) == {"0x00000007"}
