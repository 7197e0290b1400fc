"""The lab's plan and configuration generator (pure), the per-packet path rule, the
output lines, and the CLI's help and argument errors (no root needed)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from xdmvpn.cli.lab import topology_text
from xdmvpn.config import loads
from xdmvpn.errors import XdmvpnError
from xdmvpn.lab import probe
from xdmvpn.lab.topology import (MAX_SPOKES, PSK, leftover_pattern, node_config, node_configs,
                                 parse_nat, plan)


def test_addresses_of_the_default_plan():
    topo = plan()
    rows = [(n.name, str(n.underlay), str(n.overlay), str(n.lan), str(n.router), str(n.host))
            for n in topo.nodes]
    assert rows == [
        ("hub", "192.0.2.1/24", "172.16.0.1/24", "10.0.0.0/24", "10.0.0.1/24", "10.0.0.10/24"),
        ("spoke1", "192.0.2.11/24", "172.16.0.11/24", "10.0.1.0/24", "10.0.1.1/24",
         "10.0.1.10/24"),
        ("spoke2", "192.0.2.12/24", "172.16.0.12/24", "10.0.2.0/24", "10.0.2.1/24",
         "10.0.2.10/24"),
    ]
    assert [n.role for n in topo.nodes] == ["hub", "spoke", "spoke"]
    assert topo.hub.name == "hub" and [s.name for s in topo.spokes] == ["spoke1", "spoke2"]


def test_routes_hub_to_each_lan_spokes_to_all_via_hub():
    topo = plan(3)
    assert topo.routes(topo.hub) == [
        (IPv4Network(f"10.0.{i}.0/24"), IPv4Address(f"172.16.0.{10 + i}")) for i in (1, 2, 3)]
    for s in topo.spokes:
        assert topo.routes(s) == [(IPv4Network("10.0.0.0/16"), IPv4Address("172.16.0.1"))]


def test_names_paths_and_instances_are_distinct_and_prefixed():
    topo = plan(MAX_SPOKES, "xyz")
    nodes = topo.nodes
    for per_node in (topo.ns, topo.host_ns, topo.instance, topo.socket, topo.config_path,
                     topo.log_path, topo.pid_path):
        values = [per_node(n) for n in nodes]
        assert len(set(values)) == len(nodes), per_node
    assert topo.ns(topo.hub) == "xyz-hub" and topo.host_ns(nodes[5]) == "xyz-spoke5-host"
    assert topo.socket(topo.hub) == "/run/xdmvpn/xyz-hub.sock"
    assert topo.config_path(topo.hub) == "/run/xdmvpn/xyz/hub.toml"
    pattern = leftover_pattern("xyz")
    for name in topo.namespaces() + [topo.instance(n) for n in nodes]:
        assert pattern.fullmatch(name), name
    # a user's own namespaces, and another lab's, are never taken for leftovers
    for other in ("xyz", "xyz-foo", "xyz-hubx", "xyzz-hub", "lab-hub", "xyz-a-hub"):
        assert not pattern.fullmatch(other), other
    assert len(set(n.mac for n in nodes)) == len(nodes)
    assert len(set(n.underlay for n in nodes) | set(n.overlay for n in nodes)) == 2 * len(nodes)


def test_every_generated_config_loads_with_the_lab_settings():
    topo = plan(3, "t1")
    texts = node_configs(topo)
    assert set(texts) == {"hub", "spoke1", "spoke2", "spoke3"}
    cfgs = {name: loads(text, f"{name}.toml") for name, text in texts.items()}
    hub = cfgs["hub"]
    assert hub.role == "hub" and hub.nhrp.redirect and not hub.nhrp.nhs
    assert hub.nhrp.multicast == ("dynamic",)
    for name, cfg in cfgs.items():
        node = topo.node(name)
        assert cfg.tunnel.address == node.overlay
        assert cfg.tunnel.source_address == node.underlay.ip
        assert cfg.tunnel.source_interface == "ul0" and cfg.tunnel.name == "dmvpn0"
        assert cfg.tunnel.key == 42 and cfg.nhrp.holdtime == 60
        assert cfg.nhrp.authentication == "labauth"
        assert cfg.control.instance == f"t1-{name}"
        assert cfg.control.socket == topo.socket(node)
        if name != "hub":
            assert cfg.role == "spoke" and cfg.nhrp.shortcut and not cfg.nhrp.redirect
            assert cfg.nhrp.multicast == ("nhs",)
            assert [(str(s.tunnel_ip), str(s.nbma)) for s in cfg.nhrp.nhs] == [
                ("172.16.0.1", "192.0.2.1")]
    assert len({c.control.instance for c in cfgs.values()}) == len(cfgs)


def test_vagrant_target_same_addresses_eth1_default_instance():
    topo = plan(2)
    netns_cfgs = {n: loads(t) for n, t in node_configs(topo, "netns").items()}
    vm_cfgs = {n: loads(t) for n, t in node_configs(topo, "vagrant").items()}
    for name, vm in vm_cfgs.items():
        assert vm.tunnel.source_interface == "eth1"
        assert vm.control.instance == "dmvpn0"
        assert vm.control.socket == "/run/xdmvpn/dmvpn0.sock"
        assert vm.tunnel.address == netns_cfgs[name].tunnel.address
        assert vm.nhrp == netns_cfgs[name].nhrp
    with pytest.raises(XdmvpnError, match="unknown target"):
        node_config(topo, topo.hub, "docker")


@pytest.mark.parametrize("target", ["netns", "vagrant"])
def test_ipsec_adds_an_ipsec_block_with_the_lab_psk_and_nothing_else(target):
    topo = plan(2)
    plain = {n: loads(t) for n, t in node_configs(topo, target).items()}
    for name, text in node_configs(topo, target, ipsec=True).items():
        cfg = loads(text)
        assert cfg.ipsec is not None and cfg.ipsec.psk == PSK and cfg.ipsec.required
        assert dataclasses.replace(cfg, ipsec=None) == plain[name]


@pytest.mark.parametrize("spokes", [0, -1, MAX_SPOKES + 1])
def test_spoke_count_out_of_range(spokes):
    with pytest.raises(XdmvpnError, match=rf"--spokes must be 1\.\.{MAX_SPOKES}"):
        plan(spokes)


@pytest.mark.parametrize("name", ["", "Lab", "1lab", "la-b", "a" * 17, "lab/x"])
def test_bad_lab_names(name):
    with pytest.raises(XdmvpnError, match="lab name"):
        plan(2, name)


def test_unknown_node_lists_the_nodes():
    with pytest.raises(XdmvpnError,
                       match=r"no node 'spoke3' in lab lab \(nodes: hub, spoke1, spoke2\)"):
        plan(2).node("spoke3")


def test_exec_targets():
    topo = plan(1, "q")
    assert topo.exec_targets() == {"hub": "q-hub", "spoke1": "q-spoke1",
                                   "hub-host": "q-hub-host", "spoke1-host": "q-spoke1-host",
                                   "underlay": "q-underlay"}


@pytest.mark.parametrize("received,delta,hub_end,path", [
    (True, 2, False, "hub"), (True, 3, False, "hub"), (True, 0, False, "direct"),
    (True, 1, False, "mixed"), (False, 2, False, None), (True, 0, True, "hub"),
    (False, 0, True, None)])
def test_path_of_a_packet_from_the_hub_counter(received, delta, hub_end, path):
    assert probe.classify(received, delta, hub_end) == path


def test_ping_lines_and_summary():
    topo = plan(2)
    a, b = topo.node("spoke1"), topo.node("spoke2")
    results = [
        {"seq": 1, "received": True, "rtt_ms": 3.5, "hub_forwarded": 2, "path": "hub"},
        {"seq": 2, "received": True, "rtt_ms": 0.41, "hub_forwarded": 1, "path": "mixed"},
        {"seq": 3, "received": True, "rtt_ms": 0.2, "hub_forwarded": 0, "path": "direct"},
        {"seq": 4, "received": False, "rtt_ms": None, "hub_forwarded": 0, "path": None},
    ]
    assert [probe.ping_line(r) for r in results] == [
        "seq 1      3.50 ms  via hub (hub forwarded 2)",
        "seq 2      0.41 ms  one way via hub, one way direct (hub forwarded 1)",
        "seq 3      0.20 ms  direct",
        "seq 4         lost  lost",
    ]
    s = probe.summary(a, b, results)
    assert s == {"from": "spoke1", "to": "spoke2", "src": "10.0.1.10", "dst": "10.0.2.10",
                 "sent": 4, "received": 3, "via_hub": 1, "direct": 1, "mixed": 1}
    assert probe.summary_line(s) == ("spoke1 -> spoke2: 4 sent, 3 received, 1 lost; "
                                     "1 via hub, 1 direct, 1 one way via hub")


def test_status_cells():
    row = {"node": "spoke1", "role": "spoke", "namespace": "lab-spoke1", "pid": 7,
           "running": True, "answers": True, "nhs": [{"nbma": "192.0.2.1", "state": "up"}],
           "registered": 0, "shortcuts": 1}
    assert probe.status_cells(row) == ("spoke1", "lab-spoke1", "pid 7", "up", None, 1)
    assert probe.healthy(row)
    row.update(answers=False)
    assert probe.status_cells(row)[2] == "pid 7 (no answer)" and not probe.healthy(row)
    row.update(running=False, pid=None)
    assert probe.status_cells(row)[2] == "no daemon"


def test_topology_text():
    text = topology_text(plan(2), 3.21)
    lines = text.splitlines()
    assert lines[0] == "The lab is up: a hub and 2 spokes, every spoke registered in 3.2 s"
    assert lines[2].split() == ["Node", "Namespace", "Underlay", "Tunnel", "LAN", "LAN", "host"]
    assert lines[4].split() == ["spoke1", "lab-spoke1", "192.0.2.11", "172.16.0.11",
                                "10.0.1.0/24", "10.0.1.10"]
    assert all(len(line) <= 80 for line in lines)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "xdmvpn", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("action", [[], ["up"], ["down"], ["status"], ["ping"], ["exec"],
                                    ["config"]])
def test_every_lab_help_has_examples(action):
    out = cli("lab", *action, "--help")
    assert out.returncode == 0 and "examples:" in out.stdout


def test_bad_spoke_count_is_one_line_exit_2():
    out = cli("lab", "up", "--spokes", "0")
    assert out.returncode == 2
    assert out.stderr == "xdmvpn: error: --spokes must be 1..32, got 0\n"


def test_bad_arguments_are_said_before_missing_privileges():
    """As a user without privileges (nobody, when the suite runs as root): a bad spoke
    count is the error, not the missing privileges; good arguments reach the root check."""
    import os
    from pathlib import Path
    prefix = [] if os.geteuid() else ["setpriv", "--reuid=65534", "--regid=65534",
                                      "--clear-groups"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "ctl"))

    def run(*args):
        return subprocess.run([*prefix, sys.executable, "-m", "xdmvpn", "lab", "up", *args],
                              capture_output=True, text=True, timeout=60, env=env, cwd="/")
    bad = run("--spokes", "0")
    assert (bad.returncode, bad.stderr) == (2, "xdmvpn: error: --spokes must be 1..32, got 0\n")
    good = run("--spokes", "2")
    assert good.returncode == 2 and "needs root" in good.stderr, good.stderr
    assert "Traceback" not in good.stderr + bad.stderr


def test_nat_plan_private_underlays_behind_devices_with_public_outsides():
    topo = plan(4, "q", ((1,), (3, 4)))
    assert [(d.name, str(d.outside), str(d.inside), d.spokes) for d in topo.nats] == [
        ("nat1", "192.0.2.101/24", "192.168.1.1/24", (1,)),
        ("nat2", "192.0.2.102/24", "192.168.1.1/24", (3, 4))]
    rows = [(n.name, str(n.underlay), n.nat, str(n.gateway), str(topo.public_nbma(n)))
            for n in topo.nodes]
    assert rows == [("hub", "192.0.2.1/24", 0, "None", "192.0.2.1"),
                    ("spoke1", "192.168.1.11/24", 1, "192.168.1.1", "192.0.2.101"),
                    ("spoke2", "192.0.2.12/24", 0, "None", "192.0.2.12"),
                    ("spoke3", "192.168.1.11/24", 2, "192.168.1.1", "192.0.2.102"),
                    ("spoke4", "192.168.1.12/24", 2, "192.168.1.1", "192.0.2.102")]
    # MACs stay distinct although underlay addresses repeat behind different devices
    macs = [n.mac for n in topo.nodes] + [d.mac for d in topo.nats]
    assert len(set(macs)) == len(macs)
    assert topo.exec_targets()["nat2"] == "q-nat2" and "q-nat1" in topo.namespaces()
    assert leftover_pattern("q").fullmatch("q-nat2")
    assert topo.to_dict() == {"name": "q", "spokes": 4, "nat": [[1], [3, 4]], "family": "ipv4",
                              "nbma": "ipv4"}
    # the configuration claims the private address; the hub learns the post-NAT one
    cfg = loads(node_configs(topo, ipsec=True)["spoke3"], "spoke3.toml")
    assert cfg.tunnel.source_address == IPv4Address("192.168.1.11")
    text = topology_text(topo, 1.0)
    assert "Behind NAT" in text and "nat2 192.0.2.102" in text
    assert "NAT devices (nftables masquerade, inside 192.168.1.0/24): nat1 192.0.2.101 in " \
           "q-nat1, nat2 192.0.2.102 in q-nat2" in text


@pytest.mark.parametrize("groups,error", [
    (["spoke9"], "there is no spoke9"), (["spoke1", "spoke1"], "spoke1 is behind two NAT"),
    (["hub"], "'hub' is not one"), ([","], "name at least one spoke")])
def test_bad_nat_groups(groups, error):
    with pytest.raises(XdmvpnError, match=error):
        plan(2, "q", parse_nat(groups))


def test_nat_is_for_the_namespace_lab_only():
    with pytest.raises(XdmvpnError, match="only in the namespace lab"):
        node_config(plan(2, "q", ((1,),)), plan(2).hub, "vagrant")


def test_bad_nat_group_is_one_line_exit_2():
    out = cli("lab", "config", "spoke1", "--nat", "spoke1,router")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("xdmvpn: error: --nat 'spoke1,router': name spokes") \
        and out.stderr.count("\n") == 1


@pytest.mark.parametrize("family,nbma", [("ipv6", "ipv4"), ("ipv4", "ipv6"), ("dual", "ipv4"),
                                         ("dual", "ipv6")])
def test_ipv6_plans_and_their_configurations(family, nbma):
    """--family/--nbma: addresses of each family, one NHS entry per overlay family (one
    registration each), routes per family; every configuration reads back the same."""
    topo = plan(2, family=family, nbma=nbma)
    fams = {"ipv4": (4,), "ipv6": (6,), "dual": (4, 6)}[family]
    hub, s1 = topo.hub, topo.node("spoke1")
    assert [a.version for a in s1.overlays] == list(fams)
    assert s1.underlay.version == (4 if nbma == "ipv4" else 6)
    if nbma == "ipv6":
        assert str(s1.underlay) == "2001:db8:ff::b/64" and s1.mac.endswith(":0b")
    if 6 in fams:
        assert str(s1.lan_of(6)) == "2001:db8:1:1::/64"
        assert str(s1.host_of(6).ip) == "2001:db8:1:1::a"
        assert str(s1.overlay_of(6).ip) == "2001:db8:100::b"
    texts = node_configs(topo)
    cfg = loads(texts["spoke1"])
    assert cfg.tunnel.addresses == s1.overlays
    assert [(n.tunnel_ip, n.nbma) for n in cfg.nhrp.nhs] == [
        (a.ip, hub.underlay.ip) for a in hub.overlays]
    routes = {str(p): str(v) for p, v in topo.routes(s1)}
    if 6 in fams:
        assert routes["2001:db8:1::/48"] == "2001:db8:100::1"
    hub_routes = {str(p) for p, _ in topo.routes(hub)}
    assert hub_routes == {str(s.lan_of(f)) for s in topo.spokes for f in fams}
    assert topo.to_dict() == {"name": "lab", "spokes": 2, "family": family, "nbma": nbma}


def test_bad_family_words_are_one_line_errors():
    with pytest.raises(XdmvpnError, match="--family must be ipv4, ipv6 or dual"):
        plan(2, family="ipv5")
    with pytest.raises(XdmvpnError, match="--nbma must be ipv4 or ipv6"):
        plan(2, nbma="dual")
