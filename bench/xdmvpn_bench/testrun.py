"""The kernel's BPF test-run facility (bpf_prog_test_run_opts, bound through
xdmvpn.dataplane.libbpf): the data-plane tests' and benchmarks' way to run a program.

``run(prog_fd, packet)`` runs a loaded program once on a packet and returns the verdict,
the output bytes and the duration (with ``repeat``, the mean ns per run: a program's
cost); ``run_live`` drives XDP live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES), where
XDP_TX and XDP_REDIRECT really transmit: the benchmark's packet generator.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os

from xdmvpn.dataplane import libbpf

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1


class _TestRunOpts(ctypes.Structure):
    # struct bpf_test_run_opts (libbpf's bpf.h)
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


@dataclasses.dataclass
class RunResult:
    retval: int
    data: bytes
    duration_ns: int


def _test_run(prog_fd: int, opts: _TestRunOpts, what: str) -> None:
    rc = libbpf.function("bpf_prog_test_run_opts")(prog_fd, ctypes.byref(opts))
    if rc != 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"BPF {what} failed: {os.strerror(err)}")


def run(prog_fd: int, packet: bytes, repeat: int = 1, ctx: ctypes.Structure | None = None,
        out_size: int | None = None) -> RunResult:
    """Run a loaded program on packet; raises OSError with the kernel's errno."""
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
    _test_run(prog_fd, opts, "test run")
    return RunResult(opts.retval, outbuf.raw[: opts.data_size_out], opts.duration)


def run_live(prog_fd: int, packet: bytes, repeat: int, ingress_ifindex: int,
             batch_size: int = 64) -> int:
    """XDP live-frames run: every repetition gets a frame made from packet and
    XDP_TX/XDP_REDIRECT really transmit.  Returns the average ns per frame."""
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
    _test_run(prog_fd, opts, "live-frames test run")
    return opts.duration
