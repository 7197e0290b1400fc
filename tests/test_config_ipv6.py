"""IPv6 in the configuration: a tunnel address per family (dual stack), an NBMA address per
underlay family (a hub on both), NHSs and maps of either family, [nhrp.ipv6] (Cisco's and
FRR's `ipv6 nhrp ...`), each problem one line; the engine's parameters per family."""

from ipaddress import ip_address as A, ip_interface

import pytest

from xdmvpn.config import ConfigError, loads, render_toml
from xdmvpn.engine.params import stack_from_config

DUAL_SPOKE = """\
[tunnel]
address = ["10.0.0.11/24", "2001:db8:100::b/64"]
source-interface = "eth0"

[nhrp]
holdtime = 300
authentication = "secret"
shortcut = true

[nhrp.ipv6]
network-id = 6
holdtime = 600
authentication = "secret6"

[[nhrp.nhs]]
tunnel-ip = "10.0.0.1"
nbma = "192.0.2.1"

[[nhrp.nhs]]
tunnel-ip = "2001:db8:100::1"
nbma = "192.0.2.1"

[[nhrp.map]]
tunnel-ip = "2001:db8:100::9"
nbma = "192.0.2.9"
"""

DUAL_HUB = """\
[tunnel]
address = ["2001:db8:100::1/64", "10.0.0.1/24"]
source-interface = "eth0"
source-address = ["192.0.2.1", "2001:db8:ff::1"]

[nhrp]
redirect = true
multicast = ["dynamic", "192.0.2.50", "2001:db8:ff::50"]

[[nhrp.map]]
tunnel-ip = "10.0.0.9"
nbma = "2001:db8:ff::9"
"""


def error(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        loads(text, "n.toml")
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_dual_stack_spoke():
    cfg = loads(DUAL_SPOKE)
    t = cfg.tunnel
    assert t.addresses == (ip_interface("10.0.0.11/24"), ip_interface("2001:db8:100::b/64"))
    assert t.address_of(6) == ip_interface("2001:db8:100::b/64")
    assert cfg.nhrp.ipv6.network_id == 6
    v4, v6 = stack_from_config(cfg, (A("192.0.2.11"),))
    assert (v4.tunnel_ip, v4.prefix_len, v4.holdtime, v4.auth) == (
        A("10.0.0.11"), 24, 300, b"secret")
    assert (v6.tunnel_ip, v6.prefix_len, v6.holdtime, v6.auth) == (
        A("2001:db8:100::b"), 64, 600, b"secret6")
    assert [n.proto for n in v4.nhs] == [A("10.0.0.1")]
    assert [n.proto for n in v6.nhs] == [A("2001:db8:100::1")]
    assert v6.maps == ((A("2001:db8:100::9"), A("192.0.2.9")),) and v4.maps == ()
    assert v4.shortcut and v6.shortcut                  # [nhrp] where [nhrp.ipv6] is silent
    assert loads(render_toml(cfg)) == cfg


def test_dynamic_nhs_registers_every_family():
    cfg = loads(DUAL_SPOKE.split("[[nhrp.nhs]]")[0] + '[[nhrp.nhs]]\ntunnel-ip = "dynamic"\n'
                'nbma = "192.0.2.1"\n')
    v4, v6 = stack_from_config(cfg, (A("192.0.2.11"),))
    assert [n.nbma for n in v4.nhs] == [n.nbma for n in v6.nhs] == [A("192.0.2.1")]


def test_hub_on_both_underlays():
    cfg = loads(DUAL_HUB)
    assert cfg.tunnel.source_addresses == (A("192.0.2.1"), A("2001:db8:ff::1"))
    v6, v4 = stack_from_config(cfg, cfg.tunnel.source_addresses)
    assert v6.tunnel_ip.version == 6 and v4.tunnel_ip.version == 4
    assert v4.nbma_for(6) == A("2001:db8:ff::1") and v4.nbma_for(4) == A("192.0.2.1")
    assert v4.maps == ((A("10.0.0.9"), A("2001:db8:ff::9")),)
    assert cfg.to_dict()["tunnel"]["source-address"] == ["192.0.2.1", "2001:db8:ff::1"]
    assert loads(render_toml(cfg)) == cfg


def test_ipv6_over_ipv6_single_family():
    cfg = loads('[tunnel]\naddress = "2001:db8:100::b/64"\nsource-interface = "eth0"\n'
                'source-address = "2001:db8:ff::b"\n[[nhrp.nhs]]\ntunnel-ip = "2001:db8:100::1"\n'
                'nbma = "2001:db8:ff::1"\n')
    (p,) = stack_from_config(cfg, (A("2001:db8:ff::b"),))
    assert p.nhs[0].nbma == A("2001:db8:ff::1") and p.tunnel_ip == A("2001:db8:100::b")


BASE = '[tunnel]\naddress = ["10.0.0.1/24", "2001:db8::1/64"]\nsource-interface = "eth0"\n'


@pytest.mark.parametrize("text,expected", [
    ('[tunnel]\naddress = ["10.0.0.1/24", "10.0.1.1/24"]\nsource-interface = "eth0"\n',
     "n.toml:2: tunnel.address[1]: must be one IPv4 and one IPv6 address, got two IPv4 ones"),
    ('[tunnel]\naddress = ["10.0.0.1/24", "2001:db8::1/64", "10.0.1.1/24"]\n'
     'source-interface = "eth0"\n',
     'n.toml:2: tunnel.address: must be an address with prefix length, e.g. "10.0.0.1/24", '
     "or an array of two of them (one IPv4, one IPv6), got an array of 3"),
    ('[tunnel]\naddress = ["10.0.0.1/24", "2001:db8::1"]\nsource-interface = "eth0"\n',
     'n.toml:2: tunnel.address[1]: must be an address with prefix length, e.g. '
     '"10.0.0.1/24", got "2001:db8::1"'),
    (BASE + 'source-address = ["192.0.2.1", "198.51.100.1"]\n',
     "n.toml:4: tunnel.source-address[1]: must be one IPv4 and one IPv6 address, got two "
     "IPv4 ones"),
    ('[tunnel]\naddress = "10.0.0.1/24"\nsource-interface = "eth0"\n[nhrp.ipv6]\n'
     "holdtime = 60\n",
     'n.toml:4: nhrp.ipv6: needs an IPv6 tunnel address (tunnel.address, e.g. '
     '["10.0.0.1/24", "2001:db8::1/64"])'),
    ('[tunnel]\naddress = "10.0.0.1/24"\nsource-interface = "eth0"\n[[nhrp.map]]\n'
     'tunnel-ip = "2001:db8::9"\nnbma = "192.0.2.9"\n',
     'n.toml:5: nhrp.map[0].tunnel-ip: must be an IPv4 address like tunnel.address, '
     'got "2001:db8::9"'),
    (BASE + '[[nhrp.map]]\ntunnel-ip = "2001:db8:1::9"\nnbma = "192.0.2.9"\n',
     'n.toml:5: nhrp.map[0].tunnel-ip: must be inside the tunnel prefix 2001:db8::/64 '
     '(tunnel.address), got "2001:db8:1::9"'),
    (BASE + '[[nhrp.map]]\ntunnel-ip = "2001:db8::1"\nnbma = "192.0.2.9"\n',
     "n.toml:5: nhrp.map[0].tunnel-ip: is this node's own tunnel address (tunnel.address "
     "2001:db8::1/64)"),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "2001:db8::2"\nnbma = "192.0.2.2"\n[[nhrp.nhs]]\n'
     'tunnel-ip = "2001:db8::3"\nnbma = "192.0.2.2"\n',
     "n.toml:9: nhrp.nhs[1].nbma: duplicate of nhrp.nhs[0] (each NHS once per address "
     "family)"),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "dynamic"\nnbma = "192.0.2.2"\n[[nhrp.nhs]]\n'
     'tunnel-ip = "2001:db8::3"\nnbma = "192.0.2.2"\n',
     "n.toml:9: nhrp.nhs[1].nbma: duplicate of nhrp.nhs[0] (each NHS once per address "
     "family)"),
    (BASE + '[nhrp]\nmulticast = ["192.0.2.5", "2001:db8:ff::5"]\n',
     'n.toml:5: nhrp.multicast[1]: must be an IPv4 address like nhrp.multicast[0] (one '
     'underlay family per tunnel), got "2001:db8:ff::5"'),
    (BASE + '[nhrp.ipv6]\nnetwork-id = 0\n',
     "n.toml:5: nhrp.ipv6.network-id: must be an integer 1..4294967295, got 0"),
    (BASE + '[nhrp.ipv6]\nnhs = []\n',
     "n.toml:5: nhrp.ipv6.nhs: unknown key (allowed: network-id, holdtime, authentication, "
     "redirect, shortcut, registration-no-unique)"),
])
def test_one_line_errors(text, expected):
    assert error(text) == expected


def test_nbma_of_both_families_only_with_a_source_address_of_each():
    text = BASE + 'source-address = ["192.0.2.1", "2001:db8:ff::1"]\n' \
        '[nhrp]\nmulticast = ["192.0.2.5", "2001:db8:ff::5"]\n'
    assert len(loads(text).nhrp.multicast) == 2
