"""The systemd unit: what setup.sh installs verifies with systemd-analyze and runs the
daemon the way a restart keeps forwarding (the behaviour itself: tests/daemon)."""

import shutil
import subprocess
import sys

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


def test_the_daemon_raises_its_open_files_limit():
    """1,100 idle control-socket clients exhausted a daemon started with the shell's 1,024
    open files: the unit sets LimitNOFILE, and the daemon raises its soft limit itself
    (within the hard one) when started by hand."""
    unit = (REPO / "packaging" / "systemd" / "xdmvpn@.service").read_text()
    assert "\nLimitNOFILE=65536\n" in unit
    code = ("import resource\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
            "from xdmvpn.daemon.service import OPEN_FILES, raise_open_files\n"
            "got = raise_open_files()\n"
            "assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == got\n"
            "print(got, OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    got, want = out.stdout.split()
    assert got == want and int(got) > 256
