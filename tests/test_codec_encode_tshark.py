"""What our encoder writes, tshark reads back with the values we set and a good checksum."""

import pytest

from nhrp_samples import samples
from pcapgen import write_capture
from tshark_oracle import tshark_comparable, tshark_nhrp
from xdmvpn.nhrp import (
    AuthExtension, CieListExtension, ErrorIndication, RequestReply, VendorExtension, encode,
)
from xdmvpn.nhrp.codec import extension_body
from xdmvpn.nhrp.wire import addr_to_bytes

SAMPLES = samples()


def _addr(a):
    return addr_to_bytes(a) or None


def _cie(c):
    return {"code": c.code, "prefix_len": c.prefix_len, "mtu": c.mtu, "holdtime": c.holdtime,
            "preference": c.preference, "client_nbma": _addr(c.client_nbma),
            "client_proto": _addr(c.client_proto)}


def expected(msg, wire: bytes) -> dict:
    """What tshark must show, computed from the message object, not from our decoder."""
    mand_len = 20 + 8 + sum(len(_addr(a) or b"") for a in (msg.src_nbma, msg.src_proto,
                                                            msg.dst_proto))
    out = {
        "type": msg.TYPE, "hop_count": msg.hop_count, "packet_size": len(wire),
        "checksum": int.from_bytes(wire[12:14], "big"), "checksum_ok": True, "afn": msg.afn,
        "protocol_type": msg.protocol_type,
        "flags": msg.flags if isinstance(msg, RequestReply) else None,
        "request_id": msg.request_id if isinstance(msg, RequestReply) else None,
        "src_nbma": _addr(msg.src_nbma), "src_proto": _addr(msg.src_proto),
        "dst_proto": _addr(msg.dst_proto),
        "cies": [_cie(c) for c in getattr(msg, "cies", [])],
        "extensions": [],
    }
    if isinstance(msg, ErrorIndication):
        out["error_code"], out["error_offset"] = msg.error_code, msg.error_offset
    for c in getattr(msg, "cies", []):
        mand_len += 12 + len(_addr(c.client_nbma) or b"") + len(_addr(c.client_proto) or b"")
    mand_len += len(getattr(msg, "contents", b""))
    out["extension_offset"] = mand_len if msg.extensions else 0
    for ext in msg.extensions:
        e = {"type": ext.type, "compulsory": ext.compulsory,
             "length": len(extension_body(ext))}
        if isinstance(ext, CieListExtension) and ext.cies:
            e["cies"] = [_cie(c) for c in ext.cies]
        out["extensions"].append(e)
    return out


@pytest.fixture(scope="module")
def tshark_view(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoded.pcap"
    wires = [encode(m) for _, m in SAMPLES]
    write_capture(path, wires)
    return wires, tshark_nhrp(str(path))


@pytest.mark.parametrize("index", range(len(SAMPLES)), ids=[n for n, _ in SAMPLES])
def test_tshark_reads_what_we_set(tshark_view, index):
    wires, frames = tshark_view
    name, msg = SAMPLES[index]
    (seen,) = frames[index + 1]
    assert tshark_comparable(seen) == expected(msg, wires[index])


def test_odd_length_checksum_is_right(tshark_view):
    wires, frames = tshark_view
    index = [n for n, _ in SAMPLES].index("odd_length")
    assert len(wires[index]) % 2 == 1
    assert frames[index + 1][0]["checksum_ok"] is True


def test_every_type_and_extension_is_covered():
    types = {m.TYPE for _, m in SAMPLES}
    assert types == set(range(1, 9))
    ext_types = {e.type for _, m in SAMPLES for e in m.extensions}
    assert {0, 3, 4, 5, 7, 8, 9} <= ext_types
    kinds = {type(e) for _, m in SAMPLES for e in m.extensions}
    assert {AuthExtension, VendorExtension, CieListExtension} <= kinds
