"""A short seeded slice of `xdmvpn bench fuzz` (the full run is the benchmark), and the
regression corpus: every input that once broke the codec or the engine, replayed."""

import argparse
import json
from pathlib import Path

import pytest
from util import run_cli

from xdmvpn_bench import fuzz

CORPUS = Path(__file__).resolve().parent / "corpus"


def corpus_lines():
    for path in sorted(CORPUS.glob("*.txt")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip() and not line.startswith("#"):
                yield pytest.param(line, id=f"{path.stem}:{n}:{line.split()[-2][:40]}")


@pytest.mark.parametrize("line", list(corpus_lines()))
def test_corpus_replays_clean(line):
    assert fuzz.replay(line) is None


def test_the_corpus_holds_the_reported_crashes():
    text = (CORPUS / "engine.txt").read_text()
    for what in ("purge_prefix_len_40", "purge_non_ip_address",
                 "registration_3_byte_protocol_address", "resolution_non_ip_destination",
                 "odd_requester_address"):
        assert what in text


def test_seeded_slice():
    r = fuzz.run(argparse.Namespace(codec_inputs=30_000, engine_inputs=20_000, seed=7,
                                    workers=1, json=True, seconds=1.0))
    assert r["crashes"] == [], r["crashes"][:5]
    assert r["codec_exceptions"] == 0 and r["codec_roundtrip_mismatches"] == 0
    assert r["engine_exceptions"] == 0 and r["engine_violations"] == 0
    assert r["codec_inputs"] == 30_000 and r["engine_inputs"] >= 19_000
    assert r["codec_decoded"] > 1_000                     # the mutations reach the decoder
    drops = r["engine_worlds"]["engine-hub-auth"]["drops"]
    assert drops.get("bad_protocol_address") and drops.get("authentication")


def test_the_invariant_checker_catches_a_reflection():
    """The checker is not blind: a packet sent to an address nobody observed is flagged."""
    w = fuzz.world("hub", fuzz.SECRET, 1)
    hub = w.target
    stranger = fuzz.STRANGERS[5]
    problem = fuzz.check(hub, fuzz.STRANGERS[4], b"\0" * 40, [(stranger, b"x")], 0)
    assert problem and "neither observed" in problem
    assert fuzz.check(hub, stranger, b"\0" * 40, [(stranger, b"x")], 0) is None
    assert "output" in fuzz.check(hub, stranger, b"\0" * 40, [(stranger, b"x" * 5000)], 0)


def test_the_command_takes_the_fuzzers_own_options():
    res = run_cli("bench", "fuzz", "--json", "--codec-inputs", "300", "--engine-inputs", "80",
                  "--seed", "3", "--workers", "1")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    assert out["codec_inputs"] == 300 and out["seed"] == 3 and out["workers"] == 1
    assert 76 <= out["engine_inputs"] <= 80
    bad = run_cli("bench", "fuzz", "--codec-input", "x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--codec-inputs: invalid int value" in bad.stderr.strip().splitlines()[-1]


def test_ipv6_worlds_are_fuzzed():
    """IPv6 inputs: worlds with an IPv6 overlay over IPv6, IPv6 over IPv4, IPv4 over IPv6
    (their registrations and shortcut made before the fuzzing), seeds of every pair."""
    w = fuzz.world("hub6", fuzz.SECRET, 1)
    hub = w.target
    assert {str(e.proto) for e in hub.cache if e.type.value == "dynamic"} == {
        "2001:db8:100::b", "2001:db8:100::c"}
    s1 = w.nodes[fuzz.A("2001:db8:ff::b")]
    assert [str(p) for p in s1.shortcuts] == ["2001:db8:12::/64"]
    for role in ("spoke64", "hub46"):
        assert fuzz.world(role, None, 1).target.p.tunnel_ip.version == int(role[-2])
    seeds = fuzz.seeds(fuzz.SECRET, fuzz.PLANS["64"])
    assert {(s.afn, s.protocol_type) for s in seeds[:-2]} == {(1, 0x86DD)}
    r = fuzz.run(argparse.Namespace(codec_inputs=2_000, engine_inputs=16_000, seed=3,
                                    workers=1, json=True, seconds=1.0))
    assert r["crashes"] == [], r["crashes"][:5]
    assert r["engine_exceptions"] == 0 and r["engine_violations"] == 0
    for name in ("engine-hub6-auth", "engine-spoke6-auth", "engine-hub64-open",
                 "engine-spoke46-open"):
        assert r["engine_worlds"][name]["inputs"] >= 1_500, name
    drops = r["engine_worlds"]["engine-hub6-auth"]["drops"]
    assert drops.get("authentication") and drops.get("bad_protocol_address"), drops
