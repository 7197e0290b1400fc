"""The malformed corpus: every way a packet can lie raises NhrpDecodeError naming the
field and the byte offset, never IndexError, struct.error or a hang."""

import struct

import pytest

from util import capture_files
from nhrp_samples import samples
from xdmvpn.capture import read_nhrp_frames
from xdmvpn.nhrp import (
    AuthExtension, CieListExtension, NhrpDecodeError, checksum, decode, encode, end_extension,
)

VECTORS = [f.payload for path in capture_files() for f in read_nhrp_frames(str(path))]
SAMPLE = dict(samples())


def _fix(wire: bytearray) -> bytes:
    """Make size and checksum consistent again, so that only the lie under test remains."""
    wire[10:12] = len(wire).to_bytes(2, "big")
    wire[12:14] = b"\0\0"
    wire[12:14] = checksum(bytes(wire)).to_bytes(2, "big")
    return bytes(wire)


def _raises(wire, field, offset=None):
    with pytest.raises(NhrpDecodeError) as info:
        decode(wire)
    assert info.value.field.startswith(field), str(info.value)
    if offset is not None:
        assert info.value.offset == offset, str(info.value)
    assert f"offset {info.value.offset}" in str(info.value)
    return info.value


def test_corpus_is_not_empty():
    assert len(VECTORS) >= 8


@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_truncation_at_every_offset(index):
    wire = VECTORS[index]
    size = decode(wire).packet_size
    for cut in range(size):
        # the bytes end early, the header still claims the full size
        with pytest.raises(NhrpDecodeError):
            decode(wire[:cut])
        # the header agrees with the cut: inner structures are cut instead
        if cut >= 20:
            cutw = bytearray(wire[:cut])
            extoff = int.from_bytes(cutw[14:16], "big")
            if extoff > cut:
                cutw[14:16] = b"\0\0"
            fixed = _fix(cutw)
            try:
                back = decode(fixed)
            except NhrpDecodeError as exc:
                assert 0 <= exc.offset <= cut
            else:   # the cut fell on a boundary: then it is a consistent, shorter packet
                assert encode(back) == fixed


def test_packet_size_past_the_end():
    wire = bytearray(encode(SAMPLE["registration_request"]))
    wire[10:12] = (len(wire) + 1).to_bytes(2, "big")
    _raises(bytes(wire), "packet size", 10)


def test_packet_size_below_the_header():
    wire = bytearray(encode(SAMPLE["registration_request"]))
    wire[10:12] = (12).to_bytes(2, "big")
    _raises(bytes(wire), "packet size", 10)


@pytest.mark.parametrize("extoff", [1, 8, 19])
def test_extension_offset_inside_the_header(extoff):
    wire = bytearray(encode(SAMPLE["registration_request"]))
    wire[14:16] = extoff.to_bytes(2, "big")
    _raises(_fix(wire), "extension offset", 14)


def test_extension_offset_past_the_packet():
    wire = bytearray(encode(SAMPLE["registration_request"]))
    wire[14:16] = (len(wire) + 4).to_bytes(2, "big")
    _raises(_fix(wire), "extension offset", 14)


def test_source_protocol_address_length_255():
    wire = bytearray(encode(SAMPLE["registration_request"]))
    wire[20] = 255
    _raises(_fix(wire), "mandatory part addresses", 28)


def test_nbma_length_63_runs_past_the_mandatory_part():
    wire = bytearray(encode(SAMPLE["registration_request"]))
    wire[18] = 0xFF          # type bits set and length 63
    _raises(_fix(wire), "mandatory part addresses", 28)


def test_cie_protocol_length_255():
    msg = SAMPLE["registration_request"]
    wire = bytearray(encode(msg))
    cie_at = 20 + 8 + 12
    wire[cie_at + 10] = 255
    _raises(_fix(wire), "CIE addresses", cie_at + 12)


def test_extension_length_past_the_end():
    msg = SAMPLE["registration_request"]
    wire = bytearray(encode(msg))
    extoff = int.from_bytes(wire[14:16], "big")
    wire[extoff + 2:extoff + 4] = (0xFFF0).to_bytes(2, "big")
    _raises(_fix(wire), "extension 3 body", extoff + 4)


def test_cie_list_extension_with_a_partial_cie():
    msg = SAMPLE["registration_request"]
    msg = type(msg)(**{**{f: getattr(msg, f) for f in ("src_nbma", "src_proto", "dst_proto")},
                       "extensions": [CieListExtension(4, True, []), end_extension()]})
    wire = bytearray(encode(msg))
    extoff = int.from_bytes(wire[14:16], "big")
    # give the forward transit record a 7-byte body: less than one CIE
    wire[extoff + 2:extoff + 4] = (7).to_bytes(2, "big")
    wire[extoff + 4:extoff + 4] = bytes(7)
    _raises(_fix(wire), "extension 4 CIE", extoff + 4)


@pytest.mark.parametrize("ext", [
    AuthExtension(1, b"secret"), CieListExtension(9, False, []),
], ids=["auth", "nat"])
def test_duplicated_extension(ext):
    msg = SAMPLE["no_extensions"]
    msg.extensions = [ext, ext, end_extension()]
    wire = encode(msg)
    extoff = int.from_bytes(wire[14:16], "big")
    second = extoff + 4 + len(wire[extoff + 4:extoff + 4]) + int.from_bytes(
        wire[extoff + 2:extoff + 4], "big")
    err = _raises(wire, f"extension {ext.type}", second)
    assert "more than once" in str(err)
    msg.extensions = []


def test_short_authentication_body():
    msg = SAMPLE["odd_length"]
    wire = bytearray(encode(msg))
    extoff = int.from_bytes(wire[14:16], "big")
    wire[extoff + 2:extoff + 4] = (2).to_bytes(2, "big")
    del wire[extoff + 6:extoff + 4 + 7]
    _raises(_fix(wire), "authentication extension", extoff + 4)


def test_end_extension_with_a_body():
    wire = bytearray(encode(SAMPLE["no_extensions"]))
    extoff = len(wire)
    wire += struct.pack("!HH", 0x8000, 2) + b"\0\0"
    wire[14:16] = extoff.to_bytes(2, "big")
    _raises(_fix(wire), "end extension", extoff)


@pytest.mark.parametrize("name", ["registration_request", "traffic_indication",
                                  "resolution_request"])
def test_hop_count_zero(name):
    wire = bytearray(encode(SAMPLE[name]))
    wire[9] = 0
    wire = _fix(wire)
    _raises(wire, "hop count", 9)
    assert decode(wire, strict=False).hop_count == 0   # the daemon answers it with error 15


def test_version_and_unknown_type():
    wire = bytearray(encode(SAMPLE["registration_request"]))
    wire[16] = 2
    _raises(_fix(bytearray(wire)), "version", 16)
    wire[16], wire[17] = 1, 42
    _raises(_fix(wire), "packet type", 17)


def test_odd_length_checksum():
    wire = encode(SAMPLE["odd_length"])
    assert len(wire) % 2 == 1
    assert decode(wire).checksum_ok is True
    bad = bytearray(wire)
    bad[wire.index(b"abc") + 2] ^= 0x01   # the last byte of the secret
    assert decode(bytes(bad)).checksum_ok is False


def test_huge_garbage_is_bounded():
    blob = bytes([0x00, 0x01, 0x08, 0x00]) + bytes(5) + b"\x01\xff\xff" + bytes(65535 - 12)
    blob = bytearray(blob)
    blob[16], blob[17], blob[14:16] = 1, 3, (20).to_bytes(2, "big")
    with pytest.raises(NhrpDecodeError):
        decode(bytes(blob))


def test_unknown_compulsory_extension_is_kept_and_flagged():
    """RFC 2332 5.3: a compulsory extension the recipient does not understand must be
    answered with 'Unrecognized Extension'; a non-compulsory one is ignored."""
    wire = encode(SAMPLE["vendor_and_unknown_extensions"])
    pkt = decode(wire)
    assert pkt.unknown_compulsory_extensions() == [0x2001]      # 0x1234 is not compulsory
    assert encode(pkt) == wire
