"""Identity binding: which tunnel addresses an IKE identity may register."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from xdmvpn import config as C
from xdmvpn.ipsec.identity import Binding, common_name, names_address, normalize

A11, A12 = ip_address("172.16.0.11"), ip_address("172.16.0.12")


@pytest.mark.parametrize("identity,expected", [
    ("172.16.0.11", True),
    ("CN=172.16.0.11", True),
    ("C=CH, O=Example, CN=172.16.0.11", True),
    ("/C=CH/O=Example/CN=172.16.0.11", True),
    ("cn=172.16.0.11,o=Example", True),
    ("172.16.0.12", False),
    ("CN=172.16.0.12, O=Example", False),
    ("CN=spoke1.example.net", False),
    ("spoke1.example.net", False),
    ("O=172.16.0.11", False),                 # only the CN names the address
    ("", False),
])
def test_the_tunnel_address_rule(identity, expected):
    assert names_address(identity, A11) is expected
    assert Binding("tunnel-address").allows(identity, A11) is expected


def test_normalize_and_common_name():
    assert normalize(" c=CH,o=Example ,  CN=x ") == "C=CH, O=Example, CN=x"
    assert normalize("Spoke1.Example.NET") == "spoke1.example.net"
    assert normalize("2001:DB8::1") == "2001:db8::1"
    assert common_name("C=CH, CN=a, CN=b") == "b" and common_name("a.example") is None


def test_table_entries_override_and_table_mode_needs_them():
    table = (("CN=branch7, O=Example", ("172.16.0.11/32", "172.16.0.128/28")),
             ("172.16.0.12", ("172.16.0.99/32",)))
    b = Binding("tunnel-address", table)
    assert b.allows("cn=branch7,  o=Example", A11)
    assert b.allows("CN=branch7, O=Example", ip_address("172.16.0.130"))
    assert not b.allows("CN=branch7, O=Example", A12)
    # a listed identity may register what is listed only, even its own address
    assert not b.allows("172.16.0.12", A12) and b.allows("172.16.0.12",
                                                          ip_address("172.16.0.99"))
    assert b.allows("172.16.0.11", A11)           # not listed: the rule
    strict = Binding("table", table)
    assert not strict.allows("172.16.0.11", A11) and strict.allows("CN=branch7, O=Example", A11)
    anyone = Binding("none")
    assert anyone.allows("", A11) and anyone.allows("whoever", A12)
    with pytest.raises(ValueError):
        Binding("cn")


def test_from_config():
    cfg = C.loads('[tunnel]\naddress = "172.16.0.1/24"\nsource-interface = "eth0"\n'
                  '[ipsec]\npsk = "x"\nbind = "table"\n[[ipsec.identities]]\n'
                  'id = "spoke9.example.net"\ntunnel-ip = ["172.16.0.19"]\n')
    b = Binding.from_config(cfg.ipsec)
    assert b.mode == "table" and b.allows("SPOKE9.example.net", ip_address("172.16.0.19"))
    assert not b.allows("spoke9.example.net", A11)
