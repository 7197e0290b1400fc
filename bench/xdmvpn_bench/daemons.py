"""`xdmvpn run` processes in network namespaces, for the benchmarks and the daemon tests.

Each runs this very xdmvpn (PYTHONPATH), entered with `nsenter --net` (the machine's
bpffs and /run stay visible, so pins and control sockets are shared), its output in a
log file; it is ready when its control socket answers. (The lab's own daemons are
xdmvpn.lab.runner's: detached, with pid files.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import xdmvpn
from xdmvpn import control
from xdmvpn.errors import XdmvpnError
from xdmvpn.netns import enter_argv

#: Children import the very xdmvpn their parent runs.
XDMVPN_PATH = str(Path(xdmvpn.__file__).resolve().parents[1])


def spawn(ns: str, config: Path | str, log: Path | str, *args: str,
          python: list[str] | None = None) -> subprocess.Popen:
    """`xdmvpn run --config CONFIG ARGS...` in namespace ns, output appended to log;
    python: the interpreter's argv (e.g. with -m cProfile -o FILE)."""
    env = dict(os.environ, PYTHONPATH=XDMVPN_PATH)
    with open(log, "ab") as out:
        return subprocess.Popen(
            enter_argv(ns, [*(python or [sys.executable]), "-m", "xdmvpn", "run", "--config",
                            str(config), *args]), stdout=out, stderr=out, env=env)


def log_tail(log: Path | str | None, chars: int = 3000) -> str:
    path = Path(log) if log else None
    return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""


def wait_answering(name: str, proc: subprocess.Popen, socket: str, log: Path | str,
                   timeout: float) -> None:
    """Until the daemon answers a ping on its control socket; XdmvpnError with the end of
    its log when it exits or does not answer within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise XdmvpnError(f"{name} exited {proc.returncode}:\n{log_tail(log)}")
        try:
            control.request(socket, {"cmd": "ping"}, timeout=1.0)
            return
        except XdmvpnError:
            time.sleep(0.1)
    raise XdmvpnError(f"{name} not ready within {timeout:g} s:\n{log_tail(log)}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send sig and wait for the exit status; SIGKILL when it does not come in timeout."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(10)
