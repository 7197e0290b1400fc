"""The control socket's path: what is there and is not a socket (a file, a directory, a
symbolic link) is never removed, a live daemon's socket is never taken, a stale one is
replaced; each refusal is one line. No root needed: Unix sockets in a temporary dir."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from xdmvpn import control
from xdmvpn.errors import XdmvpnError


async def _ping(req):
    return {"pong": True}


def _serve(path):
    async def go():
        server = await control.serve(str(path), _ping)
        server.close()
        await server.wait_closed()
    asyncio.run(go())


@pytest.mark.parametrize("kind", ["file", "directory", "symlink", "dangling_symlink"])
def test_what_is_not_a_socket_is_refused_and_left_alone(tmp_path, kind):
    path = tmp_path / "ctl.sock"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    if kind == "file":
        path.write_text("precious\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink":
        path.symlink_to(victim)
    else:
        path.symlink_to(tmp_path / "nowhere")
    with pytest.raises(XdmvpnError) as info:
        _serve(path)
    assert "not a socket" in str(info.value) and "\n" not in str(info.value)
    assert os.path.lexists(path) and victim.read_text() == "precious\n"
    if kind == "file":
        assert path.read_text() == "precious\n"


def test_a_live_daemons_socket_is_kept_and_a_stale_one_replaced(tmp_path):
    path = tmp_path / "ctl.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen(1)
    inode = path.stat().st_ino
    with pytest.raises(XdmvpnError, match="another daemon already serves"):
        control.check_free(str(path), remove_stale=True)
    with pytest.raises(XdmvpnError, match="another daemon already serves"):
        _serve(path)
    assert path.stat().st_ino == inode                    # still the live daemon's
    live.close()                                          # now stale: nobody listens
    control.check_free(str(path))                         # free, left for serve to replace
    assert path.exists()
    _serve(path)
