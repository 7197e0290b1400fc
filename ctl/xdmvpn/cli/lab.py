"""`xdmvpn lab up|status|ping|exec|down`: a hub and N spokes in network namespaces;
`xdmvpn lab config`: a node's generated configuration (also for the Vagrant VMs)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys

from ..errors import XdmvpnError
from ..lab import manage, network, probe
from ..lab.topology import (BRIDGE, DEFAULT_SPOKES, FAMILIES, GRE_KEY, LANS, LANS6, MAX_SPOKES,
                            NAT_INSIDE, NBMA_FAMILIES, OVERLAY, OVERLAY6, TUNNEL, UNDERLAY,
                            UNDERLAY6, UNDERLAY_IF, Topology, label, node_configs, parse_nat,
                            plan)
from ..netns import exec_argv
from ..show import render_table
from .show_cmd import INSTANCE_ENV

EXAMPLES = """\
examples:
  xdmvpn lab demo
      the README's demo: (re)build the lab, ping spoke1 -> spoke2 showing the first
      packets via the hub, the shortcut appearing and the rest direct; the lab stays up
  xdmvpn lab up
      a hub and 2 spokes, each with a LAN, registered; prints the topology
  xdmvpn lab up --spokes 4
      a hub and 4 spokes
  xdmvpn lab up --family ipv6 --nbma ipv4
      IPv6 LANs and tunnel over the IPv4 underlay (also: --family dual, --nbma ipv6)
  xdmvpn lab ping spoke1 spoke2 --family ipv6
      the IPv6 LAN hosts (the default is the lab's first family)
  xdmvpn lab ping spoke1 spoke2
      ping spoke2's LAN host from spoke1's: the first packets go via the hub,
      then the phase-3 shortcut carries them direct
  xdmvpn lab ping spoke1 spoke2 --count 10 --json
      one JSON object per packet, then a summary object
  xdmvpn lab status
      per node: daemon, NHS state, registered spokes (hub), shortcuts
  xdmvpn lab exec spoke1 -- ip route
      any command in a node's namespace (also spoke1-host, hub-host, underlay)
  xdmvpn lab exec spoke1 -- xdmvpn show shortcut
      spoke1's shortcuts: in a node, `xdmvpn show` and `clear` ask that node's daemon
      ($XDMVPN_INSTANCE is set to it) and xdmvpn is on PATH
  xdmvpn lab exec hub -- tcpdump -ni ul0 proto gre
      watch the hub's underlay
  xdmvpn lab up --ipsec
      the same with a strongSwan charon in every node: IKE (PSK) hub <-> spokes, and
      spoke <-> spoke when a shortcut is wanted (ESP only where the kernel has it)
  xdmvpn lab up --spokes 4 --ipsec --nat spoke1 --nat spoke3,spoke4
      spoke1 behind one NAT device (nftables masquerade), spoke3 and spoke4 behind
      another; IKE and ESP go over UDP 4500 (NAT traversal); `lab exec nat1 -- nft
      list ruleset` shows a NAT device
  xdmvpn lab metrics hub --match dmvpn_ipsec_sas
      the hub's Prometheus scrape, here only the IPsec SA gauge
  xdmvpn lab down
      stop the daemons, remove namespaces, pinned maps, sockets, configs and logs
      (also what a crashed lab left behind)
  xdmvpn lab up --vm --ipsec
      the same lab in Debian's stock kernel in a VM, where ESP works; a shell there
  xdmvpn lab vm -- .venv/bin/python -m pytest -x tests/ipsec/test_esp.py
      any command in that VM (default: a shell)
  xdmvpn lab config spoke1 --target vagrant --ipsec
      print the configuration the generator makes for spoke1 on a VM (underlay eth1,
      instance dmvpn0), with an [ipsec] block; what the Vagrantfile writes
  xdmvpn lab config hub --routes --spokes 3
      print the hub's static routes of the plan, one `ip route` argument list a line

Needs root, except config. Configurations and logs: /run/xdmvpn/lab/NODE.toml,
NODE.log. Another lab name (several labs side by side): XDMVPN_LAB_NAME=NAME.
Addressing and output: docs/lab.md; the same lab on VMs: Vagrantfile, docs/vagrant.md."""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("lab", help="a hub and spokes in network namespaces on this machine",
                       description="Build a DMVPN of a hub and N spokes in network namespaces, "
                                   "each node running `xdmvpn run`; ping through it, look at "
                                   "it, remove it.", epilog=EXAMPLES, formatter_class=fmt)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def add(name: str, help: str, func) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                               epilog=EXAMPLES, formatter_class=fmt)
        a.set_defaults(func=func)
        return a

    up = add("up", "build the lab, start its daemons, wait until every spoke is registered",
             run_up)
    up.add_argument("--spokes", type=int, default=DEFAULT_SPOKES, metavar="N",
                    help=f"number of spokes, 1..{MAX_SPOKES} (default {DEFAULT_SPOKES})")
    _families(up)
    up.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="how long the daemons may take to register (default 60)")
    up.add_argument("--ipsec", action="store_true",
                    help="a strongSwan charon in every node and an [ipsec] block (the lab's "
                         "pre-shared key) in every configuration: IKE between the hub and "
                         "each spoke, and between spokes for shortcuts")
    up.add_argument("--nat", action="append", metavar="SPOKES",
                    help="put these spokes (comma-separated, e.g. spoke1,spoke2) behind one "
                         "NAT device of their own (nftables masquerade); repeat for more "
                         "devices")
    up.add_argument("--vm", action="store_true",
                    help="in Debian's stock kernel in a VM (ip_gre, ESP, NFLOG; docs/vm.md): "
                         "the lab is built there, then a shell opens in the VM where lab "
                         "ping/status/exec/down work; leaving it powers the VM off")
    up.add_argument("--no-daemons", action="store_true", help=argparse.SUPPRESS)
    status = add("status", "per node: daemon, NHS state, registered peers, shortcuts",
                 run_status)
    status.add_argument("--json", action="store_true", help="print JSON")
    ping = add("ping", "ping B's LAN host from A's, one packet at a time, and say whether "
               "each went via the hub or direct", run_ping)
    ping.add_argument("a", metavar="A", help="node whose LAN host sends (hub, spoke1, ...)")
    ping.add_argument("b", metavar="B", help="node whose LAN host answers")
    ping.add_argument("--count", "-c", type=int, default=5, metavar="N",
                      help="packets to send (default 5)")
    ping.add_argument("--interval", "-i", type=float, default=0.5, metavar="SECONDS",
                      help="pause between packets (default 0.5)")
    ping.add_argument("--family", choices=("ipv4", "ipv6"),
                      help="the LAN hosts' addresses of this family (default: the lab's "
                           "first overlay family)")
    ping.add_argument("--json", action="store_true",
                      help="one JSON object per packet, then the summary")
    ex = add("exec", "run a command in a node's namespace; in a node, `xdmvpn show` asks "
             "that node's daemon", run_exec)
    ex.add_argument("node", metavar="NODE",
                    help="hub, spokeI, NODE-host (the LAN host), underlay (the bridge) or "
                         "natN (a NAT device)")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...",
                    help="the command and its arguments")
    metrics = add("metrics", "print a node's Prometheus scrape (its exporter listens on "
                  "127.0.0.1 inside the node's namespace)", run_metrics)
    metrics.add_argument("node", metavar="NODE", help="hub, spoke1, ...")
    metrics.add_argument("--match", metavar="TEXT",
                         help="only the lines containing TEXT (e.g. dmvpn_ipsec_sas)")
    add("down", "remove the lab: daemons, charons, namespaces, pinned maps, sockets, state",
        run_down)
    vmc = add("vm", "boot Debian's stock kernel in a VM (ip_gre, ESP, NFLOG loaded) and run "
              "CMD there, by default a shell (docs/vm.md)", run_vm)
    vmc.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...",
                     help="the command and its arguments (default: a shell)")
    config = add("config", "print a node's generated configuration (or its routes); no root, "
                 "nothing started", run_config)
    config.add_argument("node", metavar="NODE", help="hub, spoke1, ...")
    config.add_argument("--target", choices=sorted(UNDERLAY_IF), default="netns",
                        help="netns: this machine's lab (underlay ul0, instance lab-NODE); "
                             "vagrant: one VM per node (underlay eth1, instance dmvpn0); "
                             "default netns")
    config.add_argument("--spokes", type=int, default=DEFAULT_SPOKES, metavar="N",
                        help=f"number of spokes, 1..{MAX_SPOKES} (default {DEFAULT_SPOKES})")
    _families(config)
    config.add_argument("--ipsec", action="store_true",
                        help="add an [ipsec] block with the lab's pre-shared key")
    config.add_argument("--nat", action="append", metavar="SPOKES",
                        help="as for lab up: these spokes behind one NAT device (their "
                             "source-address is then private)")
    config.add_argument("--routes", action="store_true",
                        help="print the node's routes instead: PREFIX via GATEWAY dev "
                             f"{TUNNEL}, one a line")
    demo = add("demo", "replace any lab with a fresh one, ping spoke1 -> spoke2 and show the "
               "shortcut that phase 3 built", run_demo)
    demo.add_argument("--spokes", type=int, default=DEFAULT_SPOKES, metavar="N",
                      help=f"number of spokes, 2..{MAX_SPOKES} (default {DEFAULT_SPOKES})")
    _families(demo)


def _families(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", choices=sorted(FAMILIES), default="ipv4",
                   help="overlay (tunnel and LANs): ipv4, ipv6 or dual (both on one "
                        "tunnel; default ipv4)")
    p.add_argument("--nbma", choices=sorted(NBMA_FAMILIES), default="ipv4",
                   help="underlay: ipv4 or ipv6 (default ipv4)")


def invoked_as() -> str:
    """How to type this xdmvpn again, for the commands the lab prints: `xdmvpn` when PATH
    finds this very one, else the path it was started by (e.g. .venv/bin/xdmvpn), else
    `PYTHON -m xdmvpn`. (Inside `lab exec`, plain `xdmvpn` always works: exec_env.)"""
    mine = sys.argv[0]
    if os.path.basename(mine) != "xdmvpn":             # python -m xdmvpn
        mine = os.path.join(os.path.dirname(sys.executable), "xdmvpn")
        if not os.access(mine, os.X_OK):
            return f"{shlex.quote(sys.executable)} -m xdmvpn"
    found = shutil.which("xdmvpn")
    try:
        if found and os.path.samefile(found, mine):
            return "xdmvpn"
    except OSError:                                   # mine is gone: say it as it was run
        pass
    return shlex.quote(mine)


def topology_text(topo: Topology, took: float | None, prog: str = "xdmvpn") -> str:
    """What `lab up` prints; its commands start with prog (see invoked_as)."""
    rows = [(n.name, topo.ns(n), n.underlay.ip, " ".join(str(a.ip) for a in n.overlays),
             " ".join(str(x) for x in n.lans), " ".join(str(h.ip) for h in n.hosts()))
            for n in topo.nodes]
    header = ("Node", "Namespace", "Underlay", "Tunnel", "LAN", "LAN host")
    if topo.nats:
        header += ("Behind NAT",)
        rows = [r + ((f"{d.name} {d.outside.ip}" if (d := topo.nat_of(n)) else None),)
                for r, n in zip(rows, topo.nodes)]
    v6 = 6 in topo.families
    overlays = " and ".join(str(o) for f, o in ((4, OVERLAY), (6, OVERLAY6))
                            if f in topo.families)
    lans = " and ".join(str(x) for f, x in ((4, LANS), (6, LANS6)) if f in topo.families)
    spokes = len(topo.spokes)
    head = (f"{label(topo.name).capitalize()} is up: a hub and {spokes} spoke{'s' * (spokes != 1)}"
            + (f", every spoke registered in {took:.1f} s" if took is not None else
               " (no daemons)"))
    return "\n".join([
        head, "",
        render_table(header, rows, "  "),
        "",
        f"underlay {UNDERLAY if topo.nbma == 'ipv4' else UNDERLAY6}: bridge {BRIDGE} in "
        f"namespace {topo.bridge_ns}",
        *([f"NAT devices (nftables masquerade, inside {NAT_INSIDE}): " + ", ".join(
            f"{d.name} {d.outside.ip} in {topo.nat_ns(d)}" for d in topo.nats)]
          if topo.nats else []),
        f"overlay {overlays} on {TUNNEL}, GRE key {GRE_KEY}",
        f"routes: hub -> each LAN via its spoke; spokes -> {lans} via the hub",
        f"configs and logs: {topo.state_dir}/NODE.toml, NODE.log",
        f"try: {prog} lab ping spoke1 {'spoke2' if spokes > 1 else 'hub'}"
        + (" --family ipv6" if v6 and topo.family == "dual" else "")
        + f"; {prog} lab status",
    ])


def run_up(args: argparse.Namespace) -> int:
    if args.vm:
        from ..lab import vm
        parse_nat(args.nat)                         # bad groups: an error here, not there
        if (args.family, args.nbma) != ("ipv4", "ipv4"):
            raise XdmvpnError("--vm runs the IPv4 lab only (leave out --family/--nbma)")
        return vm.lab_up(args.spokes, args.timeout, args.ipsec, args.nat)
    topo, took = manage.up(args.spokes, timeout=args.timeout, daemons=not args.no_daemons,
                           ipsec=args.ipsec, nat=parse_nat(args.nat), family=args.family,
                           nbma=args.nbma)
    print(topology_text(topo, None if args.no_daemons else took, invoked_as()))
    return 0


def run_vm(args: argparse.Namespace) -> int:
    from ..lab import vm
    return vm.session(args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd)


def run_status(args: argparse.Namespace) -> int:
    topo = manage.load()
    rows = [probe.node_status(topo, n) for n in topo.nodes]
    ok = all(probe.healthy(r) for r in rows)
    if args.json:
        print(json.dumps({"name": topo.name, "healthy": ok, "nodes": rows}, indent=2))
    else:
        print(render_table(probe.STATUS_HEADER, [probe.status_cells(r) for r in rows], "  "))
    return 0 if ok else 1


def run_ping(args: argparse.Namespace) -> int:
    if args.count < 1 or args.interval < 0:
        raise XdmvpnError("--count must be at least 1 and --interval not negative")
    topo = manage.load()
    a, b = topo.node(args.a), topo.node(args.b)
    family = probe.family_of(topo, args.family)
    if not args.json:
        print(f"{a.name} -> {b.name}: {a.host_of(family).ip} -> {b.host_of(family).ip}, "
              f"{args.count} packet{'s' * (args.count != 1)}, one at a time")
    results = []
    for r in probe.ping(topo, a, b, args.count, args.interval, family=family):
        results.append(r)
        print(json.dumps(r) if args.json else probe.ping_line(r), flush=True)
    s = probe.summary(a, b, results)
    print(json.dumps({"summary": s}) if args.json else probe.summary_line(s))
    return 0 if s["received"] == s["sent"] else 1


def run_exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise XdmvpnError("lab exec: give a command, e.g. xdmvpn lab exec spoke1 -- ip route")
    topo = manage.load()
    targets = topo.exec_targets()
    if args.node not in targets:
        raise XdmvpnError(f"lab exec: no node {args.node!r} (one of: {', '.join(targets)})")
    if targets[args.node] not in network.existing(topo.name):
        raise XdmvpnError(f"lab exec: namespace {targets[args.node]} is gone: run "
                          "`xdmvpn lab down` and `xdmvpn lab up`")
    env = exec_env(topo, args.node)
    if cmd[0] == "xdmvpn" and not shutil.which("xdmvpn", path=env["PATH"]):
        cmd = [sys.executable, "-m", "xdmvpn", *cmd[1:]]     # run from a checkout
    sys.stdout.flush()
    argv = exec_argv(targets[args.node], cmd)
    os.execvpe(argv[0], argv, env)


def exec_env(topo: Topology, target: str) -> dict[str, str]:
    """The environment of `lab exec`: in a node (not a LAN host or the underlay),
    $XDMVPN_INSTANCE names its daemon, so that `xdmvpn show ...` typed in there asks it;
    this xdmvpn's bin directory (the venv's) comes first on PATH, so that `xdmvpn` is
    found there even under sudo's PATH."""
    env = dict(os.environ)
    node = next((n for n in topo.nodes if n.name == target), None)
    if node is not None:
        env[INSTANCE_ENV] = topo.instance(node)
    path = env.get("PATH") or os.defpath
    bindir = os.path.dirname(sys.executable)
    if os.access(os.path.join(bindir, "xdmvpn"), os.X_OK) and \
            path.split(os.pathsep)[0] != bindir:
        path = bindir + os.pathsep + path
    env["PATH"] = path
    return env


def run_metrics(args: argparse.Namespace) -> int:
    topo = manage.load()
    text = probe.scrape(topo, topo.node(args.node))
    if args.match:
        text = "".join(ln for ln in text.splitlines(keepends=True) if args.match in ln)
    sys.stdout.write(text)
    return 0


def run_down(args: argparse.Namespace) -> int:
    done = manage.down()
    parts = []
    if done["daemons"]:
        parts.append(f"stopped {done['daemons']} daemon{'s' * (done['daemons'] != 1)}")
    if done["charons"]:
        parts.append(f"{done['charons']} charon{'s' * (done['charons'] != 1)}")
    if done["namespaces"]:
        parts.append(f"removed {len(done['namespaces'])} namespaces")
    if done["pins"]:
        parts.append(f"{len(done['pins'])} pin directories")
    if done["sockets"]:
        parts.append(f"{len(done['sockets'])} sockets")
    if done["state"]:
        parts.append(done["state"])
    name = "" if label(done["name"]) == "the lab" else f" ({done['name']})"
    print(f"lab down{name}: " + (", ".join(parts) if parts else "nothing to remove"))
    return 0


def run_config(args: argparse.Namespace) -> int:
    """The generator's text, unchanged: the lab and the Vagrant VMs use this very function."""
    topo = plan(args.spokes, manage.lab_name(), parse_nat(args.nat), args.family, args.nbma)
    node = topo.node(args.node)
    if args.routes:
        for prefix, gateway in topo.routes(node):
            print(f"{prefix} via {gateway} dev {TUNNEL}")
    else:
        sys.stdout.write(node_configs(topo, args.target, args.ipsec)[node.name])
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Down (whatever is there), up, ping, show: the whole phase-3 story in one command."""
    from .. import control, show
    if args.spokes < 2:
        raise XdmvpnError("lab demo needs at least 2 spokes")
    done = manage.down()
    if done["daemons"] or done["namespaces"]:
        print("removed the previous lab")
    topo, took = manage.up(args.spokes, family=args.family, nbma=args.nbma)
    prog = invoked_as()
    print(topology_text(topo, took, prog), end="\n\n")
    a, b = topo.node("spoke1"), topo.node("spoke2")
    ok = True
    for family in topo.families:
        word = "" if len(topo.families) == 1 else f" --family ipv{family}"
        print(f"$ {prog} lab ping spoke1 spoke2 --count 8 --interval 0.3{word}")
        results = []
        for r in probe.ping(topo, a, b, 8, 0.3, family=family):
            results.append(r)
            print(probe.ping_line(r), flush=True)
        s = probe.summary(a, b, results)
        ok = ok and s["received"] == s["sent"]
        print(probe.summary_line(s), end="\n\n")
    snap = control.request(topo.socket(a), {"cmd": "snapshot"})["snapshot"]
    print(f"$ {prog} lab exec spoke1 -- xdmvpn show shortcut")
    print(show.shortcut_table(snap), end="\n\n")
    print(f"The lab stays up ({prog} lab down removes it); try: {prog} lab status; "
          f"{prog} lab exec spoke2 -- xdmvpn show cache")
    return 0 if ok else 1
