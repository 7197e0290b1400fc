"""The vici messages built from the [ipsec] configuration."""

from __future__ import annotations

from ipaddress import ip_address

from xdmvpn import config as C
from xdmvpn.ipsec import conns

BASE = '[tunnel]\naddress = "172.16.0.11/24"\nsource-interface = "eth0"\n[ipsec]\n'
ME, HUB, TUN = ip_address("192.0.2.11"), ip_address("192.0.2.1"), ip_address("172.16.0.11")


def ipsec(text: str):
    return C.loads(BASE + text).ipsec


def test_psk_connection_per_peer():
    cfg = ipsec('psk = "s3cret"\nproposals = ["aes256-sha256-modp2048"]\n'
                'esp-proposals = ["aes256gcm16"]\n')
    msg = conns.connection(cfg, conns.Credentials(), ME, TUN, HUB, trap=True)
    assert list(msg) == ["dmvpn-192.0.2.1"]
    c = msg["dmvpn-192.0.2.1"]
    assert (c["version"], c["local_addrs"], c["remote_addrs"]) == ("2", ["192.0.2.11"],
                                                                    ["192.0.2.1"])
    assert (c["mobike"], c["encap"], c["keyingtries"]) == ("no", "no", "1")
    assert c["local"] == {"auth": "psk", "id": "172.16.0.11"}        # tunnel address
    assert c["remote"] == {"auth": "psk", "id": "%any"}
    assert c["proposals"] == ["aes256-sha256-modp2048"]
    child = c["children"]["dmvpn-192.0.2.1"]
    assert child == {"mode": "transport", "local_ts": ["dynamic[gre]"],
                     "remote_ts": ["dynamic[gre]"], "start_action": "trap",
                     "dpd_action": "clear", "close_action": "none",
                     "esp_proposals": ["aes256gcm16"]}
    assert conns.shared_key(cfg) == {"id": "xdmvpn-dmvpn", "type": "IKE", "data": b"s3cret",
                                     "owners": []}
    assert conns.initiate("dmvpn", HUB) == {"child": "dmvpn-192.0.2.1",
                                            "ike": "dmvpn-192.0.2.1", "timeout": "-1"}


def test_responder_never_traps_and_no_trap_without_esp():
    cfg = ipsec('psk = "s"\nprofile = "hq"\nlocal-id = "spoke1.example.net"\n')
    responder = conns.connection(cfg, conns.Credentials(), ME, TUN, None, trap=True)["hq"]
    assert responder["remote_addrs"] == ["%any"]
    assert responder["children"]["hq"]["start_action"] == "none"
    assert responder["local"]["id"] == "spoke1.example.net"
    peer = conns.connection(cfg, conns.Credentials(), ME, TUN, HUB, if_id=7)["hq-192.0.2.1"]
    assert peer["children"]["hq-192.0.2.1"]["start_action"] == "none"
    assert peer["children"]["hq-192.0.2.1"]["if_id_in"] == "7"
    assert "proposals" not in peer and "esp_proposals" not in peer["children"]["hq-192.0.2.1"]
    assert conns.is_ours("hq", "hq") and conns.is_ours("hq", "hq-192.0.2.1")
    assert not conns.is_ours("hq", "hqx") and not conns.is_ours("hq", "dmvpn")


def test_certificates(tmp_path):
    for name in ("node.crt", "node.key", "ca.crt"):
        (tmp_path / name).write_bytes(f"-----PEM {name}-----\n".encode())
    cfg = ipsec(f'certificate = "{tmp_path}/node.crt"\nprivate-key = "{tmp_path}/node.key"\n'
                f'ca-certificate = "{tmp_path}/ca.crt"\n')
    creds = conns.Credentials.read(cfg)
    c = conns.connection(cfg, creds, ME, TUN, HUB)["dmvpn-192.0.2.1"]
    assert c["local"] == {"auth": "pubkey", "certs": [b"-----PEM node.crt-----\n"]}
    assert c["remote"] == {"auth": "pubkey", "id": "%any",
                           "cacerts": [b"-----PEM ca.crt-----\n"]}
    assert conns.shared_key(cfg) is None
    assert [(cmd, m["type"], m.get("flag")) for cmd, m in conns.certificates(creds)] == [
        ("load-cert", "x509", "ca"), ("load-cert", "x509", "none"), ("load-key", "any", None)]


def test_unreadable_certificate_is_one_line(tmp_path):
    cfg = ipsec(f'certificate = "{tmp_path}/none.crt"\nprivate-key = "{tmp_path}/k"\n')
    try:
        conns.Credentials.read(cfg)
    except Exception as exc:
        assert str(exc) == f"ipsec: cannot read {tmp_path}/none.crt (No such file or directory)"
    else:
        raise AssertionError("no error")
