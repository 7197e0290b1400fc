"""Forwarding capacity of the hub: XDP hairpin against the kernel's own IPv4
forwarding (IPv6 packets: IPv6 forwarding), measured the same way in the same run.

    generator ns                          hub ns
    gen0 (XDP: sink, counts) <== veth ==> ul0 (XDP: hairpin | XDP_PASS -> kernel)

The generator is an XDP program run in live-frames mode on gen0 (XDP_TX puts
each frame into ul0's receive ring), paced by bpf_ktime_get_ns to a chosen
rate.  Both veth ends run their NAPI in threads (``threaded``), the hub's on
one CPU, the generator and sink on the other, so that the hub's CPU does
nothing but the hub's forwarding and the generator never starves it.
The NAPI threads run SCHED_FIFO: a woken thread preempts the generator at
once (the 256-frame veth ring fills in ~100 us at a few Mpps).  Frames are
restored from a template before each send (live frames are recycled with
what the far end wrote into them).
Capacity: the rate the hub delivers while saturated, i.e. while the generator
finds the hub's receive ring full, valid only when the sink lost (almost)
nothing; then a run paced at half that rate must show no loss.  Counters
assert that the intended path carried the packets (hub hairpin counter and no
packet in the hub's IP stack, or the kernel's ForwDatagrams).
"""

from __future__ import annotations

import os
import re
import time

from xdmvpn import netns
from xdmvpn.dataplane import attach
from xdmvpn.errors import XdmvpnError
from xdmvpn.netns import in_netns

from .testrun import run_live

LOSS_OK = 0.01          # a rate counts as forwarded with at most 1 % loss
HUB_CPU, GEN_CPU = 1, 0


def _cpu_busy(cpu: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                return sum(v) - idle, sum(v)
    return 0, 0


def set_template(bench_mod, pkt: bytes) -> None:
    """The frame the bench build's harness restores before every live-frames repetition."""
    t = bench_mod[b"xdmvpn_bench_pkt"]
    leaf = t.Leaf()
    leaf.len = len(pkt)
    for i, b in enumerate(pkt):
        leaf.data[i] = b
    t[t.Key(0)] = leaf


def snmp6(ns: str) -> dict:
    """The kernel IPv6 stack's counters, named as IPv4's in netns.snmp_ip (InReceives,
    ForwDatagrams), from /proc/net/snmp6."""
    rows = dict(line.split()[:2] for line in
                netns.sh("cat", "/proc/net/snmp6", ns=ns).splitlines() if line.strip())
    return {"InReceives": int(rows["Ip6InReceives"]),
            "ForwDatagrams": int(rows["Ip6OutForwDatagrams"])}


def _napi_threads(dev: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if re.fullmatch(rf"napi/{re.escape(dev)}-\d+", f.read().strip()):
                        pids.append(int(pid))
            except OSError:
                continue
    return pids


class Lab:
    def __init__(self, hub_ns, gen_ns, bench_mod, bench_progs, hub_maps):
        self.hub_ns, self.gen_ns = hub_ns, gen_ns
        self.mod, self.progs, self.hub_maps = bench_mod, bench_progs, hub_maps
        self.gen0 = netns.ifindex(gen_ns, "gen0")
        self.cpus = sorted(os.sched_getaffinity(0))
        self.ipv6 = False            # the packets of a run: their stack's counters

    # ---- set-up ----------------------------------------------------------------
    def _threaded(self, ns: str, dev: str, cpu: int) -> None:
        netns.sh("sh", "-c", f"echo 1 > /sys/class/net/{dev}/threaded", ns=ns)
        pids = _napi_threads(dev)
        if not pids:
            raise XdmvpnError(f"bench: no NAPI thread for {dev} (threaded NAPI unsupported?)")
        for pid in pids:
            os.sched_setaffinity(pid, {cpu})
            # Real-time: a woken NAPI thread preempts the generator at once; the
            # 256-frame veth ring fills in ~100 us at a few Mpps.
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(50))

    def _attach_hub(self, fn) -> None:
        with in_netns(self.hub_ns):
            attach.attach_xdp("ul0", fn)
        self._threaded(self.hub_ns, "ul0", self._cpu(HUB_CPU))

    def _cpu(self, i: int) -> int:
        return self.cpus[i % len(self.cpus)]

    # ---- one paced run -------------------------------------------------------------
    def _pace(self, pps: float) -> None:
        t = self.mod[b"xdmvpn_bench_pacer"]
        leaf = t.Leaf()
        leaf.interval_ns = int(1e9 / pps) if pps else 0
        leaf.next_ns = 0
        leaf.sent = 0
        t[t.Key(0)] = leaf

    def _sent(self) -> int:
        t = self.mod[b"xdmvpn_bench_pacer"]
        return t[t.Key(0)].sent

    def _sunk(self) -> int:
        t = self.mod[b"xdmvpn_bench_sunk"]
        return sum(t[t.Key(0)])

    def _ethtool(self, ns: str, dev: str) -> dict:
        out = netns.sh("ethtool", "-S", dev, ns=ns, check=False)
        stats = {}
        for line in out.splitlines():
            k, _, v = line.strip().partition(": ")
            if v.strip().isdigit():
                stats[k] = int(v)
        stats["tx_dropped"] = int(netns.sh("cat", f"/sys/class/net/{dev}/statistics/tx_dropped",
                                           ns=ns))
        return stats

    def _losses(self) -> tuple[int, int]:
        """(frames the generator could not put into the hub's full ring,
        frames the hub could not put into the sink's ring)."""
        g, h = self._ethtool(self.gen_ns, "gen0"), self._ethtool(self.hub_ns, "ul0")
        return (g.get("tx_queue_0_xdp_xmit_errors", 0),
                h.get("rx_queue_0_xdp_tx_errors", 0) + h["tx_dropped"])

    def offer(self, pkt: bytes, pps: float, seconds: float) -> dict:
        """Send pkt at pps (0: as fast as the generator goes) for about seconds."""
        set_template(self.mod, pkt)
        self._pace(pps)
        self.mod[b"xdmvpn_bench_sunk"].clear()
        self.hub_maps.reset_counters()
        snmp = (lambda: snmp6(self.hub_ns)) if self.ipv6 else (lambda: netns.snmp_ip(self.hub_ns))
        ip0, loss0 = snmp(), self._losses()
        busy0 = _cpu_busy(self._cpu(HUB_CPU))
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self._cpu(GEN_CPU)})
        try:
            with in_netns(self.gen_ns):
                # repetitions for `seconds`, calibrated on a first slice
                t0 = time.perf_counter()
                run_live(self.progs["xdmvpn_bench_gen"].fd, pkt, 200_000, self.gen0)
                slice_s = time.perf_counter() - t0
                reps = int(200_000 * max(seconds - slice_s, 0.05) / max(slice_s, 1e-6))
                run_live(self.progs["xdmvpn_bench_gen"].fd, pkt, max(reps, 1000), self.gen0)
                elapsed = time.perf_counter() - t0
        finally:
            os.sched_setaffinity(0, saved)
        busy1 = _cpu_busy(self._cpu(HUB_CPU))
        time.sleep(0.1)  # let the rings drain
        ip1, loss1 = snmp(), self._losses()
        c = {k: v["packets"] for k, v in self.hub_maps.counters().items()}
        sent, sunk = self._sent(), self._sunk()
        return {"offered_pps": sent / elapsed, "delivered_pps": sunk / elapsed, "sent": sent,
                "delivered": sunk, "hairpin": c["hairpin"],
                "hub_cpu_busy": (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1),
                "hub_ring_full": loss1[0] - loss0[0], "sink_ring_full": loss1[1] - loss0[1],
                "stack_in": ip1["InReceives"] - ip0["InReceives"],
                "forwarded": ip1["ForwDatagrams"] - ip0["ForwDatagrams"]}

    def capacity(self, pkt: bytes, seconds: float, check) -> dict:
        """Forwarding capacity: the rate the hub delivers while saturated (the
        generator finds the hub's ring full), valid when the sink kept up
        (< LOSS_OK of the frames lost after the hub).  Then a paced run at half
        that rate must lose at most LOSS_OK."""
        top = self.offer(pkt, 0, seconds)
        check(top)
        if not top["hub_ring_full"]:
            raise XdmvpnError(f"bench: the generator did not saturate the hub: {top}")
        if top["sink_ring_full"] > LOSS_OK * top["delivered"]:
            raise XdmvpnError(f"bench: the sink did not keep up, figure invalid: {top}")
        paced = self.offer(pkt, top["delivered_pps"] / 2, seconds)
        check(paced)
        if not paced["sent"] or paced["delivered"] < paced["sent"] * (1 - LOSS_OK):
            raise XdmvpnError(f"bench: loss below capacity (paced at half): {paced}")
        return {"pps": round(top["delivered_pps"]), "saturated": top, "paced_half": paced}

    # ---- the comparison ------------------------------------------------------------------
    def compare(self, hub_progs, hairpin_pkt, kernel_pkt, seconds: float,
                ipv6: bool = False) -> dict:
        """Hairpin of hairpin_pkt against the kernel's forwarding of kernel_pkt (the
        same size; ipv6: both IPv6, their counters /proc/net/snmp6's)."""
        self.ipv6 = ipv6
        with in_netns(self.gen_ns):
            attach.attach_xdp("gen0", self.progs["xdmvpn_bench_sink"])
        self._threaded(self.gen_ns, "gen0", self._cpu(GEN_CPU))

        def via_xdp(r):
            if r["stack_in"] > r["sent"] * 0.01 or r["hairpin"] < r["delivered"] * 0.99:
                raise XdmvpnError(f"bench: hairpin run did not take the XDP path: {r}")

        def via_kernel(r):
            if r["hairpin"] or r["forwarded"] < r["delivered"] * 0.99:
                raise XdmvpnError(f"bench: kernel run did not take the kernel path: {r}")

        self._attach_hub(hub_progs["xdmvpn_xdp_underlay"])
        hp = self.capacity(hairpin_pkt, seconds, via_xdp)
        self._attach_hub(hub_progs["xdmvpn_xdp_pass"])
        kp = self.capacity(kernel_pkt, seconds, via_kernel)
        with in_netns(self.hub_ns):
            attach.detach_xdp("ul0")
        return {"hairpin_pps": hp["pps"], "kernel_forward_pps": kp["pps"],
                "hairpin_vs_kernel": round(hp["pps"] / kp["pps"], 2) if kp["pps"] else None,
                "forwarding_detail": {"hairpin": _short(hp), "kernel": _short(kp),
                                      "loss_ok": LOSS_OK, "seconds_per_run": seconds,
                                      "cpus": {"hub": self._cpu(HUB_CPU),
                                               "generator_and_sink": self._cpu(GEN_CPU)}}}


def _short(cap: dict) -> dict:
    def r(d):
        return {k: round(v, 2) if k == "hub_cpu_busy" else round(v) if isinstance(v, float)
                else v for k, v in d.items()}
    return {"saturated": r(cap["saturated"]), "paced_half": r(cap["paced_half"])}
