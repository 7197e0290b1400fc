"""libbpf through ctypes: the one place that loads it, and the calls made without bcc.

bcc (Debian's libbcc) links the system's libbpf.so.1, so a handle on that library
reaches the very objects bcc made (its ring-buffer manager). Every function is looked
up here with its prototype declared once (PROTOTYPES):

  function(name)         the libbpf function, or XdmvpnError saying what to install
  prog_info(fd)          verified instructions and JIT size of a loaded program
  map_info(fd)           type, key and value sizes, entries and flags of a map
  pinned(path)           a descriptor of the object pinned at path
  ring_epoll_fd(manager) the epoll descriptor of a ring-buffer manager, None without one
  update_batch(fd, keys, values, count)  BPF_MAP_UPDATE_BATCH: count entries, one call
  check(rc, what)        an OSError for a negative return (libbpf returns -errno)

The long-lived daemon reaches the pinned maps with the map calls here (see pinned.py)
and never loads bcc; only the short-lived loader child (loader.py) compiles with it.

The benchmarks bind the kernel's test-run facility (bpf_prog_test_run_opts) through
function() too; the lab loads its two-instruction XDP pass program with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any, Iterator

from ..errors import XdmvpnError

_c = ctypes
#: name -> (restype, argtypes)
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_prog_test_run_opts": (_c.c_int, [_c.c_int, _c.c_void_p]),
    "bpf_obj_get_info_by_fd": (_c.c_int, [_c.c_int, _c.c_void_p, _c.c_void_p]),
    "bpf_obj_get": (_c.c_int, [_c.c_char_p]),
    "ring_buffer__epoll_fd": (_c.c_int, [_c.c_void_p]),
    "bpf_prog_load": (_c.c_int, [_c.c_int, _c.c_char_p, _c.c_char_p, _c.c_char_p,
                                 _c.c_size_t, _c.c_void_p]),
    "bpf_xdp_attach": (_c.c_int, [_c.c_int, _c.c_int, _c.c_uint32, _c.c_void_p]),
    "bpf_xdp_detach": (_c.c_int, [_c.c_int, _c.c_uint32, _c.c_void_p]),
    "bpf_obj_pin": (_c.c_int, [_c.c_int, _c.c_char_p]),
    "bpf_map_lookup_elem": (_c.c_int, [_c.c_int, _c.c_void_p, _c.c_void_p]),
    "bpf_map_update_elem": (_c.c_int, [_c.c_int, _c.c_void_p, _c.c_void_p, _c.c_uint64]),
    "bpf_map_delete_elem": (_c.c_int, [_c.c_int, _c.c_void_p]),
    "bpf_map_get_next_key": (_c.c_int, [_c.c_int, _c.c_void_p, _c.c_void_p]),
    "bpf_map_lookup_batch": (_c.c_int, [_c.c_int, _c.c_void_p, _c.c_void_p, _c.c_void_p,
                                        _c.c_void_p, _c.POINTER(_c.c_uint32), _c.c_void_p]),
    "bpf_map_update_batch": (_c.c_int, [_c.c_int, _c.c_void_p, _c.c_void_p,
                                        _c.POINTER(_c.c_uint32), _c.c_void_p]),
    "bpf_map_delete_batch": (_c.c_int, [_c.c_int, _c.c_void_p, _c.POINTER(_c.c_uint32),
                                        _c.c_void_p]),
    "libbpf_num_possible_cpus": (_c.c_int, []),
    "ring_buffer__new": (_c.c_void_p, [_c.c_int, _c.c_void_p, _c.c_void_p, _c.c_void_p]),
    "ring_buffer__poll": (_c.c_int, [_c.c_void_p, _c.c_int]),
    "ring_buffer__consume": (_c.c_int, [_c.c_void_p]),
    "ring_buffer__free": (None, [_c.c_void_p]),
}
# libbcc exports a copy of the test-run and info calls: the last resort, opened only
# when a function is in no library before it (it maps LLVM, which the daemon must not).
LIBRARIES = ("libbpf.so.1", ctypes.util.find_library("bpf"), "libbcc.so.0")

_libs: dict[str, ctypes.CDLL | None] = {}
_functions: dict[str, Any] = {}


def _loaded() -> Iterator[ctypes.CDLL]:
    """The libraries in LIBRARIES order, each opened when first reached."""
    for name in dict.fromkeys(n for n in LIBRARIES if n):
        if name not in _libs:
            try:
                _libs[name] = ctypes.CDLL(name, use_errno=True)
            except OSError:
                _libs[name] = None
        lib = _libs[name]
        if lib is not None:
            yield lib


def function(name: str) -> Any:
    """libbpf's `name` with its prototype from PROTOTYPES."""
    fn = _functions.get(name)
    if fn is not None:
        return fn
    restype, argtypes = PROTOTYPES[name]
    for lib in _loaded():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            continue
        fn.restype, fn.argtypes = restype, argtypes
        _functions[name] = fn
        return fn
    raise XdmvpnError(f"{name} not found: libbpf is missing or too old (Debian: apt-get "
                      "install libbpf1, which comes with bcc)")


class _ProgInfo(ctypes.Structure):
    # struct bpf_prog_info up to verified_insns (include/uapi/linux/bpf.h)
    _fields_ = [
        ("type", _c.c_uint32), ("id", _c.c_uint32), ("tag", _c.c_uint8 * 8),
        ("jited_prog_len", _c.c_uint32), ("xlated_prog_len", _c.c_uint32),
        ("jited_prog_insns", _c.c_uint64), ("xlated_prog_insns", _c.c_uint64),
        ("load_time", _c.c_uint64), ("created_by_uid", _c.c_uint32),
        ("nr_map_ids", _c.c_uint32), ("map_ids", _c.c_uint64),
        ("name", _c.c_char * 16), ("ifindex", _c.c_uint32), ("gpl", _c.c_uint32),
        ("netns_dev", _c.c_uint64), ("netns_ino", _c.c_uint64),
        ("nr_jited_ksyms", _c.c_uint32), ("nr_jited_func_lens", _c.c_uint32),
        ("jited_ksyms", _c.c_uint64), ("jited_func_lens", _c.c_uint64),
        ("btf_id", _c.c_uint32), ("func_info_rec_size", _c.c_uint32),
        ("func_info", _c.c_uint64), ("nr_func_info", _c.c_uint32),
        ("nr_line_info", _c.c_uint32), ("line_info", _c.c_uint64),
        ("jited_line_info", _c.c_uint64), ("nr_jited_line_info", _c.c_uint32),
        ("line_info_rec_size", _c.c_uint32), ("jited_line_info_rec_size", _c.c_uint32),
        ("nr_prog_tags", _c.c_uint32), ("prog_tags", _c.c_uint64),
        ("run_time_ns", _c.c_uint64), ("run_cnt", _c.c_uint64),
        ("recursion_misses", _c.c_uint64), ("verified_insns", _c.c_uint32),
        ("attach_btf_obj_id", _c.c_uint32), ("attach_btf_id", _c.c_uint32),
    ]


def prog_info(prog_fd: int) -> dict:
    """{'name', 'verified_insns', 'jited_bytes', 'xlated_bytes'} of a loaded program."""
    info = _ProgInfo()
    size = _c.c_uint32(_c.sizeof(info))
    if function("bpf_obj_get_info_by_fd")(prog_fd, _c.byref(info), _c.byref(size)) != 0:
        raise OSError(_c.get_errno(), "bpf_obj_get_info_by_fd failed")
    return {
        "name": info.name.decode(errors="replace"),
        "verified_insns": info.verified_insns,
        "jited_bytes": info.jited_prog_len,
        "xlated_bytes": info.xlated_prog_len,
    }


class _MapInfo(ctypes.Structure):
    # struct bpf_map_info (include/uapi/linux/bpf.h) up to map_flags, and room for the rest
    _fields_ = [
        ("type", _c.c_uint32), ("id", _c.c_uint32), ("key_size", _c.c_uint32),
        ("value_size", _c.c_uint32), ("max_entries", _c.c_uint32), ("map_flags", _c.c_uint32),
        ("rest", _c.c_uint8 * 80),
    ]


def map_info(map_fd: int) -> tuple[int, int, int, int, int]:
    """(map type, key size, value size, max entries, flags) of a map."""
    info = _MapInfo()
    size = _c.c_uint32(_c.sizeof(info))
    if function("bpf_obj_get_info_by_fd")(map_fd, _c.byref(info), _c.byref(size)) != 0:
        raise OSError(_c.get_errno(), "bpf_obj_get_info_by_fd failed")
    return info.type, info.key_size, info.value_size, info.max_entries, info.map_flags


def pinned(path: str) -> int:
    """A new descriptor of the BPF object pinned at path (the caller closes it)."""
    fd = function("bpf_obj_get")(path.encode())
    if fd < 0:
        err = _c.get_errno() or -fd
        raise OSError(err, f"{path}: {os.strerror(err)}")
    return int(fd)


def ring_epoll_fd(manager: int) -> int | None:
    """The epoll fd of a libbpf ring-buffer manager (struct ring_buffer *), None when
    libbpf has no such call or says no."""
    try:
        fd = function("ring_buffer__epoll_fd")(manager)
    except XdmvpnError:
        return None
    return fd if fd >= 0 else None


def update_batch(map_fd: int, keys, values, count: int) -> int:
    """Write `count` entries (keys and values: ctypes arrays laid out as the kernel wants
    them; per-CPU values: every possible CPU's, 8-byte aligned) with one
    BPF_MAP_UPDATE_BATCH. Returns how many the kernel wrote; OSError when it refused the
    first (EINVAL/ENOTSUPP: no batch operations for this map type or kernel)."""
    done = _c.c_uint32(count)
    rc = function("bpf_map_update_batch")(map_fd, _c.addressof(keys), _c.addressof(values),
                                          _c.byref(done), None)
    if rc != 0 and done.value == 0:
        err = _c.get_errno() or -rc
        raise OSError(err, f"BPF_MAP_UPDATE_BATCH: {os.strerror(err)}")
    return int(done.value)


def check(rc: int, what: str) -> int:
    """rc, or an OSError(errno) when libbpf said no (libbpf 1.x returns -errno)."""
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc
