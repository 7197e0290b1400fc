"""The node configuration: examples, defaults, every error with its key and line, syntax
errors, suggestions for unknown keys, render_toml round trips, `xdmvpn config`."""

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from ipaddress import IPv4Address, ip_interface
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from xdmvpn import config as C
from xdmvpn.cli import config_cmd
from xdmvpn.config import ConfigError, KeyLines, load, loads, render_toml
from xdmvpn.errors import XdmvpnError

# Not `from conftest import ...`: tests/dataplane/conftest.py can shadow tests/conftest.py.
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"

BASE = """\
[tunnel]
address = "10.0.0.1/24"
source-interface = "eth0"
"""


def error(text: str, source: str = "n.toml") -> str:
    with pytest.raises(ConfigError) as info:
        loads(text, source)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the examples and the defaults ------------------------------------------------------

def test_hub_example():
    cfg = load(EXAMPLES / "hub.toml")
    assert cfg.role == "hub" and cfg.is_nhs and not cfg.is_nhc
    t, n = cfg.tunnel, cfg.nhrp
    assert (t.name, t.address, t.source_interface) == (
        "dmvpn0", ip_interface("172.16.253.134/29"), "eth0")
    assert (t.source_address, t.key, t.mtu, t.adjust_mss) == (
        IPv4Address("192.0.2.1"), 1, 1400, 1360)
    assert (n.holdtime, n.authentication, n.redirect, n.network_id) == (300, "secret", True, 1)
    assert n.multicast == ("dynamic",) and n.multicast_dynamic and not n.multicast_nhs
    assert n.nhs == () and n.maps == ()
    assert cfg.control.socket == "/run/xdmvpn/dmvpn0.sock"
    assert (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9351)
    assert cfg.ipsec is None


def test_spoke_example():
    cfg = load(EXAMPLES / "spoke1.toml")
    assert cfg.role == "spoke" and cfg.is_nhc and not cfg.is_nhs
    assert cfg.tunnel.address == ip_interface("172.16.253.129/29")
    assert cfg.tunnel.source_address is None
    assert cfg.nhrp.nhs == (C.NhsConfig(IPv4Address("172.16.253.134"),
                                        IPv4Address("192.0.2.1"), 1),)
    assert cfg.nhrp.multicast == ("nhs",) and cfg.nhrp.shortcut and not cfg.nhrp.redirect
    assert cfg.metrics.listen is None


def test_examples_share_the_network():
    hub, spoke = load(EXAMPLES / "hub.toml"), load(EXAMPLES / "spoke1.toml")
    assert spoke.tunnel.address.network == hub.tunnel.address.network
    assert spoke.nhrp.nhs[0].tunnel_ip == hub.tunnel.address.ip
    assert spoke.nhrp.nhs[0].nbma == hub.tunnel.source_address
    for key in ("key", "mtu"):
        assert getattr(spoke.tunnel, key) == getattr(hub.tunnel, key)
    assert spoke.nhrp.authentication == hub.nhrp.authentication


def test_docs_show_the_examples():
    text = (EXAMPLES.parent / "config.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    configs = [loads(b) for b in blocks]            # every block is a valid configuration
    assert configs[-2:] == [load(EXAMPLES / "hub.toml"), load(EXAMPLES / "spoke1.toml")]
    dual = [c for c in configs if c.tunnel.other_address is not None]
    assert len(dual) == 2 and dual[1].tunnel.other_source_address is not None


def test_defaults_of_a_minimal_hub():
    cfg = loads(BASE)
    assert cfg.role == "hub"
    assert cfg.tunnel == C.TunnelConfig(address=ip_interface("10.0.0.1/24"),
                                        source_interface="eth0", name="dmvpn0", mtu=1400,
                                        ttl=64, df=True, key=None, adjust_mss=None)
    assert cfg.nhrp == C.NhrpConfig(network_id=1, holdtime=7200, authentication=None,
                                    multicast=("dynamic",), max_send=C.MaxSend(100, 10))
    assert cfg.control.socket == "/run/xdmvpn/dmvpn0.sock"
    assert cfg.metrics == C.MetricsConfig(None) and cfg.ipsec is None
    assert (cfg.metrics.per_peer, cfg.metrics.per_peer_limit) == (False, 100)


def test_defaults_follow_the_role():
    nhs = '[[nhrp.nhs]]\ntunnel-ip = "dynamic"\nnbma = "192.0.2.1"\n'
    spoke = loads(BASE + nhs)
    assert (spoke.role, spoke.nhrp.multicast) == ("spoke", ("nhs",))
    both = loads('role = "both"\n' + BASE + nhs)
    assert (both.role, both.nhrp.multicast) == ("both", ("dynamic", "nhs"))
    assert both.is_nhs and both.is_nhc
    assert loads(BASE + "[nhrp]\nmulticast = []\n").nhrp.multicast == ()
    named = loads(BASE.replace("[tunnel]", '[tunnel]\nname = "tun100"'))
    assert named.control.socket == "/run/xdmvpn/tun100.sock"
    assert named.control.instance == "tun100"


def test_instance_names_pins_and_default_socket():
    cfg = loads(BASE + '[control]\ninstance = "lab-hub"\n')
    assert (cfg.control.instance, cfg.control.socket) == ("lab-hub", "/run/xdmvpn/lab-hub.sock")
    both = loads(BASE + '[control]\ninstance = "a"\nsocket = "/tmp/x.sock"\n')
    assert (both.control.instance, both.control.socket) == ("a", "/tmp/x.sock")
    with pytest.raises(ConfigError, match=r"n.toml:5: control.instance: must be a name"):
        loads(BASE + '[control]\ninstance = "../etc"\n', "n.toml")


def test_redirect_and_shortcut_together_are_fine():
    cfg = loads('role = "both"\n' + BASE + "[nhrp]\nredirect = true\nshortcut = true\n"
                '[[nhrp.nhs]]\ntunnel-ip = "10.0.0.254"\nnbma = "192.0.2.254"\n')
    assert cfg.nhrp.redirect and cfg.nhrp.shortcut and cfg.role == "both"


def test_nhs_nbma_from_a_static_map():
    cfg = loads(BASE + '[[nhrp.nhs]]\ntunnel-ip = "10.0.0.254"\n'
                '[[nhrp.map]]\ntunnel-ip = "10.0.0.254"\nnbma = "192.0.2.254"\n')
    assert cfg.nhrp.nhs[0].nbma == IPv4Address("192.0.2.254")


def test_values_are_normalized():
    cfg = loads(BASE.replace("10.0.0.1/24", "10.0.0.1/255.255.255.0")
                + '[metrics]\nlisten = "[0:0::1]:09351"\n'
                + '[nhrp]\nmulticast = ["192.0.2.5"]\n')
    assert str(cfg.tunnel.address) == "10.0.0.1/24"
    assert cfg.metrics.listen == "[::1]:9351" and cfg.metrics.host == "::1"
    assert cfg.nhrp.multicast_static == (IPv4Address("192.0.2.5"),)


def test_df_inherit_and_ipv6_overlay():
    cfg = loads('[tunnel]\naddress = "2001:db8::1/64"\nsource-interface = "eth0"\n'
                'df = "inherit"\nttl = 0\n'
                '[[nhrp.map]]\ntunnel-ip = "2001:db8::9"\nnbma = "192.0.2.9"\n')
    assert cfg.tunnel.df == "inherit" and cfg.tunnel.ttl == 0
    assert cfg.nhrp.maps[0].tunnel_ip == ipaddress.IPv6Address("2001:db8::9")


def test_ipsec_section():
    cfg = loads(BASE + '[ipsec]\npsk = "s3cret"\nproposals = ["aes256gcm16-prfsha384-ecp384"]\n')
    assert cfg.ipsec == C.IpsecConfig(profile="dmvpn", required=True, psk="s3cret",
                                      proposals=("aes256gcm16-prfsha384-ecp384",))
    cert = loads(BASE + '[ipsec]\ncertificate = "/etc/a.crt"\nprivate-key = "/etc/a.key"\n')
    assert (cert.ipsec.certificate, cert.ipsec.private_key) == ("/etc/a.crt", "/etc/a.key")
    assert (cfg.ipsec.bind, cfg.ipsec.local_id, cfg.ipsec.identities) == (
        "tunnel-address", None, ())
    assert cfg.ipsec.vici_socket == "unix:///var/run/charon.vici"


def test_ipsec_identities():
    cfg = loads(BASE + '[ipsec]\npsk = "s"\nbind = "table"\nlocal-id = "hub.example.net"\n'
                'vici-socket = "unix:///run/xdmvpn/charon/hub.vici"\n'
                '[[ipsec.identities]]\nid = "CN=spoke1, O=Example"\n'
                'tunnel-ip = ["10.0.0.11", "10.0.0.128/28"]\n'
                '[[ipsec.identities]]\nid = "spoke2.example.net"\ntunnel-ip = ["10.0.0.12/32"]\n')
    i = cfg.ipsec
    assert (i.bind, i.local_id, i.vici_socket) == ("table", "hub.example.net",
                                                   "unix:///run/xdmvpn/charon/hub.vici")
    assert i.identities == (
        C.IdentityConfig("CN=spoke1, O=Example", (ipaddress.ip_network("10.0.0.11/32"),
                                                  ipaddress.ip_network("10.0.0.128/28"))),
        C.IdentityConfig("spoke2.example.net", (ipaddress.ip_network("10.0.0.12/32"),)))
    assert cfg.to_dict()["ipsec"]["identities"] == [
        {"id": "CN=spoke1, O=Example", "tunnel-ip": ["10.0.0.11", "10.0.0.128/28"]},
        {"id": "spoke2.example.net", "tunnel-ip": ["10.0.0.12"]}]
    assert loads(render_toml(cfg)) == cfg


# --- exact messages for a representative set --------------------------------------------

NHS = '[[nhrp.nhs]]\ntunnel-ip = "10.0.0.254"\nnbma = "192.0.2.254"\n'

EXACT = [
    (BASE + '[nhrp]\nholdtime = "300s"\n',
     'n.toml:5: nhrp.holdtime: must be an integer 1..65535 seconds, got "300s"'),
    (BASE + '[nhrp]\nholdtime = 0\n',
     "n.toml:5: nhrp.holdtime: must be an integer 1..65535 seconds, got 0"),
    (BASE + "key = 4294967296\n",
     "n.toml:4: tunnel.key: must be an integer 0..4294967295, got 4294967296"),
    (BASE + "mtu = 1400.0\n",
     "n.toml:4: tunnel.mtu: must be an integer 576..9000, got 1400.0"),
    (BASE + "adjust-mss = true\n",
     "n.toml:4: tunnel.adjust-mss: must be an integer 536..9000, got true"),
    (BASE + "df = \"yes\"\n",
     'n.toml:4: tunnel.df: must be true, false or "inherit", got "yes"'),
    (BASE.replace('"eth0"', '"eth0 "'),
     "n.toml:3: tunnel.source-interface: must be an interface name of 1..15 characters "
     "without '/', ':' or whitespace, got \"eth0 \""),
    (BASE.replace("[tunnel]", '[tunnel]\nname = "dmvpn-overlay"'),
     "n.toml:2: tunnel.name: must be an interface name of 1..12 characters without '/', "
     "':' or whitespace (the daemon also creates NAME-dp), got \"dmvpn-overlay\""),
    (BASE.replace("10.0.0.1/24", "10.0.0.1"),
     'n.toml:2: tunnel.address: must be an address with prefix length, e.g. "10.0.0.1/24", '
     'got "10.0.0.1"'),
    (BASE.replace("10.0.0.1/24", "10.0.0.0/24"),
     "n.toml:2: tunnel.address: must be a host address of 10.0.0.0/24, not its network or "
     'broadcast address, got "10.0.0.0/24"'),
    (BASE + 'source-address = "0.0.0.0"\n',
     'n.toml:4: tunnel.source-address: must be a unicast address, got "0.0.0.0"'),
    (BASE + '[nhrp]\nauthentication = "123456789"\n',
     "n.toml:5: nhrp.authentication: must be a string of 1..8 bytes without whitespace "
     "(Cisco cleartext), got 9 bytes"),
    (BASE + '[nhrp]\nauthentication = "a b"\n',
     "n.toml:5: nhrp.authentication: must be a string of 1..8 bytes without whitespace "
     "(Cisco cleartext), got one with whitespace or control characters"),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "dynamic"\npriority = 1\n',
     'n.toml:4: nhrp.nhs[0].nbma: required with tunnel-ip "dynamic" (the NHS NBMA address, '
     'e.g. "192.0.2.1")'),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "10.0.0.254"\n',
     "n.toml:4: nhrp.nhs[0].nbma: required (or a [[nhrp.map]] with tunnel-ip 10.0.0.254)"),
    (BASE + '[[nhrp.nhs]]\nnbma = "192.0.2.1"\n',
     'n.toml:4: nhrp.nhs[0].tunnel-ip: required (the NHS tunnel address, or "dynamic" to '
     'learn it)'),
    (BASE + NHS + NHS.replace(".254\"\nnbma", ".253\"\nnbma"),
     "n.toml:9: nhrp.nhs[1].nbma: duplicate of nhrp.nhs[0] (each NHS once per address family)"),
    (BASE + NHS + NHS.replace("192.0.2.254", "192.0.2.253"),
     "n.toml:8: nhrp.nhs[1].tunnel-ip: duplicate of nhrp.nhs[0] (each NHS once)"),
    (BASE + '[[nhrp.map]]\ntunnel-ip = "10.0.1.9"\nnbma = "192.0.2.9"\n',
     "n.toml:5: nhrp.map[0].tunnel-ip: must be inside the tunnel prefix 10.0.0.0/24 "
     '(tunnel.address), got "10.0.1.9"'),
    (BASE + '[[nhrp.map]]\ntunnel-ip = "10.0.0.9"\nnbma = "192.0.2.9"\n'
     '[[nhrp.map]]\ntunnel-ip = "10.0.0.9"\nnbma = "192.0.2.10"\n',
     "n.toml:8: nhrp.map[1].tunnel-ip: duplicate of nhrp.map[0] (one mapping per tunnel "
     "address)"),
    (BASE + '[[nhrp.map]]\ntunnel-ip = "10.0.0.1"\nnbma = "192.0.2.9"\n',
     "n.toml:5: nhrp.map[0].tunnel-ip: is this node's own tunnel address (tunnel.address "
     "10.0.0.1/24)"),
    (BASE + NHS + '[[nhrp.map]]\ntunnel-ip = "10.0.0.254"\nnbma = "192.0.2.9"\n',
     "n.toml:6: nhrp.nhs[0].nbma: conflicts with the [[nhrp.map]] for 10.0.0.254 "
     "(nbma 192.0.2.9)"),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "2001:db8::1"\nnbma = "192.0.2.1"\n',
     'n.toml:5: nhrp.nhs[0].tunnel-ip: must be an IPv4 address like tunnel.address, '
     'got "2001:db8::1"'),
    (BASE + 'source-address = "192.0.2.1"\n' + NHS.replace("192.0.2.254", "2001:db8::1"),
     "n.toml:7: nhrp.nhs[0].nbma: must be an IPv4 address like tunnel.source-address (one "
     'underlay family per tunnel), got "2001:db8::1"'),
    (BASE + 'source-address = "192.0.2.254"\n' + NHS,
     "n.toml:7: nhrp.nhs[0].nbma: is this node's own NBMA address (tunnel.source-address)"),
    (BASE + '[nhrp]\nmulticast = ["dynamic", "nhs"]\n',
     'n.toml:5: nhrp.multicast[1]: "nhs" needs [[nhrp.nhs]] entries'),
    (BASE + '[nhrp]\nmulticast = [\n  "192.0.2.7",\n  "192.0.2.7",\n]\n',
     "n.toml:7: nhrp.multicast[1]: duplicate of nhrp.multicast[0]"),
    (BASE + '[nhrp]\nmulticast = "dynamic"\n',
     'n.toml:5: nhrp.multicast: must be an array of "dynamic", "nhs" and NBMA addresses, '
     'got "dynamic"'),
    (BASE + '[nhrp]\nmulticast = ["all"]\n',
     'n.toml:5: nhrp.multicast[0]: must be "dynamic", "nhs" or an NBMA address, got "all"'),
    (BASE + '[nhrp]\nmax-send = { packets = 100, interval = 0 }\n',
     "n.toml:5: nhrp.max-send.interval: must be an integer 1..65535 seconds, got 0"),
    (BASE + '[nhrp]\nunknown-budget = { rate = 10000, burst = 1e3 }\n',
     "n.toml:5: nhrp.unknown-budget.burst: must be an integer 1..2048 packets (what the GRE "
     "socket takes before the daemon sheds strangers), got 1000.0"),
    (BASE + '[nhrp]\nunknown-budget = { packets = 10000 }\n',
     "n.toml:5: nhrp.unknown-budget.packets: unknown key (allowed: rate, burst)"),
    (BASE + '[nhrp]\nmax-send = 100\n',
     "n.toml:5: nhrp.max-send: must be a table, e.g. max-send = { packets = 100, "
     "interval = 10 }, got 100"),
    (BASE + '[nhrp.nhs]\nnbma = "192.0.2.1"\n',
     "n.toml:4: nhrp.nhs: must be an array of tables, written [[nhrp.nhs]]"),
    ('role = "spoke"\n' + BASE,
     'n.toml:1: role: "spoke" needs at least one [[nhrp.nhs]] entry'),
    ('role = "both"\n' + BASE,
     'n.toml:1: role: "both" needs at least one [[nhrp.nhs]] entry'),
    ('role = "hub"\n' + BASE + NHS,
     'n.toml:1: role: "hub" registers to no NHS, but [[nhrp.nhs]] entries are set (use '
     '"both" for a hub that registers to another hub)'),
    ('role = "nhs"\n' + BASE,
     'n.toml:1: role: must be "hub", "spoke" or "both", got "nhs"'),
    (BASE + '[metrics]\nlisten = "localhost:9351"\n',
     'n.toml:5: metrics.listen: must be "address:port" with port 1..65535, IPv6 in '
     'brackets, e.g. "127.0.0.1:9351" or "[::1]:9351", got "localhost:9351"'),
    (BASE + '[metrics]\nper-peer-limit = 100001\n',
     "n.toml:5: metrics.per-peer-limit: must be an integer 1..100000, got 100001"),
    ('[tunnel]\naddress = "255.255.255.255/32"\nsource-interface = "eth0"\n',
     'n.toml:2: tunnel.address: must be a unicast address, got "255.255.255.255/32"'),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "10.0.0.255"\nnbma = "192.0.2.1"\n',
     'n.toml:5: nhrp.nhs[0].tunnel-ip: must be a host address of 10.0.0.0/24, not its network '
     'or broadcast address, got "10.0.0.255"'),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "10.0.0.2"\nnbma = "127.0.0.1"\n',
     'n.toml:6: nhrp.nhs[0].nbma: must be an address a peer is reached at on the underlay '
     '(not loopback, not IPv4-mapped IPv6), got "127.0.0.1"'),
    (BASE + '[[nhrp.map]]\ntunnel-ip = "10.0.0.2"\nnbma = "::ffff:192.0.2.1"\n',
     'n.toml:6: nhrp.map[0].nbma: must be an address a peer is reached at on the underlay '
     '(not loopback, not IPv4-mapped IPv6), got "::ffff:c000:201"'),
    (BASE + '[control]\nsocket = "/run/a\\nb.sock"\n',
     'n.toml:5: control.socket: must be an absolute path of at most 107 bytes (printable '
     'characters), got "/run/a\\nb.sock"'),
    (BASE + '[ipsec]\npsk = "ab\\u0000cd"\n',
     "n.toml:5: ipsec.psk: must be a non-empty string, got one with control characters"),
    (BASE + '[metrics]\nlisten = "[fe80::1%eth0]:80"\n',
     'n.toml:5: metrics.listen: must be "address:port" with port 1..65535, IPv6 in '
     'brackets, e.g. "127.0.0.1:9351" or "[::1]:9351", got "[fe80::1%eth0]:80"'),
    (BASE + '[control]\nsocket = "run/x.sock"\n',
     'n.toml:5: control.socket: must be an absolute path of at most 107 bytes (printable '
     'characters), got "run/x.sock"'),
    (BASE + '[ipsec]\nprofile = "dmvpn"\n',
     "n.toml:4: ipsec.psk: required (a pre-shared key, or certificate and private-key)"),
    (BASE + '[ipsec]\npsk = "x"\ncertificate = "/etc/a.crt"\nprivate-key = "/etc/a.key"\n',
     "n.toml:6: ipsec.certificate: psk and certificate exclude each other (choose one)"),
    (BASE + '[ipsec]\ncertificate = "/etc/a.crt"\n',
     "n.toml:4: ipsec.private-key: required with certificate"),
    (BASE + '[ipsec]\npsk = "x"\nesp-proposals = ["aes256-sha1", "AES 128"]\n',
     "n.toml:6: ipsec.esp-proposals[1]: must be a strongSwan proposal (lower-case algorithms "
     "joined by '-', e.g. \"aes256gcm16-prfsha384-ecp384\"), got \"AES 128\""),
    (BASE + '[ipsec]\npsk = "x"\nbind = "table"\n',
     'n.toml:6: ipsec.bind: "table" needs [[ipsec.identities]] entries (else no peer may '
     'register)'),
    (BASE + '[ipsec]\npsk = "x"\nbind = "cn"\n',
     'n.toml:6: ipsec.bind: must be "tunnel-address", "table" or "none", got "cn"'),
    (BASE + '[ipsec]\npsk = "x"\nvici-socket = "/var/run/charon.vici"\n',
     'n.toml:6: ipsec.vici-socket: must be "unix://" and an absolute path of at most 107 '
     'bytes, e.g. "unix:///var/run/charon.vici", got "/var/run/charon.vici"'),
    (BASE + '[ipsec]\npsk = "x"\n[[ipsec.identities]]\nid = "a"\ntunnel-ip = ["10.0.1.1"]\n',
     'n.toml:8: ipsec.identities[0].tunnel-ip[0]: must be an address or prefix inside the '
     'tunnel prefix 10.0.0.0/24, got "10.0.1.1"'),
    (BASE + '[ipsec]\npsk = "x"\n[[ipsec.identities]]\nid = "a"\n',
     'n.toml:6: ipsec.identities[0].tunnel-ip: required (the tunnel addresses this identity '
     'may register, e.g. ["172.16.0.11"])'),
    (BASE + '[ipsec]\npsk = "x"\n[[ipsec.identities]]\nid = "a"\ntunnel-ip = ["10.0.0.2"]\n'
     '[[ipsec.identities]]\nid = "a"\ntunnel-ip = ["10.0.0.3"]\n',
     "n.toml:10: ipsec.identities[1].id: duplicate of ipsec.identities[0] (one entry per "
     "identity)"),
    (BASE + '[ipsec]\npsk = "x"\n[ipsec.identities]\nid = "a"\n',
     "n.toml:6: ipsec.identities: must be an array of tables, written [[ipsec.identities]]"),
    ('[tunnel]\nsource-interface = "eth0"\n',
     'n.toml:1: tunnel.address: required (own tunnel address and overlay prefix, e.g. '
     '"10.0.0.1/24")'),
    ("[nhrp]\nholdtime = 300\n",
     "n.toml:1: tunnel: required table missing (e.g. [tunnel] with address and "
     "source-interface)"),
    ('tunnel = "dmvpn0"\n',
     'n.toml:1: tunnel: must be a table, e.g. [tunnel], got "dmvpn0"'),
]


@pytest.mark.parametrize("text,expected", EXACT, ids=[e.split(": ")[1] for _, e in EXACT])
def test_exact_message(text, expected):
    assert error(text) == expected


def test_secrets_are_not_echoed():
    message = error(BASE + '[nhrp]\nauthentication = "topsecret-too-long"\n')
    assert "topsecret" not in message and "got 18 bytes" in message
    message = error(BASE + '[ipsec]\npsk = ""\n')
    assert message == "n.toml:5: ipsec.psk: must be a non-empty string, got 0 bytes"


# --- every key: a bad value names that key and its line ---------------------------------

FULL = """\
# every key, each on its own line
role = "both"

[tunnel]
name = "dmvpn0"
address = ["10.0.0.1/24", "2001:db8::1/64"]
source-interface = "eth0"
source-address = "192.0.2.1"
key = 42
mtu = 1400
adjust-mss = 1360
ttl = 64
df = true

[nhrp]
network-id = 1
holdtime = 300
authentication = "secret"
redirect = true
shortcut = true
registration-no-unique = false
multicast = ["dynamic", "192.0.2.50"]
max-send = { packets = 100, interval = 10 }
unknown-budget = { rate = 20000, burst = 2000 }

[nhrp.ipv6]
network-id = 6
holdtime = 600
authentication = "secret6"
redirect = false
shortcut = false
registration-no-unique = true

[[nhrp.nhs]]
tunnel-ip = "dynamic"
nbma = "192.0.2.2"
priority = 1

[[nhrp.nhs]]
tunnel-ip = "10.0.0.3"
nbma = "192.0.2.3"
priority = 2

[[nhrp.map]]
tunnel-ip = "10.0.0.9"
nbma = "192.0.2.9"

[ipsec]
profile = "dmvpn"
required = true
certificate = "/etc/xdmvpn/node.crt"
private-key = "/etc/xdmvpn/node.key"
ca-certificate = "/etc/xdmvpn/ca.crt"
proposals = ["aes256gcm16-prfsha384-ecp384"]
esp-proposals = ["aes256gcm16"]
local-id = "CN=node1, O=Example"
bind = "tunnel-address"
vici-socket = "unix:///var/run/charon.vici"

[[ipsec.identities]]
id = "CN=spoke11, O=Example"
tunnel-ip = ["10.0.0.11", "10.0.0.128/28"]

[control]
instance = "dmvpn0"
socket = "/run/xdmvpn/dmvpn0.sock"

[metrics]
listen = "127.0.0.1:9351"
per-peer = true
per-peer-limit = 50
"""

# (key named in the error, line written in FULL, its bad replacement)
EVERY_KEY = [
    ("role", 'role = "both"', 'role = "spokes"'),
    ("tunnel.name", 'name = "dmvpn0"', 'name = "dm/vpn"'),
    ("tunnel.address[1]", 'address = ["10.0.0.1/24", "2001:db8::1/64"]',
     'address = ["10.0.0.1/24", "2001:db8::1"]'),
    ("tunnel.source-interface", 'source-interface = "eth0"', 'source-interface = ""'),
    ("tunnel.source-address", 'source-address = "192.0.2.1"', 'source-address = "eth0"'),
    ("tunnel.key", "key = 42", "key = -1"),
    ("tunnel.mtu", "mtu = 1400", "mtu = 9001"),
    ("tunnel.adjust-mss", "adjust-mss = 1360", "adjust-mss = 535"),
    ("tunnel.ttl", "ttl = 64", "ttl = 256"),
    ("tunnel.df", "df = true", 'df = "set"'),
    ("nhrp.network-id", "network-id = 1", "network-id = 0"),
    ("nhrp.holdtime", "holdtime = 300", "holdtime = 65536"),
    ("nhrp.authentication", 'authentication = "secret"', "authentication = 12345678"),
    ("nhrp.redirect", "redirect = true", 'redirect = "yes"'),
    ("nhrp.shortcut", "shortcut = true", "shortcut = 1"),
    ("nhrp.registration-no-unique", "registration-no-unique = false",
     "registration-no-unique = []"),
    ("nhrp.multicast[1]", 'multicast = ["dynamic", "192.0.2.50"]',
     'multicast = ["dynamic", "224.0.0.5"]'),
    ("nhrp.max-send.packets", "max-send = { packets = 100, interval = 10 }",
     "max-send = { packets = 65536, interval = 10 }"),
    ("nhrp.max-send.interval", "max-send = { packets = 100, interval = 10 }",
     'max-send = { packets = 100, interval = "10s" }'),
    ("nhrp.unknown-budget.rate", "unknown-budget = { rate = 20000, burst = 2000 }",
     "unknown-budget = { rate = 0, burst = 2000 }"),
    ("nhrp.unknown-budget.burst", "unknown-budget = { rate = 20000, burst = 2000 }",
     "unknown-budget = { rate = 20000, burst = 4096 }"),
    ("nhrp.ipv6.network-id", "network-id = 6", "network-id = -6"),
    ("nhrp.ipv6.holdtime", "holdtime = 600", "holdtime = 0"),
    ("nhrp.ipv6.authentication", 'authentication = "secret6"',
     'authentication = "too long secret"'),
    ("nhrp.ipv6.redirect", "redirect = false", 'redirect = "no"'),
    ("nhrp.ipv6.shortcut", "shortcut = false", "shortcut = 0"),
    ("nhrp.ipv6.registration-no-unique", "registration-no-unique = true",
     "registration-no-unique = 1"),
    ("nhrp.nhs[0].tunnel-ip", 'tunnel-ip = "dynamic"', 'tunnel-ip = "any"'),
    ("nhrp.nhs[0].nbma", 'nbma = "192.0.2.2"', 'nbma = "192.0.2.2/32"'),
    ("nhrp.nhs[0].priority", "priority = 1", "priority = 256"),
    ("nhrp.nhs[1].tunnel-ip", 'tunnel-ip = "10.0.0.3"', 'tunnel-ip = "10.0.0.1"'),
    ("nhrp.nhs[1].nbma", 'nbma = "192.0.2.3"', 'nbma = "192.0.2.2"'),
    ("nhrp.nhs[1].priority", "priority = 2", "priority = -2"),
    ("nhrp.map[0].tunnel-ip", 'tunnel-ip = "10.0.0.9"', 'tunnel-ip = "10.0.0.9/32"'),
    ("nhrp.map[0].nbma", 'nbma = "192.0.2.9"', 'nbma = "192.0.2.1"'),
    ("ipsec.profile", 'profile = "dmvpn"', 'profile = "my profile"'),
    ("ipsec.required", "required = true", 'required = "true"'),
    ("ipsec.psk", 'certificate = "/etc/xdmvpn/node.crt"', "psk = 42"),
    ("ipsec.certificate", 'certificate = "/etc/xdmvpn/node.crt"', 'certificate = "node.crt"'),
    ("ipsec.private-key", 'private-key = "/etc/xdmvpn/node.key"', "private-key = true"),
    ("ipsec.ca-certificate", 'ca-certificate = "/etc/xdmvpn/ca.crt"', 'ca-certificate = ""'),
    ("ipsec.proposals", 'proposals = ["aes256gcm16-prfsha384-ecp384"]',
     'proposals = "aes256gcm16-prfsha384-ecp384"'),
    ("ipsec.esp-proposals[0]", 'esp-proposals = ["aes256gcm16"]', "esp-proposals = [1]"),
    ("ipsec.local-id", 'local-id = "CN=node1, O=Example"', 'local-id = ""'),
    ("ipsec.bind", 'bind = "tunnel-address"', 'bind = "cn"'),
    ("ipsec.vici-socket", 'vici-socket = "unix:///var/run/charon.vici"',
     'vici-socket = "unix://charon.vici"'),
    ("ipsec.identities[0].id", 'id = "CN=spoke11, O=Example"', "id = 11"),
    ("ipsec.identities[0].tunnel-ip[1]", 'tunnel-ip = ["10.0.0.11", "10.0.0.128/28"]',
     'tunnel-ip = ["10.0.0.11", "10.0.0.129/28"]'),
    ("control.instance", 'instance = "dmvpn0"', 'instance = "a b"'),
    ("control.socket", 'socket = "/run/xdmvpn/dmvpn0.sock"',
     f'socket = "/run/{"x" * 110}.sock"'),
    ("metrics.listen", 'listen = "127.0.0.1:9351"', 'listen = "127.0.0.1:0"'),
    ("metrics.per-peer", "per-peer = true", 'per-peer = "yes"'),
    ("metrics.per-peer-limit", "per-peer-limit = 50", "per-peer-limit = 0"),
]


def test_full_config_is_valid():
    cfg = loads(FULL)
    assert cfg.nhrp.unknown_budget == C.UnknownBudget(rate=20000, burst=2000)
    assert loads(BASE).nhrp.unknown_budget == C.UnknownBudget(10_000, 1_000)
    assert cfg.role == "both" and len(cfg.nhrp.nhs) == 2 and len(cfg.nhrp.maps) == 1
    assert cfg.nhrp.nhs[0].tunnel_ip is None and cfg.ipsec.ca_certificate == "/etc/xdmvpn/ca.crt"
    assert cfg.ipsec.identities[0].tunnel_ip[1] == ipaddress.ip_network("10.0.0.128/28")
    assert cfg.metrics == C.MetricsConfig("127.0.0.1:9351", per_peer=True, per_peer_limit=50)


def _schema_keys() -> set[str]:
    keys = {"role"}
    for section, names in (("tunnel", C.TUNNEL_KEYS), ("ipsec", C.IPSEC_KEYS),
                           ("control", C.CONTROL_KEYS), ("metrics", C.METRICS_KEYS)):
        keys |= {f"{section}.{k}" for k in names if k != "identities"}
    keys |= {f"ipsec.identities.{k}" for k in C.IDENTITY_KEYS}
    keys |= {f"nhrp.{k}" for k in C.NHRP_KEYS
             if k not in ("nhs", "map", "max-send", "unknown-budget", "ipv6")}
    keys |= {f"nhrp.ipv6.{k}" for k in C.NHRP_FAMILY_KEYS}
    keys |= {f"nhrp.max-send.{k}" for k in C.MAX_SEND_KEYS}
    keys |= {f"nhrp.unknown-budget.{k}" for k in C.UNKNOWN_BUDGET_KEYS}
    keys |= {f"nhrp.nhs.{k}" for k in C.NHS_KEYS} | {f"nhrp.map.{k}" for k in C.MAP_KEYS}
    return keys


def test_every_key_is_covered():
    assert {re.sub(r"\[\d+\]", "", key) for key, _, _ in EVERY_KEY} == _schema_keys()


@pytest.mark.parametrize("key,old,new", EVERY_KEY, ids=[k for k, _, _ in EVERY_KEY])
def test_every_key_names_key_and_line(key, old, new):
    lines = FULL.splitlines()
    assert lines.count(old) == 1
    line = lines.index(old)
    lines[line] = new
    message = error("\n".join(lines) + "\n", "full.toml")
    assert message.startswith(f"full.toml:{line + 1}: {key}: "), message


# --- unknown keys -----------------------------------------------------------------------

@pytest.mark.parametrize("text,line,key,guess", [
    (BASE.replace("address", "adress", 1), 2, "tunnel.adress", "address"),
    (BASE.replace("source-interface", "source_interface"), 3, "tunnel.source_interface",
     "source-interface"),
    (BASE + "[nhrp]\nholding-time = 300\n", 5, "nhrp.holding-time", "holdtime"),
    (BASE + '[nhrp]\ncisco-authentication = "x"\n', 5, "nhrp.cisco-authentication",
     "authentication"),
    (BASE + '[nhrp]\nnetwork_id = 1\n', 5, "nhrp.network_id", "network-id"),
    (BASE + '[[nhrp.nhs]]\ntunnel-ip = "dynamic"\nnbma-address = "192.0.2.1"\n', 6,
     "nhrp.nhs[0].nbma-address", "nbma"),
    (BASE + '[[nhrp.map]]\ntunel-ip = "10.0.0.2"\nnbma = "192.0.2.1"\n', 5,
     "nhrp.map[0].tunel-ip", "tunnel-ip"),
    (BASE + "[nhrp]\nmax-send = { packets = 1, every = 10 }\n", 5, "nhrp.max-send.every",
     "interval"),
    (BASE + "[nhrpp]\nholdtime = 300\n", 4, "nhrpp", "nhrp"),
    (BASE + '[metric]\nlisten = "127.0.0.1:1"\n', 4, "metric", "metrics"),
    (BASE + "[ipsec]\npre-shared-secret = 'x'\n", 5, "ipsec.pre-shared-secret", "psk"),
    ('rol = "hub"\n' + BASE, 1, "rol", "role"),
])
def test_unknown_key_suggests_the_nearest(text, line, key, guess):
    assert error(text) == f"n.toml:{line}: {key}: unknown key; did you mean {guess}?"


def test_unknown_key_without_a_near_one_lists_the_allowed():
    assert error(BASE + "colour = 1\n") == (
        "n.toml:4: tunnel.colour: unknown key (allowed: name, address, source-interface, "
        "source-address, key, mtu, adjust-mss, ttl, df)")


def test_top_level_key_written_inside_a_table():
    assert error(BASE + 'role = "hub"\n') == (
        "n.toml:4: tunnel.role: unknown key here; role is a top-level key (write it before "
        "the first [table])")


def test_first_unknown_key_in_file_order():
    assert error(BASE + "[nhrp]\nzzz = 1\naaa = 2\n").startswith("n.toml:5: nhrp.zzz: ")


def test_unknown_key_reported_before_missing_required():
    text = '[tunnel]\nadress = "10.0.0.1/24"\nsource-interface = "eth0"\n'
    assert error(text) == "n.toml:2: tunnel.adress: unknown key; did you mean address?"


# --- syntax errors ----------------------------------------------------------------------

@pytest.mark.parametrize("text,prefix", [
    (BASE + "[nhrp]\nholdtime = 300s\n", "n.toml:5: nhrp.holdtime: TOML syntax error: "),
    (BASE + "mtu 1400\n", "n.toml:4: TOML syntax error: "),
    (BASE + 'name = "dmvpn0\n', "n.toml:4: tunnel.name: TOML syntax error: "),
    (BASE + "mtu = 1400\nmtu = 1500\n", "n.toml:5: tunnel.mtu: TOML syntax error: "),
    (BASE + "[tunnel]\n", "n.toml:4: TOML syntax error: "),
    ("[tunnel\n", "n.toml:1: TOML syntax error: "),
    (BASE + "multicast = [\n", "n.toml:"),
])
def test_syntax_error_names_the_line(text, prefix):
    message = error(text)
    assert message.startswith(prefix) and "TOML syntax error" in message, message
    assert "(column " in message or "(at end of file)" in message


def test_syntax_error_exact():
    assert error(BASE + "[nhrp]\nholdtime = 300s\n") == (
        "n.toml:5: nhrp.holdtime: TOML syntax error: expected newline or end of document "
        "after a statement (column 15)")


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "missing.toml")
    assert str(info.value) == f"{tmp_path}/missing.toml: cannot read (No such file or directory)"
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(BASE.encode() + b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load(bad)
    assert str(info.value) == f"{bad}:4: not UTF-8 text (TOML files are UTF-8)"
    assert isinstance(info.value, XdmvpnError)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load(bom) == loads(BASE)


# --- the line indexer -------------------------------------------------------------------

TRICKY = '''\
# [tunnel] in a comment is not a header
title = """
[tunnel]
address = "not a key"
"""   # line 5
"quoted.key" = 1
dotted.inner.value = 'it"s'
arr = [
  "a",   # a comment, ] and [
  { x = 1, y = [1, 2] },
]
[tunnel]
name = 'a "b" c'
[[nhrp.nhs]]
nbma = "1"
[[nhrp.nhs]]
nbma = """x\\""""
'''


def test_key_lines_on_tricky_toml():
    tomllib.loads(TRICKY)                      # valid TOML
    lines = KeyLines(TRICKY)
    expect = {("title",): 2, ("quoted.key",): 6, ("dotted",): 7,
              ("dotted", "inner", "value"): 7, ("arr",): 8, ("arr", 0): 9, ("arr", 1): 10,
              ("arr", 1, "y", 1): 10, ("tunnel",): 12, ("tunnel", "name"): 13,
              ("nhrp", "nhs"): 14, ("nhrp", "nhs", 0): 14, ("nhrp", "nhs", 0, "nbma"): 15,
              ("nhrp", "nhs", 1): 16, ("nhrp", "nhs", 1, "nbma"): 17}
    for path, line in expect.items():
        assert lines.line_of(path) == line, path
    assert lines.line_of(("tunnel", "address")) == 12      # missing key: its table
    assert lines.line_of(("nhrp", "nhs", 1, "priority")) == 16
    assert lines.line_of(("nowhere",)) == 1


def test_key_lines_crlf_and_nested_arrays_of_tables():
    text = "[[a]]\r\nx = 1\r\n[[a.b]]\r\ny = 2\r\n[[a]]\r\n[[a.b]]\r\n[[a.b]]\r\ny = 3\r\n"
    tomllib.loads(text)
    lines = KeyLines(text)
    assert lines.line_of(("a", 0, "x")) == 2
    assert lines.line_of(("a", 0, "b", 0, "y")) == 4
    assert lines.line_of(("a", 1)) == 5
    assert lines.line_of(("a", 1, "b", 1, "y")) == 8


def test_errors_in_inline_arrays_of_tables_name_their_line():
    text = BASE + ("[nhrp]\nnhs = [\n  { tunnel-ip = \"dynamic\", nbma = \"192.0.2.1\" },\n"
                   "  { tunnel-ip = \"dynamic\", nbma = \"192.0.2.1\" },\n]\n")
    assert error(text) == "n.toml:7: nhrp.nhs[1].nbma: duplicate of nhrp.nhs[0] (each NHS once per address family)"


def test_key_names():
    assert C.key_name(("nhrp", "nhs", 1, "nbma")) == "nhrp.nhs[1].nbma"
    assert C.key_name(("tunnel", "a b")) == 'tunnel."a b"'


# --- render_toml round trips ------------------------------------------------------------

@pytest.mark.parametrize("name", ["hub.toml", "spoke1.toml"])
def test_examples_round_trip(name):
    cfg = load(EXAMPLES / name)
    text = render_toml(cfg)
    assert loads(text) == cfg
    assert render_toml(loads(text)) == text


def test_full_round_trip_and_dict_is_json():
    cfg = loads(FULL)
    assert loads(render_toml(cfg)) == cfg
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["nhrp"]["nhs"][0] == {"tunnel-ip": "dynamic", "nbma": "192.0.2.2", "priority": 1}
    assert d["nhrp"]["multicast"] == ["dynamic", "192.0.2.50"]
    # the dict is the rendered TOML, with None for what is absent
    rendered = tomllib.loads(render_toml(cfg))
    assert rendered == {k: {ik: iv for ik, iv in v.items() if iv is not None}
                        if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def _no_space(text: str) -> bool:
    return not any(c.isspace() or not c.isprintable() for c in text)


@st.composite
def node_configs(draw):
    if draw(st.booleans()):              # inside 10.0.0.0/8 and 2001:db8::/32: unicast
        net = ipaddress.IPv4Network((0x0A000000 + draw(st.integers(0, 2**24 - 1)),
                                     draw(st.integers(8, 30))), strict=False)
    else:
        net = ipaddress.IPv6Network(((0x20010DB8 << 96) + draw(st.integers(0, 2**96 - 1)), 64),
                                    strict=False)
    hosts = draw(st.lists(st.integers(1, min(net.num_addresses - 2, 10**6)), min_size=1,
                          max_size=6, unique=True))
    own, *others = [net.network_address + h for h in hosts]
    ip = ipaddress.ip_address
    nbma_base = ip("198.18.0.0") if draw(st.booleans()) else ip("2001:db8:ffff::")
    nbmas = [nbma_base + n for n in draw(st.lists(st.integers(1, 60000), min_size=9,
                                                  max_size=9, unique=True))]
    own_nbma = nbmas.pop(0)
    nhs = []
    for _ in range(draw(st.integers(0, 3))):
        dynamic = draw(st.booleans()) or not others
        tip = None if dynamic else others.pop()
        nhs.append(C.NhsConfig(tip, nbmas.pop(), draw(st.integers(0, 255))))
    maps = tuple(C.MapConfig(others.pop(), draw(st.sampled_from(nbmas)))
                 for _ in range(draw(st.integers(0, len(others)))))
    role = draw(st.sampled_from(["spoke", "both"])) if nhs else "hub"
    targets = ["dynamic"] + ["nhs"] * bool(nhs) + nbmas[:2]
    multicast = tuple(draw(st.lists(st.sampled_from(targets), unique=True, max_size=4)))
    name = draw(st.from_regex(r"[a-z][a-z0-9.-]{0,11}", fullmatch=True))
    words = st.text(min_size=1, max_size=8).filter(
        lambda s: len(s.encode()) <= 8 and _no_space(s))
    path = st.from_regex(r"/[A-Za-z0-9_./ -]{1,40}", fullmatch=True)
    ipsec = draw(st.none() | st.builds(
        C.IpsecConfig, profile=st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
        required=st.booleans(),
        psk=st.text(st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")),
                    min_size=1, max_size=30).filter(str.isprintable),
        ca_certificate=st.none() | path,
        proposals=st.lists(st.sampled_from(["aes256-sha256-modp2048", "aes256gcm16",
                                            "chacha20poly1305-prfsha256-x25519"]),
                           max_size=2).map(tuple)))
    if ipsec is not None and draw(st.booleans()):
        ipsec = replace(ipsec, psk=None, certificate=draw(path), private_key=draw(path),
                        esp_proposals=ipsec.proposals[:1])
    if ipsec is not None:
        ident = st.text(min_size=1, max_size=40).filter(
            lambda s: s.strip() and s.isprintable() and len(s.encode()) <= 255)
        subnets = [net] + list(net.subnets(new_prefix=min(net.prefixlen + 2,
                                                          net.max_prefixlen)))[:3]
        ids = draw(st.lists(ident, unique=True, max_size=3))
        identities = tuple(C.IdentityConfig(i, tuple(draw(st.lists(
            st.sampled_from(subnets), min_size=1, max_size=3)))) for i in ids)
        bind = draw(st.sampled_from(["tunnel-address", "none"] + ["table"] * bool(ids)))
        ipsec = replace(ipsec, local_id=draw(st.none() | ident), bind=bind,
                        vici_socket=draw(st.sampled_from(
                            [C.DEFAULT_VICI_SOCKET, "unix:///run/xdmvpn/charon/a b.vici"])),
                        identities=identities)
    return C.NodeConfig(
        role=role,
        tunnel=C.TunnelConfig(
            address=ipaddress.ip_interface((own, net.prefixlen)),
            source_interface=draw(st.from_regex(r"[a-z][a-z0-9.@_-]{0,14}", fullmatch=True)),
            name=name, source_address=draw(st.none() | st.just(own_nbma)),
            key=draw(st.none() | st.integers(0, 2**32 - 1)), mtu=draw(st.integers(576, 9000)),
            adjust_mss=draw(st.none() | st.integers(536, 9000)),
            ttl=draw(st.integers(0, 255)), df=draw(st.sampled_from([True, False, "inherit"]))),
        nhrp=C.NhrpConfig(
            network_id=draw(st.integers(1, 2**32 - 1)), holdtime=draw(st.integers(1, 65535)),
            authentication=draw(st.none() | words), redirect=draw(st.booleans()),
            shortcut=draw(st.booleans()), registration_no_unique=draw(st.booleans()),
            multicast=multicast,
            max_send=C.MaxSend(draw(st.integers(1, 65535)), draw(st.integers(1, 65535))),
            nhs=tuple(nhs), maps=maps),
        control=C.ControlConfig(draw(st.just(f"/run/xdmvpn/{name}.sock") | path), name),
        metrics=C.MetricsConfig(draw(st.sampled_from([None, "127.0.0.1:9351", "[::1]:1",
                                                      "192.0.2.1:65535"])),
                                draw(st.booleans()), draw(st.integers(1, 100000))),
        ipsec=ipsec,
    )


@settings(max_examples=300, deadline=None)
@given(node_configs())
def test_render_toml_round_trips(cfg):
    text = render_toml(cfg)
    assert loads(text) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


@settings(max_examples=100, deadline=None)
@given(node_configs())
def test_key_lines_agree_with_rendered_text(cfg):
    text = render_toml(cfg)
    lines, rows = KeyLines(text), text.split("\n")     # TOML ends lines at \n only

    def walk(value, path):
        if isinstance(value, dict):
            for key, inner in value.items():
                row = rows[lines.line_of(path + (key,)) - 1]
                assert f"{key} = " in row or f"[{key}]" in row or f".{key}]" in row, (path, key)
                walk(inner, path + (key,))
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                walk(inner, path + (i,))
    walk(tomllib.loads(text), ())


# --- the command line -------------------------------------------------------------------

def _run(argv):
    parser = argparse.ArgumentParser(prog="xdmvpn")
    config_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_check_ok(capsys):
    hub, spoke = str(EXAMPLES / "hub.toml"), str(EXAMPLES / "spoke1.toml")
    assert _run(["config", "check", hub, spoke]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{hub}: ok (hub, tunnel dmvpn0 172.16.253.134/29, 0 nhs, 0 maps)",
                   f"{spoke}: ok (spoke, tunnel dmvpn0 172.16.253.129/29, 1 nhs, 0 maps)"]


def test_cli_check_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + '[nhrp]\nholdtime = "300s"\n')
    good = str(EXAMPLES / "hub.toml")
    assert _run(["config", "check", str(bad), good]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f'{bad}:5: nhrp.holdtime: must be an integer 1..65535 seconds, '
                            'got "300s"\n')
    assert captured.out.startswith(f"{good}: ok (hub,")


def test_cli_show(tmp_path, capsys):
    spoke = EXAMPLES / "spoke1.toml"
    assert _run(["config", "show", "--json", str(spoke)]) == 0
    assert json.loads(capsys.readouterr().out) == load(spoke).to_dict()
    assert _run(["config", "show", str(spoke)]) == 0
    assert loads(capsys.readouterr().out) == load(spoke)
    assert _run(["config", "show", str(tmp_path / "none.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        _run(["config", "check", "--help"])
    assert "\nexamples:\n" in capsys.readouterr().out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xdmvpn", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_through_the_real_command(tmp_path):
    # Needs "xdmvpn.cli.config_cmd" in COMMAND_MODULES of xdmvpn/cli/main.py.
    from xdmvpn.cli.main import COMMAND_MODULES
    assert "xdmvpn.cli.config_cmd" in COMMAND_MODULES, "register config_cmd in cli/main.py"
    res = run_cli("config", "check", str(EXAMPLES / "spoke1.toml"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith("ok (spoke, tunnel dmvpn0 172.16.253.129/29, 1 nhs, 0 maps)\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "mtu = 100\n")
    res = run_cli("config", "check", str(bad))
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == f"{bad}:4: tunnel.mtu: must be an integer 576..9000, got 100\n"


# --- input the TOML parser itself cannot take -------------------------------------------

NESTED = {
    "arrays": "x = " + "[" * 3000 + "]" * 3000,
    "inline_tables": "x = " + "{ a = " * 2000 + "1" + " }" * 2000,
    "array_in_a_known_key": "[nhrp]\nmulticast = " + "[" * 5000 + "]" * 5000,
    # valid TOML tomllib reads in 0.6 s; the key-line scan took 5.6 s and 1.6 GB on it
    "dotted_header": "[" + ".".join(["a"] * 20_000) + "]",
    "dotted_key": "x" + ".x" * 20_000 + " = 1",
    "arrays_17": "x = " + "[" * 17 + "]" * 17,
}


@pytest.mark.parametrize("case", NESTED)
def test_deeply_nested_toml_is_one_line_and_exit_2(tmp_path, case):
    path = tmp_path / "deep.toml"
    path.write_text(BASE + NESTED[case] + "\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == (f"{path}: TOML nested too deeply (tables, arrays or keys "
                              "inside each other): not a node configuration")
    for argv in (("config", "check", str(path)), ("run", "--config", str(path))):
        res = run_cli(*argv)
        assert res.returncode == 2, res.stderr
        assert res.stdout == "" and res.stderr.count("\n") == 1, res.stderr[:500]
        if argv[0] == "run" and os.geteuid() != 0:     # run asks for root before reading
            assert "needs root" in res.stderr
        else:
            assert "TOML nested too deeply" in res.stderr


def test_values_tomllib_refuses_past_the_syntax_are_one_line(tmp_path):
    path = tmp_path / "long.toml"
    path.write_text(BASE + "[nhrp]\nholdtime = " + "1" * 5000 + "\n")
    res = run_cli("config", "check", str(path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr[:500]
    assert res.stderr.startswith(f"{path}: TOML value not readable: ")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "too_large"])
def test_a_config_that_is_no_regular_file_or_too_large_is_refused_at_once(tmp_path, kind):
    """A FIFO hung `config check` and a daemon's reload (SIGHUP); /dev/zero filled memory:
    each is one line and exit 2 now, at once."""
    path = tmp_path / "node.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text(BASE + "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert "\n" not in str(err.value)
    assert ("larger than 1 MiB" if kind == "too_large" else "not a regular file") \
        in str(err.value)
    res = run_cli("config", "check", str(path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr[:300]
