"""What `lab ping` and `lab status` measure: ICMP echoes between LAN hosts, each packet's
path judged from the hub's hairpin counter, and each node's daemon and NHRP state."""

from __future__ import annotations

import time
from typing import Iterator

from ..control import request
from ..errors import XdmvpnError
from ..netns import in_netns
from ..pinger import Pinger
from . import runner
from .topology import Node, Topology

#: Data-plane paths of the hub that carry spoke-to-spoke traffic: XDP hairpin, and the
#: slow path (decapsulated, forwarded by the kernel) when XDP cannot hairpin.
HUB_PATHS = ("hairpin", "hairpin_slow")

#: path -> how a ping line says it
PATH_TEXT = {"hub": "via hub", "direct": "direct", "mixed": "one way via hub, one way direct",
             None: "lost"}


# --- per-packet path -----------------------------------------------------------------------

def hub_passes(topo: Topology) -> int:
    """Packets the hub has forwarded spoke to spoke so far (its data-plane counters)."""
    try:
        stats = request(topo.socket(topo.hub), {"cmd": "stats"}, timeout=2.0)
    except XdmvpnError:
        raise XdmvpnError(f"the hub's daemon does not answer on {topo.socket(topo.hub)}, "
                          f"so no path can be told (see `xdmvpn lab status` and "
                          f"{topo.log_path(topo.hub)})") from None
    paths = stats.get("paths", {})
    return sum(int(paths.get(p, {}).get("packets", 0)) for p in HUB_PATHS)


def classify(received: bool, hub_delta: int, hub_endpoint: bool) -> str | None:
    """An echo's path: "hub" (request and reply through the hub), "direct" (neither),
    "mixed" (one of the two), None (lost). With the hub as an end, every packet is "hub"."""
    if not received:
        return None
    if hub_endpoint:
        return "hub"
    return "direct" if hub_delta <= 0 else "hub" if hub_delta >= 2 else "mixed"


def family_of(topo: Topology, family: str | None) -> int:
    """`lab ping --family`: 4 or 6 (default: the lab's first overlay family)."""
    if family is None:
        return topo.families[0]
    version = {"ipv4": 4, "ipv6": 6}.get(family)
    if version not in topo.families:
        raise XdmvpnError(f"--family {family}: the lab runs {topo.family} (xdmvpn lab up "
                          "--family ipv4|ipv6|dual)")
    return version


def ping(topo: Topology, a: Node, b: Node, count: int, interval: float,
         timeout: float = 1.0, family: int | None = None) -> Iterator[dict]:
    """One echo at a time from a's LAN host to b's (of the overlay family `family`, the
    lab's first by default); yields a result per packet as it ends."""
    if a is b:
        raise XdmvpnError(f"ping {a.name} {b.name}: give two different nodes")
    family = family or topo.families[0]
    src, dst = a.host_of(family).ip, b.host_of(family).ip
    hub_end = topo.hub in (a, b)
    pinger = Pinger(topo.host_ns(a), family)
    try:
        for seq in range(1, count + 1):
            if seq > 1:
                time.sleep(interval)
            before = None if hub_end else hub_passes(topo)
            rtt = pinger.echo(str(dst), seq, timeout)
            delta = 0 if hub_end else hub_passes(topo) - before
            yield {"seq": seq, "src": str(src), "dst": str(dst),
                   "received": rtt is not None,
                   "rtt_ms": None if rtt is None else round(rtt, 3),
                   "hub_forwarded": delta, "path": classify(rtt is not None, delta, hub_end)}
    finally:
        pinger.close()


def summary(a: Node, b: Node, results: list[dict]) -> dict:
    paths = [r["path"] for r in results]
    first = results[0] if results else {}
    src, dst = first.get("src", str(a.host.ip)), first.get("dst", str(b.host.ip))
    return {"from": a.name, "to": b.name, "src": src, "dst": dst,
            "sent": len(results), "received": sum(r["received"] for r in results),
            "via_hub": paths.count("hub"), "direct": paths.count("direct"),
            "mixed": paths.count("mixed")}


def ping_line(r: dict) -> str:
    rtt = "lost" if r["rtt_ms"] is None else f"{r['rtt_ms']:7.2f} ms"
    extra = f" (hub forwarded {r['hub_forwarded']})" if r["hub_forwarded"] else ""
    return f"seq {r['seq']:<3} {rtt:>10}  {PATH_TEXT[r['path']]}{extra}"


def summary_line(s: dict) -> str:
    parts = [f"{s['via_hub']} via hub", f"{s['direct']} direct"]
    if s["mixed"]:
        parts.append(f"{s['mixed']} one way via hub")
    return (f"{s['from']} -> {s['to']}: {s['sent']} sent, {s['received']} received, "
            f"{s['sent'] - s['received']} lost; " + ", ".join(parts))


# --- status --------------------------------------------------------------------------------

def node_status(topo: Topology, node: Node) -> dict:
    """Daemon (pid, answers), NHS states (spokes), registered peers (hub), shortcuts."""
    pid = runner.pid_of(topo, node)
    row = {"node": node.name, "role": node.role, "namespace": topo.ns(node),
           "underlay": str(node.underlay.ip),
           "tunnel": " ".join(str(a.ip) for a in node.overlays),
           "lan": " ".join(str(n) for n in node.lans), "pid": pid, "running": pid is not None, "answers": False,
           "nhs": None, "registered": None, "shortcuts": None}
    if pid is None:
        return row
    try:
        snap = request(topo.socket(node), {"cmd": "snapshot"}, timeout=2.0)["snapshot"]
    except (XdmvpnError, KeyError):
        return row
    row["answers"] = True
    row["nhs"] = [{"nbma": n.get("nbma"), "state": n.get("state")} for n in snap.get("nhs", [])]
    row["registered"] = sum(e.get("type") == "dynamic" for e in snap.get("cache", []))
    row["shortcuts"] = len(snap.get("shortcuts", []))
    return row


def healthy(row: dict) -> bool:
    return row["answers"] and all(n["state"] == "up" for n in row["nhs"] or [])


def status_cells(row: dict) -> tuple:
    daemon = ("no daemon" if not row["running"] else
              f"pid {row['pid']}" + ("" if row["answers"] else " (no answer)"))
    nhs = None if not row["nhs"] else ",".join(n["state"] for n in row["nhs"])
    registered = row["registered"] if row["role"] == "hub" else None
    return (row["node"], row["namespace"], daemon, nhs, registered, row["shortcuts"])


STATUS_HEADER = ("Node", "Namespace", "Daemon", "NHS", "Registered", "Shortcuts")


def scrape(topo: Topology, node: Node, timeout: float = 10.0) -> str:
    """The node's Prometheus exposition, fetched from inside its namespace (its exporter
    listens on that namespace's 127.0.0.1)."""
    import urllib.request
    from .topology import METRICS_PORT
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    try:
        with in_netns(topo.ns(node)):            # the connection is made in there
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.read().decode()
    except OSError as exc:
        raise XdmvpnError(f"lab metrics: {node.name}'s exporter at {url} (in {topo.ns(node)}): "
                          f"{getattr(exc, 'reason', exc)}") from None
