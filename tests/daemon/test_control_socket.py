"""The control socket of a real daemon (a hub, `xdmvpn run` in a namespace) against every
kind of bad client: each connection gets exactly one JSON answer line, whatever it sends
(deeply nested JSON, lines past the limit, binary, empty lines, nothing at all), the daemon
counts the errors and keeps answering, and 500 clients at once are all answered."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest

from topo import Topology
from xdmvpn.control import MAX_REQUEST, REQUEST_TIMEOUT

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    t = Topology(tmp_path_factory.mktemp("control"), spokes=0)
    try:
        t.start("hub1")
        yield t
    finally:
        t.close()


def exchange(t, data: bytes, half_close: bool = True, timeout: float = 30) -> bytes:
    """Send data, then read until the daemon closes; everything it answered."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(t.socket("hub1"))
        if data:
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out
    finally:
        s.close()


def one_error(answer: bytes) -> str:
    assert answer.endswith(b"\n") and answer.count(b"\n") == 1, answer[:200]
    got = json.loads(answer)
    assert got["ok"] is False and isinstance(got["error"], str) and got["error"]
    return got["error"]


CASES = {
    "nested_50000_open": (b"[" * 50_000 + b"\n", "nested too deeply"),
    "nested_30000": (b"[" * 30_000 + b"]" * 30_000 + b"\n", "nested too deeply"),
    "nested_in_object": (b'{"cmd": "ping", "x": ' + b"[" * 40_000 + b"\n",
                         "nested too deeply"),
    "nested_50000": (b"[" * 50_000 + b"]" * 50_000 + b"\n", f"longer than {MAX_REQUEST}"),
    "one_megabyte": (b"a" * 1_000_000 + b"\n", f"longer than {MAX_REQUEST}"),
    "binary": (bytes(range(256)) * 4 + b"\n", "malformed request"),
    "random": (bytes(b for b in os.urandom(8192) if b != 10) + b"\n", "malformed request"),
    "not_utf8": (b'{"cmd": "\xff\xfe"}\n', "malformed request"),
    "empty_line": (b"\n", "empty request"),
    "blank_line": (b" \t \r\n", "empty request"),
    "huge_integer": (b"1" * 60_000 + b"\n", "malformed request"),
    "array": (b"[1, 2]\n", 'an object with "cmd"'),
    "cmd_not_a_string": (b'{"cmd": 5}\n', 'an object with "cmd"'),
    "unknown_cmd": (b'{"cmd": "reboot"}\n', "unknown command"),
    "clear_what": (b'{"cmd": "clear", "what": {"x": [1]}}\n', "clear what?"),
    "no_newline": (b'{"cmd": "ping"}', "not ended by a newline"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_one_error_line(hub, case):
    data, expected = CASES[case]
    assert expected in one_error(exchange(hub, data))


def test_silent_and_slow_clients_time_out_with_an_answer(hub):
    t0 = time.monotonic()
    silent = one_error(exchange(hub, b"", half_close=False))
    slow = one_error(exchange(hub, b'{"cmd": "pi', half_close=False))
    took = time.monotonic() - t0
    assert "no request line within" in silent and "no request line within" in slow
    assert 2 * REQUEST_TIMEOUT <= took < 2 * REQUEST_TIMEOUT + 10


def test_the_daemon_counted_the_errors_and_still_answers(hub):
    for data, _ in CASES.values():
        exchange(hub, data)
    daemon = hub.ask("hub1", "stats")["daemon"]
    assert daemon["control_error.malformed"] >= 9
    assert daemon["control_error.too_long"] >= 2 and daemon["control_error.empty"] >= 2
    assert daemon["control_error.truncated"] >= 1
    assert not [k for k in daemon if k.startswith("bug.")]
    assert hub.ask("hub1", "ping")["instance"] == hub.instance("hub1")
    assert json.loads(exchange(hub, b'{"cmd": "snapshot"}\n'))["ok"] is True


def test_500_clients_at_once_are_all_answered(hub):
    path = hub.socket("hub1")

    async def one(i):
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
        writer.write(json.dumps({"cmd": "snapshot" if i % 2 else "stats"}).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
        writer.close()
        return json.loads(line)

    async def all_at_once():
        return await asyncio.gather(*(one(i) for i in range(500)), return_exceptions=True)

    t0 = time.monotonic()
    answers = asyncio.run(all_at_once())
    took = time.monotonic() - t0
    failed = [a for a in answers if not isinstance(a, dict) or a.get("ok") is not True]
    assert not failed, f"{len(failed)} of 500 failed, e.g. {failed[:3]}"
    print(f"500 concurrent show requests answered in {took:.2f} s")
