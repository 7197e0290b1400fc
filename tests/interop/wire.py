"""What crossed the underlay bridge, as tshark decodes it (test helper): every NHRP packet
with its checksum status, and the GRE data packets (outer and inner addresses, key, DF,
length). tshark reads the capture tcpdump is still writing; the last frame may be cut
short, which tshark reports and which is ignored here."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tshark_oracle import TSHARK_OPTS, tshark_path
from util import scaled

# NHRP packet types (RFC 2332 5.2, and 8 for Cisco's traffic indication)
RESOLUTION_REQUEST, RESOLUTION_REPLY, REGISTRATION_REQUEST, REGISTRATION_REPLY = 1, 2, 3, 4
PURGE_REQUEST, PURGE_REPLY, ERROR_INDICATION, TRAFFIC_INDICATION = 5, 6, 7, 8
CHECKSUM_GOOD = 1           # tshark's nhrp.hdr.chksum.status: 0 bad, 1 good, 2 unverified


def _fields(pcap: Path, display_filter: str, fields: list[str]) -> list[list[str]]:
    argv = [tshark_path(), "-r", str(pcap), *TSHARK_OPTS, "-Y", display_filter, "-T",
            "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(30)).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


@dataclass(frozen=True)
class Nhrp:
    frame: int
    time: float
    src: str                 # outer (NBMA) source and destination
    dst: str
    key: int | None
    type: int
    checksum: int            # tshark's checksum status
    malformed: bool
    src_proto: str
    dst_proto: str
    codes: tuple[int, ...]   # CIE codes


@dataclass(frozen=True)
class Data:
    time: float
    src: str                 # outer
    dst: str
    key: int | None
    df: bool                 # outer DF
    inner_src: str
    inner_dst: str
    inner_len: int


# an ICMP error quoting a GRE datagram (not GRE carrying ICMP, such as a ping's)
ICMP_ABOUT_GRE = 'frame.protocols contains "ip:icmp:ip:gre"'
FIELDS = ["frame.number", "frame.time_epoch", "ip.src", "ip.dst", "gre.key",
          "nhrp.hdr.op.type", "nhrp.hdr.chksum.status", "_ws.malformed", "nhrp.src.prot.addr",
          "nhrp.dst.prot.addr", "nhrp.code", "ip.flags.df", "ip.len"]


def read(pcap: Path, since: float = 0.0) -> tuple[list[Nhrp], list[Data]]:
    """Every NHRP packet and every GRE packet carrying IPv4 since `since`, from one tshark
    run (a run costs seconds under the VM tier's emulation)."""
    rows = _fields(pcap, f"!({ICMP_ABOUT_GRE}) && (nhrp || (gre.proto == 0x0800 && "
                   "ip.proto == 47))", FIELDS)
    nhrps, datas = [], []
    for r in rows:
        r += [""] * (len(FIELDS) - len(r))
        if not r[1] or float(r[1]) < since:
            continue
        src, dst = r[2].split(","), r[3].split(",")
        key = int(r[4].split(",")[0], 0) if r[4] else None
        if r[5]:
            nhrps.append(Nhrp(int(r[0]), float(r[1]), src[0], dst[0], key,
                              int(r[5].split(",")[0]),
                              int(r[6].split(",")[0]) if r[6] else -1, bool(r[7]), r[8], r[9],
                              tuple(int(c) for c in r[10].split(",") if c)))
            continue
        df, length = r[11].split(","), r[12].split(",")
        if len(src) < 2 or len(length) < 2:
            continue                                    # cut short
        datas.append(Data(float(r[1]), src[0], dst[0], key, df[0] in ("1", "True"), src[1],
                          dst[1], int(length[1])))
    return nhrps, datas


def nhrp(pcap: Path, since: float = 0.0) -> list[Nhrp]:
    return read(pcap, since)[0]


def data(pcap: Path, since: float = 0.0) -> list[Data]:
    """GRE packets carrying IPv4 (not NHRP)."""
    return read(pcap, since)[1]


def unreachables(pcap: Path, since: float = 0.0) -> list[tuple[str, str, int]]:
    """ICMP destination unreachable messages about a GRE datagram (the capture takes ICMP
    type 3 besides GRE) since `since`: (source, destination, code) of each."""
    out = []
    for r in _fields(pcap, f"{ICMP_ABOUT_GRE} && icmp.type == 3",
                     ["frame.time_epoch", "ip.src", "ip.dst", "icmp.code"]):
        if len(r) == 4 and r[3] and float(r[0]) >= since:
            out.append((r[1].split(",")[0], r[2].split(",")[0], int(r[3].split(",")[0])))
    return out


def assert_sound(packets: list[Nhrp], key: int) -> None:
    """Every NHRP packet decoded whole, its checksum Good, in GRE with the tunnel's key."""
    bad = [p for p in packets if p.checksum != CHECKSUM_GOOD or p.malformed or p.key != key]
    assert not bad, bad[:5]
