"""`xdmvpn lab up --family ipv6|dual --nbma ipv4|ipv6`: the demo's story with IPv6 LANs
(first packets via the hub, then direct over the phase-3 shortcut), real daemons, real
namespaces and BPF; `show ipv6 nhrp ...` in a node."""

from __future__ import annotations

import json

import pytest

from labutil import cli, remove_stale_test_labs, unique_name
from util import need_root
from xdmvpn.lab import manage

pytestmark = [pytest.mark.root, pytest.mark.slow]

LABS = {"v6over4": ("ipv6", "ipv4", "v"), "dualover6": ("dual", "ipv6", "w")}


@pytest.fixture(scope="module", params=list(LABS))
def lab(request):
    need_root()
    remove_stale_test_labs()
    family, nbma, tag = LABS[request.param]
    name = unique_name(tag)
    manage.down(name)
    out = cli(name, "lab", "up", "--spokes", "2", "--timeout", "90", "--family", family,
              "--nbma", nbma)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        yield name, family, nbma, out.stdout
    finally:
        manage.down(name)


def test_up_prints_the_ipv6_addresses(lab):
    name, family, nbma, stdout = lab
    spoke2 = next(line.split() for line in stdout.splitlines() if line.startswith("spoke2"))
    assert spoke2[2] == ("192.0.2.12" if nbma == "ipv4" else "2001:db8:ff::c")
    assert "2001:db8:100::c" in spoke2 and "2001:db8:1:2::/64" in spoke2
    assert "2001:db8:1:2::a" in spoke2


def test_ipv6_ping_goes_via_the_hub_then_direct(lab):
    name, family, nbma, _ = lab
    out = cli(name, "lab", "ping", "spoke1", "spoke2", "--count", "8", "--interval", "0.3",
              "--family", "ipv6", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    packets, summary = lines[:-1], lines[-1]["summary"]
    assert summary["src"] == "2001:db8:1:1::a" and summary["dst"] == "2001:db8:1:2::a"
    paths = [p["path"] for p in packets]
    assert paths[0] == "hub" and packets[0]["hub_forwarded"] >= 2, paths
    assert paths[-1] == "direct", paths
    assert set(paths[paths.index("direct"):]) == {"direct"}, paths
    assert summary["sent"] == summary["received"] == 8
    out = cli(name, "lab", "exec", "spoke1", "--", "xdmvpn", "show", "ipv6", "nhrp",
              "shortcut", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["type"], r["prefix"], r["via"]) for r in rows] == [
        ("dynamic", "2001:db8:1:2::/64", "2001:db8:100::c")]


def test_every_family_registered(lab):
    name, family, nbma, _ = lab
    out = cli(name, "lab", "status", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    nodes = {n["node"]: n for n in json.loads(out.stdout)["nodes"]}
    per_spoke = 2 if family == "dual" else 1
    assert nodes["hub"]["registered"] == 2 * per_spoke
    assert [n["state"] for n in nodes["spoke1"]["nhs"]] == ["up"] * per_spoke
    if family == "dual":
        out = cli(name, "lab", "ping", "spoke2", "spoke1", "--count", "4", "--interval",
                  "0.3", "--family", "ipv4", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
