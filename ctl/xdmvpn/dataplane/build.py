"""Compile the BPF C under bpf/ with bcc: configuration as -D flags.

bcc rewrites map accesses (``map.lookup(&k)``) only in its main source text,
so the project's own ``#include "xdmvpn_*.h"`` lines are inlined here and
bcc is handed one text.  System includes (``<uapi/...>``) stay as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import ipaddress
import os
import re
import tempfile
from pathlib import Path

from ..errors import XdmvpnError
from .abi import IPSEC_PROGRAMS, TC_PROGRAMS, XDP_PROGRAMS, DfMode, in6

_INCLUDE = re.compile(r'^\s*#\s*include\s+"(xdmvpn_[A-Za-z0-9_]+\.[ch])"\s*$', re.M)


def bpf_dir() -> Path:
    """bpf/ of the source tree, or $XDMVPN_BPF_DIR."""
    env = os.environ.get("XDMVPN_BPF_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "bpf" / "xdmvpn_maps.h"
        if cand.exists():
            return cand.parent
    raise XdmvpnError("cannot find the BPF sources (bpf/xdmvpn_maps.h): set XDMVPN_BPF_DIR")


def source_text(main_files=("xdmvpn_xdp.c", "xdmvpn_tc.c"), directory: Path | None = None) -> str:
    """The programs as one text with our headers inlined once each."""
    directory = directory or bpf_dir()
    return inline("\n".join(f'#include "{f}"' for f in main_files), directory)


def inline(text: str, directory: Path | None = None) -> str:
    """text with every `#include "xdmvpn_*.h"` (recursively) replaced by the file,
    each file once."""
    directory = directory or bpf_dir()
    seen: set[str] = set()

    def expand(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        return _INCLUDE.sub(lambda m: expand(m.group(1)), (directory / name).read_text())

    return _INCLUDE.sub(lambda m: expand(m.group(1)), text)


def _mac_int(mac: str | bytes | None) -> int:
    if not mac:
        return 0
    if isinstance(mac, (bytes, bytearray)):
        return int.from_bytes(mac, "big")
    return int(mac.replace(":", ""), 16)


# df as accepted: the config's true/false/"inherit" and the older set/clear names.
_DF = {True: DfMode.SET, False: DfMode.CLEAR, "inherit": DfMode.INHERIT, "set": DfMode.SET,
       "clear": DfMode.CLEAR, "true": DfMode.SET, "false": DfMode.CLEAR}


def df_code(df) -> DfMode:
    """XDMVPN_DF for a df setting: clear, set, or copy the inner packet's DF."""
    try:
        return _DF[df.lower() if isinstance(df, str) else df]
    except (KeyError, TypeError):
        raise XdmvpnError(f'df must be true, false or "inherit" (or set/clear), '
                          f"not {df!r}") from None


def _int_in(name: str, value, lo: int, hi: int, note: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise XdmvpnError(f"{name} must be an integer {lo}..{hi}{note}, not {value!r}")
    return value


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise XdmvpnError(f"{name} must be a positive number, not {value!r}")
    return value


def _budget(name: str, packets, every, most: int) -> tuple[int, int]:
    """(ns per packet, burst) of an NHRP budget of `packets` every `every` seconds."""
    packets = _int_in(f"{name} packets", packets, 1, most)
    every = _positive(f"{name} interval (seconds)", every)
    return max(int(every * 1e9 / packets), 1), packets


@dataclasses.dataclass
class DataplaneConfig:
    """Per-tunnel settings that become -D flags (see bpf/xdmvpn_consts.h).
    Defaults follow the node configuration (ctl/xdmvpn/config.py)."""

    local_nbma: str = "0.0.0.0"       # own NBMA address, IPv4 or IPv6
    local_nbma6: str | None = None    # own IPv6 NBMA address besides an IPv4 local_nbma
    underlay_ifindex: int = 0
    overlay_ifindex: int = 0          # dmvpn0-dp
    tunnel_ifindex: int = 0           # dmvpn0 (0: no kernel-route fallback in encap)
    overlay_mac: str | bytes | None = None     # dmvpn0
    overlay_dp_mac: str | bytes | None = None  # dmvpn0-dp
    gre_key: int | None = None
    redirect: bool = False
    trigger_interval_ms: int = 1000
    ttl: int = 64                     # outer TTL; 0: copy the inner packet's
    df: bool | str = True             # True/"set", False/"clear", "inherit"
    adjust_mss: int = 0
    nhrp_max_send: int = 100          # packets ...
    nhrp_max_send_every: float = 10   # ... every this many seconds, per source
    nhrp_unknown_budget: int = 10000  # packets ...
    nhrp_unknown_every: float = 1     # ... every this many seconds, all unknown sources
    nexthop_cache_ms: int = 1000      # age of a cached underlay next hop
    ipsec: bool = False               # check xdmvpn_ipsec_peers, build xdmvpn_tc_guard
    pin_dir: str | None = None
    bench: bool = False
    bench_len: int = 0
    test_clock: bool = False          # tests: the programs read their clock from a map

    def cflags(self) -> list[str]:
        ttl = _int_in("ttl", self.ttl, 0, 255, " (0: inherit)")
        if self.gre_key is not None:
            _int_in("GRE key", self.gre_key, 0, 0xFFFFFFFF)
        df = df_code(self.df)
        cost, burst = _budget("nhrp max-send", self.nhrp_max_send, self.nhrp_max_send_every,
                              65535)
        unknown_cost, unknown_burst = _budget("nhrp unknown budget", self.nhrp_unknown_budget,
                                              self.nhrp_unknown_every, 1_000_000)
        mss = _int_in("adjust-mss", int(self.adjust_mss or 0), 0, 65535)
        for name in ("trigger_interval_ms", "nexthop_cache_ms"):
            _int_in(name.replace("_", "-"), getattr(self, name), 1, 3600_000)
        local, local6 = local_nbma_pair(self.local_nbma, self.local_nbma6)
        flags = {
            "XDMVPN_LOCAL_NBMA": f"{int(local)}U",
            "XDMVPN_HAS_NBMA6": "1" if local6 else "0",
            "XDMVPN_UNDERLAY_IFINDEX": str(self.underlay_ifindex),
            "XDMVPN_OVERLAY_IFINDEX": str(self.overlay_ifindex),
            "XDMVPN_TUNNEL_IFINDEX": str(self.tunnel_ifindex),
            "XDMVPN_IPSEC": "1" if self.ipsec else "0",
            "XDMVPN_OVERLAY_MAC": f"{_mac_int(self.overlay_mac):#x}ULL",
            "XDMVPN_OVERLAY_DP_MAC": f"{_mac_int(self.overlay_dp_mac):#x}ULL",
            "XDMVPN_HAS_KEY": "1" if self.gre_key is not None else "0",
            "XDMVPN_GRE_KEY": f"{self.gre_key or 0}U",
            "XDMVPN_REDIRECT": "1" if self.redirect else "0",
            "XDMVPN_TRIGGER_INTERVAL_NS": f"{int(self.trigger_interval_ms) * 1000000}ULL",
            "XDMVPN_NH_CACHE_NS": f"{int(self.nexthop_cache_ms) * 1000000}ULL",
            "XDMVPN_TTL": str(ttl),
            "XDMVPN_DF": str(int(df)),
            "XDMVPN_ADJUST_MSS": str(mss),
            "XDMVPN_NHRP_COST_NS": f"{cost}ULL",
            "XDMVPN_NHRP_BURST": f"{burst}ULL",
            "XDMVPN_NHRP_UNKNOWN_COST_NS": f"{unknown_cost}ULL",
            "XDMVPN_NHRP_UNKNOWN_BURST": f"{unknown_burst}ULL",
            "XDMVPN_TEST_CLOCK": "1" if self.test_clock else "0",
        }
        if local6:
            for i, w in enumerate(in6(local6).w):
                flags[f"XDMVPN_LOCAL_NBMA6_W{i}"] = f"{w:#x}U"
        out = [f"-D{k}={v}" for k, v in flags.items()]
        if self.pin_dir:
            out.append(f'-DXDMVPN_PIN_DIR="{self.pin_dir}"')
        if self.bench:
            out += ["-DXDMVPN_BENCH=1", f"-DXDMVPN_BENCH_LEN={int(self.bench_len)}"]
        out.append("-Wno-unused-function")
        return out


def local_nbma_pair(local_nbma, local_nbma6=None) -> tuple[
        ipaddress.IPv4Address, ipaddress.IPv6Address | None]:
    """(IPv4 NBMA address or 0.0.0.0, IPv6 NBMA address or None) of a node whose
    local_nbma is of either family, local_nbma6 (optional) an IPv6 one besides."""
    try:
        first = ipaddress.ip_address(str(local_nbma))
        second = ipaddress.ip_address(str(local_nbma6)) if local_nbma6 else None
    except ValueError as exc:
        raise XdmvpnError(f"local NBMA address: {exc}") from None
    if second is not None and (second.version != 6 or first.version != 4):
        raise XdmvpnError(f"local NBMA addresses: one IPv4 and one IPv6 (local-nbma "
                          f"{first}, local-nbma6 {second})")
    if first.version == 6:
        return ipaddress.IPv4Address(0), first
    return first, second


def check_environment(bcc: bool = True) -> None:
    """One-line errors for the usual reasons bcc cannot work here; bcc=False: whether
    it is installed, without importing it (for a process that compiles in a child)."""
    if os.geteuid() != 0:
        raise XdmvpnError("the data plane needs root (BPF programs, XDP, tc): run as root")
    release = os.uname().release
    build = Path(f"/lib/modules/{release}/build")
    if not (build / "include").exists() and not (build / "Makefile").exists():
        raise XdmvpnError(
            f"kernel headers missing for {release}: install linux-headers-amd64 and link "
            f"/lib/modules/{release}/build and .../source to /usr/src/linux-headers-*"
        )
    missing = (
        "bcc is not importable: apt-get install python3-bpfcc and run with "
        "/usr/bin/python3 or a venv made with --system-site-packages")
    if not bcc:
        if importlib.util.find_spec("bcc") is None:
            raise XdmvpnError(missing)
        return
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        raise XdmvpnError(missing) from exc


@contextlib.contextmanager
def capture_stderr():
    """Capture C-level stderr (bcc prints compiler and verifier output there)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        box: dict[str, str] = {}
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box["text"] = tmp.read().decode(errors="replace")


def compile_bpf(config: DataplaneConfig, main_files=("xdmvpn_xdp.c", "xdmvpn_tc.c")):
    """A bcc.BPF module for config.  Raises XdmvpnError with bcc's message."""
    return compile_text(source_text(main_files), config.cflags())


def compile_text(text: str, cflags: list[str]):
    """A bcc.BPF module from C text (our headers inlined, see source_text).  Raises
    XdmvpnError with the compiler's first error line."""
    check_environment()
    from bcc import BPF

    with capture_stderr() as err:
        try:
            module = BPF(text=text.encode(), cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception
            module = None
            failure = exc
    if module is None:
        lines = [l for l in err.get("text", "").splitlines() if "error" in l]
        detail = lines[0].strip() if lines else str(failure)
        raise XdmvpnError(f"BPF compile failed: {detail}")
    return module


def load_program(module, name: str, prog_type, with_log: bool = False):
    """Load one function; verifier rejections become XdmvpnError (first line)."""
    with capture_stderr() as err:
        try:
            fn = module.load_func(name.encode(), prog_type)
        except Exception as exc:
            fn = None
            failure = exc
    if fn is None:
        text = err.get("text", "")
        lines = [l for l in text.splitlines() if l.strip()]
        raise XdmvpnError(f"kernel rejected BPF program {name}: {failure}; verifier: "
                          f"{' | '.join(lines[-3:])}")
    return fn


def load_programs(module, extra: dict | None = None, ipsec: bool = False) -> dict:
    """Load every data-plane program of module (plus extra {name: bcc type}, plus
    the underlay egress guard when compiled with ipsec) and fill the tail-call
    arrays, targets before the programs that call them.  Returns {name: bcc function}."""
    from bcc import BPF

    if ipsec:
        extra = dict(extra or {}, **{name: BPF.SCHED_CLS for name in IPSEC_PROGRAMS})
    progs = {}
    for table, names, kind in ((b"xdmvpn_xdp_progs", XDP_PROGRAMS, BPF.XDP),
                               (b"xdmvpn_progs", TC_PROGRAMS, BPF.SCHED_CLS)):
        arr = module[table]
        for name, slot in names.items():
            progs[name] = load_program(module, name, kind)
            if slot is not None:
                arr[arr.Key(int(slot))] = arr.Leaf(progs[name].fd)
    for name, kind in (extra or {}).items():
        progs[name] = load_program(module, name, kind)
    return progs
