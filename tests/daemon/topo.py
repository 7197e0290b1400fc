"""Hubs and spokes in network namespaces, each running a real `xdmvpn run` process
(test helper).

Underlay 192.0.2.0/24 on a bridge in its own namespace (hub h at .h, spoke i at .10+i),
overlay 172.16.0.0/24 (hub .h, spoke .10+i), LAN of spoke i 10.0.i.0/24 (spoke .1, a host
namespace at .10). Spokes route 10.0.0.0/16 via the first hub; hubs route each LAN via
its spoke. Names are unique per topology, so tests never meet a lab someone has up.

IPv6 (overlay="ipv6" or "dual", underlay=6, or spoke_underlays per spoke): underlay
2001:db8:ff::/64 (node at ::index in hex), overlay 2001:db8:100::/64, LAN of spoke i
2001:db8:1:i::/64 (spoke ::1, host ::10); spokes route 2001:db8:1::/48 via the hub. A hub
has an NBMA address of every family its spokes use.

With ipsec=True every node also runs a private charon (xdmvpn.ipsec.charon) in its
namespace, started before its daemon, and its configuration has an [ipsec] block (PSK,
that charon's vici socket) plus `ipsec_extra[name]` lines (with a certificate there, no
PSK); `ipsec_extra[name] = None` leaves that node without IPsec."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from util import need_root, scaled
from xdmvpn import control, netns
from xdmvpn.lab.xdp import attach_pass
from xdmvpn.netns import Namespaces, in_netns, run
from xdmvpn_bench import daemons

REPO = Path(__file__).resolve().parents[2]
KEY = 42
AUTH = "xdmvpn"
PSK = "xdmvpn-test-psk"


class Topology:
    def __init__(self, tmp: Path, spokes: int = 2, hubs: int = 1, holdtime: int = 60,
                 spoke_extra: str = "", hub_extra: str = "", unique: bool = True, ipsec: bool = False,
                 ipsec_extra: dict | None = None,
                 metrics: str = "", overlay: str = "ipv4", underlay: int = 4,
                 spoke_underlays: tuple[int, ...] | None = None):
        need_root()
        self.families = {"ipv4": (4,), "ipv6": (6,), "dual": (4, 6)}[overlay]
        self.underlay = underlay
        self.spoke_underlays = spoke_underlays or (underlay,) * spokes
        self.spaces = Namespaces("xdd")
        self.tag = self.spaces.tag
        self.tmp = tmp
        self.hubs = hubs
        self.spokes = spokes
        self.holdtime = holdtime
        self.spoke_extra = spoke_extra
        self.hub_extra = hub_extra
        self.unique = unique
        self.ipsec = ipsec
        self.ipsec_extra = ipsec_extra or {}
        self.charons: dict = {}            # name -> xdmvpn.ipsec.charon.Charon
        self.metrics = metrics          # body of a [metrics] table for every node, if any
        self.run_args: tuple = ()          # extra `xdmvpn run` arguments for every start
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.ul = self.spaces.add("ul")
        netns.ip("link", "add", "br0", "type", "bridge", ns=self.ul)
        netns.ip("link", "set", "br0", "up", ns=self.ul)
        self.nodes = [f"hub{h}" for h in range(1, hubs + 1)] + \
            [f"spoke{i}" for i in range(1, spokes + 1)]
        for name in self.nodes:
            self._node(name)
        self._xdp_pass_on_bridge_ports()

    # -- addressing ---------------------------------------------------------------------------
    @staticmethod
    def index(name: str) -> int:
        return int(name[3:]) if name.startswith("hub") else 10 + int(name[5:])

    def underlays(self, name: str) -> tuple[int, ...]:
        """The node's underlay families (a hub: every family of its spokes, IPv4 first)."""
        if name.startswith("hub"):
            return tuple(sorted(set(self.spoke_underlays))) or (self.underlay,)
        return (self.spoke_underlays[int(name[5:]) - 1],)

    def nbma(self, name: str, family: int | None = None) -> str:
        family = family or self.underlays(name)[0]
        i = self.index(name)
        return f"192.0.2.{i}" if family == 4 else f"2001:db8:ff::{i:x}"

    def tunnel_ip(self, name: str, family: int | None = None) -> str:
        family = family or self.families[0]
        i = self.index(name)
        return f"172.16.0.{i}" if family == 4 else f"2001:db8:100::{i:x}"

    def lan_host(self, name: str, family: int | None = None) -> str:
        family = family or self.families[0]
        i = int(name[5:])
        return f"10.0.{i}.10" if family == 4 else f"2001:db8:1:{i}::10"

    def lan(self, name: str, family: int | None = None) -> str:
        family = family or self.families[0]
        i = int(name[5:])
        return f"10.0.{i}.0/24" if family == 4 else f"2001:db8:1:{i}::/64"

    @property
    def default(self) -> bool:
        """The IPv4-only topology every older test knows (its config unchanged)."""
        return self.families == (4,) and set(self.spoke_underlays) == {4}

    def ns(self, name: str) -> str:
        return self.spaces.name(name)

    def instance(self, name: str) -> str:
        return f"t{self.tag}-{name}"

    def socket(self, name: str) -> str:
        return f"/run/xdmvpn/{self.instance(name)}.sock"

    # -- building -------------------------------------------------------------------------------
    def _node(self, name: str) -> None:
        ip = netns.ip
        ns = self.spaces.add(name, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        port = f"p{self.index(name)}"
        first, *more = [f"{self.nbma(name, f)}/{24 if f == 4 else 64}"
                        for f in self.underlays(name)]
        self.spaces.link(ns, "eth0", self.ul, port, first)
        for cidr in more:
            netns.addr(ns, "eth0", cidr)
        ip("link", "set", port, "master", "br0", ns=self.ul)
        if name.startswith("spoke"):
            i = int(name[5:])
            lan = self.spaces.add(f"{name}lan")
            self.spaces.link(ns, "lan0", lan, "eth0", f"10.0.{i}.1/24", f"10.0.{i}.10/24")
            ip("route", "add", "default", "via", f"10.0.{i}.1", ns=lan)
            if 6 in self.families:
                netns.addr(ns, "lan0", f"2001:db8:1:{i}::1/64")
                netns.addr(lan, "eth0", f"2001:db8:1:{i}::10/64")
                ip("-6", "route", "add", "default", "via", f"2001:db8:1:{i}::1", ns=lan)
        (self.tmp / f"{name}.toml").write_text(self.config(name))

    def _xdp_pass_on_bridge_ports(self) -> None:
        """veth delivers XDP_TX frames (the hub's hairpin) only to a peer end that has an
        XDP program (DESIGN.md 2): the lab's pass program on every bridge port, as a switch
        port on real hardware needs nothing."""
        with in_netns(self.ul):
            attach_pass([f"p{self.index(n)}" for n in self.nodes])

    def config(self, name: str) -> str:
        if self.default:
            address = f'address = "{self.tunnel_ip(name)}/24"'
        else:
            addrs = ", ".join(f'"{self.tunnel_ip(name, f)}/{24 if f == 4 else 64}"'
                              for f in self.families)
            nbmas = ", ".join(f'"{self.nbma(name, f)}"' for f in self.underlays(name))
            address = f"address = [{addrs}]\nsource-address = [{nbmas}]"
        lines = ["[tunnel]", 'name = "dmvpn0"', address,
                 'source-interface = "eth0"', f"key = {KEY}", "mtu = 1400",
                 "adjust-mss = 1360", "", "[nhrp]", f"holdtime = {self.holdtime}",
                 f'authentication = "{AUTH}"']
        if name.startswith("hub"):
            lines += ["redirect = true", 'multicast = ["dynamic"]', self.hub_extra]
        else:
            lines += ["shortcut = true", 'multicast = ["nhs"]', self.spoke_extra]
            if not self.unique:
                lines.append("registration-no-unique = true")
            for h in range(1, self.hubs + 1):
                for f in self.families:
                    lines += ["", "[[nhrp.nhs]]", f'tunnel-ip = "{self.tunnel_ip(f"hub{h}", f)}"',
                              f'nbma = "{self.nbma(f"hub{h}", self.underlays(name)[0])}"',
                              f"priority = {h}"]
        lines += ["", "[control]", f'instance = "{self.instance(name)}"']
        if self.has_ipsec(name):
            extra = self.ipsec_extra.get(name, "")
            lines += ["", "[ipsec]", f'vici-socket = "unix://{self.vici_socket(name)}"', extra]
            if "certificate" not in extra:
                lines.append(f'psk = "{PSK}"')
        if self.metrics:
            lines += ["", "[metrics]", self.metrics]
        return "\n".join(lines) + "\n"

    # -- daemons --------------------------------------------------------------------------------
    def start(self, name: str, *extra: str, wait: bool = True) -> subprocess.Popen:
        if self.has_ipsec(name) and name not in self.charons:
            self.start_charon(name)
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        proc = daemons.spawn(self.ns(name), self.tmp / f"{name}.toml", log, "--log-level",
                             "debug", *self.run_args, *extra)
        self.procs[name] = proc
        if wait:
            self.wait_ready(name)
        return proc

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        daemons.wait_answering(name, self.procs[name], self.socket(name), self.logs[name],
                               scaled(timeout))

    def start_all(self) -> None:
        for name in self.nodes:
            self.start(name, wait=False)
        for name in self.nodes:
            self.wait_ready(name)
        self.add_routes()

    def add_routes(self) -> None:
        """Static routes on the overlay of every running node (a routing daemon's job)."""
        for name in self.nodes:
            if name not in self.procs:
                continue
            for f in self.families:
                if name.startswith("hub"):
                    for i in range(1, self.spokes + 1):
                        spoke = f"spoke{i}"
                        netns.ip("route", "replace", self.lan(spoke, f), "via",
                                 self.tunnel_ip(spoke, f), "dev", "dmvpn0", ns=self.ns(name))
                else:
                    summary = "10.0.0.0/16" if f == 4 else "2001:db8:1::/48"
                    netns.ip("route", "replace", summary, "via", self.tunnel_ip("hub1", f),
                             "dev", "dmvpn0", ns=self.ns(name))

    def stop(self, name: str, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
        return daemons.stop(self.procs.pop(name), sig, scaled(timeout))

    # -- IPsec: a private charon per node -------------------------------------------------------
    def has_ipsec(self, name: str) -> bool:
        return self.ipsec and self.ipsec_extra.get(name, "") is not None

    def vici_socket(self, name: str) -> str:
        return f"/run/xdmvpn/charon/{self.ns(name)}.vici"

    def start_charon(self, name: str):
        from xdmvpn.ipsec.charon import start_charon
        self.charons[name] = start_charon(self.ns(name), self.tmp / f"charon-{name}",
                                          self.vici_socket(name))
        return self.charons[name]

    def stop_charon(self, name: str) -> None:
        self.charons.pop(name).stop()

    def list_sas(self, name: str) -> list[dict]:
        """The node's IKE_SAs as charon lists them, through the PyPI `vici` package (not
        xdmvpn's client): [{"name", "state", "remote-host", "remote-id", "child-sas"}]."""
        import socket as so
        import vici
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.vici_socket(name))
        try:
            out = []
            for sa in vici.Session(s).list_sas():
                for conn, ike in sa.items():
                    row = {k: v.decode() if isinstance(v, bytes) else v for k, v in ike.items()}
                    row["name"] = conn
                    out.append(row)
            return out
        finally:
            s.close()

    def established(self, name: str) -> dict:
        """remote-host -> remote-id of the node's ESTABLISHED IKE_SAs."""
        return {sa["remote-host"]: sa["remote-id"] for sa in self.list_sas(name)
                if sa["state"] == "ESTABLISHED"}

    def log(self, name: str) -> str:
        return daemons.log_tail(self.logs.get(name), 4000)

    # -- asking ---------------------------------------------------------------------------------
    def ask(self, name: str, cmd: str, **kw) -> dict:
        return control.request(self.socket(name), {"cmd": cmd, **kw}, timeout=scaled(5.0))

    def snapshot(self, name: str) -> dict:
        return self.ask(name, "snapshot")["snapshot"]

    def path(self, name: str, path: str) -> int:
        return self.ask(name, "stats")["paths"][path]["packets"]

    def cli(self, name: str, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=str(REPO / "ctl"))
        return subprocess.run([sys.executable, "-m", "xdmvpn", *args, "--socket",
                               self.socket(name)], capture_output=True, text=True,
                              timeout=scaled(30), env=env)

    def wait_for(self, what, timeout: float = 30.0, step: float = 0.1, message: str = ""):
        deadline = time.monotonic() + scaled(timeout)
        while True:
            got = what()
            if got:
                return got
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{self.log(n)}" for n in self.nodes)
                raise AssertionError(f"timed out: {message}\n{logs}")
            time.sleep(step)

    def registered(self, spoke: str, hub: str = "hub1") -> bool:
        """Registered with the hub in every overlay family."""
        snap = self.snapshot(spoke)
        hub_nbma = self.nbma(hub, self.underlays(spoke)[0])
        return sum(c["nbma"] == hub_nbma and c["state"] == "up"
                   for c in snap["nhs"]) == len(self.families)

    def ping(self, src: str, dst_ip: str, count: int = 1, interval: float = 0.2,
             wait: int = 2, lan: bool = True) -> subprocess.CompletedProcess:
        ns = self.ns(f"{src}lan") if lan else self.ns(src)
        return run("ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait),
                   dst_ip, ns=ns, check=False)

    def exec(self, name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(*cmd, ns=self.ns(name), check=check)

    def close(self) -> None:
        for name in list(self.procs):
            try:
                self.stop(name, timeout=15)
            except Exception:
                self.procs.get(name, None) and self.procs[name].kill()
        for name in list(self.charons):
            try:
                self.stop_charon(name)
            except Exception:
                pass
        self.spaces.close()
        for name in self.nodes:
            shutil.rmtree(f"/sys/fs/bpf/xdmvpn/{self.instance(name)}", ignore_errors=True)


@contextlib.contextmanager
def captured(tmp: Path, timeout: float = 20.0, **kw) -> Iterator[Topology]:
    """A topology with every daemon started and every spoke registered (in every overlay
    family), GRE on the underlay bridge captured to t.capture (IPv4 and IPv6); all of it
    taken down on exit."""
    t = Topology(tmp, **kw)
    cap = tmp / "underlay.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", t.ul, "tcpdump", "-i", "br0", "-w",
                             str(cap), "-U", "-Z", "root", "--immediate-mode", "-s", "0",
                             "ip proto 47 or ip6 proto 47"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        t.start_all()
        spokes = [f"spoke{i}" for i in range(1, t.spokes + 1)]
        t.wait_for(lambda: all(t.registered(s) for s in spokes), timeout,
                   message="spokes registered")
        t.capture, t.dump = cap, dump
        yield t
    finally:
        dump.terminate()
        dump.wait(10)
        t.close()


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)
