"""The per-peer SA table: list-sas, then ike-updown, ike-rekey, child-updown and
child-rekey as charon sends them."""

from __future__ import annotations

from ipaddress import IPv4Address

from fakevici import ike_sa
from xdmvpn.ipsec.sas import PeerView, SaTable

A, B = IPv4Address("192.0.2.11"), IPv4Address("192.0.2.12")


def encoded(msg):
    """As the client hands it over: values bytes."""
    if isinstance(msg, dict):
        return {k: encoded(v) for k, v in msg.items()}
    return msg.encode() if isinstance(msg, str) else msg


def test_list_sas_builds_the_table_and_ignores_other_connections():
    t = SaTable("dmvpn")
    changed = t.replace([encoded(ike_sa(1, "192.0.2.11", "172.16.0.11",
                                        children={"dmvpn-192.0.2.11": (7, "INSTALLED")})),
                         encoded(ike_sa(2, "192.0.2.12", "172.16.0.12", conn="dmvpn",
                                        state="CONNECTING")),
                         encoded(ike_sa(3, "192.0.2.13", "x", conn="office-vpn"))])
    assert changed == {A}                        # B is only connecting: no view yet
    assert t.view(A) == PeerView(True, "172.16.0.11", 1, 1) and t.view(A).child_up
    assert t.view(B) == PeerView() and t.uids(B) == ["2"]
    assert t.view(IPv4Address("192.0.2.13")) == PeerView()
    assert t.clear() == {A} and t.peers() == []


def test_ike_and_child_updown():
    t = SaTable("dmvpn")
    assert t.event("ike-updown", {"up": "yes", **ike_sa(1, "192.0.2.11", "id-a")}) == {A}
    assert t.view(A) == PeerView(True, "id-a", 1, 0)
    child = ike_sa(1, "192.0.2.11", "id-a", children={"dmvpn-192.0.2.11": (5, "INSTALLED")})
    assert t.event("child-updown", {"up": "yes", **child}) == {A}
    assert t.view(A).child_sas == 1
    # a second IKE_SA to the same peer (both initiated): still one peer, two SAs
    assert t.event("ike-updown", {"up": "yes", **ike_sa(2, "192.0.2.11", "id-a",
                                                          conn="dmvpn")}) == {A}
    assert t.view(A) == PeerView(True, "id-a", 2, 1)
    assert t.event("child-updown", child) == {A}          # no "up": down
    assert t.view(A).child_sas == 0
    assert t.event("ike-updown", ike_sa(1, "192.0.2.11", "id-a")) == {A}
    assert t.event("ike-updown", ike_sa(2, "192.0.2.11", "id-a", conn="dmvpn")) == {A}
    assert t.view(A) == PeerView() and t.peers() == []
    assert t.event("ike-updown", ike_sa(9, "192.0.2.99", "gone")) == set()
    assert t.event("log", {"msg": "x"}) == set()


def test_rekeys_keep_the_peer_up():
    t = SaTable("dmvpn")
    t.event("ike-updown", {"up": "yes", **ike_sa(1, "192.0.2.12", "id-b",
                                                  children={"c": (5, "INSTALLED")})})
    old = ike_sa(1, "192.0.2.12", "id-b")["dmvpn-192.0.2.12"]
    new = ike_sa(4, "192.0.2.12", "id-b", state="ESTABLISHED")["dmvpn-192.0.2.12"]
    assert t.event("ike-rekey", {"dmvpn-192.0.2.12": {"old": old, "new": new}}) == set()
    assert t.uids(B) == ["4"] and t.view(B) == PeerView(True, "id-b", 1, 1)
    rekey = ike_sa(4, "192.0.2.12", "id-b")
    rekey["dmvpn-192.0.2.12"]["child-sas"] = {"c": {"old": {"uniqueid": "5"},
                                                    "new": {"uniqueid": "6",
                                                            "state": "INSTALLED"}}}
    assert t.event("child-rekey", rekey) == set()
    assert t.ike["4"].children == {"6": "INSTALLED"}


def test_a_child_up_before_its_ike_event_still_counts():
    t = SaTable("dmvpn")
    child = ike_sa(3, "192.0.2.11", "id-a", children={"c": (8, "INSTALLED")})
    assert t.event("child-updown", {"up": "yes", **child}) == {A}
    assert t.view(A).child_up and t.view(A).identity == "id-a"
