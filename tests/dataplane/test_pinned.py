"""The programs compiled and loaded by the loader child (xdmvpn.dataplane.loader), then used
from this process through their pins only (xdmvpn.dataplane.pinned): maps read and written
with the bpf syscall (checked against bcc's view of the same pinned maps), per-CPU values,
batched updates, deletes and lookups, a real trigger event through the ring buffer, and the
child's failures as one line."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DP_MAC, LOCAL, OVL_MAC, PEER2_MAC, UL_MAC, Harness
from xdmvpn import netns
from xdmvpn.daemon.events import ring_epoll_fd
from xdmvpn.dataplane import abi, attach, build, loader
from xdmvpn.dataplane import maps as maps_mod
from xdmvpn.dataplane.maps import DataplaneMaps
from xdmvpn.dataplane.pinned import PROGS_DIR, PinnedModule, open_programs
from xdmvpn.errors import XdmvpnError
from xdmvpn_bench import packets as P

KEY = 42


class PinnedHarness(Harness):
    """Harness's test runs on programs the loader child made, reached through their pins."""

    def __init__(self, ns: str, pin: Path, **cfg):
        attach.ensure_bpffs()
        self.ns, self.pin = ns, pin
        self.config = build.DataplaneConfig(
            local_nbma=LOCAL, pin_dir=str(pin), underlay_ifindex=netns.ifindex(ns, "ul0"),
            overlay_ifindex=netns.ifindex(ns, "dmvpn0-dp"), overlay_mac=OVL_MAC,
            overlay_dp_mac=DP_MAC, **cfg)
        self.result = loader.load(self.config)
        self.progs = open_programs(pin)
        self.module = PinnedModule(pin)
        self.maps = DataplaneMaps(self.module)

    def close(self):
        self.module.cleanup()
        for p in self.progs.values():
            p.close()
        shutil.rmtree(self.pin, ignore_errors=True)


@pytest.fixture(scope="module")
def pinned(fx_ns):
    pin = attach.BPFFS / "xdmvpn" / f"xdt-pin-{os.getpid()}"
    h = PinnedHarness(fx_ns, pin, gre_key=KEY, redirect=True, trigger_interval_ms=60000)
    try:
        yield h
    finally:
        h.close()


@pytest.mark.root
def test_the_child_pins_every_program_and_map(pinned):
    want = set(abi.XDP_PROGRAMS) | set(abi.TC_PROGRAMS)
    assert set(pinned.result.programs) == want
    assert {p.name for p in (pinned.pin / PROGS_DIR).iterdir()} == want
    assert {m.name for m in abi.MAPS} <= {p.name for p in pinned.pin.iterdir()}
    assert pinned.result.compile_s > 0 and pinned.result.child_s > pinned.result.compile_s
    assert pinned.result.child_rss_bytes > 50 << 20     # bcc and LLVM were in the child


@pytest.mark.root
def test_pinned_tables_and_bcc_see_the_same_maps(pinned):
    """Written through the syscall here, read through bcc (which adopts the pins), and back."""
    m = pinned.maps
    m.add_mapping("10.0.0.3", "192.0.2.3")
    m.add_prefix("192.168.3.0/24", "192.0.2.3")
    m.set_nhs(["192.0.2.1"])
    m.set_multicast(["192.0.2.2", "192.0.2.3"])
    bcc_mod = build.compile_bpf(pinned.config)
    try:
        theirs = DataplaneMaps(bcc_mod)
        assert [(str(x.prefix), str(x.nbma)) for x in theirs.mappings()] == [
            ("10.0.0.3/32", "192.0.2.3")]
        assert [str(x.prefix) for x in theirs.prefixes()] == ["192.168.3.0/24"]
        assert [str(a) for a in theirs.nhs()] == ["192.0.2.1"]
        assert [str(a) for a in theirs.multicast()] == ["192.0.2.2", "192.0.2.3"]
        assert theirs.known_peers() == m.known_peers()
        # a per-CPU slot written by bcc, one value per CPU, summed here
        assert m.mappings()[0].packets == 0
        idx = m.peers[ctypes.c_uint32(abi.be32("10.0.0.3"))].stats_idx
        stats = bcc_mod[b"xdmvpn_peer_stats"]
        n = stats.total_cpu
        assert n == m.stats.total_cpu
        stats[stats.Key(idx)] = stats.Leaf(*[stats.sLeaf(i + 1, 100 * (i + 1), 7 + i)
                                             for i in range(n)])
        got = {str(x.prefix): x for x in m.mappings()}["10.0.0.3/32"]
        assert (got.packets, got.bytes, got.last_used_ns) == (
            n * (n + 1) // 2, 100 * n * (n + 1) // 2, 6 + n)
        m.remove_mapping("10.0.0.3")             # (the controller is the only writer)
        assert theirs.mappings() == []
    finally:
        bcc_mod.cleanup()
    m.remove_prefix("192.168.3.0/24")
    m.set_nhs([])
    m.set_multicast([])
    assert m.known_peers() == {}


@pytest.mark.root
def test_batches_write_read_and_delete_many_entries(pinned):
    peers = pinned.maps.peers
    n = 10_000
    keys = [ctypes.c_uint32(abi.be32(f"10.{1 + i // 65536}.{i // 256 % 256}.{i % 256}"))
            for i in range(n)]
    peers.update_batch([(k, abi.Peer(nbma=i + 1, stats_idx=i + 1)) for i, k in enumerate(keys)])
    got = {k.value: (v.nbma, v.stats_idx) for k, v in peers.items()}
    assert got == {k.value: (i + 1, i + 1) for i, k in enumerate(keys)}
    assert len(peers) == n
    assert peers[keys[17]].nbma == 18
    # a missing key among them is skipped, the rest deleted
    assert peers.delete_batch([ctypes.c_uint32(abi.be32("10.200.0.1")), *keys]) == n
    assert peers.items() == [] and peers.get(keys[0]) is None
    with pytest.raises(KeyError):
        del peers[keys[0]]


@pytest.mark.root
def test_add_mappings_batches_new_entries_and_replaces_adopted_ones(pinned):
    """A hub's burst of registrations: new entries in one batch write per map (told new by
    the maps' own index of the host map), an entry another controller wrote before (adopted
    pins) replaced in place with its slot, the known NBMA counts right either way."""
    m = pinned.maps
    m.add_mapping("10.0.0.3", "192.0.2.3")                  # a previous controller's
    m.add_mapping("10.0.0.4", "192.0.2.3")
    ours = DataplaneMaps(pinned.module)                     # a new one adopts the pins
    slot3 = m.peers[ctypes.c_uint32(abi.be32("10.0.0.3"))].stats_idx
    news = [(f"10.0.1.{i}", f"192.0.2.{10 + i % 3}") for i in range(1, 41)]
    try:
        ours.add_mappings([*news, ("10.0.0.3", "192.0.2.9"), ("10.0.1.5", "192.0.2.99")])
        got = {str(x.prefix): str(x.nbma) for x in ours.mappings()}
        want = {f"{o}/32": n for o, n in news} | {
            "10.0.1.5/32": "192.0.2.99", "10.0.0.3/32": "192.0.2.9", "10.0.0.4/32": "192.0.2.3"}
        assert got == want
        assert ours.peers[ctypes.c_uint32(abi.be32("10.0.0.3"))].stats_idx == slot3
        slots = [v.stats_idx for v in ours.peers.values()]
        assert len(set(slots)) == len(slots) == 42 and 0 not in slots
        counts: dict = {}
        for n in want.values():
            counts[ipaddress.ip_address(n)] = counts.get(ipaddress.ip_address(n), 0) + 1
        assert ours.known_peers() == counts
        # a second burst knows the first's entries: only replacements, one by one
        ours.add_mappings([("10.0.1.1", "192.0.2.50"), ("10.0.1.2", "192.0.2.50")])
        assert {str(x.prefix): str(x.nbma) for x in ours.mappings()}["10.0.1.2/32"] == \
            "192.0.2.50"
        assert len(ours.mappings()) == 42
    finally:
        for o in [*(o for o, _ in news), "10.0.0.3", "10.0.0.4"]:
            ours.remove_mapping(o)
    assert ours.mappings() == [] and ours.known_peers() == {}


@pytest.mark.root
def test_a_new_entry_starts_with_zero_statistics_whoever_had_its_slot(pinned, monkeypatch):
    """Per-slot statistics and cached next hops: what an earlier controller left in free
    slots is cleared when a new controller first takes one (one batch for all), and a slot
    an entry gave back is cleared when it is taken again, in a batch or one by one."""
    m = pinned.maps
    stats, nh = m.stats, m.nh_cache

    def dirty(idx):
        stats[stats.Key(idx)] = stats.Leaf(*[stats.sLeaf(5, 500, 9)
                                             for _ in range(stats.total_cpu)])
        full = nh.sLeaf.from_buffer_copy(b"\x07" * ctypes.sizeof(nh.sLeaf))
        nh[nh.Key(idx)] = nh.Leaf(*[full for _ in range(nh.total_cpu)])

    def clean(idx):
        values = [*stats[stats.Key(idx)], *nh[nh.Key(idx)]]
        return not any(any(bytes(v)) for v in values)

    def slot(overlay):
        return m.peers[ctypes.c_uint32(abi.be32(overlay))].stats_idx

    for idx in range(1, 61):                  # leftovers where new entries will go
        dirty(idx)
    assert not clean(1)
    ours = DataplaneMaps(pinned.module)
    batch = [(f"10.0.2.{i}", "192.0.2.7") for i in range(1, 41)]
    try:
        ours.add_mappings(batch)
        ours.add_mapping("10.0.2.200", "192.0.2.8")
        rows = ours.mappings()
        assert len(rows) == 41
        assert all((r.packets, r.bytes, r.last_used_ns) == (0, 0, 0) for r in rows)
        assert all(clean(slot(o)) for o, _ in [*batch, ("10.0.2.200", None)])
        # traffic on two entries, both go, new entries take their slots again
        gone = [slot("10.0.2.1"), slot("10.0.2.2")]
        for idx in gone:
            dirty(idx)
        ours.remove_mapping("10.0.2.1")
        ours.remove_mapping("10.0.2.2")
        ours.add_mappings([("10.0.3.1", "192.0.2.9"), ("10.0.3.2", "192.0.2.9")])
        assert sorted(gone) == sorted([slot("10.0.3.1"), slot("10.0.3.2")])
        assert all(clean(idx) for idx in gone)
        dirty(slot("10.0.2.3"))
        idx = slot("10.0.2.3")
        ours.remove_mapping("10.0.2.3")
        ours.add_mapping("10.0.3.3", "192.0.2.9")      # one by one
        assert slot("10.0.3.3") == idx and clean(idx)
        # a controller adopting these tables: the holes below the highest slot in use
        # are taken first, and cleared (dirty, as every slot of adopted tables)
        hole = slot("10.0.2.4")
        ours.remove_mapping("10.0.2.4")
        dirty(hole)
        top = max(v.stats_idx for v in m.peers.values())
        dirty(top + 1)
        again = DataplaneMaps(pinned.module)
        again.sync_slots()
        again.add_mappings([("10.0.4.1", "192.0.2.9"), ("10.0.4.2", "192.0.2.9")])
        assert [slot("10.0.4.1"), slot("10.0.4.2")] == [hole, top + 1]
        assert clean(hole) and clean(top + 1)
        # slots run out: one line, nothing taken
        monkeypatch.setattr(maps_mod, "MAX_STATS", again._next + 1)
        free_before = list(again._free)
        with pytest.raises(XdmvpnError, match="slots exhausted"):
            again.add_mappings([("10.0.5.1", "192.0.2.9"), ("10.0.5.2", "192.0.2.9")])
        assert again._free == free_before
        monkeypatch.undo()
        again.remove_mapping("10.0.4.1")
        again.remove_mapping("10.0.4.2")
    finally:
        for o in [o for o, _ in batch] + ["10.0.2.200", "10.0.3.1", "10.0.3.2", "10.0.3.3"]:
            ours.remove_mapping(o)
    assert ours.mappings() == [] and ours.known_peers() == {}


@pytest.mark.root
def test_a_trigger_event_through_the_pinned_ring_buffer(pinned):
    m = pinned.maps
    m.add_mapping("10.0.0.2", "192.0.2.2")
    m.add_mapping("10.0.0.3", "192.0.2.3")
    try:
        m.events()                                       # opens it, as the daemon does
        fd = ring_epoll_fd(pinned.module)
        assert fd is not None and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        inner = P.ipv4("10.0.0.2", "10.0.0.3", P.icmp_echo(), proto=1)
        pkt = P.eth(UL_MAC, PEER2_MAC) + P.ipv4("192.0.2.2", LOCAL, P.gre(inner, key=KEY))
        _, counters = pinned.run("xdmvpn_xdp_underlay", pkt)
        assert counters.get("hairpin") == 1 and counters.get("trigger") == 1, counters
        events = m.events(100)
        assert [(e.kind, str(e.nbma_src), str(e.src), str(e.dst)) for e in events] == [
            ("trigger", "192.0.2.2", "10.0.0.2", "10.0.0.3")]
    finally:
        m.remove_mapping("10.0.0.2")
        m.remove_mapping("10.0.0.3")


@pytest.mark.root
def test_a_compile_error_in_the_child_is_one_line(tmp_path, monkeypatch):
    src = build.bpf_dir()
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "xdmvpn_xdp.c").write_text("this is not C;\n")
    monkeypatch.setenv("XDMVPN_BPF_DIR", str(tmp_path))
    pin = attach.BPFFS / "xdmvpn" / f"xdt-pinerr-{os.getpid()}"
    try:
        with pytest.raises(XdmvpnError) as info:
            loader.load(build.DataplaneConfig(pin_dir=str(pin)))
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    msg = str(info.value)
    assert msg.startswith("BPF compile failed: ") and "\n" not in msg and "error" in msg


def test_without_a_pin_dir_or_pins_the_errors_are_one_line(tmp_path):
    with pytest.raises(XdmvpnError, match="needs a pin_dir"):
        loader.load(build.DataplaneConfig())
    with pytest.raises(XdmvpnError) as info:
        PinnedModule(tmp_path)[b"xdmvpn_peers"]
    assert "is not pinned" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(XdmvpnError, match="no programs pinned"):
        open_programs(tmp_path)
    with pytest.raises(XdmvpnError, match="no map xdmvpn_nothing"):
        PinnedModule(tmp_path)[b"xdmvpn_nothing"]


TRY = ("import sys\n"
       "from xdmvpn.dataplane import build, loader, pinned\n"
       "from xdmvpn.errors import XdmvpnError\n"
       "try:\n"
       "    if sys.argv[1] == 'open':\n"
       "        pinned.PinnedModule(sys.argv[2])[b'xdmvpn_peers']\n"
       "    else:\n"
       "        loader.load(build.DataplaneConfig(pin_dir=sys.argv[2]))\n"
       "    print('no error')\n"
       "except XdmvpnError as exc:\n"
       "    print(exc)\n")


def without_privileges(setpriv: list[str], step: str, pin: Path) -> str:
    """What step prints (one line) in a process started through setpriv."""
    proc = subprocess.run(
        ["setpriv", *setpriv, sys.executable, "-c", TRY, step, str(pin)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(Path(loader.__file__).parents[2])))
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1, proc.stdout
    return proc.stdout.strip()


@pytest.mark.root
def test_without_cap_bpf_the_loader_fails_with_one_line():
    """root without CAP_BPF and CAP_SYS_ADMIN (dropped from the bounding set): the child
    cannot create the maps."""
    pin = attach.BPFFS / "xdmvpn" / f"xdt-nocap-{os.getpid()}"
    try:
        line = without_privileges(["--bounding-set=-bpf,-sys_admin,-perfmon"], "load", pin)
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    assert line.startswith("BPF compile failed: ") and "ermitted" in line, line


@pytest.mark.root
def test_a_pin_this_user_may_not_open_is_one_line(pinned):
    line = without_privileges(["--reuid=65534", "--regid=65534", "--clear-groups"], "open",
                              pinned.pin)
    assert line == (f"cannot open {pinned.pin}/xdmvpn_peers: permission denied (needs root "
                    "or CAP_BPF)")


def _children(pid: int, marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[1] == str(pid) and stat[0] not in ("Z", "X") and marker.encode() in cmd:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.root
def test_the_loader_child_dies_with_its_parent_and_pins_nothing_after():
    """A daemon killed while its loader child compiles (`lab down` right after `lab up`):
    the child goes too, and no map is pinned after the parent's death (before this, the
    orphan pinned the maps seconds later, after `lab down` had removed the pin dir)."""
    pin = attach.BPFFS / "xdmvpn" / f"xdt-orphan-{os.getpid()}"
    kids: list[int] = []
    parent = subprocess.Popen(
        [sys.executable, "-c", TRY, "load", str(pin)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(Path(loader.__file__).parents[2])))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and parent.poll() is None:
            kids = kids or _children(parent.pid, "xdmvpn.dataplane.loader")
            if kids and pin.exists():          # the child has its request: it compiles
                break
            time.sleep(0.01)
        assert kids and pin.exists(), "the loader child never started compiling"
        parent.kill()
        parent.wait()
        shutil.rmtree(pin, ignore_errors=True)         # what `lab down` does next
        deadline = time.monotonic() + 10
        while _alive(kids[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(kids[0]), "the loader child outlived its parent by 10 s"
        time.sleep(0.2)
        assert not pin.exists(), sorted(p.name for p in pin.iterdir())
    finally:
        parent.kill()
        for kid in kids:
            if _alive(kid):
                os.kill(kid, 9)
        shutil.rmtree(pin, ignore_errors=True)
