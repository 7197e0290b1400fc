"""`xdmvpn decode` on every capture format and link type, and on bad input."""

import json

import pytest

from util import run_cli
from nhrp_samples import samples
from pcapgen import write_capture
from tshark_oracle import ours_comparable, tshark_comparable, tshark_nhrp
from xdmvpn.cli.main import COMMAND_MODULES, build_parser
from xdmvpn.nhrp import encode

WIRES = [encode(m) for _, m in samples()]

VARIANTS = {
    "pcap-ethernet-key": dict(fmt="pcap"),
    "pcapng-ethernet-key": dict(fmt="pcapng"),
    "pcap-no-key": dict(fmt="pcap", key=None),
    "pcap-vlan": dict(fmt="pcap", vlan=100),
    "pcap-linux-cooked": dict(fmt="pcap", link="sll"),
    "pcap-raw-ip": dict(fmt="pcap", link="raw"),
    "pcapng-ipv6-underlay": dict(fmt="pcapng", src="2001:db8::1", dst="2001:db8::2"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_link_type_matches_tshark(tmp_path, variant):
    path = tmp_path / f"{variant}.cap"
    write_capture(path, WIRES, **VARIANTS[variant])
    res = run_cli("decode", "--json", str(path))
    assert res.returncode == 0, res.stderr
    ours = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(ours) == len(WIRES)
    theirs = tshark_nhrp(str(path))
    for obj in ours:
        assert obj["gre_key"] == VARIANTS[variant].get("key", 1000)
        assert obj["reencode_identical"] is True
        assert ours_comparable(obj) == tshark_comparable(theirs[obj["frame"]][0])


def test_text_output_one_line_per_packet(tmp_path):
    path = tmp_path / "x.pcap"
    write_capture(path, WIRES)
    res = run_cli("decode", str(path))
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert len(lines) == len(WIRES)
    assert "Registration Request id=77" in lines[2] and "key=1000" in lines[2]


def test_malformed_packet_is_reported_and_decoding_goes_on(tmp_path):
    bad = bytearray(WIRES[2])
    bad[14:16] = (7).to_bytes(2, "big")            # extension offset inside the header
    path = tmp_path / "mixed.pcap"
    write_capture(path, [WIRES[0], bytes(bad), WIRES[1], WIRES[2][:30]])
    res = run_cli("decode", "--json", str(path))
    assert res.returncode == 1
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["frame"] for o in objs] == [1, 2, 3, 4]
    assert "error" not in objs[0] and "error" not in objs[2]
    assert objs[1]["error"] == "NHRP extension offset at offset 14: 7 points inside the fixed header"
    assert objs[3]["error"].startswith("NHRP packet size at offset 10")
    assert res.stderr == ""


def test_missing_file_is_one_line(tmp_path):
    res = run_cli("decode", str(tmp_path / "nope.pcap"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "no such file" in res.stderr
    assert "Traceback" not in res.stderr


def test_not_a_capture_is_one_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a capture\n" * 10)
    res = run_cli("decode", str(path))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "not a pcap or pcapng" in res.stderr


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_capture_file(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt}"
    write_capture(path, WIRES, fmt=fmt)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 20])          # the last record is cut short
    res = run_cli("decode", "--json", str(path))
    assert res.returncode == 1 and res.stderr == ""
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["frame"] for o in objs] == list(range(1, len(WIRES) + 1))
    assert all("error" not in o for o in objs[:-1])
    assert "error" in objs[-1]


def _command_paths(parser, prefix=()):
    """Every subcommand path of the CLI, nested ones included: ("config", "check"), ..."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _command_paths(sub, prefix + (name,))


COMMAND_PATHS = list(_command_paths(build_parser()))


def test_every_command_module_is_reachable():
    """Each module adds at least one top-level command (show_cmd adds show and clear)."""
    import argparse
    import importlib
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(sub)
        assert sub.choices, name
        assert set(sub.choices) <= {p[0] for p in COMMAND_PATHS}


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_every_subcommand_has_help_with_examples(path, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*path, "--help"])
    assert done.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_hop_count_zero_is_shown_with_a_warning_or_refused_when_strict(tmp_path):
    wire = bytearray(WIRES[2])
    wire[9] = 0
    wire[12:14] = b"\0\0"
    from xdmvpn.nhrp import checksum
    wire[12:14] = checksum(bytes(wire)).to_bytes(2, "big")
    path = tmp_path / "hop0.pcap"
    write_capture(path, [bytes(wire)])
    res = run_cli("decode", "--json", str(path))
    (obj,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 0 and obj["hop_count"] == 0
    assert obj["warnings"] == ["hop count at offset 9: 0 (must be at least 1)"]
    res = run_cli("decode", "--json", "--strict", str(path))
    (obj,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 1 and obj["error"] == "NHRP hop count at offset 9: 0 (must be at least 1)"
