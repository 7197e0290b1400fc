"""Write NHRP payloads into capture files the way they cross the wire: in GRE, or directly
in IP as protocol 54 (test helper)."""

from __future__ import annotations

import logging

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP                 # noqa: E402
from scapy.layers.inet6 import IPv6              # noqa: E402
from scapy.layers.l2 import GRE, CookedLinux, Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw                     # noqa: E402
from scapy.utils import PcapNgWriter, PcapWriter  # noqa: E402


def gre_frame(payload: bytes, *, key: int | None = 1000, src="192.0.2.1", dst="192.0.2.2",
              link: str = "ether", vlan: int | None = None, carrier: str = "gre"):
    """carrier "gre": IP / GRE (protocol 0x2001, key) / NHRP; "ip": IP (protocol 54) / NHRP."""
    if carrier == "ip":
        ip = IPv6(src=src, dst=dst, nh=54) if ":" in src else IP(src=src, dst=dst, proto=54)
        inner = ip / Raw(payload)
    else:
        gre = GRE(proto=0x2001, key_present=key is not None, key=key or 0)
        ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        inner = ip / gre / Raw(payload)
    if link == "raw":
        return inner
    if link == "sll":
        return CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02" * 6 + b"\0\0",
                           proto=0x86DD if ":" in src else 0x0800) / inner
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        return eth / Dot1Q(vlan=vlan) / inner
    return eth / inner


def write_capture(path, payloads, *, fmt: str = "pcap", **kw) -> None:
    """One frame per payload; fmt 'pcap' or 'pcapng'."""
    frames = [gre_frame(p, **kw) for p in payloads]
    writer_cls = PcapNgWriter if fmt == "pcapng" else PcapWriter
    with writer_cls(str(path)) as w:
        for f in frames:
            w.write(f)
