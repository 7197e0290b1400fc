"""Property-based round trips: encode -> decode -> encode is the identity."""

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings, strategies as st

from xdmvpn.nhrp import (
    AuthExtension, Cie, CieListExtension, ErrorIndication, Extension, NhrpDecodeError,
    RequestReply, TrafficIndication, VendorExtension, decode, encode, end_extension,
)
from xdmvpn.nhrp.messages import TYPE_CLASSES

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addr = st.one_of(
    st.none(),
    st.builds(IPv4Address, u32),
    st.builds(IPv6Address, st.integers(0, 2**128 - 1)),
    st.binary(min_size=1, max_size=20).filter(lambda b: len(b) not in (4, 16)),
)
tl_type = st.sampled_from([0, 0x40])
cies = st.lists(st.builds(Cie, u8, u8, u16, u16, addr, addr, u8,
                          st.binary(max_size=6), u16, tl_type, tl_type), max_size=3)
extension = st.one_of(
    st.builds(CieListExtension, st.sampled_from([3, 4, 5, 9]), st.booleans(), cies,
              st.booleans()),
    st.builds(AuthExtension, u32, st.binary(max_size=16), st.booleans(), st.booleans()),
    st.builds(VendorExtension, st.integers(0, 0xFFFFFF), st.binary(max_size=8), st.booleans()),
    st.builds(Extension, st.integers(10, 0x3FFF), st.booleans(), st.binary(max_size=12),
              st.booleans()),
)


def _unique_singletons(exts):
    seen, out = set(), []
    for e in exts:
        if e.type in seen and e.type in (3, 4, 5, 7, 9):
            continue
        seen.add(e.type)
        out.append(e)
    return out


@st.composite
def packets(draw):
    cls = TYPE_CLASSES[draw(st.integers(1, 8))]
    pkt = cls(afn=draw(u16), protocol_type=draw(u16), snap=draw(st.binary(min_size=5,
                                                                            max_size=5)),
              hop_count=draw(st.integers(1, 255)), src_nbma=draw(addr),
              src_proto=draw(addr), dst_proto=draw(addr),
              src_nbma_sub=draw(st.binary(max_size=4)), nbma_type=draw(tl_type),
              sub_type=draw(tl_type))
    if isinstance(pkt, RequestReply):
        pkt.flags, pkt.request_id, pkt.cies = draw(u16), draw(u32), draw(cies)
    elif isinstance(pkt, ErrorIndication):
        pkt.error_code, pkt.error_offset, pkt.reserved = draw(u16), draw(u16), draw(u16)
        pkt.contents = draw(st.binary(max_size=40))
    else:
        assert isinstance(pkt, TrafficIndication)
        pkt.traffic_code, pkt.reserved = draw(u16), draw(u32)
        pkt.contents = draw(st.binary(max_size=40))
    exts = _unique_singletons(draw(st.lists(extension, max_size=5)))
    if exts or draw(st.booleans()):
        exts.append(end_extension())
        pkt.trailer = draw(st.binary(max_size=3))
    pkt.extensions = exts
    pkt.empty_extension_part = not exts and draw(st.booleans())
    return pkt


def _strip_wire_info(pkt):
    pkt.checksum = pkt.checksum_ok = pkt.packet_size = pkt.extension_offset = None
    return pkt


@settings(max_examples=400, deadline=None)
@given(packets())
def test_encode_decode_roundtrip(pkt):
    wire = encode(pkt)
    back = decode(wire)
    assert back.checksum_ok is True
    assert back.packet_size == len(wire)
    assert encode(back) == wire
    assert _strip_wire_info(back) == pkt


@settings(max_examples=400, deadline=None)
@given(packets(), st.data())
def test_any_single_byte_change_decodes_or_raises_the_decode_error(pkt, data):
    wire = bytearray(encode(pkt))
    i = data.draw(st.integers(0, len(wire) - 1))
    wire[i] = data.draw(u8)
    try:
        back = decode(bytes(wire))
    except NhrpDecodeError as exc:
        assert 0 <= exc.offset <= len(wire)
        return
    # accepted: then it re-encodes to the same bytes, checksum aside
    again = encode(back)
    assert again[:12] == bytes(wire[:12]) and again[14:] == bytes(wire[14:back.packet_size])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_the_decode_error(blob):
    try:
        decode(blob)
    except NhrpDecodeError:
        pass
