"""The vici wire format (strongSwan's src/libcharon/plugins/vici/README.md), pure.

A packet is a 32-bit big-endian length and that many bytes: one byte of packet type, for
named types a one-byte name length and the name, then for requests, responses and events a
message. A message is a sequence of elements: SECTION_START name, SECTION_END,
KEY_VALUE name value, LIST_START name, LIST_ITEM value, LIST_END; names have a one-byte
length, values a 16-bit big-endian one.

Messages are dicts: a section is a dict, a list a list of values, a value bytes (str and
int are sent as their UTF-8 text). Decoded values stay bytes; `text(msg)` turns a decoded
message into str values for the callers that want text.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass


class PacketType(enum.IntEnum):
    CMD_REQUEST = 0          # named request message
    CMD_RESPONSE = 1         # unnamed response message for a request
    CMD_UNKNOWN = 2          # unnamed response if the requested command is unknown
    EVENT_REGISTER = 3       # named event registration request
    EVENT_UNREGISTER = 4     # named event deregistration request
    EVENT_CONFIRM = 5        # unnamed confirmation for event (de-)registration
    EVENT_UNKNOWN = 6        # unnamed response if event (de-)registration failed
    EVENT = 7                # named event message


_NAMED = {PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER,
          PacketType.EVENT}
_WITH_MESSAGE = {PacketType.CMD_REQUEST, PacketType.CMD_RESPONSE, PacketType.EVENT}

SECTION_START, SECTION_END, KEY_VALUE, LIST_START, LIST_ITEM, LIST_END = range(1, 7)
MAX_PACKET = 512 * 1024      # strongSwan's VICI_MESSAGE_SIZE_MAX


class ViciWireError(ValueError):
    """Bytes that are not a valid vici packet or message."""


@dataclass(frozen=True)
class Packet:
    type: PacketType
    name: str | None = None
    message: dict | None = None


def _name(name: str) -> bytes:
    raw = name.encode()
    if not 0 < len(raw) < 256:
        raise ViciWireError(f"vici name of {len(raw)} bytes (1..255): {name!r}")
    return bytes([len(raw)]) + raw


def _value(value) -> bytes:
    raw = value if isinstance(value, bytes) else str(value).encode()
    if len(raw) > 0xFFFF:
        raise ViciWireError(f"vici value of {len(raw)} bytes (at most 65535)")
    return struct.pack("!H", len(raw)) + raw


def encode_message(msg: dict) -> bytes:
    out = bytearray()
    for key, value in msg.items():
        if isinstance(value, dict):
            out += bytes([SECTION_START]) + _name(key) + encode_message(value)
            out.append(SECTION_END)
        elif isinstance(value, (list, tuple)):
            out += bytes([LIST_START]) + _name(key)
            for item in value:
                out += bytes([LIST_ITEM]) + _value(item)
            out.append(LIST_END)
        elif isinstance(value, bool):
            out += bytes([KEY_VALUE]) + _name(key) + _value("yes" if value else "no")
        elif value is not None:
            out += bytes([KEY_VALUE]) + _name(key) + _value(value)
    return bytes(out)


def encode_packet(ptype: PacketType, name: str | None = None, msg: dict | None = None) -> bytes:
    """A framed packet (length prefix included)."""
    body = bytes([ptype])
    if ptype in _NAMED:
        body += _name(name or "")
    if ptype in _WITH_MESSAGE and msg:
        body += encode_message(msg)
    if len(body) > MAX_PACKET:
        raise ViciWireError(f"vici packet of {len(body)} bytes (at most {MAX_PACKET})")
    return struct.pack("!I", len(body)) + body


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ViciWireError(f"vici message truncated at byte {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def name(self) -> str:
        return self.take(self.byte()).decode(errors="replace")

    def value(self) -> bytes:
        (n,) = struct.unpack("!H", self.take(2))
        return self.take(n)

    def more(self) -> bool:
        return self.pos < len(self.data)


def decode_message(data: bytes) -> dict:
    r = _Reader(data)
    root: dict = {}
    stack = [root]
    while r.more():
        kind = r.byte()
        if kind == SECTION_START:
            section: dict = {}
            stack[-1][r.name()] = section
            stack.append(section)
        elif kind == SECTION_END:
            if len(stack) == 1:
                raise ViciWireError("vici section end without a start")
            stack.pop()
        elif kind == KEY_VALUE:
            key = r.name()
            stack[-1][key] = r.value()
        elif kind == LIST_START:
            key = r.name()
            items = []
            while (kind := r.byte()) == LIST_ITEM:
                items.append(r.value())
            if kind != LIST_END:
                raise ViciWireError(f"vici list {key!r} not ended (element {kind})")
            stack[-1][key] = items
        else:
            raise ViciWireError(f"unknown vici element type {kind}")
    if len(stack) != 1:
        raise ViciWireError("vici section not ended")
    return root


def decode_packet(body: bytes) -> Packet:
    """One packet without its length prefix."""
    r = _Reader(body)
    try:
        ptype = PacketType(r.byte())
    except ValueError as exc:
        raise ViciWireError(f"unknown vici packet type {body[0]}") from exc
    name = r.name() if ptype in _NAMED else None
    msg = decode_message(body[r.pos:]) if ptype in _WITH_MESSAGE else None
    return Packet(ptype, name, msg)


def text(value):
    """A decoded message with every bytes value as str (UTF-8, invalid bytes replaced)."""
    if isinstance(value, dict):
        return {k: text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [text(v) for v in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value
