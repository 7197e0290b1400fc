"""The lab's namespaces without node daemons: built, reachable, `lab exec`, `lab up` on a
lab that exists, and `lab down` after a crash (daemons killed, pid file lost, pins and
sockets left). Root, real namespaces, a lab name of the test's own."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from labutil import cli, remove_stale_test_labs, unique_name
from util import need_root
from xdmvpn.errors import XdmvpnError
from xdmvpn.lab import manage, network, runner
from xdmvpn.netns import ip
from xdmvpn.pinger import Pinger

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def lab():
    need_root()
    remove_stale_test_labs()
    name = unique_name("n")
    manage.down(name)
    out = cli(name, "lab", "up", "--no-daemons")
    try:
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"Lab {name} is up: a hub and 2 spokes (no daemons)\n")
        yield manage.load(name)
    finally:
        manage.down(name)
    assert not any(manage.leftovers(name).values())


def test_namespaces_addresses_and_neighbours(lab):
    assert network.existing(lab.name) == sorted(lab.namespaces())
    spoke = lab.node("spoke1")
    addrs = ip("-br", "-4", "addr", ns=lab.ns(spoke))
    assert "192.0.2.11/24" in addrs and "10.0.1.1/24" in addrs
    neigh = ip("neigh", "show", "dev", "ul0", ns=lab.ns(spoke))
    assert "192.0.2.1 lladdr 02:00:c0:00:02:01 PERMANENT" in neigh
    assert "192.0.2.12 lladdr 02:00:c0:00:02:0c PERMANENT" in neigh
    assert "default via 10.0.1.1" in ip("route", ns=lab.host_ns(spoke))
    # the bridge's ports carry the pass program (veth delivers the hub's XDP_TX only so)
    ports = ip("-d", "link", "show", "master", "br0", ns=lab.bridge_ns)
    assert ports.count("prog/xdp") == 3, ports


def test_lan_host_reaches_its_router_and_nodes_reach_each_other(lab):
    spoke1, spoke2 = lab.node("spoke1"), lab.node("spoke2")
    pinger = Pinger(lab.host_ns(spoke1))
    try:
        assert pinger.echo("10.0.1.1", 1) is not None
        assert pinger.echo("10.0.2.10", 2, timeout=0.3) is None   # no tunnel: no way there
    finally:
        pinger.close()
    pinger = Pinger(lab.ns(spoke1))
    try:
        assert pinger.echo(str(lab.hub.underlay.ip), 1) is not None
        assert pinger.echo(str(spoke2.underlay.ip), 2) is not None
    finally:
        pinger.close()


def test_exec_runs_in_the_node_namespace(lab):
    out = cli(lab.name, "lab", "exec", "spoke2-host", "--", "ip", "-4", "-br", "addr")
    assert out.returncode == 0, out.stderr
    assert "10.0.2.10/24" in out.stdout
    out = cli(lab.name, "lab", "exec", "hub", "--", "sh", "-c", "exit 7")
    assert out.returncode == 7


def test_exec_errors_are_one_line(lab):
    out = cli(lab.name, "lab", "exec", "spoke9", "--", "true")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "no node 'spoke9' (one of: hub, spoke1, spoke2, hub-host" in out.stderr
    out = cli(lab.name, "lab", "exec", "hub")
    assert out.returncode == 2 and "give a command" in out.stderr


def test_ping_errors_are_one_line(lab):
    for args, message in (
            (["spoke1", "spoke1"], "ping spoke1 spoke1: give two different nodes"),
            (["spoke1", "spoke7"], "no node 'spoke7' in lab"),
            (["spoke1", "spoke2"], f"the hub's daemon does not answer on /run/xdmvpn/"
                                   f"{lab.name}-hub.sock, so no path can be told"),
            (["spoke1", "spoke2", "--count", "0"], "--count must be at least 1")):
        out = cli(lab.name, "lab", "ping", *args)
        assert out.returncode == 2, args
        assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_up_when_the_lab_exists_says_run_down(lab):
    out = cli(lab.name, "lab", "up")
    assert out.returncode == 2
    assert out.stderr == (f"xdmvpn: error: lab {lab.name} is already up ({lab.ns(lab.hub)} "
                          "exists): run `xdmvpn lab down` first\n")
    assert network.existing(lab.name) == sorted(lab.namespaces())


def test_commands_on_a_lab_that_is_not_up():
    name = unique_name("z")
    for args in (["status"], ["ping", "spoke1", "spoke2"], ["exec", "hub", "--", "true"]):
        out = cli(name, "lab", *args)
        assert out.returncode == 2
        assert out.stderr == (f"xdmvpn: error: lab {name} is not up (start it with "
                              "`xdmvpn lab up`)\n"), args
    out = cli(name, "lab", "down")
    assert (out.returncode, out.stdout) == (0, f"lab down ({name}): nothing to remove\n")


FAKE_DAEMON = "import time\nwhile True: time.sleep(1)"


def test_down_after_a_crash_removes_everything():
    """Daemons killed with SIGKILL (pins and sockets stay), one still running whose pid
    file is gone, namespaces left: `lab down` finds all by name and removes it."""
    need_root()
    name = unique_name("c")
    manage.down(name)
    topo, _ = manage.up(1, name, daemons=False)
    procs = {}
    for node in topo.nodes:   # stand-ins: matched like daemons by their command line
        argv = runner.daemon_argv(topo, node)
        procs[node.name] = runner.start(topo, node, argv[:3] + [sys.executable, "-c",
                                                               FAKE_DAEMON,
                                                               *argv[argv.index("run"):]])
    for node in topo.nodes:
        pin = Path(f"/sys/fs/bpf/xdmvpn/{topo.instance(node)}")
        pin.mkdir(parents=True)
        Path(topo.socket(node)).touch()
    time.sleep(0.3)
    assert sorted(runner.find(topo.state_dir)) == sorted(p.pid for p in procs.values())
    assert runner.pid_of(topo, topo.hub) == procs["hub"].pid
    os.kill(procs["hub"].pid, signal.SIGKILL)                 # crashed
    procs["hub"].wait()
    os.unlink(topo.pid_path(topo.node("spoke1")))             # pid file lost
    assert runner.pid_of(topo, topo.hub) is None
    found = manage.leftovers(name)
    assert found["daemons"] == [procs["spoke1"].pid]
    assert len(found["namespaces"]) == 5 and len(found["pins"]) == 2
    assert len(found["sockets"]) == 2 and found["state"] is not None

    out = cli(name, "lab", "down")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (f"lab down ({name}): stopped 1 daemon, removed 5 namespaces, "
                          f"2 pin directories, 2 sockets, /run/xdmvpn/{name}\n")
    assert procs["spoke1"].wait(timeout=5) == -signal.SIGTERM
    assert not any(manage.leftovers(name).values())
    out = cli(name, "lab", "down")
    assert out.stdout == f"lab down ({name}): nothing to remove\n"


def test_a_daemon_that_exits_is_named_with_its_log():
    need_root()
    name = unique_name("e")
    manage.down(name)
    topo, _ = manage.up(1, name, daemons=False)
    try:
        argv = runner.daemon_argv(topo, topo.hub)
        proc = runner.start(topo, topo.hub, argv[:3] + [
            sys.executable, "-c", "import sys; print('\\nxdmvpn: error: no bpf\\n'); "
                                  "sys.exit(3)"])
        with pytest.raises(XdmvpnError) as info:
            runner.wait_ready(topo, {"hub": proc}, timeout=30)
        assert str(info.value) == (f"hub: the daemon exited with status 3: xdmvpn: error: no "
                                   f"bpf (log: /run/xdmvpn/{name}/hub.log)")
    finally:
        manage.down(name)
