"""The systemd unit: what setup.sh installs verifies with systemd-analyze and runs the
daemon the way a restart keeps forwarding (the behaviour itself: tests/daemon)."""

import shutil
import subprocess

from util import REPO

UNIT = REPO / "packaging/systemd/xdmvpn@.service"


def rendered(tmp_path):
    """The unit as setup.sh writes it (same substitutions), as an instance file."""
    text = UNIT.read_text().replace("@VENV@", str(REPO / ".venv")).replace("@REPO@", str(REPO))
    out = tmp_path / "xdmvpn@dmvpn0.service"
    out.write_text(text)
    return out, text


def test_setup_renders_the_unit_the_way_this_test_does():
    setup = (REPO / "setup.sh").read_text()
    assert 's|@VENV@|$ROOT/.venv|g' in setup and 's|@REPO@|$ROOT|g' in setup
    assert "packaging/systemd/xdmvpn@.service" in setup


def test_unit_verifies_and_keeps_forwarding_across_restarts(tmp_path):
    path, text = rendered(tmp_path)
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (Debian: systemd)"
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln and
                 not ln.startswith("#"))
    assert "strongswan.service" in lines["After"].split()
    assert lines["ExecStart"].endswith("run --config /etc/xdmvpn/%i.toml --keep-dataplane")
    assert lines["ExecStart"].startswith(str(REPO / ".venv/bin/xdmvpn"))
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["KillSignal"] == "SIGTERM"
