"""Engine parameters from the shipped example configs."""

from ipaddress import ip_address as A

from util import REPO
from xdmvpn.config import load
from xdmvpn.engine.params import from_config


def test_hub_example():
    p = from_config(load(REPO / "docs/examples/hub.toml"), A("192.0.2.1"))
    assert p.nhs == () and p.redirect and p.multicast_dynamic and p.serve
    assert p.auth == b"secret" and p.holdtime == 300 and p.nbma == A("192.0.2.1")


def test_spoke_example():
    cfg = load(REPO / "docs/examples/spoke1.toml")
    p = from_config(cfg, A("192.0.2.11"))
    assert [n.nbma for n in p.nhs] == [s.nbma for s in cfg.nhrp.nhs]
    assert p.shortcut and p.multicast_nhs and not p.multicast_dynamic and not p.serve
    assert p.tunnel_ip == cfg.tunnel.address.ip and p.prefix_len == cfg.tunnel.address.network.prefixlen
