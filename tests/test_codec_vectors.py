"""Every captured NHRP packet decodes to what tshark sees, and re-encodes byte for byte."""

import json

import pytest

from util import capture_files, run_cli
from tshark_oracle import ours_comparable, tshark_comparable, tshark_nhrp

CAPTURES = capture_files()


def test_the_shared_vectors_are_here():
    names = {p.name for p in CAPTURES}
    assert {"nhrp-trace.pcap", "NHRP_registration.pcap"} <= names


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_decode_json_matches_tshark(capture):
    res = run_cli("decode", "--json", str(capture))
    assert res.returncode == 0, res.stderr
    ours = [json.loads(line) for line in res.stdout.splitlines()]
    theirs = tshark_nhrp(str(capture))
    assert ours, "no NHRP packet decoded"
    assert sorted({o["frame"] for o in ours}) == sorted(theirs), "not the same frames"
    for obj in ours:
        (oracle,) = theirs[obj["frame"]]
        assert ours_comparable(obj) == tshark_comparable(oracle), f"frame {obj['frame']}"
        assert obj["reencode_identical"] is True, f"frame {obj['frame']}"


def test_phase3_trace_fields():
    """The Cisco phase-3 exchange, checked by hand against the RFC layout."""
    res = run_cli("decode", "--json", str(next(p for p in CAPTURES
                                                if p.name == "nhrp-trace.pcap")))
    pkts = [json.loads(line) for line in res.stdout.splitlines()]
    assert [p["type_name"] for p in pkts] == [
        "Traffic Indication", "Resolution Request", "Resolution Request", "Resolution Reply"]
    ind, req, fwd, rep = pkts
    # the indication goes to the source of the packet that triggered it ...
    assert ind["dst_proto"] == "10.255.255.3" and ind["contents_len"] == 28
    # ... which then resolves the destination of that packet
    assert req["dst_proto"] == "10.255.255.2" and req["request_id"] == 5
    assert fwd["hop_count"] == req["hop_count"] - 1
    assert fwd["extensions"][1]["cies"][0]["client_nbma"] == "192.168.200.1"   # transit NHS
    assert rep["cies"][0]["client_nbma"] == "192.168.200.2" and rep["cies"][0]["prefix_len"] == 32
    assert all(p["gre_key"] == 1000 and p["checksum_ok"] for p in pkts)
