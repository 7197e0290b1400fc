"""Private charons (xdmvpn.ipsec.charon) in network namespaces, and the connection manager
against them: two charons run side by side (each its own /run, pid file and vici socket),
IKE comes up between them over the manager's connections, charon's own events say so, and
stop_charon finds a charon from its work directory. Needs root."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from ipaddress import ip_address

import pytest

from util import need_root
from xdmvpn import config as C
from xdmvpn.netns import Namespaces
from xdmvpn.errors import XdmvpnError
from xdmvpn.ipsec.charon import start_charon, stop_charon
from xdmvpn.ipsec.manager import INITIATE_MIN, IpsecManager

pytestmark = pytest.mark.root


@pytest.fixture
def pair(tmp_path):
    need_root()
    with Namespaces() as ns:
        a, b = ns.add("a"), ns.add("b")
        ns.link(a, "eth0", b, "eth0", "192.0.2.1/24", "192.0.2.2/24")
        charons = []
        try:
            for name in (a, b):
                charons.append(start_charon(name, tmp_path / name))
            yield charons
        finally:
            for c in charons:
                c.stop()


def test_two_private_charons_side_by_side(pair, tmp_path):
    a, b = pair
    host_pid_file = os.path.exists("/run/charon.pid")
    assert a.alive() and b.alive() and a.pid != b.pid
    for c in pair:
        out = subprocess.run(["swanctl", "--stats", "--uri", c.vici_uri], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 0 and "loaded plugins" in out.stdout, out.stderr
        assert "vici" in out.stdout and "kernel-netlink" in out.stdout
        assert (c.workdir / "charon.pid").read_text() == f"{c.pid}\n"
        assert os.readlink(f"/proc/{c.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert f"STRONGSWAN_CONF={c.workdir}/strongswan.conf".encode() in \
            open(f"/proc/{c.pid}/environ", "rb").read()
    # the compiled-in /var/run/charon.pid went to each charon's private /run
    assert os.path.exists("/run/charon.pid") == host_pid_file


def test_stop_charon_from_its_work_directory(tmp_path):
    need_root()
    with Namespaces() as ns:
        name = ns.add("s")
        c = start_charon(name, tmp_path / "w")
        with pytest.raises(XdmvpnError, match="already runs"):
            start_charon(name, tmp_path / "w")
        assert stop_charon(tmp_path / "w") is True
        assert not c.alive() and not os.path.exists(c.vici_socket)
        assert stop_charon(tmp_path / "w") is False


def test_a_missing_namespace_is_one_line(tmp_path):
    with pytest.raises(XdmvpnError) as info:
        start_charon("xdmvpn-no-such-ns", tmp_path / "x", timeout=5)
    assert "\n" not in str(info.value) and "exited with status" in str(info.value)


def ipsec(socket: str, tunnel: str):
    return C.loads(f'[tunnel]\naddress = "{tunnel}/24"\nsource-interface = "eth0"\n'
                   f'[ipsec]\npsk = "s3cret"\nvici-socket = "unix://{socket}"\n').ipsec


def test_the_manager_brings_ike_up_and_down_with_real_charons(pair):
    a, b = pair
    A, B = ip_address("192.0.2.1"), ip_address("192.0.2.2")

    async def go():
        seen_a, seen_b = [], []
        ma = IpsecManager(ipsec(a.vici_socket, "172.16.0.1"), ip_address("172.16.0.1"), A,
                          on_change=seen_a.append, rng=random.Random(1))
        mb = IpsecManager(ipsec(b.vici_socket, "172.16.0.2"), ip_address("172.16.0.2"), B,
                          on_change=seen_b.append, rng=random.Random(2))
        ma.start()
        mb.start()
        # b must have its connections loaded before a initiates: else b refuses the first
        # IKE_SA_INIT and a retries after its backoff (3 s, then 6 s), which on a machine as
        # loaded as CI (a VM tier running beside) outlasted the wait below
        for _ in range(600):
            if ma.connected and mb.connected:
                break
            await asyncio.sleep(0.05)
        assert ma.connected and mb.connected, (dict(ma.stats), dict(mb.stats))
        ma.want(B)                                # only a initiates; b responds
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if ma.view(B).ike_up and mb.view(A).ike_up:
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - t0
        assert ma.view(B).identity == "172.16.0.2" and mb.view(A).identity == "172.16.0.1", \
            (took, dict(ma.stats), dict(mb.stats), ma.table.ike, mb.table.ike)
        assert {B} in seen_a and {A} in seen_b    # from charon's ike-updown events
        assert mb.stats.get("initiate", 0) == 0
        # one initiation, unless IKE took longer than the earliest retry (a loaded machine:
        # the manager tries again after INITIATE_MIN, jittered down to half of it)
        if took < INITIATE_MIN * 0.5:
            assert ma.stats["initiate"] == 1
        else:
            assert 1 <= ma.stats["initiate"] <= 1 + int(took / (INITIATE_MIN * 0.5))
        ma.unwant(B)                              # the peer's cache entry died
        t1 = time.monotonic()
        while time.monotonic() - t1 < 30:
            if not ma.view(B).ike_up and not mb.view(A).ike_up:
                break
            await asyncio.sleep(0.05)
        assert not mb.view(A).ike_up, (dict(mb.stats), mb.table.ike)   # the responder saw it go
        assert ma.stats["terminate"] == 1 and ma.stats["unload_conn"] == 1
        await ma.stop(terminate=True)
        await mb.stop(terminate=True)
    asyncio.run(asyncio.wait_for(go(), 120))
