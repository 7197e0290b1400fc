"""The set-up and CI entry points agree with what the README tells a newcomer.

- The README's Quick start has exactly two commands, each in its own code
  block; the second (set up, then run the whole test suite) is, verbatim, the
  last line of `.ci/run`, so CI runs what a newcomer runs.
- `setup.sh` and `.ci/run` parse (`bash -n`) and are executable (the README
  runs `./setup.sh`, CI runs `bash .ci/run`).
- `setup.sh` refuses to run as non-root with one line on stderr and exit 1.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SETUP = REPO / "setup.sh"
CI_RUN = REPO / ".ci" / "run"

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def section(markdown: str, title: str) -> str:
    """The body of the level-2 section `title`, up to the next level-2 title."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", markdown,
                  re.MULTILINE | re.DOTALL)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def quick_start_commands() -> list[str]:
    blocks = FENCE.findall(section(README.read_text(), "Quick start"))
    return [b.strip() for b in blocks]


def ci_command() -> str:
    lines = [ln.strip() for ln in CI_RUN.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return lines[-1]


def test_readme_has_two_quick_start_commands():
    cmds = quick_start_commands()
    assert len(cmds) == 2, cmds
    for cmd in cmds:
        assert "\n" not in cmd, f"one command per block: {cmd!r}"
        assert cmd.startswith("./setup.sh && "), cmd


def test_ci_runs_the_readme_test_command_verbatim():
    assert ci_command() == quick_start_commands()[1]


def test_ci_run_header():
    lines = CI_RUN.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert 'cd "$(dirname "$0")/.."' in lines


@pytest.mark.parametrize("script", [SETUP, CI_RUN], ids=["setup.sh", ".ci/run"])
def test_script_parses_and_is_executable(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.access(script, os.X_OK), f"{script.name} lost its executable bit"


def test_setup_help():
    r = subprocess.run(["bash", str(SETUP), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage:")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to drop to an unprivileged user")
def test_setup_refuses_non_root():
    # A world-readable copy: the checkout itself may sit under a 0700 directory.
    d = tempfile.mkdtemp(prefix="xdmvpn-setup-")
    try:
        os.chmod(d, 0o755)
        copy = Path(d) / "setup.sh"
        shutil.copy(SETUP, copy)
        os.chmod(copy, 0o755)
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "bash", str(copy)],
            capture_output=True, text=True, timeout=30, cwd=d)
    finally:
        shutil.rmtree(d)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "sudo ./setup.sh" in r.stderr, r.stderr
