"""Wire-level helpers shared by the codec: the decode error, checksum, addresses."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from ..inet import checksum

__all__ = ["Address", "NhrpDecodeError", "addr_from_bytes", "addr_to_bytes", "addr_text",
           "checksum"]

Address = IPv4Address | IPv6Address | bytes | None


class NhrpDecodeError(ValueError):
    """The one error decoding raises; names the field and the byte offset in the NHRP packet."""

    def __init__(self, field: str, offset: int, detail: str):
        self.field = field
        self.offset = offset
        self.detail = detail
        super().__init__(f"{field} at offset {offset}: {detail}")


def addr_from_bytes(raw: bytes) -> Address:
    """4 bytes -> IPv4, 16 -> IPv6, 0 -> None, anything else stays opaque bytes."""
    n = len(raw)
    if n == 4:
        return IPv4Address(raw)
    if n == 16:
        return IPv6Address(raw)
    if n == 0:
        return None
    return bytes(raw)


def addr_to_bytes(addr: Address) -> bytes:
    if addr is None:
        return b""
    if isinstance(addr, (bytes, bytearray)):
        return bytes(addr)
    return addr.packed


def addr_text(addr: Address) -> str | None:
    """Text form: dotted/colon IP, hex octets for other lengths, None when absent."""
    if addr is None:
        return None
    if isinstance(addr, (bytes, bytearray)):
        return ":".join(f"{b:02x}" for b in addr)
    return str(addr)
