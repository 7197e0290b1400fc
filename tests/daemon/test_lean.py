"""A lean daemon: a real hub (`xdmvpn run` in a namespace) compiles and loads its programs
in a short-lived child process, then runs without bcc or LLVM in its address space, reaching
the pinned maps and programs through the bpf syscall; a data-plane reload uses the same
child. Whether bcc was imported is read from the outside, in /proc/PID/maps: importing bcc
maps libbcc (and LLVM with it), which the control test below shows for a process that does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from topo import Topology

pytestmark = pytest.mark.root

HEAVY = re.compile(r"libbcc|libLLVM|libclang")
LOADED = "compiled and loaded by a child process"


def heavy_libraries(pid: int) -> set[str]:
    """The bcc/LLVM shared objects mapped into process pid."""
    text = Path(f"/proc/{pid}/maps").read_text()
    return {Path(line.split()[-1]).name for line in text.splitlines() if HEAVY.search(line)}


def full_log(t, name: str) -> str:
    return t.logs[name].read_text(errors="replace")


def children(pid: int) -> list[str]:
    out: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += (task / "children").read_text().split()
    return out


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    t = Topology(tmp_path_factory.mktemp("lean"), spokes=1)
    try:
        t.start_all()
        yield t
    finally:
        t.close()


def test_a_process_that_imports_bcc_maps_libbcc_and_llvm():
    """The control for the checks below: the /proc test sees an import of bcc."""
    proc = subprocess.run([sys.executable, "-c", "import bcc, os, time; print(os.getpid()); "
                           "print(open('/proc/self/maps').read())"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert "libbcc" in proc.stdout and "libLLVM" in proc.stdout


def test_the_daemon_runs_without_bcc_after_start_up(hub):
    pid = hub.procs["hub1"].pid
    assert heavy_libraries(pid) == set()
    assert children(pid) == []                     # the loader child has exited
    assert full_log(hub, "hub1").count(LOADED) == 1
    progs = Path(f"/sys/fs/bpf/xdmvpn/{hub.instance('hub1')}/progs")
    assert {"xdmvpn_xdp_underlay", "xdmvpn_tc_encap", "xdmvpn_xdp_pass"} <= {
        p.name for p in progs.iterdir()}
    # the maps work through the pins: the spoke registered, its mapping is in the data plane
    hub.wait_for(lambda: hub.ask("hub1", "stats")["mappings"], 30,
                 message="the spoke's mapping in the hub's data plane")
    assert heavy_libraries(pid) == set()


def test_a_data_plane_reload_compiles_in_a_child_too(hub):
    pid = hub.procs["hub1"].pid
    config = hub.tmp / "hub1.toml"
    config.write_text(config.read_text().replace("mtu = 1400", "mtu = 1400\nttl = 32"))
    hub.ask("hub1", "reload")
    hub.wait_for(lambda: full_log(hub, "hub1").count(LOADED) == 2, 120,
                 message="the data plane rebuilt by a second child")
    assert "(data plane rebuilt)" in full_log(hub, "hub1")
    assert heavy_libraries(pid) == set()
    assert hub.procs["hub1"].poll() is None
    hub.wait_for(lambda: hub.ask("hub1", "stats")["mappings"], 30,
                 message="the mapping kept across the rebuild")
