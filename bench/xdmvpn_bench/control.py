"""Control-plane benchmark (root): a real hub (`xdmvpn run` in a network namespace, its own
data plane) answering NHRP registrations on the wire, its memory per registered spoke, and
the DMVPN phase-3 shortcut setup time in a hub + 2 spokes lab.

Registrations. A generator namespace sends real registration requests (what an xdmvpn or
Cisco spoke sends: unique flag, NAT and authentication extensions) to the hub over a raw
IPPROTO_RAW socket, writing the IP header itself with a different NBMA source address per
spoke (198.19.0.0/16, made local in the generator with a `local` route so that the hub's
replies, routed back through one gateway, are received on a raw GRE socket). It keeps
`window` requests outstanding, counts replies per second, and after the run decodes every
reply with the codec (registration reply, its request id, CIE code 0). Every spoke
registers anew `rounds` times (XDMVPN_BENCH_ROUNDS, 3), all de-registering (holdtime 0,
answered and checked alike) between two rounds so that each starts from an empty cache
(slots given back are cleared again: the later rounds pay what a hub re-registering its
spokes pays); then `rounds` rounds re-register every spoke (refreshes). The rates reported
are each kind's best round (a shared machine's interference only ever slows a round down),
with the median and every round beside them. The hub's cache and data-plane map must
then hold one entry per spoke (control socket "snapshot", "stats"). The same harness
against a trivial echo responder (a Python loop on the same raw GRE socket) shows the
harness's own ceiling.

The hub is configured as one expecting many new spokes at once: `[nhrp] unknown-budget`
rate 50,000/s (the default 10,000/s caps first-time registrations, unknown sources all).

Memory. The hub's VmRSS with every spoke registered minus before any, per spoke.

Shortcut setup. Hub + 2 spokes as real daemons (the layout of tests/daemon/topo.py); a LAN
host behind spoke1 sends a UDP stream (sequence number and send time in each datagram) to a
host behind spoke2; an AF_PACKET capture on the bridge port toward spoke2 judges each
datagram's path by its outer source (hub: via the hub; spoke1: direct). Setup time = send
time of the first direct datagram - send time of the first. Each trial uses its own source
address (the data plane triggers once a second per pair) and shortcuts are cleared on both
spokes between trials. NHRP on the bridge port toward spoke1 splits the time into the
hub's reaction (first datagram -> traffic indication), spoke1's (indication -> resolution
request), the resolution round trip and the install (reply -> first direct datagram).

The hub's CPU time per registration (/proc/PID/stat) and its share of one core say whether
the hub is the bottleneck (share ~1.0) or the harness is (its own share, and the echo).

With --vs-frr: FRR's nhrpd and xdmvpn as hubs side by side, same generator, in the VM
tier's stock kernel where this one lacks ip_gre (xdmvpn_bench/ctl/vs_frr.py).

Environment: XDMVPN_BENCH_SPOKES (10000, at most 60000: the generator's NBMA addresses),
XDMVPN_BENCH_WINDOW (64 outstanding: more overflows the hub's socket buffer, counted as
retransmits), XDMVPN_BENCH_TRIALS (24 shortcut trials, 0: none),
XDMVPN_BENCH_INTERVAL_US (500, between datagrams of a trial),
XDMVPN_BENCH_PROFILE=DIR (the hub under cProfile, DIR/hub.prof, its top functions in the
result; rates are then not comparable), XDMVPN_BENCH_PYSPY=PATH-TO-py-spy (a sampling
profile of the hub during both rounds, shares per function in the result; py-spy is not a
dependency: `pip install --target DIR py-spy`).
"""

from __future__ import annotations

import os

from xdmvpn.errors import XdmvpnError

from .ctl.registration import registration_bench
from .ctl.shortcut import shortcut_bench

GOAL_REGISTRATIONS_PER_SECOND = 20_000     # issue 10 point 4
GOAL_RSS_BYTES_PER_ENTRY = 2048
GOAL_SHORTCUT_SETUP_MS = 20.0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise XdmvpnError(f"{name}={value!r}: expected an integer") from None


# -- the bench -------------------------------------------------------------------------------

def need_root() -> None:
    if os.geteuid() != 0:
        raise XdmvpnError("bench control needs root (network namespaces, raw sockets, BPF)")


def run(args) -> dict:
    need_root()
    if getattr(args, "vs_frr", False):
        from .ctl import vs_frr
        spokes = _env_int("XDMVPN_BENCH_SPOKES", 0) or None
        return vs_frr.run(spokes, _env_int("XDMVPN_BENCH_WINDOW", 64))
    n = _env_int("XDMVPN_BENCH_SPOKES", 10_000)
    window = _env_int("XDMVPN_BENCH_WINDOW", 64)
    trials = _env_int("XDMVPN_BENCH_TRIALS", 24)
    interval = _env_int("XDMVPN_BENCH_INTERVAL_US", 500) / 1e6
    profile_dir = os.environ.get("XDMVPN_BENCH_PROFILE") or None
    if not 1 <= n <= 60_000:
        raise XdmvpnError("XDMVPN_BENCH_SPOKES: 1 to 60000")
    rounds = _env_int("XDMVPN_BENCH_ROUNDS", 3)
    if not 1 <= rounds <= 10:
        raise XdmvpnError("XDMVPN_BENCH_ROUNDS: 1 to 10")
    reg = registration_bench(n, window, profile_dir, os.environ.get("XDMVPN_BENCH_PYSPY"),
                             rounds)
    sc = shortcut_bench(trials, interval) if trials > 0 else {}
    r1, r2 = reg["register"], reg["reregister"]
    rss_per = (reg["rss_bytes_full"] - reg["rss_bytes_empty"]) / n
    every = reg["register_rounds"] + reg["reregister_rounds"] + reg["deregister_rounds"]
    all_ok = (all(r["ok"] == n for r in every) and reg["hub_cache_dynamic"] == n
              and reg["hub_dataplane_mappings"] == n and reg["hub_dataplane_has_every_spoke"])
    out = {
        "bench": "control",
        "spokes": n, "window": window,
        "rounds": rounds,
        "registrations_per_second": r1["per_second_steady"],
        "registrations_per_second_median": r1["per_second_steady_median"],
        "registrations_per_second_rounds": [r["per_second_steady"]
                                            for r in reg["register_rounds"]],
        "registrations_per_second_overall": r1["per_second_overall"],
        "deregistrations_per_second_rounds": [r["per_second_steady"]
                                              for r in reg["deregister_rounds"]],
        "reregistrations_per_second": r2["per_second_steady"],
        "reregistrations_per_second_median": r2["per_second_steady_median"],
        "reregistrations_per_second_overall": r2["per_second_overall"],
        "registration_seconds": r1["seconds"], "reregistration_seconds": r2["seconds"],
        "baseline_echo_per_second": reg["baseline_echo"]["per_second_steady"],
        "registrations_ok": r1["ok"], "reregistrations_ok": r2["ok"],
        "all_registrations_succeeded": all_ok,
        "hub_cache_dynamic": reg["hub_cache_dynamic"],
        "hub_dataplane_mappings": reg["hub_dataplane_mappings"],
        "rss_bytes_empty": reg["rss_bytes_empty"], "rss_bytes_full": reg["rss_bytes_full"],
        "rss_bytes_per_entry": round(rss_per, 1),
        "shortcut_setup_ms_median": sc.get("median_ms"),
        "shortcut_setup_ms_p90": sc.get("p90_ms"),
        "shortcut_setup_n": len(sc.get("setup_ms", [])),
        "goal_registrations_per_second": GOAL_REGISTRATIONS_PER_SECOND,
        "goal_rss_bytes_per_entry": GOAL_RSS_BYTES_PER_ENTRY,
        "goal_shortcut_setup_ms": GOAL_SHORTCUT_SETUP_MS,
        "ok_registrations_per_second": r1["per_second_steady"] >= GOAL_REGISTRATIONS_PER_SECOND,
        "ok_reregistrations_per_second":
            r2["per_second_steady"] >= GOAL_REGISTRATIONS_PER_SECOND,
        "ok_rss_bytes_per_entry": rss_per <= GOAL_RSS_BYTES_PER_ENTRY,
        "ok_shortcut_setup_ms": None if not sc else (
            sc["median_ms"] is not None and sc["failed"] == 0
            and sc["median_ms"] <= GOAL_SHORTCUT_SETUP_MS),
        "registration": reg, "shortcut": sc,
        "profiled": profile_dir is not None,
    }
    return out
