"""Data-plane benchmark: ns per packet per path, hub pps vs kernel forwarding,
verifier figures.  ``run() -> dict`` (the CLI prints it as one JSON line).

ns per packet: XDP programs run in live-frames mode (every repetition is a
fresh frame) inside a harness that first restores the template packet and
turns the verdict into XDP_DROP; the figure is the difference from the same
harness without the program, and the path counters must show the intended
path ran on every repetition.  The tc encap cost is the mean test-run
duration of single runs (a fresh skb each) minus a trivial tc program's.
"""

from __future__ import annotations

import os
import statistics
import time

from ..errors import XdmvpnError
from . import build, netns, packets
from .maps import DataplaneMaps
from .testrun import in_netns, prog_info, run_live
from .testrun import run as test_run

UL_MAC, GEN_MAC = "02:00:00:00:b0:01", "02:00:00:00:b0:02"
HUB, GEN, SINK = "192.0.2.1", "192.0.2.2", "192.0.2.3"
KEY = 42


def _packets():
    P = packets
    icmp = P.icmp_echo(data=bytes(32))
    to_us = P.ipv4("10.0.0.2", "10.0.0.1", icmp, proto=1)
    to_peer = P.ipv4("10.0.0.2", "10.0.0.3", icmp, proto=1)
    decap = P.eth(UL_MAC, GEN_MAC) + P.ipv4(GEN, HUB, P.gre(to_us, key=KEY))
    hairpin = P.eth(UL_MAC, GEN_MAC) + P.ipv4(GEN, HUB, P.gre(to_peer, key=KEY))
    n = len(decap)
    udp = P.ipv4(GEN, HUB, P.udp(1000, 2000, bytes(n - 14 - 28)), proto=17)
    pas = P.eth(UL_MAC, GEN_MAC) + udp
    encap_in = P.eth("02:00:00:00:0a:02", "02:00:00:00:0a:01") + P.ipv4(
        "10.0.0.1", "10.0.0.3", icmp, proto=1)
    kernel = P.eth(UL_MAC, GEN_MAC) + P.ipv4(GEN, SINK, P.gre(to_peer, key=KEY), ttl=64)
    return {"decap": decap, "hairpin": hairpin, "pass": pas, "encap": encap_in,
            "kernel": kernel}


def _ifx(ns, dev):
    return int(netns.sh("cat", f"/sys/class/net/{dev}/ifindex", ns=ns))


def run(args=None, repeat: int = 200000, pps_frames: int = 256000) -> dict:
    """Figures as a dict; `args` (the CLI's namespace) is accepted for a uniform call."""
    from bcc import BPF

    build.check_environment()
    tag = os.getpid()
    hub_ns, gen_ns = f"xdb-hub-{tag}", f"xdb-gen-{tag}"
    pk = _packets()
    out: dict = {}
    netns.add(hub_ns)
    netns.add(gen_ns)
    module = None
    try:
        netns.veth("ul0", hub_ns, "gen0", gen_ns, mac_a=UL_MAC, mac_b=GEN_MAC)
        netns.addr(hub_ns, "ul0", f"{HUB}/24")
        netns.addr(gen_ns, "gen0", f"{GEN}/24")
        netns.addr(gen_ns, "gen0", f"{SINK}/24")
        netns.neigh(hub_ns, "ul0", GEN, GEN_MAC)
        netns.neigh(hub_ns, "ul0", SINK, GEN_MAC)
        for k, v in (("net.ipv4.conf.all.forwarding", "1"), ("net.ipv4.conf.ul0.forwarding", "1"),
                     ("net.ipv4.conf.all.send_redirects", "0"),
                     ("net.ipv4.conf.ul0.send_redirects", "0")):
            netns.sysctl(hub_ns, k, v)
        netns.veth("dmvpn0", hub_ns, "dmvpn0-dp", hub_ns)
        cfg = build.DataplaneConfig(
            local_nbma=HUB, underlay_ifindex=_ifx(hub_ns, "ul0"),
            overlay_ifindex=_ifx(hub_ns, "dmvpn0-dp"), overlay_mac="02:00:00:00:0a:01",
            overlay_dp_mac="02:00:00:00:0a:02", gre_key=KEY, redirect=True,
            trigger_interval_ms=1000, bench=True, bench_len=len(pk["decap"]))
        module = build.compile_bpf(cfg)
        progs = {n: build.load_program(module, n, t) for n, t in (
            ("xdmvpn_xdp_underlay", BPF.XDP), ("xdmvpn_xdp_pass", BPF.XDP),
            ("xdmvpn_tc_encap", BPF.SCHED_CLS), ("xdmvpn_tc_mcast", BPF.SCHED_CLS),
            ("xdmvpn_bench_xdp", BPF.XDP), ("xdmvpn_bench_base", BPF.XDP),
            ("xdmvpn_bench_tc_base", BPF.SCHED_CLS), ("xdmvpn_bench_gen", BPF.XDP),
            ("xdmvpn_bench_sink", BPF.XDP))}
        maps = DataplaneMaps(module)
        maps.add_mapping("10.0.0.1", HUB)
        maps.add_mapping("10.0.0.3", SINK)
        tmpl = module[b"xdmvpn_bench_pkt"]
        ul0 = _ifx(hub_ns, "ul0")

        def live(prog, pkt):
            t = tmpl.Leaf()
            t.len = len(pkt)
            for i, b in enumerate(pkt):
                t.data[i] = b
            tmpl[tmpl.Key(0)] = t
            with in_netns(hub_ns):
                return run_live(progs[prog].fd, pkt, repeat, ul0)

        ns_pp = {}
        for path, counter in (("decap", "decap"), ("hairpin", "hairpin"),
                              ("pass", "pass_not_gre")):
            samples = []
            for _ in range(3):
                base = live("xdmvpn_bench_base", pk[path])
                maps.reset_counters()
                t = live("xdmvpn_bench_xdp", pk[path])
                got = maps.counters()[counter]["packets"]
                if got != repeat:
                    raise XdmvpnError(f"bench: {path} path ran {got} of {repeat} times")
                samples.append(t - base)
            ns_pp[path] = float(statistics.median(samples))
        # tc encap: fresh skb per run
        durs, base = [], []
        with in_netns(hub_ns):
            for _ in range(2000):
                durs.append(test_run(progs["xdmvpn_tc_encap"].fd, pk["encap"]).duration_ns)
                base.append(test_run(progs["xdmvpn_bench_tc_base"].fd, pk["encap"]).duration_ns)
        if maps.counters()["encap"]["packets"] < 2000:
            raise XdmvpnError("bench: encap path did not run every time")
        ns_pp["encap"] = float(statistics.mean(durs) - statistics.mean(base))
        out["ns_per_packet"] = {k: round(v, 1) for k, v in ns_pp.items()}

        # pps through the hub: live-frames generator -> hub -> counting sink
        from .attach import attach_xdp, detach_xdp

        sunk = module[b"xdmvpn_bench_sunk"]
        gen0 = _ifx(gen_ns, "gen0")
        with in_netns(gen_ns):
            attach_xdp("gen0", progs["xdmvpn_bench_sink"])

        def pps(pkt):
            sunk.clear()
            t0 = time.perf_counter()
            # Chunks no larger than the veth ring (256): between syscalls the
            # receiving NAPI runs; one huge run overflows the ring.
            with in_netns(gen_ns):
                for _ in range(pps_frames // 128):
                    run_live(progs["xdmvpn_bench_gen"].fd, pkt, 128, gen0, batch_size=64)
            time.sleep(0.2)
            el = time.perf_counter() - t0 - 0.2
            n = sum(sunk[sunk.Key(0)])
            return n / el, n

        with in_netns(hub_ns):
            attach_xdp("ul0", progs["xdmvpn_xdp_underlay"])
        hp, hn = pps(pk["hairpin"])
        with in_netns(hub_ns):
            attach_xdp("ul0", progs["xdmvpn_xdp_pass"])
        kp, kn = pps(pk["kernel"])
        with in_netns(hub_ns):
            detach_xdp("ul0")
        out.update({"hairpin_pps": round(hp), "kernel_forward_pps": round(kp),
                    "hairpin_vs_kernel": round(hp / kp, 2) if kp else None,
                    "frames_sent": pps_frames, "hairpin_delivered": hn, "kernel_delivered": kn})
        out["verifier"] = {n: {"processed_insns": i["verified_insns"], "jited_bytes": i["jited_bytes"]}
                           for n, i in ((n, prog_info(progs[n].fd)) for n in (
                               "xdmvpn_xdp_underlay", "xdmvpn_xdp_pass", "xdmvpn_tc_encap",
                               "xdmvpn_tc_mcast"))}
        out["goals"] = {
            "hairpin_ns_le_50": ns_pp["hairpin"] <= 50,
            "hub_ge_3x_kernel": bool(kp) and hp / kp >= 3,
            "insns_lt_1000": all(v["processed_insns"] < 1000 for v in out["verifier"].values()),
        }
        return out
    finally:
        if module is not None:
            module.cleanup()
        netns.delete(hub_ns)
        netns.delete(gen_ns)


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
