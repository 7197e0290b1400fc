"""Flood benchmark (root): a real hub (`xdmvpn run` in a namespace, its own data plane)
with N registered spokes, under the fastest random-source NHRP flood this machine makes,
while a legitimate spoke keeps registering.

    generator ns (spokes 198.19.0.0/16 local; flood sources 100.64.0.0/10)
    eth0 ==== veth ==== eth0 hub ns (XDP: NHRP admission; `xdmvpn run`)

The flood is an XDP program run in live-frames mode on the generator's veth end
(flood_gen.py): every frame a registration or resolution request from a random source,
XDP_TX into the hub's receive ring. Phases, each `seconds` long, after a quiet one:

  unauth_registration       registration requests with a wrong secret, random sources
                            and random protocol addresses (new ones, were they accepted)
  unauth_resolution         resolution requests without authentication, random sources
  auth_hijack               registrations with the right secret from random sources for
                            the registered spokes' protocol addresses (unique: refused)
  auth_resolution_claiming  resolution requests with the right secret for the hub's own
                            address, each claiming the random address it comes from as its
                            NBMA address, from random protocol addresses (what the hub
                            answers itself, and would cache the requester of, were it to)

Meanwhile the legitimate spoke (registered before, so a known source to the data plane)
re-registers every `interval` and resends after 1 s without a reply, as a spoke does: its
reply times (first send to reply) give p50/p99. Each phase also tries one new spoke (an
unknown source), from a second into the phase, sending once a second until answered: the
time from its first try to the answer, or None.

Figures per phase: frames the generator offered, NHRP frames that reached the hub's XDP
program (admitted + refused by the admission: the flood rate reached into the hub), what
the admission let through, the daemon's reads and the kernel's drops on its socket, the
legitimate spoke's p50/p99/max and resends. After all phases: every registered spoke
still bound to its own NBMA address (cache and data plane), and the cache entries and
data-plane mappings the flood created (goal 0).

Environment: XDMVPN_BENCH_SPOKES (1000 registered spokes), XDMVPN_BENCH_FLOOD_SECONDS (8
per phase), XDMVPN_BENCH_FLOOD_INTERVAL_MS (200 between the spoke's registrations: the
data plane admits 10 NHRP packets/s per known source, 100 in a burst), XDMVPN_BENCH_PHASES
(a comma-separated subset)."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import sys
import time

from xdmvpn.errors import XdmvpnError
from xdmvpn.netns import enter_argv, ip
from xdmvpn.nhrp import (
    AuthExtension, Cie, CieListExtension, ExtType, Flag, ResolutionRequest, encode,
    end_extension,
)

from .ctl.lab import AUTH, KEY, MTU, Lab, hub_config, percentile
from .ctl.registration import (
    GEN_NBMA, HUB_NBMA, OVERLAY, SPOKE_NBMA_NET, Generator, check_replies, ip_gre,
    registration_request, reply_request_id, spoke_nbma, spoke_proto,
)
from .daemons import XDMVPN_PATH
from .packets import eth, gre, ipv4

FLOOD_NET = ipaddress.IPv4Network("100.64.0.0/10")
FRESH_PROTO = int(OVERLAY.ip) + 30_000          # protocol addresses nobody registered
GOAL_P99_S = 1.0
RESEND_S = 1.0
NEWCOMER_AFTER_S = 1.0       # the new spoke's first try, into the phase (the flood is on)
PHASES = ("quiet", "unauth_registration", "unauth_resolution", "auth_hijack",
          "auth_resolution_claiming")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise XdmvpnError(f"{name}={value!r}: expected an integer") from None


def need_root() -> None:
    if os.geteuid() != 0:
        raise XdmvpnError("bench flood needs root (network namespaces, raw sockets, BPF)")


# -- the flood's packets ----------------------------------------------------------------------

def _resolution(auth: bool) -> bytes:
    exts = [CieListExtension(ExtType.RESPONDER_ADDRESS, True, []),
            CieListExtension(ExtType.FORWARD_TRANSIT_NHS, True, []),
            CieListExtension(ExtType.REVERSE_TRANSIT_NHS, True, [])]
    if auth:
        exts.append(AuthExtension(1, AUTH.encode()))
    pkt = ResolutionRequest(
        src_nbma=FLOOD_NET.network_address, src_proto=ipaddress.IPv4Address(FRESH_PROTO),
        dst_proto=OVERLAY.ip, hop_count=255, flags=Flag.CISCO_NAT, request_id=7,
        cies=[Cie(prefix_len=32, mtu=MTU, holdtime=7200)],
        extensions=[*exts, end_extension()])
    return encode(pkt)


def _wrong_secret(nhrp: bytes) -> bytes:
    """A registration request with another secret of the same length (checksum fixed)."""
    from xdmvpn.inet import checksum
    at = nhrp.index(AUTH.encode())
    b = bytearray(nhrp)
    b[at:at + len(AUTH)] = b"x" * len(AUTH)
    b[12:14] = b"\0\0"
    size = int.from_bytes(b[10:12], "big")
    b[12:14] = checksum(bytes(b[:size])).to_bytes(2, "big")
    return bytes(b)


def flood_kinds(n: int) -> dict[str, tuple[bytes, bool, int, int]]:
    """phase -> (NHRP template, claim the source, protocol address base, count)."""
    reg = registration_request(1, 7)
    return {
        "unauth_registration": (_wrong_secret(reg), False, FRESH_PROTO, 20_000),
        "unauth_resolution": (_resolution(auth=False), True, FRESH_PROTO, 20_000),
        "auth_hijack": (reg, False, int(spoke_proto(1)), n),
        "auth_resolution_claiming": (_resolution(auth=True), True, FRESH_PROTO, 20_000),
    }


def _frame(nhrp: bytes, dst_mac: str, src_mac: str) -> bytes:
    return eth(dst_mac, src_mac) + ipv4(str(FLOOD_NET.network_address), HUB_NBMA,
                                        gre(nhrp, proto=0x2001, key=KEY))


def _mac(ns: str, dev: str) -> str:
    return json.loads(ip("-j", "link", "show", dev, ns=ns))[0]["address"]


# -- the legitimate spokes --------------------------------------------------------------------

class Spoke:
    """The legitimate spoke's registrations (every `interval`, resent after RESEND_S) and
    one new spoke (an unknown source) trying to join, on the bench's raw sockets."""

    def __init__(self, g: Generator, legit: int, newcomer: int, base_id: int):
        self.g, self.legit, self.newcomer, self.base = g, legit, newcomer, base_id
        self.sent: dict[int, float] = {}         # request id -> first send
        self.rtts: list[float] = []
        self.resends = 0
        self.new_sent: float | None = None
        self.new_first: float | None = None
        self.new_answer: float | None = None
        self.new_rid = base_id + 999_999
        self.lost = 0

    def _send(self, i: int, rid: int) -> None:
        self.g.tx.sendto(ip_gre(spoke_nbma(i), HUB_NBMA, registration_request(i, rid)),
                         (HUB_NBMA, 0))

    def run(self, seconds: float, interval: float) -> None:
        now = time.monotonic
        t0 = now()
        end = t0 + seconds
        nxt, k = t0, 0
        last: dict[int, float] = {}
        poller = select.poll()
        poller.register(self.g.rx, select.POLLIN)
        while True:
            t = now()
            if t >= end and (not last or t > end + 3 * RESEND_S):
                break
            if t >= nxt and t < end:
                rid = self.base + k
                k += 1
                self._send(self.legit, rid)
                self.sent[rid] = last[rid] = t
                nxt += interval
            for rid, at in list(last.items()):
                if t - at >= RESEND_S:
                    self._send(self.legit, rid)
                    self.resends += 1
                    last[rid] = t
            if self.new_answer is None and t0 + NEWCOMER_AFTER_S <= t < end and (
                    self.new_sent is None or t - self.new_sent >= RESEND_S):
                self._send(self.newcomer, self.new_rid)
                self.new_sent = t
                if self.new_first is None:
                    self.new_first = t
            poller.poll(5)
            while True:
                try:
                    data = self.g.rx.recv(65535)
                except BlockingIOError:
                    break
                rid = reply_request_id(data)
                got = now()
                if rid in last:
                    self.rtts.append(got - self.sent[rid])
                    del last[rid]
                elif rid == self.new_rid and self.new_answer is None \
                        and self.new_first is not None:
                    self.new_answer = got - self.new_first
        self.lost = len(last)

    def figures(self) -> dict:
        r = self.rtts
        return {"registrations": len(self.sent), "answered": len(r),
                "unanswered": self.lost, "resends": self.resends,
                "reply_p50_ms": round(percentile(r, 0.5) * 1e3, 2) if r else None,
                "reply_p99_ms": round(percentile(r, 0.99) * 1e3, 2) if r else None,
                "reply_max_ms": round(max(r) * 1e3, 2) if r else None,
                "new_spoke_registered_after_s":
                    round(self.new_answer, 3) if self.new_answer is not None else None}


# -- the hub's side -----------------------------------------------------------------------------

def _counters(lab: Lab) -> dict:
    st = lab.ask("hub", "stats", timeout=60)
    d = st["daemon"]
    paths, drops = st["paths"], st["drops"]
    refused = sum(drops[k]["packets"] for k in ("nhrp_rate", "nhrp_unknown_rate",
                                                "nhrp_unknown_budget"))
    return {"xdp_nhrp_admitted": paths["nhrp"]["packets"],
            "xdp_nhrp_unknown_admitted": paths["nhrp_unknown"]["packets"],
            "xdp_nhrp_refused": refused,
            "daemon_read": d.get("gre_rx", 0),
            "daemon_kernel_drops": d.get("gre_rx_kernel_drops", 0),
            "nhrp": st["nhrp"], "mappings": {m["prefix"]: m["nbma"] for m in st["mappings"]}}


def _cache(lab: Lab) -> dict[str, tuple[str, str]]:
    snap = lab.ask("hub", "snapshot", timeout=60)["snapshot"]
    return {e["protocol"]: (e["type"], e["nbma"]) for e in snap["cache"]}


def _diff(before: dict, after: dict, seconds: float) -> dict:
    out = {k: after[k] - before[k] for k in ("xdp_nhrp_admitted", "xdp_nhrp_unknown_admitted",
                                             "xdp_nhrp_refused", "daemon_read",
                                             "daemon_kernel_drops")}
    reached = out["xdp_nhrp_admitted"] + out["xdp_nhrp_refused"]
    out["hub_xdp_nhrp_per_second"] = round(reached / seconds)
    out["admitted_per_second"] = round(out["xdp_nhrp_admitted"] / seconds)
    drops = {k: after["nhrp"].get(k, 0) - before["nhrp"].get(k, 0)
             for k in after["nhrp"] if k.startswith(("drop", "registration", "cap"))}
    out["engine"] = {k: v for k, v in drops.items() if v}
    return out


def _flood(gen_ns: str, frame: bytes, claim: bool, base: int, count: int,
           seconds: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [XDMVPN_PATH, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]))
    argv = [sys.executable, "-m", "xdmvpn_bench.flood_gen", frame.hex(), "eth0",
            str(FLOOD_NET.network_address), str(FLOOD_NET.prefixlen), str(int(claim)),
            str(base), str(count), str(seconds), "100000"]
    proc = subprocess.Popen(["taskset", "-c", "0", *enter_argv(gen_ns, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if line != "ready":
        proc.kill()
        raise XdmvpnError(f"flood generator: {line} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def run(args) -> dict:
    need_root()
    n = _env_int("XDMVPN_BENCH_SPOKES", 1000)
    seconds = _env_int("XDMVPN_BENCH_FLOOD_SECONDS", 8)
    interval = _env_int("XDMVPN_BENCH_FLOOD_INTERVAL_MS", 200) / 1e3
    phases = [p for p in (os.environ.get("XDMVPN_BENCH_PHASES") or ",".join(PHASES)).split(",")
              if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown or not 1 <= n <= 20_000:
        raise XdmvpnError(f"XDMVPN_BENCH_PHASES: of {', '.join(PHASES)}; "
                          "XDMVPN_BENCH_SPOKES: 1 to 20000")
    kinds = flood_kinds(n)
    lab = Lab("f")
    out: dict = {"bench": "flood", "spokes": n, "seconds_per_phase": seconds,
                 "interval_ms": interval * 1e3}
    try:
        hub, gen = lab.add_ns("hub"), lab.add_ns("gen")
        lab.veth(hub, "eth0", gen, "eth0", f"{HUB_NBMA}/24", f"{GEN_NBMA}/24")
        ip("route", "add", str(SPOKE_NBMA_NET), "via", GEN_NBMA, ns=hub)
        ip("route", "add", str(FLOOD_NET), "via", GEN_NBMA, ns=hub)
        ip("route", "add", "local", str(SPOKE_NBMA_NET), "dev", "lo", ns=gen)
        lab.start("hub", hub_config(lab.instance("hub"), str(OVERLAY)))
        lab.wait_ready("hub")
        g = Generator(gen)
        legit = n + 1
        spokes = list(range(1, n + 2))
        base = 1 << 28
        reg = g.drive([ip_gre(spoke_nbma(i), HUB_NBMA, registration_request(i, base + k))
                       for k, i in enumerate(spokes)], base, 64)
        ok = check_replies(reg, spokes, base)
        if ok["ok"] != len(spokes):
            raise XdmvpnError(f"bench flood: registering the spokes: {ok}")
        g.drain()
        cache0 = _cache(lab)
        maps0 = _counters(lab)["mappings"]
        hub_mac, gen_mac = _mac(hub, "eth0"), _mac(gen, "eth0")
        newcomers = iter(range(n + 2, n + 2 + len(phases)))
        results = {}
        for k, phase in enumerate(phases):
            c0 = _counters(lab)
            spoke = Spoke(g, legit, next(newcomers), (4 + k) << 24)
            proc = None
            if phase != "quiet":
                nhrp, claim, pbase, count = kinds[phase]
                proc = _flood(gen, _frame(nhrp, hub_mac, gen_mac), claim, pbase, count,
                              seconds)
            t0 = time.monotonic()
            spoke.run(seconds, interval)
            gen_out: dict = {}
            if proc is not None:
                o, e = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    raise XdmvpnError(f"flood generator exited {proc.returncode}: {e[-2000:]}")
                gen_out = json.loads(o.strip().splitlines()[-1])
            took = max(time.monotonic() - t0, 1e-3)
            time.sleep(1.0)                       # the daemon drains what it admitted
            c1 = _counters(lab)
            results[phase] = spoke.figures() | _diff(c0, c1, gen_out.get("seconds", took)) \
                | {"generator": gen_out}
            g.drain()
        cache1 = _cache(lab)
        maps1 = _counters(lab)["mappings"]
        newcomer_protos = {str(spoke_proto(i)) for i in range(n + 2, n + 2 + len(phases))}
        kept = sum(1 for i in spokes
                   if cache1.get(str(spoke_proto(i))) == cache0.get(str(spoke_proto(i)))
                   and maps1.get(f"{spoke_proto(i)}/32") == maps0.get(f"{spoke_proto(i)}/32"))
        created = sorted(set(cache1) - set(cache0) - newcomer_protos)
        mapped = sorted(set(maps1) - set(maps0) - {f"{p}/32" for p in newcomer_protos})
        flooded = [r for p, r in results.items() if p != "quiet"]
        worst_p99 = max((r["reply_p99_ms"] or float("inf")) for r in results.values()) \
            if results else None
        out |= {
            "phases": results,
            "flood_offered_per_second_max": max(
                (r["generator"].get("offered_per_second", 0) for r in flooded), default=0),
            "flood_reached_hub_per_second_max": max(
                (r["hub_xdp_nhrp_per_second"] for r in flooded), default=0),
            "legit_reply_p99_ms_worst": worst_p99,
            "legit_resends_total": sum(r["resends"] for r in results.values()),
            "spokes_kept": kept, "spokes_registered": len(spokes),
            "cache_entries_created_by_flood": len(created),
            "dataplane_mappings_created_by_flood": len(mapped),
            "created_examples": created[:5],
            "ok_legit_p99": worst_p99 is not None and worst_p99 <= GOAL_P99_S * 1e3,
            "ok_spokes_kept": kept == len(spokes),
            "ok_nothing_created": not created and not mapped,
        }
        lab.stop("hub", timeout=120)
    finally:
        lab.close()
    return out
