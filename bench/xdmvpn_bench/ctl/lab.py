"""Namespaces, veths and `xdmvpn run` processes for `xdmvpn bench control`; small
helpers (a process's CPU and RSS, percentiles, waiting). Namespaces are made, linked and
entered with the product's helpers (xdmvpn.netns)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xdmvpn import control
from xdmvpn.errors import XdmvpnError
from xdmvpn.netns import Namespaces

from .. import daemons

KEY = 42
AUTH = "xdmvpn"
HOLDTIME = 7200
MTU = 1400

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35          # SO_TIMESTAMPNS_OLD: struct timespec of two longs


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise XdmvpnError(f"no VmRSS for process {pid}")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)



def wait_for(what, timeout: float, message: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise XdmvpnError(f"timed out: {message}")
        time.sleep(step)


# -- namespaces and daemons -------------------------------------------------------------------

class Lab:
    """Namespaces, veths and `xdmvpn run` processes, all removed by close()."""

    def __init__(self, prefix: str):
        self.spaces = Namespaces(f"x{prefix}")
        self.tag = self.spaces.tag
        self.prefix = prefix
        self.tmp = Path(tempfile.mkdtemp(prefix=f"xdmvpn-bench-{prefix}-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.instances: list[str] = []

    def ns(self, short: str) -> str:
        return self.spaces.name(short)

    def instance(self, short: str) -> str:
        return f"b{self.prefix}{self.tag}-{short}"

    def socket(self, short: str) -> str:
        return f"/run/xdmvpn/{self.instance(short)}.sock"

    def add_ns(self, short: str, *settings: str) -> str:
        return self.spaces.add(short, *settings)

    def veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str, a_addr: str | None = None,
             b_addr: str | None = None) -> None:
        self.spaces.link(a_ns, a_if, b_ns, b_if, a_addr, b_addr)

    def start(self, short: str, config: str, profile: str | None = None) -> subprocess.Popen:
        """`xdmvpn run` in namespace ns(short), entered with nsenter (not `ip netns exec`,
        which remounts /sys and hides the shared bpffs)."""
        path = self.tmp / f"{short}.toml"
        path.write_text(config)
        self.instances.append(self.instance(short))
        py = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
        proc = daemons.spawn(self.ns(short), path, self.tmp / f"{short}.log", python=py)
        self.procs[short] = proc
        return proc

    def wait_ready(self, short: str, timeout: float = 90.0) -> None:
        daemons.wait_answering(short, self.procs[short], self.socket(short),
                               self.tmp / f"{short}.log", timeout)

    def ask(self, short: str, cmd: str, timeout: float = 10.0, **kw) -> dict:
        return control.request(self.socket(short), {"cmd": cmd, **kw}, timeout=timeout)

    def log(self, short: str) -> str:
        return daemons.log_tail(self.tmp / f"{short}.log")

    def stop(self, short: str, timeout: float = 30.0) -> None:
        proc = self.procs.pop(short, None)
        if proc is not None:
            daemons.stop(proc, timeout=timeout)

    def close(self) -> None:
        for short in list(self.procs):
            try:
                self.stop(short)
            except Exception:      # noqa: BLE001 - cleanup goes on
                pass
        self.spaces.close()
        for inst in self.instances:
            shutil.rmtree(f"/sys/fs/bpf/xdmvpn/{inst}", ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)     # errors above quote the logs


def hub_config(instance: str, address: str, multicast: bool = True, auth: bool = True,
               unknown_rate: int | None = None) -> str:
    """unknown_rate: the NHRP packets/s the data plane admits from unknown sources (every
    first-time registration is one), the default's when None."""
    return "\n".join([
        "[tunnel]", 'name = "dmvpn0"', f'address = "{address}"', 'source-interface = "eth0"',
        f"key = {KEY}", f"mtu = {MTU}", "adjust-mss = 1360", "",
        "[nhrp]", f"holdtime = {HOLDTIME}", f'authentication = "{AUTH}"' if auth else "",
        "redirect = true",
        'multicast = ["dynamic"]' if multicast else "",
        f"unknown-budget = {{ rate = {unknown_rate} }}" if unknown_rate else "", "",
        "[control]", f'instance = "{instance}"', ""])

