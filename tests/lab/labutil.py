"""Helpers of the lab tests: a lab name of their own (never the user's "lab"), the real CLI
with that name, and removal of labs that earlier test runs left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from xdmvpn import netns
from xdmvpn.lab import manage
from xdmvpn.lab.topology import NAME_ENV

TEST_PREFIX = "xlt"


def unique_name(tag: str = "") -> str:
    """A lab name unique to this test process, e.g. xlt12345a."""
    return f"{TEST_PREFIX}{os.getpid()}{tag}"


def cli(name: str, *args: str, timeout: float = 180,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`xdmvpn ARGS...` of this interpreter's environment (plus env), on lab `name`."""
    return subprocess.run([sys.executable, "-m", "xdmvpn", *args], capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, NAME_ENV: name, **(env or {})})


def remove_stale_test_labs() -> None:
    """Labs of test processes that died before their clean-up (their pid is gone)."""
    names = "\n".join(netns.names())
    for pid, tag in set(re.findall(rf"^{TEST_PREFIX}(\d+)([a-z]?)-", names, re.M)):
        if not os.path.exists(f"/proc/{pid}"):
            manage.down(f"{TEST_PREFIX}{pid}{tag}")
