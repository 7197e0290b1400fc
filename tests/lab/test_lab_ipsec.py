"""`xdmvpn lab up --ipsec`: a real strongSwan charon in every node's namespace, the daemons
bring IKE up hub <-> spokes; `xdmvpn lab metrics NODE` shows it as dmvpn_ipsec_sas, and
charon itself (swanctl over the node's vici socket) agrees; `lab down` stops the charons.
This kernel has no esp4: IKE runs, ESP SAs cannot be installed (tests/ipsec/test_esp.py)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from labutil import cli, remove_stale_test_labs, unique_name
from util import need_root
from xdmvpn.ipsec.charon import default_socket
from xdmvpn.lab import manage
from xdmvpn.lab.topology import STATE_ROOT

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    need_root()
    remove_stale_test_labs()
    name = unique_name("s")
    manage.down(name)
    out = cli(name, "lab", "up", "--ipsec", "--spokes", "2", "--timeout", "90")
    try:
        assert out.returncode == 0, out.stderr
        yield name
    finally:
        manage.down(name)


def ipsec_sas(name: str, node: str) -> dict:
    out = cli(name, "lab", "metrics", node, "--match", "dmvpn_ipsec_sas")
    assert out.returncode == 0, out.stderr
    return {m[0]: float(m[1]) for m in
            re.findall(r'^dmvpn_ipsec_sas\{state="(\w+)"\} (\S+)$', out.stdout, re.M)}


def charon_established(name: str, node: str) -> int:
    sock = default_socket(f"{name}-{node}")
    out = subprocess.run(["swanctl", "--list-sas", "--uri", f"unix://{sock}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return len(re.findall(r"ESTABLISHED", out.stdout))


def wait(pred, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    return pred()


def test_ike_up_between_the_hub_and_every_spoke_seen_by_metrics_and_charon(lab):
    hub = wait(lambda: (lambda s: s if s.get("up") == 2 else None)(ipsec_sas(lab, "hub")), 60)
    assert hub == {"up": 2, "connecting": 0, "down": 0}, ipsec_sas(lab, "hub")
    assert charon_established(lab, "hub") == 2
    for spoke in ("spoke1", "spoke2"):
        assert ipsec_sas(lab, spoke)["up"] >= 1
        assert charon_established(lab, spoke) >= 1


def test_metrics_is_the_whole_scrape_and_errors_are_one_line(lab):
    out = cli(lab, "lab", "metrics", "spoke1")
    assert out.returncode == 0, out.stderr
    assert 'dmvpn_nhs_up{family="ipv4",interface="dmvpn0",nhs="192.0.2.1"} 1.0' in out.stdout
    assert "dmvpn_build_info" in out.stdout
    bad = cli(lab, "lab", "metrics", "spoke9")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "no node 'spoke9'" in bad.stderr


def running(pid: int) -> bool:
    """Alive and not a zombie (the CLI that started it is gone: init reaps it later)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_down_stops_every_charon(lab):
    state = Path(STATE_ROOT) / lab
    pids = [int((d / "charon.pid").read_text()) for d in sorted(state.glob("charon-*"))]
    assert len(pids) == 3 and all(running(p) for p in pids)
    out = cli(lab, "lab", "down")
    assert out.returncode == 0, out.stderr
    assert "3 charons" in out.stdout, out.stdout
    assert not any(running(p) for p in pids)
    assert not any(os.path.exists(default_socket(f"{lab}-{n}"))
                   for n in ("hub", "spoke1", "spoke2"))
