"""Network namespaces for tests: created fresh, removed afterwards (test helper)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid


def need_root() -> None:
    """Tests that need root fail loudly without it: CI runs as root, skipping would hide."""
    if os.geteuid() != 0:
        raise AssertionError("this test needs root (network namespaces, raw sockets, BPF)")


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60, **kw)


class Namespaces:
    """A set of namespaces joined pairwise by veth; `py(ns, code)` runs Python inside one."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self.names: list[str] = []
        self.links = 0

    def add(self, short: str) -> str:
        name = f"xt{self.tag}{short}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        self.links += 1
        tmp_a, tmp_b = f"t{self.tag}{self.links}a", f"t{self.tag}{self.links}b"
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        for ns, ifn, addr, tmp in ((a, a_if, a_addr, tmp_a), (b, b_if, b_addr, tmp_b)):
            sh("ip", "link", "set", tmp, "netns", ns)
            sh("ip", "-n", ns, "link", "set", tmp, "name", ifn)
            sh("ip", "-n", ns, "addr", "add", addr, "dev", ifn)
            sh("ip", "-n", ns, "link", "set", ifn, "up")

    def run(self, ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *cmd, **kw)

    def popen(self, ns: str, *cmd: str) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def py(self, ns: str, code: str, **kw) -> subprocess.CompletedProcess:
        return self.run(ns, sys.executable, "-c", code, **kw)

    def close(self) -> None:
        for name in self.names:
            sh("ip", "netns", "del", name, check=False)
        self.names.clear()

    def __enter__(self):
        need_root()
        return self

    def __exit__(self, *exc):
        self.close()
