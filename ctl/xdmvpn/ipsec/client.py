"""An asyncio vici client over the Unix socket (the PyPI `vici` Session blocks; this does
not, so the daemon's loop never waits on charon).

One request at a time (vici answers requests in order; a lock serializes them), events at
any time: the reader task hands each event to `on_event(name, message)`, except the
events a streaming command (list-sas -> list-sa) produces, which it collects for that
command. A lost connection fails the pending request with ViciClosed and calls
`on_close(reason)` once; a request that times out closes the connection too (a late
answer would otherwise be taken for the next request's).

    client = ViciClient(on_event=...)
    await client.connect("/var/run/charon.vici")
    await client.register("ike-updown")
    sas = await client.request("list-sas", stream="list-sa")
"""

from __future__ import annotations

import asyncio
import struct
from typing import Callable

from ..errors import XdmvpnError
from .wire import MAX_PACKET, Packet, PacketType, ViciWireError, decode_packet, encode_packet

DEFAULT_TIMEOUT = 10.0


class ViciError(XdmvpnError):
    """charon refused a command (its errmsg), or does not know it."""


class ViciClosed(XdmvpnError):
    """The vici connection is closed or was lost."""


def socket_path(uri: str) -> str:
    """"unix:///var/run/charon.vici" or a plain path -> the path."""
    return uri[len("unix://"):] if uri.startswith("unix://") else uri


class ViciClient:
    def __init__(self, on_event: Callable[[str, dict], None] | None = None,
                 on_close: Callable[[str], None] | None = None):
        self.on_event = on_event
        self.on_close = on_close
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future | None = None
        self._stream_name: str | None = None
        self._streamed: list = []
        self._closed_reason: str | None = "not connected"

    @property
    def connected(self) -> bool:
        return self._closed_reason is None

    @property
    def closed_reason(self) -> str | None:
        return self._closed_reason

    async def connect(self, uri: str, timeout: float = 5.0) -> None:
        path = socket_path(uri)
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=MAX_PACKET + 4), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ViciClosed(f"cannot connect to vici at {path}: "
                             f"{getattr(exc, 'strerror', None) or exc or 'timeout'}") from None
        self._closed_reason = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def close(self) -> None:
        self._lost("closed")
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._task = None

    # -- requests ---------------------------------------------------------------------
    async def request(self, cmd: str, msg: dict | None = None, *, stream: str | None = None,
                      timeout: float = DEFAULT_TIMEOUT):
        """Send command `cmd`; its response message (ViciError when it reports failure).
        With `stream`, the events of that name it produced: (response, [messages])."""
        async with self._lock:
            response = await self._exchange(encode_packet(PacketType.CMD_REQUEST, cmd, msg),
                                            stream, timeout, cmd)
        if response.type is PacketType.CMD_UNKNOWN:
            raise ViciError(f"vici: charon does not know the command {cmd!r}")
        body = response.message or {}
        if body.get("success") == b"no":
            err = body.get("errmsg", b"").decode(errors="replace") or "failed"
            raise ViciError(f"vici {cmd}: {err}")
        if stream is not None:
            return body, self._take_streamed()
        return body

    async def register(self, event: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        async with self._lock:
            response = await self._exchange(encode_packet(PacketType.EVENT_REGISTER, event),
                                            None, timeout, f"register {event}")
        if response.type is not PacketType.EVENT_CONFIRM:
            raise ViciError(f"vici: charon does not know the event {event!r}")

    def _take_streamed(self) -> list:
        out, self._streamed = self._streamed, []
        return out

    async def _exchange(self, data: bytes, stream: str | None, timeout: float,
                        what: str) -> Packet:
        if not self.connected:
            raise ViciClosed(f"vici connection {self._closed_reason}")
        loop = asyncio.get_running_loop()
        self._pending = loop.create_future()
        self._stream_name, self._streamed = stream, []
        try:
            self._writer.write(data)
            await self._writer.drain()
            return await asyncio.wait_for(asyncio.shield(self._pending), timeout)
        except asyncio.TimeoutError:
            self._lost(f"timed out ({what}, {timeout:g} s)")
            raise ViciClosed(f"vici {what}: no answer within {timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            self._lost(f"lost ({exc})")
            raise ViciClosed(f"vici connection lost ({exc})") from None
        finally:
            self._pending = None
            self._stream_name = None

    # -- reading ------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        reason = "closed by charon"
        try:
            while True:
                head = await self._reader.readexactly(4)
                (length,) = struct.unpack("!I", head)
                if length > MAX_PACKET:
                    reason = f"lost (a packet of {length} bytes)"
                    break
                self._dispatch(decode_packet(await self._reader.readexactly(length)))
        except asyncio.IncompleteReadError:
            pass
        except (ConnectionError, OSError) as exc:
            reason = f"lost ({exc})"
        except ViciWireError as exc:
            reason = f"lost ({exc})"
        except asyncio.CancelledError:
            return
        self._lost(reason)

    def _dispatch(self, pkt: Packet) -> None:
        if pkt.type is PacketType.EVENT:
            if pkt.name == self._stream_name and self._pending is not None:
                self._streamed.append(pkt.message or {})
            elif self.on_event is not None:
                self.on_event(pkt.name, pkt.message or {})
            return
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(pkt)

    def _lost(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(ViciClosed(f"vici connection {reason}"))
            self._pending.exception()          # retrieved: no "never retrieved" warning
        if self._writer is not None:
            self._writer.close()
        if self.on_close is not None and reason != "closed":
            self.on_close(reason)
