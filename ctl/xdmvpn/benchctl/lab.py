"""Namespaces, veths and `xdmvpn run` processes for `xdmvpn bench control`; small
helpers (shell, a process's CPU and RSS). Namespaces are made and entered with
xdmvpn.dataplane's helpers (netns, testrun.in_netns)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .. import control
from ..dataplane import netns as nsutil
from ..errors import XdmvpnError

KEY = 42
AUTH = "xdmvpn"
HOLDTIME = 7200
MTU = 1400

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35          # SO_TIMESTAMPNS_OLD: struct timespec of two longs


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise XdmvpnError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip()}")
    return r


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
        self.tag = uuid.uuid4().hex[:5]
        self.prefix = prefix
        self.tmp = Path(tempfile.mkdtemp(prefix=f"xdmvpn-bench-{prefix}-"))
        self.namespaces: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.instances: list[str] = []
        self.links = 0

    def ns(self, short: str) -> str:
        return f"x{self.prefix}{self.tag}{short}"

    def instance(self, short: str) -> str:
        return f"b{self.prefix}{self.tag}-{short}"

    def socket(self, short: str) -> str:
        return f"/run/xdmvpn/{self.instance(short)}.sock"

    def add_ns(self, short: str) -> str:
        name = self.ns(short)
        nsutil.add(name)
        self.namespaces.append(name)
        return name

    def veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
        self.links += 1
        nsutil.veth_between(f"v{self.tag}{self.links}", a_ns, a_if, b_ns, b_if)

    def start(self, short: str, config: str, profile: str | None = None) -> subprocess.Popen:
        """`xdmvpn run` in namespace ns(short), entered with nsenter (not `ip netns exec`,
        which remounts /sys and hides the shared bpffs)."""
        path = self.tmp / f"{short}.toml"
        path.write_text(config)
        self.instances.append(self.instance(short))
        log = open(self.tmp / f"{short}.log", "ab")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        py = [sys.executable]
        if profile:
            py += ["-m", "cProfile", "-o", profile]
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.ns(short)}", *py, "-m", "xdmvpn", "run",
             "--config", str(path)], stdout=log, stderr=log, env=env)
        log.close()
        self.procs[short] = proc
        return proc

    def wait_ready(self, short: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[short]
            if proc.poll() is not None:
                raise XdmvpnError(f"{short} exited {proc.returncode}: {self.log(short)}")
            try:
                control.request(self.socket(short), {"cmd": "ping"}, timeout=1.0)
                return
            except XdmvpnError:
                time.sleep(0.1)
        raise XdmvpnError(f"{short} not ready within {timeout:g} s: {self.log(short)}")

    def ask(self, short: str, cmd: str, timeout: float = 10.0, **kw) -> dict:
        return control.request(self.socket(short), {"cmd": cmd, **kw}, timeout=timeout)

    def log(self, short: str) -> str:
        path = self.tmp / f"{short}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, short: str, timeout: float = 30.0) -> None:
        proc = self.procs.pop(short, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def close(self) -> None:
        for short in list(self.procs):
            try:
                self.stop(short)
            except Exception:      # noqa: BLE001 - cleanup goes on
                pass
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        for inst in self.instances:
            sh("rm", "-rf", f"/sys/fs/bpf/xdmvpn/{inst}", check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)     # errors above quote the logs


def hub_config(instance: str, address: str, multicast: bool = True) -> str:
    return "\n".join([
        "[tunnel]", 'name = "dmvpn0"', f'address = "{address}"', 'source-interface = "eth0"',
        f"key = {KEY}", f"mtu = {MTU}", "adjust-mss = 1360", "",
        "[nhrp]", f"holdtime = {HOLDTIME}", f'authentication = "{AUTH}"', "redirect = true",
        'multicast = ["dynamic"]' if multicast else "", "",
        "[control]", f'instance = "{instance}"', ""])

