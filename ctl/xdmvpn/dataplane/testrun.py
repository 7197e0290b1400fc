"""The kernel's BPF test-run facility through ctypes (libbpf, which bcc uses).

``run(prog_fd, packet)`` runs a loaded program once on a packet and returns
the verdict, the output bytes and the duration; ``run_live`` drives XDP
live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES), used by the benchmark.
Also: program info (verified instructions, JIT size) and network-namespace
switching for the calling thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import os

from ..errors import XdmvpnError

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
CLONE_NEWNET = 0x40000000


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class XdpMd(ctypes.Structure):
    """struct xdp_md, as ctx_in of an XDP test run."""

    _fields_ = [
        ("data", ctypes.c_uint32),
        ("data_end", ctypes.c_uint32),
        ("data_meta", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("rx_queue_index", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
    ]


class _ProgInfo(ctypes.Structure):
    # struct bpf_prog_info up to verified_insns (include/uapi/linux/bpf.h)
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32), ("gpl", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32), ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64), ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64), ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64), ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32), ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64), ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64), ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
    ]


_lib = None


def _libbpf():
    global _lib
    if _lib is None:
        for name in ("libbpf.so.1", "libbcc.so.0", ctypes.util.find_library("bpf")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                lib.bpf_prog_test_run_opts  # noqa: B018 (probe the symbol)
                lib.bpf_obj_get_info_by_fd  # noqa: B018
            except (OSError, AttributeError):
                continue
            _lib = lib
            break
        else:
            raise XdmvpnError("bpf_prog_test_run_opts not found: install libbpf1 (comes with bcc)")
    return _lib


@dataclasses.dataclass
class RunResult:
    retval: int
    data: bytes
    duration_ns: int


def run(prog_fd: int, packet: bytes, repeat: int = 1, ctx: ctypes.Structure | None = None,
        out_size: int | None = None) -> RunResult:
    """Run a loaded program on packet; raises OSError with the kernel's errno."""
    lib = _libbpf()
    size = out_size or max(len(packet) + 256, 128)
    inbuf = ctypes.create_string_buffer(bytes(packet), len(packet))
    outbuf = ctypes.create_string_buffer(size)
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts))
    opts.data_in = ctypes.cast(inbuf, ctypes.c_void_p)
    opts.data_size_in = len(packet)
    opts.data_out = ctypes.cast(outbuf, ctypes.c_void_p)
    opts.data_size_out = size
    opts.repeat = repeat
    if ctx is not None:
        opts.ctx_in = ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p)
        opts.ctx_size_in = ctypes.sizeof(ctx)
    rc = lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if rc != 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"BPF test run failed: {os.strerror(err)}")
    return RunResult(opts.retval, outbuf.raw[: opts.data_size_out], opts.duration)


def run_live(prog_fd: int, packet: bytes, repeat: int, ingress_ifindex: int,
             batch_size: int = 64) -> int:
    """XDP live-frames run: every repetition gets a frame made from packet and
    XDP_TX/XDP_REDIRECT really transmit.  Returns the average ns per frame."""
    lib = _libbpf()
    inbuf = ctypes.create_string_buffer(bytes(packet), len(packet))
    ctx = XdpMd(data=0, data_end=len(packet), ingress_ifindex=ingress_ifindex)
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts))
    opts.data_in = ctypes.cast(inbuf, ctypes.c_void_p)
    opts.data_size_in = len(packet)
    opts.ctx_in = ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p)
    opts.ctx_size_in = ctypes.sizeof(ctx)
    opts.repeat = repeat
    opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES
    opts.batch_size = batch_size
    rc = lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if rc != 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"BPF live-frames test run failed: {os.strerror(err)}")
    return opts.duration


def prog_info(prog_fd: int) -> dict:
    """{'verified_insns', 'jited_bytes', 'xlated_bytes', 'name'} of a loaded program."""
    lib = _libbpf()
    info = _ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    if lib.bpf_obj_get_info_by_fd(prog_fd, ctypes.byref(info), ctypes.byref(size)) != 0:
        raise OSError(ctypes.get_errno(), "bpf_obj_get_info_by_fd failed")
    return {
        "name": info.name.decode(errors="replace"),
        "verified_insns": info.verified_insns,
        "jited_bytes": info.jited_prog_len,
        "xlated_bytes": info.xlated_prog_len,
    }


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str):
    """Run the block (this thread) inside /run/netns/<name>."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
