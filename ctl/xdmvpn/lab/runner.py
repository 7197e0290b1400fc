"""The node daemons of a lab: start (detached, pid file, log), find, stop, wait until ready.

Each daemon is `python -m xdmvpn run --config <state>/<node>.toml` with this interpreter
(the venv's), entered into its node's network namespace with `nsenter --net` rather than
`ip netns exec`: the latter also gives the command a mount namespace with a fresh /sys,
where /sys/fs/bpf is not the machine's bpffs, so pinned maps would be private to the
daemon and forwarding would not survive a daemon restart. Only the network namespace
differs from the caller's; /run (sockets) and /sys/fs/bpf (pins) are shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..control import request
from ..errors import XdmvpnError
from ..netns import enter_argv
from .topology import Node, Topology


def daemon_argv(topo: Topology, node: Node) -> list[str]:
    return enter_argv(topo.ns(node), [sys.executable, "-m", "xdmvpn", "run", "--config",
                                      topo.config_path(node)])


def start(topo: Topology, node: Node, argv: list[str] | None = None) -> subprocess.Popen:
    """Start node's daemon detached (own session, output to its log); write its pid file."""
    with open(topo.log_path(node), "ab") as log:
        proc = subprocess.Popen(argv or daemon_argv(topo, node), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    Path(topo.pid_path(node)).write_text(f"{proc.pid}\n")
    return proc


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return []
    return [] if state in ("Z", "X") else raw.decode(errors="replace").split("\0")


def _is_lab_daemon(pid: int, state_dir: str) -> bool:
    args = _cmdline(pid)
    return "run" in args and any(a.startswith(state_dir + "/") and a.endswith(".toml")
                                 for a in args)


def pid_of(topo: Topology, node: Node) -> int | None:
    """The pid of node's running daemon (from its pid file), None when it does not run."""
    try:
        pid = int(Path(topo.pid_path(node)).read_text())
    except (OSError, ValueError):
        return None
    return pid if _is_lab_daemon(pid, topo.state_dir) else None


def find(state_dir: str) -> list[int]:
    """Every running daemon whose configuration lies in state_dir: those of the pid files
    and any other (a pid file lost, a daemon started by hand with a lab config)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_lab_daemon(int(entry.name), state_dir):
            pids.add(int(entry.name))
    return sorted(pids)


def stop(pids: list[int], state_dir: str, timeout: float = 10.0) -> int:
    """SIGTERM (the daemons purge their registrations), SIGKILL after timeout. Returns how
    many were running."""
    pids = [p for p in pids if _is_lab_daemon(p, state_dir)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_cmdline(p) for p in pids):
            time.sleep(0.05)
        if not any(_cmdline(p) for p in pids):
            break
    return len(pids)


def log_tail(path: str) -> str:
    """The last non-empty line of a log, shortened, for one-line errors."""
    try:
        lines = [l.strip() for l in Path(path).read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [l for l in lines if l]
    return (lines[-1][:200] if lines else "")


def _not_ready(topo: Topology, node: Node) -> str | None:
    """Why node is not ready yet (None: ready). A spoke is ready when every NHS is up."""
    try:
        snap = request(topo.socket(node), {"cmd": "snapshot"}, timeout=2.0)["snapshot"]
    except XdmvpnError:
        return f"no answer on its control socket {topo.socket(node)}"
    states = [f"{n.get('nbma')} {n.get('state')}" for n in snap.get("nhs", [])
              if n.get("state") != "up"]
    if node.role == "spoke" and (states or not snap.get("nhs")):
        return "not registered to the hub (NHS " + (", ".join(states) or "none") + ")"
    return None


def wait_ready(topo: Topology, procs: dict[str, subprocess.Popen], timeout: float) -> float:
    """Until every daemon answers and every spoke is registered; seconds it took. Raises
    XdmvpnError naming the first node that failed, with its log."""
    start_t = time.monotonic()
    pending = list(topo.nodes)
    while True:
        for node in topo.nodes:
            proc = procs.get(node.name)
            if proc is not None and proc.poll() is not None:
                tail = log_tail(topo.log_path(node))
                raise XdmvpnError(f"{node.name}: the daemon exited with status "
                                  f"{proc.returncode}{': ' + tail if tail else ''} "
                                  f"(log: {topo.log_path(node)})")
        reasons = {n.name: _not_ready(topo, n) for n in pending}
        pending = [n for n in pending if reasons[n.name]]
        if not pending:
            return time.monotonic() - start_t
        if time.monotonic() - start_t > timeout:
            node = pending[0]
            raise XdmvpnError(f"{node.name}: {reasons[node.name]} after {timeout:g} s "
                              f"(log: {topo.log_path(node)})")
        time.sleep(0.2)


def wait_routes(topo: Topology, timeout: float = 5.0) -> None:
    """Until the hub's data plane carries every spoke LAN (the daemon mirrors the routes
    the lab adds); skipped when its stats have no "prefixes"."""
    want = {str(lan) for s in topo.spokes for lan in s.lans}
    deadline = time.monotonic() + timeout
    while True:
        stats = request(topo.socket(topo.hub), {"cmd": "stats"}, timeout=2.0)
        if "prefixes" not in stats:
            return
        missing = want - {p.get("prefix") for p in stats["prefixes"]}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise XdmvpnError(f"hub: the routes to {', '.join(sorted(missing))} are not in its "
                              f"data plane after {timeout:g} s (log: {topo.log_path(topo.hub)})")
        time.sleep(0.05)
