"""Compile and load the programs in a short-lived child, so that bcc and LLVM never stay
resident in the daemon.

The parent (``load(config)``) runs ``python -m xdmvpn.dataplane.loader`` with the
DataplaneConfig as JSON on stdin.  The child compiles with bcc (build.py), which pins
every map under the config's pin dir (adopting maps already there), loads the programs,
fills the tail-call arrays, pins every program under <pin dir>/progs/<function name>
(replacing the previous build's, whose attachments keep them alive until they are
replaced), prints one JSON line and exits.  The parent then reaches maps and programs
through their pins (pinned.py) and attaches them (attach.py); nothing of the child stays.

The child inherits the calling thread's network and mount namespaces (the bpffs it
pins on is the caller's).  It dies with its parent (PR_SET_PDEATHSIG): a daemon stopped
while it starts (`lab down` right after `lab up`) leaves no child behind that would pin
maps after whoever stopped it removed the pins.  A failure of the child is one line: its
own error message, or the last line it wrote before it died.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from ..errors import XdmvpnError
from .pinned import PROGS_DIR

TIMEOUT = 300.0            # seconds for one compile and load (qemu without KVM is slow)
PARENT_ENV = "XDMVPN_LOADER_PARENT"     # the parent's pid, for the child's death signal
PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class LoadResult:
    programs: tuple[str, ...]     # function names pinned under <pin dir>/progs/
    compile_s: float              # in the child: bcc's compile
    load_s: float                 # in the child: verifier, tail-call arrays, pins
    child_s: float                # in the parent: the child's whole life
    child_rss_bytes: int          # the child's peak RSS: what bcc and LLVM take


def _child_env() -> dict[str, str]:
    """The caller's environment, with this copy of xdmvpn first on the path (a test run
    from the source tree, not only an installed one)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env[PARENT_ENV] = str(os.getpid())
    return env


def load(config, timeout: float = TIMEOUT) -> LoadResult:
    """Compile, load and pin the programs of config (a build.DataplaneConfig with a
    pin_dir) in a child process.  Raises XdmvpnError with one line."""
    if not config.pin_dir:
        raise XdmvpnError("the loader pins programs and maps: the config needs a pin_dir")
    request = json.dumps(_to_json(config))
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "xdmvpn.dataplane.loader"],
                              input=request, capture_output=True, text=True,
                              timeout=timeout, env=_child_env(), check=False)
    except subprocess.TimeoutExpired:
        raise XdmvpnError(f"BPF loader child took more than {timeout:g} s: killed") from None
    except OSError as exc:
        raise XdmvpnError(f"cannot start the BPF loader child: {exc}") from None
    child_s = time.monotonic() - start
    reply = _last_json(proc.stdout)
    if reply is not None and "error" in reply:
        raise XdmvpnError(str(reply["error"]))
    if proc.returncode != 0 or reply is None:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else "no output"
        raise XdmvpnError(f"BPF loader child failed (exit {proc.returncode}): {why}")
    return LoadResult(tuple(reply["programs"]), float(reply["compile_s"]),
                      float(reply["load_s"]), child_s, int(reply.get("rss_bytes", 0)))


def _to_json(config) -> dict:
    out = dataclasses.asdict(config)
    for k, v in out.items():
        if isinstance(v, (bytes, bytearray)):
            out[k] = v.hex(":")
    return out


def _last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


# ---- the child --------------------------------------------------------------------------------
def pin_programs(progs: dict, pin_dir: Path) -> list[str]:
    """Pin every loaded program (bcc functions: .fd) under pin_dir/progs/, replacing the
    previous build's pins and removing those of programs this build has not."""
    from . import libbpf

    d = pin_dir / PROGS_DIR
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        if old.name not in progs:
            old.unlink()
    for name, fn in progs.items():
        path = d / name
        if path.exists():
            path.unlink()
        libbpf.check(libbpf.function("bpf_obj_pin")(fn.fd, str(path).encode()),
                     f"pin {path}")
    return sorted(progs)


def _build(request: dict) -> dict:
    from . import build

    config = build.DataplaneConfig(**request)
    Path(str(config.pin_dir)).mkdir(parents=True, exist_ok=True)    # bcc pins in there
    t0 = time.monotonic()
    module = build.compile_bpf(config)
    t1 = time.monotonic()
    progs = build.load_programs(module, ipsec=config.ipsec)
    names = pin_programs(progs, Path(str(config.pin_dir)))
    t2 = time.monotonic()
    return {"programs": names, "compile_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3),
            "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def die_with_parent() -> bool:
    """Ask the kernel for SIGKILL when the parent dies; False if it is already gone (the
    child was re-parented before it could ask)."""
    import signal

    from ..libc import libc

    expected = os.environ.get(PARENT_ENV)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return True                 # no prctl: nothing to ask for, carry on as before
    return expected is None or str(os.getppid()) == expected


def main() -> int:
    if not die_with_parent():
        sys.stdout.write(json.dumps({"error": "BPF loader: its parent is gone"}) + "\n")
        return 1
    try:
        request = json.loads(sys.stdin.read())
        reply = _build(request)
        code = 0
    except XdmvpnError as exc:
        reply, code = {"error": str(exc)}, 1
    except OSError as exc:
        reply, code = {"error": f"BPF loader: {exc}"}, 1
    except Exception as exc:      # a bug: still one line for the daemon's log
        reply, code = {"error": f"BPF loader: {type(exc).__name__}: {exc}"}, 2
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
