"""The connection manager against a scripted vici server (fakevici): wanted peers are
loaded and initiated, events drive the view, unwanted peers are terminated and unloaded,
a lost connection fails closed and is reconciled with list-sas. No root needed."""

from __future__ import annotations

import asyncio
import random
from ipaddress import ip_address

import pytest

from fakevici import FakeCharon, ike_sa
from xdmvpn import config as C
from xdmvpn.ipsec import manager as M
from xdmvpn.ipsec.manager import IpsecManager
from xdmvpn.ipsec.sas import EVENTS

ME, HUB, TUN = ip_address("192.0.2.11"), ip_address("192.0.2.1"), ip_address("172.16.0.11")
SPOKE = ip_address("192.0.2.12")


def ipsec_cfg(path: str):
    return C.loads('[tunnel]\naddress = "172.16.0.11/24"\nsource-interface = "eth0"\n'
                   f'[ipsec]\npsk = "s"\nvici-socket = "unix://{path}"\n').ipsec


async def until(what, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not what():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(M, "INITIATE_MIN", 0.2)
    monkeypatch.setattr(M, "RECONNECT_MIN", 0.1)
    monkeypatch.setattr(M, "TICK", 0.05)


async def setup(tmp_path):
    server = FakeCharon(str(tmp_path / "c.vici"))
    await server.start()
    changes: list = []
    m = IpsecManager(ipsec_cfg(server.path), TUN, ME, on_change=changes.append,
                     rng=random.Random(7))
    return server, m, changes


async def setup_trap(tmp_path, seed: int):
    """A manager where the kernel has ESP (a CHILD_SA is wanted too)."""
    server = FakeCharon(str(tmp_path / "c.vici"))
    await server.start()
    return server, IpsecManager(ipsec_cfg(server.path), TUN, ME, trap=True,
                                rng=random.Random(seed))


async def child_up_then_no_more_initiations(server, m, peer, identity, uid, pause=1.0):
    """The peer's CHILD_SA comes up (child-updown): the manager initiates nothing more."""
    child = ike_sa(uid, str(peer), identity, children={f"dmvpn-{peer}": (uid + 1,
                                                                         "INSTALLED")})
    await server.event("child-updown", {"up": "yes", **child})
    await until(lambda: m.view(peer).child_up)
    n = len(server.commands("initiate"))
    await asyncio.sleep(pause)
    assert len(server.commands("initiate")) == n


def test_want_loads_initiates_and_events_drive_the_view(tmp_path):
    async def go():
        server, m, changes = await setup(tmp_path)
        m.want(HUB)
        m.start()
        await until(lambda: server.commands("initiate"))
        assert server.registered == list(EVENTS)
        assert server.commands("load-shared")[0]["data"] == "s"
        assert [next(iter(c)) for c in server.commands("load-conn")] == ["dmvpn",
                                                                         "dmvpn-192.0.2.1"]
        assert server.commands("initiate") == [{"child": "dmvpn-192.0.2.1",
                                                "ike": "dmvpn-192.0.2.1", "timeout": "-1"}]
        assert m.connected and not m.view(HUB).ike_up
        await server.event("ike-updown", {"up": "yes", **ike_sa(1, "192.0.2.1", "172.16.0.1")})
        await until(lambda: m.view(HUB).ike_up)
        assert changes[-1] == {HUB} and m.view(HUB).identity == "172.16.0.1"
        await asyncio.sleep(0.5)                        # up: no further initiation
        assert len(server.commands("initiate")) == 1
        m.unwant(HUB)
        await until(lambda: server.commands("unload-conn"))
        assert server.commands("terminate") == [{"ike-id": "1", "timeout": "-1"}]
        assert server.commands("unload-conn") == [{"name": "dmvpn-192.0.2.1"}]
        await m.stop(terminate=False)
        await server.close()
    run(go())


def test_retries_with_backoff_but_never_while_connecting(tmp_path):
    async def go():
        server, m, _ = await setup(tmp_path)
        m.want(SPOKE)
        m.start()
        await until(lambda: len(server.commands("initiate")) >= 3, 10)
        # doubling: 0.2, 0.4 ... between tries (jittered)
        connecting = ike_sa(5, "192.0.2.12", "", state="CONNECTING")
        server.streams["list-sas"] = lambda msg: [("list-sa", connecting)] if msg.get(
            "ike") else []
        n = len(server.commands("initiate"))
        await asyncio.sleep(1.5)
        assert len(server.commands("initiate")) == n          # one is being set up
        assert m.stats["initiate"] == n
        await m.stop(terminate=False)
        await server.close()
    run(go())


def test_refused_commands_are_counted_not_fatal(tmp_path):
    async def go():
        server, m, _ = await setup(tmp_path)
        server.handlers["initiate"] = lambda msg: {"success": "no", "errmsg": "no config"}
        m.want(SPOKE)
        m.start()
        await until(lambda: m.stats["command_errors"] >= 2, 10)
        assert m.stats["vici_connects"] == 1 and m.connected
        await m.stop(terminate=False)
        await server.close()
    run(go())


def test_lost_connection_fails_closed_then_reconciles(tmp_path):
    async def go():
        server, m, changes = await setup(tmp_path)
        server.streams["list-sas"] = lambda msg: [("list-sa", ike_sa(3, "192.0.2.1", "h"))]
        m.want(HUB)
        m.start()
        await until(lambda: m.view(HUB).ike_up)
        assert server.commands("initiate") == []             # list-sas said it is up
        server.streams["list-sas"] = lambda msg: []           # charon restarted: no SAs
        server.drop_clients()
        await until(lambda: not m.view(HUB).ike_up)           # failing closed at once
        assert HUB in changes[-1] or any(HUB in c for c in changes)
        await until(lambda: m.stats["vici_connects"] == 2 and server.commands("initiate"))
        assert m.stats["reconcile"] == 2 and m.stats["vici_lost"] == 1
        assert [next(iter(c)) for c in server.commands("load-conn")] == [
            "dmvpn", "dmvpn-192.0.2.1", "dmvpn", "dmvpn-192.0.2.1"]
        await m.stop(terminate=False)
        await server.close()
    run(go())


def test_charon_absent_is_counted_and_retried(tmp_path):
    async def go():
        m = IpsecManager(ipsec_cfg(str(tmp_path / "none.vici")), TUN, ME,
                         rng=random.Random(1))
        m.start()
        await until(lambda: m.stats["vici_errors"] >= 3, 10)
        assert not m.connected and "cannot connect to vici" in m.last_error
        await m.stop(terminate=True)
    run(go())


def test_stop_terminates_and_unloads(tmp_path):
    async def go():
        server, m, _ = await setup(tmp_path)
        server.streams["list-sas"] = lambda msg: [] if msg.get("ike") else [
            ("list-sa", ike_sa(3, "192.0.2.1", "h")),
            ("list-sa", ike_sa(4, "192.0.2.12", "s", conn="dmvpn"))]
        m.want(HUB)
        m.start()
        await until(lambda: m.view(SPOKE).ike_up)
        await m.stop(terminate=True)
        assert sorted(t["ike-id"] for t in server.commands("terminate")) == ["3", "4"]
        assert {c["name"] for c in server.commands("unload-conn")} == {"dmvpn",
                                                                      "dmvpn-192.0.2.1"}
        await server.close()
    run(go())


def test_the_sas_going_down_at_stop_neither_call_back_nor_initiate_again(tmp_path):
    """Found in the VM tier (ESP): a daemon's clean shutdown terminates its SAs after its
    data plane and routes are gone; the ike-updown events that follow reached the daemon
    (a traceback in its log) and the still-wanted NHS was initiated again."""
    async def go():
        server, m, changes = await setup(tmp_path)
        server.streams["terminate"] = lambda msg: [
            ("ike-updown", ike_sa(int(msg["ike-id"]), "192.0.2.1", "172.16.0.1"))]
        server.delays["unload-conn"] = 1.0      # a slow charon, as under emulation
        m.want(HUB)
        m.start()
        await until(lambda: server.commands("initiate"))
        await server.event("ike-updown", {"up": "yes", **ike_sa(1, "192.0.2.1", "172.16.0.1")})
        await until(lambda: m.view(HUB).ike_up)
        seen, initiated = len(changes), len(server.commands("initiate"))
        await m.stop(terminate=True)
        await asyncio.sleep(4 * M.INITIATE_MIN)
        assert server.commands("terminate") == [{"ike-id": "1", "timeout": "-1"}]
        assert len(changes) == seen, changes[seen:]
        assert len(server.commands("initiate")) == initiated
        await server.close()
    run(go())


def test_where_esp_works_a_missing_child_sa_is_initiated_too(tmp_path):
    async def go():
        server, m = await setup_trap(tmp_path, 3)
        m.want(HUB)
        m.start()
        await until(lambda: server.commands("initiate"))
        assert server.commands("load-conn")[1]["dmvpn-192.0.2.1"]["children"][
            "dmvpn-192.0.2.1"]["start_action"] == "trap"
        await server.event("ike-updown", {"up": "yes", **ike_sa(1, "192.0.2.1", "h")})
        await until(lambda: len(server.commands("initiate")) >= 2, 5)   # IKE only: again
        await child_up_then_no_more_initiations(server, m, HUB, "h", 1)
        await m.stop(terminate=False)
        await server.close()
    run(go())


def test_an_event_during_list_sas_is_not_undone_by_its_snapshot(tmp_path):
    async def go():
        server, m, _ = await setup(tmp_path)
        # charon listed the SA while it was still connecting, and it came up meanwhile
        server.streams["list-sas"] = lambda msg: [] if msg.get("ike") else [
            ("ike-updown", {"up": "yes", **ike_sa(1, "192.0.2.1", "h")}),
            ("list-sa", ike_sa(1, "192.0.2.1", "", state="CONNECTING"))]
        m.want(HUB)
        m.start()
        await until(lambda: m.connected)
        assert m.view(HUB).ike_up and m.view(HUB).identity == "h"
        assert server.commands("initiate") == []
        await m.stop(terminate=False)
        await server.close()
    run(go())


def test_a_second_identity_behind_the_same_address_is_refused_the_first_kept(tmp_path, caplog):
    """Two spokes behind one NAT device: both IKE_SAs come from its address (two NAT-T
    ports). Their CHILD_SAs would share selectors, so the newer one is terminated, each
    time, with one line (the first time) and a counter; a second IKE_SA of the same
    identity (both ends of a shortcut initiated) is kept."""
    async def go():
        server, m, _ = await setup(tmp_path)
        m.start()
        await until(lambda: m.connected)
        nat = "192.0.2.101"
        first = ike_sa(4, nat, "172.16.0.11", conn="dmvpn")
        first["dmvpn"]["remote-port"] = "4500"
        await server.event("ike-updown", {"up": "yes", **first})
        await until(lambda: m.view(ip_address(nat)).ike_up)
        again = ike_sa(5, nat, "172.16.0.11", conn="dmvpn")
        await server.event("ike-updown", {"up": "yes", **again})
        second = ike_sa(7, nat, "172.16.0.12", conn="dmvpn")
        second["dmvpn"]["remote-port"] = "1024"
        await server.event("ike-updown", {"up": "yes", **second})
        await until(lambda: server.commands("terminate"))
        await server.event("child-updown", {"up": "yes", **ike_sa(
            7, nat, "172.16.0.12", conn="dmvpn", children={"dmvpn": (8, "INSTALLED")})})
        await asyncio.sleep(0.3)
        assert server.commands("terminate") == [{"ike-id": "7", "force": "yes",
                                                 "timeout": "-1"}]
        assert m.stats["refused_second_identity"] == 1
        await server.event("ike-updown", {"up": "yes", **ike_sa(7, nat, "172.16.0.12",
                                                                conn="dmvpn")} | {"up": "no"})
        await server.event("ike-updown", {"up": "yes", **ike_sa(9, nat, "172.16.0.12",
                                                                conn="dmvpn")})
        await until(lambda: m.stats["refused_second_identity"] == 2)   # again: counted
        assert server.commands("terminate")[-1]["ike-id"] == "9"
        view = m.view(ip_address(nat))
        assert (view.identity, view.ike_sas, view.child_sas) == ("172.16.0.11", 2, 0)
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert lines == ["ipsec: refused 192.0.2.101 (identity 172.16.0.12, port 1024): "
                         "192.0.2.101 is taken by identity 172.16.0.11; two peers behind "
                         "one NAT device are not supported (their CHILD_SAs would share "
                         "selectors)"], lines
        await m.stop(terminate=False)
        await server.close()
    run(go())


@pytest.mark.parametrize("peer_id,leads", [("172.16.0.12", True), ("172.16.0.9", False),
                                            ("CN=spoke2", True)])
def test_a_pair_sets_up_its_ike_sa_alone_and_the_lower_identity_its_child_sa(
        tmp_path, monkeypatch, peer_id, leads):
    """Both ends of a shortcut initiate (behind two NATs they must): each initiates the
    IKE_SA alone (childless); once one is up, the end with the lower identity creates the
    one CHILD_SA inside it, the other only after CHILD_GRACE if none came. Two CHILD_SAs
    with the same selectors would be installed by their responders before the initiators
    have them, each taking the outbound path over: what is sent meanwhile is lost."""
    monkeypatch.setattr(M, "CHILD_GRACE", 1.5)

    async def go():
        server, m = await setup_trap(tmp_path, 5)
        m.want(SPOKE, pair=True)
        m.start()
        await until(lambda: server.commands("initiate"))
        assert server.commands("initiate") == [{"ike": "dmvpn-192.0.2.12", "timeout": "-1"}]
        assert m.stats["initiate_childless"] == 1
        await server.event("ike-updown", {"up": "yes", **ike_sa(3, "192.0.2.12", peer_id)})
        await until(lambda: m.view(SPOKE).ike_up)
        await asyncio.sleep(0.6)
        with_child = [c for c in server.commands("initiate") if "child" in c]
        if leads:                    # at once (again after the backoff while none comes)
            assert with_child[:1] == [{"child": "dmvpn-192.0.2.12", "ike": "dmvpn-192.0.2.12",
                                   "timeout": "-1"}]
        else:                        # waiting for the peer's
            assert with_child == []
            await until(lambda: [c for c in server.commands("initiate") if "child" in c], 5)
            await child_up_then_no_more_initiations(server, m, SPOKE, peer_id, 3, 0.5)
        await m.stop(terminate=False)
        await server.close()
    run(go())


def test_a_peer_that_comes_up_with_its_child_sa_is_not_asked_for_another(tmp_path):
    async def go():
        server, m = await setup_trap(tmp_path, 5)
        m.want(SPOKE, pair=True)
        m.start()
        await until(lambda: server.commands("initiate"))
        sa = ike_sa(3, "192.0.2.12", "172.16.0.9", children={"dmvpn-192.0.2.12":
                                                             (4, "INSTALLED")})
        await server.event("ike-updown", {"up": "yes", **sa})
        await until(lambda: m.view(SPOKE).child_up)
        await asyncio.sleep(0.5)
        assert len(server.commands("initiate")) == 1
        await m.stop(terminate=False)
        await server.close()
    run(go())
