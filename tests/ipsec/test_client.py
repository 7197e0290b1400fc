"""The asyncio vici client against a scripted server (fakevici): requests, failures,
events, streamed list-sas, a lost connection, a timeout. No root needed."""

from __future__ import annotations

import asyncio

import pytest

from fakevici import FakeCharon, ike_sa
from xdmvpn.ipsec.client import ViciClient, ViciClosed, ViciError, socket_path


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def served(tmp_path):
    server = FakeCharon(str(tmp_path / "charon.vici"))
    await server.start()
    return server


def test_socket_path():
    assert socket_path("unix:///var/run/charon.vici") == "/var/run/charon.vici"
    assert socket_path("/run/x.vici") == "/run/x.vici"


def test_requests_and_their_failures(tmp_path):
    async def go():
        server = await served(tmp_path)
        client = ViciClient()
        await client.connect(f"unix://{server.path}")
        assert await client.request("load-conn", {"c": {"version": 2}}) == {"success": b"yes"}
        assert server.commands("load-conn") == [{"c": {"version": "2"}}]
        server.handlers["initiate"] = lambda m: {"success": "no", "errmsg": "no config"}
        with pytest.raises(ViciError, match="vici initiate: no config"):
            await client.request("initiate", {"child": "x"})
        with pytest.raises(ViciError, match="does not know the command 'nonsense'"):
            await client.request("nonsense")
        await client.register("ike-updown")
        with pytest.raises(ViciError, match="does not know the event 'bogus'"):
            await client.register("bogus")
        assert client.connected                   # refusals do not close the connection
        await client.close()
        with pytest.raises(ViciClosed):
            await client.request("version")
        await server.close()
    run(go())


def test_events_and_streamed_list_sas(tmp_path):
    async def go():
        server = await served(tmp_path)
        events = []
        client = ViciClient(on_event=lambda name, msg: events.append((name, msg)))
        await client.connect(server.path)
        await client.register("ike-updown")
        sas = [ike_sa(1, "192.0.2.11", "172.16.0.11"), ike_sa(2, "192.0.2.12", "x")]
        # a list-sas streams list-sa events; an unrelated event in between is an event
        server.streams["list-sas"] = lambda m: [("list-sa", sas[0]),
                                                ("ike-updown", {"up": "yes"}),
                                                ("list-sa", sas[1])]
        response, listed = await client.request("list-sas", {"noblock": "yes"},
                                                stream="list-sa")
        assert response == {}
        assert [next(iter(m)) for m in listed] == ["dmvpn-192.0.2.11", "dmvpn-192.0.2.12"]
        assert events == [("ike-updown", {"up": b"yes"})]
        await server.event("child-updown", {"x": {"uniqueid": "3"}})
        await asyncio.sleep(0.05)
        assert events[-1] == ("child-updown", {"x": {"uniqueid": b"3"}})
        await client.close()
        await server.close()
    run(go())


def test_lost_connection_fails_the_pending_request_and_says_so_once(tmp_path):
    async def go():
        server = await served(tmp_path)
        closed = []
        client = ViciClient(on_close=closed.append)
        await client.connect(server.path)
        server.silent.add("list-sas")
        pending = asyncio.ensure_future(client.request("list-sas", timeout=10))
        await asyncio.sleep(0.1)
        server.drop_clients()
        with pytest.raises(ViciClosed, match="closed by charon"):
            await pending
        await asyncio.sleep(0.05)
        assert closed == ["closed by charon"] and not client.connected
        await client.close()
        assert closed == ["closed by charon"]
        await server.close()
    run(go())


def test_a_request_without_answer_times_out_and_closes(tmp_path):
    async def go():
        server = await served(tmp_path)
        closed = []
        client = ViciClient(on_close=closed.append)
        await client.connect(server.path)
        server.silent.add("initiate")
        with pytest.raises(ViciClosed, match="no answer within 0.2 s"):
            await client.request("initiate", {"child": "x"}, timeout=0.2)
        assert not client.connected and closed and "timed out" in closed[0]
        await server.close()
    run(go())


def test_connect_failure_is_one_line(tmp_path):
    async def go():
        with pytest.raises(ViciClosed) as info:
            await ViciClient().connect(f"unix://{tmp_path}/none.vici")
        assert str(info.value) == (f"cannot connect to vici at {tmp_path}/none.vici: "
                                   "No such file or directory")
    run(go())
