"""NHRP over the raw GRE socket between two namespaces; tshark decodes what we send."""

import json
import subprocess
import sys

from nhrp_samples import samples
from tshark_oracle import tshark_nhrp
from util import need_root
from xdmvpn import netns
from xdmvpn.nhrp import encode
from xdmvpn.netns import Namespaces
from xdmvpn.transport import gre_header, parse_gre_nhrp

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


SENDER = """
import sys
from ipaddress import IPv4Address
from xdmvpn.transport import GreSocket
s = GreSocket(IPv4Address("192.0.2.1"), 7, "u0")
for line in sys.stdin:
    s.send(IPv4Address("192.0.2.2"), bytes.fromhex(line.strip()))
"""

RECEIVER = """
import json, select, sys, time
from ipaddress import IPv4Address
from xdmvpn.transport import GreSocket
s = GreSocket(IPv4Address("192.0.2.2"), 7, "u0")
print("ready", flush=True)
got, deadline = [], time.monotonic() + 10
while len(got) < int(sys.argv[1]) and time.monotonic() < deadline:
    select.select([s], [], [], 0.5)
    while (item := s.recv()) is not None:
        got.append([item[0].hex() if item[0] else None, str(item[1])])
print(json.dumps(got), flush=True)
"""


def test_send_and_receive_between_namespaces_and_tshark_agrees(tmp_path):
    need_root()
    with Namespaces() as ns:
        a, b = ns.add("a"), ns.add("b")
        ns.link(a, "u0", b, "u0", "192.0.2.1/24", "192.0.2.2/24")
        cap = tmp_path / "wire.pcap"
        dump = netns.popen("tcpdump", "-Z", "root", "--immediate-mode", "-U", "-n",
                           "-i", "u0", "-w", str(cap), "ip proto 47", ns=b)
        recv = netns.popen(sys.executable, "-c", RECEIVER, str(len(WIRES)), ns=b)
        assert recv.stdout.readline().strip() == "ready"
        assert "listening on" in dump.stderr.readline()      # tcpdump is attached
        netns.run(sys.executable, "-c", SENDER, ns=a,
                  input="".join(w.hex() + "\n" for w in WIRES))
        out, err = recv.communicate(timeout=20)
        dump.terminate()
        dump.communicate(timeout=10)
        got = json.loads(out.strip().splitlines()[-1])
        assert [bytes.fromhex(h) for h, _ in got] == WIRES
        assert {src for _, src in got} == {"192.0.2.1"}
        seen = tshark_nhrp(str(cap))
        assert len(seen) == len(WIRES)
        assert all(p[0]["checksum_ok"] is True for p in seen.values())
        keys = subprocess.run(
            ["tshark", "-r", str(cap), "-T", "fields", "-e", "gre.key"],
            capture_output=True, text=True).stdout.split()
        assert set(keys) == {"0x00000007"}
