"""Every usage error of the command line is one line on stderr and exit 2 (argparse
prints its usage block first by default: 2 to 5 lines)."""

import pytest
from util import run_cli

BAD = [
    ("show", "bogus"), ("show",), ("clear",), ("run",), ("--log-level", "bogus"),
    ("lab", "bogus"), ("lab", "ping"), ("lab", "up", "--family", "ipv5"),
    ("lab", "config", "--spokes", "abc"), ("bench", "codec", "--bogus"), ("--bogus",), (),
    ("config", "check"), ("decode",),
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "nothing")
def test_a_usage_error_is_one_line_and_exit_2(argv):
    res = run_cli(*argv)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stdout == "" and res.stderr.count("\n") == 1, res.stderr
    assert "error:" in res.stderr and "--help" in res.stderr and "Traceback" not in res.stderr
