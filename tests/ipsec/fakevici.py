"""A scripted vici server on a Unix socket, for the client and manager tests that need no
root (test helper). Frames are built with the PyPI `vici` package's protocol module, an
implementation independent of xdmvpn.ipsec.wire.

    server = FakeCharon(path); await server.start()
    server.handlers["initiate"] = lambda msg: {"success": "yes"}
    await server.event("ike-updown", {...})
"""

from __future__ import annotations

import asyncio
import struct

from vici.protocol import FiniteStream, Message, Packet


def _text(value):
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value


class FakeCharon:
    def __init__(self, path: str):
        self.path = path
        self.server = None
        self.writers: list[asyncio.StreamWriter] = []
        self.requests: list[tuple[str, dict]] = []       # (command, message) received
        self.registered: list[str] = []
        self.handlers: dict = {}          # command -> fn(msg) -> response dict | None
        self.streams: dict = {}           # command -> fn(msg) -> [(event, message)]
        self.known_events = {"ike-updown", "ike-rekey", "child-updown", "child-rekey",
                             "list-sa", "list-conn", "log"}
        self.silent: set = set()          # commands never answered (timeouts)
        self.delays: dict = {}            # command -> seconds before its answer
        self.connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, self.path)

    async def close(self) -> None:
        self.drop_clients()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def drop_clients(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    def commands(self, name: str | None = None) -> list:
        return [m for c, m in self.requests if name is None or c == name]

    async def event(self, name: str, msg: dict) -> None:
        pkt = bytes([Packet.EVENT, len(name)]) + name.encode() + Message.serialize(msg)
        for w in self.writers:
            w.write(struct.pack("!I", len(pkt)) + pkt)
            await w.drain()

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack("!I", head)[0])
                kind, n = body[0], body[1]
                name = body[2:2 + n].decode()
                if kind == Packet.EVENT_REGISTER:
                    ok = name in self.known_events
                    if ok:
                        self.registered.append(name)
                    await self._send(writer, bytes([Packet.EVENT_CONFIRM if ok
                                                    else Packet.EVENT_UNKNOWN]))
                    continue
                msg = _text(Message.deserialize(FiniteStream(body[2 + n:])))
                self.requests.append((name, msg))
                if name in self.silent:
                    continue
                await asyncio.sleep(self.delays.get(name, 0))
                for ev, evmsg in self.streams.get(name, lambda m: [])(msg):
                    pkt = bytes([Packet.EVENT, len(ev)]) + ev.encode() + \
                        Message.serialize(evmsg)
                    await self._send(writer, pkt)
                handler = self.handlers.get(name, _default(name))
                if handler is None:
                    await self._send(writer, bytes([Packet.CMD_UNKNOWN]))
                    continue
                response = handler(msg)
                await self._send(writer, bytes([Packet.CMD_RESPONSE])
                                 + Message.serialize(response or {}))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self.writers:
                self.writers.remove(writer)
            writer.close()

    @staticmethod
    async def _send(writer, pkt: bytes) -> None:
        writer.write(struct.pack("!I", len(pkt)) + pkt)
        await writer.drain()


def _default(name: str):
    if name in ("load-conn", "load-shared", "load-cert", "load-key", "initiate", "terminate",
                "unload-conn"):
        return lambda msg: {"success": "yes"}
    if name in ("list-sas", "version"):
        return lambda msg: {}
    return None


def ike_sa(uid: int, peer: str, identity: str, *, conn: str | None = None,
           state: str = "ESTABLISHED", children: dict | None = None) -> dict:
    """An IKE_SA section as charon writes it (list-sa, ike-updown)."""
    sa = {"uniqueid": str(uid), "version": "2", "state": state, "local-host": "192.0.2.1",
          "remote-host": peer, "remote-id": identity, "local-id": "172.16.0.1",
          "child-sas": {}}
    for name, (cuid, cstate) in (children or {}).items():
        sa["child-sas"][f"{name}-{cuid}"] = {"name": name, "uniqueid": str(cuid),
                                             "state": cstate, "mode": "TRANSPORT"}
    return {conn or f"dmvpn-{peer}": sa}
