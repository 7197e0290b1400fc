"""What the daemon asks of IPsec, with the real SA table fed charon's events and the
daemon's real LiveEffects on recording maps and routes: the NHRP gate, identity binding,
the peers set up and torn down with the cache, make-before-break. No root needed."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from fakevici import ike_sa
from xdmvpn import config as C
from xdmvpn.daemon.effects import LiveEffects
from xdmvpn.engine.cache import CacheEntry, EntryType
from xdmvpn.engine.node import Node
from xdmvpn.engine.params import from_config
from xdmvpn.ipsec.peers import IpsecPeers

ME = ip_address("192.0.2.11")
HUB, SPOKE2 = ip_address("192.0.2.1"), ip_address("192.0.2.12")
T1, T2, T12 = ip_address("172.16.0.1"), ip_address("172.16.0.12"), ip_address("172.16.0.11")
LAN2 = ip_network("10.0.2.0/24")


class Maps:
    def __init__(self, ipsec_call: bool = True):
        self.log: list = []
        if ipsec_call:
            self.set_ipsec_required = lambda nbma, on, sa_up=False: self.log.append(
                ("ipsec", nbma, on) + (("sa_up",) if sa_up else ()))

    def add_mapping(self, proto, nbma): self.log.append(("map", proto, nbma))
    def remove_mapping(self, proto): self.log.append(("unmap", proto))
    def add_prefix(self, prefix, nbma): self.log.append(("prefix", prefix, nbma))
    def remove_prefix(self, prefix): self.log.append(("unprefix", prefix))
    def set_multicast(self, nbmas): pass
    def set_nhs(self, nbmas): pass
    def mappings(self): return []
    def prefixes(self): return []


class Routes:
    def __init__(self):
        self.routes: dict = {}

    def add(self, prefix, via): self.routes[prefix] = via
    def delete(self, prefix): self.routes.pop(prefix, None)


def node_config(extra: str = "", required: bool = True):
    return C.loads('[tunnel]\naddress = "172.16.0.11/24"\nsource-interface = "eth0"\n'
                   'source-address = "192.0.2.11"\n'
                   '[[nhrp.nhs]]\ntunnel-ip = "172.16.0.1"\nnbma = "192.0.2.1"\n'
                   f'[ipsec]\npsk = "s"\nrequired = {str(required).lower()}\n{extra}')


def world(extra: str = "", required: bool = True, maps=None, esp: bool = True):
    cfg = node_config(extra, required)
    maps = maps or Maps()
    fx = LiveEffects(gre=None, maps=maps, routes=Routes())
    ipsec = IpsecPeers(cfg.ipsec, cfg.tunnel.address.ip, ME, None, esp=esp)
    ipsec.set_maps(maps)
    seen: list = []
    ipsec.on_change = lambda peers: (seen.append(peers), fx.recheck_shortcuts(peers))
    fx.ipsec = ipsec
    ipsec.set_nhs([HUB])
    node = Node(from_config(cfg, ME), fx)
    return ipsec, fx, maps, node, seen


def event(ipsec, name, msg):
    ipsec._changed(ipsec.manager.table.event(name, msg))


def up(ipsec, uid, peer, identity, child=None):
    children = {f"dmvpn-{peer}": (child, "INSTALLED")} if child else None
    event(ipsec, "ike-updown", {"up": "yes", **ike_sa(uid, str(peer), identity,
                                                       children=children)})
    if child:
        event(ipsec, "child-updown", {"up": "yes", **ike_sa(uid, str(peer), identity,
                                                             children=children)})


def test_nhs_and_cache_peers_are_wanted_and_marked_in_the_data_plane():
    ipsec, fx, maps, node, _ = world()
    assert ipsec.manager.wanted() == [HUB]
    assert ("ipsec", HUB, True) in maps.log
    fx.mapping_set(T2, SPOKE2)
    fx.mapping_set(ip_address("172.16.0.13"), SPOKE2)     # a second entry, same NBMA
    assert ipsec.manager.wanted() == [HUB, SPOKE2] and ipsec.refs[SPOKE2] == 2
    fx.mapping_del(T2)
    assert ipsec.manager.wanted() == [HUB, SPOKE2]
    fx.mapping_del(ip_address("172.16.0.13"))             # the last entry died
    assert ipsec.manager.wanted() == [HUB]
    assert maps.log[-2:] == [("unmap", ip_address("172.16.0.13")), ("ipsec", SPOKE2, False)]


def test_without_the_data_plane_call_nothing_breaks():
    ipsec, fx, maps, node, _ = world(maps=Maps(ipsec_call=False))
    fx.mapping_set(T2, SPOKE2)
    assert ipsec.manager.wanted() == [HUB, SPOKE2]
    assert not any(e[0] == "ipsec" for e in maps.log)


def test_without_esp_in_the_kernel_the_data_plane_is_not_told_to_require_it():
    ipsec, fx, maps, node, _ = world(esp=False)
    fx.mapping_set(T2, SPOKE2)
    assert [e for e in maps.log if e[0] == "ipsec"] == [("ipsec", HUB, False),
                                                       ("ipsec", SPOKE2, False)]
    assert not ipsec.accepts(SPOKE2)                     # the NHRP gate still holds
    assert ipsec.manager.trap is False


def test_the_data_planes_xfrm_interface_id_goes_into_the_child_sas():
    maps = Maps()
    maps.ipsec_if_id = 42
    ipsec, fx, maps, node, _ = world(maps=maps)
    assert ipsec.manager.if_id == 42 and ipsec.manager.trap is True


def test_nhrp_gate_and_identity_binding():
    ipsec, fx, maps, node, _ = world()
    assert not ipsec.accepts(SPOKE2) and ipsec.stats["nhrp_dropped_no_sa"] == 1
    assert not ipsec.may_register(SPOKE2, T2)
    up(ipsec, 1, SPOKE2, "172.16.0.12")
    assert ipsec.accepts(SPOKE2) and ipsec.identity(SPOKE2) == "172.16.0.12"
    assert ipsec.may_register(SPOKE2, T2) and fx.may_register(SPOKE2, T2)
    assert not ipsec.may_register(SPOKE2, T12)             # not its address
    assert ipsec.stats["identity_refused"] == 2
    assert fx.peer_identity(SPOKE2) == "172.16.0.12" and fx.peer_identity(HUB) == ""
    assert ipsec.just_up == {SPOKE2}
    up(ipsec, 2, SPOKE2, "172.16.0.12")                    # a second SA: not "just up"
    assert ipsec.just_up == set()


def test_not_required_accepts_without_sa_but_binds_identities():
    ipsec, fx, maps, node, _ = world(required=False)
    assert ipsec.accepts(SPOKE2) and ipsec.may_register(SPOKE2, T2)
    assert ipsec.direct_ready(SPOKE2, T2)
    up(ipsec, 1, SPOKE2, "172.16.0.99")
    assert not ipsec.may_register(SPOKE2, T2)
    assert ("ipsec", HUB, False) in maps.log               # never "required" in the data plane


def test_sa_counts_for_the_exporter():
    ipsec, fx, maps, node, _ = world()
    fx.mapping_set(T2, SPOKE2)
    assert ipsec.sa_counts() == {"up": 0, "connecting": 0, "down": 2}      # no charon yet
    ipsec.manager.connected = True
    up(ipsec, 1, SPOKE2, "172.16.0.12")
    up(ipsec, 2, SPOKE2, "172.16.0.12")
    assert ipsec.sa_counts() == {"up": 2, "connecting": 1, "down": 0}


def test_make_before_break():
    ipsec, fx, maps, node, seen = world()
    fx.shortcut_set(LAN2, T2, SPOKE2)
    assert fx.deferred == {LAN2: (T2, SPOKE2)} and fx.routes.routes == {}
    assert not any(e[0] == "prefix" for e in maps.log)   # still the hub path
    up(ipsec, 1, SPOKE2, "172.16.0.12")                   # IKE alone is not enough
    assert fx.deferred and fx.routes.routes == {}
    up(ipsec, 1, SPOKE2, "172.16.0.12", child=9)          # CHILD_SA installed: direct
    assert fx.installed == {LAN2: (T2, SPOKE2)} and fx.routes.routes == {LAN2: T2}
    assert ("prefix", LAN2, SPOKE2) in maps.log and fx.stats["shortcut_activated"] == 1
    # the CHILD_SA goes: back to the hub path, waiting again
    event(ipsec, "child-updown", ike_sa(1, str(SPOKE2), "172.16.0.12",
                                        children={f"dmvpn-{SPOKE2}": (9, "INSTALLED")}))
    assert fx.routes.routes == {} and maps.log[-1] == ("unprefix", LAN2)
    assert fx.deferred == {LAN2: (T2, SPOKE2)} and fx.stats["shortcut_fallback"] == 1
    fx.shortcut_del(LAN2)                                 # the engine drops it
    assert fx.deferred == {} and fx.installed == {}


def test_a_shortcut_to_a_peer_whose_identity_is_not_the_next_hop_stays_on_the_hub():
    ipsec, fx, maps, node, _ = world()
    up(ipsec, 1, SPOKE2, "172.16.0.77", child=3)
    fx.shortcut_set(LAN2, T2, SPOKE2)
    assert fx.deferred and not fx.installed
    ipsec2, fx2, *_ = world('bind = "none"')
    up(ipsec2, 1, SPOKE2, "172.16.0.77", child=3)
    fx2.shortcut_set(LAN2, T2, SPOKE2)
    assert fx2.installed and not fx2.deferred


def test_identities_fill_the_cache_and_follow_the_sa():
    ipsec, fx, maps, node, _ = world()
    up(ipsec, 1, HUB, "172.16.0.1")
    node.set_identity(HUB, ipsec.identity(HUB))
    fx.mapping_set(T2, SPOKE2)
    up(ipsec, 2, SPOKE2, "172.16.0.12")
    node.cache_put(CacheEntry(T2, EntryType.CACHED, nbma=SPOKE2))
    assert node.cache.get(T2).identity == "172.16.0.12"
    event(ipsec, "ike-updown", ike_sa(2, str(SPOKE2), "172.16.0.12"))
    assert node.set_identity(SPOKE2, ipsec.identity(SPOKE2)) == 1
    assert node.cache.get(T2).identity == ""


def test_reload_keys():
    a = node_config().ipsec
    b = node_config('bind = "none"\n[[ipsec.identities]]\nid = "x"\ntunnel-ip = ["172.16.0.5"]\n'
                    ).ipsec
    assert IpsecPeers.restart_keys(a, b) == []
    assert IpsecPeers.restart_keys(a, node_config('local-id = "me"').ipsec) == ["ipsec.local-id"]
    assert IpsecPeers.restart_keys(None, a) == ["ipsec"]
    assert IpsecPeers.restart_keys(None, None) == []
