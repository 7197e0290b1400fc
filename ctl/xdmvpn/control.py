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
import stat
from collections import Counter
from pathlib import Path
from typing import Awaitable, Callable

from .errors import XdmvpnError

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024        # bytes of one request line
REQUEST_TIMEOUT = 5.0          # seconds a client has to send its request line
ANSWER_TIMEOUT = 10.0          # seconds a client has to take its answer
BACKLOG = 1024                 # connections waiting to be accepted (capped by somaxconn)
CONCURRENT = 64                # answers being built at once

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
    except (ValueError, RecursionError):
        raise XdmvpnError(f"the daemon at {path} sent a malformed answer") from None
    if not isinstance(answer, dict):
        raise XdmvpnError(f"the daemon at {path} sent a malformed answer")
    if not answer.get("ok"):
        raise XdmvpnError(str(answer.get("error", "request failed")))
    return answer


def check_free(path: str, remove_stale: bool = False) -> None:
    """Raise a one-line XdmvpnError unless path is free for our control socket: absent, or
    a socket nobody answers on (stale: removed when remove_stale). A file, a directory or a
    symbolic link there is never ours to remove, and a daemon answering there keeps it."""
    p = Path(path)
    try:
        mode = p.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise XdmvpnError(f"control socket {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise XdmvpnError(f"{path} exists and is not a socket; refusing to replace it "
                          "(control.socket)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        if remove_stale:
            p.unlink(missing_ok=True)      # stale: the daemon that made it is gone
    else:
        raise XdmvpnError(f"another daemon already serves {path}")
    finally:
        probe.close()


async def serve(path: str, handler: Handler, stats: Counter | None = None
                ) -> asyncio.AbstractServer:
    """Listen on `path` (replacing a stale socket) and answer each request with handler.

    Every connection gets exactly one answer line, whatever it sends: a request longer than
    MAX_REQUEST bytes, bytes that are not JSON (or JSON nested too deeply for the parser),
    an empty line or nothing at all within REQUEST_TIMEOUT all get an error line, counted
    in stats["control_error.<reason>"]. A client that does not read its answer within
    ANSWER_TIMEOUT is cut off. BACKLOG connections may wait to be accepted (500 `xdmvpn
    show` at once are all answered), and at most CONCURRENT answers are built at a time."""
    stats = stats if stats is not None else Counter()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    check_free(path, remove_stale=True)
    turns = asyncio.Semaphore(CONCURRENT)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await _read_and_answer(handler, reader, turns, stats)
            if answer is not None:
                writer.write(answer)
                await asyncio.wait_for(writer.drain(), ANSWER_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            stats["control_error.client_gone"] += 1
            writer.transport.abort()
        finally:
            writer.close()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(client, path, limit=MAX_REQUEST,
                                                 backlog=BACKLOG)
    finally:
        os.umask(old)
    return server


def _error(stats: Counter, reason: str, message: str) -> bytes:
    stats[f"control_error.{reason}"] += 1
    return _line({"ok": False, "error": message})


def _line(answer: dict) -> bytes:
    return json.dumps(answer, default=str).encode() + b"\n"


async def _read_and_answer(handler: Handler, reader: asyncio.StreamReader,
                           turns: asyncio.Semaphore, stats: Counter) -> bytes | None:
    """The answer line for one connection (None: the client left without a word)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REQUEST_TIMEOUT
    try:
        line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
    except asyncio.TimeoutError:
        return _error(stats, "timeout", f"no request line within {REQUEST_TIMEOUT:g} s")
    except ValueError:            # the line went past the reader's limit: skip the rest of
        try:                      # it (until the deadline) so that the client reads this
            while loop.time() < deadline:
                chunk = await asyncio.wait_for(reader.read(MAX_REQUEST),
                                               deadline - loop.time())
                if not chunk or b"\n" in chunk:
                    break
        except asyncio.TimeoutError:
            pass
        return _error(stats, "too_long", f"request longer than {MAX_REQUEST} bytes")
    if not line:
        stats["control_error.empty"] += 1
        return None
    if not line.endswith(b"\n"):
        return _error(stats, "truncated", "request not ended by a newline")
    if not line.strip():
        return _error(stats, "empty", "empty request (one JSON object per line)")
    try:
        req = json.loads(line)
    except RecursionError:
        return _error(stats, "malformed", "malformed request (JSON nested too deeply)")
    except ValueError:            # not UTF-8, not JSON
        return _error(stats, "malformed", "malformed request (one JSON object per line)")
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        return _error(stats, "malformed", 'malformed request (an object with "cmd")')
    async with turns:
        answer = await _answer(handler, req)
    stats["control_requests"] += 1
    try:
        return _line(answer)
    except (ValueError, TypeError, RecursionError) as exc:     # a bug in the handler
        log.error("control request %r: answer not serializable: %s", req["cmd"], exc)
        return _error(stats, "internal", f"internal error: {type(exc).__name__}")


async def _answer(handler: Handler, req: dict) -> dict:
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
