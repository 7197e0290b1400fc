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
    # NHRP directly in IP (protocol 54): tshark 4.0 dissects it as NHRP too (its NHRP
    # dissector registers IP protocol 54), so it stays the oracle here.
    "pcap-ethernet-ip54": dict(fmt="pcap", carrier="ip"),
    "pcapng-raw-ip54": dict(fmt="pcapng", carrier="ip", link="raw"),
    "pcap-vlan-ip54": dict(fmt="pcap", carrier="ip", vlan=7),
    "pcapng-ipv6-ip54": dict(fmt="pcapng", carrier="ip", src="2001:db8::1", dst="2001:db8::2"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_link_type_matches_tshark(tmp_path, variant):
    path = tmp_path / f"{variant}.cap"
    write_capture(path, WIRES, **VARIANTS[variant])
    res = run_cli("decode", "--json", str(path))
    assert res.returncode == 0, res.stderr
    ours = [json.loads(line) for line in res.stdout.splitlines()]
    theirs = tshark_nhrp(str(path))
    assert len(ours) == len(theirs) == len(WIRES)
    carrier = VARIANTS[variant].get("carrier", "gre")
    key = VARIANTS[variant].get("key", 1000) if carrier == "gre" else None
    for obj in ours:
        assert (obj["carrier"], obj["gre_key"]) == (carrier, key)
        assert obj["reencode_identical"] is True
        assert ours_comparable(obj) == tshark_comparable(theirs[obj["frame"]][0])


def test_nhrp_directly_in_ip_text_line(tmp_path):
    path = tmp_path / "ip54.pcap"
    write_capture(path, WIRES, carrier="ip")
    res = run_cli("decode", str(path))
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) == len(WIRES)
    assert " proto=54  Registration Request id=77" in lines[2] and "key=" not in lines[2]


def test_gre_and_ip_carried_nhrp_in_one_capture(tmp_path):
    from pcapgen import gre_frame
    from scapy.utils import PcapWriter
    path = tmp_path / "both.pcap"
    with PcapWriter(str(path)) as w:
        w.write(gre_frame(WIRES[0]))
        w.write(gre_frame(WIRES[1], carrier="ip"))
    res = run_cli("decode", "--json", str(path))
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 0
    assert [(o["carrier"], o["gre_key"], o["type"]) for o in objs] == [("gre", 1000, 1),
                                                                       ("ip", None, 2)]


def _no_nhrp_capture(path, frames: int) -> None:
    """frames frames of other traffic: GRE carrying IPv4, and UDP."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import GRE, Ether
    from scapy.utils import PcapWriter
    with PcapWriter(str(path)) as w:
        for i in range(frames):
            inner = GRE(proto=0x0800) / IP() if i % 2 else UDP(sport=500, dport=500)
            w.write(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / inner)


def test_a_capture_without_nhrp_says_so_in_one_line_exit_3(tmp_path):
    path = tmp_path / "other.pcap"
    _no_nhrp_capture(path, 4)
    for json_flag in ([], ["--json"]):
        res = run_cli("decode", *json_flag, str(path))
        assert (res.returncode, res.stdout) == (3, "")
        assert res.stderr == (f"xdmvpn: {path}: no NHRP packet in 4 frames (looked for GRE "
                              "protocol 0x2001 and IP protocol 54)\n")
    empty = tmp_path / "empty.pcap"
    _no_nhrp_capture(empty, 0)
    res = run_cli("decode", str(empty))
    assert res.returncode == 3 and "no NHRP packet in 0 frames" in res.stderr


def test_several_files_some_without_nhrp(tmp_path):
    good, other = tmp_path / "good.pcap", tmp_path / "other.pcap"
    write_capture(good, WIRES[:2])
    _no_nhrp_capture(other, 1)
    res = run_cli("decode", str(other), str(good))
    assert res.returncode == 3
    assert [line.split()[:2] for line in res.stdout.splitlines()] == [[f"{good}:", "1"],
                                                                       [f"{good}:", "2"]]
    assert res.stderr == (f"xdmvpn: {other}: no NHRP packet in 1 frame (looked for GRE "
                          "protocol 0x2001 and IP protocol 54)\n")
    bad = tmp_path / "bad.pcap"
    write_capture(bad, [WIRES[0][:30]])                # a decoding failure outranks it
    res = run_cli("decode", str(other), str(bad))
    assert res.returncode == 1 and res.stderr.count("\n") == 1


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
