"""The layout the project keeps: the product package (ctl/xdmvpn) holds product code only,
benchmarks and measurement harnesses live in xdmvpn_bench (bench/), and the shared helpers
(namespaces, ping, checksum, libbpf loader, address types) exist once each."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from util import REPO, run_cli
from xdmvpn.cli.bench import BENCHES

PRODUCT = REPO / "ctl" / "xdmvpn"
HARNESS_NAMES = re.compile(r"bench.*|testrun|forwarding|packets")


def python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py")
                  if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_product_never_imports_the_benchmarks():
    offenders = {str(p.relative_to(REPO)): sorted(m for m in imported_modules(p)
                                                  if m.split(".")[0] == "xdmvpn_bench")
                 for p in python_files(PRODUCT)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_product_has_no_benchmark_or_harness_module():
    names = [str(p.relative_to(PRODUCT)) for p in PRODUCT.rglob("*")
             if "__pycache__" not in p.parts
             and HARNESS_NAMES.fullmatch(p.stem if p.suffix == ".py" else p.name)]
    # cli/bench.py is the `xdmvpn bench` command: it imports a benchmark by name when asked
    assert names == ["cli/bench.py"], "benchmarks and harnesses belong in bench/xdmvpn_bench"


def test_every_product_module_imports_without_the_benchmark_package():
    """The product works where xdmvpn_bench is not installed (a wheel of the product)."""
    code = ("import importlib, pkgutil, sys\n"
            "sys.modules['xdmvpn_bench'] = None\n"
            "import xdmvpn\n"
            "for m in pkgutil.walk_packages(xdmvpn.__path__, 'xdmvpn.'):\n"
            "    if m.name != 'xdmvpn.__main__':\n"
            "        importlib.import_module(m.name)\n"
            "print(len(sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]


def _defining(pattern: str, roots=(REPO / "ctl", REPO / "bench", REPO / "tests")) -> set[str]:
    rx = re.compile(pattern, re.M)
    return {str(p.relative_to(REPO)) for p in python_files(*roots) if rx.search(p.read_text())}


def test_shared_helpers_exist_once():
    # one libbpf loader, one libc (setns for the namespace helpers, sendmmsg and recvmmsg
    # for mmsg, prctl for the loader child)
    assert _defining(r"ctypes\.CDLL\(") == {"ctl/xdmvpn/dataplane/libbpf.py",
                                            "ctl/xdmvpn/libc.py"}
    # one RFC 1071 checksum: the carry fold appears once
    assert _defining(r"\(\w+ & 0xFFFF\) \+ \(\w+ >> 16\)") == {"ctl/xdmvpn/inet.py"}
    # one way into a namespace from Python, one raw-socket pinger
    assert _defining(r"\bsetns\(") == {"ctl/xdmvpn/netns.py"}
    assert _defining(r"socket\.IPPROTO_ICMP\b") == {"ctl/xdmvpn/pinger.py"}
    # address aliases come from xdmvpn.inet
    assert _defining(r"^IP(Address|Network|Interface) = ") == {"ctl/xdmvpn/inet.py"}
    # the lab, the daemon tests and the benchmarks attach one XDP pass program (lab/xdp.py)
    assert _defining(r"xdp_md \*\w+\) \{ return XDP_PASS") == set()


def test_an_unknown_benchmark_is_one_line():
    for name in ("nosuch", "testrun"):                 # testrun: a harness, not a benchmark
        res = run_cli("bench", name, "--json")
        assert res.returncode == 2 and res.stdout == ""
        assert res.stderr == (f"xdmvpn: error: bench: no benchmark {name!r} (one of: "
                              f"{', '.join(sorted(BENCHES))})\n")


def test_a_missing_benchmark_package_is_one_line():
    code = ("import sys\nsys.modules['xdmvpn_bench'] = None\n"
            "from xdmvpn.cli.main import main\nsys.exit(main(['bench', 'codec']))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert res.stderr == ("xdmvpn: error: bench codec: the benchmark package xdmvpn_bench "
                          "is not installed (it comes with a checkout: ./setup.sh)\n")
