"""`xdmvpn bench flood` (root: namespaces, raw sockets, BPF): its generator's frames checked
with the codec (each a valid NHRP packet from a random source, checksums right), and the
bench in a reduced size holding its own goals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from util import need_root
from xdmvpn.inet import checksum
from xdmvpn.nhrp import decode

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.root


def test_the_generators_frames_are_nhrp_from_random_sources_with_good_checksums():
    need_root()
    from xdmvpn_bench import flood_gen
    from xdmvpn_bench.flood import FLOOD_NET, _frame, flood_kinds
    from xdmvpn_bench.testrun import run

    for kind, (nhrp, claim, base, count) in flood_kinds(100).items():
        frame = _frame(nhrp, "02:00:00:00:00:01", "02:00:00:00:00:02")
        b, fn = flood_gen.load(frame, str(FLOOD_NET.network_address), FLOOD_NET.prefixlen,
                               claim, base, count)
        try:
            sources, protos = set(), set()
            for _ in range(20):
                r = run(fn.fd, bytes(len(frame)))        # the template is written over it
                out = r.data[:len(frame)]
                assert r.retval == 3, kind                   # XDP_TX
                assert checksum(out[14:34]) == 0, kind       # IPv4 header
                pkt = decode(out[flood_gen.NHRP_AT:])
                assert pkt.checksum_ok, kind
                src = out[26:30]
                sources.add(src)
                protos.add(pkt.src_proto)
                assert (pkt.src_nbma.packed == src) == claim, kind
                assert base <= int(pkt.src_proto) < base + count, kind
                # the rest of the headers as the template has them (but the IPv4 checksum)
                assert out[:24] == frame[:24] and out[30:flood_gen.NHRP_AT] == \
                    frame[30:flood_gen.NHRP_AT]
            assert len(sources) > 15 and len(protos) > 10, kind
        finally:
            b.cleanup()


def test_bench_flood_reduced_holds_its_goals():
    need_root()
    r = subprocess.run(
        [sys.executable, "-m", "xdmvpn", "bench", "flood", "--json"],
        capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=str(REPO / "ctl"), XDMVPN_BENCH_SPOKES="100",
                 XDMVPN_BENCH_FLOOD_SECONDS="3",
                 XDMVPN_BENCH_PHASES="quiet,unauth_registration,auth_resolution_claiming"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["bench"] == "flood" and set(out["phases"]) == {
        "quiet", "unauth_registration", "auth_resolution_claiming"}
    for name, phase in out["phases"].items():
        assert phase["registrations"] >= 10 and phase["unanswered"] == 0, (name, phase)
        assert phase["reply_p99_ms"] is not None
    for name in ("unauth_registration", "auth_resolution_claiming"):
        phase = out["phases"][name]
        # the flood reached the hub far above what the admission lets up
        assert phase["hub_xdp_nhrp_per_second"] > 5 * phase["admitted_per_second"] > 0
        assert phase["generator"]["offered"] > 0
    assert out["phases"]["unauth_registration"]["engine"]["drop.authentication"] > 1000
    assert out["spokes_kept"] == out["spokes_registered"] == 101
    assert out["cache_entries_created_by_flood"] == 0
    assert out["dataplane_mappings_created_by_flood"] == 0
