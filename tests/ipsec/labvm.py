"""Helpers of the lab tests in a kernel with ESP (test_esp*.py): the lab that is up
as the tests see it (charon's SAs through the PyPI vici package, the daemons' snapshots),
tcpdump on the underlay bridge decoded by tshark, continuous pings that count what they
lost."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path

from labutil import cli, remove_stale_test_labs, unique_name
from util import need_root, scaled
from xdmvpn.control import request
from xdmvpn.daemon.routes import RTPROT_XDMVPN
from xdmvpn.ipsec.charon import default_socket
from xdmvpn.lab import manage

CAPTURE = "ip proto 47 or ip proto 50 or udp port 500 or udp port 4500"


class Lab:
    def __init__(self, name: str, tmp: Path):
        self.name, self.tmp = name, tmp
        self.topo = manage.load(name)

    def node(self, name):
        return self.topo.node(name)

    def ns(self, name: str) -> str:
        return self.topo.ns(self.node(name))

    def nbma(self, name: str) -> str:
        """Where the others see name: its address, or its NAT device's outside one."""
        return str(self.topo.public_nbma(self.node(name)))

    def ask(self, name: str, cmd: str) -> dict:
        return request(self.topo.socket(self.node(name)), {"cmd": cmd}, timeout=scaled(3))

    def snapshot(self, name: str) -> dict:
        return self.ask(name, "snapshot")["snapshot"]

    def path(self, name: str, path: str) -> int:
        return int(self.ask(name, "stats")["paths"].get(path, {}).get("packets", 0))

    def vici(self, name: str) -> str:
        return default_socket(self.ns(name))

    def swanctl(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["swanctl", *args, "--uri", f"unix://{self.vici(name)}"],
                              capture_output=True, text=True, timeout=scaled(10))

    def sas(self, name: str) -> list[dict]:
        """charon's own view, through the PyPI `vici` package (not xdmvpn's client):
        [{name, state, remote-host, remote-port, nat-remote, uniqueid, children: [...]}]."""
        import socket as so
        import vici
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.settimeout(scaled(10))
        s.connect(self.vici(name))
        try:
            out = []
            for sa in vici.Session(s).list_sas():
                for conn, ike in sa.items():
                    row = _text(ike)
                    row["name"] = conn
                    row["children"] = [dict(c, name=k) for k, c in
                                       (row.pop("child-sas", None) or {}).items()]
                    out.append(row)
            return out
        finally:
            s.close()

    def child_sas(self, name: str, peer: str) -> list[dict]:
        return [c for sa in self.sas(name) if sa.get("remote-host") == self.nbma(peer)
                and sa.get("state") == "ESTABLISHED"
                for c in sa["children"] if c.get("state") == "INSTALLED"]

    def shortcut_routes(self, name: str) -> list[dict]:
        out = subprocess.run(["ip", "-n", self.ns(name), "-j", "route", "show", "proto",
                              str(RTPROT_XDMVPN)], capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout or "[]")

    def registered(self, name: str) -> bool:
        nhs = self.snapshot(name).get("nhs", [])
        return bool(nhs) and all(n.get("state") == "up" for n in nhs)

    def wait_for(self, what, timeout: float, message: str):
        deadline = time.monotonic() + scaled(timeout)
        while True:
            got = what()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{message}: not within {scaled(timeout):g} s")
            time.sleep(0.3)

    def host_ip(self, name: str) -> str:
        return str(self.node(name).host.ip)


def _text(value):
    """vici's bytes, recursively, as str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


class Capture:
    """tcpdump on the underlay bridge; read() decodes it with tshark."""

    def __init__(self, lab: Lab, tag: str):
        self.pcap = lab.tmp / f"underlay-{tag}.pcap"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.topo.bridge_ns, "tcpdump", "-i", "br0", "-w",
             str(self.pcap), "-U", "--immediate-mode", "-s", "200", CAPTURE],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(scaled(0.3))

    def read(self) -> list[dict]:
        time.sleep(scaled(0.2))
        self.proc.terminate()
        self.proc.wait(scaled(10))
        fields = ("frame.time_epoch", "ip.src", "ip.dst", "ip.proto", "udp.srcport",
                  "udp.dstport", "esp.spi", "isakmp.exchangetype", "gre.proto")
        out = subprocess.run(["tshark", "-n", "-r", str(self.pcap), "-T", "fields",
                              *[x for f in fields for x in ("-e", f)], "-E", "occurrence=f"],
                             capture_output=True, text=True, timeout=scaled(60))
        assert out.returncode == 0, out.stderr
        return [dict(zip(("t", "src", "dst", "proto", "sport", "dport", "spi", "ike", "gre"),
                         line.split("\t"))) for line in out.stdout.splitlines() if line]


class Ping:
    """A continuous ping (0.1 s) from one LAN host to another's; stop() -> (sent up to the
    last answer, lost among those): echoes still in flight at the stop are not counted."""

    def __init__(self, lab: Lab, src: str, dst_ip: str, interval: float = 0.1):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.topo.host_ns(lab.node(src)), "ping", "-n", "-i",
             str(interval), "-W", "2", dst_ip], stdout=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, list[int]]:
        time.sleep(scaled(0.3))
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=scaled(10))
        got = {int(s) for s in re.findall(r"icmp_seq=(\d+) ttl", out)}
        assert got, out[-500:]
        return max(got), sorted(set(range(1, max(got) + 1)) - got)


def ping_ok(lab: Lab, src: str, dst: str, count: int = 5) -> bool:
    r = subprocess.run(["ip", "netns", "exec", lab.topo.host_ns(lab.node(src)), "ping", "-n",
                        "-c", str(count), "-i", "0.2", "-W", str(int(scaled(2))),
                        lab.host_ip(dst)], capture_output=True, text=True,
                       timeout=scaled(30))
    return f"{count} received" in r.stdout


def between(rows: list[dict], a: str, b: str) -> list[dict]:
    return [r for r in rows if {r["src"], r["dst"]} == {a, b}]


@contextlib.contextmanager
def lab_up(tmp_path_factory, tag: str, *args: str):
    """`xdmvpn lab up --ipsec ARGS` (the real CLI) under a name of this test process;
    yields (Lab, lab up's CompletedProcess); the lab stays up even when `lab up` failed
    (for a look), and goes down at the end, its state directory (configs, logs, charons')
    kept under the test's base temp directory."""
    need_root()
    remove_stale_test_labs()
    name = unique_name(tag)
    manage.down(name)
    up = cli(name, "lab", "up", "--ipsec", *args, timeout=scaled(300))
    try:
        yield Lab(name, tmp_path_factory.mktemp(f"lab{tag}")), up
    finally:
        try:
            state = manage.load(name).state_dir
            subprocess.run(["cp", "-r", state, str(tmp_path_factory.getbasetemp() /
                                                   f"lab-{name}")], timeout=60)
        except Exception:
            pass
        manage.down(name)
