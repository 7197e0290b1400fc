"""Start-up benchmark (root): how long a hub takes from `xdmvpn run` to answering on its
control socket, how much of that is the loader child (bcc compile, verifier, pins), and the
idle daemon's RSS once the child is gone.

Each run starts a real hub (`xdmvpn run` in a network namespace, an underlay veth to a
second namespace) on fresh pins, waits for its control socket, lets it idle, reads its
VmRSS and whether libbcc/LLVM are mapped (/proc/PID/maps), then stops it (clean shutdown,
pins removed). The loader child's figures (compile and load seconds, its peak RSS, which
is about what a daemon holding bcc and LLVM for its whole life kept) come from the
daemon's log line.

Baselines in the same run: a bare interpreter (`python -c` that sleeps) for the RSS, and
the loader child's peak RSS for what compiling in-process would keep resident.

Environment: XDMVPN_BENCH_RUNS (3 start-ups), XDMVPN_BENCH_IDLE_S (2.0 seconds of idling
before the RSS is read).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xdmvpn.errors import XdmvpnError

from .control import _env_int
from .ctl.lab import Lab, hub_config, rss_bytes

GOAL_IDLE_RSS_BYTES = 40 << 20
HUB_NBMA, PEER_NBMA, OVERLAY = "192.0.2.1", "192.0.2.2", "172.16.0.1/24"
LOADED = re.compile(r"compiled and loaded by a child process in ([\d.]+) s \(compile "
                    r"([\d.]+) s, load ([\d.]+) s, child peak RSS (\d+) MB\)")
HEAVY = re.compile(r"libbcc|libLLVM|libclang")


def heavy_mapped(pid: int) -> bool:
    return any(HEAVY.search(line) for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def bare_python_rss() -> int:
    """VmRSS of an interpreter that imports nothing of ours: the floor."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return rss_bytes(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)


def one_startup(idle_s: float) -> dict:
    lab = Lab("s")
    try:
        hub, peer = lab.add_ns("hub"), lab.add_ns("peer")
        lab.veth(hub, "eth0", peer, "eth0", f"{HUB_NBMA}/24", f"{PEER_NBMA}/24")
        t0 = time.monotonic()
        proc = lab.start("hub", hub_config(lab.instance("hub"), OVERLAY))
        lab.wait_ready("hub", timeout=300.0)
        ready_s = time.monotonic() - t0
        time.sleep(idle_s)
        lab.ask("hub", "stats")                        # the daemon answers, maps read
        out = {"ready_seconds": round(ready_s, 3), "idle_rss_bytes": rss_bytes(proc.pid),
               "bcc_or_llvm_mapped": heavy_mapped(proc.pid)}
        log = (lab.tmp / "hub.log").read_text(errors="replace")
        found = LOADED.search(log)
        if found is None:
            raise XdmvpnError(f"no loader line in the hub's log:\n{log[-3000:]}")
        child, comp, load, child_mb = found.groups()
        out |= {"loader_child_seconds": float(child), "compile_seconds": float(comp),
                "load_seconds": float(load), "loader_child_peak_rss_bytes": int(child_mb) << 20}
        lab.stop("hub")
        return out
    finally:
        lab.close()


def run(args) -> dict:
    if os.geteuid() != 0:
        raise XdmvpnError("bench startup needs root (network namespaces, BPF)")
    runs = _env_int("XDMVPN_BENCH_RUNS", 3)
    idle_s = float(os.environ.get("XDMVPN_BENCH_IDLE_S") or 2.0)
    if not 1 <= runs <= 20:
        raise XdmvpnError("XDMVPN_BENCH_RUNS: 1 to 20")
    bare = bare_python_rss()
    results = [one_startup(idle_s) for _ in range(runs)]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    rss = median("idle_rss_bytes")
    child_rss = median("loader_child_peak_rss_bytes")
    return {
        "bench": "startup", "runs": runs,
        "ready_seconds_median": median("ready_seconds"),
        "loader_child_seconds_median": median("loader_child_seconds"),
        "compile_seconds_median": median("compile_seconds"),
        "load_seconds_median": median("load_seconds"),
        "daemon_without_child_seconds_median":
            round(median("ready_seconds") - median("loader_child_seconds"), 3),
        "idle_rss_bytes_median": rss,
        "idle_rss_mb_median": round(rss / (1 << 20), 1),
        "bare_python_rss_bytes": bare,
        "loader_child_peak_rss_bytes_median": child_rss,
        "idle_rss_vs_bare_python": round(rss / bare, 2),
        "idle_rss_vs_loader_child": round(rss / child_rss, 3) if child_rss else None,
        "bcc_or_llvm_mapped": any(r["bcc_or_llvm_mapped"] for r in results),
        "goal_idle_rss_bytes": GOAL_IDLE_RSS_BYTES,
        "ok_idle_rss": rss <= GOAL_IDLE_RSS_BYTES,
        "per_run": results,
    }
