"""The VM tier (pytest plugin, registered by tests/conftest.py): tests that need kernel
features this machine's kernel may lack run natively where it has them, and otherwise all
together inside ONE boot of Debian's stock kernel (xdmvpn.lab.vm), each reported here by
name with its own outcome, output and duration.

    @pytest.mark.kernel("ip_gre", "esp4")   # features: FEATURES below

- At collection (after -m/-k deselection) every selected item whose features are missing
  here is marked to run remotely.
- The first such item boots the VM, which runs `python -m pytest <those node ids>` with the
  features loaded, XDMVPN_IN_VM=1 and XDMVPN_TIME_SCALE set; its reporter (InnerReporter)
  writes every test report as a JSON line into a run directory under /tmp (shared with the
  guest). Each remote item then replays its own reports here as they arrive: pass, fail
  with the inner traceback and captured output, skip with its reason.
- No VM possible (no qemu, no kernel image, no virtme-ng): each such item FAILS with one line.
  Deselect the tier with -m "not kernel" instead.
- Inside the guest a feature still missing fails the test with one line (never a skip).

XDMVPN_VM=always sends every kernel-marked test to the VM even where this kernel has the
features. XDMVPN_VM_TIMEOUT (seconds, default 3600) bounds the whole VM run. Debugging a
failing inner test: docs/vm.md."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xdmvpn.lab import vm

REPORT_ENV = "XDMVPN_VM_REPORT"        # inside the guest: where InnerReporter writes
MODE_ENV = "XDMVPN_VM"                 # "always": every kernel-marked test in the VM
TIMEOUT_ENV = "XDMVPN_VM_TIMEOUT"
# the whole VM run: 21 tests took 1,663 s in a CI run of the whole suite (the outer session's
# own tests share the two cores meanwhile): with 1,800 a little more load would stop the VM
# before its last tests (the vs-FRR bench among them) reported
DEFAULT_TIMEOUT = "3600"
RUNS = Path("/tmp")
RUN_PREFIX = "xdmvpn-vmtier-"
KEEP_RUNS = 3


def _quiet(*cmd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _module(name: str) -> bool:
    """Loaded (or built in), or loadable here."""
    if Path(f"/sys/module/{name}").exists():
        return True
    return _quiet("modprobe", "-q", name) and Path(f"/sys/module/{name}").exists()


def _ip_gre() -> bool:
    # a throw-away collect_md GRE device in a throw-away namespace: nothing left behind
    return _quiet("unshare", "--net", "ip", "link", "add", "probe0", "type", "gre",
                  "external")


def _esp() -> bool:
    from xdmvpn.ipsec.kernel import esp_missing
    return esp_missing() is None


def _frr() -> bool:
    return all(os.access(f"/usr/lib/frr/{d}", os.X_OK) for d in ("zebra", "nhrpd"))


FEATURES = {
    "ip_gre": _ip_gre,                                  # kernel GRE devices
    "esp4": _esp,                                       # ESP SAs install (esp4 + xfrm)
    "nflog": lambda: _module("nfnetlink_log"),          # NFLOG (FRR nhrpd's redirect)
    "frr": _frr,                                        # FRR's zebra and nhrpd
}


@functools.cache
def present(feature: str) -> bool:
    return FEATURES[feature]()


def features_of(item) -> list[str]:
    return [f for m in item.iter_markers("kernel") for f in m.args]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "kernel(*features): needs these kernel features (" + ", ".join(FEATURES)
        + "); where this kernel lacks one, runs inside the VM tier (docs/vm.md)")
    config.addinivalue_line(
        "markers", "vm: boots the VM itself (tests of the VM tier's machinery)")
    path = os.environ.get(REPORT_ENV)
    if path and vm.in_vm():
        config.pluginmanager.register(InnerReporter(config, Path(path)), "vmtier-inner")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """After -m/-k: which items need the VM (or, inside it, what is missing)."""
    always = os.environ.get(MODE_ENV) == "always" and not vm.in_vm()
    remote = []
    for item in items:
        if item.get_closest_marker("kernel") is None:
            continue
        feats = features_of(item)
        unknown = [f for f in feats if f not in FEATURES]
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: unknown kernel feature(s) {unknown} "
                                    f"(known: {', '.join(FEATURES)})")
        missing = [f for f in feats if not present(f)]
        if vm.in_vm():
            if missing:
                item.stash[MISSING] = missing
        elif missing or always:
            remote.append(item)
    if remote:
        config.stash[TIER] = Tier(config, remote)


def pytest_runtest_setup(item):
    missing = item.stash.get(MISSING, None)
    if missing:
        pytest.fail(f"the VM's kernel lacks {', '.join(missing)} too (a module failed to "
                    f"load? see the start of the run's pytest.log)", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    tier = item.config.stash.get(TIER, None)
    if tier is None or item.nodeid not in tier.nodeids:
        return None
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in tier.reports_for(item):
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    # nothing was set up here for this item; drop what the previous item left that the
    # next one does not share (as runtestprotocol's teardown would)
    item.session._setupstate.teardown_exact(nextitem)
    return True


def pytest_unconfigure(config):
    """An interrupted session (Ctrl-C, -x) leaves no VM behind."""
    tier = config.stash.get(TIER, None)
    if tier is not None and tier.proc is not None:
        vm.stop(tier.proc, tier.facts)


class Tier:
    """One VM run for all remote items, started by the first one that runs."""

    def __init__(self, config, items):
        self.config = config
        self.nodeids = {i.nodeid: i for i in items}
        # the kernel's own checks first (the first failure then names what is missing;
        # their bcc compile warms up the emulator for the daemons' compiles after them)
        self.order = sorted((i.nodeid for i in items),
                            key=lambda n: not n.startswith("tests/vm/"))
        self.proc: subprocess.Popen | None = None
        self.facts: dict = {}
        self.reports: dict[str, list[dict]] = {}
        self.collect_errors: list[str] = []
        self.finished = False
        self.failure: str | None = None      # why the VM run produced no (more) results
        self.offset = 0
        self.run_dir: Path | None = None
        self.deadline = 0.0
        self.ended: float | None = None      # monotonic time the VM run's process exited

    # -- the VM run --------------------------------------------------------------------------
    def start(self) -> None:
        why = vm.unavailable()
        if why:
            self.failure = f"VM tier: cannot boot the VM: {why}"
            self.finished = True
            return
        _remove_old_runs()
        self.run_dir = Path(f"{RUNS}/{RUN_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-"
                            f"{os.getpid()}")
        self.run_dir.mkdir(mode=0o755)
        (self.run_dir / "reports.jsonl").touch()
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                f"--basetemp={self.run_dir / 'basetemp'}", *self.order]
        log = self.run_dir / "pytest.log"
        env = {REPORT_ENV: str(self.run_dir / "reports.jsonl")}
        if os.environ.get(MODE_ENV):
            env[MODE_ENV] = os.environ[MODE_ENV]
        # the guest writes its pytest output to the log itself (vng's own output is a
        # pipe here: it opens /proc/self/fd/1, which truncates a regular file)
        wrapped = ["sh", "-c", 'exec "$@" >"$0" 2>&1', str(log), *argv]
        try:
            self.proc, self.facts = vm.start(wrapped, env=env, cwd=str(self.config.rootpath),
                                             stdin=subprocess.DEVNULL,
                                             stdout=open(self.run_dir / "vng.log", "wb"),
                                             stderr=subprocess.STDOUT)
        except Exception as exc:           # a one-line reason on every item, never a crash
            self.failure = f"VM tier: cannot boot the VM: {exc}"
            self.finished = True
            return
        self.deadline = time.monotonic() + float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
        # the outer session notices the end only when it reaches the tier's last test (it
        # runs its own tests meanwhile): the VM's own duration is taken when it exits
        proc = self.proc

        def watch() -> None:
            proc.wait()
            self.ended = time.monotonic()
        threading.Thread(target=watch, name="vm-tier-watch", daemon=True).start()
        self._say(f"VM tier: {len(self.order)} test(s) in one boot of "
                  f"{Path(self.facts['kernel']).name} ({self.facts['accel'].upper()}: "
                  f"{self.facts['why']}; timeouts x{self.facts['scale']:g}); "
                  f"log: {log}")

    def _say(self, line: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line("")
            tr.write_line(line)

    def _read(self) -> None:
        assert self.run_dir is not None
        with open(self.run_dir / "reports.jsonl", "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            entry = json.loads(line)
            if entry.get("$collect_error"):
                self.collect_errors.append(entry["$collect_error"])
            elif "nodeid" in entry:
                self.reports.setdefault(entry["nodeid"], []).append(entry)

    def _done(self, nodeid: str) -> bool:
        return any(r.get("when") == "teardown" for r in self.reports.get(nodeid, []))

    def _wait_for(self, nodeid: str) -> None:
        if self.proc is None and not self.finished:
            self.start()
        while not self.finished and not self._done(nodeid):
            self._read()
            if self._done(nodeid):
                break
            if self.proc is not None and self.proc.poll() is not None:
                self._read()
                self._finish()
                if self.proc.returncode not in (0, 1):
                    self.failure = (f"VM tier: the VM run ended (exit {self.proc.returncode})"
                                    f" without a result for this test")
            elif time.monotonic() > self.deadline:
                vm.stop(self.proc, self.facts)
                self._read()
                self.finished = True
                self.failure = (f"VM tier: the VM run exceeded ${TIMEOUT_ENV}="
                                f"{os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)} s and was stopped")
            else:
                time.sleep(0.5)
        if not self.finished and all(self._done(n) for n in self.order):
            self._finish()
        if self.finished and self.proc is not None:
            vm.stop(self.proc, self.facts)

    def _finish(self) -> None:
        """Every result is in: let the inner session write its summary and power off."""
        assert self.proc is not None
        try:
            self.proc.wait(60 * self.facts["scale"])
        except subprocess.TimeoutExpired:
            pass
        self.finished = True
        now = time.monotonic()
        ran = (self.ended or now) - self.facts["started"]
        self._say(f"VM tier: the VM run took {ran:.0f} s, boot included (exit "
                  f"{self.proc.poll()}; its results collected {now - self.facts['started']:.0f}"
                  f" s after the start)")

    # -- reports -----------------------------------------------------------------------------
    def reports_for(self, item) -> list:
        self._wait_for(item.nodeid)
        hook = self.config.hook
        inner = self.reports.get(item.nodeid, [])
        out = []
        for data in inner:
            if isinstance(data.get("longrepr"), list):     # a skip's (path, line, reason):
                data = dict(data, longrepr=tuple(data["longrepr"]))   # JSON made it a list
            rep = hook.pytest_report_from_serializable(config=self.config, data=data)
            if rep.failed and self.run_dir is not None:
                rep.sections.append(("VM tier", self._where()))
            out.append(rep)
        if not self._done(item.nodeid):
            out += self._synthetic(item, [r.when for r in out])
        return out

    def _where(self) -> str:
        return (f"ran in the VM ({self.facts.get('accel', '?').upper()}, timeouts "
                f"x{self.facts.get('scale', 1):g}); pytest output: {self.run_dir}/pytest.log;"
                f" the test's files: {self.run_dir}/basetemp")

    def _synthetic(self, item, seen: list[str]) -> list:
        """Reports for an item the VM gave no (complete) result for: a one-line failure."""
        why = self.failure or "VM tier: the VM run gave no result for this test"
        if self.collect_errors:
            why += "; inner collection error: " + self.collect_errors[0].strip()[-300:]
        elif self.run_dir is not None:
            why += f" (see {self.run_dir}/pytest.log)"
        out = []
        for when in ("setup", "call", "teardown"):
            if when in seen:
                continue
            failed = when == "call" or (when == "teardown" and "call" in seen)
            out.append(pytest.TestReport(
                item.nodeid, item.location, {k: 1 for k in item.keywords},
                "failed" if failed else "passed", why if failed else None, when))
            if failed:
                break
        if out and out[-1].when != "teardown":
            out.append(pytest.TestReport(item.nodeid, item.location, {}, "passed", None,
                                         "teardown"))
        return out


TIER = pytest.StashKey[Tier]()
MISSING = pytest.StashKey[list]()


def _remove_old_runs() -> None:
    """Keep the newest KEEP_RUNS - 1 run directories (and the one about to be made), and
    any whose session (the pid ending its name) is still running."""
    runs = sorted(RUNS.glob(RUN_PREFIX + "*"), key=lambda p: p.stat().st_mtime)
    for old in runs[:max(len(runs) - (KEEP_RUNS - 1), 0)]:
        if not Path(f"/proc/{old.name.rsplit('-', 1)[-1]}").exists():
            shutil.rmtree(old, ignore_errors=True)


class InnerReporter:
    """Inside the guest: every test report (and collection error) as one JSON line."""

    def __init__(self, config, path: Path):
        self.config = config
        self.file = open(path, "a")

    def _write(self, entry: dict) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def pytest_runtest_logreport(self, report):
        self._write(self.config.hook.pytest_report_to_serializable(config=self.config,
                                                                    report=report))

    def pytest_collectreport(self, report):
        if report.failed:
            self._write({"$collect_error": f"{report.nodeid}: {report.longreprtext}"})
