"""The daemon under change: hub restart, shortcut expiry, NBMA change, NHS failover, a
conflicting unique registration, clean shutdown and reload. Real processes, namespaces and
BPF; short holdtimes so that refreshes happen within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from topo import Topology
from util import run_cli
from xdmvpn.daemon.routes import RTPROT_XDMVPN

pytestmark = pytest.mark.root


@pytest.fixture
def topo(tmp_path):
    made = []

    def make(**kw):
        t = Topology(tmp_path, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def up(t, spokes=("spoke1", "spoke2"), hub="hub1"):
    t.start_all()
    t.wait_for(lambda: all(t.registered(s, hub) for s in spokes), 30,
               message="spokes registered")
    # the hub mirrors each spoke's LAN route into its data plane once the spoke registered
    t.wait_for(lambda: len(t.ask(hub, "stats")["prefixes"]) == len(spokes), 10,
               message="LAN routes mirrored at the hub")


def flood(t, src, dst_ip, seconds, interval=0.01):
    """Pings in the background: (process, count sent)."""
    count = int(seconds / interval)
    ns = t.ns(f"{src}lan")
    return subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count),
                             "-i", str(interval), "-W", "1", dst_ip],
                            stdout=subprocess.PIPE, text=True)


def received(proc) -> tuple[int, int]:
    out = proc.communicate(timeout=120)[0]
    line = next(ln for ln in out.splitlines() if "transmitted" in ln)
    sent, got = line.split(",")[:2]
    return int(sent.split()[0]), int(got.split()[0])


def shortcut_prefixes(t, node):
    return {s["prefix"] for s in t.snapshot(node)["shortcuts"]}


def make_shortcut(t, a="spoke1", b="spoke2"):
    lan = f"10.0.{int(b[5:])}.0/24"

    def made():
        t.ping(a, t.lan_host(b), count=1, wait=1)
        return lan in shortcut_prefixes(t, a)
    t.wait_for(made, 10, step=0.2, message=f"shortcut {a} -> {b}")


def test_hub_killed_and_restarted_forwarding_continues_and_spokes_reregister(topo):
    t = topo(holdtime=9)
    up(t)
    # no shortcut allowed: all traffic crosses the hub's data plane
    flow = flood(t, "spoke1", t.tunnel_ip("spoke2"), 6, interval=0.02)   # hub hairpin
    time.sleep(1)
    t.stop("hub1", signal.SIGKILL)                 # controller gone, pinned maps stay
    time.sleep(1)
    t.start("hub1")
    sent, got = received(flow)
    assert got == sent, f"{sent - got} of {sent} lost across the hub controller restart"
    assert "adopted the pinned data plane: 2 mappings" in t.log("hub1")
    # the spokes refresh (holdtime/3 = 3 s) and the new hub learns them again
    t.wait_for(lambda: {e["protocol"] for e in t.snapshot("hub1")["cache"]
                        if e["type"] == "dynamic"} == {t.tunnel_ip("spoke1"),
                                                       t.tunnel_ip("spoke2")}, 15,
               message="re-registration at the restarted hub")
    assert t.registered("spoke1") and t.registered("spoke2")


def test_spoke_killed_and_restarted_keeps_its_shortcut_traffic(topo):
    t = topo(holdtime=30)
    up(t)
    make_shortcut(t)
    hub_before = t.path("hub1", "hairpin")
    flow = flood(t, "spoke1", t.lan_host("spoke2"), 5, interval=0.02)
    time.sleep(1)
    t.stop("spoke1", signal.SIGKILL)
    time.sleep(1)
    t.start("spoke1")
    sent, got = received(flow)
    assert got == sent, f"{sent - got} of {sent} lost across the spoke controller restart"
    assert t.path("hub1", "hairpin") == hub_before     # still direct, never via the hub


def test_sigterm_with_keep_dataplane_restarts_without_dropping_forwarding(topo):
    """What the systemd unit does on `systemctl restart`: SIGTERM with --keep-dataplane,
    no purge, the next start adopts the pinned maps."""
    t = topo(holdtime=30)
    t.run_args = ("--keep-dataplane",)
    up(t)
    make_shortcut(t)
    flow = flood(t, "spoke1", t.tunnel_ip("spoke2"), 5, interval=0.02)      # via the hub
    flow2 = flood(t, "spoke1", t.lan_host("spoke2"), 5, interval=0.02)      # shortcut
    time.sleep(1)
    assert t.stop("hub1") == 0
    assert "data plane left running" in t.log("hub1")
    assert "purge requests sent" not in t.log("hub1")
    t.start("hub1")
    assert "adopted the pinned data plane: 2 mappings, 2 prefixes" in t.log("hub1")
    for f in (flow, flow2):
        sent, got = received(f)
        assert got == sent, f"{sent - got} of {sent} lost across systemctl restart"
    assert t.registered("spoke1") and t.registered("spoke2")


def test_shortcut_refreshed_while_used_and_expires_when_idle(topo):
    t = topo(holdtime=6)
    up(t)
    make_shortcut(t)
    first = t.snapshot("spoke1")["shortcuts"][0]
    # in use for longer than its holdtime: refreshed, never removed
    flow = flood(t, "spoke1", t.lan_host("spoke2"), 9, interval=0.1)
    sent, got = received(flow)
    assert got == sent
    now = t.snapshot("spoke1")
    assert "10.0.2.0/24" in {s["prefix"] for s in now["shortcuts"]}
    assert t.ask("spoke1", "stats")["nhrp"].get("shortcut_refresh_sent", 0) >= 1
    assert now["shortcuts"][0]["installed"] == first["installed"]
    # idle: gone within its holdtime, with its route
    t.wait_for(lambda: "10.0.2.0/24" not in shortcut_prefixes(t, "spoke1"), 12,
               message="shortcut expiry")
    routes = t.exec("spoke1", "ip", "-j", "route", "show", "proto", str(RTPROT_XDMVPN))
    assert json.loads(routes.stdout) == []
    assert t.ask("spoke1", "stats")["prefixes"] == []


def test_nbma_change_purges_stale_shortcuts(topo):
    t = topo(holdtime=30, unique=False)
    up(t)
    make_shortcut(t)              # spoke1 -> spoke2 at 192.0.2.12
    assert t.snapshot("spoke1")["shortcuts"][0]["nbma"] == "192.0.2.12"
    # spoke 2 is renumbered (DHCP)
    t.exec("spoke2", "ip", "addr", "del", "192.0.2.12/24", "dev", "eth0")
    t.exec("spoke2", "ip", "addr", "add", "192.0.2.99/24", "dev", "eth0")
    # the renumbered spoke rebuilds its data plane (a compile) before it purges: 30 s
    # leaves room for a loaded machine
    t.wait_for(lambda: not any(s["nbma"] == "192.0.2.12"
                               for s in t.snapshot("spoke1")["shortcuts"]), 30,
               message="stale shortcut purged on spoke1")
    t.wait_for(lambda: {e["protocol"]: e["nbma"] for e in t.snapshot("hub1")["cache"]}
               .get(t.tunnel_ip("spoke2")) == "192.0.2.99", 10,
               message="hub maps spoke2 to its new NBMA")
    assert "NBMA address changed 192.0.2.12 -> 192.0.2.99" in t.log("spoke2")
    assert t.ask("spoke1", "stats")["nhrp"].get("rx.purge_request", 0) >= 1
    r = t.ping("spoke1", t.lan_host("spoke2"), count=15, interval=0.2)
    assert " 0% packet loss" in r.stdout, r.stdout
    t.wait_for(lambda: any(s["nbma"] == "192.0.2.99"
                           for s in t.snapshot("spoke1")["shortcuts"]), 10,
               message="new shortcut to the new NBMA")


def test_two_hubs_failover(topo):
    t = topo(hubs=2, holdtime=6)
    up(t)
    t.wait_for(lambda: all(t.registered(s, "hub2") for s in ("spoke1", "spoke2")), 20,
               message="registered at hub2 too")
    assert t.ask("spoke1", "stats")["nhs_dataplane"][0] == t.nbma("hub1")
    # hub1 drops off the underlay
    t.exec("hub1", "ip", "link", "set", "eth0", "down")
    t.wait_for(lambda: not t.registered("spoke1", "hub1") and not t.registered(
        "spoke2", "hub1"), 15, message="hub1 seen down by both spokes")
    assert t.ask("spoke1", "stats")["nhs_dataplane"][0] == t.nbma("hub2")
    before = t.path("hub2", "hairpin")
    r = t.ping("spoke1", t.lan_host("spoke2"), count=3, interval=0.2)
    assert " 0% packet loss" in r.stdout, r.stdout
    assert t.path("hub2", "hairpin") > before          # the backup hub carried it
    t.exec("hub1", "ip", "link", "set", "eth0", "up")
    t.wait_for(lambda: t.registered("spoke1", "hub1"), 20, message="hub1 back")
    assert t.ask("spoke1", "stats")["nhs_dataplane"][0] == t.nbma("hub1")


def test_conflicting_unique_registration_diverts_no_packet(topo):
    t = topo(spokes=3, holdtime=30)
    # spoke3 claims spoke2's tunnel address from its own NBMA
    cfg = (t.tmp / "spoke3.toml").read_text().replace(t.tunnel_ip("spoke3"),
                                                       t.tunnel_ip("spoke2"))
    (t.tmp / "spoke3.toml").write_text(cfg)
    for n in ("hub1", "spoke1", "spoke2"):
        t.start(n, wait=False)
    for n in ("hub1", "spoke1", "spoke2"):
        t.wait_ready(n)
    t.add_routes()
    t.wait_for(lambda: t.registered("spoke1") and t.registered("spoke2"), 20,
               message="spokes registered")
    flow = flood(t, "spoke1", t.tunnel_ip("spoke2"), 5, interval=0.02)
    t.start("spoke3")
    assert t.wait_for(lambda: t.snapshot("spoke3")["nhs"][0]["last_error"], 10,
                      message="spoke3 rejected") == 14          # already registered
    sent, got = received(flow)
    assert got == sent, f"{sent - got} of {sent} packets lost to the impostor"
    e = {c["protocol"]: c for c in t.snapshot("hub1")["cache"]}[t.tunnel_ip("spoke2")]
    assert e["nbma"] == t.nbma("spoke2")
    assert t.ask("spoke3", "stats")["paths"]["decap"]["packets"] == 0
    assert t.ask("hub1", "stats")["nhrp"]["registration.14"] >= 1


def test_clean_shutdown_purges_and_removes_everything(topo):
    t = topo(holdtime=60)
    up(t)
    make_shortcut(t)
    assert t.stop("spoke2") == 0
    assert "clean shutdown: 2 purge requests sent" in t.log("spoke2")
    hub = {e["protocol"] for e in t.snapshot("hub1")["cache"]}
    assert t.tunnel_ip("spoke2") not in hub                      # de-registered at once
    assert "10.0.2.0/24" not in shortcut_prefixes(t, "spoke1")    # purged at the peer
    links = t.exec("spoke2", "ip", "-j", "link", "show").stdout
    assert "dmvpn0" not in links
    assert not os.path.exists(f"/sys/fs/bpf/xdmvpn/{t.instance('spoke2')}")
    assert not os.path.exists(t.socket("spoke2"))
    xdp = t.exec("spoke2", "ip", "-j", "link", "show", "eth0").stdout
    assert "xdp" not in xdp


def test_sighup_reloads_without_losing_state_and_refuses_what_needs_a_restart(topo):
    t = topo(holdtime=60)
    up(t)
    make_shortcut(t)
    path = t.tmp / "spoke1.toml"
    path.write_text(path.read_text().replace("holdtime = 60", "holdtime = 90"))
    t.procs["spoke1"].send_signal(signal.SIGHUP)
    t.wait_for(lambda: t.snapshot("spoke1")["holdtime"] == 90, 5, message="reloaded")
    snap = t.snapshot("spoke1")
    assert snap["nhs"][0]["state"] == "up" and snap["shortcuts"]
    path.write_text(path.read_text().replace("key = 42", "key = 43"))
    t.procs["spoke1"].send_signal(signal.SIGHUP)
    t.wait_for(lambda: "reload refused" in t.log("spoke1"), 5, message="refused")
    assert "tunnel.key change only with a restart" in t.log("spoke1")
    path.write_text("[tunnel\n")
    t.procs["spoke1"].send_signal(signal.SIGHUP)
    t.wait_for(lambda: t.log("spoke1").count("reload refused") == 2, 5,
               message="bad file refused")
    assert t.procs["spoke1"].poll() is None and t.snapshot("spoke1")["holdtime"] == 90


def test_run_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[tunnel]\naddress = "10.0.0.1/24"\nsource-interface = "eth0"\nkey = -1\n')
    out = run_cli("run", "--config", str(bad))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"xdmvpn: error: {bad}:4: tunnel.key")
    good = tmp_path / "good.toml"
    good.write_text('[tunnel]\naddress = "10.0.0.1/24"\nsource-interface = "nosuch0"\n'
                    'source-address = "192.0.2.1"\n')
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-m", "xdmvpn", "run", "--config", str(good)],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.returncode == 2, out.stderr
    assert out.stderr == ("xdmvpn: error: xdmvpn run needs root (BPF, raw sockets, netlink): "
                          "run it as root or under the systemd unit\n")
    out = run_cli("run", "--config", str(good))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "nosuch0" in out.stderr


REFUSALS = {
    # [tunnel] name of lo, of the underlay interface, of another tool's device: `config
    # check` said ok and `run` died with a 48-line IndexError traceback
    "name_lo": ('name = "lo"', "interface lo exists and is not an xdmvpn overlay"),
    "name_underlay": ('name = "eth0"', "interface eth0 exists and is not an xdmvpn overlay"),
    "name_bridge": ('name = "br9"', "interface br9 exists and is not an xdmvpn overlay"),
    # these were one line, but left the overlay pair and pinned maps behind
    "metrics_port_taken": ('name = "tq0"\n[metrics]\nlisten = "127.0.0.1:9399"',
                           "metrics.listen 127.0.0.1:9399: cannot listen (Address already in use)"),
    "socket_is_a_file": ('name = "tq0"\n[control]\nsocket = "{tmp}/victim"',
                         "victim exists and is not a socket; refusing to replace it"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_start_is_one_line_and_leaves_everything_as_it_was(tmp_path, case):
    """A node refused at start: one line, exit 2, its interfaces, files and pins as they
    were before (nothing of ours left behind, nothing of theirs taken)."""
    from xdmvpn import netns
    from xdmvpn.netns import Namespaces
    setting, message = REFUSALS[case]
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    instance = f"xt-refused-{os.getpid()}"
    with Namespaces() as spaces:
        ns, peer = spaces.add("n"), spaces.add("p")
        spaces.link(ns, "eth0", peer, "eth0", "192.0.2.1/24", "192.0.2.2/24")
        netns.ip("link", "add", "br9", "type", "bridge", ns=ns)
        blocker = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c",
             "import socket, time\n"
             "s = socket.create_server(('127.0.0.1', 9399))\n"
             "print('bound', flush=True)\n"
             "time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
        try:
            assert blocker.stdout.readline().strip() == "bound"
            before = netns.sh("ip", "-o", "link", "show", ns=ns)
            cfg = tmp_path / "node.toml"
            tunnel, rest = (setting.format(tmp=tmp_path) + "\n").split("\n", 1)
            cfg.write_text(f'[tunnel]\n{tunnel}\naddress = "10.0.0.1/24"\n'
                           'source-interface = "eth0"\nkey = 42\n'
                           + (rest if rest.strip() else "")
                           + ("" if "[control]" in rest else "[control]\n")
                           + f'instance = "{instance}"\n')
            out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "xdmvpn",
                                  "run", "--config", str(cfg)], capture_output=True,
                                 text=True, timeout=180)
            assert out.returncode == 2, out.stderr
            assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
            assert message in out.stderr, out.stderr
            assert netns.sh("ip", "-o", "link", "show", ns=ns) == before
            assert "xdp" not in netns.sh("ip", "-d", "link", "show", "eth0", ns=ns)
            assert not os.path.exists(f"/sys/fs/bpf/xdmvpn/{instance}")
            assert victim.read_text() == "precious\n"
        finally:
            blocker.kill()
            blocker.wait()
