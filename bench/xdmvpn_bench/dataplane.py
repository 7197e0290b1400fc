"""Data-plane benchmark: ns per packet per path (IPv4 and IPv6), hub pps vs kernel
forwarding (IPv4 packets, and IPv6 packets over an IPv6 underlay against the kernel's
IPv6 forwarding), verifier figures of every program.  ``run() -> dict`` (the CLI
prints it as one JSON line).

ns per packet: XDP programs run in live-frames mode (every repetition is a
fresh frame) inside a harness that first restores the template packet and
tail-calls the underlay program of a bench build, whose verdicts are counted
and turned into XDP_DROP; the figure is the difference from the same harness
without the program, and the path counters must show the intended path ran on
every repetition.  The tc encap cost is the mean test-run duration of single
runs (a fresh skb each) minus a trivial tc program's.

pps: see forwarding.py.
"""

from __future__ import annotations

import os
import statistics

from xdmvpn import netns
from xdmvpn.dataplane import build
from xdmvpn.dataplane.libbpf import prog_info
from xdmvpn.dataplane.maps import DataplaneMaps
from xdmvpn.errors import XdmvpnError
from xdmvpn.netns import in_netns

from . import forwarding, packets
from .testrun import run as test_run
from .testrun import run_live

UL_MAC, GEN_MAC = "02:00:00:00:b0:01", "02:00:00:00:b0:02"
HUB, GEN, SINK = "192.0.2.1", "192.0.2.2", "192.0.2.3"
HUB6, GEN6, SINK6 = "2001:db8::1", "2001:db8::2", "2001:db8::3"
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
    # IPv6 in IPv6 (ICMPv6 echo of the same payload)
    icmp6 = P.icmp6_echo("fd00::2", "fd00::3", data=bytes(32))
    to_us6 = P.ipv6("fd00::2", "fd00::1", P.icmp6_echo("fd00::2", "fd00::1", data=bytes(32)),
                    nh=58)
    to_peer6 = P.ipv6("fd00::2", "fd00::3", icmp6, nh=58)
    gre6 = {"proto": 0x86DD, "key": KEY}
    decap6 = P.eth(UL_MAC, GEN_MAC, 0x86DD) + P.ipv6(GEN6, HUB6, P.gre(to_us6, **gre6))
    hairpin6 = P.eth(UL_MAC, GEN_MAC, 0x86DD) + P.ipv6(GEN6, HUB6, P.gre(to_peer6, **gre6))
    encap6_in = P.eth("02:00:00:00:0a:02", "02:00:00:00:0a:01", 0x86DD) + P.ipv6(
        "fd00::1", "fd00::3", P.icmp6_echo("fd00::1", "fd00::3", data=bytes(32)), nh=58)
    kernel6 = P.eth(UL_MAC, GEN_MAC, 0x86DD) + P.ipv6(GEN6, SINK6, P.gre(to_peer6, **gre6))
    return {"decap": decap, "hairpin": hairpin, "pass": pas, "encap": encap_in,
            "kernel": kernel, "decap6": decap6, "hairpin6": hairpin6, "encap6": encap6_in,
            "kernel6": kernel6}


def _config(hub_ns, **kw) -> build.DataplaneConfig:
    return build.DataplaneConfig(
        local_nbma=HUB, underlay_ifindex=netns.ifindex(hub_ns, "ul0"),
        overlay_ifindex=netns.ifindex(hub_ns, "dmvpn0-dp"), overlay_mac="02:00:00:00:0a:01",
        overlay_dp_mac="02:00:00:00:0a:02", gre_key=KEY, redirect=True,
        trigger_interval_ms=1000, local_nbma6=HUB6, **kw)


def _map(maps: DataplaneMaps) -> None:
    maps.add_mapping("10.0.0.1", HUB)
    maps.add_mapping("10.0.0.3", SINK)
    maps.add_mapping("fd00::1", HUB6)
    maps.add_mapping("fd00::3", SINK6)


def _ns_per_packet(module, progs, hub_ns, pk, repeat) -> dict:
    maps = DataplaneMaps(module)
    _map(maps)
    ul0 = netns.ifindex(hub_ns, "ul0")

    def live(prog, pkt):
        forwarding.set_template(module, pkt)
        with in_netns(hub_ns):
            return run_live(progs[prog].fd, pkt, repeat, ul0)

    ns_pp = {}
    for path, counter in (("decap", "decap"), ("hairpin", "hairpin"), ("pass", "pass_not_gre"),
                          ("decap6", "decap"), ("hairpin6", "hairpin")):
        samples = []
        forwarding.set_template(module, pk[path])
        for _ in range(3):
            base = live("xdmvpn_bench_base", pk[path])
            maps.reset_counters()
            t = live("xdmvpn_bench_xdp", pk[path])
            got = maps.counters()[counter]["packets"]
            if got != repeat:
                raise XdmvpnError(f"bench: {path} path ran {got} of {repeat} times")
            samples.append(t - base)
        ns_pp[path] = float(statistics.median(samples))
    # the hairpin figure is the cached next hop's: one fill per CPU at most
    # tc encap: fresh skb per run
    for path in ("encap", "encap6"):
        durs, base = [], []
        maps.reset_counters()
        with in_netns(hub_ns):
            for _ in range(2000):
                durs.append(test_run(progs["xdmvpn_tc_encap"].fd, pk[path]).duration_ns)
                base.append(test_run(progs["xdmvpn_bench_tc_base"].fd, pk[path]).duration_ns)
        if maps.counters()["encap"]["packets"] != 2000:
            raise XdmvpnError(f"bench: {path} path did not run every time")
        ns_pp[path] = float(statistics.mean(durs) - statistics.mean(base))
    return {k: round(v, 1) for k, v in ns_pp.items()}


def run(args=None, repeat: int = 200000, seconds: float | None = None) -> dict:
    """Figures as a dict; `args` (the CLI's namespace) may carry `seconds`, the
    generator's running time per forwarding figure."""
    from bcc import BPF

    build.check_environment()
    seconds = seconds or max(float(getattr(args, "seconds", 1.0) or 1.0), 0.5)
    tag = os.getpid()
    hub_ns, gen_ns = f"xdb-hub-{tag}", f"xdb-gen-{tag}"
    pk = _packets()
    out: dict = {}
    netns.add(hub_ns)
    netns.add(gen_ns)
    modules = []
    try:
        netns.veth("ul0", hub_ns, "gen0", gen_ns, mac_a=UL_MAC, mac_b=GEN_MAC)
        netns.addr(hub_ns, "ul0", f"{HUB}/24")
        netns.addr(gen_ns, "gen0", f"{GEN}/24")
        netns.addr(gen_ns, "gen0", f"{SINK}/24")
        netns.neigh(hub_ns, "ul0", GEN, GEN_MAC)
        netns.neigh(hub_ns, "ul0", SINK, GEN_MAC)
        netns.ip("addr", "add", f"{HUB6}/64", "dev", "ul0", "nodad", ns=hub_ns)
        for a in (GEN6, SINK6):
            netns.ip("addr", "add", f"{a}/64", "dev", "gen0", "nodad", ns=gen_ns)
            netns.neigh(hub_ns, "ul0", a, GEN_MAC)
        netns.sysctl(hub_ns, "net.ipv4.conf.all.forwarding=1", "net.ipv4.conf.ul0.forwarding=1",
                     "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.ul0.send_redirects=0",
                     "net.ipv6.conf.all.forwarding=1")
        netns.veth("dmvpn0", hub_ns, "dmvpn0-dp", hub_ns)

        bench_mod = build.compile_bpf(_config(hub_ns, bench=True,
                                              bench_len=max(len(pk["decap"]), len(pk["decap6"]))))
        modules.append(bench_mod)
        bench_progs = build.load_programs(bench_mod, {
            "xdmvpn_bench_xdp": BPF.XDP, "xdmvpn_bench_base": BPF.XDP,
            "xdmvpn_bench_tc_base": BPF.SCHED_CLS, "xdmvpn_bench_gen": BPF.XDP,
            "xdmvpn_bench_sink": BPF.XDP})
        out["ns_per_packet"] = _ns_per_packet(bench_mod, bench_progs, hub_ns, pk, repeat)

        # forwarding: the production build on the hub, generator and sink from the bench build
        hub_mod = build.compile_bpf(_config(hub_ns))
        modules.append(hub_mod)
        hub_progs = build.load_programs(hub_mod)
        hub_maps = DataplaneMaps(hub_mod)
        _map(hub_maps)
        lab = forwarding.Lab(hub_ns, gen_ns, bench_mod, bench_progs, hub_maps)
        out.update(lab.compare(hub_progs, pk["hairpin"], pk["kernel"], seconds))
        v6 = lab.compare(hub_progs, pk["hairpin6"], pk["kernel6"], seconds, ipv6=True)
        out["ipv6"] = {"hairpin_pps": v6["hairpin_pps"],
                       "kernel_forward_pps": v6["kernel_forward_pps"],
                       "hairpin_vs_kernel": v6["hairpin_vs_kernel"],
                       "forwarding_detail": v6["forwarding_detail"]}

        out["verifier"] = {n: {"processed_insns": i["verified_insns"], "jited_bytes": i["jited_bytes"]}
                           for n, i in ((n, prog_info(hub_progs[n].fd)) for n in sorted(
                               set(build.XDP_PROGRAMS) | set(build.TC_PROGRAMS)))}
        ratio = out.get("hairpin_vs_kernel") or 0
        ratio6 = out["ipv6"]["hairpin_vs_kernel"] or 0
        out["goals"] = {
            "hairpin_ns_le_50": out["ns_per_packet"]["hairpin"] <= 50,
            "hub_ge_3x_kernel": ratio >= 3,
            "hub_ge_3x_kernel_ipv6": ratio6 >= 3,
            "insns_lt_1000": all(v["processed_insns"] < 1000 for v in out["verifier"].values()),
        }
        return out
    finally:
        for m in modules:
            m.cleanup()
        netns.delete(hub_ns, gen_ns)


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
