"""Phase-3 shortcut setup time in a hub + 2 spokes lab (see xdmvpn_bench/control.py)."""

from __future__ import annotations

import socket
import statistics
import struct
import time

from xdmvpn.errors import XdmvpnError
from xdmvpn.lab.xdp import attach_pass
from xdmvpn.netns import in_netns, ip

from .lab import (
    AUTH, ETH_P_ALL, ETH_P_IP, KEY, MTU, PACKET_OUTGOING, SO_RCVBUFFORCE, SO_TIMESTAMPNS, Lab,
    hub_config, percentile, wait_for,
)

# shortcut lab addressing (tests/daemon/topo.py)
LAB_HUB_NBMA = "192.0.2.1"
LAB_SPOKE_NBMA = {1: "192.0.2.11", 2: "192.0.2.12"}
LAB_DST = "10.0.2.10"
UDP_PORT = 40000
MAGIC = 0x78646d76            # "xdmv"

# -- shortcut setup ---------------------------------------------------------------------------

def spoke_config(instance: str, i: int) -> str:
    return "\n".join([
        "[tunnel]", 'name = "dmvpn0"', f'address = "172.16.0.{10 + i}/24"',
        'source-interface = "eth0"', f"key = {KEY}", f"mtu = {MTU}", "adjust-mss = 1360", "",
        "[nhrp]", "holdtime = 600", f'authentication = "{AUTH}"', "shortcut = true",
        'multicast = ["nhs"]', "", "[[nhrp.nhs]]", 'tunnel-ip = "172.16.0.1"',
        f'nbma = "{LAB_HUB_NBMA}"', "priority = 1", "",
        "[control]", f'instance = "{instance}"', ""])


def build_phase3_lab(lab: Lab, sources: int) -> dict:
    ul = lab.add_ns("ul")
    ip("link", "add", "br0", "type", "bridge", ns=ul)
    ip("link", "set", "br0", "up", ns=ul)
    ports = {}
    for short, nbma in (("hub", LAB_HUB_NBMA), ("s1", LAB_SPOKE_NBMA[1]),
                        ("s2", LAB_SPOKE_NBMA[2])):
        ns = lab.add_ns(short, "net.ipv4.ip_forward=1")
        port = f"p{nbma.rsplit('.', 1)[1]}"
        ports[short] = port
        lab.veth(ns, "eth0", ul, port, f"{nbma}/24")
        ip("link", "set", port, "master", "br0", ns=ul)
    for i in (1, 2):
        ns, lan = lab.ns(f"s{i}"), lab.add_ns(f"s{i}lan")
        lab.veth(ns, "lan0", lan, "eth0", f"10.0.{i}.1/24", f"10.0.{i}.10/24")
        ip("route", "add", "default", "via", f"10.0.{i}.1", ns=lan)
    for t in range(sources):
        ip("addr", "add", f"10.0.1.{100 + t}/24", "dev", "eth0", ns=lab.ns("s1lan"))
    # veth delivers XDP_TX frames (the hub's hairpin) only to a peer with an XDP program
    with in_netns(ul):
        attach_pass(list(ports.values()))
    return ports


def _nhrp_op(ip: bytes) -> int | None:
    """NHRP packet type of an outer IPv4/GRE(key)/NHRP packet, else None."""
    if len(ip) < 20 or ip[9] != socket.IPPROTO_GRE:
        return None
    o = (ip[0] & 0x0F) * 4
    if len(ip) < o + 8 + 18 or ip[o + 2:o + 4] != b"\x20\x01":
        return None
    return ip[o + 8 + 17]


def _datagram(ip: bytes):
    """(outer source, inner source, seq, sent ns) of one of our datagrams in GRE, or None."""
    if len(ip) < 20 or ip[9] != socket.IPPROTO_GRE:
        return None
    o = (ip[0] & 0x0F) * 4
    if ip[o + 2:o + 4] != b"\x08\x00":
        return None
    inner = o + 8
    ihl = (ip[inner] & 0x0F) * 4
    if len(ip) < inner + ihl + 8 + 16 or ip[inner + 9] != socket.IPPROTO_UDP:
        return None
    u = inner + ihl + 8
    magic, seq, sent = struct.unpack_from("!IIQ", ip, u)
    if magic != MAGIC:
        return None
    return socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[inner + 12:inner + 16]), seq, sent


class Capture:
    """AF_PACKET on one bridge port (in the underlay namespace), kernel timestamps."""

    def __init__(self, ns: str, port: str):
        with in_netns(ns):
            # ETH_P_ALL: a socket of one protocol never sees what the device sends
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                                      socket.htons(ETH_P_ALL))
            self.sock.bind((port, ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)

    def read(self) -> list[tuple[int, int, bytes]]:
        """(kernel time ns, packet type, IP packet) for everything waiting."""
        out = []
        while True:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return out
            ts = time.time_ns()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    ts = sec * 1_000_000_000 + nsec
            if addr[1] == ETH_P_IP:
                out.append((ts, addr[2], data))

    def close(self) -> None:
        self.sock.close()


def shortcut_trial(lab: Lab, src: str, tx: socket.socket, to_s2: Capture, to_s1: Capture,
                   interval: float, limit: float = 1.5) -> dict:
    to_s2.read()
    to_s1.read()
    sent: list[int] = []
    direct_seen = None
    pad = bytes(32)
    start = time.monotonic()
    seq = 0
    seen: list[tuple] = []
    while time.monotonic() - start < limit:
        t = time.time_ns()
        tx.sendto(struct.pack("!IIQ", MAGIC, seq, t) + pad, (LAB_DST, UDP_PORT))
        sent.append(t)
        seq += 1
        for ts, kind, data in to_s2.read():
            d = _datagram(data)
            if d is not None and d[1] == src and kind == PACKET_OUTGOING:
                seen.append((ts,) + d)
                if d[0] == LAB_SPOKE_NBMA[1] and direct_seen is None:
                    direct_seen = seq
        if direct_seen is not None and seq >= direct_seen + 5:
            break
        time.sleep(max(0.0, interval - (time.time_ns() - t) / 1e9))
    time.sleep(0.02)
    for ts, kind, data in to_s2.read():
        d = _datagram(data)
        if d is not None and d[1] == src and kind == PACKET_OUTGOING:
            seen.append((ts,) + d)
    nhrp = [(ts, kind, _nhrp_op(data)) for ts, kind, data in to_s1.read()]
    direct = [s for s in seen if s[1] == LAB_SPOKE_NBMA[1]]
    via_hub = [s for s in seen if s[1] == LAB_HUB_NBMA]
    out = {"src": src, "sent": len(sent), "via_hub": len(via_hub), "direct": len(direct)}
    if not direct:
        return out | {"ok": False}
    first = min(direct, key=lambda s: s[3])
    t0 = sent[0]
    seqs = {s[3] for s in seen}
    out |= {"ok": True, "setup_ms": (first[4] - t0) / 1e6,
            "first_direct_seq": first[3], "first_seq_via_hub": 0 in {s[3] for s in via_hub},
            "lost_before_direct": sum(1 for q in range(first[3]) if q not in seqs)}
    # NHRP toward/from spoke1 after the first datagram: indication (8) out to spoke1,
    # resolution request (1) in from spoke1, resolution reply (2) out to spoke1
    def first_of(op, outgoing, after):
        return next((ts for ts, kind, o in sorted(nhrp) if o == op and ts >= after
                     and (kind == PACKET_OUTGOING) == outgoing), None)
    ind = first_of(8, True, t0)
    req = first_of(1, False, ind) if ind else None
    rep = first_of(2, True, req) if req else None
    if ind and req and rep:
        out |= {"hub_ms": (ind - t0) / 1e6, "spoke1_ms": (req - ind) / 1e6,
                "resolution_ms": (rep - req) / 1e6, "install_ms": (first[4] - rep) / 1e6}
    return out


def clear_shortcuts(lab: Lab, timeout: float = 5.0) -> None:
    for s in ("s1", "s2"):
        lab.ask(s, "clear", what="shortcut")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(lab.ask(s, "snapshot")["snapshot"]["shortcuts"] for s in ("s1", "s2")):
            return
        time.sleep(0.05)
    raise XdmvpnError("shortcuts still there after clear")


def shortcut_bench(trials: int, interval: float) -> dict:
    lab = Lab("s")
    try:
        ports = build_phase3_lab(lab, trials + 1)
        lab.start("hub", hub_config(lab.instance("hub"), "172.16.0.1/24"))
        for i in (1, 2):
            lab.start(f"s{i}", spoke_config(lab.instance(f"s{i}"), i))
        for short in ("hub", "s1", "s2"):
            lab.wait_ready(short)
        for i in (1, 2):
            ip("route", "replace", f"10.0.{i}.0/24", "via", f"172.16.0.{10 + i}", "dev",
               "dmvpn0", ns=lab.ns("hub"))
            ip("route", "replace", "10.0.0.0/16", "via", "172.16.0.1", "dev", "dmvpn0",
               ns=lab.ns(f"s{i}"))

        def registered(s):
            return any(c["state"] == "up" for c in lab.ask(s, "snapshot")["snapshot"]["nhs"])
        wait_for(lambda: registered("s1") and registered("s2"), 30, "spokes registered")
        wait_for(lambda: any(p["prefix"] == "10.0.2.0/24"
                             for p in lab.ask("hub", "stats")["prefixes"]), 15,
                 "hub mirrored the route to spoke2's LAN into its data plane")
        with in_netns(lab.ns("s2lan")):       # a listener: no port unreachable back
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("0.0.0.0", UDP_PORT))
        to_s2 = Capture(lab.ns("ul"), ports["s2"])
        to_s1 = Capture(lab.ns("ul"), ports["s1"])
        results = []
        try:
            for t in range(trials + 1):          # trial 0 warms ARP and caches up: not counted
                src = f"10.0.1.{100 + t}"
                with in_netns(lab.ns("s1lan")):
                    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                tx.bind((src, 0))
                try:
                    r = shortcut_trial(lab, src, tx, to_s2, to_s1, interval)
                finally:
                    tx.close()
                if t:
                    results.append(r)
                clear_shortcuts(lab)
                time.sleep(0.1)
            engine = lab.ask("s1", "stats")["setup_latencies"]
        finally:
            to_s2.close()
            to_s1.close()
            sink.close()
    finally:
        lab.close()
    good = [r for r in results if r.get("ok")]
    ms = [r["setup_ms"] for r in good]
    out = {"trials": len(results), "failed": len(results) - len(good),
           "interval_ms": interval * 1000, "setup_ms": [round(x, 3) for x in ms],
           "median_ms": round(statistics.median(ms), 3) if ms else None,
           "p90_ms": round(percentile(ms, 0.9), 3) if ms else None,
           "min_ms": round(min(ms), 3) if ms else None,
           "max_ms": round(max(ms), 3) if ms else None,
           "first_datagram_via_hub": sum(1 for r in good if r["first_seq_via_hub"]),
           "lost_before_direct": sum(r["lost_before_direct"] for r in good),
           "spoke1_engine_resolution_ms_median":
               round(statistics.median(engine[-len(good):]) * 1000, 3) if engine else None}
    for part in ("hub_ms", "spoke1_ms", "resolution_ms", "install_ms"):
        vals = [r[part] for r in good if part in r]
        out[f"{part[:-3]}_median_ms"] = round(statistics.median(vals), 3) if vals else None
    return out

