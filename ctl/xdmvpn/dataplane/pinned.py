"""The pinned data plane without bcc: maps, programs and the events ring buffer reached
through the bpf syscall (libbpf.py) from their pins under /sys/fs/bpf/xdmvpn/<tunnel>/.

The long-lived daemon uses these; the loader child (loader.py) made the pins.  A
``PinnedModule`` answers ``module[b"name"]`` with a ``PinnedTable`` that offers the part of
bcc's table API that maps.DataplaneMaps uses (Key, Leaf, sLeaf, total_cpu, [], get, del,
keys/values/items, len, clear) plus batched updates and deletes, and the ring-buffer calls
(open_ring_buffer, ring_buffer_poll, ring_buffer_consume), so maps.py reads the same whether
a bcc module or the pins are behind it.  Layouts come from abi.MAP and are checked against
the kernel's when a map is opened.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import XdmvpnError
from . import abi, libbpf

log = logging.getLogger(__name__)

BPF_ANY = 0                       # uapi/linux/bpf.h update flags
PROGS_DIR = "progs"               # programs pin under <pin dir>/progs/<function name>
BATCH = 4096                      # entries per batched syscall
_PERCPU = (abi.MapType.PERCPU_ARRAY,)
_ARRAYS = (abi.MapType.ARRAY, abi.MapType.PERCPU_ARRAY, abi.MapType.PROG_ARRAY)
# ring_buffer_sample_fn: int (*)(void *ctx, void *data, size_t size)
_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

_ncpus: int | None = None


def possible_cpus() -> int:
    """How many values a per-CPU map holds per key (the kernel's possible CPUs)."""
    global _ncpus
    if _ncpus is None:
        _ncpus = libbpf.check(libbpf.function("libbpf_num_possible_cpus")(), "possible CPUs")
    return _ncpus


def open_pin(path: Path) -> int:
    """A descriptor of the object pinned at path, or a one-line XdmvpnError."""
    try:
        return libbpf.pinned(str(path))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise XdmvpnError(f"{path} is not pinned: is bpffs mounted at /sys/fs/bpf and "
                              "the data plane loaded?") from None
        if exc.errno in (errno.EPERM, errno.EACCES):
            why = os.strerror(exc.errno).lower()
            raise XdmvpnError(f"cannot open {path}: {why} (needs root or CAP_BPF)") from None
        raise XdmvpnError(f"cannot open {path}: {exc.strerror}") from None


class PinnedTable:
    """One pinned map, used like a bcc table."""

    def __init__(self, fd: int, spec: abi.MapSpec, path: Path):
        self.fd, self.spec, self.path = fd, spec, path
        self.name = spec.name
        self.max_entries = spec.max_entries
        self.percpu = spec.type in _PERCPU
        self.total_cpu = possible_cpus() if self.percpu else 1
        self.Key: Any = spec.key
        self.sLeaf: Any = spec.value
        self.Leaf: Any = (abi.percpu(spec.value, self.total_cpu) if self.percpu and spec.value
                          else spec.value)
        self._value_size = ctypes.sizeof(self.Leaf) if self.Leaf is not None else 0
        self._ring: int | None = None
        self._ring_cb: Any = None

    @property
    def map_fd(self) -> int:
        """The map's descriptor under bcc's name for it (maps.py writes batches with it)."""
        return self.fd

    # ---- conversion -------------------------------------------------------------------
    def _key(self, key) -> Any:
        if isinstance(key, int):
            return self.Key(key)
        if ctypes.sizeof(key) != self.spec.key_size:
            raise XdmvpnError(f"{self.name}: key of {ctypes.sizeof(key)} bytes, the map's "
                              f"are {self.spec.key_size}")
        return key

    def _fail(self, what: str, err: int) -> XdmvpnError:
        return XdmvpnError(f"{self.name}: {what} failed: {os.strerror(err)}")

    # ---- single elements ------------------------------------------------------------------
    def __getitem__(self, key) -> Any:
        value = self.Leaf()
        rc = libbpf.function("bpf_map_lookup_elem")(self.fd, ctypes.byref(self._key(key)),
                                                      ctypes.byref(value))
        if rc < 0:
            if -rc == errno.ENOENT:
                raise KeyError(key)
            raise self._fail("lookup", -rc)
        return value

    def get(self, key, default=None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key, value) -> None:
        if ctypes.sizeof(value) != self._value_size:
            raise XdmvpnError(f"{self.name}: value of {ctypes.sizeof(value)} bytes, the "
                              f"map's are {self._value_size}")
        rc = libbpf.function("bpf_map_update_elem")(self.fd, ctypes.byref(self._key(key)),
                                                      ctypes.byref(value), BPF_ANY)
        if rc < 0:
            raise self._fail("update", -rc)

    def __delitem__(self, key) -> None:
        k = self._key(key)
        if self.spec.type in _ARRAYS and self.spec.type != abi.MapType.PROG_ARRAY:
            self[k] = self.Leaf()                 # an array element is zeroed, as bcc does
            return
        rc = libbpf.function("bpf_map_delete_elem")(self.fd, ctypes.byref(k))
        if rc < 0:
            if -rc == errno.ENOENT:
                raise KeyError(key)
            raise self._fail("delete", -rc)

    # ---- iteration --------------------------------------------------------------------------
    def keys(self) -> Iterator[Any]:
        if self.spec.type in _ARRAYS:
            yield from (self.Key(i) for i in range(self.max_entries))
            return
        get_next = libbpf.function("bpf_map_get_next_key")
        prev: Any = None
        while True:
            nxt = self.Key()
            rc = get_next(self.fd, ctypes.byref(prev) if prev is not None else None,
                          ctypes.byref(nxt))
            if rc < 0:
                return                          # ENOENT: the end
            yield nxt
            prev = nxt

    __iter__ = keys

    def items(self) -> list[tuple[Any, Any]]:
        """Every (key, value); hash maps through batched lookups where the kernel has them."""
        if self.spec.type in (abi.MapType.HASH, abi.MapType.LRU_HASH):
            try:
                return self._lookup_batch()
            except OSError:
                pass                             # older kernel: one element at a time
        out = []
        for k in list(self.keys()):
            v = self.get(k)
            if v is not None:
                out.append((k, v))
        return out

    def values(self) -> list[Any]:
        return [v for _, v in self.items()]

    def _lookup_batch(self) -> list[tuple[Any, Any]]:
        lookup = libbpf.function("bpf_map_lookup_batch")
        keys, values = (self.Key * BATCH)(), (self.Leaf * BATCH)()
        token_in, token_out = ctypes.c_uint64(), ctypes.c_uint64()   # htab: a u32 bucket
        out: list[tuple[Any, Any]] = []
        first = True
        while True:
            count = ctypes.c_uint32(BATCH)
            rc = lookup(self.fd, None if first else ctypes.byref(token_in),
                        ctypes.byref(token_out), keys, values, ctypes.byref(count), None)
            err = max(-rc, 0)
            if err and err != errno.ENOENT:
                raise OSError(err, os.strerror(err))
            for i in range(count.value):
                k, v = self.Key(), self.Leaf()
                ctypes.pointer(k)[0] = keys[i]
                ctypes.pointer(v)[0] = values[i]
                out.append((k, v))
            if err == errno.ENOENT:
                return out
            token_in.value, first = token_out.value, False

    def __len__(self) -> int:
        if self.spec.type in _ARRAYS:
            return self.max_entries
        return sum(1 for _ in self.keys())

    def clear(self) -> None:
        if self.spec.type in _ARRAYS:
            for i in range(self.max_entries):
                del self[i]
        else:
            self.delete_batch(list(self.keys()))

    # ---- batches ---------------------------------------------------------------------------
    def update_batch(self, pairs: list[tuple[Any, Any]]) -> None:
        """Write every (key, value): BATCH elements per syscall where the kernel can (not
        for LPM tries), else one by one."""
        update = libbpf.function("bpf_map_update_batch")
        for start in range(0, len(pairs), BATCH):
            chunk = pairs[start:start + BATCH]
            keys = (self.Key * len(chunk))(*[self._key(k) for k, _ in chunk])
            values = (self.Leaf * len(chunk))(*[v for _, v in chunk])
            count = ctypes.c_uint32(len(chunk))
            rc = update(self.fd, keys, values, ctypes.byref(count), None)
            if rc < 0:
                for k, v in chunk[count.value:]:
                    self[k] = v

    def delete_batch(self, keys: list[Any]) -> int:
        """Delete every key there (missing ones are skipped); how many were deleted."""
        delete = libbpf.function("bpf_map_delete_batch")
        gone = 0
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            arr = (self.Key * len(chunk))(*[self._key(k) for k in chunk])
            count = ctypes.c_uint32(len(chunk))
            rc = delete(self.fd, arr, ctypes.byref(count), None)
            gone += count.value
            if rc < 0:                 # a missing key stops the batch: the rest one by one
                for k in chunk[count.value:]:
                    try:
                        del self[k]
                        gone += 1
                    except KeyError:
                        pass
        return gone

    # ---- ring buffer ---------------------------------------------------------------------------
    def open_ring_buffer(self, callback: Callable[[Any, int, int], Any]) -> None:
        """Records go to callback(ctx, data address, size) from ring_buffer_poll/consume."""
        if self.spec.type != abi.MapType.RINGBUF:
            raise XdmvpnError(f"{self.name} is not a ring buffer")

        def sample(ctx, data, size) -> int:
            try:
                callback(ctx, data, size)
            except Exception:              # never through libbpf's C frames
                log.exception("ring buffer callback of %s failed", self.name)
            return 0

        self._ring_cb = _SAMPLE_FN(sample)
        manager = libbpf.function("ring_buffer__new")(self.fd, self._ring_cb, None, None)
        if not manager:
            err = ctypes.get_errno() or errno.EINVAL
            raise XdmvpnError(f"{self.name}: cannot open the ring buffer: {os.strerror(err)}")
        self._ring = manager

    def close(self) -> None:
        if self._ring:
            libbpf.function("ring_buffer__free")(self._ring)
            self._ring = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PinnedModule:
    """The maps pinned for one tunnel, by name (bytes or str), opened when first asked for."""

    def __init__(self, pin_dir: Path | str):
        self.pin_dir = Path(pin_dir)
        self._tables: dict[str, PinnedTable] = {}
        self._ring: PinnedTable | None = None

    def __getitem__(self, name: bytes | str) -> PinnedTable:
        key = name.decode() if isinstance(name, bytes) else name
        table = self._tables.get(key)
        if table is None:
            spec = abi.MAP.get(key)
            if spec is None:
                raise XdmvpnError(f"no map {key} in this version's data plane")
            path = self.pin_dir / key
            fd = open_pin(path)
            try:
                have = libbpf.map_info(fd)
            except OSError as exc:
                os.close(fd)
                raise XdmvpnError(f"cannot read pinned map {path}: {exc.strerror}") from None
            want = (int(spec.type), spec.key_size, spec.value_size, spec.max_entries,
                    spec.flags)
            if have != want:
                os.close(fd)
                raise XdmvpnError(f"pinned map {path} has another layout ({have}, this "
                                  f"version {want})")
            table = self._tables[key] = PinnedTable(fd, spec, path)
            if spec.type == abi.MapType.RINGBUF:
                self._ring = table
        return table

    @property
    def _ringbuf_manager(self) -> int | None:
        """The open ring buffer's struct ring_buffer * (daemon/events.py's name for it)."""
        return self._ring._ring if self._ring is not None else None

    def ring_buffer_poll(self, timeout_ms: int = -1) -> int:
        if not self._ringbuf_manager:
            raise XdmvpnError("no ring buffer open")
        return libbpf.function("ring_buffer__poll")(self._ringbuf_manager, timeout_ms)

    def ring_buffer_consume(self) -> int:
        if not self._ringbuf_manager:
            raise XdmvpnError("no ring buffer open")
        return libbpf.function("ring_buffer__consume")(self._ringbuf_manager)

    def cleanup(self) -> None:
        """Close every descriptor (the pins stay)."""
        for table in self._tables.values():
            table.close()
        self._tables.clear()
        self._ring = None


class PinnedProgram:
    """A program pinned under <pin dir>/progs/: what attach.py needs of it (fd, name)."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name.encode()
        self.fd = open_pin(path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_programs(pin_dir: Path) -> dict[str, PinnedProgram]:
    """Every program pinned for a tunnel, by function name."""
    d = pin_dir / PROGS_DIR
    if not d.is_dir():
        raise XdmvpnError(f"no programs pinned under {d}: the loader did not run")
    return {p.name: PinnedProgram(p) for p in sorted(d.iterdir())}
