"""FRR's zebra and nhrpd in a network namespace, for the FRR interop tests and
`xdmvpn bench control --vs-frr` (harness).

Each FRR node gets the kernel's own multipoint GRE device (ip_gre, no remote address, as
FRR's documentation creates it) and a zebra + nhrpd pair under a pathspace of its own
(`-N`), so that several FRR nodes run on one machine and `vtysh -N <pathspace>` talks to
one of them. The daemons run in the foreground as root (their logs and configuration stay
in a directory that only root can read, e.g. pytest's), entered with `nsenter --net` so
that /run (their sockets under /run/frr/<pathspace>/) is the machine's."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from xdmvpn.errors import XdmvpnError
from xdmvpn.netns import enter_argv, ip

FRR_LIB = Path("/usr/lib/frr")
RUN_DIR = Path("/run/frr")
DAEMONS = ("zebra", "nhrpd")


def missing() -> str | None:
    """Why FRR cannot run here (one line), or None."""
    for d in DAEMONS:
        if not os.access(FRR_LIB / d, os.X_OK):
            return f"{FRR_LIB / d} is missing (Debian: apt-get install frr; ./setup.sh)"
    if not shutil.which("vtysh"):
        return "vtysh is missing (Debian: apt-get install frr; ./setup.sh)"
    return None


def gre_device(ns: str, tunnel_ip: str, key: int, mtu: int, dev: str = "eth0",
               name: str = "gre1", ttl: int = 64) -> None:
    """The kernel's multipoint GRE device of an FRR node: `ip tunnel add NAME mode gre key
    KEY ttl TTL dev DEV`, the tunnel address as a /32 (nhrpd adds host routes to peers),
    the tunnel MTU, up."""
    ip("tunnel", "add", name, "mode", "gre", "key", str(key), "ttl", str(ttl), "dev", dev,
       ns=ns)
    ip("addr", "add", f"{tunnel_ip}/32", "dev", name, ns=ns)
    ip("link", "set", name, "mtu", str(mtu), "up", ns=ns)


class Frr:
    """zebra + nhrpd of one node: start(config text), vtysh, stop()."""

    def __init__(self, ns: str, pathspace: str, workdir: Path):
        self.ns = ns
        self.pathspace = pathspace
        self.dir = Path(workdir)
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.pathspace

    def log_path(self, daemon: str) -> Path:
        return self.dir / f"{daemon}.out"

    def start(self, nhrpd_config: str, timeout: float = 30.0,
              log_level: str = "debug") -> None:
        """zebra (empty configuration), then nhrpd with nhrpd_config; returns once nhrpd
        answers through vtysh. log_level: the daemons' (--log-level)."""
        why = missing()
        if why:
            raise XdmvpnError(f"FRR: {why}")
        self.dir.mkdir(parents=True, exist_ok=True)
        run = self.run_dir
        run.mkdir(parents=True, exist_ok=True)
        (run / "zebra.conf").write_text("")
        (run / "nhrpd.conf").write_text(nhrpd_config)
        (self.dir / "nhrpd.conf").write_text(nhrpd_config)         # beside the logs
        uid, gid = pwd.getpwnam("frr").pw_uid, grp.getgrnam("frr").gr_gid
        for path in (run.parent, run, run / "zebra.conf", run / "nhrpd.conf"):
            os.chown(path, uid, gid)
        for d in DAEMONS:
            self._spawn(d, log_level)
            if d == "zebra":
                self._wait_socket(self.run_dir / "zserv.api", timeout)
        self.wait_answering(timeout)

    def _spawn(self, daemon: str, log_level: str) -> None:
        argv = [str(FRR_LIB / daemon), "-N", self.pathspace,
                "-f", str(self.run_dir / f"{daemon}.conf"),
                "-i", str(self.run_dir / f"{daemon}.pid"), "--log", "stdout",
                "--log-level", log_level]
        with open(self.log_path(daemon), "ab") as out:
            self.procs[daemon] = subprocess.Popen(enter_argv(self.ns, argv), stdout=out,
                                                  stderr=out, stdin=subprocess.DEVNULL)

    def _wait_socket(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise XdmvpnError(f"FRR {self.pathspace}: no {path} within {timeout:g} s")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        for d, p in self.procs.items():
            if p.poll() is not None:
                out = self.log_path(d).read_text(errors="replace")[-2000:]
                raise XdmvpnError(f"FRR {self.pathspace}: {d} exited {p.returncode}: {out}")

    def wait_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                self.show_json("show ip nhrp cache json")
                return
            except XdmvpnError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def vtysh(self, *commands: str, timeout: float = 30.0, harmless: tuple[str, ...] = ()
              ) -> str:
        """vtysh -N <pathspace> -c COMMAND... (standard output); XdmvpnError when vtysh
        fails or says `%` something (an unknown command, no daemon) other than lines that
        match a `harmless` pattern (e.g. a clear's "% 1 entries cleared")."""
        argv = ["vtysh", "-N", self.pathspace]
        for c in commands:
            argv += ["-c", c]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        bad = [ln for ln in done.stdout.splitlines()
               if ln.startswith("%") and not any(re.fullmatch(h, ln.strip())
                                                 for h in harmless)]
        if done.returncode != 0 or bad:
            why = (done.stderr.strip() + " " + " ".join(bad)).strip()
            raise XdmvpnError(f"vtysh -N {self.pathspace} {' '.join(commands)}: "
                              f"{why or f'exit {done.returncode}'}")
        return done.stdout

    def show_json(self, command: str) -> dict:
        """A `... json` command's object. (FRR 8.4 prints `show ip nhrp shortcut json`'s
        table header before the JSON: whatever precedes the first line that opens an
        object or array is skipped.)"""
        out = self.vtysh(command)
        lines = out.splitlines()
        start = next((i for i, ln in enumerate(lines) if ln.startswith(("{", "["))), 0)
        try:
            return json.loads("\n".join(lines[start:]))
        except ValueError:
            raise XdmvpnError(f"vtysh {command}: not JSON: {out[:200]!r}") from None

    def pids(self) -> dict[str, int]:
        return {d: p.pid for d, p in self.procs.items() if p.poll() is None}

    def stop(self, timeout: float = 20.0) -> None:
        for d in reversed(DAEMONS):
            p = self.procs.pop(d, None)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        shutil.rmtree(self.run_dir, ignore_errors=True)
