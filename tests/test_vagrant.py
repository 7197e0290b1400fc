"""The Vagrant lab (Vagrantfile, packaging/vagrant/provision.sh, docs/vagrant.md).

- `vagrant validate` passes with no network and no box, for libvirt (the vagrant-libvirt
  plugin, installed by setup.sh, is enough: no libvirt daemon is asked) and for VirtualBox
  (not in Debian: a stand-in VBoxManage that only tells its version makes the provider
  "usable"), and it does check each provider's block (a misspelt setting fails);
- the VMs are the nodes of the lab's plan, with its addresses (read from the Vagrantfile
  through Vagrant's own loader) and the provisioning arguments for them;
- what provisioning writes is exactly the generator's output, `xdmvpn lab config NODE
  --target vagrant` prints it too, and it differs from the namespace lab's only in the
  underlay interface, the instance and the socket.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from util import REPO, run_cli
from xdmvpn.config import loads
from xdmvpn.lab.topology import UNDERLAY_IF, node_configs, plan

VAGRANTFILE = REPO / "Vagrantfile"
PROVISION = REPO / "packaging/vagrant/provision.sh"
GUEST_REPO = "/opt/xdmvpn"

# The machines as Vagrant itself reads them (its loader, not a parse of the file).
DUMP_RB = """
require "json"
require "vagrant"
env = Vagrant::Environment.new(cwd: ARGV[0])
puts JSON.generate(env.machine_names.map { |name|
  vm = env.vagrantfile.machine_config(name, nil, env.boxes)[:config].vm
  {name: name.to_s, box: vm.box, hostname: vm.hostname,
   networks: vm.networks.select { |type, _| type == :private_network }.map { |_, o| o },
   provisioners: vm.provisioners.map { |p|
     {type: p.type.to_s, inline: p.config.inline, args: p.config.args,
      privileged: p.config.privileged} },
   synced_folders: vm.synced_folders}
})
"""


@pytest.fixture(scope="module")
def vagrant():
    path = shutil.which("vagrant")
    assert path, "vagrant missing: run ./setup.sh (it installs vagrant and vagrant-libvirt)"
    return path


def vagrant_env(tmp: Path, **settings: str) -> dict:
    """A private VAGRANT_HOME and .vagrant (nothing lands in the checkout or ~), no version
    check, and only the XDMVPN_ settings given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "XDMVPN_"))}
    env.update(VAGRANT_HOME=str(tmp / "home"), VAGRANT_DOTFILE_PATH=str(tmp / "dot"),
               VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_CWD=str(REPO))
    env.update(settings)
    return env


def offline(cmd: list[str]) -> list[str]:
    """Run in a network namespace of its own (root): no network to reach at all."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--net", "--", *cmd]
    return cmd


def validate(tmp: Path, provider: str, vagrantfile_dir: Path = REPO, **settings: str):
    env = vagrant_env(tmp, VAGRANT_DEFAULT_PROVIDER=provider, VAGRANT_CWD=str(vagrantfile_dir),
                      **settings)
    if provider == "virtualbox":
        stub = tmp / "bin" / "VBoxManage"
        stub.parent.mkdir(exist_ok=True)
        stub.write_text("#!/bin/sh\necho 7.0.14r161095\n")
        stub.chmod(0o755)
        env["PATH"] = f"{stub.parent}:{env['PATH']}"
    return subprocess.run(offline(["vagrant", "validate"]), env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
@pytest.mark.parametrize("settings", [{}, {"XDMVPN_IPSEC": "1", "XDMVPN_SPOKES": "3"}],
                         ids=["default", "ipsec-3-spokes"])
def test_vagrant_validate_passes_offline(vagrant, tmp_path, provider, settings):
    out = validate(tmp_path, provider, **settings)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Vagrantfile validated successfully." in out.stdout
    assert (tmp_path / "dot").is_dir()          # Vagrant's state went there, not the checkout


@pytest.mark.parametrize("provider,setting", [("libvirt", "lv.memory"),
                                              ("virtualbox", "vb.memory")])
def test_vagrant_validate_checks_each_provider_block(vagrant, tmp_path, provider, setting):
    text = VAGRANTFILE.read_text()
    assert text.count(f"{setting} = ") == 1
    copy = tmp_path / "misspelt"
    copy.mkdir()
    (copy / "Vagrantfile").write_text(text.replace(f"{setting} = ", f"{setting}x = "))
    out = validate(tmp_path, provider, copy)
    assert out.returncode != 0
    assert "memoryx" in out.stdout + out.stderr


@pytest.mark.parametrize("settings,message", [
    ({"XDMVPN_SPOKES": "0"}, "XDMVPN_SPOKES must be 1..32, got 0"),
    ({"XDMVPN_IPSEC": "yes"}, "XDMVPN_IPSEC must be 0 or 1, got yes")])
def test_vagrant_refuses_bad_settings(vagrant, tmp_path, settings, message):
    out = validate(tmp_path, "libvirt", **settings)
    assert out.returncode != 0 and message in out.stderr


def machines(tmp: Path, **settings: str) -> list[dict]:
    script = tmp / "dump.rb"
    script.write_text(DUMP_RB)
    out = subprocess.run(offline(["ruby", str(script), str(REPO)]), capture_output=True,
                         text=True, env=vagrant_env(tmp, **settings), timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("spokes,ipsec", [(2, "0"), (3, "1")])
def test_vms_are_the_nodes_of_the_plan(vagrant, tmp_path, spokes, ipsec):
    settings = {} if spokes == 2 and ipsec == "0" else {"XDMVPN_SPOKES": str(spokes),
                                                         "XDMVPN_IPSEC": ipsec}
    vms = machines(tmp_path, **settings)
    topo = plan(spokes)
    assert [vm["name"] for vm in vms] == [n.name for n in topo.nodes]
    assert UNDERLAY_IF["vagrant"] == "eth1"     # eth0 is Vagrant's; eth1 the first network
    lans = set()
    for vm, node in zip(vms, topo.nodes):
        assert vm["box"] == "debian/bookworm64" and vm["hostname"] == node.name
        underlay, lan = vm["networks"]
        assert (underlay["ip"], lan["ip"]) == (str(node.underlay.ip), str(node.router.ip))
        assert underlay["netmask"] == str(node.underlay.netmask)
        assert lan["netmask"] == str(node.lan.netmask)
        for net, name in ((underlay, "xdmvpn-underlay"), (lan, f"xdmvpn-lan-{node.name}")):
            assert net["virtualbox__intnet"] == net["libvirt__network_name"] == name
            assert net["libvirt__forward_mode"] == "none" and not net["libvirt__dhcp_enabled"]
            host = net["libvirt__host_ip"]       # libvirt's own address on the network
            assert host.endswith(".254") and host not in {str(n.underlay.ip) for n in
                                                          topo.nodes} | {str(node.router.ip)}
        lans.add(lan["virtualbox__intnet"])
        [prov] = vm["provisioners"]
        assert prov["type"] == "shell" and prov["privileged"]
        assert prov["inline"] == f'{GUEST_REPO}/packaging/vagrant/provision.sh "$@"'
        assert prov["args"] == [node.name, str(spokes), ipsec]
        synced = vm["synced_folders"]
        assert synced["/vagrant"]["disabled"]
        assert synced[GUEST_REPO]["type"] == "rsync" and synced[GUEST_REPO]["hostpath"] == "."
        assert ".venv/" in synced[GUEST_REPO]["rsync__exclude"]
    assert len(lans) == len(vms)


@pytest.mark.parametrize("ipsec", [False, True], ids=["gre", "ipsec"])
def test_provisioning_writes_exactly_the_generator_configs(tmp_path, ipsec):
    topo = plan(2)
    want = node_configs(topo, "vagrant", ipsec=ipsec)
    for node in topo.nodes:
        out_dir = tmp_path / node.name
        out = subprocess.run([str(PROVISION), "--files-only", str(out_dir), node.name, "2",
                              "1" if ipsec else "0"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert (out_dir / "dmvpn0.toml").read_text() == want[node.name]
        assert (out_dir / "dmvpn0.toml").stat().st_mode & 0o077 == 0   # secrets inside
        assert (out_dir / "dmvpn0.routes").read_text().splitlines() == [
            f"{prefix} via {gw} dev dmvpn0" for prefix, gw in topo.routes(node)]
        assert (loads(want[node.name]).ipsec is not None) == ipsec


def test_provision_refuses_bad_arguments(tmp_path):
    for args in (["hub", "2"], ["hub", "2", "yes"]):
        out = subprocess.run([str(PROVISION), "--files-only", str(tmp_path), *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "usage: provision.sh" in out.stderr


@pytest.mark.parametrize("args,spokes,ipsec", [([], 2, False), (["--spokes", "3", "--ipsec"],
                                                                 3, True)])
def test_lab_config_prints_the_generator_output(args, spokes, ipsec):
    want = node_configs(plan(spokes), "vagrant", ipsec=ipsec)
    for name, text in want.items():
        out = run_cli("lab", "config", name, "--target", "vagrant", *args)
        assert out.returncode == 0, out.stderr
        assert out.stdout == text


def test_vagrant_configs_differ_from_the_netns_lab_only_as_documented():
    """Underlay interface eth1 (not ul0), instance dmvpn0 and its socket (not lab-NODE):
    docs/lab.md and docs/vagrant.md."""
    topo = plan(2)
    netns, vms = node_configs(topo, "netns"), node_configs(topo, "vagrant")
    for name in netns:
        a, b = loads(netns[name]), loads(vms[name])
        assert (a.tunnel.source_interface, b.tunnel.source_interface) == ("ul0", "eth1")
        assert (a.control.instance, b.control.instance) == (f"lab-{name}", "dmvpn0")
        assert b.control.socket == "/run/xdmvpn/dmvpn0.sock"
        same = dataclasses.replace(b, tunnel=dataclasses.replace(b.tunnel, source_interface="ul0"),
                                   control=a.control)
        assert same == a
        differing = set(netns[name].splitlines()) ^ set(vms[name].splitlines())
        keys = {line.split(" ")[0] for line in differing}
        assert keys == {"#", "source-interface", "instance", "socket"}, differing
        assert run_cli("lab", "config", name).stdout == netns[name]    # target netns


def test_lab_config_help_and_routes():
    out = run_cli("lab", "config", "--help")
    assert out.returncode == 0 and "examples:" in out.stdout
    out = run_cli("lab", "config", "spoke2", "--routes")
    assert out.stdout == "10.0.0.0/16 via 172.16.0.1 dev dmvpn0\n"
    out = run_cli("lab", "config", "spoke3")
    assert out.returncode == 2
    assert out.stderr == ("xdmvpn: error: no node 'spoke3' in lab lab (nodes: hub, spoke1, "
                          "spoke2)\n")


def test_routes_unit_written_by_provisioning_verifies(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (Debian: systemd)"
    text = PROVISION.read_text()
    unit = text.split("cat <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0] + "\n"
    path = tmp_path / "xdmvpn-lab-routes.service"
    path.write_text(unit)
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ExecStart=/bin/sh -ec '" in unit and "</etc/xdmvpn/dmvpn0.routes'" in unit
    assert "PartOf=xdmvpn@dmvpn0.service" in unit
