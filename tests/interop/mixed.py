"""xdmvpn and FRR nhrpd side by side (test helper): the namespaces and addressing of
tests/daemon/topo.py (underlay 192.0.2.0/24 on a bridge, hub h at .h, spoke i at .10+i;
overlay 172.16.0.0/24 with the same host numbers; LAN of spoke i 10.0.i.0/24, a host at
.10), where each node is either a real `xdmvpn run` or FRR's zebra + nhrpd on the
kernel's own multipoint GRE device (ip_gre, key 42, ttl 64, MTU 1400). No NHRP
authentication anywhere: FRR 8.4 has none.

FRR's configurations come from the files in tests/interop/frr/ (docs/interop.md shows
them); an FRR hub also gets the NFLOG rule FRR documents for `ip nhrp redirect`. tcpdump
captures the bridge for the topology's whole life; tshark decodes it (wire.py)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from topo import KEY, Topology
from util import scaled
from xdmvpn import netns
from xdmvpn_bench.frr import Frr, gre_device

CONFIGS = Path(__file__).resolve().parent / "frr"
MTU = 1400
GRE = "gre1"
OVERLAY = "172.16.0.0/24"
NFLOG_GROUP = 1
# FRR's documentation (doc/user/nhrpd.rst, "Hub Functionality"): log forwarded traffic that
# enters and leaves the tunnel, rate limited per source/destination /24 pair
COUNT_RULE = ["iptables", "-A", "FORWARD", "-i", GRE, "-o", GRE]    # counts what the hub relays
NFLOG_RULE = ["iptables", "-A", "FORWARD", "-i", GRE, "-o", GRE,
              "-m", "hashlimit", "--hashlimit-upto", "4/minute", "--hashlimit-burst", "1",
              "--hashlimit-mode", "srcip,dstip", "--hashlimit-srcmask", "24",
              "--hashlimit-dstmask", "24", "--hashlimit-name", "loglimit-0",
              "-j", "NFLOG", "--nflog-group", str(NFLOG_GROUP), "--nflog-range", "128"]


@dataclass(frozen=True)
class Node:
    impl: str = "xdmvpn"            # "xdmvpn" or "frr"
    nhs: tuple[str, ...] = ()       # a spoke's hubs, in order of preference
    dynamic: bool = False           # FRR spoke: `ip nhrp nhs dynamic nbma ...`
    routes: tuple[tuple[str, str], ...] = ()   # a spoke's (prefix, via hub) besides
                                               # Mixed.spoke_via its first hub


def frr_config(role: str, **values) -> str:
    return (CONFIGS / f"{role}.conf").read_text().format(**values)


class Mixed(Topology):
    """nodes: name ("hubN"/"spokeN") -> Node."""

    def __init__(self, tmp: Path, nodes: dict[str, Node], holdtime: int = 30):
        self.specs = nodes
        self.frr: dict[str, Frr] = {}
        self.dump: subprocess.Popen | None = None
        hubs = sum(1 for n in nodes if n.startswith("hub"))
        super().__init__(tmp, spokes=len(nodes) - hubs, hubs=hubs, holdtime=holdtime)
        self.pcap = tmp / "underlay.pcap"
        self.dump = subprocess.Popen(
            netns.exec_argv(self.ul, ["tcpdump", "-i", "br0", "-w", str(self.pcap), "-U",
                                      "--immediate-mode", "-s", "0",
                                      "ip proto 47 or (icmp and icmp[0] == 3)"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- what each node is ------------------------------------------------------------------
    def is_frr(self, name: str) -> bool:
        return self.specs[name].impl == "frr"

    def dev(self, name: str) -> str:
        """The node's tunnel interface: xdmvpn's overlay veth or the kernel's GRE device."""
        return GRE if self.is_frr(name) else "dmvpn0"

    def frr_nhs_line(self, spoke: str, hub: str) -> str:
        if self.specs[spoke].dynamic:
            return f" ip nhrp nhs dynamic nbma {self.nbma(hub)}"
        return f" ip nhrp nhs {self.tunnel_ip(hub)} nbma {self.nbma(hub)}"

    def config(self, name: str) -> str:
        """The xdmvpn node's TOML (FRR nodes: frr_text)."""
        if self.is_frr(name):
            return ""
        lines = ["[tunnel]", 'name = "dmvpn0"', f'address = "{self.tunnel_ip(name)}/24"',
                 'source-interface = "eth0"', f"key = {KEY}", f"mtu = {MTU}", "",
                 "[nhrp]", f"holdtime = {self.holdtime}"]
        if name.startswith("hub"):
            lines += ["redirect = true", 'multicast = ["dynamic"]']
        else:
            lines += ["shortcut = true", 'multicast = ["nhs"]']
            for prio, hub in enumerate(self.specs[name].nhs, 1):
                lines += ["", "[[nhrp.nhs]]", f'tunnel-ip = "{self.tunnel_ip(hub)}"',
                          f'nbma = "{self.nbma(hub)}"', f"priority = {prio}"]
        lines += ["", "[control]", f'instance = "{self.instance(name)}"']
        return "\n".join(lines) + "\n"

    def frr_text(self, name: str) -> str:
        if name.startswith("hub"):
            return frr_config("hub", holdtime=self.holdtime)
        nhs = "\n".join(self.frr_nhs_line(name, h) for h in self.specs[name].nhs)
        return frr_config("spoke", holdtime=self.holdtime, nhs=nhs)

    # -- building -----------------------------------------------------------------------------
    def _node(self, name: str) -> None:
        super()._node(name)
        if self.is_frr(name):
            (self.tmp / f"{name}.toml").unlink()
            (self.tmp / f"{name}-nhrpd.conf").write_text(self.frr_text(name))
            gre_device(self.ns(name), self.tunnel_ip(name), KEY, MTU)
            if name.startswith("hub"):
                self.exec(name, *COUNT_RULE)
                self.exec(name, *NFLOG_RULE)

    # -- daemons --------------------------------------------------------------------------------
    def start(self, name: str, *extra: str, wait: bool = True):
        if not self.is_frr(name):
            return super().start(name, *extra, wait=wait)
        frr = Frr(self.ns(name), self.ns(name), self.tmp / f"frr-{name}")
        self.frr[name] = frr
        frr.start(self.frr_text(name), timeout=scaled(30))
        return frr

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        if not self.is_frr(name):
            super().wait_ready(name, timeout)

    def start_all(self) -> None:
        """xdmvpn daemons first (their data plane compiles meanwhile), FRR hubs, then FRR
        spokes once the xdmvpn hubs answer (FRR backs off between unanswered
        registrations: the first one should meet a hub)."""
        t0 = time.monotonic()
        xd = [n for n in self.nodes if not self.is_frr(n)]
        frr = [n for n in self.nodes if self.is_frr(n)]
        for name in xd:
            self.start(name, wait=False)
        for name in frr:
            if name.startswith("hub"):
                self.start(name)
        for name in xd:
            if name.startswith("hub"):
                self.wait_ready(name)
        for name in frr:
            if name.startswith("spoke"):
                self.start(name)
        for name in xd:
            self.wait_ready(name)
        self.add_routes()
        self.started_in = time.monotonic() - t0
        self.all_started = time.time()      # every daemon ready, its data plane up

    def stop(self, name: str, *args, **kw) -> int:
        if name in self.frr:
            self.frr.pop(name).stop()
            return 0
        return super().stop(name, *args, **kw)

    def add_routes(self) -> None:
        """Static routes over the tunnel (a routing protocol's job): a hub routes the LAN
        of each spoke registering with it via that spoke, a spoke its default routes via
        its first hub (spoke_via) and its `routes`."""
        for name in self.nodes:
            if name not in self.procs and name not in self.frr:
                continue
            if name.startswith("hub"):
                for spoke in self.nodes:
                    if spoke.startswith("spoke") and name in self.specs[spoke].nhs:
                        self.route(name, self.lan(spoke), spoke)
            else:
                self.spoke_via(name, self.specs[name].nhs[0])
                for prefix, hub in self.specs[name].routes:
                    self.route(name, prefix, hub)

    def spoke_via(self, spoke: str, hub: str) -> None:
        """The spoke's routes through a hub: 10.0.0.0/16 (the LANs) and, for an FRR spoke,
        the overlay 172.16.0.0/24 too. FRR's responder routes its resolution reply to
        the requester's tunnel address (through the hub, which forwards it) and drops
        the request when it has no route there; its /32 tunnel address gives it none
        (xdmvpn's tunnel address is a /24, and it answers a requester directly)."""
        self.route(spoke, "10.0.0.0/16", hub)
        if self.is_frr(spoke):
            self.route(spoke, OVERLAY, hub)

    def route(self, name: str, prefix: str, via: str) -> None:
        netns.ip("route", "replace", prefix, "via", self.tunnel_ip(via), "dev", self.dev(name),
                 "onlink", ns=self.ns(name))

    @staticmethod
    def lan(spoke: str) -> str:
        return f"10.0.{int(spoke[5:])}.0/24"

    def log(self, name: str) -> str:
        if name in self.frr:
            return self.frr[name].log_path("nhrpd").read_text(errors="replace")[-4000:]
        return super().log(name)

    def close(self) -> None:
        for name in list(self.frr):
            try:
                self.stop(name)
            except Exception:       # noqa: BLE001 - cleanup goes on
                pass
        if self.dump is not None:
            self.dump.terminate()
            self.dump.wait(10)
        super().close()

    # -- FRR's own view (vtysh) -------------------------------------------------------------
    def frr_table(self, name: str, what: str) -> list[dict]:
        """`show ip nhrp cache|nhs|shortcut json` of an FRR node: its "table" rows."""
        return self.frr[name].show_json(f"show ip nhrp {what} json")["table"]

    def frr_cache(self, name: str) -> dict[str, dict]:
        return {row["protocol"]: row for row in self.frr_table(name, "cache")}

    # -- either implementation's view ---------------------------------------------------------
    def registered_at(self, spoke: str, hub: str) -> bool:
        """The hub holds the spoke's registration (type dynamic, at its NBMA address)."""
        if self.is_frr(hub):
            row = self.frr_cache(hub).get(self.tunnel_ip(spoke))
        else:
            row = next((e for e in self.snapshot(hub)["cache"]
                        if e["protocol"] == self.tunnel_ip(spoke)), None)
        return bool(row) and row["type"] == "dynamic" and row["nbma"] == self.nbma(spoke)

    def shortcut_to(self, spoke: str, peer: str) -> bool:
        """The spoke has a shortcut toward the peer spoke's LAN via the peer's NBMA address."""
        lan_host = self.lan_host(peer)
        if self.is_frr(spoke):
            cache = self.frr_cache(spoke)
            for sc in self.frr_table(spoke, "shortcut"):
                peer_row = cache.get(sc.get("via", ""))
                if sc["type"] not in ("incomplete", "negative") and \
                        _covers(sc["prefix"], lan_host) and peer_row and \
                        peer_row["nbma"] == self.nbma(peer):
                    return True
            return False
        return any(_covers(sc["prefix"], lan_host) and sc["nbma"] == self.nbma(peer)
                   and sc["installed"] for sc in self.snapshot(spoke)["shortcuts"])

    def forwarded(self, hub: str) -> int:
        """Packets the hub relayed between spokes: the xdmvpn data plane's hairpin
        counter, or the FRR hub's kernel forwarding counter (COUNT_RULE)."""
        if self.is_frr(hub):
            rules = self.exec(hub, "iptables", "-nvxL", "FORWARD").stdout.splitlines()
            return int(rules[2].split()[0])         # the first rule: COUNT_RULE
        return self.path(hub, "hairpin") + self.path(hub, "hairpin_slow")

    def clear_shortcuts(self, *names: str) -> None:
        for name in names:
            if self.is_frr(name):
                self.frr[name].vtysh("clear ip nhrp shortcut",
                                     harmless=(r"% (No|\d+) entries( cleared)?",))
            else:
                self.ask(name, "clear", what="shortcut")

    def settle(self, seconds: float = 1.0) -> None:
        time.sleep(scaled(seconds))


def _covers(prefix: str, addr: str) -> bool:
    from ipaddress import ip_address, ip_network
    return ip_address(addr) in ip_network(prefix, strict=False)
