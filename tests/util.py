"""Shared test helpers: where the repository is, the captures, running the real CLI,
insisting on root. (Namespaces: xdmvpn.netns, the product's one set of helpers.)"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def capture_files() -> list[Path]:
    """Every NHRP capture the codec is checked against: ours, shared/vectors beside the
    checkout, and any listed in $XDMVPN_EXTRA_CAPTURES (colon-separated paths)."""
    found = sorted((REPO / "tests" / "vectors").glob("*.pcap*"))
    shared = REPO.parent / "shared" / "vectors"
    if shared.is_dir():
        found += sorted(shared.glob("*.pcap*"))
    for extra in filter(None, os.environ.get("XDMVPN_EXTRA_CAPTURES", "").split(":")):
        found.append(Path(extra))
    unique, seen = [], set()
    for path in found:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(path)
    return unique


def scaled(seconds: float) -> float:
    """A timeout for this kernel: seconds times $XDMVPN_TIME_SCALE, which the VM tier sets
    in an emulated guest (several times slower); 1 everywhere else (docs/vm.md)."""
    from xdmvpn.lab.vm import time_scale
    return seconds * time_scale()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `xdmvpn` command of this interpreter's environment."""
    return subprocess.run([sys.executable, "-m", "xdmvpn", *args], capture_output=True,
                          text=True, timeout=timeout)


def need_root() -> None:
    """Tests that need root fail loudly without it: CI runs as root, skipping would hide."""
    if os.geteuid() != 0:
        raise AssertionError("this test needs root (network namespaces, raw sockets, BPF)")
