"""The VM tier's own machinery (tests/vmtier.py, xdmvpn.lab.vm), through a pytest session
of its own on a generated test file: kernel-marked tests that cannot run here fail with
one line when no VM can boot, are left alone when deselected, and come back from one VM
boot each under its own name, with its outcome, output and reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xdmvpn.lab import vm

TESTS = Path(__file__).resolve().parent.parent

SAMPLE = '''
import os
import pytest


@pytest.mark.kernel("ip_gre")
def test_passes_in_the_vm():
    assert os.environ.get("XDMVPN_IN_VM") == "1"
    assert float(os.environ["XDMVPN_TIME_SCALE"]) >= 1


@pytest.mark.kernel("ip_gre")
def test_fails_with_its_own_output():
    print("printed inside the VM")
    assert os.uname().release == "the host's"


@pytest.mark.kernel("ip_gre")
def test_is_skipped_there():
    pytest.skip("skipped inside, with this reason")


def test_unmarked_runs_here():
    assert os.environ.get("XDMVPN_IN_VM") is None
'''


def session(tmp_path, *args, **env):
    """pytest on the sample as the suite runs (the plugin from a conftest), with
    XDMVPN_VM=always: (exit status, output)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\npytest_plugins = ['vmtier']\n")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
                        *args, "test_sample.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=1800, env=dict(os.environ, XDMVPN_VM="always", **env))
    return r.returncode, r.stdout + r.stderr


def test_without_a_vm_each_marked_test_fails_with_one_line(tmp_path):
    rc, out = session(tmp_path, "-q", XDMVPN_VM_KERNEL=str(tmp_path / "no-such-vmlinuz"))
    assert rc == 1, out
    reason = f"VM tier: cannot boot the VM: no kernel image {tmp_path}/no-such-vmlinuz"
    assert out.count(reason) >= 3, out
    assert "3 failed, 1 passed in" in out and "SKIPPED" not in out, out
    assert "Traceback" not in out, out


def test_deselected_marked_tests_do_not_boot_anything(tmp_path):
    rc, out = session(tmp_path, "-q", "-m", "not kernel",
                      XDMVPN_VM_KERNEL=str(tmp_path / "no-such-vmlinuz"))
    assert rc == 0, out
    assert "1 passed, 3 deselected" in out and "VM tier" not in out, out


@pytest.mark.vm
@pytest.mark.slow
def test_one_boot_reports_every_inner_test_by_name(tmp_path):
    why = vm.unavailable()
    assert why is None, f"the VM tier cannot boot here: {why}"
    rc, out = session(tmp_path, "-v")
    assert rc == 1, out
    assert out.count("VM tier: 3 test(s) in one boot") == 1, out
    assert "1 failed, 2 passed, 1 skipped" in out, out
    for name, outcome in (("test_passes_in_the_vm", "PASSED"),
                          ("test_unmarked_runs_here", "PASSED"),
                          ("test_fails_with_its_own_output", "FAILED"),
                          ("test_is_skipped_there", "SKIPPED")):
        assert f"test_sample.py::{name} {outcome}" in out, out
    # the failure as the guest saw it: its assertion, its output, where the run's files are
    assert "assert '6.1.0-" in out and "== \"the host's\"" in out, out
    assert "printed inside the VM" in out, out
    assert "skipped inside, with this reason" in out, out
    assert "pytest output: /tmp/xdmvpn-vmtier-" in out, out
