"""`xdmvpn bench control --vs-frr` at its own size (2,000 spokes, issue 14's comparison):
both hubs answer every request of every round (new registrations, then the refresh rounds)
and hold every spoke, and the output has both sides' figures and the ratios. The figures
themselves are the bench's business, not asserted here; the JSON line is printed (the
tier's pytest.log keeps it).

It lives apart from tests/interop so that it runs after the interop cloud's tests in the
VM tier's one boot: in the one run where it ran between them, no data packet left the
cloud's spokes afterwards (cause not found yet; see docs/interop.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from util import scaled

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.kernel("ip_gre", "frr")]

REPO = Path(__file__).resolve().parents[2]
SPOKES = 2000


def test_bench_control_vs_frr():
    r = subprocess.run(
        [sys.executable, "-m", "xdmvpn", "bench", "control", "--vs-frr", "--json"],
        capture_output=True, text=True, timeout=scaled(180),
        env=dict(os.environ, PYTHONPATH=str(REPO / "ctl"), XDMVPN_BENCH_SPOKES=str(SPOKES)))
    assert r.returncode == 0, r.stderr[-3000:]
    print(r.stdout.strip().splitlines()[-1])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["bench"] == "control-vs-frr" and out["spokes"] == SPOKES
    assert out["all_answered_and_registered"] is True, out
    for side in ("xdmvpn", "frr"):
        fig = out[side]
        rounds = out["refresh_rounds"]
        assert fig["answered_ok"] == (1 + rounds) * SPOKES, fig
        assert fig["hub_cache_dynamic"] == SPOKES, fig
        assert len(fig["refreshes_per_second_rounds"]) == rounds, fig
        assert fig["refreshes_per_second"] == max(fig["refreshes_per_second_rounds"]), fig
        for key in ("registrations_per_second", "refreshes_per_second", "rss_bytes_idle",
                    "rss_bytes_full"):
            assert fig[key] > 0, (side, key, fig[key])
        assert fig["hub_cpu_seconds"] >= 0 and fig["resends"] >= 0
    for key in ("registrations", "refreshes", "rss_idle"):
        assert out["ratio_xdmvpn_to_frr"][key] > 0, key
    for key in ("ok_registrations", "ok_refreshes", "ok_resends", "ok_rss_idle"):
        assert isinstance(out[key], bool), key

