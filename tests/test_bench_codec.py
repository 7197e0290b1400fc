"""`xdmvpn bench codec --json` prints its figures as the last line (no timing asserted here:
speed targets live in the benchmark, not in tests)."""

import json

from util import run_cli


def test_bench_codec_prints_the_figures():
    res = run_cli("bench", "codec", "--json", "--seconds", "0.05")
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("decode_us_per_packet", "encode_us_per_packet", "baseline_struct_unpack_us"):
        assert figures[key] > 0
    assert figures["decode_vs_baseline"] > 1
    assert figures["packet_bytes"] > 60
