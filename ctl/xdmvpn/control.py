"""The control socket: one JSON request line in, one JSON answer line out.

The daemon serves it (asyncio, `serve`); `xdmvpn show|clear|stats`, the lab and the tests
ask through `request`. Requests are objects with a "cmd" key; answers carry "ok" and, when
not ok, a one-line "error". Nothing on this socket is trusted more than its file mode
(0600, root)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import Awaitable, Callable

from .errors import XdmvpnError

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024

Handler = Callable[[dict], dict | Awaitable[dict]]


def request(path: str, req: dict, timeout: float = 5.0) -> dict:
    """Send one request to the daemon at `path`; its answer, or XdmvpnError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise XdmvpnError(f"no daemon at {path} (is `xdmvpn run` running? "
                              "choose another with --socket or --instance)") from None
        except ConnectionRefusedError:
            raise XdmvpnError(f"no daemon answers at {path} (stale socket: the daemon "
                              "exited)") from None
        except PermissionError:
            raise XdmvpnError(f"permission denied on {path}: run as root") from None
        sock.sendall(json.dumps(req).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    except socket.timeout:
        raise XdmvpnError(f"the daemon at {path} did not answer within {timeout:g} s") \
            from None
    except OSError as exc:
        raise XdmvpnError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise XdmvpnError(f"the daemon at {path} sent a malformed answer") from None
    if not isinstance(answer, dict):
        raise XdmvpnError(f"the daemon at {path} sent a malformed answer")
    if not answer.get("ok"):
        raise XdmvpnError(str(answer.get("error", "request failed")))
    return answer


async def serve(path: str, handler: Handler) -> asyncio.AbstractServer:
    """Listen on `path` (replacing a stale socket) and answer each request with handler."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() or p.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            p.unlink()        # stale: the daemon that made it is gone
        else:
            raise XdmvpnError(f"another daemon already serves {path}")
        finally:
            probe.close()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            answer = await _answer(handler, line)
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, asyncio.LimitOverrunError,
                ValueError):
            pass
        finally:
            writer.close()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(client, path, limit=MAX_REQUEST)
    finally:
        os.umask(old)
    return server


async def _answer(handler: Handler, line: bytes) -> dict:
    try:
        req = json.loads(line)
    except ValueError:
        return {"ok": False, "error": "malformed request (one JSON object per line)"}
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        return {"ok": False, "error": 'malformed request (an object with "cmd")'}
    try:
        out = handler(req)
        if asyncio.iscoroutine(out):
            out = await out
    except XdmvpnError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:     # a bug must not kill the daemon: say it, log it
        log.exception("control request %r failed", req.get("cmd"))
        return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
    return {"ok": True, **out}
