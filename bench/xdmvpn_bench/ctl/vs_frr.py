"""`xdmvpn bench control --vs-frr` (root): FRR's nhrpd (with zebra) and xdmvpn as hubs,
each in fresh namespaces, both started first and then measured one after the other
(measure_both), driven by the same generator (that of
`bench control`, xdmvpn_bench.ctl.registration) in the same run: N spokes register (new
registrations), then register again (refreshes). Both sides' rates, the requests that
needed a resend, the hub's CPU seconds (FRR: nhrpd + zebra) and RSS (idle: answering, no
spoke yet; full: every spoke registered), and the ratios xdmvpn / FRR against the goals of
issue 14. No NHRP authentication on either side: FRR 8.4 has none.

Refreshes are measured in REFRESH_ROUNDS rounds per hub (each a refresh of every spoke, a
round lasts about a second under emulation), and each hub's best round is its figure (every
round's rate is in the detail): the VM's two vCPUs share the host with whatever else runs,
interference only ever slows a round down, and one round per hub made the ratio a matter of
which hub happened to be disturbed (four identical FRR rounds in one VM ranged from 618 to
2,434 refreshes/s). Both hubs get the same rounds from the same generator.

FRR needs the kernel's GRE (ip_gre). Where this kernel lacks it (or FRR is not
installed), the bench boots the VM tier's stock kernel (xdmvpn.lab.vm, docs/vm.md), runs
itself there and returns the guest's figures, with the VM's facts (TCG or KVM) beside them.

Environment: XDMVPN_BENCH_SPOKES (2000), XDMVPN_BENCH_WINDOW (64 outstanding),
XDMVPN_BENCH_REFRESH_ROUNDS (3), XDMVPN_VM_TIMEOUT (1800 s for the whole VM run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from xdmvpn.errors import XdmvpnError
from xdmvpn.lab import vm
from xdmvpn.netns import ip

from ..frr import Frr, gre_device
from ..frr import missing as frr_missing
from .lab import HOLDTIME, KEY, MTU, Lab, cpu_seconds, hub_config, rss_bytes
from .registration import (
    GEN_NBMA, HUB_NBMA, OVERLAY, SPOKE_NBMA_NET, Generator, check_replies, ip_gre, rates,
    registration_request, spoke_nbma,
)

DEFAULT_SPOKES = 2000
REFRESH_ROUNDS = 3
GOAL_NEW_RATIO = 2.0            # new registrations/s, xdmvpn / FRR
GOAL_REFRESH_RATIO = 1.0        # refreshes/s
GOAL_RESENDS = 0
GOAL_IDLE_RSS_RATIO = 3.0       # xdmvpn's idle RSS / (nhrpd + zebra)

# FRR's hub: the configuration of docs/interop.md's FRR hub, without redirect's NFLOG
# (no data crosses this hub)
FRR_HUB = f"""\
interface gre1
 ip nhrp network-id 1
 ip nhrp holdtime {HOLDTIME}
 ip nhrp redirect
 tunnel source eth0
!
"""


def why_vm() -> str | None:
    """Why this machine cannot run FRR's hub natively (one line), or None."""
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "probe0", "type", "gre",
                            "external"], capture_output=True)
    if probe.returncode != 0:
        return "this kernel has no ip_gre"
    return frr_missing()


def tree_pids(pid: int) -> list[int]:
    """pid and its descendants (a daemon's helpers count toward its memory and CPU)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _over_trees(pids: list[int], figure) -> float:
    """figure(pid) summed over the processes and their descendants (gone ones count 0)."""
    total = 0.0
    for p in pids:
        for q in tree_pids(p):
            try:
                total += figure(q)
            except (OSError, XdmvpnError):
                pass
    return total


def _cpu(pids: list[int]) -> float:
    return _over_trees(pids, lambda q: sum(cpu_seconds(q)))


def _rss(pids: list[int]) -> int:
    return int(_over_trees(pids, rss_bytes))


class _Hub:
    """One hub implementation in a lab of its own: hub and generator namespaces."""

    def __init__(self, impl: str):
        self.impl = impl
        self.lab = Lab("vx" if impl == "xdmvpn" else "vf")
        self.frr: Frr | None = None
        self.pids: list[int] = []

    def start(self) -> float:
        """Up and answering; returns the seconds that took."""
        lab, scale = self.lab, vm.time_scale()
        hub, gen = lab.add_ns("hub"), lab.add_ns("gen")
        lab.veth(hub, "eth0", gen, "eth0", f"{HUB_NBMA}/24", f"{GEN_NBMA}/24")
        ip("route", "add", str(SPOKE_NBMA_NET), "via", GEN_NBMA, ns=hub)
        ip("route", "add", "local", str(SPOKE_NBMA_NET), "dev", "lo", ns=gen)
        self.gen = Generator(gen)
        t0 = time.monotonic()
        if self.impl == "xdmvpn":
            lab.start("hub", hub_config(lab.instance("hub"), str(OVERLAY), auth=False))
            lab.wait_ready("hub", timeout=90 * scale)
            self.pids = [lab.procs["hub"].pid]
        else:
            gre_device(hub, str(OVERLAY.ip), KEY, MTU)
            self.frr = Frr(hub, lab.instance("hub"), lab.tmp / "frr")
            self.frr.start(FRR_HUB, timeout=30 * scale, log_level="notifications")
            self.pids = list(self.frr.pids().values())
        return time.monotonic() - t0

    def registered(self) -> int:
        """Dynamic entries in the hub's own cache."""
        if self.frr is not None:
            rows = self.frr.show_json("show ip nhrp cache json")["table"]
            return sum(1 for r in rows if r["type"] == "dynamic")
        snap = self.lab.ask("hub", "snapshot", timeout=120)["snapshot"]
        return sum(1 for e in snap["cache"] if e["type"] == "dynamic")

    def close(self) -> None:
        try:
            if self.frr is not None:
                self.frr.stop()
        finally:
            self.lab.close()


def refresh_rounds() -> int:
    value = os.environ.get("XDMVPN_BENCH_REFRESH_ROUNDS", str(REFRESH_ROUNDS))
    if not value.isdigit() or not 1 <= int(value) <= 200:
        raise XdmvpnError(f"XDMVPN_BENCH_REFRESH_ROUNDS={value!r}: a whole number from 1 "
                          "to 200")
    return int(value)


def measure(h: _Hub, ready_s: float, n: int, window: int,
            refreshes: int = REFRESH_ROUNDS) -> dict:
    """One hub, started: idle RSS, a round of new registrations, `refreshes` rounds of
    refreshes (the best one is "refresh", all of them "refresh_rounds")."""
    time.sleep(1.0)
    idle = _rss(h.pids)
    spokes = list(range(1, n + 1))
    rounds = []
    for r in range(1 + refreshes):
        base = (r + 1) << 24             # request ids of a round: base + k
        pkts = [ip_gre(spoke_nbma(i), HUB_NBMA, registration_request(i, base + k, auth=False))
                for k, i in enumerate(spokes)]
        cpu0 = _cpu(h.pids)
        run = h.gen.drive(pkts, base, window, limit=300.0 * vm.time_scale())
        cpu1 = _cpu(h.pids)
        rounds.append(rates(run) | check_replies(run, spokes, base) | {
            "hub_cpu_s": round(cpu1 - cpu0, 2)})
        h.gen.drain()
    refresh = rounds[1:]
    return {"impl": h.impl, "ready_seconds": round(ready_s, 1),
            "rss_bytes_idle": idle, "rss_bytes_full": _rss(h.pids),
            "hub_cache_dynamic": h.registered(), "register": rounds[0],
            "refresh": max(refresh, key=lambda x: x["per_second_overall"]),
            "refresh_rounds": refresh}


def measure_both(n: int, window: int, refreshes: int) -> dict:
    """Both hubs started first (xdmvpn's start, a data-plane compile of ~90 s under TCG,
    then no longer falls between the two measurements, which follow each other within
    seconds: the host's load has less time to change), then FRR measured (xdmvpn idle
    meanwhile: one wake-up a second) and stopped, then xdmvpn measured. FRR goes before
    xdmvpn's rounds with its namespace, and with it its 2,000 kernel neighbours."""
    hubs: dict[str, _Hub] = {}
    try:
        ready = {}
        for impl in ("xdmvpn", "frr"):
            hubs[impl] = _Hub(impl)
            ready[impl] = hubs[impl].start()
        sides = {}
        for impl in ("frr", "xdmvpn"):
            sides[impl] = measure(hubs[impl], ready[impl], n, window, refreshes)
            hubs.pop(impl).close()
        return sides
    finally:
        for h in hubs.values():
            h.close()


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def compare(n: int, window: int) -> dict:
    refreshes = refresh_rounds()
    sides = measure_both(n, window, refreshes)
    x, f = sides["xdmvpn"], sides["frr"]
    figures = {}
    for impl, s in sides.items():
        figures[impl] = {
            "registrations_per_second": s["register"]["per_second_overall"],
            "registrations_per_second_steady": s["register"]["per_second_steady"],
            "refreshes_per_second": s["refresh"]["per_second_overall"],
            "refreshes_per_second_steady": s["refresh"]["per_second_steady"],
            "refreshes_per_second_rounds": [r["per_second_overall"]
                                            for r in s["refresh_rounds"]],
            "resends": s["register"]["retransmits"] + sum(r["retransmits"]
                                                          for r in s["refresh_rounds"]),
            # the round of new registrations and the best refresh round
            "hub_cpu_seconds": round(s["register"]["hub_cpu_s"] + s["refresh"]["hub_cpu_s"],
                                     2),
            "rss_bytes_idle": s["rss_bytes_idle"], "rss_bytes_full": s["rss_bytes_full"],
            "answered_ok": s["register"]["ok"] + sum(r["ok"] for r in s["refresh_rounds"]),
            "hub_cache_dynamic": s["hub_cache_dynamic"],
        }
    fx, ff = figures["xdmvpn"], figures["frr"]
    ratios = {
        "registrations": _ratio(fx["registrations_per_second"], ff["registrations_per_second"]),
        "refreshes": _ratio(fx["refreshes_per_second"], ff["refreshes_per_second"]),
        "hub_cpu_seconds": _ratio(fx["hub_cpu_seconds"], ff["hub_cpu_seconds"]),
        "rss_idle": _ratio(fx["rss_bytes_idle"], ff["rss_bytes_idle"]),
        "rss_full": _ratio(fx["rss_bytes_full"], ff["rss_bytes_full"]),
    }
    every = all(figures[s]["answered_ok"] == (1 + refreshes) * n
                and figures[s]["hub_cache_dynamic"] == n for s in figures)
    return {
        "bench": "control-vs-frr", "spokes": n, "window": window,
        "refresh_rounds": refreshes,
        "kernel": os.uname().release, "time_scale": vm.time_scale(),
        "xdmvpn": fx, "frr": ff, "ratio_xdmvpn_to_frr": ratios,
        "all_answered_and_registered": every,
        "goals": {"registrations_ratio": GOAL_NEW_RATIO, "refreshes_ratio": GOAL_REFRESH_RATIO,
                  "resends": GOAL_RESENDS, "rss_idle_ratio": GOAL_IDLE_RSS_RATIO},
        "ok_registrations": (ratios["registrations"] or 0) >= GOAL_NEW_RATIO,
        "ok_refreshes": (ratios["refreshes"] or 0) >= GOAL_REFRESH_RATIO,
        "ok_resends": fx["resends"] <= GOAL_RESENDS,
        "ok_rss_idle": ratios["rss_idle"] is not None
        and ratios["rss_idle"] <= GOAL_IDLE_RSS_RATIO,
        "detail": {"xdmvpn": x, "frr": f},
    }


def in_vm(n: int, window: int, why: str) -> dict:
    """Run this bench in a guest of the VM tier; its JSON, with the VM's facts."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    out, log = Path(f"/tmp/xdmvpn-bench-vsfrr-{stamp}.json"), \
        Path(f"/tmp/xdmvpn-bench-vsfrr-{stamp}.log")
    inner = f"{sys.executable} -m xdmvpn bench control --vs-frr --json > {out}"
    env = {"XDMVPN_BENCH_SPOKES": str(n), "XDMVPN_BENCH_WINDOW": str(window),
           "XDMVPN_BENCH_REFRESH_ROUNDS": str(refresh_rounds())}
    print(f"bench control --vs-frr: {why}: running in the VM (log {log})", file=sys.stderr,
          flush=True)
    timeout = float(os.environ.get("XDMVPN_VM_TIMEOUT", "1800"))
    with open(log, "wb") as f:
        rc, facts = vm.run(["bash", "-c", inner], env=env, timeout=timeout, stdout=f,
                           stderr=subprocess.STDOUT)
    lines = out.read_text().splitlines() if out.exists() else []
    if rc != 0 or not lines:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise XdmvpnError(f"bench control --vs-frr in the VM: exit {rc} (log {log}): {tail}")
    result = json.loads(lines[-1])
    out.unlink()
    result["vm"] = {k: facts[k] for k in ("accel", "why", "scale", "kernel", "seconds")}
    return result


def run(n: int | None, window: int) -> dict:
    n = n or DEFAULT_SPOKES
    why = why_vm()
    if why is None:
        return compare(n, window)
    if vm.in_vm():
        raise XdmvpnError(f"bench control --vs-frr: {why}, inside the VM too")
    return in_vm(n, window, why)
