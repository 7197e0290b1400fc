"""The vici wire format against the PyPI `vici` package's implementation (strongSwan's own
Python binding), and malformed input."""

from __future__ import annotations

import struct
from collections import OrderedDict

import pytest
from hypothesis import given, settings, strategies as st
from vici.protocol import FiniteStream, Message, Packet as ViciPacket

from xdmvpn.ipsec import wire
from xdmvpn.ipsec.wire import PacketType, ViciWireError

CONN = {"dmvpn-192.0.2.1": {
    "version": "2", "local_addrs": ["192.0.2.11"], "remote_addrs": ["192.0.2.1"],
    "local": {"auth": "psk", "id": "172.16.0.11"}, "remote": {"auth": "psk", "id": "%any"},
    "children": {"dmvpn-192.0.2.1": {"mode": "transport", "local_ts": ["dynamic[gre]"],
                                     "remote_ts": ["dynamic[gre]"], "esp_proposals": []}}}}


def as_bytes(value):
    if isinstance(value, dict):
        return {k: as_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_bytes(v) for v in value]
    return value if isinstance(value, bytes) else str(value).encode()


def test_encoding_is_the_reference_encoding():
    assert wire.encode_message(CONN) == Message.serialize(OrderedDict(CONN))


def test_decoding_reads_the_reference_encoding():
    data = Message.serialize(CONN)
    assert wire.decode_message(data) == as_bytes(CONN)
    assert wire.text(wire.decode_message(data)) == CONN


def test_values_bool_int_bytes_none():
    msg = {"a": True, "b": False, "c": 5, "d": b"\x00\xff", "e": None, "f": ("x", 1)}
    assert wire.decode_message(wire.encode_message(msg)) == {
        "a": b"yes", "b": b"no", "c": b"5", "d": b"\x00\xff", "f": [b"x", b"1"]}


def test_packets_frame_like_the_reference():
    req = wire.encode_packet(PacketType.CMD_REQUEST, "load-conn", CONN)
    assert req == struct.pack("!I", len(req) - 4) + ViciPacket.request(
        "load-conn", Message.serialize(CONN))
    reg = wire.encode_packet(PacketType.EVENT_REGISTER, "ike-updown")
    assert reg[4:] == ViciPacket.register_event("ike-updown")
    ev = bytes([7, 10]) + b"ike-updown" + Message.serialize({"up": "yes"})
    assert wire.decode_packet(ev) == wire.Packet(PacketType.EVENT, "ike-updown",
                                                 {"up": b"yes"})
    assert wire.decode_packet(bytes([5])) == wire.Packet(PacketType.EVENT_CONFIRM)
    resp = bytes([1]) + Message.serialize({"success": "yes"})
    assert wire.decode_packet(resp).message == {"success": b"yes"}
    # and the reference parses ours
    parsed = ViciPacket.parse(wire.encode_packet(PacketType.EVENT, "x", {"k": "v"})[4:])
    assert Message.deserialize(parsed.payload) == {"k": b"v"}


@pytest.mark.parametrize("data,why", [
    (bytes([3, 3]) + b"ke", "truncated"),                      # value length past the end
    (bytes([9]), "unknown vici element type 9"),
    (bytes([4, 1]) + b"l" + bytes([5, 0, 1]) + b"x", "truncated"),   # list not ended
    (bytes([4, 1]) + b"l" + bytes([3, 1]) + b"k", "not ended"),
    (bytes([1, 1]) + b"s", "section not ended"),
    (bytes([2]), "section end without a start"),
])
def test_malformed_messages(data, why):
    with pytest.raises(ViciWireError, match=why):
        wire.decode_message(data)


def test_malformed_packets_and_limits():
    with pytest.raises(ViciWireError, match="unknown vici packet type 42"):
        wire.decode_packet(bytes([42]))
    with pytest.raises(ViciWireError, match="1..255"):
        wire.encode_message({"x" * 256: "v"})
    with pytest.raises(ViciWireError, match="at most 65535"):
        wire.encode_message({"k": b"x" * 65536})


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                max_size=12).filter(lambda s: len(s.encode()) < 256)
values = st.binary(max_size=40)
messages = st.recursive(
    st.dictionaries(names, values | st.lists(values, max_size=4), max_size=4),
    lambda inner: st.dictionaries(names, inner | values | st.lists(values, max_size=3),
                                  max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip_and_agreement_with_the_reference(msg):
    data = wire.encode_message(msg)
    assert wire.decode_message(data) == msg
    assert data == Message.serialize(msg)
    assert Message.deserialize(FiniteStream(data)) == msg
