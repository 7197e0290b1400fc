"""`xdmvpn lab` with real node daemons: up (every spoke registered), status, ping
(first packets via the hub, then direct over the phase-3 shortcut), down, down after the
daemons were killed, and a registration timeout. Root, real namespaces and BPF."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labutil import cli, remove_stale_test_labs, unique_name
from util import need_root
from xdmvpn.lab import manage, runner
from xdmvpn.lab.topology import NAME_ENV

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    need_root()
    remove_stale_test_labs()
    name = unique_name("d")
    manage.down(name)
    out = cli(name, "lab", "up", "--spokes", "2", "--timeout", "90")
    try:
        assert out.returncode == 0, out.stderr
        yield name, out.stdout
    finally:
        manage.down(name)


def test_up_prints_the_topology(lab):
    name, stdout = lab
    lines = stdout.splitlines()
    assert re.fullmatch(rf"Lab {name} is up: a hub and 2 spokes, every spoke registered in "
                        r"\d+\.\d s", lines[0]), lines[0]
    assert lines[3].split() == ["hub", f"{name}-hub", "192.0.2.1", "172.16.0.1",
                                "10.0.0.0/24", "10.0.0.10"]
    assert lines[5].split() == ["spoke2", f"{name}-spoke2", "192.0.2.12", "172.16.0.12",
                                "10.0.2.0/24", "10.0.2.10"]


def test_status_every_spoke_registered(lab):
    name, _ = lab
    out = cli(name, "lab", "status", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    status = json.loads(out.stdout)
    assert status["healthy"] is True
    nodes = {n["node"]: n for n in status["nodes"]}
    assert nodes["hub"]["registered"] == 2 and nodes["hub"]["answers"]
    for spoke in ("spoke1", "spoke2"):
        assert nodes[spoke]["nhs"] == [{"nbma": "192.0.2.1", "state": "up"}]
    out = cli(name, "lab", "status")
    rows = [line.split() for line in out.stdout.splitlines()]
    assert rows[0] == ["Node", "Namespace", "Daemon", "NHS", "Registered", "Shortcuts"]
    assert rows[1][:3] == ["hub", f"{name}-hub", "pid"] and rows[1][4:6] == ["-", "2"]
    assert rows[2][4:6] == ["up", "-"]


def test_ping_goes_via_the_hub_then_direct(lab):
    name, _ = lab
    out = cli(name, "lab", "ping", "spoke1", "spoke2", "--count", "8", "--interval", "0.3",
              "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    packets, summary = lines[:-1], lines[-1]["summary"]
    paths = [p["path"] for p in packets]
    assert paths[0] == "hub" and packets[0]["hub_forwarded"] >= 2, paths
    assert paths[-1] == "direct", paths
    first_direct = paths.index("direct")
    assert set(paths[first_direct:]) == {"direct"}, paths       # once direct, stays direct
    assert summary["sent"] == summary["received"] == 8
    assert summary["via_hub"] + summary["direct"] + summary["mixed"] == 8
    assert summary["via_hub"] >= 1 and summary["direct"] >= 1
    status = json.loads(cli(name, "lab", "status", "--json").stdout)
    assert {n["node"]: n["shortcuts"] for n in status["nodes"]}["spoke1"] >= 1


def test_ping_text_output(lab):
    name, _ = lab
    out = cli(name, "lab", "ping", "spoke2", "hub", "-c", "2", "-i", "0")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "spoke2 -> hub: 10.0.2.10 -> 10.0.0.10, 2 packets, one at a time"
    assert all(re.fullmatch(r"seq \d +\d+\.\d\d ms  via hub", line) for line in lines[1:3])
    assert lines[3] == "spoke2 -> hub: 2 sent, 2 received, 0 lost; 2 via hub, 0 direct"


def test_exec_sees_the_daemon_made_tunnel(lab):
    name, _ = lab
    out = cli(name, "lab", "exec", "spoke1", "--", "ip", "-4", "-br", "addr", "show", "dmvpn0")
    assert out.returncode == 0 and "172.16.0.11/24" in out.stdout


# sudo's secure_path: no venv on it, as when the lab was started with sudo .venv/bin/xdmvpn
SUDO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_show_inside_a_node_asks_that_nodes_daemon(lab):
    """`xdmvpn lab exec NODE -- xdmvpn show ...`: xdmvpn is on PATH in there (this one's
    bin directory first) and show asks NODE's daemon ($XDMVPN_INSTANCE), not dmvpn0."""
    name, _ = lab
    out = cli(name, "lab", "exec", "spoke1", "--", "xdmvpn", "show", "nhs", "--json",
              env={"PATH": SUDO_PATH})
    assert out.returncode == 0, out.stderr
    assert [(n["nbma"], n["state"]) for n in json.loads(out.stdout)] == [("192.0.2.1", "up")]
    out = cli(name, "lab", "exec", "hub", "--", "xdmvpn", "show", "cache", env={"PATH": SUDO_PATH})
    assert out.returncode == 0 and "172.16.0.11" in out.stdout and "172.16.0.12" in out.stdout
    out = cli(name, "lab", "exec", "spoke2", "--", "sh", "-c",
              'echo "$XDMVPN_INSTANCE"; command -v xdmvpn', env={"PATH": SUDO_PATH})
    assert out.stdout.splitlines() == [f"{name}-spoke2",
                                       os.path.join(os.path.dirname(sys.executable), "xdmvpn")]
    # a LAN host has no daemon: nothing names one there
    out = cli(name, "lab", "exec", "spoke2-host", "--", "sh", "-c",
              'echo "${XDMVPN_INSTANCE-unset}"')
    assert out.stdout == "unset\n"
    # --instance and --socket still choose another daemon
    out = cli(name, "lab", "exec", "spoke1", "--", "xdmvpn", "show", "nhs", "--json",
              "--instance", f"{name}-hub")
    assert out.returncode == 0 and json.loads(out.stdout) == []


def printed_commands(output: str) -> list[str]:
    """The commands a lab output tells its reader to type: `$ CMD` lines and the
    `;`-separated commands after `try: `."""
    found = []
    for line in output.splitlines():
        if line.startswith("$ "):
            found.append(line[2:])
        elif "try: " in line:
            found += [c.strip() for c in line.split("try: ", 1)[1].split(";")]
    return found


def test_down_stops_the_daemons_and_removes_everything():
    need_root()
    name = unique_name("s")
    manage.down(name)
    try:
        out = cli(name, "lab", "up", "--spokes", "1", "--timeout", "90")
        assert out.returncode == 0, out.stderr
        pins = [Path(f"/sys/fs/bpf/xdmvpn/{name}-{n}") for n in ("hub", "spoke1")]
        assert all(p.is_dir() for p in pins)       # the daemons pin in the machine's bpffs
        out = cli(name, "lab", "down")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"lab down ({name}): stopped 2 daemons, removed 5 "
                                     "namespaces"), out.stdout
        assert not any(manage.leftovers(name).values())
    finally:
        manage.down(name)


def test_down_after_the_daemons_were_killed():
    need_root()
    name = unique_name("k")
    manage.down(name)
    try:
        out = cli(name, "lab", "up", "--spokes", "1", "--timeout", "90")
        assert out.returncode == 0, out.stderr
        topo = manage.load(name)
        pids = [runner.pid_of(topo, n) for n in topo.nodes]
        assert None not in pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while runner.find(topo.state_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = manage.leftovers(name)
        assert left["daemons"] == [] and len(left["pins"]) == 2 and len(left["sockets"]) == 2
        out = cli(name, "lab", "down")
        assert out.returncode == 0, out.stderr
        assert out.stdout == (f"lab down ({name}): removed 5 namespaces, 2 pin directories, "
                              f"2 sockets, /run/xdmvpn/{name}\n")
        assert not any(manage.leftovers(name).values())
    finally:
        manage.down(name)


def test_registration_timeout_is_one_line_naming_the_node_and_its_log():
    need_root()
    name = unique_name("t")
    manage.down(name)
    try:
        out = cli(name, "lab", "up", "--spokes", "1", "--timeout", "0.1")
        assert out.returncode == 2
        assert out.stderr.count("\n") == 1
        assert re.fullmatch(
            rf"xdmvpn: error: (hub|spoke1): (no answer on its control socket \S+|not "
            rf"registered to the hub \(NHS .*\)) after 0.1 s \(log: /run/xdmvpn/{name}/"
            r"(hub|spoke1)\.log\); the lab stays up for a look, `xdmvpn lab down` removes "
            r"it\n", out.stderr), out.stderr
        out = cli(name, "lab", "down")
        assert out.returncode == 0 and "stopped 2 daemons" in out.stdout, out.stdout
    finally:
        manage.down(name)


def test_demo_replaces_a_lab_and_shows_the_shortcut_appearing():
    """The README's main job, on a lab of its own: run twice, the second replaces the first."""
    name = unique_name("d")
    try:
        first = cli(name, "lab", "demo")
        assert first.returncode == 0, first.stdout + first.stderr
        again = cli(name, "lab", "demo")
        assert again.returncode == 0, again.stdout + again.stderr
        out = again.stdout
        assert out.startswith("removed the previous lab\n")
        seqs = [ln for ln in out.splitlines() if ln.startswith("seq ")]
        assert len(seqs) == 8 and "via hub" in seqs[0] and "direct" in seqs[-1]
        assert "spoke1 -> spoke2: 8 sent, 8 received, 0 lost" in out
        table = out.split("xdmvpn show shortcut\n")[1].splitlines()
        assert table[0].split()[:3] == ["Type", "Prefix", "Via"]
        assert table[1].split()[:3] == ["dynamic", "10.0.2.0/24", "172.16.0.12"]
    finally:
        manage.down(name)


def test_the_demos_printed_commands_work_when_typed():
    """Started the README's way (.venv/bin/xdmvpn, here from a shell whose PATH is sudo's),
    every command the demo prints runs as printed through a shell and does what it says."""
    need_root()
    name = unique_name("p")
    env = {**os.environ, NAME_ENV: name, "PATH": SUDO_PATH}
    xdmvpn = os.path.join(os.path.dirname(sys.executable), "xdmvpn")
    try:
        demo = subprocess.run([xdmvpn, "lab", "demo"], capture_output=True, text=True,
                              timeout=300, env=env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        commands = printed_commands(demo.stdout)
        assert commands == [f"{xdmvpn} lab ping spoke1 spoke2", f"{xdmvpn} lab status",
                            f"{xdmvpn} lab ping spoke1 spoke2 --count 8 --interval 0.3",
                            f"{xdmvpn} lab exec spoke1 -- xdmvpn show shortcut",
                            f"{xdmvpn} lab status",
                            f"{xdmvpn} lab exec spoke2 -- xdmvpn show cache"]
        ran = {}
        for command in commands:
            res = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                 timeout=120, env=env)
            assert res.returncode == 0 and res.stderr == "", (command, res.stdout, res.stderr)
            ran[command.split(f"{xdmvpn} ", 1)[1]] = res.stdout
        assert "spoke1 -> spoke2: 8 sent, 8 received, 0 lost" in \
            ran["lab ping spoke1 spoke2 --count 8 --interval 0.3"]
        shortcut = ran["lab exec spoke1 -- xdmvpn show shortcut"].splitlines()
        assert shortcut[1].split()[:3] == ["dynamic", "10.0.2.0/24", "172.16.0.12"]
        assert "172.16.0.1 " in ran["lab exec spoke2 -- xdmvpn show cache"]
        assert ran["lab status"].splitlines()[0].split()[0] == "Node"
    finally:
        manage.down(name)
