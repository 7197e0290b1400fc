"""Static checks as part of the suite (so `.ci/run` runs them): ruff over all Python code,
mypy --strict over the parts that must stay typed throughout (the codec, the engine and the
state view that show and the exporter read)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Packages held to mypy --strict: pure code whose types are its documentation.
STRICT = ["ctl/xdmvpn/nhrp", "ctl/xdmvpn/inet.py", "ctl/xdmvpn/engine", "ctl/xdmvpn/view.py"]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    rc = _run(str(BIN / "ruff"), "check", "ctl", "bench", "tests")
    assert rc.returncode == 0, rc.stdout + rc.stderr


def test_mypy_strict_on_the_codec_and_engine():
    rc = _run(sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *STRICT)
    assert rc.returncode == 0, rc.stdout + rc.stderr
