"""Debian's stock kernel in a VM, for what this machine's kernel lacks (ip_gre, ESP, NFLOG).

virtme-ng boots /boot/vmlinuz-<version> under QEMU with this machine's filesystem shared
into the guest, read-only (writes land in a throw-away overlay) except /tmp, which is
shared read-write: results and logs written there outlive the guest. The version is the
one of the installed kernel headers (setup.sh installs the matching linux-image package),
so bcc inside the guest compiles against headers of the very kernel that runs.

Before the command, the guest mounts the bpf filesystem and loads GUEST_MODULES; the
command runs as root with XDMVPN_IN_VM=1 and XDMVPN_TIME_SCALE set (tests multiply their
timeouts by it: see time_scale()).

The guest cannot write bytecode (its / is read-only), so every Python process there would
compile every module it imports, from source, under emulation: prepare() compiles the
project's sources on this side first (compile_sources: __pycache__ next to them, as Python
itself would write; ~1 s here), which the guest then reads.

KVM is used when a bounded probe (boot, run `true`) succeeds; else TCG emulation, several
times slower. The probe runs once per boot of this machine (cached in KVM_CACHE).
XDMVPN_VM_ACCEL=kvm|tcg skips the probe; XDMVPN_VM_KERNEL=IMAGE boots another kernel.
Usage and timings: docs/vm.md."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import XdmvpnError

GUEST_MODULES = ("veth", "bridge", "sch_ingress", "cls_bpf", "ip_gre", "esp4", "xfrm_user",
                 "nfnetlink_log", "nf_tables", "nft_log", "nft_compat", "xt_NFLOG",
                 "nft_chain_nat", "nft_masq", "nft_ct")
UNUSED_DRIVERS = ("kvm", "kvm_amd", "kvm_intel", "ahci", "sr_mod", "cdrom", "iTCO_wdt",
                  "lpc_ich", "i2c_i801", "psmouse", "pcspkr", "joydev", "bochs")
KVM_CACHE = Path("/tmp/xdmvpn-vm-kvm.json")
KVM_PROBE_SECONDS = 25.0
TCG_SCALE = 10.0       # timeouts under emulation (measured: docs/vm.md)
CPUS = 2
MEMORY = "4G"
IN_VM_ENV = "XDMVPN_IN_VM"
SCALE_ENV = "XDMVPN_TIME_SCALE"
ACCEL_ENV = "XDMVPN_VM_ACCEL"
KERNEL_ENV = "XDMVPN_VM_KERNEL"


def in_vm() -> bool:
    """True inside a guest booted by this module."""
    return os.environ.get(IN_VM_ENV) == "1"


def time_scale() -> float:
    """The factor for timeouts: $XDMVPN_TIME_SCALE (set in the guest), else 1."""
    try:
        return max(float(os.environ.get(SCALE_ENV, "1")), 1.0)
    except ValueError:
        return 1.0


_DEBIAN_HEADERS = re.compile(r"linux-headers-(\d+\.\d+\.\d+-\d+-(?!common)[a-z0-9]+)")


def kernel_version(src: Path = Path("/usr/src")) -> str:
    """The version of the Debian kernel headers bcc uses here, e.g. 6.1.0-56-amd64: those
    /lib/modules/$(uname -r)/build points to, else the newest installed (setup.sh's rule;
    it installs the image of that version)."""
    build = Path(f"/lib/modules/{os.uname().release}/build").resolve()
    m = _DEBIAN_HEADERS.fullmatch(build.name)
    if m and build.parent == src:
        return m.group(1)
    found = [m.group(1) for d in src.glob("linux-headers-*")
             if (m := _DEBIAN_HEADERS.fullmatch(d.name)) and (d / "include").is_dir()]
    if not found:
        raise XdmvpnError("no Debian kernel headers in /usr/src: run ./setup.sh")
    return max(found, key=lambda v: [int(x) for x in re.findall(r"\d+", v)])


def kernel_image() -> Path:
    """/boot/vmlinuz-<kernel_version()>, or $XDMVPN_VM_KERNEL (modules must be installed
    under /lib/modules/<its version>)."""
    chosen = os.environ.get(KERNEL_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise XdmvpnError(f"no kernel image {chosen} (${KERNEL_ENV})")
        return Path(chosen)
    version = kernel_version()
    image = Path(f"/boot/vmlinuz-{version}")
    if not image.is_file():
        raise XdmvpnError(f"no kernel image {image} for the VM: run ./setup.sh "
                          f"(installs linux-image-{version})")
    return image


def vng() -> str:
    """virtme-ng's command, from this interpreter's environment (setup.sh puts it there)."""
    here = Path(sys.prefix) / "bin" / "vng"
    found = str(here) if here.exists() else shutil.which("vng")
    if not found:
        raise XdmvpnError("virtme-ng (vng) is not installed in this environment: run "
                          "./setup.sh")
    return found


def unavailable() -> str | None:
    """Why no VM can boot here (one line), or None."""
    try:
        kernel_image()
        vng()
    except XdmvpnError as exc:
        return str(exc)
    for tool in ("qemu-system-x86_64", "busybox", "file"):
        if not shutil.which(tool):
            return f"{tool} is not installed: run ./setup.sh"
    return None


def _vng_env() -> dict:
    env = dict(os.environ)
    bindir = str(Path(vng()).parent)           # vng calls virtme-run by name
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    for name in (IN_VM_ENV, SCALE_ENV):
        env.pop(name, None)
    return env


def vng_argv(command: str, accel: str, cpus: int = CPUS, memory: str = MEMORY,
             rwdirs: tuple[str, ...] = ("/tmp",), cwd: str | None = None) -> list[str]:
    # 9p straight away (virtme-ng otherwise tries virtiofsd first, which fails here), and
    # no drivers for emulated hardware nothing uses (udev would load them at boot)
    argv = [vng(), "--run", str(kernel_image()), "--user", "root", "--cpus", str(cpus),
            "--memory", memory, "--force-9p",
            "--append", "modprobe.blacklist=" + ",".join(UNUSED_DRIVERS)]
    if accel == "tcg":
        argv.append("--disable-kvm")
    for d in rwdirs:
        argv += ["--rwdir", d]
    if cwd:
        argv += ["--cwd", cwd]
    return argv + ["--exec", command]


def _run_bounded(argv: list[str], timeout: float, **kw) -> tuple[int | None, float]:
    """Run argv; at timeout kill it and its descendants. (returncode or None on timeout,
    seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, **kw)
    try:
        rc: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        if proc.poll() is None:
            _kill_tree(proc)
    return rc, time.monotonic() - start


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill vng and what it started (QEMU). The guest runs in the caller's process group,
    so a Ctrl-C or a kill of that group stops it too; this is for a timeout."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    proc.wait()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def accel(probe_timeout: float = KVM_PROBE_SECONDS) -> tuple[str, str]:
    """("kvm" or "tcg", why). $XDMVPN_VM_ACCEL forces one; else the cached probe of this
    boot of the machine, else a probe: boot with KVM running `true`, bounded."""
    forced = os.environ.get(ACCEL_ENV, "")
    if forced in ("kvm", "tcg"):
        return forced, f"${ACCEL_ENV}={forced}"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    image = str(kernel_image())
    with open(KVM_CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            cached = json.loads(KVM_CACHE.read_text())
            if cached.get("boot_id") == _boot_id() and cached.get("kernel") == image:
                return cached["accel"], cached["why"] + " (cached)"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        with tempfile.TemporaryDirectory(prefix="xdmvpn-kvm-probe-") as tmp:
            out = Path(tmp) / "out"
            with open(out, "wb") as f:
                rc, took = _run_bounded(vng_argv("true", "kvm", cpus=1, memory="512M",
                                                 rwdirs=()),
                                        probe_timeout, stdout=f, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=_vng_env(), cwd="/")
            tail = (out.read_text(errors="replace").strip().splitlines() or [""])[-1]
        if rc == 0:
            result = ("kvm", f"KVM probe booted in {took:.1f} s")
        elif rc is None:
            result = ("tcg", f"KVM probe hung (no answer in {probe_timeout:.0f} s)")
        else:
            result = ("tcg", f"KVM probe failed (exit {rc}: {tail[:120]})")
        KVM_CACHE.write_text(json.dumps({"boot_id": _boot_id(), "kernel": image,
                                         "accel": result[0], "why": result[1]}))
    return result


def scale_for(accel_name: str) -> float:
    """The timeout factor a guest gets: $XDMVPN_TIME_SCALE if set here, else 1 with KVM
    and TCG_SCALE under emulation."""
    if os.environ.get(SCALE_ENV):
        return time_scale()
    return 1.0 if accel_name == "kvm" else TCG_SCALE


def guest_script(argv: list[str], env: dict, cwd: str, modules=GUEST_MODULES,
                 then_shell: bool = False, tty: bool = False) -> str:
    """The shell script the guest runs: bpffs, modules, environment, then argv; with
    then_shell, a shell after it (interactive on a terminal, else reading stdin)."""
    exports = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in sorted(env.items()))
    if then_shell:
        last = ([shlex.join(argv) + ' || echo "vm: exit status $?" >&2'] if argv else []) + [
            f"echo 'vm: {kernel_image().name}, ip_gre/ESP/NFLOG loaded; "
            "leave the shell to power the VM off'",
            "exec bash -l" if tty else "exec bash"]
    else:
        last = ["exec " + shlex.join(argv)]
    return "\n".join([
        "#!/bin/bash",
        "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf",
        # temporary files on the guest's tmpfs: /tmp is 9p, where a file unlinked while
        # open (tempfile.TemporaryFile, pytest's capture) can no longer be read
        "mkdir -p /run/xdmvpn-tmp",
        f"for m in {' '.join(modules)}; do",
        '  modprobe "$m" 2>/dev/null || echo "vm: cannot load kernel module $m" >&2',
        "done",
        f"export {exports}",
        f"cd {shlex.quote(cwd)}",
        *last,
        "",
    ])


def compile_sources(cwd: str) -> int:
    """Byte-compile the xdmvpn package, the benchmarks' package and cwd's tests/ (when
    they are writable here) for the guest's Python processes. Returns how many trees
    compiled without an error; a failure only costs the guest time."""
    import compileall
    package = Path(__file__).resolve().parents[1]          # ctl/xdmvpn
    trees = {package, package.parents[1] / "bench" / "xdmvpn_bench", Path(cwd) / "tests"}
    done = 0
    for tree in sorted(trees):
        if tree.is_dir() and os.access(tree, os.W_OK):
            try:
                done += bool(compileall.compile_dir(str(tree), quiet=2, workers=0))
            except OSError:
                pass
    return done


def prepare(argv: list[str], env: dict | None = None, cwd: str | None = None,
            accel_name: str | None = None, then_shell: bool = False,
            tty: bool = False) -> tuple[list[str], dict, dict]:
    """(vng argv, host environment for it, facts) to run argv in a fresh guest; with
    then_shell, a shell after it (on the guest's console when tty)."""
    why = unavailable()
    if why:
        raise XdmvpnError(f"cannot boot the VM: {why}")
    if accel_name:
        how = "asked"
    else:
        accel_name, how = accel()
    scale = scale_for(accel_name)
    cwd = cwd or os.getcwd()
    compile_sources(cwd)
    venv_bin = str(Path(sys.prefix) / "bin")
    genv = {IN_VM_ENV: "1", SCALE_ENV: f"{scale:g}", "PYTHONDONTWRITEBYTECODE": "1",
            "TMPDIR": "/run/xdmvpn-tmp",
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            **(env or {})}
    fd, path = tempfile.mkstemp(prefix="xdmvpn-vm-", suffix=".sh", dir="/tmp")
    with os.fdopen(fd, "w") as f:
        f.write(guest_script(argv, genv, cwd, then_shell=then_shell, tty=tty))
    os.chmod(path, 0o755)
    facts = {"accel": accel_name, "why": how, "scale": scale, "kernel": str(kernel_image()),
             "script": path}
    cmd = vng_argv(f"bash {path}", accel_name, cwd=cwd)
    if tty:        # the console, a real terminal, with our script as its shell
        cmd = cmd[:cmd.index("--exec")] + ["--shell", path]
    return cmd, _vng_env(), facts


def run(argv: list[str], env: dict | None = None, cwd: str | None = None,
        timeout: float | None = None, accel_name: str | None = None, **popen) -> tuple[int | None, dict]:
    """Boot a guest, run argv in it, power off. (argv's exit status or None on timeout,
    facts: accel, why, scale, kernel, seconds)."""
    cmd, venv, facts = prepare(argv, env, cwd, accel_name)
    try:
        rc, took = _run_bounded(cmd, timeout if timeout else 10 ** 6, env=venv, **popen)
    finally:
        os.unlink(facts["script"])
    facts["seconds"] = round(took, 1)
    return rc, facts


def start(argv: list[str], env: dict | None = None, cwd: str | None = None,
          accel_name: str | None = None, **popen) -> tuple[subprocess.Popen, dict]:
    """Boot a guest running argv, in the background; stop() it."""
    cmd, venv, facts = prepare(argv, env, cwd, accel_name)
    proc = subprocess.Popen(cmd, env=venv, **popen)
    facts["started"] = time.monotonic()
    return proc, facts


def stop(proc: subprocess.Popen, facts: dict) -> None:
    if proc.poll() is None:
        _kill_tree(proc)
    try:
        os.unlink(facts["script"])
    except OSError:
        pass


def session(argv: list[str] | None, then_shell: bool = False, accel_name: str | None = None,
            env: dict | None = None) -> int:
    """For a person: boot a guest, run argv there (in this directory), then with
    then_shell (or without argv) a shell; its exit status."""
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    shell = then_shell or not argv
    cmd, venv, facts = prepare(list(argv or []), env, accel_name=accel_name,
                               then_shell=shell, tty=tty and shell)
    print(f"vm: booting {Path(facts['kernel']).name} ({facts['accel'].upper()}: "
          f"{facts['why']}; timeouts x{facts['scale']:g})", flush=True)
    try:
        if tty:
            return subprocess.run(cmd, env=venv).returncode
        # through a pipe: QEMU opens /proc/self/fd/1 afresh, which truncates a file
        proc = subprocess.Popen(cmd, env=venv, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return proc.wait()
    finally:
        os.unlink(facts["script"])


def lab_up(spokes: int, timeout: float, ipsec: bool, nat: list[str] | None = None) -> int:
    """`xdmvpn lab up --vm`: the lab in the guest, then a shell there."""
    accel_name, _ = accel()
    argv = [sys.executable, "-m", "xdmvpn", "lab", "up", "--spokes", str(spokes),
            "--timeout", f"{timeout * scale_for(accel_name):g}", *(["--ipsec"] if ipsec else []),
            *[x for group in nat or [] for x in ("--nat", group)]]
    return session(argv, then_shell=True, accel_name=accel_name)
